#include "domain/spec.hpp"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "base/cpu_list.hpp"
#include "base/limits.hpp"
#include "base/size.hpp"
#include "base/split.hpp"
#include "base/unique_fd.hpp"
#include "domain/device_options.hpp"
#include "domain/protocol.hpp"

namespace vireo::domain {

namespace {

// "FIELD: reason" for a field whose own parser gave `e`.
Unexpected field_error(const char* field, Error e) {
    return Unexpected{std::move(e.context(field))};
}

}  // namespace

std::string default_guest_dir() {
    if (const char* d = std::getenv("VIREO_GUEST_DIR")) return d;
    if (const char* c = std::getenv("VIREO_CACHE")) return std::string(c) + "/guest";
    const char* home = std::getenv("HOME");
    return std::string(home ? home : "/root") + "/.cache/vireo/guest";
}

Result<DomainSpec> parse_spec(const DomainText& t, const std::string& guest_dir) {
    DomainSpec s;
    s.name = t.name;
    s.cpus = t.cpus;

    if (!t.cpu_affinity.empty()) {
        auto cpus =
            parse_cpu_list(t.cpu_affinity, static_cast<uint32_t>(::sysconf(_SC_NPROCESSORS_CONF)));
        if (!cpus) return field_error("cpu-affinity", cpus.error());
        s.cpu_affinity.assign(cpus->begin(), cpus->end());
    }
    auto memory = parse_size(t.memory);
    if (!memory) return field_error("memory", memory.error());
    s.memory_bytes = *memory;

    // Files: explicit, or the default guest.
    s.kernel_path = t.kernel;
    s.initrd_path = t.initrd;
    if (s.kernel_path.empty()) {
        s.kernel_path = guest_dir + "/vmlinuz";
        if (s.initrd_path.empty()) s.initrd_path = guest_dir + "/initrd.img";
        if (!std::filesystem::exists(s.kernel_path))
            return fail(ErrorCode::NotFound,
                        "kernel: none given and the default guest is not built ({} is missing): "
                        "run scripts/guest-image.sh",
                        s.kernel_path);
    }
    s.cmdline = t.cmdline.empty() ? kDefaultCmdline : t.cmdline;
    if (!t.append.empty()) s.cmdline += " " + t.append;

    if (t.console == "none") {
        s.console = ConsoleKind::None;
    } else if (t.console == "stdio") {
        s.console = ConsoleKind::Stdio;
    } else if (t.console.rfind("file:", 0) == 0 && t.console.size() > 5) {
        s.console = ConsoleKind::File;
        s.console_path = t.console.substr(5);
    } else if (t.console.rfind("append:", 0) == 0 && t.console.size() > 7) {
        s.console = ConsoleKind::Append;
        s.console_path = t.console.substr(7);
    } else {
        return fail(ErrorCode::InvalidArgument,
                    "console: \"{}\": use stdio, file:PATH, append:PATH or none", t.console);
    }
    auto log_max = parse_size(t.console_log_max);
    if (!log_max || !console_log_max_ok(*log_max))
        return fail(ErrorCode::InvalidArgument, "console-log-max: \"{}\": a size from {}",
                    t.console_log_max, kConsoleLogMaxRange);
    s.console_log_max = *log_max;

    if (t.on_reboot == "restart") {
        s.on_reboot = OnReboot::Restart;
    } else if (t.on_reboot == "exit") {
        s.on_reboot = OnReboot::Exit;
    } else {
        return fail(ErrorCode::InvalidArgument, "on-reboot: \"{}\": use restart or exit",
                    t.on_reboot);
    }
    if (t.on_crash == "exit") {
        s.on_crash = OnCrash::Exit;
    } else if (t.on_crash == "preserve") {
        s.on_crash = OnCrash::Preserve;
    } else {
        return fail(ErrorCode::InvalidArgument, "on-crash: \"{}\": use exit or preserve",
                    t.on_crash);
    }
    const auto backing = vmm::parse_backing(t.memory_backing);
    if (!backing)
        return fail(ErrorCode::InvalidArgument,
                    "memory-backing: \"{}\": use anonymous, prefault, locked or hugepages",
                    t.memory_backing);
    s.backing = *backing;
    auto cpu_template = arch::x86::parse_cpu_template(t.cpu);
    if (!cpu_template) return field_error("cpu", cpu_template.error());
    s.cpu = std::move(cpu_template).value();
    auto spec_ctrl = arch::x86::parse_spec_ctrl(t.spec_ctrl);
    if (!spec_ctrl) return field_error("spec-ctrl", spec_ctrl.error());
    s.cpu.spec_ctrl = *spec_ctrl;
    auto msrs = arch::x86::parse_msr_policy(t.msr_filter);
    if (!msrs) return field_error("msr-filter", msrs.error());
    s.msrs = std::move(msrs).value();
    const auto irqchip = vmm::parse_irqchip(t.irqchip);
    if (!irqchip)
        return fail(ErrorCode::InvalidArgument, "irqchip: \"{}\": use kernel, split or userspace",
                    t.irqchip);
    s.irqchip = *irqchip;
    if (!t.vmm_pool.empty()) {
        auto pool = parse_size(t.vmm_pool);
        if (!pool || !vmm_pool_ok(*pool))
            return fail(ErrorCode::InvalidArgument, "vmm-pool: \"{}\": a size from {}", t.vmm_pool,
                        kVmmPoolRange);
        s.vmm_pool = *pool;
    }

    for (const auto& spec : t.disks) {
        auto d = parse_disk_option(spec);
        if (!d) return field_error("disk", d.error());
        s.disks.push_back(std::move(d).value());
    }
    for (const auto& spec : t.nets) {
        auto n = parse_net_option(spec);
        if (!n) return field_error("net", n.error());
        s.nets.push_back(std::move(n).value());
    }
    if (!t.vsock.empty()) {
        auto v = parse_vsock_option(t.vsock);
        if (!v) return field_error("vsock", v.error());
        s.vsock = std::move(v).value();
    }
    if (t.vmm_pool.empty()) s.vmm_pool = default_vmm_pool_for(t.nets, s.vsock.has_value());
    s.rng = t.rng;
    s.balloon = t.balloon;
    for (const auto& spec : t.shm) {
        auto o = parse_shm_option(spec);
        if (!o) return field_error("shm", o.error());
        for (const auto& other : s.shm)
            if (other.name == o->name)
                return fail(ErrorCode::InvalidArgument,
                            "shm: two regions named \"{}\" (give each its own name=)", o->name);
        s.shm.push_back(std::move(o).value());
    }
    if (s.shm.size() > vmm::kMaxShmRegions)
        return fail(ErrorCode::InvalidArgument, "shm: {} regions; at most {}", s.shm.size(),
                    vmm::kMaxShmRegions);

    for (const std::string_view field :
         t.pin_vcpus.empty() ? std::vector<std::string_view>{} : split(t.pin_vcpus, ',')) {
        const std::string item(field);
        char* end = nullptr;
        const long cpu = std::strtol(item.c_str(), &end, 10);
        if (item.empty() || *end != '\0' || cpu < 0 || cpu >= CPU_SETSIZE)
            return fail(ErrorCode::InvalidArgument, "pin-vcpus: \"{}\" is not a CPU number", item);
        s.vcpu_affinity.push_back({static_cast<int>(cpu)});
    }
    if (!s.vcpu_affinity.empty() && s.vcpu_affinity.size() != s.cpus)
        return fail(ErrorCode::InvalidArgument, "pin-vcpus: {} CPUs for {} vCPUs",
                    s.vcpu_affinity.size(), s.cpus);
    if (s.disks.size() + s.nets.size() + (s.rng ? 1 : 0) + (s.vsock ? 1 : 0) + (s.balloon ? 1 : 0) +
            s.shm.size() >
        vmm::kMaxVirtioDevices)
        return fail(ErrorCode::InvalidArgument,
                    "at most {} devices (disks + nets + rng + vsock + balloon + shm; one "
                    "interrupt line each)",
                    vmm::kMaxVirtioDevices);

    s.process = t.process;
    s.machine = machine_text(t, s);
    return s;
}

namespace {

// `path` made absolute against the current directory ("" stays "").
std::string absolute_path(const std::string& path) {
    if (path.empty()) return path;
    std::error_code ec;
    auto p = std::filesystem::absolute(path, ec);
    return ec ? path : p.lexically_normal().string();
}

// A device option with its path made absolute: the text before the first ',' (a disk), or the
// value of `key=` (a vsock socket).
std::string absolute_option(const std::string& spec, std::string_view key) {
    size_t start = 0;
    if (!key.empty()) {
        const size_t at = spec.find(key);
        if (at == std::string::npos || (at != 0 && spec[at - 1] != ',')) return spec;
        start = at + key.size();
    }
    const size_t end = std::min(spec.find(',', start), spec.size());
    return spec.substr(0, start) + absolute_path(spec.substr(start, end - start)) +
           spec.substr(end);
}

}  // namespace

DomainText machine_text(const DomainText& t, const DomainSpec& s) {
    DomainText m;
    m.name = t.name;
    m.kernel = absolute_path(s.kernel_path);
    m.initrd = absolute_path(s.initrd_path);
    m.cmdline = s.cmdline;
    m.memory = t.memory;
    m.cpus = t.cpus;
    m.on_reboot = t.on_reboot;
    m.on_crash = t.on_crash;
    for (const auto& d : t.disks)
        m.disks.push_back(absolute_option(d, ""));
    m.nets = t.nets;
    m.vsock = t.vsock.empty() ? t.vsock : absolute_option(t.vsock, "socket=");
    m.balloon = t.balloon;
    m.rng = t.rng;
    m.memory_backing = t.memory_backing;
    m.cpu = t.cpu;
    m.spec_ctrl = t.spec_ctrl;
    m.msr_filter = t.msr_filter;
    m.irqchip = t.irqchip;
    m.vmm_pool = t.vmm_pool;
    return m;
}

Result<DomainText> saved_machine(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return fail(ErrorCode::NotFound, "{}: {}", path, std::strerror(errno));
    auto saved = vmm::Vm::saved_domain(fd.get());
    if (!saved) return fail(saved.error().code(), "{}: {}", path, saved.error().message());
    return parse_spec_json(*saved, path + ": the saved domain configuration");
}

}  // namespace vireo::domain
