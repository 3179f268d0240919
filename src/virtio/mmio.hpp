// virtio-mmio transport, version 2 (modern only; virtio 1.2, 4.2.2).
//
// Register accesses come from vCPU threads through the MMIO bus. Queue notifications do not:
// the VMM registers one ioeventfd per queue (QueueNotify with datamatch = queue index), so a
// notification is an eventfd signal that the domain's event loop picks up and that never
// leaves the kernel on the vCPU side. Interrupts leave through one eventfd wired to an irqfd
// (edge-triggered GSI, as declared in the DSDT). A driver that breaks the rules gets the
// device marked NEEDS_RESET with a config-change interrupt; other devices are not affected.
//
// Register page: with enable_register_page(), the transport keeps a 4 KiB page whose contents
// are what every register reads as at this moment (InterruptStatus lives there). The VMM maps
// it into the guest as a read-only memslot over the device's window, so register *reads* never
// leave the guest (the interrupt handler's InterruptStatus read costs no exit); writes still
// exit and come through write(), which updates the page before the vCPU resumes.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "base/event_fd.hpp"
#include "base/log.hpp"
#include "devices/device.hpp"
#include "virtio/device.hpp"

namespace vireo::virtio {

class MmioTransport final : public devices::Device, public Transport {
  public:
    static constexpr uint64_t kSize = 0x1000;  ///< bytes of MMIO space per device
    static constexpr uint64_t kNotifyOffset = 0x50;
    static constexpr uint64_t kInterruptAckOffset = 0x64;
    static constexpr uint32_t kVendorId = 0x4f524956;  ///< "VIRO"

    /// A transport for `device` at guest-physical `base` (used for names and logs).
    static Result<std::shared_ptr<MmioTransport>> create(const memory::GuestMemory& mem,
                                                         std::shared_ptr<virtio::Device> device,
                                                         uint64_t base);

    /// Eventfd to signal when queue `q` is notified (wired to an ioeventfd by the VMM).
    int notify_fd(size_t q) const noexcept { return notify_[q].fd(); }
    /// Eventfd the transport signals to interrupt the guest (wired to an irqfd by the VMM).
    int irq_fd() const noexcept { return irq_.fd(); }
    /// Eventfd for InterruptACK writes of exactly 1 (the interrupt handler's acknowledgement of
    /// used buffers), wired to an ioeventfd by the VMM so that it costs no exit to user space.
    /// The acknowledgement is applied before the next interrupt is raised (see signal_used()).
    int ack_fd() const noexcept { return ack_.fd(); }
    size_t num_queues() const noexcept { return queues_.size(); }
    virtio::Device& device() noexcept { return *device_; }
    uint64_t base() const noexcept { return base_; }

    /// Creates the register page (see above). Before the guest runs.
    Result<void> enable_register_page();
    /// The register page (nullptr unless enabled), 4 KiB, page-aligned.
    uint8_t* register_page() const noexcept { return page_; }

    /// Watches the notify eventfds and the device's own event sources on `loop`.
    Result<void> attach_loop(EventLoop& loop);
    /// The device changed its configuration space on the host's behalf (e.g. a new balloon
    /// target): bumps ConfigGeneration and raises the configuration-change interrupt. Any
    /// thread, device mutex not held.
    void config_changed();
    /// Processes queue `q` now, on the calling thread (what a notification does on the loop).
    void process_queue(size_t q);
    /// Times the driver broke a rule and the device was stopped (NEEDS_RESET).
    uint64_t driver_errors() const noexcept {
        return driver_errors_.load(std::memory_order_relaxed);
    }

    // devices::Device (vCPU threads)
    const char* name() const noexcept override { return name_.c_str(); }
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

    // Transport (device mutex held)
    void signal_used() override;
    void device_error(std::string_view what) override;

    /// The machine is reset in place (a guest reboot; no vCPU runs, the loop is stopped): the
    /// device's in-flight work drained, then reset as if the driver had written status 0.
    void reset_for_reboot();

    /// Snapshots (no vCPU runs, the loop is stopped). prepare_save() drains the device and
    /// gives back the buffers it holds; save() then writes the transport's registers, each
    /// queue's configuration and place in its rings, and the device's own state. restore()
    /// (into a transport built the same way, over the restored guest memory) checks every
    /// field before it changes anything, activates the queues as DRIVER_OK would (the rings
    /// checked against guest RAM), puts them where they stood, restores the device, and wakes
    /// the loop and the guest for anything that arrived meanwhile. A malformed section, or rings
    /// outside guest RAM, marks the decoder invalid.
    Result<void> prepare_save();
    void save(snapshot::Encoder& e) const override;
    void restore(snapshot::Decoder& d) override;

    uint32_t status() const noexcept { return status_.load(std::memory_order_acquire); }
    uint32_t interrupt_status() const noexcept {
        return std::atomic_ref<uint32_t>(*isr_).load(std::memory_order_acquire);
    }
    ~MmioTransport() override;

  private:
    MmioTransport(const memory::GuestMemory& mem, std::shared_ptr<virtio::Device> device,
                  uint64_t base, EventFd irq, EventFd ack, std::vector<EventFd> notify);
    void apply_deferred_ack() noexcept;
    uint32_t read_register(uint64_t offset);
    void write_register(uint64_t offset, uint32_t value);
    void write_status(uint32_t value);
    void reset_locked();
    void guest_error(std::string_view what);  // a bad register access (not fatal)
    void refresh_page();                      // device mutex held
    uint32_t isr_or(uint32_t bits) noexcept {
        return std::atomic_ref<uint32_t>(*isr_).fetch_or(bits, std::memory_order_acq_rel);
    }

    const memory::GuestMemory& mem_;
    std::shared_ptr<virtio::Device> device_;
    uint64_t base_;
    std::string name_;
    EventFd irq_;
    EventFd ack_;
    std::vector<EventFd> notify_;
    // Guarded by device_->mutex().
    std::vector<QueueConfig> configs_;
    std::vector<Queue> queues_;
    uint32_t device_features_sel_ = 0, driver_features_sel_ = 0, queue_sel_ = 0;
    uint64_t driver_features_ = 0;
    uint32_t config_generation_ = 0;
    // Read without the lock by status()/InterruptStatus.
    std::atomic<uint32_t> status_{0};
    // InterruptStatus: one word, set by the loop and cleared by vCPUs with atomic RMWs; it is
    // in the register page when there is one (so the guest reads the live value), else here.
    alignas(4) uint32_t isr_storage_ = 0;
    uint32_t* isr_ = &isr_storage_;
    uint8_t* page_ = nullptr;
    log::RateLimiter log_limit_{5};
    std::atomic<uint64_t> driver_errors_{0};
};

}  // namespace vireo::virtio
