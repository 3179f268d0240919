#include "snapshot/state.hpp"

#include <limits>

namespace vireo::snapshot {

void Encoder::bytes(std::span<const uint8_t> b) {
    // Callers hold sections far below 4 GiB (kMaxSectionBytes); a longer field is a bug.
    u32(b.size() > std::numeric_limits<uint32_t>::max() ? std::numeric_limits<uint32_t>::max()
                                                        : static_cast<uint32_t>(b.size()));
    out_.insert(out_.end(), b.begin(), b.end());
}

uint64_t Decoder::le(size_t n) {
    if (!error_.empty()) return 0;
    if (in_.size() - pos_ < n) {
        error_ = "truncated";
        pos_ = in_.size();
        return 0;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i)
        v |= static_cast<uint64_t>(in_[pos_ + i]) << (8 * i);
    pos_ += n;
    return v;
}

bool Decoder::boolean() {
    const uint8_t v = u8();
    if (v > 1) invalid("a flag");
    return v == 1;
}

std::span<const uint8_t> Decoder::bytes(size_t max) {
    const uint32_t n = u32();
    if (!error_.empty()) return {};
    if (n > max) {
        error_ = "a field of " + std::to_string(n) + " bytes (at most " + std::to_string(max) + ")";
        return {};
    }
    if (in_.size() - pos_ < n) {
        error_ = "truncated";
        pos_ = in_.size();
        return {};
    }
    auto out = in_.subspan(pos_, n);
    pos_ += n;
    return out;
}

void Decoder::invalid(const char* field) {
    if (error_.empty()) error_ = std::string("an invalid value for ") + field;
}

Result<void> Decoder::finish() const {
    if (!error_.empty())
        return fail(ErrorCode::InvalidArgument, "snapshot: {} state is malformed: {}", what_,
                    error_);
    if (pos_ != in_.size())
        return fail(ErrorCode::InvalidArgument,
                    "snapshot: {} state is malformed: {} bytes left over", what_,
                    in_.size() - pos_);
    return {};
}

}  // namespace vireo::snapshot
