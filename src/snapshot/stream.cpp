#include "snapshot/stream.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "snapshot/le.hpp"
#include "snapshot/state.hpp"

namespace vireo::snapshot::stream {

namespace {

using le::get32;
using le::get64;
using le::put32;
using le::put64;

Result<uint32_t> read32(Input& in) {
    uint8_t b[4];
    VIREO_TRY(in.read(b));
    return get32(b);
}

// A length-prefixed string of at most `max` bytes; `what` names it in errors.
Result<std::string> read_text(Input& in, size_t max, const char* what) {
    VIREO_TRY_ASSIGN(const uint32_t n, read32(in));
    if (n > max)
        return fail(ErrorCode::OutOfRange, "migration stream: {} of {} bytes (at most {})", what, n,
                    max);
    std::string s(n, '\0');
    VIREO_TRY(in.read(std::span(reinterpret_cast<uint8_t*>(s.data()), s.size())));
    return s;
}

std::span<const uint8_t> as_bytes(std::string_view s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// A page or zero-run record's header: kind, guest address, page count.
using RecordHeader = std::array<uint8_t, 13>;
RecordHeader record_header(Record kind, memory::Gpa gpa, uint32_t count) {
    RecordHeader h{};
    h[0] = static_cast<uint8_t>(kind);
    put64(h.data() + 1, gpa.value());
    put32(h.data() + 9, count);
    return h;
}

}  // namespace

Result<void> Channel::wait(short events) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms_);
    for (;;) {
        if (cancel_ != nullptr && cancel_->load(std::memory_order_acquire))
            return fail(ErrorCode::BadState, "cancelled");
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                              deadline - std::chrono::steady_clock::now())
                              .count();
        if (left <= 0)
            return fail(ErrorCode::BadState, "the peer {} nothing for {} s",
                        events == POLLIN ? "sent" : "took", timeout_ms_ / 1000.0);
        pollfd p{fd_, events, 0};
        const int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 100)));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return fail_errno(errno, "poll");
        if (r > 0) return ok();
    }
}

Result<void> Channel::read(std::span<uint8_t> out) {
    size_t got = 0;
    while (got < out.size()) {
        const ssize_t n = ::recv(fd_, out.data() + got, out.size() - got, MSG_DONTWAIT);
        if (n > 0) {
            got += static_cast<size_t>(n);
            continue;
        }
        if (n == 0) return fail(ErrorCode::BadState, "the connection was closed");
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return fail_errno(errno, "receive");
        VIREO_TRY(wait(POLLIN));
    }
    return ok();
}

Result<void> Channel::write(std::span<const iovec> iov_in) {
    // A copy of the iovecs to advance over partial sends (at most a handful: a header and a
    // run of pages).
    iovec iov[4];
    if (iov_in.size() > std::size(iov))
        return fail(ErrorCode::InvalidArgument, "send: too many pieces");
    std::copy(iov_in.begin(), iov_in.end(), iov);
    size_t first = 0;
    const size_t count = iov_in.size();
    while (first < count) {
        if (iov[first].iov_len == 0) {
            ++first;
            continue;
        }
        msghdr m{};
        m.msg_iov = iov + first;
        m.msg_iovlen = count - first;
        const ssize_t n = ::sendmsg(fd_, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) return fail_errno(errno, "send");
            VIREO_TRY(wait(POLLOUT));
            continue;
        }
        sent_ += static_cast<uint64_t>(n);
        size_t left = static_cast<size_t>(n);
        while (left > 0 && first < count) {
            const size_t step = std::min(left, iov[first].iov_len);
            iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + step;
            iov[first].iov_len -= step;
            left -= step;
            if (iov[first].iov_len == 0) ++first;
        }
    }
    return ok();
}

Result<void> MemoryInput::read(std::span<uint8_t> out) {
    if (bytes_.size() - pos_ < out.size())
        return fail(ErrorCode::BadState, "the connection was closed");
    std::memcpy(out.data(), bytes_.data() + pos_, out.size());
    pos_ += out.size();
    return ok();
}

std::vector<uint8_t> encode_hello(std::string_view token, std::string_view spec) {
    Encoder e;
    for (char c : kMagic)
        e.u8(static_cast<uint8_t>(c));
    e.u32(kVersion);
    e.bytes(as_bytes(token));
    e.bytes(as_bytes(spec));
    return e.data();
}

Result<Hello> read_hello(Input& in) {
    uint8_t head[12];
    VIREO_TRY(in.read(head));
    if (std::memcmp(head, kMagic, sizeof kMagic) != 0)
        return fail(ErrorCode::InvalidArgument,
                    "the peer is not a vireo sending a domain (no migration stream)");
    if (const uint32_t v = get32(head + 8); v != kVersion)
        return fail(ErrorCode::Unsupported, "migration stream version {}; this vireo reads {}", v,
                    kVersion);
    Hello h;
    VIREO_TRY_ASSIGN(h.token, read_text(in, kMaxToken, "the token"));
    VIREO_TRY_ASSIGN(h.spec, read_text(in, kMaxSpec, "the domain's configuration"));
    return h;
}

Result<void> send_reply(Output& out, Reply kind, std::string_view text) {
    Encoder e;
    e.u8(static_cast<uint8_t>(kind));
    e.bytes(as_bytes(text.substr(0, kMaxMessage)));
    return out.write(std::span<const uint8_t>(e.data()));
}

Result<ReplyMessage> read_reply(Input& in) {
    uint8_t k = 0;
    VIREO_TRY(in.read(std::span(&k, 1)));
    ReplyMessage m;
    switch (static_cast<Reply>(k)) {
        case Reply::Accepted:
        case Reply::Ready:
        case Reply::Running:
        case Reply::Error:
            m.kind = static_cast<Reply>(k);
            break;
        default:
            return fail(ErrorCode::InvalidArgument, "migration stream: unknown reply {:#x}", k);
    }
    VIREO_TRY_ASSIGN(m.text, read_text(in, kMaxMessage, "a reply"));
    return m;
}

Result<void> send_pages(Output& out, const memory::GuestMemory& mem, memory::Gpa gpa,
                        uint32_t count) {
    if (count == 0 || count > kMaxPagesPerRecord)
        return fail(ErrorCode::InvalidArgument, "send_pages: {} pages", count);
    VIREO_TRY_ASSIGN(auto slice, mem.slice(gpa, uint64_t{count} * kPage));
    RecordHeader h = record_header(Record::Pages, gpa, count);
    const iovec iov[2] = {{h.data(), h.size()}, slice.iov()};
    return out.write(std::span<const iovec>(iov));
}

Result<void> send_zeros(Output& out, memory::Gpa gpa, uint32_t count) {
    const RecordHeader h = record_header(Record::Zeros, gpa, count);
    return out.write(std::span<const uint8_t>(h));
}

Result<void> send_state(Output& out, std::span<const uint8_t> state) {
    if (state.size() > kMaxState)
        return fail(ErrorCode::OutOfRange, "the machine's state is {} bytes (at most {})",
                    state.size(), kMaxState);
    uint8_t h[5];
    h[0] = static_cast<uint8_t>(Record::State);
    put32(h + 1, static_cast<uint32_t>(state.size()));
    const iovec iov[2] = {{h, sizeof h}, {const_cast<uint8_t*>(state.data()), state.size()}};
    return out.write(std::span<const iovec>(iov));
}

Result<void> send_record(Output& out, Record kind) {
    const uint8_t k = static_cast<uint8_t>(kind);
    return out.write(std::span(&k, 1));
}

bool is_zero_page(const uint8_t* p) noexcept {
    const auto* w = reinterpret_cast<const uint64_t*>(p);
    uint64_t acc = 0;
    for (size_t i = 0; i < kPage / 8; i += 8) {
        acc |= w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7];
        if (acc != 0) return false;
    }
    return true;
}

Result<std::vector<uint8_t>> receive_memory(Input& in, const memory::GuestMemory& mem,
                                            ReceiveStats& stats) {
    static const std::vector<uint8_t> zeros(64 * kPage, 0);
    for (;;) {
        uint8_t k = 0;
        VIREO_TRY(in.read(std::span(&k, 1)));
        ++stats.records;
        switch (static_cast<Record>(k)) {
            case Record::Pages:
            case Record::Zeros: {
                uint8_t h[12];
                VIREO_TRY(in.read(h));
                const uint64_t gpa = get64(h);
                const uint32_t count = get32(h + 8);
                const bool pages = static_cast<Record>(k) == Record::Pages;
                const uint32_t max = pages ? kMaxPagesPerRecord : kMaxZeroPages;
                if (count == 0 || count > max)
                    return fail(ErrorCode::OutOfRange,
                                "migration stream: a record of {} pages (1 to {})", count, max);
                if (gpa % kPage != 0 || !mem.contains(memory::Gpa(gpa), uint64_t{count} * kPage))
                    return fail(ErrorCode::OutOfRange,
                                "migration stream: pages [{:#x}, +{} pages) are not guest RAM", gpa,
                                count);
                if (pages) {
                    // Straight into guest memory (the guest does not run yet); one region.
                    auto slice = mem.slice(memory::Gpa(gpa), uint64_t{count} * kPage);
                    if (!slice)
                        return fail(ErrorCode::OutOfRange,
                                    "migration stream: pages [{:#x}, +{} pages) cross a RAM region",
                                    gpa, count);
                    const iovec v = slice->iov();
                    VIREO_TRY(in.read(std::span(static_cast<uint8_t*>(v.iov_base), v.iov_len)));
                    stats.pages += count;
                } else {
                    for (uint64_t done = 0; done < count;) {
                        const uint64_t n = std::min<uint64_t>(count - done, zeros.size() / kPage);
                        VIREO_TRY(mem.write(memory::Gpa(gpa + done * kPage),
                                            std::as_bytes(std::span(
                                                zeros.data(), static_cast<size_t>(n * kPage)))));
                        done += n;
                    }
                    stats.zero_pages += count;
                }
                break;
            }
            case Record::State: {
                VIREO_TRY_ASSIGN(const uint32_t n, read32(in));
                if (n > kMaxState)
                    return fail(ErrorCode::OutOfRange,
                                "migration stream: the machine's state is {} bytes (at most {})", n,
                                kMaxState);
                // Grown as the bytes come (a length alone allocates nothing).
                std::vector<uint8_t> state;
                while (state.size() < n) {
                    const size_t at = state.size();
                    state.resize(at + std::min<size_t>(n - at, size_t{1} << 20));
                    VIREO_TRY(in.read(std::span(state).subspan(at)));
                }
                return state;
            }
            case Record::Cancel:
                return fail(ErrorCode::BadState, "the sender cancelled the migration");
            default:
                return fail(ErrorCode::InvalidArgument,
                            "migration stream: unexpected record {:#x} before the state", k);
        }
    }
}

Result<void> receive_go(Input& in) {
    uint8_t k = 0;
    if (auto r = in.read(std::span(&k, 1)); !r)
        return fail(r.error().code(), "the sender did not hand the domain over: {}",
                    r.error().message());
    if (static_cast<Record>(k) == Record::Go) return ok();
    if (static_cast<Record>(k) == Record::Cancel)
        return fail(ErrorCode::BadState, "the sender cancelled the migration");
    return fail(ErrorCode::InvalidArgument, "migration stream: unexpected record {:#x} for go", k);
}

}  // namespace vireo::snapshot::stream
