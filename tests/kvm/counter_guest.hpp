// The counting PVH guest (pvh_counter: "C=<8 hex digits>" lines on COM1, the count in guest
// memory) as the save/restore and migration tests run it: its output recorded, its counts read
// back, a machine of it running on its own thread.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "arch/x86/boot/kernel.hpp"
#include "kvm_test.hpp"
#include "vmm/vm.hpp"

VIREO_GUEST(pvh_counter_elf)

namespace vireo::test {

using namespace std::chrono_literals;

// Keeps what the guest writes on COM1.
class Recorder final : public devices::OutputTap {
  public:
    void put(uint8_t c) noexcept override {
        std::lock_guard lock(mu_);
        text_ += static_cast<char>(c);
    }
    std::string text() const {
        std::lock_guard lock(mu_);
        return text_;
    }
    size_t lines() const {
        const std::string t = text();
        return static_cast<size_t>(std::count(t.begin(), t.end(), '\n'));
    }

  private:
    mutable std::mutex mu_;
    std::string text_;
};

// The counts of the complete lines of `text`; a line that is not "C=<8 hex digits>" is -1.
inline std::vector<long> counts(const std::string& text) {
    std::vector<long> out;
    size_t at = 0;
    for (size_t nl; (nl = text.find('\n', at)) != std::string::npos; at = nl + 1) {
        const std::string line = text.substr(at, nl - at);
        out.push_back(line.size() == 10 && line.starts_with("C=")
                          ? std::stol(line.substr(2), nullptr, 16)
                          : -1);
    }
    return out;
}

inline bool wait_lines(const Recorder& r, size_t n) {
    for (int i = 0; i < 600 && r.lines() < n; ++i)
        std::this_thread::sleep_for(100ms);
    return r.lines() >= n;
}

inline vmm::BootImages images() {
    auto kernel = arch::x86::boot::KernelImage::parse(guest_pvh_counter_elf());
    if (!kernel) {
        ADD_FAILURE() << kernel.error().message();
        std::abort();
    }
    return vmm::BootImages{*kernel, {}, false};
}

inline vmm::VmConfig config(std::shared_ptr<Recorder> out, uint32_t cpus = 2) {
    vmm::VmConfig c;
    c.memory_bytes = 64 << 20;
    c.cpus = cpus;
    c.console_out = std::move(out);
    c.rng = true;  // a virtio transport in the snapshot too (the guest does not drive it)
    return c;
}

// A machine running on its own thread.
struct Running {
    explicit Running(std::unique_ptr<vmm::Vm> v) : vm(std::move(v)) {
        runner = std::thread([this] { outcome = vm->run(); });
    }
    ~Running() {
        vm->stop(vmm::Fate::Stopped, "test over");
        runner.join();
    }
    std::unique_ptr<vmm::Vm> vm;
    vmm::Outcome outcome;
    std::thread runner;
};

}  // namespace vireo::test
