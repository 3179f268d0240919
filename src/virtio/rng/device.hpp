// virtio-rng (virtio 1.2, 5.4): fills the driver's buffers from getrandom(), at most
// kMaxBytesPerRequest per request so that one request cannot keep the event loop busy.
#pragma once

#include "virtio/device.hpp"

namespace vireo::virtio {

class EntropyDevice final : public Device {
  public:
    static constexpr uint32_t kMaxBytesPerRequest = 64 * 1024;
    static constexpr uint32_t kMaxChain = 64;

    EntropyDevice() : chain_(kMaxChain) {}

    const char* name() const noexcept override { return "virtio-rng"; }
    uint32_t device_id() const noexcept override;
    uint64_t device_features() const noexcept override;
    size_t num_queues() const noexcept override { return 1; }
    uint16_t max_queue_size() const noexcept override { return 64; }
    uint32_t max_chain() const noexcept override { return kMaxChain; }
    std::span<const uint8_t> config_space() const noexcept override { return {}; }

    Result<void> activate(const memory::GuestMemory& mem, std::span<Queue> queues,
                          uint64_t features, Transport& transport) override;
    Result<void> process(size_t index) override;
    void reset() override { queue_ = nullptr; }

    uint64_t bytes_served() noexcept {
        std::lock_guard lock(mutex());
        return bytes_;
    }
    std::vector<Counter> counters() override { return {{"bytes", bytes_served()}}; }

  private:
    Chain chain_;
    Queue* queue_ = nullptr;
    Transport* transport_ = nullptr;
    uint64_t bytes_ = 0;
};

}  // namespace vireo::virtio
