// vireo's snapshot file: the container that save/restore writes and reads, and that live
// migration streams (docs/snapshot.md). A versioned header, then sections, each with a tag,
// its own version, a length and a CRC-32 of its bytes; a section may instead be "mapped": its
// bytes are page-aligned in the file, are not checksummed and are never read by the parser
// (guest memory: a restore maps it copy-on-write, lazily, so its size costs nothing up front).
//
//   offset 0   Header  (64 bytes)   magic "VIREOSNP", format version, header size, section
//                                   count, flags, CRC-32 of the header
//   64         Section (32 bytes) + payload, padded to 8; a mapped section's payload starts at
//              its own aligned offset, recorded in its header
//   ...        the last section is "END " with no payload
//
// Everything is little-endian. A file is refused, with one line saying why, when it is
// truncated, corrupted (a checksum), of another format version, has more than kMaxSections
// sections or an unmapped section over kMaxSectionBytes, has a section outside the file or
// overlapping another, or lacks the end marker. Every offset and length is checked arithmetic.
// The parser reads through a Source (a file, or memory for the fuzz target) and never trusts
// a length before checking it against the file's size.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "base/result.hpp"

namespace vireo::snapshot {

inline constexpr char kMagic[8] = {'V', 'I', 'R', 'E', 'O', 'S', 'N', 'P'};
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr uint32_t kHeaderBytes = 64;
inline constexpr uint32_t kSectionHeaderBytes = 32;
inline constexpr uint32_t kMaxSections = 4096;
inline constexpr uint64_t kMaxSectionBytes = 64ull << 20;  ///< unmapped sections are read whole
inline constexpr uint64_t kMappedAlign = 2ull << 20;       ///< huge-page aligned guest memory

/// A section's tag: four ASCII characters ("CPU0", "MEM0", "UART"...).
constexpr uint32_t tag(const char (&t)[5]) {
    return static_cast<uint32_t>(static_cast<uint8_t>(t[0])) |
           static_cast<uint32_t>(static_cast<uint8_t>(t[1])) << 8 |
           static_cast<uint32_t>(static_cast<uint8_t>(t[2])) << 16 |
           static_cast<uint32_t>(static_cast<uint8_t>(t[3])) << 24;
}
inline constexpr uint32_t kEndTag = tag("END ");
std::string tag_name(uint32_t t);

/// Section flags.
inline constexpr uint32_t kSectionMapped = 1u << 0;  ///< payload aligned, unchecked, not read

struct SectionInfo {
    uint32_t tag = 0;
    uint32_t version = 0;
    uint32_t flags = 0;
    uint64_t offset = 0;  ///< of the payload in the file
    uint64_t length = 0;
    uint32_t crc = 0;  ///< of the payload (0 for a mapped section)
};

/// Where the parser reads from: read(offset, out) fills `out` or fails; size() is the file's.
struct Source {
    uint64_t size = 0;
    std::function<bool(uint64_t offset, std::span<uint8_t> out)> read;
};
Source memory_source(std::span<const uint8_t> bytes);
/// A regular file (by descriptor, read with pread).
Result<Source> file_source(int fd);

/// A parsed file: its sections, each unmapped one's bytes checked against its CRC.
class Reader {
  public:
    static Result<Reader> open(Source source);

    const std::vector<SectionInfo>& sections() const noexcept { return sections_; }
    /// The one section with this tag, or nullptr.
    const SectionInfo* find(uint32_t t) const noexcept;
    /// An unmapped section's bytes (read and checked by open()).
    std::span<const uint8_t> bytes(const SectionInfo& s) const;

  private:
    std::vector<SectionInfo> sections_;
    std::vector<std::vector<uint8_t>> payloads_;  // parallel to sections_; empty for mapped
};

/// Writes a snapshot to a descriptor, sequentially; finish() adds the end marker and the
/// header. Mapped sections are reserved with their length and written by the caller at the
/// returned offset (only the pages it has: the file stays sparse).
class Writer {
  public:
    explicit Writer(int fd) : fd_(fd) {}
    /// Writes into `buffer` instead (the state a live migration sends; no mapped sections).
    explicit Writer(std::vector<uint8_t>* buffer) : buffer_(buffer) {}
    Result<void> add(uint32_t tag, uint32_t version, std::span<const uint8_t> payload);
    /// Reserves `length` bytes at a kMappedAlign-aligned offset; returns that offset.
    Result<uint64_t> add_mapped(uint32_t tag, uint32_t version, uint64_t length);
    Result<void> finish();

  private:
    Result<void> put(uint64_t offset, std::span<const uint8_t> bytes);
    int fd_ = -1;
    std::vector<uint8_t>* buffer_ = nullptr;
    uint64_t end_ = kHeaderBytes;
    uint32_t count_ = 0;
    bool finished_ = false;
};

/// CRC-32 (zlib's).
uint32_t crc32(std::span<const uint8_t> bytes);

}  // namespace vireo::snapshot
