#include "domain/device_options.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <net/if.h>
#include <sys/un.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>

#include "base/size.hpp"
#include "base/split.hpp"
#include "virtio/virtio.hpp"

namespace vireo::domain {

using virtio::DiskOptions;
using virtio::HostForward;
using virtio::kBlkIdBytes;
using virtio::kMaxQueueSize;
using virtio::NetOptions;
using virtio::VsockOptions;

namespace {

Result<unsigned long> parse_number(std::string_view spec, std::string_view key,
                                   std::string_view text, unsigned long lo, unsigned long hi) {
    const std::string v(text);
    char* end = nullptr;
    errno = 0;
    const unsigned long n = std::strtoul(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || errno != 0 || n < lo || n > hi || v[0] == '-')
        return fail(ErrorCode::InvalidArgument, "\"{}\": {} must be a number from {} to {}", spec,
                    key, lo, hi);
    return n;
}

// "[ADDR]:PORT" with ADDR an IPv4 address (empty: `fallback`).
Result<void> parse_endpoint(std::string_view spec, std::string_view text, uint32_t fallback,
                            uint32_t& addr, uint16_t& port) {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos)
        return fail(ErrorCode::InvalidArgument,
                    "\"{}\": hostfwd endpoint \"{}\" is not [ADDRESS]:PORT", spec, text);
    const std::string a(text.substr(0, colon));
    addr = fallback;
    if (!a.empty()) {
        in_addr in{};
        if (::inet_pton(AF_INET, a.c_str(), &in) != 1)
            return fail(ErrorCode::InvalidArgument, "\"{}\": \"{}\" is not an IPv4 address", spec,
                        a);
        addr = ntohl(in.s_addr);
    }
    VIREO_TRY_ASSIGN(auto p,
                     parse_number(spec, "a hostfwd port", text.substr(colon + 1), 1, 65535));
    port = static_cast<uint16_t>(p);
    return ok();
}

// hostfwd=tcp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT (QEMU's syntax).
Result<HostForward> parse_hostfwd(std::string_view spec, std::string_view text) {
    HostForward f;
    if (text.rfind("tcp:", 0) == 0) {
        text.remove_prefix(4);
    } else if (text.rfind("udp:", 0) == 0) {
        f.udp = true;
        text.remove_prefix(4);
    } else {
        return fail(ErrorCode::InvalidArgument,
                    "\"{}\": hostfwd must be tcp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT "
                    "(or udp:...)",
                    spec);
    }
    const size_t dash = text.find('-');
    if (dash == std::string_view::npos)
        return fail(ErrorCode::InvalidArgument,
                    "\"{}\": hostfwd needs HOST-GUEST, e.g. tcp:127.0.0.1:8080-:80", spec);
    VIREO_TRY(parse_endpoint(spec, text.substr(0, dash), 0x7f000001, f.host_addr, f.host_port));
    VIREO_TRY(parse_endpoint(spec, text.substr(dash + 1), 0, f.guest_addr, f.guest_port));
    return f;
}

// queue-size=N: a power of two from `lo` to kMaxQueueSize (QueueNumMax).
Result<uint16_t> parse_queue_size(std::string_view spec, std::string_view text, unsigned long lo) {
    auto n = parse_number(spec, "queue-size", text, lo, kMaxQueueSize);
    if (!n || (*n & (*n - 1)) != 0)
        return fail(ErrorCode::InvalidArgument,
                    "\"{}\": queue-size must be a power of two from {} to {}", spec, lo,
                    kMaxQueueSize);
    return static_cast<uint16_t>(*n);
}

Result<uint64_t> parse_u64(std::string_view spec, std::string_view key, std::string_view v) {
    uint64_t n = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (v.empty() || ec != std::errc() || p != v.data() + v.size())
        return fail(ErrorCode::InvalidArgument, "\"{}\": {} must be a number", spec, key);
    return n;
}

// A rate limit's value: bytes (with K/M/G suffixes, powers of 1024) or a plain count, at most
// 2^40 per second (a terabyte a second is no limit).
Result<uint64_t> parse_rate(std::string_view spec, const char* key, std::string_view v,
                            bool bytes) {
    constexpr uint64_t kMaxRate = uint64_t{1} << 40;
    uint64_t n = 0;
    const bool digits =
        !v.empty() && std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (bytes && !digits) {  // a suffix: 10M is 10 MiB; a plain number is bytes
        auto s = parse_size(v);
        if (!s)
            return fail(ErrorCode::InvalidArgument, "\"{}\": {}: {}", spec, key,
                        s.error().message());
        n = *s;
    } else {
        const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (v.empty() || ec != std::errc() || end != v.data() + v.size())
            return fail(ErrorCode::InvalidArgument, "\"{}\": {} must be a number", spec, key);
    }
    if (n == 0 || n > kMaxRate)
        return fail(ErrorCode::InvalidArgument, "\"{}\": {} must be 1 to {}", spec, key, kMaxRate);
    return n;
}

// One rate-limit option, KEY=VALUE with KEY bps, OPS (iops or pps), bps-burst or OPS-burst:
// sets it in `l`. False when `part` is none of them.
Result<bool> parse_limit(std::string_view spec, std::string_view part, std::string_view ops,
                         IoLimits& l) {
    const size_t eq = part.find('=');
    if (eq == std::string_view::npos) return false;
    const std::string_view key = part.substr(0, eq), v = part.substr(eq + 1);
    const std::string k(key);
    if (key == "bps") {
        VIREO_TRY_ASSIGN(l.bps, parse_rate(spec, k.c_str(), v, true));
    } else if (key == ops) {
        VIREO_TRY_ASSIGN(l.ops, parse_rate(spec, k.c_str(), v, false));
    } else if (key == "bps-burst") {
        VIREO_TRY_ASSIGN(l.bps_burst, parse_rate(spec, k.c_str(), v, true));
    } else if (key.size() == ops.size() + 6 && key.substr(0, ops.size()) == ops &&
               key.substr(ops.size()) == "-burst") {
        VIREO_TRY_ASSIGN(l.ops_burst, parse_rate(spec, k.c_str(), v, false));
    } else {
        return false;
    }
    return true;
}

// What a device's limits are called: a disk has one set (operations are "iops"), a network
// device one per direction ("pps"; rx- and tx- prefixes, none for both).
struct LimitKeys {
    std::string_view ops;
    std::string_view known;  // for the error messages
};
constexpr LimitKeys kDiskLimits{"iops", "bps=RATE, iops=N, bps-burst=SIZE, iops-burst=N"};
constexpr LimitKeys kNetLimits{"pps",
                               "[rx-|tx-]bps=RATE, [rx-|tx-]pps=N, [rx-|tx-]bps-burst=SIZE, "
                               "[rx-|tx-]pps-burst=N"};

// One limit option of a device into `rx` (a disk's only set) and `tx` (null for a disk). False
// when `part` is not a limit.
Result<bool> parse_limit_part(std::string_view spec, std::string_view part, const LimitKeys& keys,
                              IoLimits& rx, IoLimits* tx) {
    if (tx == nullptr) return parse_limit(spec, part, keys.ops, rx);
    if (part.rfind("rx-", 0) == 0) return parse_limit(spec, part.substr(3), keys.ops, rx);
    if (part.rfind("tx-", 0) == 0) return parse_limit(spec, part.substr(3), keys.ops, *tx);
    VIREO_TRY_ASSIGN(const bool limit, parse_limit(spec, part, keys.ops, rx));
    if (limit) (void)parse_limit(spec, part, keys.ops, *tx);
    return limit;
}

// A burst is spent on top of a rate: alone it would limit nothing.
Result<void> check_bursts(std::string_view spec, const LimitKeys& keys, const IoLimits& rx,
                          const IoLimits* tx) {
    for (auto [l, prefix] : {std::pair{&rx, std::string_view(tx != nullptr ? "rx-" : "")},
                             std::pair{tx, std::string_view("tx-")}}) {
        if (l == nullptr) break;
        if (l->bps_burst != 0 && l->bps == 0)
            return fail(ErrorCode::InvalidArgument, "\"{}\": {}bps-burst needs {}bps (a rate)",
                        spec, prefix, prefix);
        if (l->ops_burst != 0 && l->ops == 0)
            return fail(ErrorCode::InvalidArgument, "\"{}\": {}{}-burst needs {}{} (a rate)", spec,
                        prefix, keys.ops, prefix, keys.ops);
    }
    return ok();
}

// A run-time limit text: a comma-separated list of limits, or "none".
Result<void> parse_limits(std::string_view text, const LimitKeys& keys, IoLimits& rx,
                          IoLimits* tx) {
    if (text == "none") return ok();
    for (const std::string_view part : split(text, ',')) {
        VIREO_TRY_ASSIGN(const bool limit, parse_limit_part(text, part, keys, rx, tx));
        if (!limit)
            return fail(ErrorCode::InvalidArgument,
                        "\"{}\": unknown limit \"{}\" (known: {}; or none)", text, part,
                        keys.known);
    }
    return check_bursts(text, keys, rx, tx);
}

std::string format_limits(const IoLimits& l, std::string_view prefix, std::string_view ops) {
    std::string out;
    auto add = [&](std::string_view key, uint64_t v) {
        if (v != 0) out += fmt::format("{}{}{}={}", out.empty() ? "" : ",", prefix, key, v);
    };
    add("bps", l.bps);
    add(ops, l.ops);
    add("bps-burst", l.bps_burst);
    add(fmt::format("{}-burst", ops), l.ops_burst);
    return out;
}

}  // namespace

Result<DiskOptions> parse_disk_option(std::string_view spec) {
    DiskOptions o;
    bool first = true;
    for (const std::string_view part : split(spec, ',')) {
        if (first) {
            if (part.empty())
                return fail(ErrorCode::InvalidArgument,
                            "\"{}\": expected PATH[,readonly][,serial=ID]", spec);
            o.path = part;
            first = false;
        } else if (part == "readonly" || part == "ro") {
            o.readonly = true;
        } else if (part.rfind("serial=", 0) == 0) {
            o.serial = part.substr(7);
            if (o.serial.empty() || o.serial.size() > kBlkIdBytes)
                return fail(ErrorCode::InvalidArgument, "\"{}\": serial must be 1 to {} characters",
                            spec, kBlkIdBytes);
            for (char c : o.serial)
                if (c < 0x21 || c > 0x7e)
                    return fail(ErrorCode::InvalidArgument,
                                "\"{}\": serial must be printable ASCII without spaces", spec);
        } else if (part.rfind("queue-size=", 0) == 0) {
            VIREO_TRY_ASSIGN(o.queue_size, parse_queue_size(spec, part.substr(11), 2));
        } else {
            VIREO_TRY_ASSIGN(const bool limit,
                             parse_limit_part(spec, part, kDiskLimits, o.limits, nullptr));
            if (!limit)
                return fail(ErrorCode::InvalidArgument,
                            "\"{}\": unknown option \"{}\" (known: readonly, serial=ID, "
                            "queue-size=N, {})",
                            spec, part, kDiskLimits.known);
        }
    }
    VIREO_TRY(check_bursts(spec, kDiskLimits, o.limits, nullptr));
    return o;
}

bool is_user_net(std::string_view spec) noexcept {
    return spec.substr(0, spec.find(',')) == "user";
}

uint64_t default_vmm_pool_for(const std::vector<std::string>& nets, bool vsock) noexcept {
    const auto user_nets = std::count_if(nets.begin(), nets.end(),
                                         [](const std::string& n) { return is_user_net(n); });
    return default_vmm_pool(vsock, static_cast<uint64_t>(user_nets));
}

Result<NetOptions> parse_net_option(std::string_view spec) {
    NetOptions o;
    bool first = true;
    for (const std::string_view part : split(spec, ',')) {
        if (first) {
            first = false;
            if (is_user_net(spec)) {
                o.kind = NetOptions::Kind::User;
            } else if (part.rfind("tap=", 0) == 0) {
                o.kind = NetOptions::Kind::Tap;
                o.tap = part.substr(4);
                if (o.tap.empty() || o.tap.size() >= IFNAMSIZ ||
                    o.tap.find('/') != std::string::npos)
                    return fail(ErrorCode::InvalidArgument,
                                "\"{}\": the tap name must be 1 to {} characters without '/'", spec,
                                IFNAMSIZ - 1);
            } else {
                return fail(ErrorCode::InvalidArgument,
                            "\"{}\": expected user[,hostfwd=...] or tap=NAME", spec);
            }
        } else if (part.rfind("hostfwd=", 0) == 0) {
            if (o.kind != NetOptions::Kind::User)
                return fail(ErrorCode::InvalidArgument,
                            "\"{}\": hostfwd is for user-mode networking only", spec);
            VIREO_TRY_ASSIGN(auto f, parse_hostfwd(spec, part.substr(8)));
            o.forwards.push_back(f);
        } else if (part.rfind("mac=", 0) == 0) {
            auto mac = virtio::parse_mac(part.substr(4));
            if (!mac)
                return fail(ErrorCode::InvalidArgument, "\"{}\": {}", spec, mac.error().message());
            o.mac = *mac;
        } else if (part.rfind("mtu=", 0) == 0) {
            VIREO_TRY_ASSIGN(auto n, parse_number(spec, "mtu", part.substr(4), 68, 65520));
            o.mtu = static_cast<uint16_t>(n);
        } else if (part.rfind("queue-size=", 0) == 0) {
            VIREO_TRY_ASSIGN(o.queue_size, parse_queue_size(spec, part.substr(11), 64));
        } else {
            VIREO_TRY_ASSIGN(const bool limit,
                             parse_limit_part(spec, part, kNetLimits, o.rx_limits, &o.tx_limits));
            if (!limit)
                return fail(ErrorCode::InvalidArgument,
                            "\"{}\": unknown option \"{}\" (known: hostfwd=, mac=, mtu=, "
                            "queue-size=, {})",
                            spec, part, kNetLimits.known);
        }
    }
    VIREO_TRY(check_bursts(spec, kNetLimits, o.rx_limits, &o.tx_limits));
    return o;
}

Result<IoLimits> parse_disk_limits(std::string_view text) {
    IoLimits l;
    VIREO_TRY(parse_limits(text, kDiskLimits, l, nullptr));
    return l;
}

Result<std::pair<IoLimits, IoLimits>> parse_net_limits(std::string_view text) {
    IoLimits rx, tx;
    VIREO_TRY(parse_limits(text, kNetLimits, rx, &tx));
    return std::pair{rx, tx};
}

std::string format_disk_limits(const IoLimits& l) {
    return l.any() ? format_limits(l, "", "iops") : "none";
}

std::string format_net_limits(const IoLimits& rx, const IoLimits& tx) {
    if (!rx.any() && !tx.any()) return "none";
    if (rx == tx) return format_limits(rx, "", "pps");
    std::string r = format_limits(rx, "rx-", "pps"), t = format_limits(tx, "tx-", "pps");
    return r.empty() ? t : t.empty() ? r : r + "," + t;
}

Result<VsockOptions> parse_vsock_option(std::string_view spec) {
    VsockOptions o;
    bool have_cid = false;
    for (const std::string_view part : split(spec, ',')) {
        if (part.rfind("cid=", 0) == 0) {
            VIREO_TRY_ASSIGN(o.cid, parse_u64(spec, "cid", part.substr(4)));
            if (o.cid < 3 || o.cid > 0xffffffffu)
                return fail(ErrorCode::InvalidArgument,
                            "\"{}\": cid must be from 3 to 4294967295 (0-2 are reserved)", spec);
            have_cid = true;
        } else if (part.rfind("socket=", 0) == 0) {
            o.socket = part.substr(7);
        } else {
            return fail(ErrorCode::InvalidArgument,
                        "\"{}\": unknown option \"{}\" (expected cid=N,socket=PATH)", spec, part);
        }
    }
    if (!have_cid || o.socket.empty())
        return fail(ErrorCode::InvalidArgument, "\"{}\": expected cid=N,socket=PATH", spec);
    // Guest connections go to PATH_<port>: leave room for the longest port.
    if (o.socket.size() + 11 >= sizeof(sockaddr_un::sun_path))
        return fail(ErrorCode::InvalidArgument,
                    "\"{}\": socket path is {} bytes; at most {} fit a Unix socket address "
                    "with the _PORT suffix",
                    spec, o.socket.size(), sizeof(sockaddr_un::sun_path) - 12);
    return o;
}

Result<ShmOptions> parse_shm_option(std::string_view spec) {
    ShmOptions o;
    bool have_size = false, have_fds = false;
    const auto fields = split(spec, ',');
    for (size_t i = 0; i < fields.size(); ++i) {
        const std::string_view f = fields[i];
        const size_t eq = f.find('=');
        const std::string_view key = f.substr(0, eq);
        const std::string_view value = eq == std::string_view::npos ? "" : f.substr(eq + 1);
        if (i == 0 && eq == std::string_view::npos) {
            if (f.empty())
                return fail(ErrorCode::InvalidArgument, "\"{}\": no PATH (or fd=N) first", spec);
            o.path = std::string(f);
        } else if (f == "readonly") {
            o.readonly = true;
        } else if (key == "size" && eq != std::string_view::npos) {
            auto n = parse_size(value);
            if (!n || !valid_shm_size(*n))
                return fail(ErrorCode::InvalidArgument,
                            "\"{}\": size must be a power of two from 4K to 64G (e.g. 16M)", spec);
            o.size = *n;
            have_size = true;
        } else if (key == "name" && eq != std::string_view::npos) {
            const bool good = !value.empty() && value.size() <= 64 &&
                              std::all_of(value.begin(), value.end(), [](char c) {
                                  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' ||
                                         c == '_' || c == '.';
                              });
            if (!good)
                return fail(ErrorCode::InvalidArgument,
                            "\"{}\": name must be 1 to 64 letters, digits, '-', '_' or '.'", spec);
            o.name = std::string(value);
        } else if (key == "fd" && eq != std::string_view::npos) {
            VIREO_TRY_ASSIGN(auto n, parse_number(spec, "fd", value, 3, 1u << 20));
            o.fd = static_cast<int>(n);
        } else if (key == "peers" && eq != std::string_view::npos) {
            VIREO_TRY_ASSIGN(auto n, parse_number(spec, "peers", value, 1, kMaxShmPeers));
            o.peers = static_cast<uint16_t>(n);
            o.doorbells = true;
        } else if (key == "peer" && eq != std::string_view::npos) {
            VIREO_TRY_ASSIGN(auto n, parse_number(spec, "peer", value, 0, kMaxShmPeers - 1));
            o.peer = static_cast<uint16_t>(n);
        } else if (key == "vectors" && eq != std::string_view::npos) {
            VIREO_TRY_ASSIGN(auto n, parse_number(spec, "vectors", value, 1, kMaxShmVectors));
            o.vectors = static_cast<uint16_t>(n);
        } else if (key == "names" && eq != std::string_view::npos) {
            o.names.clear();
            for (const std::string_view n : split(value, ':')) {
                if (n.empty() || n.size() > 64)
                    return fail(ErrorCode::InvalidArgument, "\"{}\": names: a bad domain name",
                                spec);
                o.names.emplace_back(n);
            }
        } else if (key == "doorbell-fds" && eq != std::string_view::npos) {
            VIREO_TRY_ASSIGN(auto n, parse_number(spec, "doorbell-fds", value, 3, 1u << 20));
            o.doorbell_fds = static_cast<int>(n);
            have_fds = true;
        } else {
            return fail(ErrorCode::InvalidArgument,
                        "\"{}\": unknown option \"{}\" (PATH,size=N[,readonly][,name=NAME])", spec,
                        f);
        }
    }
    if (!have_size) return fail(ErrorCode::InvalidArgument, "\"{}\": size=N is missing", spec);
    if (o.path.empty() == (o.fd < 0))
        return fail(ErrorCode::InvalidArgument, "\"{}\": give a PATH first (or fd=N), not both",
                    spec);
    if (!o.path.empty() && (o.doorbells || have_fds || o.peer != 0 || o.vectors != 1))
        return fail(ErrorCode::InvalidArgument,
                    "\"{}\": doorbells (peers=, peer=, vectors=, doorbell-fds=) come only with a "
                    "region vireo up hands down (fd=N)",
                    spec);
    if (o.doorbells != have_fds)
        return fail(ErrorCode::InvalidArgument, "\"{}\": peers= and doorbell-fds= go together",
                    spec);
    if (!o.names.empty() && o.names.size() != (o.doorbells ? o.peers : o.names.size()))
        return fail(ErrorCode::InvalidArgument, "\"{}\": {} names for {} peers", spec,
                    o.names.size(), o.peers);
    if (!o.names.empty() && o.peer >= o.names.size())
        return fail(ErrorCode::InvalidArgument, "\"{}\": peer {} of {} names", spec, o.peer,
                    o.names.size());
    if (o.doorbells && o.peer >= o.peers)
        return fail(ErrorCode::InvalidArgument, "\"{}\": peer {} is not below peers={}", spec,
                    o.peer, o.peers);
    return o;
}

}  // namespace vireo::domain
