#include "domain/migrate.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "base/log.hpp"
#include "snapshot/format.hpp"
#include "snapshot/stream.hpp"

namespace vireo::domain {

namespace {

namespace stream = snapshot::stream;
using Clock = std::chrono::steady_clock;
using memory::Gpa;

double ms_since(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// Sends runs of guest pages: non-zero pages with their bytes, zero pages as Zeros records
// (or not at all in the first pass: the receiver's memory starts zeroed).
class PageSender {
  public:
    PageSender(stream::Channel& ch, const memory::GuestMemory& mem, MigrationProgress& p)
        : ch_(ch), mem_(mem), p_(p) {}

    // Every page of every region (the first pass).
    Result<uint64_t> all() {
        uint64_t n = 0;
        for (const auto& r : mem_.regions()) {
            for (uint64_t page = 0; page < r.size / stream::kPage; ++page) {
                VIREO_TRY(add(Gpa(r.start.value() + page * stream::kPage), /*skip_zero=*/true));
                ++n;
            }
            VIREO_TRY(flush());
        }
        return n;
    }

    // The pages set in `bitmaps` (one per region).
    Result<void> dirty(const std::vector<std::vector<uint64_t>>& bitmaps) {
        const auto regions = mem_.regions();
        for (size_t i = 0; i < bitmaps.size() && i < regions.size(); ++i) {
            const uint64_t pages = regions[i].size / stream::kPage;
            for (size_t w = 0; w < bitmaps[i].size(); ++w) {
                uint64_t bits = bitmaps[i][w];
                while (bits != 0) {
                    const uint64_t page = w * 64 + static_cast<uint64_t>(std::countr_zero(bits));
                    bits &= bits - 1;
                    if (page >= pages) break;
                    VIREO_TRY(add(Gpa(regions[i].start.value() + page * stream::kPage), false));
                }
            }
            VIREO_TRY(flush());
        }
        return ok();
    }

  private:
    enum class Kind { None, Pages, Zeros };

    Result<void> add(Gpa gpa, bool skip_zero) {
        VIREO_TRY_ASSIGN(auto s, mem_.slice(gpa, stream::kPage));
        const bool zero = stream::is_zero_page(static_cast<const uint8_t*>(s.iov().iov_base));
        const Kind kind = zero ? (skip_zero ? Kind::None : Kind::Zeros) : Kind::Pages;
        const uint32_t max =
            kind == Kind::Pages ? stream::kMaxPagesPerRecord : stream::kMaxZeroPages;
        if (kind != kind_ || gpa.value() != start_.value() + uint64_t{count_} * stream::kPage ||
            count_ == max)
            VIREO_TRY(flush());
        if (kind == Kind::None) return ok();
        if (count_ == 0) {
            kind_ = kind;
            start_ = gpa;
        }
        ++count_;
        return ok();
    }

    Result<void> flush() {
        if (count_ != 0) {
            if (p_.cancel.load(std::memory_order_acquire))
                return fail(ErrorCode::BadState, "cancelled");
            if (kind_ == Kind::Pages)
                VIREO_TRY(stream::send_pages(ch_, mem_, start_, count_));
            else
                VIREO_TRY(stream::send_zeros(ch_, start_, count_));
            p_.bytes.store(ch_.bytes_sent(), std::memory_order_relaxed);
            VIREO_TRY(pace());
        }
        kind_ = Kind::None;
        count_ = 0;
        return ok();
    }

    // The bandwidth limit, while the guest runs: what was sent since the limit was set may
    // not run ahead of the rate; the sender sleeps it off (in slices, so a cancel is seen).
    Result<void> pace() {
        if (limit_ == 0) return ok();
        const double due_s =
            static_cast<double>(ch_.bytes_sent() - limit_from_bytes_) / static_cast<double>(limit_);
        const auto due = limit_from_ + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(due_s));
        while (Clock::now() < due) {
            if (p_.cancel.load(std::memory_order_acquire))
                return fail(ErrorCode::BadState, "cancelled");
            std::this_thread::sleep_for(
                std::min<Clock::duration>(due - Clock::now(), std::chrono::milliseconds(50)));
        }
        return ok();
    }

  public:
    /// At most `bytes_per_s` from now on (0: no limit).
    void limit(uint64_t bytes_per_s) {
        limit_ = bytes_per_s;
        limit_from_ = Clock::now();
        limit_from_bytes_ = ch_.bytes_sent();
    }

  private:
    uint64_t limit_ = 0;
    Clock::time_point limit_from_;
    uint64_t limit_from_bytes_ = 0;
    stream::Channel& ch_;
    const memory::GuestMemory& mem_;
    MigrationProgress& p_;
    Kind kind_ = Kind::None;
    Gpa start_{0};
    uint32_t count_ = 0;
};

void clear(std::vector<std::vector<uint64_t>>& bitmaps) {
    for (auto& b : bitmaps)
        std::fill(b.begin(), b.end(), 0);
}

uint64_t count_bits(const std::vector<std::vector<uint64_t>>& bitmaps) {
    uint64_t n = 0;
    for (const auto& b : bitmaps)
        for (uint64_t w : b)
            n += static_cast<uint64_t>(std::popcount(w));
    return n;
}

// Auto-converge: while `percent` is above 0, keeps the vCPUs out of the guest for that share
// of their time (periods of 20 ms, longer when this thread wakes late).
class Throttle {
  public:
    explicit Throttle(vmm::Vm& vm, MigrationProgress& p) : vm_(vm), p_(p) {}
    ~Throttle() { stop(); }
    void set(uint32_t percent) {
        p_.throttle_percent.store(percent, std::memory_order_relaxed);
        if (percent > 0 && !thread_.joinable())
            thread_ = std::thread([this] {
                ::pthread_setname_np(::pthread_self(), "vireo-throttle");
                // Each period the vCPUs sit out `percent` of it. The pause is reckoned from how
                // long they actually ran since the last one, so a late wake-up of this thread
                // (a loaded host) does not hand the guest the time it overslept.
                using std::chrono::microseconds;
                auto released = std::chrono::steady_clock::now();
                while (!done_.load(std::memory_order_acquire)) {
                    const uint64_t pct =
                        std::min<uint32_t>(99, p_.throttle_percent.load(std::memory_order_relaxed));
                    const microseconds window(kPeriodUs * (100 - pct) / 100);
                    const auto ran = std::chrono::duration_cast<microseconds>(
                        std::chrono::steady_clock::now() - released);
                    const auto run = std::max(ran, window);
                    const microseconds pause(std::min<uint64_t>(
                        kMaxPauseUs, static_cast<uint64_t>(run.count()) * pct / (100 - pct)));
                    vm_.throttle(pause);
                    released = std::chrono::steady_clock::now() + pause;
                    std::unique_lock lock(mutex_);
                    wake_.wait_until(lock, released + window,
                                     [this] { return done_.load(std::memory_order_acquire); });
                }
                vm_.throttle(microseconds(0));
            });
    }
    void stop() {
        {
            std::lock_guard lock(mutex_);
            done_.store(true, std::memory_order_release);
        }
        wake_.notify_all();
        if (thread_.joinable()) thread_.join();
        p_.throttle_percent.store(0, std::memory_order_relaxed);
    }

  private:
    static constexpr uint64_t kPeriodUs = 20000;
    // The guest runs at least once a second. A pause may be that long: a vCPU sitting one out
    // wakes at once for a pause request (the stop-and-copy's), so it adds nothing to the
    // downtime; and on a loaded host, where this thread wakes tens of milliseconds late and
    // the vCPUs run all that while, only a pause of 99 times that keeps the guest at 1%.
    static constexpr uint64_t kMaxPauseUs = 1000000;
    vmm::Vm& vm_;
    MigrationProgress& p_;
    std::atomic<bool> done_{false};
    std::mutex mutex_;
    std::condition_variable wake_;
    std::thread thread_;
};

// The link's round trip as TCP itself estimates it (its smoothed RTT), in seconds; 0 for a
// Unix socket (or when the kernel does not say).
double round_trip_s(int fd) {
    tcp_info info{};
    socklen_t len = sizeof info;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return 0;
    return info.tcpi_rtt / 1e6;
}

}  // namespace

Result<api::Json> migrate_out(vmm::Vm& vm, const std::string& machine, int fd,
                              const MigrationOptions& o, MigrationProgress& p) {
    VIREO_TRY(vm.movable("migrate"));  // before a page is sent
    const auto t0 = Clock::now();
    stream::Channel ch(fd, 30000, &p.cancel);
    auto cancelled = [&](const Error& e) -> Error {
        if (p.cancel.load(std::memory_order_acquire)) {
            (void)stream::send_record(ch, stream::Record::Cancel);
            return Error(ErrorCode::BadState, "migration cancelled; the domain runs on here");
        }
        return e;
    };
    VIREO_TRY(ch.write(std::span<const uint8_t>(stream::encode_hello(o.token, machine))));
    // The destination builds the machine (allocates its memory, prefaults it) before it answers.
    ch.set_timeout(120000);
    VIREO_TRY_ASSIGN(auto accepted, stream::read_reply(ch));
    if (accepted.kind != stream::Reply::Accepted)
        return fail(ErrorCode::BadState, "the destination refused the domain: {}",
                    accepted.text.empty() ? "no reason given" : accepted.text);
    ch.set_timeout(30000);

    VIREO_TRY(vm.start_dirty_log());
    struct StopLog {
        vmm::Vm& vm;
        ~StopLog() { vm.stop_dirty_log(); }
    } stop_log{vm};
    Throttle throttle(vm, p);
    PageSender sender(ch, vm.memory(), p);
    sender.limit(uint64_t{o.max_bandwidth_mib} << 20);
    std::vector<std::vector<uint64_t>> dirty;

    // Pass 0: all of memory, while the guest runs.
    auto pass_start = Clock::now();
    uint64_t pass_bytes = ch.bytes_sent();
    if (auto r = sender.all(); !r) return Unexpected{cancelled(r.error())};
    uint32_t pass = 1;
    p.pass.store(pass, std::memory_order_relaxed);
    const double downtime_s = o.downtime_ms / 1000.0;
    double rtt_s = 0;
    double bandwidth = 0;  // bytes/s
    uint32_t throttle_max = 0;
    for (;;) {
        const double secs = std::max(1e-3, ms_since(pass_start) / 1000.0);
        const uint64_t sent = ch.bytes_sent() - pass_bytes;
        // The link's speed: what the last pass moved in its time (a pass of a few pages says
        // little; keep the earlier figure then).
        if (sent >= (uint64_t{1} << 20) || bandwidth == 0)
            bandwidth = std::max(1.0, static_cast<double>(sent) / secs);
        VIREO_TRY(vm.take_dirty(dirty));  // kept until sent: the last pass sends them too
        const uint64_t left = count_bits(dirty);
        const double left_bytes = static_cast<double>(left) * stream::kPage;
        const double rate = left_bytes / secs;
        const double eta = left_bytes / bandwidth;
        p.dirty_pages.store(left, std::memory_order_relaxed);
        p.dirty_rate.store(static_cast<uint64_t>(rate), std::memory_order_relaxed);
        p.bandwidth.store(static_cast<uint64_t>(bandwidth), std::memory_order_relaxed);
        p.remaining_ms.store(static_cast<uint64_t>(eta * 1000), std::memory_order_relaxed);
        // Once the guest stops, what follows the last pages costs about two round trips (the
        // destination's "ready" for the state, then "go" and "running"): over a slow link that
        // is much of the downtime, so the last pass gets what the bound leaves of it (never
        // less than a quarter of it, or a long link would never let a busy guest converge).
        rtt_s = round_trip_s(fd);
        if (eta <= std::max(downtime_s / 4, downtime_s - 2 * rtt_s)) break;  // stop and copy
        if (ms_since(t0) > o.timeout_s * 1000.0) {
            (void)stream::send_record(ch, stream::Record::Cancel);
            return fail(ErrorCode::BadState,
                        "the migration did not converge in {} s: the guest dirties {:.0f} MiB/s, "
                        "the link moves {:.0f} MiB/s, {:.0f} MiB were left; the domain runs on "
                        "here (try --auto-converge, a longer --timeout or a larger "
                        "--downtime-ms)",
                        o.timeout_s, rate / 1048576, bandwidth / 1048576, left_bytes / 1048576);
        }
        // Auto-converge (QEMU's scheme): from the third pass on, while the guest dirties
        // memory faster than the downtime allows, take it 20% of its time, then 10% more
        // each pass, up to 99%.
        if (o.auto_converge && pass >= 2) {
            const uint32_t now = p.throttle_percent.load(std::memory_order_relaxed);
            throttle_max = std::min<uint32_t>(99, now == 0 ? 20 : now + 10);
            throttle.set(throttle_max);
        }
        pass_start = Clock::now();
        pass_bytes = ch.bytes_sent();
        if (auto r = sender.dirty(dirty); !r) return Unexpected{cancelled(r.error())};
        clear(dirty);
        p.pass.store(++pass, std::memory_order_relaxed);
    }

    // Stop and copy: the guest stands still from here until the destination runs it.
    const bool was_paused = vm.paused();
    const auto pause_asked = Clock::now();
    if (!was_paused) VIREO_TRY(vm.pause());
    sender.limit(0);  // the guest stands still: as fast as the link goes
    const auto paused_at = Clock::now();
    // Where the downtime goes (in the result: a slow link, a slow destination, a slow pause).
    const double pause_ms = ms_since(pause_asked);
    throttle.stop();
    auto go_on_here = [&](Error e) -> Error {
        if (!was_paused)
            if (auto r = vm.resume(); !r) log::warn("migration: {}", r.error().message());
        return cancelled(e);
    };
    uint64_t last_pages = 0;
    std::vector<uint8_t> state;
    {
        auto hold = vm.quiesce_devices();
        if (!hold) return Unexpected{go_on_here(hold.error())};
        auto r = vm.take_dirty(dirty);
        if (r) {
            last_pages = count_bits(dirty);
            r = sender.dirty(dirty);
        }
        snapshot::Writer w(&state);
        if (r) r = vm.write_state(w, machine);
        if (r) r = w.finish();
        if (r) r = stream::send_state(ch, state);
        if (!r) return Unexpected{go_on_here(r.error())};
    }
    const double copy_ms = ms_since(paused_at);
    // The destination restores the state; then it is told to go, and says it runs.
    ch.set_timeout(60000);
    auto ready = stream::read_reply(ch);
    const double restore_ms = ms_since(paused_at) - copy_ms;
    if (!ready || ready->kind != stream::Reply::Ready)
        return Unexpected{go_on_here(
            ready ? Error(ErrorCode::BadState,
                          fmt::format("the destination could not take the domain: {}", ready->text))
                  : Error(ready.error().code(),
                          fmt::format("the destination did not confirm the state: {}",
                                      ready.error().message())))};
    // The disks' locks go to the destination (it takes them before it runs): from here this
    // side writes its disks no more.
    for (const auto& d : vm.disks())
        d->unlock();
    auto relock = [&]() -> Result<void> {
        for (const auto& d : vm.disks())
            VIREO_TRY(d->lock());
        return ok();
    };
    if (auto r = stream::send_record(ch, stream::Record::Go); !r) {
        if (auto l = relock(); !l) return Unexpected{l.error()};
        return Unexpected{go_on_here(r.error())};
    }
    ch.set_timeout(30000);
    auto running = stream::read_reply(ch);
    if (running && running->kind == stream::Reply::Error) {
        // It will not run: the domain goes on here, with its disks again.
        if (auto l = relock(); !l)
            return fail(ErrorCode::BadState,
                        "the destination could not start the domain ({}), and this side cannot "
                        "take its disk back ({}): the domain stays paused here",
                        running->text, l.error().message());
        return Unexpected{go_on_here(
            Error(ErrorCode::BadState,
                  fmt::format("the destination could not start the domain: {}", running->text)))};
    }
    if (!running || running->kind != stream::Reply::Running) {
        // Told to go, silent since: it may run. Two copies of one guest must never run (their
        // disks), so this one stays paused for the operator to decide.
        return fail(ErrorCode::BadState,
                    "the destination was told to run the domain and did not confirm ({}); the "
                    "domain stays paused here: check the destination, then `vireo unpause` or "
                    "`vireo destroy` this one",
                    running ? running->text : running.error().message());
    }
    const double downtime_ms = ms_since(paused_at);
    const double total_ms = ms_since(t0);
    const double start_ms = downtime_ms - copy_ms - restore_ms;
    vm.stop(vmm::Fate::Stopped, "migrated");
    return api::Json{
        {"state", "migrated"},
        {"downtime_ms", downtime_ms},
        {"total_ms", total_ms},
        {"bytes", ch.bytes_sent()},
        {"passes", pass + 1},
        {"last_pass_pages", last_pages},
        {"state_bytes", state.size()},
        {"bandwidth_mib_s", bandwidth / 1048576},
        {"throttle_percent_max", throttle_max},
        {"round_trip_ms", rtt_s * 1000},
        {"downtime_parts_ms",
         {{"pause", pause_ms}, {"copy", copy_ms}, {"restore", restore_ms}, {"start", start_ms}}}};
}

Result<void> receive_in(vmm::Vm& vm, int fd) {
    stream::Channel ch(fd, 60000);
    auto refuse = [&](const Error& e) -> Error {
        (void)stream::send_reply(ch, stream::Reply::Error, e.message());
        return e;
    };
    VIREO_TRY(stream::send_reply(ch, stream::Reply::Accepted));
    const auto t0 = Clock::now();
    stream::ReceiveStats stats;
    auto state = stream::receive_memory(ch, vm.memory(), stats);
    if (!state) return Unexpected{refuse(state.error())};
    auto reader = snapshot::Reader::open(snapshot::memory_source(*state));
    if (!reader) return Unexpected{refuse(reader.error())};
    if (auto r = vm.finish_incoming(*reader); !r) return Unexpected{refuse(r.error())};
    VIREO_TRY(stream::send_reply(ch, stream::Reply::Ready));
    VIREO_TRY(stream::receive_go(ch));
    // The source has let its disks go: this side takes them before the guest runs.
    for (const auto& d : vm.disks())
        if (auto r = d->lock(); !r) return Unexpected{refuse(r.error())};
    log::info("migration: received {} pages and {} zeroed in {} records, {:.0f} ms", stats.pages,
              stats.zero_pages, stats.records, ms_since(t0));
    return ok();
}

}  // namespace vireo::domain
