// A domain's configuration: what one domain is, as text (DomainText, the way `vireo run`'s
// flags give it) and checked (DomainSpec, typed: sizes in bytes, enums, parsed device options).
//
// parse_spec() is the one parser from text to spec. Every field is checked before anything is
// opened or created; an error names the field (its flag name without dashes, e.g.
// "memory: ...", "disk: ...") so the caller can add its own prefix ("--" for flags).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "domain/device_options.hpp"
#include "vmm/vm.hpp"

namespace vireo::domain {

/// The kernel command line when none is given.
inline constexpr const char* kDefaultCmdline = "console=ttyS0 reboot=k panic=-1 quiet";

/// How the domain process itself is reached and run: the same in text and in spec (nothing to
/// parse).
struct ProcessOptions {
    std::string api_socket;      ///< the domain's JSON API (docs/api.md), or ""
    std::string console_socket;  ///< its serial console for `vireo console`, or ""
    std::string metrics;         ///< ADDR:PORT of the Prometheus endpoint, or ""
    int ctl_fd = -1;             ///< the supervisor's launch socket (domain/protocol.hpp), or -1
    /// A migration's connection, hello read (vireo run --incoming): the machine's memory and
    /// state come on it instead of a boot (domain/migrate.hpp), or -1. Not sent.
    int incoming_fd = -1;
    /// The supervisor's go came already (an incoming domain of vireo up gets it once it
    /// listens, before its migration arrives). Not sent.
    bool go_given = false;
    bool stats = false;  ///< print one line of figures at exit
    bool allow_software_kvm = false;
    /// The jail (sandbox/sandbox.hpp): on unless turned off. uid/gid 0: the default
    /// (sandbox::kDefaultRunUid for `vireo run`, one per domain for `vireo up`).
    bool sandbox = true;
    uint32_t uid = 0;
    uint32_t gid = 0;
    /// A snapshot (vireo save) to go on from instead of booting, or "" (docs/snapshot.md).
    std::string restore;
    bool operator==(const ProcessOptions&) const = default;
};

/// A domain's fields as text, as given on the command line (and defaults as `vireo run` has
/// them), and as the supervisor sends them to a domain process (domain/protocol.hpp): every
/// field here is also in protocol.cpp's encode_spec/decode_spec.
struct DomainText {
    std::string name = "vireo";
    std::string kernel;  ///< empty: the default guest
    std::string initrd;
    std::string cmdline;  ///< empty: kDefaultCmdline
    std::string append;
    std::string memory = "256M";
    uint32_t cpus = 1;
    std::string console = "stdio";
    std::string console_log_max = "16M";
    std::string on_reboot = "restart";
    std::string on_crash = "exit";
    std::vector<std::string> disks;
    std::vector<std::string> nets;
    std::string vsock;
    bool balloon = false;
    bool rng = false;
    std::vector<std::string> shm;  ///< shared memory regions (ShmOptions' forms)
    std::string memory_backing = "anonymous";
    std::string cpu = "host";        ///< CPU template and overrides (arch/x86/cpu_template.hpp)
    std::string spec_ctrl = "on";    ///< speculation controls shown (arch/x86/spec_ctrl.hpp)
    std::string msr_filter = "on";   ///< the MSR allow-list (arch/x86/msr_policy.hpp)
    std::string irqchip = "kernel";  ///< where the interrupt controllers live (kernel, split)
    std::string vmm_pool;            ///< the VMM memory pool (base/mem_pool.hpp); "": its default
    std::string cpu_affinity;        ///< host CPUs for every thread (a shared pool)
    std::string pin_vcpus;           ///< one host CPU per vCPU (a pinned pool)
    ProcessOptions process;
    bool operator==(const DomainText&) const = default;
};

enum class OnReboot { Restart, Exit };
enum class OnCrash { Exit, Preserve };
enum class ConsoleKind { None, Stdio, File, Append };

/// A checked domain configuration. Nothing in it has been opened yet.
struct DomainSpec {
    std::string name;
    std::string kernel_path, initrd_path;  ///< resolved (the default guest's when not given)
    std::string cmdline;                   ///< complete (base + append)
    uint64_t memory_bytes = 0;
    uint32_t cpus = 1;
    ConsoleKind console = ConsoleKind::Stdio;
    std::string console_path;  ///< File and Append
    uint64_t console_log_max = 0;
    OnReboot on_reboot = OnReboot::Restart;
    OnCrash on_crash = OnCrash::Exit;
    vmm::VmConfig::Backing backing = vmm::VmConfig::Backing::Anonymous;
    arch::x86::CpuTemplate cpu;
    arch::x86::MsrPolicy msrs;
    hv::IrqchipMode irqchip = hv::IrqchipMode::Kernel;
    uint64_t vmm_pool = kDefaultVmmPool;
    std::vector<virtio::DiskOptions> disks;
    std::vector<virtio::NetOptions> nets;
    std::optional<virtio::VsockOptions> vsock;
    bool balloon = false, rng = false;
    std::vector<ShmOptions> shm;
    std::vector<uint32_t> cpu_affinity;           ///< empty: any host CPU
    std::vector<std::vector<int>> vcpu_affinity;  ///< empty, or one CPU per vCPU
    ProcessOptions process;
    /// The machine as a snapshot records it (`vireo restore` starts from it): machine_text().
    DomainText machine;
};

/// Checks every field of `text`; `default_guest_dir` is where the default guest lives (used
/// when no kernel is given).
Result<DomainSpec> parse_spec(const DomainText& text, const std::string& default_guest_dir);

/// The machine part of `t` (whose checked form is `s`), as a snapshot records it for `vireo
/// restore`: the kernel and initrd resolved, every path absolute (a restore may run from another
/// directory), the complete command line; the guest's devices, size and reactions. Not the
/// host-side placement, console or process options: a restore gives those anew. Paths are made
/// absolute against the current directory, so this is called before the sandbox.
DomainText machine_text(const DomainText& t, const DomainSpec& s);

/// The machine a snapshot (vireo save) keeps for `vireo restore` (its DOMN section, checked as
/// every section is), read from `path`; errors start with the path.
Result<DomainText> saved_machine(const std::string& path);

/// Where the default guest lives: $VIREO_GUEST_DIR, $VIREO_CACHE/guest or
/// ~/.cache/vireo/guest.
std::string default_guest_dir();

}  // namespace vireo::domain
