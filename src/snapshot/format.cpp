#include "snapshot/format.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/checked.hpp"
#include "snapshot/le.hpp"

namespace vireo::snapshot {

namespace {

using le::get32;
using le::get64;
using le::put32;
using le::put64;

// Header: magic[8] version u32, header_bytes u32, sections u32, flags u32, crc u32 (of the
// 64 bytes with this field zero), reserved to 64.
constexpr size_t kHdrVersion = 8, kHdrSize = 12, kHdrSections = 16, kHdrFlags = 20, kHdrCrc = 24;
// Section header: tag u32, version u32, flags u32, crc u32, offset u64, length u64.
constexpr size_t kSecTag = 0, kSecVersion = 4, kSecFlags = 8, kSecCrc = 12, kSecOffset = 16,
                 kSecLength = 24;

// A section header's 32 bytes.
void put_section(uint8_t* sh, const SectionInfo& s) {
    put32(sh + kSecTag, s.tag);
    put32(sh + kSecVersion, s.version);
    put32(sh + kSecFlags, s.flags);
    put32(sh + kSecCrc, s.crc);
    put64(sh + kSecOffset, s.offset);
    put64(sh + kSecLength, s.length);
}

uint32_t header_crc(std::span<const uint8_t, kHeaderBytes> h) {
    uint8_t copy[kHeaderBytes];
    std::memcpy(copy, h.data(), kHeaderBytes);
    put32(copy + kHdrCrc, 0);
    return crc32(copy);
}

}  // namespace

uint32_t crc32(std::span<const uint8_t> bytes) {
    uLong c = ::crc32(0L, Z_NULL, 0);
    // zlib takes at most UINT_MAX bytes a call.
    while (!bytes.empty()) {
        const size_t n = std::min<size_t>(bytes.size(), 1u << 30);
        c = ::crc32(c, bytes.data(), static_cast<uInt>(n));
        bytes = bytes.subspan(n);
    }
    return static_cast<uint32_t>(c);
}

std::string tag_name(uint32_t t) {
    std::string s;
    for (int i = 0; i < 4; ++i) {
        const char c = static_cast<char>((t >> (8 * i)) & 0xff);
        s += (c >= 0x20 && c < 0x7f) ? c : '?';
    }
    return s;
}

Source memory_source(std::span<const uint8_t> bytes) {
    Source s;
    s.size = bytes.size();
    s.read = [bytes](uint64_t offset, std::span<uint8_t> out) {
        if (offset > bytes.size() || out.size() > bytes.size() - offset) return false;
        if (!out.empty()) std::memcpy(out.data(), bytes.data() + offset, out.size());
        return true;
    };
    return s;
}

Result<Source> file_source(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return fail_errno(errno, "snapshot: fstat");
    if (!S_ISREG(st.st_mode))
        return fail(ErrorCode::InvalidArgument, "snapshot: not a regular file");
    Source s;
    s.size = static_cast<uint64_t>(st.st_size);
    s.read = [fd](uint64_t offset, std::span<uint8_t> out) {
        size_t done = 0;
        while (done < out.size()) {
            const ssize_t n = ::pread(fd, out.data() + done, out.size() - done,
                                      static_cast<off_t>(offset + done));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return false;
            done += static_cast<size_t>(n);
        }
        return true;
    };
    return s;
}

Result<Reader> Reader::open(Source src) {
    if (src.size < kHeaderBytes)
        return fail(ErrorCode::InvalidArgument,
                    "not a vireo snapshot: {} bytes, shorter than the {}-byte header", src.size,
                    kHeaderBytes);
    uint8_t h[kHeaderBytes];
    if (!src.read(0, h)) return fail(ErrorCode::System, "snapshot: cannot read the header");
    if (std::memcmp(h, kMagic, sizeof kMagic) != 0)
        return fail(ErrorCode::InvalidArgument, "not a vireo snapshot (no VIREOSNP magic)");
    const uint32_t version = get32(h + kHdrVersion);
    if (version != kFormatVersion)
        return fail(ErrorCode::Unsupported,
                    "snapshot format version {}; this vireo reads version {}", version,
                    kFormatVersion);
    if (get32(h + kHdrSize) != kHeaderBytes || get32(h + kHdrFlags) != 0)
        return fail(ErrorCode::InvalidArgument, "snapshot: malformed header");
    if (header_crc(std::span<const uint8_t, kHeaderBytes>(h)) != get32(h + kHdrCrc))
        return fail(ErrorCode::InvalidArgument, "snapshot: the header's checksum does not match");
    const uint32_t count = get32(h + kHdrSections);
    if (count == 0 || count > kMaxSections)
        return fail(ErrorCode::InvalidArgument, "snapshot: {} sections (1 to {} allowed)", count,
                    kMaxSections);

    Reader r;
    r.sections_.reserve(count);
    r.payloads_.reserve(count);
    uint64_t at = kHeaderBytes;  // the next section header
    for (uint32_t i = 0; i < count; ++i) {
        const auto hdr_end = checked_add(at, kSectionHeaderBytes);
        if (!hdr_end || *hdr_end > src.size)
            return fail(ErrorCode::InvalidArgument,
                        "snapshot: truncated (section {} of {} is missing)", i + 1, count);
        uint8_t sh[kSectionHeaderBytes];
        if (!src.read(at, sh))
            return fail(ErrorCode::System, "snapshot: cannot read section {}", i + 1);
        SectionInfo s;
        s.tag = get32(sh + kSecTag);
        s.version = get32(sh + kSecVersion);
        s.flags = get32(sh + kSecFlags);
        s.crc = get32(sh + kSecCrc);
        s.offset = get64(sh + kSecOffset);
        s.length = get64(sh + kSecLength);
        const std::string name = tag_name(s.tag);
        if ((s.flags & ~kSectionMapped) != 0)
            return fail(ErrorCode::Unsupported, "snapshot: section {} has unknown flags {:#x}",
                        name, s.flags);
        const bool mapped = (s.flags & kSectionMapped) != 0;
        // An unmapped payload follows its header; a mapped one is at its aligned offset, past
        // everything before it.
        if (!mapped && s.offset != *hdr_end)
            return fail(ErrorCode::InvalidArgument, "snapshot: section {} is out of place", name);
        if (mapped && (!is_aligned(s.offset, kMappedAlign) || s.offset < *hdr_end || s.crc != 0))
            return fail(ErrorCode::InvalidArgument,
                        "snapshot: mapped section {} is misplaced or misaligned", name);
        const auto end = checked_add(s.offset, s.length);
        if (!end || *end > src.size)
            return fail(ErrorCode::InvalidArgument,
                        "snapshot: truncated (section {} needs {} bytes at offset {}; the file "
                        "has {})",
                        name, s.length, s.offset, src.size);
        if (!mapped && s.length > kMaxSectionBytes)
            return fail(ErrorCode::InvalidArgument, "snapshot: section {} is {} bytes (over {})",
                        name, s.length, kMaxSectionBytes);
        if (r.find(s.tag) != nullptr)
            return fail(ErrorCode::InvalidArgument, "snapshot: section {} appears twice", name);
        std::vector<uint8_t> payload;
        if (!mapped) {
            payload.resize(static_cast<size_t>(s.length));
            if (!payload.empty() && !src.read(s.offset, payload))
                return fail(ErrorCode::System, "snapshot: cannot read section {}", name);
            if (crc32(payload) != s.crc)
                return fail(ErrorCode::InvalidArgument,
                            "snapshot: section {} is corrupted (its checksum does not match)",
                            name);
        }
        const bool last = s.tag == kEndTag;
        if (last && i + 1 != count)
            return fail(ErrorCode::InvalidArgument,
                        "snapshot: the end marker comes before the last section");
        if (!last && i + 1 == count)
            return fail(ErrorCode::InvalidArgument, "snapshot: truncated (no end marker)");
        if (last && s.length != 0)
            return fail(ErrorCode::InvalidArgument, "snapshot: malformed end marker");
        // The next header: after this payload, padded to 8.
        const auto next = align_up(*end, 8);
        if (!next) return fail(ErrorCode::InvalidArgument, "snapshot: section {} too long", name);
        at = *next;
        r.sections_.push_back(s);
        r.payloads_.push_back(std::move(payload));
    }
    return r;
}

const SectionInfo* Reader::find(uint32_t t) const noexcept {
    for (const auto& s : sections_)
        if (s.tag == t) return &s;
    return nullptr;
}

std::span<const uint8_t> Reader::bytes(const SectionInfo& s) const {
    const auto i = static_cast<size_t>(&s - sections_.data());
    if (i >= payloads_.size()) return {};
    return payloads_[i];
}

Result<void> Writer::put(uint64_t offset, std::span<const uint8_t> bytes) {
    if (buffer_ != nullptr) {
        if (offset > kMaxSectionBytes * 4 || bytes.size() > kMaxSectionBytes * 4)
            return fail(ErrorCode::OutOfRange, "snapshot: state too long for memory");
        if (buffer_->size() < offset + bytes.size()) buffer_->resize(offset + bytes.size());
        std::copy(bytes.begin(), bytes.end(), buffer_->begin() + static_cast<ptrdiff_t>(offset));
        return {};
    }
    size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::pwrite(fd_, bytes.data() + done, bytes.size() - done,
                                   static_cast<off_t>(offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return fail_errno(n < 0 ? errno : ENOSPC, "snapshot: write");
        done += static_cast<size_t>(n);
    }
    return {};
}

Result<void> Writer::add(uint32_t t, uint32_t version, std::span<const uint8_t> payload) {
    if (finished_ || count_ + 1 >= kMaxSections)
        return fail(ErrorCode::BadState, "snapshot: no more sections");
    if (payload.size() > kMaxSectionBytes)
        return fail(ErrorCode::OutOfRange, "snapshot: section {} is {} bytes (over {})",
                    tag_name(t), payload.size(), kMaxSectionBytes);
    uint8_t sh[kSectionHeaderBytes] = {};
    put_section(sh, {t, version, 0, end_ + kSectionHeaderBytes, payload.size(), crc32(payload)});
    VIREO_TRY(put(end_, sh));
    VIREO_TRY(put(end_ + kSectionHeaderBytes, payload));
    const auto next = align_up(end_ + kSectionHeaderBytes + payload.size(), 8);
    if (!next) return fail(ErrorCode::OutOfRange, "snapshot: file too long");
    end_ = *next;
    ++count_;
    return {};
}

Result<uint64_t> Writer::add_mapped(uint32_t t, uint32_t version, uint64_t length) {
    if (finished_ || count_ + 1 >= kMaxSections)
        return fail(ErrorCode::BadState, "snapshot: no more sections");
    if (buffer_ != nullptr)
        return fail(ErrorCode::Unsupported, "snapshot: no mapped section in memory");
    const auto offset = align_up(end_ + kSectionHeaderBytes, kMappedAlign);
    const auto end = offset ? checked_add(*offset, length) : std::nullopt;
    const auto next = end ? align_up(*end, 8) : std::nullopt;
    if (!next) return fail(ErrorCode::OutOfRange, "snapshot: file too long");
    uint8_t sh[kSectionHeaderBytes] = {};
    put_section(sh, {t, version, kSectionMapped, *offset, length, 0});
    VIREO_TRY(put(end_, sh));
    end_ = *next;
    ++count_;
    // The file covers the section even where the caller writes nothing (a hole).
    if (::ftruncate(fd_, static_cast<off_t>(end_)) != 0)
        return fail_errno(errno, "snapshot: extend the file");
    return *offset;
}

Result<void> Writer::finish() {
    if (finished_) return fail(ErrorCode::BadState, "snapshot: finished already");
    VIREO_TRY(add(kEndTag, 1, {}));
    finished_ = true;
    uint8_t h[kHeaderBytes] = {};
    std::memcpy(h, kMagic, sizeof kMagic);
    put32(h + kHdrVersion, kFormatVersion);
    put32(h + kHdrSize, kHeaderBytes);
    put32(h + kHdrSections, count_);
    put32(h + kHdrFlags, 0);
    put32(h + kHdrCrc, header_crc(std::span<const uint8_t, kHeaderBytes>(h)));
    VIREO_TRY(put(0, h));
    if (buffer_ != nullptr) {
        buffer_->resize(end_);
        return {};
    }
    if (::ftruncate(fd_, static_cast<off_t>(end_)) != 0)
        return fail_errno(errno, "snapshot: set the file's size");
    return {};
}

}  // namespace vireo::snapshot
