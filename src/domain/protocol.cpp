#include "domain/protocol.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace vireo::domain {

namespace {

constexpr std::string_view kErrorPrefix = "error: ";

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
    if (line.substr(0, kErrorPrefix.size()) == kErrorPrefix)
        return Message{K::Error, std::string(line.substr(kErrorPrefix.size()))};
    return std::nullopt;
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
