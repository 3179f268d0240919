#include "virtio/mmio.hpp"

#include <sys/mman.h>

#include <cstring>

#include "virtio/virtio.hpp"

namespace vireo::virtio {

namespace {

// Register offsets (4.2.2).
enum : uint64_t {
    kMagic = 0x000,
    kVersion = 0x004,
    kDeviceId = 0x008,
    kVendor = 0x00c,
    kDeviceFeatures = 0x010,
    kDeviceFeaturesSel = 0x014,
    kDriverFeatures = 0x020,
    kDriverFeaturesSel = 0x024,
    kQueueSel = 0x030,
    kQueueNumMax = 0x034,
    kQueueNum = 0x038,
    kQueueReady = 0x044,
    kQueueNotify = 0x050,
    kInterruptStatus = 0x060,
    kInterruptAck = 0x064,
    kStatus = 0x070,
    kQueueDescLow = 0x080,
    kQueueDescHigh = 0x084,
    kQueueDriverLow = 0x090,
    kQueueDriverHigh = 0x094,
    kQueueDeviceLow = 0x0a0,
    kQueueDeviceHigh = 0x0a4,
    kShmSel = 0x0ac,
    kShmLenLow = 0x0b0,
    kShmLenHigh = 0x0b4,
    kShmBaseLow = 0x0b8,
    kShmBaseHigh = 0x0bc,
    kConfigGeneration = 0x0fc,
    kConfig = 0x100,
};
constexpr uint32_t kMagicValue = 0x74726976;  // "virt"

void set_low(uint64_t& v, uint32_t low) {
    v = (v & ~uint64_t{0xffffffff}) | low;
}
void set_high(uint64_t& v, uint32_t high) {
    v = (v & 0xffffffff) | (uint64_t{high} << 32);
}

}  // namespace

Result<std::shared_ptr<MmioTransport>> MmioTransport::create(const memory::GuestMemory& mem,
                                                             std::shared_ptr<virtio::Device> device,
                                                             uint64_t base) {
    VIREO_TRY_ASSIGN(auto irq, EventFd::create());
    VIREO_TRY_ASSIGN(auto ack, EventFd::create());
    std::vector<EventFd> notify;
    for (size_t i = 0; i < device->num_queues(); ++i) {
        VIREO_TRY_ASSIGN(auto fd, EventFd::create());
        notify.push_back(std::move(fd));
    }
    return std::shared_ptr<MmioTransport>(new MmioTransport(
        mem, std::move(device), base, std::move(irq), std::move(ack), std::move(notify)));
}

MmioTransport::MmioTransport(const memory::GuestMemory& mem, std::shared_ptr<virtio::Device> device,
                             uint64_t base, EventFd irq, EventFd ack, std::vector<EventFd> notify)
    : mem_(mem),
      device_(std::move(device)),
      base_(base),
      name_(fmt::format("{}@{:#x}", device_->name(), base)),
      irq_(std::move(irq)),
      ack_(std::move(ack)),
      notify_(std::move(notify)),
      configs_(device_->num_queues()),
      queues_(device_->num_queues()) {}

MmioTransport::~MmioTransport() {
    if (page_ != nullptr) ::munmap(page_, kSize);
}

Result<void> MmioTransport::enable_register_page() {
    if (page_ != nullptr) return ok();
    void* p = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return fail_errno(errno, "{}: register page", name_);
    std::lock_guard lock(device_->mutex());
    page_ = static_cast<uint8_t*>(p);
    isr_ = reinterpret_cast<uint32_t*>(page_ + kInterruptStatus);
    std::atomic_ref<uint32_t>(*isr_).store(isr_storage_, std::memory_order_release);
    refresh_page();
    return ok();
}

void MmioTransport::refresh_page() {
    if (page_ == nullptr) return;
    static constexpr uint64_t kReadable[] = {
        kMagic,      kVersion, kDeviceId,  kVendor,     kDeviceFeatures,  kQueueNumMax,
        kQueueReady, kStatus,  kShmLenLow, kShmLenHigh, kConfigGeneration};
    for (uint64_t off : kReadable) {
        const uint32_t v = read_register(off);
        std::memcpy(page_ + off, &v, 4);
    }
    auto cfg = device_->config_space();
    if (!cfg.empty())
        std::memcpy(page_ + kConfig, cfg.data(), std::min<size_t>(cfg.size(), kSize - kConfig));
}

Result<void> MmioTransport::attach_loop(EventLoop& loop) {
    VIREO_TRY(loop.add(ack_.fd(), [this] { apply_deferred_ack(); }));
    for (size_t q = 0; q < notify_.size(); ++q) {
        VIREO_TRY(loop.add(notify_[q].fd(), [this, q] {
            (void)notify_[q].consume();
            process_queue(q);
        }));
    }
    std::lock_guard lock(device_->mutex());
    return device_->attach_loop(loop);
}

void MmioTransport::process_queue(size_t q) {
    std::lock_guard lock(device_->mutex());
    const uint32_t st = status_.load(std::memory_order_relaxed);
    if ((st & kStatusDriverOk) == 0 || (st & kStatusNeedsReset) != 0 || q >= queues_.size() ||
        !queues_[q].active())
        return;
    if (auto r = device_->process(q); !r) device_error(r.error().message());
}

void MmioTransport::apply_deferred_ack() noexcept {
    auto n = ack_.consume();
    if (n && *n > 0)
        std::atomic_ref<uint32_t>(*isr_).fetch_and(~kInterruptUsedBuffer,
                                                   std::memory_order_acq_rel);
}

void MmioTransport::signal_used() {
    // An acknowledgement that reached the ack eventfd was written before this point, so it
    // belongs to earlier interrupts: apply it first, or it could clear the bit set now after
    // the guest's handler has already looked at the rings (and the new buffers would be missed).
    apply_deferred_ack();
    isr_or(kInterruptUsedBuffer);
    (void)irq_.signal();
}

void MmioTransport::device_error(std::string_view what) {
    driver_errors_.fetch_add(1, std::memory_order_relaxed);
    if (log_limit_.allow())
        log::warn("{}: the guest driver broke the virtio rules ({}); device stopped, needs reset",
                  name_, what);
    device_->reset();
    for (auto& q : queues_)
        q.reset();
    status_.fetch_or(kStatusNeedsReset, std::memory_order_acq_rel);
    refresh_page();
    isr_or(kInterruptConfigChange);
    (void)irq_.signal();
}

void MmioTransport::config_changed() {
    std::lock_guard lock(device_->mutex());
    ++config_generation_;
    refresh_page();
    if ((status_.load(std::memory_order_acquire) & kStatusDriverOk) == 0) return;
    isr_or(kInterruptConfigChange);
    (void)irq_.signal();
}

void MmioTransport::guest_error(std::string_view what) {
    if (log_limit_.allow()) log::warn("{}: {}", name_, what);
}

void MmioTransport::read(uint64_t offset, std::span<uint8_t> data) {
    std::memset(data.data(), 0, data.size());
    if (offset >= kConfig) {
        std::lock_guard lock(device_->mutex());
        auto cfg = device_->config_space();
        const uint64_t off = offset - kConfig;
        for (size_t i = 0; i < data.size(); ++i)
            if (off + i < cfg.size()) data[i] = cfg[off + i];
        return;
    }
    if (data.size() != 4 || offset % 4 != 0) {
        guest_error(fmt::format("{}-byte read of register {:#x} (registers are 32-bit)",
                                data.size(), offset));
        return;
    }
    uint32_t v;
    if (offset == kInterruptStatus) {
        v = interrupt_status();
    } else {
        std::lock_guard lock(device_->mutex());
        v = read_register(offset);
    }
    std::memcpy(data.data(), &v, 4);
}

uint32_t MmioTransport::read_register(uint64_t offset) {
    const bool sel_ok = queue_sel_ < queues_.size();
    switch (offset) {
        case kMagic:
            return kMagicValue;
        case kVersion:
            return 2;
        case kDeviceId:
            return device_->device_id();
        case kVendor:
            return kVendorId;
        case kDeviceFeatures: {
            const uint64_t f = device_->device_features() | kFeatureVersion1;
            return device_features_sel_ == 0   ? static_cast<uint32_t>(f)
                   : device_features_sel_ == 1 ? static_cast<uint32_t>(f >> 32)
                                               : 0;
        }
        case kQueueNumMax:
            return sel_ok ? device_->max_queue_size() : 0;
        case kQueueReady:
            return sel_ok && configs_[queue_sel_].ready ? 1 : 0;
        case kStatus:
            return status_.load(std::memory_order_relaxed);
        case kShmLenLow:
        case kShmLenHigh:
            return 0xffffffff;  // no shared memory regions
        case kConfigGeneration:
            return config_generation_;
        default:
            return 0;
    }
}

void MmioTransport::write(uint64_t offset, std::span<const uint8_t> data) {
    if (offset >= kConfig) {
        std::lock_guard lock(device_->mutex());
        device_->write_config(offset - kConfig, data);
        refresh_page();
        return;
    }
    if (data.size() != 4 || offset % 4 != 0) {
        guest_error(fmt::format("{}-byte write to register {:#x} (registers are 32-bit)",
                                data.size(), offset));
        return;
    }
    uint32_t v;
    std::memcpy(&v, data.data(), 4);
    if (offset == kQueueNotify) {
        // Normally caught by the ioeventfd in the kernel; without one, hand it to the loop.
        if (v < notify_.size()) (void)notify_[v].signal();
        return;
    }
    if (offset == kInterruptAck) {
        std::atomic_ref<uint32_t>(*isr_).fetch_and(~v, std::memory_order_acq_rel);
        return;
    }
    std::lock_guard lock(device_->mutex());
    write_register(offset, v);
    refresh_page();  // before the vCPU resumes and reads it
}

void MmioTransport::write_register(uint64_t offset, uint32_t v) {
    const uint32_t st = status_.load(std::memory_order_relaxed);
    const bool queue_writable =
        queue_sel_ < configs_.size() && (st & kStatusDriverOk) == 0 && (st & kStatusFailed) == 0;
    QueueConfig* qc = queue_sel_ < configs_.size() ? &configs_[queue_sel_] : nullptr;
    switch (offset) {
        case kDeviceFeaturesSel:
            device_features_sel_ = v;
            return;
        case kDriverFeaturesSel:
            driver_features_sel_ = v;
            return;
        case kDriverFeatures:
            if ((st & (kStatusFeaturesOk | kStatusDriverOk)) != 0) return;  // too late
            if (driver_features_sel_ == 0) {
                set_low(driver_features_, v);
            } else if (driver_features_sel_ == 1) {
                set_high(driver_features_, v);
            }
            return;
        case kQueueSel:
            queue_sel_ = v;
            return;
        case kStatus:
            write_status(v);
            return;
        case kShmSel:
            return;
        default:
            break;
    }
    if (!queue_writable) return;
    switch (offset) {
        case kQueueNum:
            qc->size = static_cast<uint16_t>(std::min<uint32_t>(v, 0xffff));
            break;
        case kQueueReady:
            qc->ready = (v & 1) != 0;
            break;
        case kQueueDescLow:
            set_low(qc->desc, v);
            break;
        case kQueueDescHigh:
            set_high(qc->desc, v);
            break;
        case kQueueDriverLow:
            set_low(qc->driver, v);
            break;
        case kQueueDriverHigh:
            set_high(qc->driver, v);
            break;
        case kQueueDeviceLow:
            set_low(qc->device, v);
            break;
        case kQueueDeviceHigh:
            set_high(qc->device, v);
            break;
        default:
            break;
    }
}

void MmioTransport::reset_for_reboot() {
    std::lock_guard lock(device_->mutex());
    device_->quiesce();
    reset_locked();
}

void MmioTransport::reset_locked() {
    device_->reset();
    for (auto& q : queues_)
        q.reset();
    for (auto& c : configs_)
        c = QueueConfig{};
    driver_features_ = 0;
    device_features_sel_ = driver_features_sel_ = queue_sel_ = 0;
    status_.store(0, std::memory_order_release);
    std::atomic_ref<uint32_t>(*isr_).store(0, std::memory_order_release);
}

Result<void> MmioTransport::prepare_save() {
    std::lock_guard lock(device_->mutex());
    device_->drain();
    device_->release_held();
    for (size_t q = 0; q < queues_.size(); ++q)
        if (queues_[q].active() && queues_[q].in_flight() != 0)
            return fail(ErrorCode::BadState, "{}: queue {} still has {} requests in flight", name_,
                        q, queues_[q].in_flight());
    // The loop takes what was given back (a running domain) when it runs again.
    for (auto& n : notify_)
        (void)n.signal();
    return ok();
}

namespace {

// The transport's part of a snapshot, in one field list for both directions.
struct TransportState {
    uint32_t status = 0, isr = 0, config_generation = 0;
    uint32_t device_features_sel = 0, driver_features_sel = 0, queue_sel = 0;
    uint64_t driver_features = 0;
    struct QueueState {
        QueueConfig config;
        bool active = false;
        Queue::Position position;
    };
    std::vector<QueueState> queues;
};

template <class F, class S>
void queue_fields(F& f, S& q) {
    f.u16(q.config.size);
    f.flag(q.config.ready);
    f.u64(q.config.desc);
    f.u64(q.config.driver);
    f.u64(q.config.device);
    f.flag(q.active);
    f.u16(q.position.next_used);
    f.u16(q.position.signalled_used);
}

template <class F, class S>
void transport_fields(F& f, S& s) {
    f.u32(s.status);
    f.u32(s.isr);
    f.u32(s.config_generation);
    f.u32(s.device_features_sel);
    f.u32(s.driver_features_sel);
    f.u32(s.queue_sel);
    f.u64(s.driver_features);
    for (auto& q : s.queues)
        queue_fields(f, q);
}

constexpr uint32_t kKnownStatus = kStatusAcknowledge | kStatusDriver | kStatusDriverOk |
                                  kStatusFeaturesOk | kStatusNeedsReset | kStatusFailed;
constexpr uint32_t kKnownIsr = kInterruptUsedBuffer | kInterruptConfigChange;

}  // namespace

void MmioTransport::save(snapshot::Encoder& e) const {
    std::lock_guard lock(device_->mutex());
    TransportState s;
    s.status = status_.load(std::memory_order_acquire);
    s.isr = std::atomic_ref<uint32_t>(*isr_).load(std::memory_order_acquire);
    s.config_generation = config_generation_;
    s.device_features_sel = device_features_sel_;
    s.driver_features_sel = driver_features_sel_;
    s.queue_sel = queue_sel_;
    s.driver_features = driver_features_;
    for (size_t q = 0; q < queues_.size(); ++q)
        s.queues.push_back({configs_[q], queues_[q].active(), queues_[q].position()});
    snapshot::Save f{e};
    e.u32(static_cast<uint32_t>(queues_.size()));
    transport_fields(f, s);
    device_->save(e);
}

void MmioTransport::restore(snapshot::Decoder& d) {
    std::lock_guard lock(device_->mutex());
    TransportState s;
    if (d.u32() != queues_.size()) d.invalid("queue count");
    if (!d.ok()) return;
    s.queues.resize(queues_.size());
    snapshot::Load f{d};
    transport_fields(f, s);
    if ((s.status & ~kKnownStatus) != 0) d.invalid("status");
    if ((s.isr & ~kKnownIsr) != 0) d.invalid("interrupt status");
    const bool running = (s.status & kStatusDriverOk) != 0 && (s.status & kStatusNeedsReset) == 0;
    const uint64_t offered = device_->device_features() | kFeatureVersion1;
    if ((s.driver_features & ~offered) != 0) d.invalid("driver features");
    if (running && (s.status & kStatusFeaturesOk) == 0) d.invalid("status");
    for (const auto& q : s.queues)
        if (q.active && (!running || !q.config.ready)) d.invalid("queue state");
    if (!d.ok()) return;

    reset_locked();
    configs_.clear();
    for (const auto& q : s.queues)
        configs_.push_back(q.config);
    driver_features_ = s.driver_features;
    device_features_sel_ = s.device_features_sel;
    driver_features_sel_ = s.driver_features_sel;
    queue_sel_ = s.queue_sel;
    config_generation_ = s.config_generation;
    if (running) {
        const bool event_idx = (driver_features_ & kFeatureEventIdx) != 0;
        const bool indirect = (driver_features_ & kFeatureIndirectDesc) != 0;
        for (size_t q = 0; q < queues_.size(); ++q) {
            if (!s.queues[q].active) continue;
            if (!queues_[q].activate(mem_, configs_[q], device_->max_queue_size(),
                                     device_->max_chain(), event_idx, indirect)) {
                d.invalid("queue rings");  // outside guest RAM, or not a valid size
                reset_locked();
                return;
            }
            queues_[q].set_position(s.queues[q].position);
        }
        if (!device_->activate(mem_, queues_, driver_features_, *this)) {
            d.invalid("device activation");
            reset_locked();
            return;
        }
    }
    device_->restore(d);
    if (!d.ok()) {
        reset_locked();
        return;
    }
    status_.store(s.status, std::memory_order_release);
    std::atomic_ref<uint32_t>(*isr_).store(s.isr, std::memory_order_release);
    refresh_page();
    if (running) device_->restored();
    // Buffers made available while the domain was saved or restored, and an interrupt the
    // guest may not have taken (a spurious one is harmless: the handler reads the status).
    for (auto& n : notify_)
        (void)n.signal();
    if (s.isr != 0) (void)irq_.signal();
}

void MmioTransport::write_status(uint32_t v) {
    if (v == 0) {
        reset_locked();
        return;
    }
    const uint32_t old = status_.load(std::memory_order_relaxed);
    uint32_t next = v | (old & kStatusNeedsReset);
    if ((next & kStatusFeaturesOk) && !(old & kStatusFeaturesOk)) {
        const uint64_t offered = device_->device_features() | kFeatureVersion1;
        // Features the device does not offer, or a legacy driver: FEATURES_OK stays clear and
        // the driver sees that the negotiation failed.
        if ((driver_features_ & ~offered) != 0 || (driver_features_ & kFeatureVersion1) == 0)
            next &= ~kStatusFeaturesOk;
    }
    const bool starting = (next & kStatusDriverOk) && !(old & kStatusDriverOk);
    status_.store(next, std::memory_order_release);
    if (!starting) return;
    if (!(next & kStatusFeaturesOk)) {
        device_error("DRIVER_OK without FEATURES_OK");
        return;
    }
    const bool event_idx = (driver_features_ & kFeatureEventIdx) != 0;
    const bool indirect = (driver_features_ & kFeatureIndirectDesc) != 0;
    for (size_t q = 0; q < queues_.size(); ++q) {
        if (!configs_[q].ready) continue;
        if (auto r = queues_[q].activate(mem_, configs_[q], device_->max_queue_size(),
                                         device_->max_chain(), event_idx, indirect);
            !r) {
            device_error(fmt::format("queue {}: {}", q, r.error().message()));
            return;
        }
    }
    if (auto r = device_->activate(mem_, queues_, driver_features_, *this); !r) {
        device_error(r.error().message());
        return;
    }
    // Buffers made available before DRIVER_OK are picked up now, on the event loop.
    for (auto& n : notify_)
        (void)n.signal();
}

}  // namespace vireo::virtio
