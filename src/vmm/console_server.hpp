// The serial console on a Unix socket, for `vireo console NAME` (attach and detach at will).
//
// One client at a time (a second is told the console is attached elsewhere). Guest output is
// sent to the client as it comes, without ever blocking the vCPU: if the client does not read,
// output for it is dropped (and counted) while the log still gets everything. The last
// kReplay bytes are kept and sent to a client when it attaches, so it sees the prompt and
// what led up to it. Client input goes to the UART (Serial::enqueue_input, with its
// back-pressure) on the console thread.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "base/event_fd.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "base/unix_socket.hpp"
#include "devices/legacy/serial.hpp"

namespace vireo::vmm {

class ConsoleServer final : public devices::OutputTap {
  public:
    static constexpr size_t kReplay = 16 * 1024;

    /// Listens at `path` (mode 0600; a live socket there is refused, a stale one replaced).
    static Result<std::shared_ptr<ConsoleServer>> create(const std::string& path);
    ~ConsoleServer();

    /// Starts the console thread.
    Result<void> start();
    /// Where client input goes from now on (nullptr between boots: input is held back).
    void attach(std::shared_ptr<devices::Serial> serial);
    /// Output bytes a slow client did not get.
    uint64_t dropped() const noexcept { return dropped_.load(std::memory_order_relaxed); }

    void put(uint8_t byte) noexcept override;

  private:
    ConsoleServer(UnixListener listener, EventFd stop)
        : listener_(std::move(listener)), stop_(std::move(stop)) {}
    void loop();
    void accept_client();

    UnixListener listener_;  // its socket file is removed with it
    EventFd stop_;
    std::thread thread_;
    std::mutex mu_;    // client_, ring_, serial_; never held while calling into the UART
    UniqueFd client_;  // closed only by the console thread
    bool client_gone_ = false;
    std::array<uint8_t, kReplay> ring_{};
    size_t ring_pos_ = 0, ring_len_ = 0;
    std::shared_ptr<devices::Serial> serial_;
    std::atomic<uint64_t> dropped_{0};
};

}  // namespace vireo::vmm
