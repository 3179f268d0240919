// The launch protocol between `vireo up` (the supervisor) and one domain process (`vireo run
// --launch-fd 3`), defined here and nowhere else; both sides encode and decode through it.
//
// One stream socket (a socketpair; the domain's end is its fd 3):
//   supervisor -> domain, first: the domain's configuration, one line "spec JSON" (every field
//     of DomainText, domain/spec.hpp, by name; no other key, none missing). The domain parses
//     it with the same parse_spec() as `vireo run`'s flags, so what a host configuration says
//     and what the domain runs cannot drift through a re-rendered command line.
//   domain -> supervisor, one line each:
//     "ready"          the machine is built (memory allocated, vCPUs created); waiting for go
//     "error: TEXT"    the build failed (then the process exits, ExitStatus::kExitError)
//     "paused", "running", "crashed"   state changes while it runs (pause/unpause from its
//                      API, a crash preserved by --on-crash preserve; an incoming domain's
//                      "running" once its migration arrived)
//     "migrated"       the domain went to another vireo (vireo migrate); the process exits 0
//                      and is not the host's any more
//   An incoming domain (vireo migrate --to-host: the supervisor runs it with --incoming) says
//   "ready" once it listens, and gets go before the migration arrives.
//   supervisor -> domain, then: one byte, kGo, once every domain of the host is ready. Nothing
//     else; the socket's end means the supervisor is gone, and the domain stops.
// How the domain process ended is its exit status (ExitStatus).
//
// The supervisor reads at most kMaxLine bytes of a line: a domain process runs guest-facing
// code, so its socket is read like any untrusted input.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.hpp"
#include "domain/spec.hpp"

namespace vireo::domain {

/// How `vireo run` (a domain process) ended.
enum ExitStatus : int {
    kExitPowerOff = 0,       ///< the guest powered off
    kExitError = 1,          ///< vireo could not start or run the guest (bad input, host failure)
    kExitNoHardwareKvm = 3,  ///< this host's KVM cannot run a full kernel
    kExitPanic = 4,          ///< the guest kernel panicked
    kExitTripleFault = 5,    ///< the guest triple-faulted
    kExitReboot = 6,         ///< the guest rebooted and --on-reboot exit was given
    kExitKvmError = 7,       ///< KVM failed to run the guest (internal/entry error)
    kExitSandboxViolation = 8,  ///< a thread made a system call outside its allow-list
};

/// What a domain process's exit status means, for logs and `vireo list` ("powered off",
/// "rebooted", "crashed (vireo run exit status 4: the guest kernel panicked)").
std::string describe_exit(int status);

/// A line from the domain.
struct Message {
    enum class Kind { Ready, Error, Paused, Running, Crashed, Migrated };
    Kind kind;
    std::string detail;  ///< Error: what failed
    bool operator==(const Message&) const = default;
};

/// The message as its line, '\n' included. A newline inside an error's text becomes a space.
std::string encode(const Message& m);
/// A line without its '\n'; nullopt if it is not a message of this protocol.
std::optional<Message> decode(std::string_view line);

/// Every field of `text` as one line of JSON (the spec message's body; a snapshot's domain
/// configuration, docs/snapshot.md).
std::string spec_json(const DomainText& text);
/// Reads spec_json's form back: every field must be there with its type, and nothing else;
/// at most kMaxSpecLine bytes, nested two levels. `what` starts each error.
Result<DomainText> parse_spec_json(std::string_view json, std::string_view what);
/// The spec message, '\n' included (process.ctl_fd is not sent: it is the receiver's own).
std::string encode_spec(const DomainText& text);
/// A spec line without its '\n'. Every field must be there with its type, and nothing else.
Result<DomainText> decode_spec(std::string_view line);
/// Reads the spec line from the supervisor's socket (blocking; at most kMaxSpecLine bytes, and
/// not one byte past the line).
Result<DomainText> receive_spec(int fd);
/// The domain's side of the handshake: says "ready", then waits for the supervisor's go.
/// False: the supervisor went away (or sent something else).
bool ready_and_wait_for_go(int fd);
/// The longest spec line.
inline constexpr size_t kMaxSpecLine = size_t{256} << 10;

/// The supervisor's byte after the spec: start running.
inline constexpr char kGo = 'g';
/// The longest line the supervisor reads (an error's text is cut to fit).
inline constexpr size_t kMaxLine = 4096;

/// Splits what arrives on the socket into lines, bounded: a line longer than kMaxLine is a
/// protocol error (the domain is treated as failed), never an unbounded buffer.
class LineReader {
  public:
    /// Adds received bytes. Returns false if a line grew past kMaxLine.
    bool feed(std::string_view bytes);
    /// The next complete line (without '\n'), if any.
    std::optional<std::string> next();
    void clear() { buf_.clear(); }

  private:
    std::string buf_;
};

}  // namespace vireo::domain
