// MAC addresses: parsed, printed, derived.
#include <cstdlib>
#include <cstring>

#include "base/split.hpp"
#include "virtio/net/backend.hpp"

namespace vireo::virtio {

Result<MacAddress> parse_mac(std::string_view text) {
    MacAddress mac{};
    if (text.size() != 17)
        return fail(ErrorCode::InvalidArgument, "MAC address \"{}\" is not XX:XX:XX:XX:XX:XX",
                    text);
    for (size_t i = 0; i < 6; ++i) {
        auto hex = [&](char c) -> int {
            if (c >= '0' && c <= '9') return c - '0';
            if (c >= 'a' && c <= 'f') return c - 'a' + 10;
            if (c >= 'A' && c <= 'F') return c - 'A' + 10;
            return -1;
        };
        const int hi = hex(text[i * 3]), lo = hex(text[i * 3 + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && text[i * 3 + 2] != ':'))
            return fail(ErrorCode::InvalidArgument, "MAC address \"{}\" is not XX:XX:XX:XX:XX:XX",
                        text);
        mac[i] = static_cast<uint8_t>(hi * 16 + lo);
    }
    if (mac[0] & 1)
        return fail(ErrorCode::InvalidArgument,
                    "MAC address \"{}\" is a multicast address (the first byte must be even)",
                    text);
    if (mac == MacAddress{})
        return fail(ErrorCode::InvalidArgument, "MAC address 00:00:00:00:00:00 is not usable");
    return mac;
}

std::string format_mac(const MacAddress& m) {
    return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4],
                       m[5]);
}

MacAddress derived_mac(std::string_view seed) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (char c : seed) {
        h ^= static_cast<uint8_t>(c);
        h *= 1099511628211ull;
    }
    // 02:xx: locally administered unicast; "VR" keeps vireo's addresses recognisable.
    return {0x02,
            0x56,
            0x52,
            static_cast<uint8_t>(h >> 16),
            static_cast<uint8_t>(h >> 8),
            static_cast<uint8_t>(h)};
}

}  // namespace vireo::virtio
