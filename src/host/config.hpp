// The static host configuration (hyperlaunch): one TOML file declares every CPU pool and every
// domain. Parsing checks everything it can without touching the host: unknown keys, wrong
// types, bad sizes and CPU lists, duplicate or dangling names; each problem is reported with
// the file, line and key, and all of them at once. Admission (does it fit this host?) is a
// separate step over the parsed configuration and the host's facts.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/cpu_list.hpp"  // parse_cpu_list, used with pools
#include "base/host_facts.hpp"
#include "base/limits.hpp"
#include "base/mem_pool.hpp"
#include "base/result.hpp"
#include "vmm/vm.hpp"

namespace vireo::host {

/// Limits per domain: the machine's own (vmm/vm.hpp), the same as `vireo run`'s.
inline constexpr uint32_t kMaxDomainVcpus = vmm::kMaxCpus;
inline constexpr uint64_t kMaxDomainMemory = vmm::kMaxMemory;
inline constexpr uint64_t kMinDomainMemory = vmm::kMinMemory;
/// What one domain's VMM process itself costs beyond guest memory and its VMM pool: the binary
/// and libc, its heap, the main, I/O and API threads (measured at 4-5 MiB: docs/PERFORMANCE.md)
/// and, per vCPU, its thread's stack and KVM's vCPU structures (docs/ARCHITECTURE.md).
inline constexpr uint64_t kVmmBase = uint64_t{8} << 20;
inline constexpr uint64_t kVmmPerVcpu = uint64_t{256} << 10;

enum class PoolPolicy { Shared, Pinned };
using MemoryBacking = vmm::VmConfig::Backing;  // one enum, one spelling (vmm::to_string)
enum class Action { Destroy, Restart, Preserve };

struct Pool {
    std::string name;
    std::set<uint32_t> cpus;
    PoolPolicy policy = PoolPolicy::Shared;
    int line = 0;
};

struct DomainConfig {
    std::string name;
    std::string kernel, initrd, cmdline;  // kernel empty: the default guest
    uint64_t memory = uint64_t{256} << 20;
    uint32_t vcpus = 1;
    std::string pool = "default";
    uint32_t weight = 100;  ///< cgroup cpu.weight, 1-10000
    uint32_t cap = 0;       ///< percent of one CPU (cpu.max); 0: no cap
    std::vector<std::string> disks, nets;
    std::string vsock;
    bool rng = false, balloon = false;
    uint64_t console_log_max = kDefaultConsoleLogMax;  ///< RUN_DIR/NAME.log rotates here
    MemoryBacking memory_backing = MemoryBacking::Anonymous;
    std::string cpu = "host";        ///< CPU template and overrides (arch/x86/cpu_template.hpp)
    std::string spec_ctrl = "on";    ///< speculation controls shown (arch/x86/spec_ctrl.hpp)
    std::string msr_filter = "on";   ///< the MSR allow-list (arch/x86/msr_policy.hpp)
    std::string irqchip = "kernel";  ///< where the interrupt controllers live (kernel, split)
    uint64_t vmm_pool = 0;  ///< the VMM memory pool (base/mem_pool.hpp); 0: its devices' default
    Action on_poweroff = Action::Destroy, on_reboot = Action::Restart, on_crash = Action::Destroy;
    bool autostart = true;
    /// Run on a software KVM (tiny test guests only; see `vireo run --allow-software-kvm`).
    bool allow_software_kvm = false;
    /// The jail (docs/security.md); `sandbox = false` runs the domain as root, with a warning.
    bool sandbox = true;
    /// A snapshot (vireo save) the domain goes on from instead of booting (absolute), or "".
    /// Its machine fills the keys the table does not give (parse_host_config).
    std::string restore;
    /// A domain received from another vireo (vireo migrate --to-host): the unix: address its
    /// process listens on for the migration, its machine coming with it; "" for the others.
    /// Not a key of the file.
    std::string incoming;
    int line = 0;
};

/// The domain's VMM pool: its own, or the default for its devices (default_vmm_pool_for).
uint64_t vmm_pool_of(const DomainConfig& d) noexcept;

/// What a domain may take of the host's memory — what admission counts and its cgroup's
/// memory.max: guest memory; the kernel's page tables for it (the host's and KVM's nested ones,
/// 8 bytes per 4 KiB page each); the VMM process itself (kVmmBase + kVmmPerVcpu per vCPU);
/// and its VMM pool, which bounds everything a guest can make the VMM allocate. Saturating.
uint64_t domain_memory_budget(const DomainConfig& d) noexcept;

/// A shared memory region between domains (`[shm.NAME]`, docs/shm.md): allocated once by
/// `vireo up` before any domain is built, shown to each listed domain as an ivshmem device.
struct ShmRegion {
    std::string name;
    uint64_t size = 0;  ///< a power of two, 4 KiB to 64 GiB
    /// The domains sharing it, in peer order (IVPosition); the first is its owner, whose
    /// start as a new process clears the region (the borrowers' restarts keep it).
    std::vector<std::string> domains;
    std::vector<std::string> readonly;  ///< borrowers whose writes do not reach it
    bool hugepages = false;             ///< backing = "hugepages" (2 MiB pages, reserved)
    bool doorbells = true;
    uint16_t vectors = 1;  ///< interrupt vectors per peer (MSI-X; INTx rings vector 0 too)
    int line = 0;

    /// `domain`'s peer number, or -1 if it does not share this region.
    int peer_of(const std::string& domain) const;
    bool is_readonly(const std::string& domain) const;
};

/// Descriptors a domain process may be handed at its start (its shared regions and doorbells).
inline constexpr size_t kMaxHandedFds = 256;

/// The first of the ids sandboxed domains run as (host key `uid_base`): above the ids Debian's
/// adduser hands out (< 60000), below the subordinate ranges of user namespaces (100000+).
constexpr uint32_t kDefaultUidBase = 70000;
/// How many ids a host uses from uid_base on: one per domain.
constexpr uint32_t kMaxDomainIds = 1024;

struct HostConfig {
    std::string path;
    bool overcommit = false;
    uint64_t reserve = uint64_t{256} << 20;  ///< host memory kept free for the host itself
    std::string run_dir;  ///< default: /run/vireo/<file stem> or $XDG_RUNTIME_DIR
    /// Sandboxed domains run as uid = gid = uid_base + a slot (0 .. kMaxDomainIds - 1), the
    /// lowest free one when the domain starts: ids no other domain of the host has meanwhile.
    uint32_t uid_base = kDefaultUidBase;
    std::map<std::string, Pool> pools;  ///< including "default" (CPUs no pool names)
    std::vector<DomainConfig> domains;  ///< in file order
    std::vector<ShmRegion> shm;         ///< in file order
};

/// Parses and checks `path`. On failure the error message lists every problem, one per line,
/// each "FILE:LINE: KEY: reason".
Result<HostConfig> load_host_config(const std::string& path, uint32_t num_cpus,
                                    const HostConfig* base = nullptr);
/// With `base` (a running host, for `vireo create`): the text may only declare domains; their
/// pools are the host's, and their names must be new.
Result<HostConfig> parse_host_config(std::string_view text, const std::string& path,
                                     uint32_t num_cpus, const HostConfig* base = nullptr);

/// What the host has, for admission.
using vireo::HostFacts;  // base/host_facts.hpp

/// Checks that every domain fits together: memory (+ overhead + reserve, + each shared region
/// once) unless overcommit,
/// lockable memory for `locked`, huge pages for `hugepages`, pinned pools' CPUs. On failure the
/// message says what is short and by how much, one line per shortfall.
Result<void> admit(const HostConfig& config, const HostFacts& facts);

const char* to_string(Action a) noexcept;

/// A pool's or domain's name: 1-64 letters, digits, -, _, . (not . or - first).
bool valid_name(std::string_view n);

}  // namespace vireo::host
