#include "hv/machine.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

#include "base/checked.hpp"
#include "hv/kvm_ioctl.hpp"
#include "hv/kvm_uapi.hpp"
#include "hv/vcpu.hpp"

namespace vireo::hv {

using detail::kvm_ioctl;
using memory::Gpa;
using memory::kPageSize;

namespace {
bool has_feature(uint32_t features, Feature f) {
    return (features >> static_cast<unsigned>(f)) & 1;
}
}  // namespace

uint64_t DirtyBitmap::count() const noexcept {
    uint64_t n = 0;
    for (uint64_t w : words)
        n += static_cast<uint64_t>(std::popcount(w));
    return n;
}

Machine::Machine(UniqueFd fd, const Hypervisor& hv, const MachineConfig& config)
    : fd_(std::move(fd)),
      config_(config),
      limits_(hv.limits()),
      mmap_size_(hv.vcpu_mmap_size()),
      features_(0) {
    for (auto f :
         {Feature::KernelIrqchip, Feature::SplitIrqchip, Feature::Ioeventfd, Feature::Irqfd,
          Feature::ReadonlyMemory, Feature::Pit, Feature::UserSpaceMsr, Feature::MsrFilter}) {
        if (hv.has(f)) features_ |= 1u << static_cast<unsigned>(f);
    }
}

Machine::~Machine() = default;

Result<void> Machine::setup() {
    int fd = fd_.get();
    if (kvm_ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_TSS_ADDR) > 0 &&
        kvm_ioctl(fd, KVM_SET_TSS_ADDR, static_cast<unsigned long>(config_.tss_addr)) < 0)
        return fail_errno(errno, "KVM_SET_TSS_ADDR {:#x}", config_.tss_addr);
    if (config_.irqchip != IrqchipMode::None || config_.pit)
        return enable_irqchip(config_.irqchip, config_.pit, config_.split_irqchip_pins);
    return ok();
}

Result<void> Machine::enable_irqchip(IrqchipMode mode, bool pit, uint32_t split_pins) {
    if (mode == IrqchipMode::Kernel && !has_feature(features_, Feature::KernelIrqchip))
        return fail(ErrorCode::Unsupported, "this KVM has no in-kernel irqchip");
    if (mode == IrqchipMode::Split && !has_feature(features_, Feature::SplitIrqchip))
        return fail(ErrorCode::Unsupported, "this KVM has no split irqchip");
    if (pit && mode != IrqchipMode::Kernel)
        return fail(ErrorCode::InvalidArgument,
                    "the in-kernel PIT needs the in-kernel irqchip (IrqchipMode::Kernel)");
    if (mode == IrqchipMode::Split && (split_pins == 0 || split_pins > 256))
        return fail(ErrorCode::InvalidArgument, "split irqchip pins {} not in 1..256", split_pins);
    if (mode == IrqchipMode::None) return ok();
    std::lock_guard lock(vcpu_lock_);
    if (irqchip_.load(std::memory_order_relaxed) != IrqchipMode::None)
        return fail(ErrorCode::BadState, "the machine already has an irqchip");
    if (vcpu_count_.load(std::memory_order_relaxed) != 0)
        return fail(ErrorCode::BadState, "the irqchip must be enabled before any vCPU is created");
    const int fd = fd_.get();
    if (mode == IrqchipMode::Kernel) {
        if (kvm_ioctl(fd, KVM_CREATE_IRQCHIP, 0) < 0)
            return fail_errno(errno, "KVM_CREATE_IRQCHIP");
    } else {
        split_pins_ = split_pins;
        kvm_enable_cap cap{};
        cap.cap = KVM_CAP_SPLIT_IRQCHIP;
        cap.args[0] = split_pins;
        if (kvm_ioctl(fd, KVM_ENABLE_CAP, &cap) < 0)
            return fail_errno(errno, "enabling the split irqchip");
    }
    if (pit) {
        kvm_pit_config config{};
        if (kvm_ioctl(fd, KVM_CREATE_PIT2, &config) < 0)
            return fail_errno(errno, "KVM_CREATE_PIT2");
        pit_ = true;
    }
    irqchip_.store(mode, std::memory_order_release);
    if (mode == IrqchipMode::Kernel) {
        std::lock_guard routes(routes_mu_);
        VIREO_TRY(commit_routes_locked());  // the PC's wiring, not KVM's default
    }
    return ok();
}

Result<void> Machine::exit_on_unknown_msrs() {
    if (!has_feature(features_, Feature::UserSpaceMsr))
        return fail(ErrorCode::Unsupported,
                    "this KVM cannot hand a guest's MSR accesses to user space");
    std::lock_guard lock(vcpu_lock_);
    return msr_exits_locked(KVM_MSR_EXIT_REASON_UNKNOWN | KVM_MSR_EXIT_REASON_INVAL,
                            "MSR exits must be enabled");
}

Result<void> Machine::msr_exits_locked(uint64_t reasons, const char* what) {
    if (vcpu_count_.load(std::memory_order_relaxed) != 0)
        return fail(ErrorCode::BadState, "{} before any vCPU is created", what);
    kvm_enable_cap cap{};
    cap.cap = KVM_CAP_X86_USER_SPACE_MSR;
    cap.args[0] = reasons;
    if (kvm_ioctl(fd_.get(), KVM_ENABLE_CAP, &cap) < 0)
        return fail_errno(errno, "enabling MSR exits to user space");
    return ok();
}

Result<void> Machine::restrict_msrs(std::span<const uint32_t> allowed, bool refused_too) {
    return set_msr_filter(allowed, true, refused_too);
}

Result<void> Machine::trap_msrs(std::span<const uint32_t> trapped, bool refused_too) {
    return set_msr_filter(trapped, false, refused_too);
}

// An allow-list (every other MSR denied), or a deny-list (`listed` denied, the rest allowed).
Result<void> Machine::set_msr_filter(std::span<const uint32_t> listed, bool allow_list,
                                     bool refused_too) {
    if (!has_feature(features_, Feature::MsrFilter) ||
        !has_feature(features_, Feature::UserSpaceMsr))
        return fail(ErrorCode::Unsupported, "this KVM cannot filter a guest's MSR accesses");
    // Groups of indices within one bitmap's reach of the group's first. In a range a set bit
    // allows, a clear one denies; outside every range the default holds.
    constexpr uint32_t kReach = KVM_MSR_FILTER_MAX_BITMAP_SIZE * 8;
    const uint8_t others = allow_list ? 0x00 : 0xff;
    std::vector<uint32_t> msrs(listed.begin(), listed.end());
    std::sort(msrs.begin(), msrs.end());
    msrs.erase(std::unique(msrs.begin(), msrs.end()), msrs.end());
    struct Group {
        uint32_t base, count;
        std::vector<uint8_t> bitmap;
    };
    std::vector<Group> groups;
    for (const uint32_t m : msrs) {
        if (groups.empty() || m - groups.back().base >= kReach) {
            if (groups.size() == KVM_MSR_FILTER_MAX_RANGES)
                return fail(ErrorCode::InvalidArgument,
                            "the {} MSRs spread over more than {} ranges of {} (the {}th "
                            "starts at {:#x})",
                            allow_list ? "allowed" : "trapped", KVM_MSR_FILTER_MAX_RANGES, kReach,
                            KVM_MSR_FILTER_MAX_RANGES + 1, m);
            groups.push_back({m, 0, std::vector<uint8_t>(kReach / 8, others)});
        }
        Group& g = groups.back();
        const uint32_t off = m - g.base;
        g.bitmap[off / 8] = static_cast<uint8_t>(g.bitmap[off / 8] ^ (1u << (off % 8)));
        g.count = off + 1;
    }
    std::lock_guard lock(vcpu_lock_);
    VIREO_TRY(msr_exits_locked(KVM_MSR_EXIT_REASON_FILTER | KVM_MSR_EXIT_REASON_UNKNOWN |
                                   (refused_too ? KVM_MSR_EXIT_REASON_INVAL : 0),
                               "MSRs must be restricted"));
    kvm_msr_filter filter{};
    filter.flags = allow_list ? KVM_MSR_FILTER_DEFAULT_DENY : KVM_MSR_FILTER_DEFAULT_ALLOW;
    for (size_t i = 0; i < groups.size(); ++i) {
        auto& r = filter.ranges[i];
        r.flags = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE;
        r.base = groups[i].base;
        r.nmsrs = groups[i].count;
        r.bitmap = groups[i].bitmap.data();  // KVM copies it
    }
    if (kvm_ioctl(fd_.get(), KVM_X86_SET_MSR_FILTER, &filter) < 0)
        return fail_errno(errno, "KVM_X86_SET_MSR_FILTER");
    return ok();
}

Result<void> Machine::apply(uint32_t slot, const Mapping& m) {
    kvm_userspace_memory_region region{};
    region.slot = slot;
    region.flags = ((m.flags & kMapReadOnly) ? KVM_MEM_READONLY : 0u) |
                   ((m.flags & kMapDirtyLog) ? KVM_MEM_LOG_DIRTY_PAGES : 0u);
    region.guest_phys_addr = m.gpa;
    region.memory_size = m.used ? m.size : 0;
    region.userspace_addr = m.host;
    if (kvm_ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0)
        return fail_errno(errno, "KVM_SET_USER_MEMORY_REGION slot {} [{:#x}, +{:#x})", slot, m.gpa,
                          m.size);
    return ok();
}

Result<SlotId> Machine::map(Gpa gpa, void* host, uint64_t size, uint32_t flags) {
    const uint64_t start = gpa.value();
    const auto hva = reinterpret_cast<uint64_t>(host);
    if (size == 0) return fail(ErrorCode::InvalidArgument, "map at {:#x}: size is 0", start);
    if (!is_aligned(start, kPageSize))
        return fail(ErrorCode::InvalidArgument, "map: guest address {:#x} is not 4 KiB-aligned",
                    start);
    if (!is_aligned(size, kPageSize))
        return fail(ErrorCode::InvalidArgument,
                    "map at {:#x}: size {:#x} is not a multiple of 4 KiB", start, size);
    if (host == nullptr || !is_aligned(hva, kPageSize))
        return fail(ErrorCode::InvalidArgument,
                    "map at {:#x}: host address {} is null or not 4 KiB-aligned", start, host);
    const uint64_t width = uint64_t{1} << limits_.phys_addr_bits;
    if (!range_fits(start, size) || start + size > width)
        return fail(ErrorCode::OutOfRange,
                    "map [{:#x}, +{:#x}): beyond the guest's {}-bit physical address space", start,
                    size, limits_.phys_addr_bits);
    if (!range_fits(hva, size))
        return fail(ErrorCode::OutOfRange, "map at {:#x}: host range wraps", start);
    if ((flags & kMapReadOnly) && !has_feature(features_, Feature::ReadonlyMemory))
        return fail(ErrorCode::Unsupported, "map at {:#x}: this KVM has no read-only memory",
                    start);
    if (flags & ~uint32_t{kMapReadOnly | kMapDirtyLog})
        return fail(ErrorCode::InvalidArgument, "map at {:#x}: unknown flags {:#x}", start, flags);

    std::lock_guard lock(map_lock_);
    std::optional<uint32_t> free_slot;
    for (uint32_t i = 0; i < slots_.size(); ++i) {
        const auto& m = slots_[i];
        if (!m.used) {
            if (!free_slot) free_slot = i;
            continue;
        }
        if (start < m.gpa + m.size && m.gpa < start + size)
            return fail(ErrorCode::AlreadyExists,
                        "map [{:#x}, {:#x}) overlaps mapping {} at [{:#x}, {:#x})", start,
                        start + size, i, m.gpa, m.gpa + m.size);
    }
    if (!free_slot) {
        if (slots_.size() >= limits_.max_memslots)
            return fail(ErrorCode::ResourceExhausted,
                        "map at {:#x}: all {} KVM memory slots are in use", start,
                        limits_.max_memslots);
        free_slot = static_cast<uint32_t>(slots_.size());
        slots_.emplace_back();
    }
    Mapping m{start, size, hva, flags, true};
    if (auto r = apply(*free_slot, m); !r) return Unexpected{std::move(r).error()};
    slots_[*free_slot] = m;
    return SlotId{*free_slot};
}

Result<void> Machine::check_slot(SlotId slot) const {
    if (slot.value >= slots_.size() || !slots_[slot.value].used)
        return fail(ErrorCode::NotFound, "no mapping with slot id {}", slot.value);
    return ok();
}

Result<void> Machine::unmap(SlotId slot) {
    std::lock_guard lock(map_lock_);
    VIREO_TRY(check_slot(slot));
    Mapping m = slots_[slot.value];
    m.used = false;
    VIREO_TRY(apply(slot.value, m));
    slots_[slot.value] = Mapping{};
    return ok();
}

size_t Machine::mapping_count() const {
    std::lock_guard lock(map_lock_);
    size_t n = 0;
    for (const auto& m : slots_)
        n += m.used ? 1 : 0;
    return n;
}

Result<void> Machine::set_dirty_logging(SlotId slot, bool enabled) {
    std::lock_guard lock(map_lock_);
    VIREO_TRY(check_slot(slot));
    Mapping m = slots_[slot.value];
    m.flags = enabled ? (m.flags | kMapDirtyLog) : (m.flags & ~uint32_t{kMapDirtyLog});
    VIREO_TRY(apply(slot.value, m));
    slots_[slot.value] = m;
    return ok();
}

Result<DirtyBitmap> Machine::fetch_dirty_log(SlotId slot) {
    uint64_t pages = 0;
    {
        std::lock_guard lock(map_lock_);
        VIREO_TRY(check_slot(slot));
        if (!(slots_[slot.value].flags & kMapDirtyLog))
            return fail(ErrorCode::BadState, "mapping {} does not have dirty logging enabled",
                        slot.value);
        pages = slots_[slot.value].size / kPageSize;
    }
    DirtyBitmap bitmap;
    bitmap.pages = pages;
    bitmap.words.assign((pages + 63) / 64, 0);
    kvm_dirty_log log{};
    log.slot = slot.value;
    log.dirty_bitmap = bitmap.words.data();
    if (kvm_ioctl(fd_.get(), KVM_GET_DIRTY_LOG, &log) < 0)
        return fail_errno(errno, "KVM_GET_DIRTY_LOG slot {}", slot.value);
    return bitmap;
}

Result<uint64_t> Machine::get_clock() const {
    kvm_clock_data c{};
    if (kvm_ioctl(fd_.get(), KVM_GET_CLOCK, &c) != 0) return fail_errno(errno, "KVM_GET_CLOCK");
    return c.clock;
}

Result<void> Machine::set_clock(uint64_t ns) {
    kvm_clock_data c{};
    c.clock = ns;
    if (kvm_ioctl(fd_.get(), KVM_SET_CLOCK, &c) != 0) return fail_errno(errno, "KVM_SET_CLOCK");
    return ok();
}

Result<ChipState> Machine::save_chips() const {
    ChipState st;
    if (irqchip() != IrqchipMode::Kernel) return st;  // none in the kernel
    for (uint32_t chip : {0u, 1u, 2u}) {              // KVM_IRQCHIP_PIC_MASTER, _SLAVE, _IOAPIC
        kvm_irqchip c{};
        c.chip_id = chip;
        if (kvm_ioctl(fd_.get(), KVM_GET_IRQCHIP, &c) != 0)
            return fail_errno(errno, "KVM_GET_IRQCHIP {}", chip);
        auto& out = chip == 0 ? st.pic_primary : chip == 1 ? st.pic_secondary : st.ioapic;
        const auto* bytes = reinterpret_cast<const uint8_t*>(&c);
        out.assign(bytes, bytes + sizeof c);
    }
    if (pit_) {
        kvm_pit_state2 p{};
        if (kvm_ioctl(fd_.get(), KVM_GET_PIT2, &p) != 0) return fail_errno(errno, "KVM_GET_PIT2");
        const auto* bytes = reinterpret_cast<const uint8_t*>(&p);
        st.pit.assign(bytes, bytes + sizeof p);
    }
    return st;
}

Result<void> Machine::restore_chips(const ChipState& st) {
    const bool empty =
        st.pic_primary.empty() && st.pic_secondary.empty() && st.ioapic.empty() && st.pit.empty();
    if (irqchip() != IrqchipMode::Kernel) {
        if (empty) return ok();
        return fail(ErrorCode::InvalidArgument,
                    "the state has in-kernel interrupt controllers; this machine has none");
    }
    if (empty)
        return fail(ErrorCode::InvalidArgument,
                    "the state has no in-kernel interrupt controllers; this machine has them");
    for (const auto* chip : {&st.pic_primary, &st.pic_secondary, &st.ioapic}) {
        kvm_irqchip c{};
        if (chip->size() != sizeof c)
            return fail(ErrorCode::InvalidArgument, "interrupt controller state of {} bytes",
                        chip->size());
        std::memcpy(&c, chip->data(), sizeof c);
        if (kvm_ioctl(fd_.get(), KVM_SET_IRQCHIP, &c) != 0)
            return fail_errno(errno, "KVM_SET_IRQCHIP {}", c.chip_id);
    }
    if (!st.pit.empty()) {
        kvm_pit_state2 p{};
        if (st.pit.size() != sizeof p)
            return fail(ErrorCode::InvalidArgument, "PIT state of {} bytes", st.pit.size());
        std::memcpy(&p, st.pit.data(), sizeof p);
        if (kvm_ioctl(fd_.get(), KVM_SET_PIT2, &p) != 0) return fail_errno(errno, "KVM_SET_PIT2");
    }
    return ok();
}

Result<std::unique_ptr<Vcpu>> Machine::create_vcpu(uint32_t id) {
    if (id >= limits_.max_vcpu_id)
        return fail(ErrorCode::OutOfRange, "vCPU id {} is too large: KVM allows ids below {}", id,
                    limits_.max_vcpu_id);
    std::lock_guard lock(vcpu_lock_);
    if (vcpu_count_.load(std::memory_order_relaxed) >= limits_.max_vcpus)
        return fail(ErrorCode::ResourceExhausted,
                    "cannot create vCPU {}: the machine already has the KVM maximum of {} vCPUs",
                    id, limits_.max_vcpus);
    int fd = kvm_ioctl(fd_.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(id));
    if (fd < 0) {
        if (errno == EEXIST) return fail(ErrorCode::AlreadyExists, "vCPU {} already exists", id);
        if (errno == EMFILE)
            return fail_errno(errno,
                              "KVM_CREATE_VCPU {}: each vCPU is a file descriptor; raise the "
                              "open-files limit (ulimit -n)",
                              id);
        return fail_errno(errno, "KVM_CREATE_VCPU {}", id);
    }
    UniqueFd vcpu_fd(fd);
    void* run = ::mmap(nullptr, mmap_size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (run == MAP_FAILED) return fail_errno(errno, "mapping the run page of vCPU {}", id);
    vcpu_count_.fetch_add(1, std::memory_order_relaxed);
    return std::unique_ptr<Vcpu>(new Vcpu(std::move(vcpu_fd), id, run, mmap_size_));
}

Result<void> Machine::ioevent(const IoEvent& e, bool remove) {
    if (!has_feature(features_, Feature::Ioeventfd))
        return fail(ErrorCode::Unsupported, "this KVM has no ioeventfd");
    if (e.len != 0 && e.len != 1 && e.len != 2 && e.len != 4 && e.len != 8)
        return fail(ErrorCode::InvalidArgument,
                    "ioeventfd at {:#x}: length {} is not 0, 1, 2, 4 or 8", e.addr, e.len);
    if (e.len == 0 && e.space == IoSpace::Pio)
        return fail(ErrorCode::InvalidArgument, "ioeventfd at port {:#x}: length 0 is MMIO-only",
                    e.addr);
    if (e.space == IoSpace::Pio && e.addr > 0xffff)
        return fail(ErrorCode::OutOfRange, "ioeventfd: port {:#x} is above 0xffff", e.addr);
    if (e.fd < 0) return fail(ErrorCode::InvalidArgument, "ioeventfd at {:#x}: no eventfd", e.addr);
    kvm_ioeventfd io{};
    io.addr = e.addr;
    io.len = e.len;
    io.fd = e.fd;
    io.flags = (e.space == IoSpace::Pio ? KVM_IOEVENTFD_FLAG_PIO : 0u) |
               (e.datamatch ? KVM_IOEVENTFD_FLAG_DATAMATCH : 0u) |
               (remove ? KVM_IOEVENTFD_FLAG_DEASSIGN : 0u);
    io.datamatch = e.datamatch.value_or(0);
    if (kvm_ioctl(fd_.get(), KVM_IOEVENTFD, &io) < 0)
        return fail_errno(errno, "{} ioeventfd at {} {:#x}", remove ? "removing" : "adding",
                          e.space == IoSpace::Pio ? "port" : "address", e.addr);
    return ok();
}

Result<void> Machine::add_ioevent(const IoEvent& event) {
    return ioevent(event, false);
}
Result<void> Machine::remove_ioevent(const IoEvent& event) {
    return ioevent(event, true);
}

Result<void> Machine::need_irqchip(const char* what) const {
    if (irqchip() == IrqchipMode::None)
        return fail(ErrorCode::BadState,
                    "{} needs an in-kernel irqchip (IrqchipMode::Kernel or Split)", what);
    return ok();
}

Result<void> Machine::add_irqfd(int fd, uint32_t gsi, int resample_fd) {
    VIREO_TRY(need_irqchip("irqfd"));
    kvm_irqfd irqfd{};
    irqfd.fd = static_cast<uint32_t>(fd);
    irqfd.gsi = gsi;
    if (resample_fd >= 0) {
        irqfd.flags = KVM_IRQFD_FLAG_RESAMPLE;
        irqfd.resamplefd = static_cast<uint32_t>(resample_fd);
    }
    if (kvm_ioctl(fd_.get(), KVM_IRQFD, &irqfd) < 0)
        return fail_errno(errno, "adding irqfd for GSI {}", gsi);
    return ok();
}

Result<void> Machine::set_msi_route(uint32_t gsi, uint64_t address, uint32_t data) {
    VIREO_TRY(need_irqchip("MSI routing"));
    const uint32_t first = std::max(kFirstMsiGsi, split_pins_);
    if (gsi < first || gsi >= 1024)
        return fail(ErrorCode::InvalidArgument, "MSI route for GSI {}: GSIs {} to 1023", gsi,
                    first);
    std::lock_guard lock(routes_mu_);
    bool found = false;
    for (auto& [g, m] : msi_routes_)
        if (g == gsi) {
            m = {address, data};
            found = true;
        }
    if (!found) msi_routes_.push_back({gsi, {address, data}});
    return commit_routes_locked();
}

Result<void> Machine::set_pin_routes(std::span<const std::optional<MsiRoute>> pins) {
    if (irqchip() != IrqchipMode::Split)
        return fail(ErrorCode::BadState, "I/O APIC pin routes need IrqchipMode::Split");
    if (pins.size() != split_pins_)
        return fail(ErrorCode::InvalidArgument, "{} I/O APIC pin routes for {} pins", pins.size(),
                    split_pins_);
    std::lock_guard lock(routes_mu_);
    pin_routes_.assign(pins.begin(), pins.end());
    return commit_routes_locked();
}

Result<void> Machine::commit_routes_locked() {
    // The whole table. Kernel: a PC's wiring (as QEMU sets it up): GSIs 0-15 but 2 to their
    // 8259 pins, GSI 0 (the PIT's IRQ 0) to the I/O APIC's pin 2 as the MADT's interrupt source
    // override says, GSIs 1 and 3-23 to their own pins (KVM's default would send GSI 0 to pin
    // 0, where no guest that read the MADT looks). Split: each unmasked pin of the user-space
    // I/O APIC. Then the MSI routes.
    const bool kernel = irqchip() == IrqchipMode::Kernel;
    size_t n = msi_routes_.size();
    if (kernel) n += 15 + 23;
    for (const auto& p : pin_routes_)
        n += p.has_value() ? 1u : 0u;
    std::vector<uint8_t> buf(sizeof(kvm_irq_routing) + n * sizeof(kvm_irq_routing_entry));
    auto* table = reinterpret_cast<kvm_irq_routing*>(buf.data());
    table->nr = static_cast<uint32_t>(n);
    auto* e = reinterpret_cast<kvm_irq_routing_entry*>(buf.data() + sizeof(kvm_irq_routing));
    size_t i = 0;
    auto msi = [&](uint32_t gsi, const MsiRoute& m) {
        e[i].gsi = gsi;
        e[i].type = KVM_IRQ_ROUTING_MSI;
        e[i].u.msi.address_lo = static_cast<uint32_t>(m.address);
        e[i].u.msi.address_hi = static_cast<uint32_t>(m.address >> 32);
        e[i].u.msi.data = m.data;
        ++i;
    };
    auto chip = [&](uint32_t gsi, uint32_t irqchip, uint32_t pin) {
        e[i].gsi = gsi;
        e[i].type = KVM_IRQ_ROUTING_IRQCHIP;
        e[i].u.irqchip.irqchip = irqchip;
        e[i].u.irqchip.pin = pin;
        ++i;
    };
    if (kernel) {
        for (uint32_t irq = 0; irq < 16; ++irq)
            if (irq != 2)
                chip(irq, irq < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, irq % 8);
        for (uint32_t irq = 0; irq < 24; ++irq)
            if (irq != 2) chip(irq, KVM_IRQCHIP_IOAPIC, irq == 0 ? 2 : irq);
    }
    for (uint32_t pin = 0; pin < pin_routes_.size(); ++pin)
        if (pin_routes_[pin]) msi(pin, *pin_routes_[pin]);
    for (const auto& [g, m] : msi_routes_)
        msi(g, m);
    if (kvm_ioctl(fd_.get(), KVM_SET_GSI_ROUTING, table) != 0)
        return fail_errno(errno, "KVM_SET_GSI_ROUTING ({} routes)", n);
    return ok();
}

Result<void> Machine::remove_irqfd(int fd, uint32_t gsi) {
    kvm_irqfd irqfd{};
    irqfd.fd = static_cast<uint32_t>(fd);
    irqfd.gsi = gsi;
    irqfd.flags = KVM_IRQFD_FLAG_DEASSIGN;
    if (kvm_ioctl(fd_.get(), KVM_IRQFD, &irqfd) < 0)
        return fail_errno(errno, "removing irqfd for GSI {}", gsi);
    return ok();
}

const char* to_string(IrqchipMode mode) noexcept {
    switch (mode) {
        case IrqchipMode::None:
            return "none";
        case IrqchipMode::Kernel:
            return "kernel";
        case IrqchipMode::Split:
            return "split";
    }
    return "?";
}

Result<void> Machine::set_irq_line(uint32_t gsi, bool level) {
    if (irqchip() != IrqchipMode::Kernel)
        return fail(ErrorCode::BadState, "interrupt lines need IrqchipMode::Kernel");
    kvm_irq_level irq{};
    irq.irq = gsi;
    irq.level = level ? 1 : 0;
    if (kvm_ioctl(fd_.get(), KVM_IRQ_LINE, &irq) < 0)
        return fail_errno(errno, "setting interrupt line {} to {}", gsi, level ? 1 : 0);
    return ok();
}

Result<void> Machine::signal_msi(uint64_t address, uint32_t data) {
    VIREO_TRY(need_irqchip("MSI"));
    kvm_msi msi{};
    msi.address_lo = static_cast<uint32_t>(address);
    msi.address_hi = static_cast<uint32_t>(address >> 32);
    msi.data = data;
    if (kvm_ioctl(fd_.get(), KVM_SIGNAL_MSI, &msi) < 0)
        return fail_errno(errno, "KVM_SIGNAL_MSI {:#x}/{:#x}", address, data);
    return ok();
}

}  // namespace vireo::hv
