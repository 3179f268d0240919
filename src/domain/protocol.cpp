#include "domain/protocol.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <nlohmann/json.hpp>

#include "api/server.hpp"

namespace vireo::domain {

namespace {

constexpr std::string_view kErrorPrefix = "error: ";
constexpr std::string_view kSpecPrefix = "spec ";

// Every field of DomainText, by its name on the wire: encode and decode both walk this one
// list, so they cannot disagree. (process.ctl_fd and incoming_fd are the receiver's own fds,
// and go_given its own state: not sent.)
template <class T, class F>
void each_field(T& t, F&& f) {
    f("name", t.name);
    f("kernel", t.kernel);
    f("initrd", t.initrd);
    f("cmdline", t.cmdline);
    f("append", t.append);
    f("memory", t.memory);
    f("cpus", t.cpus);
    f("console", t.console);
    f("console_log_max", t.console_log_max);
    f("on_reboot", t.on_reboot);
    f("on_crash", t.on_crash);
    f("disks", t.disks);
    f("nets", t.nets);
    f("vsock", t.vsock);
    f("balloon", t.balloon);
    f("rng", t.rng);
    f("shm", t.shm);
    f("memory_backing", t.memory_backing);
    f("cpu", t.cpu);
    f("spec_ctrl", t.spec_ctrl);
    f("msr_filter", t.msr_filter);
    f("irqchip", t.irqchip);
    f("vmm_pool", t.vmm_pool);
    f("cpu_affinity", t.cpu_affinity);
    f("pin_vcpus", t.pin_vcpus);
    f("api_socket", t.process.api_socket);
    f("console_socket", t.process.console_socket);
    f("metrics", t.process.metrics);
    f("stats", t.process.stats);
    f("allow_software_kvm", t.process.allow_software_kvm);
    f("sandbox", t.process.sandbox);
    f("uid", t.process.uid);
    f("gid", t.process.gid);
    f("restore", t.process.restore);
}

// A field added to DomainText or ProcessOptions must be added to each_field: until then these
// bindings (one name per member) stop compiling.
[[maybe_unused]] void every_field_is_listed(const DomainText& t) {
    [[maybe_unused]] const auto& [name, kernel, initrd, cmdline, append, memory, cpus, console,
                                  console_log_max, on_reboot, on_crash, disks, nets, vsock, balloon,
                                  rng, shm, memory_backing, cpu, spec_ctrl, msr_filter, irqchip,
                                  vmm_pool, cpu_affinity, pin_vcpus, process] = t;
    [[maybe_unused]] const auto& [api_socket, console_socket, metrics, ctl_fd, incoming_fd,
                                  go_given, stats, allow_software_kvm, sandbox, uid, gid, restore] =
        t.process;
}

template <class V>
bool has_type(const nlohmann::json& j) {
    if constexpr (std::is_same_v<V, std::string>) {
        return j.is_string();
    } else if constexpr (std::is_same_v<V, bool>) {
        return j.is_boolean();
    } else if constexpr (std::is_same_v<V, uint32_t>) {
        return j.is_number_unsigned() && j.get<uint64_t>() <= UINT32_MAX;
    } else {
        static_assert(std::is_same_v<V, std::vector<std::string>>);
        return j.is_array() && std::all_of(j.begin(), j.end(),
                                           [](const nlohmann::json& e) { return e.is_string(); });
    }
}

}  // namespace

std::string describe_exit(int status) {
    const char* crash = nullptr;
    switch (status) {
        case kExitPowerOff:
            return "powered off";
        case kExitReboot:
            return "rebooted";
        case kExitError:
            crash = "vireo could not start or run the guest";
            break;
        case kExitNoHardwareKvm:
            crash = "this host's KVM cannot run a full kernel";
            break;
        case kExitPanic:
            crash = "the guest kernel panicked";
            break;
        case kExitTripleFault:
            crash = "the guest triple-faulted";
            break;
        case kExitKvmError:
            crash = "KVM failed to run the guest";
            break;
        case kExitSandboxViolation:
            crash = "sandbox violation: a system call outside its allow-list (see its log)";
            break;
        default:
            return fmt::format("crashed (vireo run exit status {})", status);
    }
    return fmt::format("crashed (vireo run exit status {}: {})", status, crash);
}

std::string encode(const Message& m) {
    switch (m.kind) {
        case Message::Kind::Ready:
            return "ready\n";
        case Message::Kind::Paused:
            return "paused\n";
        case Message::Kind::Running:
            return "running\n";
        case Message::Kind::Crashed:
            return "crashed\n";
        case Message::Kind::Migrated:
            return "migrated\n";
        case Message::Kind::Error:
            break;
    }
    std::string text = m.detail.substr(0, kMaxLine - kErrorPrefix.size() - 1);
    std::replace(text.begin(), text.end(), '\n', ' ');
    return std::string(kErrorPrefix) + text + "\n";
}

std::optional<Message> decode(std::string_view line) {
    using K = Message::Kind;
    if (line == "ready") return Message{K::Ready, {}};
    if (line == "paused") return Message{K::Paused, {}};
    if (line == "running") return Message{K::Running, {}};
    if (line == "crashed") return Message{K::Crashed, {}};
    if (line == "migrated") return Message{K::Migrated, {}};
    if (line.substr(0, kErrorPrefix.size()) == kErrorPrefix)
        return Message{K::Error, std::string(line.substr(kErrorPrefix.size()))};
    return std::nullopt;
}

std::string spec_json(const DomainText& text) {
    nlohmann::json j = nlohmann::json::object();
    each_field(text, [&](const char* key, const auto& value) { j[key] = value; });
    // dump() escapes control characters inside strings: the text stays one line.
    return j.dump();
}

Result<DomainText> parse_spec_json(std::string_view json, std::string_view what) {
    // A spec is an object of strings, numbers and arrays of strings: two levels.
    if (json.size() > kMaxSpecLine || !api::within_depth(json, 2))
        return fail(ErrorCode::InvalidArgument, "{}: not a spec (over {} bytes or nested deeper)",
                    what, kMaxSpecLine);
    const auto j = nlohmann::json::parse(json, nullptr, false);
    if (!j.is_object()) return fail(ErrorCode::InvalidArgument, "{}: not a JSON object", what);
    DomainText t;
    std::string bad;
    size_t known = 0;
    each_field(t, [&](const char* key, auto& value) {
        using V = std::decay_t<decltype(value)>;
        const auto it = j.find(key);
        if (it == j.end()) {
            // Fields newer than the first snapshots keep their defaults when missing.
            const std::string_view k = key;
            if (k == "cpu" || k == "spec_ctrl" || k == "msr_filter" || k == "vmm_pool" ||
                k == "irqchip")
                return;
            if (bad.empty()) bad = fmt::format("\"{}\" is missing", key);
            return;
        }
        ++known;
        if (!has_type<V>(*it)) {
            if (bad.empty()) bad = fmt::format("\"{}\" has the wrong type", key);
            return;
        }
        value = it->template get<V>();
    });
    if (bad.empty() && known != j.size()) bad = "it has a field this vireo does not know";
    if (!bad.empty()) return fail(ErrorCode::InvalidArgument, "{}: {}", what, bad);
    return t;
}

std::string encode_spec(const DomainText& text) {
    return std::string(kSpecPrefix) + spec_json(text) + "\n";
}

Result<DomainText> decode_spec(std::string_view line) {
    if (line.substr(0, kSpecPrefix.size()) != kSpecPrefix)
        return fail(ErrorCode::InvalidArgument, "launch protocol: expected the spec message");
    return parse_spec_json(line.substr(kSpecPrefix.size()), "launch protocol: spec");
}

bool ready_and_wait_for_go(int fd) {
    const std::string ready = encode({Message::Kind::Ready, {}});
    (void)!::write(fd, ready.data(), ready.size());
    char go = 0;
    ssize_t n;
    while ((n = ::read(fd, &go, 1)) < 0 && errno == EINTR) {
    }
    return n == 1 && go == kGo;
}

Result<DomainText> receive_spec(int fd) {
    // Byte by byte: what follows the line (the go byte) is not the spec's to read.
    std::string line;
    for (;;) {
        char c = 0;
        const ssize_t n = ::read(fd, &c, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno(errno, "launch protocol: reading the spec");
        if (n == 0)
            return fail(ErrorCode::BadState,
                        "launch protocol: the supervisor closed the socket before the spec");
        if (c == '\n') return decode_spec(line);
        if (line.size() == kMaxSpecLine)
            return fail(ErrorCode::OutOfRange, "launch protocol: the spec is over {} bytes",
                        kMaxSpecLine);
        line.push_back(c);
    }
}

bool LineReader::feed(std::string_view bytes) {
    buf_.append(bytes);
    // Only the unfinished last line counts against the bound.
    const size_t nl = buf_.rfind('\n');
    const size_t partial = nl == std::string::npos ? buf_.size() : buf_.size() - nl - 1;
    if (partial <= kMaxLine) return true;
    buf_.clear();
    return false;
}

std::optional<std::string> LineReader::next() {
    const size_t nl = buf_.find('\n');
    if (nl == std::string::npos) return std::nullopt;
    std::string line = buf_.substr(0, nl);
    buf_.erase(0, nl + 1);
    return line;
}

}  // namespace vireo::domain
