#include "raw_kvm.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <vector>

#include "arch/x86/long_mode.hpp"
#include "hv/kvm_uapi.hpp"  // raw floor: deliberately bypasses the hv API (see raw_kvm.hpp)

namespace vireo::bench {

namespace {
constexpr uint64_t kRam = 8 << 20;
constexpr uint64_t kLoad = 0x100000;

kvm_segment to_kvm(const hv::Segment& s) {
    kvm_segment k{};
    k.base = s.base, k.limit = s.limit, k.selector = s.selector, k.type = s.type;
    k.present = s.present, k.dpl = s.dpl, k.db = s.db, k.s = s.s, k.l = s.l, k.g = s.g;
    k.avl = s.avl, k.unusable = s.unusable;
    return k;
}
}  // namespace

RawVm::RawVm(RawVm&& o) noexcept
    : kvm_(std::exchange(o.kvm_, -1)),
      vm_(std::exchange(o.vm_, -1)),
      vcpu_(std::exchange(o.vcpu_, -1)),
      run_(std::exchange(o.run_, nullptr)),
      run_size_(o.run_size_),
      mem_(std::exchange(o.mem_, nullptr)) {}

RawVm::~RawVm() {
    if (run_ != nullptr) ::munmap(run_, run_size_);
    for (int fd : {vcpu_, vm_, kvm_})
        if (fd >= 0) ::close(fd);
    delete mem_;
}

Result<RawVm> RawVm::create(std::span<const uint8_t> image, uint64_t rdi, uint64_t rsi,
                            uint64_t rdx, bool user_mode) {
    RawVm vm;
    vm.kvm_ = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (vm.kvm_ < 0) return fail_errno(errno, "open /dev/kvm");
    vm.vm_ = ::ioctl(vm.kvm_, KVM_CREATE_VM, 0);
    if (vm.vm_ < 0) return fail_errno(errno, "KVM_CREATE_VM");

    VIREO_TRY_ASSIGN(auto mem, memory::GuestMemory::create_flat(kRam));
    vm.mem_ = new memory::GuestMemory(std::move(mem));
    arch::x86::LongModeLayout layout;
    VIREO_TRY(arch::x86::write_long_mode_tables(*vm.mem_, layout));
    VIREO_TRY(vm.mem_->write(memory::Gpa(kLoad), std::as_bytes(image)));

    kvm_userspace_memory_region region{};
    region.memory_size = kRam;
    region.userspace_addr = vm.mem_->regions()[0].host.value();
    if (::ioctl(vm.vm_, KVM_SET_USER_MEMORY_REGION, &region) < 0)
        return fail_errno(errno, "KVM_SET_USER_MEMORY_REGION");

    vm.vcpu_ = ::ioctl(vm.vm_, KVM_CREATE_VCPU, 0);
    if (vm.vcpu_ < 0) return fail_errno(errno, "KVM_CREATE_VCPU");
    vm.run_size_ = static_cast<size_t>(::ioctl(vm.kvm_, KVM_GET_VCPU_MMAP_SIZE, 0));
    vm.run_ = ::mmap(nullptr, vm.run_size_, PROT_READ | PROT_WRITE, MAP_SHARED, vm.vcpu_, 0);
    if (vm.run_ == MAP_FAILED) return fail_errno(errno, "mmap kvm_run");

    std::vector<uint8_t> buf(sizeof(kvm_cpuid2) + 256 * sizeof(kvm_cpuid_entry2));
    auto* cpuid = reinterpret_cast<kvm_cpuid2*>(buf.data());
    cpuid->nent = 256;
    if (::ioctl(vm.kvm_, KVM_GET_SUPPORTED_CPUID, cpuid) < 0 ||
        ::ioctl(vm.vcpu_, KVM_SET_CPUID2, cpuid) < 0)
        return fail_errno(errno, "CPUID");

    auto st = arch::x86::long_mode_state(
        layout, kLoad, kLoad, user_mode ? arch::x86::Ring::User : arch::x86::Ring::Kernel);
    kvm_sregs sregs{};
    if (::ioctl(vm.vcpu_, KVM_GET_SREGS, &sregs) < 0) return fail_errno(errno, "KVM_GET_SREGS");
    const auto& g = st.segments;
    sregs.cs = to_kvm(g.cs), sregs.ds = to_kvm(g.ds), sregs.es = to_kvm(g.es);
    sregs.fs = to_kvm(g.fs), sregs.gs = to_kvm(g.gs), sregs.ss = to_kvm(g.ss);
    sregs.tr = to_kvm(g.tr), sregs.ldt = to_kvm(g.ldt);
    sregs.gdt.base = g.gdt.base, sregs.gdt.limit = g.gdt.limit;
    sregs.idt.base = 0, sregs.idt.limit = 0;
    sregs.cr0 = st.crs.cr0, sregs.cr3 = st.crs.cr3, sregs.cr4 = st.crs.cr4;
    sregs.efer = st.crs.efer;
    if (::ioctl(vm.vcpu_, KVM_SET_SREGS, &sregs) < 0) return fail_errno(errno, "KVM_SET_SREGS");
    kvm_regs regs{};
    regs.rip = st.gprs.rip, regs.rsp = st.gprs.rsp, regs.rflags = st.gprs.rflags;
    regs.rdi = rdi, regs.rsi = rsi, regs.rdx = rdx;
    if (::ioctl(vm.vcpu_, KVM_SET_REGS, &regs) < 0) return fail_errno(errno, "KVM_SET_REGS");
    return vm;
}

Result<uint64_t> RawVm::loop(uint64_t exits, bool mmio) {
    auto* run = static_cast<kvm_run*>(run_);
    const uint32_t want = mmio ? KVM_EXIT_MMIO : KVM_EXIT_IO;
    auto t0 = std::chrono::steady_clock::now();
    for (uint64_t i = 0; i < exits; ++i) {
        if (::ioctl(vcpu_, KVM_RUN, 0) < 0) {
            if (errno == EINTR) {
                --i;
                continue;
            }
            return fail_errno(errno, "KVM_RUN");
        }
        if (run->exit_reason != want)
            return fail(ErrorCode::System, "raw loop: unexpected exit {}", run->exit_reason);
    }
    auto t1 = std::chrono::steady_clock::now();
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
}

}  // namespace vireo::bench
