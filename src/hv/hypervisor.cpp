#include "hv/hypervisor.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "hv/kvm_ioctl.hpp"
#include "hv/kvm_uapi.hpp"
#include "hv/machine.hpp"

namespace vireo::hv {

using detail::kvm_ioctl;

namespace {

int check_cap(int fd, long cap) {
    return kvm_ioctl(fd, KVM_CHECK_EXTENSION, cap);
}

Result<std::vector<CpuidEntry>> read_supported_cpuid(int fd) {
    // KVM_MAX_CPUID_ENTRIES is 256: more is refused with EINVAL, too few with E2BIG. Asking for
    // the maximum takes one call.
    constexpr uint32_t kMaxEntries = 256;
    std::vector<uint64_t> buf((sizeof(kvm_cpuid2) + kMaxEntries * sizeof(kvm_cpuid_entry2)) / 8 +
                              1);
    auto* cpuid = reinterpret_cast<kvm_cpuid2*>(buf.data());
    cpuid->nent = kMaxEntries;
    if (kvm_ioctl(fd, KVM_GET_SUPPORTED_CPUID, cpuid) < 0)
        return fail_errno(errno, "KVM_GET_SUPPORTED_CPUID");
    std::vector<CpuidEntry> out;
    out.reserve(cpuid->nent);
    for (uint32_t i = 0; i < cpuid->nent; ++i) {
        const auto& e = cpuid->entries[i];
        out.push_back({e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx});
    }
    return out;
}

Result<std::vector<uint32_t>> read_msr_list(int fd) {
    kvm_msr_list probe{};
    if (kvm_ioctl(fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
        return fail_errno(errno, "KVM_GET_MSR_INDEX_LIST");
    // Room for what KVM said, and a little more in case the list grew in between.
    const uint32_t room = probe.nmsrs + 16;
    std::vector<uint32_t> buf(room + 1);
    auto* list = reinterpret_cast<kvm_msr_list*>(buf.data());
    list->nmsrs = room;
    if (kvm_ioctl(fd, KVM_GET_MSR_INDEX_LIST, list) < 0)
        return fail_errno(errno, "KVM_GET_MSR_INDEX_LIST");
    return std::vector<uint32_t>(list->indices, list->indices + std::min(list->nmsrs, room));
}

std::string detect_flavor() {
    struct stat st {};
    for (const char* m : {"kvm_intel", "kvm_amd", "kvm_pvm"}) {
        std::string path = std::string("/sys/module/") + m;
        if (::stat(path.c_str(), &st) == 0) return m;
    }
    return "";
}

}  // namespace

Result<Hypervisor> Hypervisor::open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        if (err == ENOENT)
            return Unexpected{
                Error(ErrorCode::NotFound,
                      fmt::format("{} does not exist: KVM is not available on this host. Enable "
                                  "virtualization (VT-x/AMD-V) in the firmware and load the module "
                                  "(modprobe kvm_intel or kvm_amd), or in a VM enable nested "
                                  "virtualization",
                                  path),
                      err)};
        if (err == EACCES || err == EPERM)
            return Unexpected{
                Error(ErrorCode::PermissionDenied,
                      fmt::format("permission denied opening {}: run as root or add your user to "
                                  "the group that owns it (usually 'kvm')",
                                  path),
                      err)};
        return fail_errno(err, "cannot open {}", path);
    }
    Hypervisor hv;
    hv.fd_.reset(fd);
    hv.path_ = path;

    int version = kvm_ioctl(fd, KVM_GET_API_VERSION, 0);
    if (version < 0)
        return Unexpected{Error(ErrorCode::Unsupported,
                                fmt::format("{} is not a KVM device (KVM_GET_API_VERSION: {})",
                                            path, std::strerror(errno)),
                                errno)};
    if (version != KVM_API_VERSION)
        return fail(ErrorCode::Unsupported, "{}: KVM API version {} is not the supported {}", path,
                    version, KVM_API_VERSION);

    struct Required {
        long cap;
        const char* name;
    };
    for (auto [cap, name] : {Required{KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
                             Required{KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
                             Required{KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
                             Required{KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE"},
                             Required{KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS"}}) {
        if (check_cap(fd, cap) <= 0)
            return fail(ErrorCode::Unsupported,
                        "{}: KVM lacks {}, which vireo needs (host kernel too old?)", path, name);
    }

    Limits& l = hv.limits_;
    int nr = check_cap(fd, KVM_CAP_NR_VCPUS);
    int max = check_cap(fd, KVM_CAP_MAX_VCPUS);
    int max_id = check_cap(fd, KVM_CAP_MAX_VCPU_ID);
    int slots = check_cap(fd, KVM_CAP_NR_MEMSLOTS);
    l.recommended_vcpus = nr > 0 ? static_cast<uint32_t>(nr) : 4;
    l.max_vcpus = max > 0 ? static_cast<uint32_t>(max) : l.recommended_vcpus;
    l.max_vcpu_id = max_id > 0 ? static_cast<uint32_t>(max_id) : l.max_vcpus;
    l.max_memslots = slots > 0 ? static_cast<uint32_t>(slots) : 32;

    int mmap_size = kvm_ioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (mmap_size < static_cast<int>(sizeof(kvm_run)))
        return fail_errno(errno, "{}: KVM_GET_VCPU_MMAP_SIZE", path);
    hv.mmap_size_ = static_cast<uint32_t>(mmap_size);

    VIREO_TRY_ASSIGN(hv.cpuid_, read_supported_cpuid(fd));
    // The LAPIC timer's TSC-deadline mode: KVM's in-kernel LAPIC emulates it on any host but
    // leaves it out of KVM_GET_SUPPORTED_CPUID (it needs that LAPIC); QEMU, Firecracker and
    // Cloud Hypervisor offer it. A guest without it programs one-shot counts instead.
    if (check_cap(fd, KVM_CAP_TSC_DEADLINE_TIMER) > 0)
        for (auto& e : hv.cpuid_)
            if (e.function == 0x1) e.ecx |= 1u << 24;
    VIREO_TRY_ASSIGN(hv.msrs_, read_msr_list(fd));
    l.phys_addr_bits = 36;
    for (const auto& e : hv.cpuid_) {
        if (e.function == 0x80000008 && (e.eax & 0xff) != 0)
            l.phys_addr_bits = static_cast<uint8_t>(e.eax & 0xff);
    }

    struct Optional {
        Feature feature;
        long cap;
    };
    for (auto [feature, cap] :
         {Optional{Feature::KernelIrqchip, KVM_CAP_IRQCHIP},
          Optional{Feature::SplitIrqchip, KVM_CAP_SPLIT_IRQCHIP},
          Optional{Feature::Ioeventfd, KVM_CAP_IOEVENTFD}, Optional{Feature::Irqfd, KVM_CAP_IRQFD},
          Optional{Feature::ReadonlyMemory, KVM_CAP_READONLY_MEM},
          Optional{Feature::Xsave, KVM_CAP_XSAVE}, Optional{Feature::Xcrs, KVM_CAP_XCRS},
          Optional{Feature::Pit, KVM_CAP_PIT2},
          Optional{Feature::UserSpaceMsr, KVM_CAP_X86_USER_SPACE_MSR},
          Optional{Feature::ManualDirtyLogProtect, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2},
          Optional{Feature::BinaryStats, KVM_CAP_BINARY_STATS_FD},
          Optional{Feature::KvmclockCtrl, KVM_CAP_KVMCLOCK_CTRL},
          Optional{Feature::MsrFilter, KVM_CAP_X86_MSR_FILTER}}) {
        if (check_cap(fd, cap) > 0) hv.features_ |= 1u << static_cast<unsigned>(feature);
    }
    hv.flavor_ = detect_flavor();
    return hv;
}

bool Hypervisor::has(Feature feature) const noexcept {
    return (features_ >> static_cast<unsigned>(feature)) & 1;
}

bool Hypervisor::hardware_assisted() const noexcept {
    return flavor_ != "kvm_pvm";
}

Result<std::unique_ptr<Machine>> Hypervisor::create_machine(const MachineConfig& config) const {
    int vm = kvm_ioctl(fd_.get(), KVM_CREATE_VM, 0);
    if (vm < 0) return fail_errno(errno, "KVM_CREATE_VM");
    std::unique_ptr<Machine> machine(new Machine(UniqueFd(vm), *this, config));
    VIREO_TRY(machine->setup());
    return machine;
}

}  // namespace vireo::hv
