// Console input: a thread that forwards the host's stdin to the guest's serial port.
//
// When stdin is a terminal it is switched to raw mode (restored on exit) and Ctrl-A x quits;
// Ctrl-A Ctrl-A sends a literal Ctrl-A. The serial port can be swapped (on reboot).
#pragma once

#include <termios.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "base/event_fd.hpp"
#include "devices/legacy/serial.hpp"

namespace vireo::vmm {

/// Whether standard input is a terminal this process may read and set raw: not one at all, or
/// one whose foreground process group is this process's (not `vireo run ... &` of a shell).
bool stdin_in_foreground();

class ConsoleInput {
  public:
    /// `on_escape` runs (on the console thread) when the user types Ctrl-A x.
    explicit ConsoleInput(std::function<void()> on_escape);
    ~ConsoleInput();

    /// Starts reading stdin (no-op if stdin is closed, or a terminal whose foreground process
    /// group is not ours). Call once.
    /// `in_foreground`: stdin_in_foreground(), asked before the process entered a PID
    /// namespace (inside one, the shell's process groups are not visible).
    Result<void> start(bool in_foreground);
    /// Where input goes from now on (nullptr: dropped).
    void attach(std::shared_ptr<devices::Serial> serial);
    /// True if stdin is a terminal (raw mode and the escape key apply).
    bool interactive() const noexcept { return tty_; }

  private:
    void loop();
    void restore_terminal();

    std::function<void()> on_escape_;
    std::mutex mu_;
    std::shared_ptr<devices::Serial> serial_;
    std::thread thread_;
    std::unique_ptr<EventFd> stop_;
    bool tty_ = false;
    bool raw_ = false;
    termios saved_{};
};

}  // namespace vireo::vmm
