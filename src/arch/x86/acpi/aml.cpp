#include "arch/x86/acpi/aml.hpp"

#include <cassert>

namespace vireo::arch::x86::aml {

namespace {
constexpr uint8_t kZeroOp = 0x00, kOneOp = 0x01, kOnesOp = 0xff, kBytePrefix = 0x0a,
                  kWordPrefix = 0x0b, kDWordPrefix = 0x0c, kStringPrefix = 0x0d,
                  kQWordPrefix = 0x0e, kNameOp = 0x08, kScopeOp = 0x10, kBufferOp = 0x11,
                  kPackageOp = 0x12, kExtOpPrefix = 0x5b, kDeviceOp = 0x82, kRootChar = 0x5c,
                  kDualNamePrefix = 0x2e, kMultiNamePrefix = 0x2f, kMethodOp = 0x14,
                  kNotifyOp = 0x86;

void append(Bytes& out, const Bytes& b) {
    out.insert(out.end(), b.begin(), b.end());
}

void put_le(Bytes& out, uint64_t v, int n) {
    for (int i = 0; i < n; ++i)
        out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// opcode(s) + PkgLength + body
Bytes with_pkg(std::initializer_list<uint8_t> ops, const Bytes& body) {
    Bytes out(ops);
    append(out, pkg_length(body.size()));
    append(out, body);
    return out;
}
}  // namespace

Bytes join(std::initializer_list<Bytes> terms) {
    Bytes out;
    for (const auto& t : terms)
        append(out, t);
    return out;
}

Bytes join(const std::vector<Bytes>& terms) {
    Bytes out;
    for (const auto& t : terms)
        append(out, t);
    return out;
}

Bytes pkg_length(size_t content_len) {
    // The length includes the PkgLength bytes themselves (ACPI 6.x, 20.2.4).
    size_t total = content_len + 1;
    if (total <= 0x3f) return {static_cast<uint8_t>(total)};
    for (size_t n = 2; n <= 4; ++n) {
        total = content_len + n;
        if (total < (size_t{1} << (4 + 8 * (n - 1)))) {
            Bytes out;
            out.push_back(static_cast<uint8_t>(((n - 1) << 6) | (total & 0x0f)));
            for (size_t i = 1; i < n; ++i)
                out.push_back(static_cast<uint8_t>(total >> (4 + 8 * (i - 1))));
            return out;
        }
    }
    assert(false && "AML package too large");
    return {};
}

Bytes name_string(std::string_view path) {
    Bytes out;
    if (!path.empty() && path[0] == '\\') {
        out.push_back(kRootChar);
        path.remove_prefix(1);
    }
    std::vector<std::string_view> segs;
    while (!path.empty()) {
        auto dot = path.find('.');
        segs.push_back(path.substr(0, dot));
        path = dot == std::string_view::npos ? std::string_view{} : path.substr(dot + 1);
    }
    if (segs.size() == 2) out.push_back(kDualNamePrefix);
    if (segs.size() > 2) {
        out.push_back(kMultiNamePrefix);
        out.push_back(static_cast<uint8_t>(segs.size()));
    }
    if (segs.empty()) out.push_back(0x00);  // NullName
    for (auto s : segs) {
        assert(s.size() >= 1 && s.size() <= 4);
        for (size_t i = 0; i < 4; ++i)
            out.push_back(static_cast<uint8_t>(i < s.size() ? s[i] : '_'));
    }
    return out;
}

Bytes integer(uint64_t v) {
    Bytes out;
    if (v == 0) return {kZeroOp};
    if (v == 1) return {kOneOp};
    if (v == ~uint64_t{0}) return {kOnesOp};
    if (v <= 0xff) {
        out.push_back(kBytePrefix);
        put_le(out, v, 1);
    } else if (v <= 0xffff) {
        out.push_back(kWordPrefix);
        put_le(out, v, 2);
    } else if (v <= 0xffffffff) {
        out.push_back(kDWordPrefix);
        put_le(out, v, 4);
    } else {
        out.push_back(kQWordPrefix);
        put_le(out, v, 8);
    }
    return out;
}

Bytes string(std::string_view s) {
    Bytes out;
    out.reserve(s.size() + 2);
    out.push_back(kStringPrefix);
    for (char c : s)
        out.push_back(static_cast<uint8_t>(c));
    out.push_back(0);
    return out;
}

Bytes eisa_id(std::string_view id) {
    assert(id.size() == 7);
    auto c = [&](size_t i) { return static_cast<uint32_t>(id[i] - 0x40) & 0x1f; };
    auto h = [&](size_t i) {
        char ch = id[i];
        return static_cast<uint32_t>(ch <= '9' ? ch - '0' : (ch & ~0x20) - 'A' + 10);
    };
    uint32_t v = (c(0) << 26) | (c(1) << 21) | (c(2) << 16) | (h(3) << 12) | (h(4) << 8) |
                 (h(5) << 4) | h(6);
    // Stored big-endian (byte-swapped) in a DWord.
    v = __builtin_bswap32(v);
    Bytes out{kDWordPrefix};
    put_le(out, v, 4);
    return out;
}

Bytes name(std::string_view path, const Bytes& value) {
    Bytes out{kNameOp};
    append(out, name_string(path));
    append(out, value);
    return out;
}

Bytes scope(std::string_view path, const std::vector<Bytes>& terms) {
    Bytes body = name_string(path);
    append(body, join(terms));
    return with_pkg({kScopeOp}, body);
}

Bytes device(std::string_view path, const std::vector<Bytes>& terms) {
    Bytes body = name_string(path);
    append(body, join(terms));
    return with_pkg({kExtOpPrefix, kDeviceOp}, body);
}

Bytes package(const std::vector<Bytes>& elements) {
    Bytes body{static_cast<uint8_t>(elements.size())};
    append(body, join(elements));
    return with_pkg({kPackageOp}, body);
}

Bytes resource_template(const std::vector<Bytes>& descriptors) {
    Bytes data = join(descriptors);
    data.push_back(0x79);  // End tag
    data.push_back(0x00);  // checksum 0: "treated as correct"
    Bytes body = integer(data.size());
    append(body, data);
    return with_pkg({kBufferOp}, body);
}

Bytes io(uint16_t base, uint8_t len) {
    Bytes out{0x47, 0x01};  // I/O port descriptor, 16-bit decode
    put_le(out, base, 2);
    put_le(out, base, 2);
    out.push_back(1);
    out.push_back(len);
    return out;
}

Bytes irq_no_flags(uint8_t irq) {
    Bytes out{0x22};
    put_le(out, uint64_t{1} << irq, 2);
    return out;
}

Bytes memory32_fixed(uint32_t base, uint32_t len) {
    Bytes out{0x86, 0x09, 0x00, 0x01};  // read/write
    put_le(out, base, 4);
    put_le(out, len, 4);
    return out;
}

Bytes interrupt(uint32_t gsi, bool level_triggered) {
    // Extended interrupt descriptor: consumer, edge/level, active high, exclusive, one GSI.
    uint8_t flags = 0x01 | (level_triggered ? 0 : 0x02);
    Bytes out{0x89, 0x06, 0x00, flags, 0x01};
    put_le(out, gsi, 4);
    return out;
}

namespace {
// Word (0x88), DWord (0x87) and QWord (0x8A) address space descriptors share one layout:
// type, general flags, type-specific flags, then granularity, min, max, translation offset
// and length, each `width` bytes.
Bytes address_space(uint8_t tag, int width, Space space, uint64_t min, uint64_t len) {
    assert(len > 0);
    Bytes out{tag};
    put_le(out, static_cast<uint64_t>(3 + 5 * width), 2);  // the length of what follows
    out.push_back(static_cast<uint8_t>(space));
    out.push_back(0x0c);  // producer, positive decode, min and max fixed
    // Memory: read-write, non-cacheable; I/O: both ISA and non-ISA ranges; bus numbers: none.
    out.push_back(space == Space::Memory ? 0x01 : space == Space::Io ? 0x03 : 0x00);
    put_le(out, 0, width);              // granularity (fixed windows)
    put_le(out, min, width);            // minimum
    put_le(out, min + len - 1, width);  // maximum
    put_le(out, 0, width);              // translation offset
    put_le(out, len, width);            // length
    return out;
}
}  // namespace

Bytes word_space(Space space, uint16_t min, uint16_t len) {
    return address_space(0x88, 2, space, min, len);
}

Bytes dword_space(Space space, uint32_t min, uint32_t len) {
    return address_space(0x87, 4, space, min, len);
}

Bytes qword_space(Space space, uint64_t min, uint64_t len) {
    return address_space(0x8a, 8, space, min, len);
}

Bytes method(std::string_view path, uint8_t args, const std::vector<Bytes>& terms) {
    assert(args <= 7);
    Bytes body = name_string(path);
    body.push_back(args);  // MethodFlags: ArgCount in bits 0-2, not serialized, SyncLevel 0
    append(body, join(terms));
    return with_pkg({kMethodOp}, body);
}

Bytes notify(std::string_view path, uint64_t value) {
    Bytes out{kNotifyOp};
    append(out, name_string(path));
    append(out, integer(value));
    return out;
}

}  // namespace vireo::arch::x86::aml
