// virtio-balloon (virtio 1.2, 5.5): lets the host take memory back from a running guest.
//
// The host sets a target (pages the guest should give up); the driver inflates by handing over
// page frame numbers, which vireo returns to the host at once (GuestMemory::discard: the pages
// leave vireo's RSS). Deflating needs no
// work: a page the guest touches again is faulted in fresh (zeroed). Also: the statistics queue
// (the guest's own memory figures, refreshed on request) and free page reporting (the guest
// reports free ranges on its own; they are returned to the host the same way). Not offered:
// DEFLATE_ON_OOM (Linux then leaves ballooned pages in MemTotal, so the guest would not see
// its memory shrink).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>

#include "virtio/device.hpp"

namespace vireo::virtio {

inline constexpr uint64_t kBalloonFStatsVq = uint64_t{1} << 1;
inline constexpr uint64_t kBalloonFDeflateOnOom = uint64_t{1} << 2;
inline constexpr uint64_t kBalloonFReporting = uint64_t{1} << 5;

struct BalloonInfo {
    uint64_t target_pages = 0;  ///< what the host asked for (4 KiB pages)
    uint64_t actual_pages = 0;  ///< what the driver says it holds
    uint64_t inflated_pages = 0, deflated_pages = 0, reported_bytes = 0;
    bool driver_ready = false;
    uint64_t stats_updates = 0;  ///< statistics buffers received
    /// The guest's statistics (virtio tag names: "swap-in", "free-memory", ...), last update.
    std::map<std::string, uint64_t> stats;
};

class BalloonDevice final : public Device {
  public:
    static constexpr uint32_t kMaxChain = 64;
    static constexpr uint64_t kPageSize = 4096;  // VIRTIO_BALLOON_PFN_SHIFT

    const char* name() const noexcept override { return "virtio-balloon"; }
    uint32_t device_id() const noexcept override;
    uint64_t device_features() const noexcept override;
    size_t num_queues() const noexcept override {
        return 3 + 1;
    }  // inflate, deflate, stats, reporting
    uint16_t max_queue_size() const noexcept override { return 256; }
    uint32_t max_chain() const noexcept override { return kMaxChain; }
    std::span<const uint8_t> config_space() const noexcept override { return config_; }
    void write_config(uint64_t offset, std::span<const uint8_t> data) override;

    Result<void> activate(const memory::GuestMemory& mem, std::span<Queue> queues,
                          uint64_t features, Transport& transport) override;
    Result<void> process(size_t index) override;
    void reset() override;

    /// Sets the target (device mutex taken here); the caller then raises the transport's
    /// configuration-change interrupt. Returns the pages requested.
    uint64_t set_target_bytes(uint64_t bytes);
    /// Asks the guest for fresh statistics (returns its stats buffer); device mutex taken here.
    /// False if the guest has no statistics buffer queued.
    bool request_stats();
    BalloonInfo info();
    std::vector<Counter> counters() override {
        const BalloonInfo b = info();
        return {{"inflated_pages", b.inflated_pages},
                {"deflated_pages", b.deflated_pages},
                {"reported_bytes", b.reported_bytes}};
    }

    /// The statistics buffer it holds goes back to its queue.
    void release_held() override;
    /// The target and actual sizes, and the page counters.
    void save(snapshot::Encoder& e) const override;
    void restore(snapshot::Decoder& d) override;

  private:
    Result<void> inflate(Queue& q);
    Result<void> deflate(Queue& q);
    Result<void> take_stats(Queue& q);
    Result<void> reported(Queue& q);
    void give_back(memory::Gpa gpa, uint64_t len);

    std::array<uint8_t, 8> config_{};  // num_pages, actual
    const memory::GuestMemory* mem_ = nullptr;
    Transport* transport_ = nullptr;
    Chain chain_{kMaxChain};
    Queue* inflate_ = nullptr;
    Queue* deflate_ = nullptr;
    Queue* stats_q_ = nullptr;
    Queue* report_ = nullptr;
    bool stats_held_ = false;
    uint16_t stats_head_ = 0;
    BalloonInfo info_;
};

}  // namespace vireo::virtio
