// The bytes of one state section: fixed-width little-endian fields in a fixed order, written
// by a device's save and read back by its restore. The decoder is the parser of untrusted
// input: every read is bounds-checked, a length-prefixed field is capped by its caller, and
// finish() refuses a section that was short or had bytes left over, naming the section.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.hpp"

namespace vireo::snapshot {

class Encoder {
  public:
    void u8(uint8_t v) { out_.push_back(v); }
    void u16(uint16_t v) { le(v, 2); }
    void u32(uint32_t v) { le(v, 4); }
    void u64(uint64_t v) { le(v, 8); }
    void boolean(bool v) { u8(v ? 1 : 0); }
    /// A u32 length, then the bytes.
    void bytes(std::span<const uint8_t> b);
    const std::vector<uint8_t>& data() const noexcept { return out_; }

  private:
    void le(uint64_t v, int n) {
        for (int i = 0; i < n; ++i)
            out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
    }
    std::vector<uint8_t> out_;
};

class Decoder {
  public:
    /// `what` names the section in errors ("UART", "vCPU 3").
    Decoder(std::span<const uint8_t> in, std::string what) : in_(in), what_(std::move(what)) {}
    uint8_t u8() { return static_cast<uint8_t>(le(1)); }
    uint16_t u16() { return static_cast<uint16_t>(le(2)); }
    uint32_t u32() { return static_cast<uint32_t>(le(4)); }
    uint64_t u64() { return le(8); }
    /// 0 or 1; anything else makes the section malformed.
    bool boolean();
    /// A length-prefixed field of at most `max` bytes (longer: malformed, nothing read).
    std::span<const uint8_t> bytes(size_t max);
    /// A value the caller found out of range (an index past a table, a size over a limit).
    void invalid(const char* field);
    /// Every field read, nothing short, nothing left over.
    Result<void> finish() const;
    bool ok() const noexcept { return error_.empty(); }

  private:
    uint64_t le(size_t n);
    std::span<const uint8_t> in_;
    size_t pos_ = 0;
    std::string what_;
    std::string error_;
};

/// One field list for both directions: a section's layout is written once, as
///   template <class F, class S> void fields(F& f, S& s) { f.u64(s.rip); f.flag(s.l); ... }
/// and run with Save (S const: encode) or Load (decode), so that the two cannot disagree on
/// order or width. Load's checks mark the decoder invalid, as Decoder's own do.
struct Save {
    static constexpr bool kLoading = false;
    Encoder& e;
    void u8(const uint8_t& v) { e.u8(v); }
    void u16(const uint16_t& v) { e.u16(v); }
    void u32(const uint32_t& v) { e.u32(v); }
    void u64(const uint64_t& v) { e.u64(v); }
    void flag(const bool& v) { e.boolean(v); }
};
struct Load {
    static constexpr bool kLoading = true;
    Decoder& d;
    void u8(uint8_t& v) { v = d.u8(); }
    void u16(uint16_t& v) { v = d.u16(); }
    void u32(uint32_t& v) { v = d.u32(); }
    void u64(uint64_t& v) { v = d.u64(); }
    void flag(bool& v) { v = d.boolean(); }
};

}  // namespace vireo::snapshot
