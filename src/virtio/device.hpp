// A virtio device back-end, independent of its transport.
//
// Threads: the transport calls every method with the device's mutex held: register accesses
// (config space, activate, reset) come from vCPU threads, queue processing from the domain's
// event loop. Back-end completions (io_uring) also arrive on the event loop and take the same
// mutex. It is uncontended except while the driver (re)configures the device.
#pragma once

#include <cstdint>
#include <mutex>
#include <span>
#include <string_view>
#include <vector>

#include "base/event_loop.hpp"
#include "base/result.hpp"
#include "memory/guest_memory.hpp"
#include "snapshot/state.hpp"
#include "virtio/queue.hpp"

namespace vireo::virtio {

/// What a device sees of its transport (called with the device mutex held).
class Transport {
  public:
    /// Raises the used-buffer interrupt.
    virtual void signal_used() = 0;
    /// The driver broke a rule: the device stops and reports NEEDS_RESET (rate-limited log).
    virtual void device_error(std::string_view what) = 0;

  protected:
    ~Transport() = default;
};

/// One named counter of a device, for metrics: {"read_bytes", 4096}.
struct Counter {
    const char* name;
    uint64_t value;
};

class Device {
  public:
    virtual ~Device() = default;

    virtual const char* name() const noexcept = 0;
    virtual uint32_t device_id() const noexcept = 0;
    /// Feature bits offered (VERSION_1 is added by the transport).
    virtual uint64_t device_features() const noexcept = 0;
    virtual size_t num_queues() const noexcept = 0;
    virtual uint16_t max_queue_size() const noexcept = 0;
    /// Most descriptors in one chain (indirect ones included).
    virtual uint32_t max_chain() const noexcept = 0;
    /// The device-specific configuration space.
    virtual std::span<const uint8_t> config_space() const noexcept = 0;
    /// The driver wrote `data` at `offset` of the configuration space. Devices with writable
    /// fields check the offset and width themselves; everything else is ignored.
    virtual void write_config(uint64_t /*offset*/, std::span<const uint8_t> /*data*/) {}

    /// Registers the device's own event sources (completion eventfds) with the loop. Once,
    /// before the loop starts.
    virtual Result<void> attach_loop(EventLoop&) { return ok(); }
    /// The driver set DRIVER_OK: `queues` are active, `features` negotiated.
    virtual Result<void> activate(const memory::GuestMemory& mem, std::span<Queue> queues,
                                  uint64_t features, Transport& transport) = 0;
    /// Queue `index` was notified (event loop). An error means the driver broke a rule.
    virtual Result<void> process(size_t index) = 0;
    /// The driver reset the device (or it failed): forget the queues. Requests still in
    /// flight in a back-end complete without touching the rings.
    virtual void reset() = 0;
    /// Before the machine is reset in place (a guest reboot; the loop is stopped, no vCPU
    /// runs, the device mutex is held): waits until nothing still in flight in a back-end can
    /// write guest memory, which is about to be reloaded.
    virtual void quiesce() {}

    // Snapshots (docs/snapshot.md). The machine is paused, the event loop stopped, the device
    // mutex held.
    /// Finishes every request in flight in a back-end, completing it into the used ring (a
    /// disk's reads and writes), so that the queues can be saved with nothing in flight.
    virtual void drain() {}
    /// Gives back (Queue::unpop) the chains it holds without a request in flight (receive
    /// buffers waiting for data, a statistics buffer) and forgets them: its next pop, or the
    /// restored device's, returns them again. Right before the save.
    virtual void release_held() {}
    /// The device's own state (not the transport's): what the guest can observe that a fresh
    /// device configured the same way would not have (a balloon's target). restore() runs
    /// after activate() when the driver had set DRIVER_OK, before it otherwise.
    virtual void save(snapshot::Encoder&) const {}
    virtual void restore(snapshot::Decoder&) {}
    /// After a restore, once active: what a device owes its driver (vsock's transport reset
    /// event: connections do not survive).
    virtual void restored() {}

    /// The device's I/O counters (operations, bytes, errors, drops). Takes the device mutex;
    /// for the control API, not the data path.
    virtual std::vector<Counter> counters() { return {}; }

    std::mutex& mutex() noexcept { return mu_; }

  private:
    std::mutex mu_;
};

/// For single-queue devices' activate(): the queue, if the driver set it up.
inline Result<Queue*> only_queue(std::span<Queue> queues) {
    if (queues.size() != 1 || !queues[0].active())
        return fail(ErrorCode::InvalidArgument, "request queue not set up");
    return &queues[0];
}

}  // namespace vireo::virtio
