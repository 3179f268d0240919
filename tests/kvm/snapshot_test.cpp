// Save and restore of a whole vmm::Vm with a tiny PVH guest (pvh_counter: "C=<count>" lines,
// the count in guest memory): a machine saved while paused and restored into a new one goes on
// counting from where it stood — in registers, memory, the UART and the interrupt controllers —
// and two restores of one file are independent clones. A snapshot of another machine shape is
// refused with one line. Judged by the guest's output, not by clocks.
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "arch/x86/boot/kernel.hpp"
#include "base/unique_fd.hpp"
#include "counter_guest.hpp"
#include "kvm_test.hpp"
#include "snapshot/format.hpp"
#include "snapshot/state.hpp"
#include "vmm/vm.hpp"

namespace vireo {
namespace {

using namespace std::chrono_literals;

using test::config;
using test::counts;
using test::images;
using test::Recorder;
using test::Running;
using test::wait_lines;

// Boots the counter, lets it write `lines` lines, pauses and saves it; returns the file and
// what the guest had written.
struct Saved {
    UniqueFd fd;
    std::string text;
    snapshot::MemorySaveStats stats;
    std::array<uint8_t, 16> generation_id{};
};
Saved boot_and_save(size_t lines) {
    static const vmm::BootImages img = images();
    auto out = std::make_shared<Recorder>();
    auto vm = vmm::Vm::create(test::hypervisor(), config(out), img);
    EXPECT_TRUE(vm) << vm.error().message();
    Running r(std::move(*vm));
    EXPECT_TRUE(wait_lines(*out, lines)) << "the guest did not count";
    EXPECT_TRUE(r.vm->pause());
    Saved s{UniqueFd(::memfd_create("vireo-snapshot-test", MFD_CLOEXEC)),
            {},
            {},
            r.vm->generation_id()};
    auto stats = r.vm->save(s.fd.get());
    EXPECT_TRUE(stats) << stats.error().message();
    if (stats) s.stats = *stats;
    s.text = out->text();  // paused: nothing more comes
    return s;
}

TEST(Snapshot, ARestoredMachineGoesOnCountingWhereTheSavedOneStood) {
    Saved s = boot_and_save(3);
    EXPECT_EQ(s.stats.guest_bytes, 64u << 20);
    EXPECT_LT(s.stats.written_bytes, 4u << 20);  // the guest touched a few pages, not 64 MiB

    auto out = std::make_shared<Recorder>();
    auto vm = vmm::Vm::restore(test::hypervisor(), config(out), images(), s.fd.get());
    ASSERT_TRUE(vm) << vm.error().message();
    Running r(std::move(*vm));
    ASSERT_TRUE(wait_lines(*out, 3)) << "the restored guest did not go on";
    // The two outputs are one stream: every count once, in order, from 1 (a line cut by the
    // save is finished by the restored machine).
    const auto all = counts(s.text + out->text());
    ASSERT_GE(all.size(), 6u);
    for (size_t i = 0; i < all.size(); ++i)
        EXPECT_EQ(all[i], static_cast<long>(i + 1)) << "line " << i << " of\n"
                                                    << s.text << "|\n"
                                                    << out->text();
}

TEST(Snapshot, TwoRestoresOfOneFileAreIndependentClones) {
    Saved s = boot_and_save(2);
    const size_t before = counts(s.text).size();
    auto out_a = std::make_shared<Recorder>(), out_b = std::make_shared<Recorder>();
    auto a = vmm::Vm::restore(test::hypervisor(), config(out_a), images(), s.fd.get());
    ASSERT_TRUE(a) << a.error().message();
    Running ra(std::move(*a));
    ASSERT_TRUE(wait_lines(*out_a, 4));
    // b starts later, from the same file: a's progress (its own copies of written pages) is
    // not in it.
    auto b = vmm::Vm::restore(test::hypervisor(), config(out_b), images(), s.fd.get());
    ASSERT_TRUE(b) << b.error().message();
    Running rb(std::move(*b));
    ASSERT_TRUE(wait_lines(*out_b, 2));
    // Each clone is a new generation: its own VM Generation ID, in its guest's memory where the
    // ACPI VGEN device's ADDR points.
    EXPECT_NE(ra.vm->generation_id(), s.generation_id);
    EXPECT_NE(rb.vm->generation_id(), s.generation_id);
    EXPECT_NE(ra.vm->generation_id(), rb.vm->generation_id());
    for (const auto* r : {&ra, &rb}) {
        std::array<uint8_t, 16> in_guest{};
        ASSERT_TRUE(r->vm->memory().read(memory::Gpa(0xff000),
                                         std::as_writable_bytes(std::span(in_guest))));
        EXPECT_EQ(in_guest, r->vm->generation_id());
    }
    for (const auto* out : {out_a.get(), out_b.get()}) {
        const auto all = counts(s.text + out->text());
        ASSERT_GT(all.size(), before);
        for (size_t i = 0; i < all.size(); ++i)
            EXPECT_EQ(all[i], static_cast<long>(i + 1)) << "line " << i;
    }
}

TEST(Snapshot, AnotherMachineShapeIsRefusedWithOneLine) {
    Saved s = boot_and_save(1);
    auto out = std::make_shared<Recorder>();
    auto more_cpus = vmm::Vm::restore(test::hypervisor(), config(out, 3), images(), s.fd.get());
    ASSERT_FALSE(more_cpus);
    EXPECT_NE(more_cpus.error().message().find("the saved machine has 2 vCPUs; this one is asked "
                                               "for 3"),
              std::string::npos);
    auto c = config(out);
    c.memory_bytes = 128 << 20;
    auto bigger = vmm::Vm::restore(test::hypervisor(), c, images(), s.fd.get());
    ASSERT_FALSE(bigger);
    EXPECT_NE(bigger.error().message().find("64 MiB of memory"), std::string::npos);
    c = config(out);
    c.rng = false;
    c.balloon = true;
    auto devices = vmm::Vm::restore(test::hypervisor(), c, images(), s.fd.get());
    ASSERT_FALSE(devices);
    EXPECT_NE(devices.error().message().find("virtio devices are [rng]; this one's [balloon]"),
              std::string::npos);
    // A truncated file.
    struct stat st {};
    ASSERT_EQ(::fstat(s.fd.get(), &st), 0);
    ASSERT_EQ(::ftruncate(s.fd.get(), st.st_size / 2), 0);
    auto cut = vmm::Vm::restore(test::hypervisor(), config(out), images(), s.fd.get());
    ASSERT_FALSE(cut);
    EXPECT_NE(cut.error().message().find("snapshot"), std::string::npos);
}

TEST(Snapshot, AGuestThatSawAnotherCpuIsRefusedWithOneLine) {
    Saved s = boot_and_save(1);
    auto reader = snapshot::Reader::open(snapshot::file_source(s.fd.get()).value());
    ASSERT_TRUE(reader) << reader.error().message();
    // The same machine, but its guest saw a CPU of another vendor than this host's.
    const auto* conf = reader->find(snapshot::tag("CONF"));
    ASSERT_NE(conf, nullptr);
    UniqueFd other(::memfd_create("vireo-snapshot-test", MFD_CLOEXEC));
    snapshot::Writer w(other.get());
    ASSERT_TRUE(w.add(conf->tag, conf->version, reader->bytes(*conf)));
    bool amd = false;
    for (const auto& e : test::hypervisor().supported_cpuid())
        if (e.function == 0) amd = e.ebx == 0x68747541;  // "Auth"
    const char* vendor = amd ? "GenuineIntel" : "AuthenticAMD";
    snapshot::Encoder cpuid;
    cpuid.u32(1);
    uint32_t v[3];
    std::memcpy(v, vendor, 12);
    for (uint32_t x : {0u, 0u, 0u, 0xdu, v[0], v[2], v[1]})  // function, index, flags, a, b, c, d
        cpuid.u32(x);
    ASSERT_TRUE(w.add(snapshot::tag("CPUI"), 1, cpuid.data()));
    ASSERT_TRUE(w.finish());
    auto out = std::make_shared<Recorder>();
    auto vm = vmm::Vm::restore(test::hypervisor(), config(out), images(), other.get());
    ASSERT_FALSE(vm);
    EXPECT_NE(vm.error().message().find("snapshot: the saved guest ran on a CPU from " +
                                        std::string(vendor)),
              std::string::npos)
        << vm.error().message();
}

}  // namespace
}  // namespace vireo
