// The live-migration stream (docs/migration.md): what one vireo sends another over a connected
// socket (unix: or tcp:) to move a running domain. The receiver parses it; everything in it is
// untrusted and bounded here.
//
//   sender -> receiver                         receiver -> sender
//   hello: "VIREOMIG", version, token,
//          the domain's machine (spec JSON)
//                                              reply Accepted (machine built) or Error
//   records: Pages (guest pages' bytes),
//            Zeros (pages that are zero now),
//            State (the snapshot container
//            without RAM: snapshot/format.hpp)
//                                              reply Ready (state restored) or Error
//   record Go                                  reply Running (vCPUs start)
//   (Cancel instead, at any record: the receiver gives up)
//
// Little-endian throughout. A record is one byte of kind, then its fields: Pages: u64 guest
// address (4 KiB-aligned), u32 count (1 to kMaxPagesPerRecord), the pages; Zeros: u64 address,
// u32 count (1 to kMaxZeroPages); State: u32 length (at most kMaxState), the bytes. A reply is
// one byte of kind, u32 length (at most kMaxMessage), text. A page outside guest RAM, a count
// or length over its bound, an unknown kind, or a stream that ends early is refused with one
// line; nothing is written outside the receiver's guest RAM.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"
#include "memory/guest_memory.hpp"

namespace vireo::snapshot::stream {

inline constexpr char kMagic[8] = {'V', 'I', 'R', 'E', 'O', 'M', 'I', 'G'};
inline constexpr uint32_t kVersion = 1;
inline constexpr size_t kMaxToken = 256;
inline constexpr size_t kMaxSpec = size_t{256} << 10;
inline constexpr uint32_t kMaxPagesPerRecord = 256;           ///< 1 MiB of page bytes
inline constexpr uint32_t kMaxZeroPages = uint32_t{1} << 18;  ///< 1 GiB
inline constexpr uint32_t kMaxState = uint32_t{256} << 20;
inline constexpr size_t kMaxMessage = 4096;
inline constexpr uint64_t kPage = 4096;

enum class Record : uint8_t { Pages = 'P', Zeros = 'Z', State = 'S', Go = 'G', Cancel = 'C' };
enum class Reply : uint8_t { Accepted = 'A', Ready = 'R', Running = 'U', Error = 'E' };

/// Where the receiver reads: read() fills `out` whole or fails.
class Input {
  public:
    virtual ~Input() = default;
    virtual Result<void> read(std::span<uint8_t> out) = 0;
};
/// Where the sender writes: write() sends every byte of `iov` or fails.
class Output {
  public:
    virtual ~Output() = default;
    virtual Result<void> write(std::span<const iovec> iov) = 0;
    Result<void> write(std::span<const uint8_t> bytes) {
        const iovec v{const_cast<uint8_t*>(bytes.data()), bytes.size()};
        return write(std::span(&v, 1));
    }
};

/// A connected stream socket (blocking or not): each read or write fails after `timeout_ms`
/// without progress, or when `*cancel` becomes true (checked every 100 ms). MSG_NOSIGNAL: a
/// closed peer is an error, never SIGPIPE.
class Channel final : public Input, public Output {
  public:
    Channel(int fd, int timeout_ms, const std::atomic<bool>* cancel = nullptr)
        : fd_(fd), timeout_ms_(timeout_ms), cancel_(cancel) {}
    Result<void> read(std::span<uint8_t> out) override;
    using Output::write;
    Result<void> write(std::span<const iovec> iov) override;
    void set_timeout(int ms) noexcept { timeout_ms_ = ms; }
    uint64_t bytes_sent() const noexcept { return sent_; }

  private:
    Result<void> wait(short events);
    int fd_;
    int timeout_ms_;
    const std::atomic<bool>* cancel_;
    uint64_t sent_ = 0;
};

/// Bytes in memory as an Input (the fuzz target's).
class MemoryInput final : public Input {
  public:
    explicit MemoryInput(std::span<const uint8_t> bytes) : bytes_(bytes) {}
    Result<void> read(std::span<uint8_t> out) override;

  private:
    std::span<const uint8_t> bytes_;
    size_t pos_ = 0;
};

struct Hello {
    std::string token;
    std::string spec;  ///< the domain's machine: domain::spec_json (parsed by the caller)
};
std::vector<uint8_t> encode_hello(std::string_view token, std::string_view spec);
/// Reads and checks a hello (magic, version, bounds); the token is compared by the caller.
Result<Hello> read_hello(Input& in);

struct ReplyMessage {
    Reply kind = Reply::Error;
    std::string text;
};
Result<void> send_reply(Output& out, Reply kind, std::string_view text = {});
Result<ReplyMessage> read_reply(Input& in);

/// Records, sender side. send_pages() sends guest memory's bytes as they are now (the guest
/// may be writing them: the dirty log resends those).
Result<void> send_pages(Output& out, const memory::GuestMemory& mem, memory::Gpa gpa,
                        uint32_t count);
Result<void> send_zeros(Output& out, memory::Gpa gpa, uint32_t count);
Result<void> send_state(Output& out, std::span<const uint8_t> state);
Result<void> send_record(Output& out, Record kind);  ///< Go or Cancel
/// True if the 4 KiB page at `p` is all zeros.
bool is_zero_page(const uint8_t* p) noexcept;

struct ReceiveStats {
    uint64_t records = 0;
    uint64_t pages = 0;       ///< pages written with their bytes
    uint64_t zero_pages = 0;  ///< pages zeroed
};
/// The receiver: reads Pages and Zeros records into `mem` until a State record, whose bytes it
/// returns (parse them with snapshot::Reader). Cancel, a Go before the state, an unknown
/// record or any bound broken ends it with an error that says which.
Result<std::vector<uint8_t>> receive_memory(Input& in, const memory::GuestMemory& mem,
                                            ReceiveStats& stats);
/// After Ready: true at Go, an error at Cancel, anything else, or the end of the stream.
Result<void> receive_go(Input& in);

}  // namespace vireo::snapshot::stream
