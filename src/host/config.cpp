#include "host/config.hpp"

#include <sys/resource.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/checked.hpp"
#include "base/size.hpp"
#include "domain/device_options.hpp"
#include "domain/spec.hpp"

namespace vireo::host {

namespace {

// Collects problems; each names file, line and key.
struct Problems {
    std::string path;
    std::vector<std::string> list;
    void add(int line, std::string_view key, const std::string& why) {
        list.push_back(fmt::format("{}:{}: {}: {}", path, line, key, why));
    }
};

// The message of a failed parse, or nothing.
template <typename T>
std::optional<std::string> error_of(const Result<T>& r) {
    if (r) return std::nullopt;
    return r.error().message();
}

int line_of(const toml::node& n) {
    return static_cast<int>(n.source().begin.line);
}

std::optional<Action> parse_action(std::string_view s) {
    if (s == "destroy") return Action::Destroy;
    if (s == "restart") return Action::Restart;
    if (s == "preserve") return Action::Preserve;
    return std::nullopt;
}

// Typed getters: a wrong type is a problem, absence leaves the default.
struct Reader {
    Problems& p;
    std::string prefix;  // "domains.web."
    bool str(const toml::node& n, std::string_view key, std::string& out) {
        if (auto v = n.value<std::string>(); v && n.is_string()) {
            out = *v;
            return true;
        }
        p.add(line_of(n), prefix + std::string(key), "must be a string");
        return false;
    }
    bool boolean(const toml::node& n, std::string_view key, bool& out) {
        if (!n.is_boolean()) {
            p.add(line_of(n), prefix + std::string(key), "must be true or false");
            return false;
        }
        out = *n.value<bool>();
        return true;
    }
    bool integer(const toml::node& n, std::string_view key, int64_t lo, int64_t hi, int64_t& out) {
        if (!n.is_integer()) {
            p.add(line_of(n), prefix + std::string(key), "must be an integer");
            return false;
        }
        out = *n.value<int64_t>();
        if (out < lo || out > hi) {
            p.add(line_of(n), prefix + std::string(key),
                  fmt::format("{} is out of range ({} to {})", out, lo, hi));
            return false;
        }
        return true;
    }
    bool size(const toml::node& n, std::string_view key, uint64_t& out) {
        if (n.is_integer()) {  // a bare number is MiB, as on the command line
            const int64_t v = *n.value<int64_t>();
            if (v <= 0) {
                p.add(line_of(n), prefix + std::string(key), "must be positive");
                return false;
            }
            const auto bytes = checked_mul(static_cast<uint64_t>(v), uint64_t{1} << 20);
            if (!bytes) {
                p.add(line_of(n), prefix + std::string(key), fmt::format("{} MiB is too large", v));
                return false;
            }
            out = *bytes;
            return true;
        }
        if (!n.is_string()) {
            p.add(line_of(n), prefix + std::string(key), "must be a size such as \"512M\"");
            return false;
        }
        auto s = parse_size(*n.value<std::string>());
        if (!s) {
            p.add(line_of(n), prefix + std::string(key), s.error().message());
            return false;
        }
        out = *s;
        return true;
    }
    bool strings(const toml::node& n, std::string_view key, std::vector<std::string>& out) {
        const auto* arr = n.as_array();
        if (arr == nullptr) {
            p.add(line_of(n), prefix + std::string(key), "must be an array of strings");
            return false;
        }
        for (const auto& e : *arr) {
            if (!e.is_string()) {
                p.add(line_of(e), prefix + std::string(key), "must be an array of strings");
                return false;
            }
            out.push_back(*e.value<std::string>());
        }
        return true;
    }
};

void parse_pool(const std::string& name, const toml::table& t, uint32_t num_cpus, Problems& p,
                HostConfig& cfg, std::map<uint32_t, std::string>& owner) {
    Pool pool;
    pool.name = name;
    pool.line = line_of(t);
    Reader r{p, "pools." + name + "."};
    if (!valid_name(name)) p.add(pool.line, "pools." + name, "a name is letters, digits, -, _, .");
    bool have_cpus = false;
    for (auto&& [k, v] : t) {
        const std::string key(k.str());
        if (key == "cpus") {
            have_cpus = true;  // present; a bad value is reported on its own
            std::string s;
            if (!r.str(v, key, s)) continue;
            auto cpus = parse_cpu_list(s, num_cpus);
            if (!cpus) {
                p.add(line_of(v), r.prefix + key, cpus.error().message());
                continue;
            }
            pool.cpus = *cpus;
        } else if (key == "policy" || key == "sched") {
            std::string s;
            if (!r.str(v, key, s)) continue;
            if (s == "shared")
                pool.policy = PoolPolicy::Shared;
            else if (s == "pinned")
                pool.policy = PoolPolicy::Pinned;
            else
                p.add(line_of(v), r.prefix + key, fmt::format("\"{}\": use shared or pinned", s));
        } else {
            p.add(line_of(v), r.prefix + key, "unknown key (known: cpus, policy)");
        }
    }
    if (!have_cpus) p.add(pool.line, "pools." + name + ".cpus", "is required");
    for (uint32_t c : pool.cpus) {
        auto [it, fresh] = owner.emplace(c, name);
        if (!fresh)
            p.add(pool.line, "pools." + name + ".cpus",
                  fmt::format("CPU {} is already in pool {}", c, it->second));
    }
    cfg.pools[name] = std::move(pool);
}

void parse_shm(const std::string& name, const toml::table& t, Problems& p, HostConfig& cfg) {
    ShmRegion m;
    m.name = name;
    m.line = line_of(t);
    Reader r{p, "shm." + name + "."};
    if (!valid_name(name)) p.add(m.line, "shm." + name, "a name is letters, digits, -, _, .");
    int size_line = 0, backing_line = 0;
    for (auto&& [k, v] : t) {
        const std::string key(k.str());
        std::string s;
        int64_t n = 0;
        if (key == "size") {
            size_line = line_of(v);
            if (r.size(v, key, m.size) && !domain::valid_shm_size(m.size))
                p.add(line_of(v), r.prefix + key,
                      fmt::format("{} bytes: must be a power of two from 4K to 64G", m.size));
        } else if (key == "domains" || key == "readonly") {
            auto& list = key == "domains" ? m.domains : m.readonly;
            if (!r.strings(v, key, list)) continue;
            std::set<std::string> seen;
            for (const auto& d : list)
                if (!seen.insert(d).second)
                    p.add(line_of(v), r.prefix + key, fmt::format("\"{}\" is listed twice", d));
            if (key == "domains" && (list.empty() || list.size() > domain::kMaxShmPeers))
                p.add(line_of(v), r.prefix + key,
                      fmt::format("{} domains: a region has 1 to {}", list.size(),
                                  domain::kMaxShmPeers));
        } else if (key == "backing") {
            if (!r.str(v, key, s)) continue;
            backing_line = line_of(v);
            if (s == "anonymous")
                m.hugepages = false;
            else if (s == "hugepages")
                m.hugepages = true;
            else
                p.add(line_of(v), r.prefix + key,
                      fmt::format("\"{}\": use anonymous or hugepages", s));
        } else if (key == "doorbells") {
            r.boolean(v, key, m.doorbells);
        } else if (key == "vectors") {
            if (r.integer(v, key, 1, domain::kMaxShmVectors, n))
                m.vectors = static_cast<uint16_t>(n);
        } else {
            p.add(line_of(v), r.prefix + key,
                  "unknown key (known: size, domains, readonly, backing, doorbells, vectors)");
        }
    }
    if (size_line == 0) p.add(m.line, r.prefix + "size", "is required");
    if (m.domains.empty() && t.find("domains") == t.end())
        p.add(m.line, r.prefix + "domains", "is required (the first is the owner)");
    if (m.hugepages && m.size != 0 && m.size % (uint64_t{2} << 20) != 0)
        p.add(backing_line, r.prefix + "backing", "hugepages needs a size of at least 2M");
    for (const auto& ro : m.readonly) {
        if (m.peer_of(ro) < 0)
            p.add(m.line, r.prefix + "readonly",
                  fmt::format("\"{}\" is not one of the region's domains", ro));
        else if (m.peer_of(ro) == 0)
            p.add(m.line, r.prefix + "readonly",
                  fmt::format("\"{}\" owns the region (the first of domains): it cannot be "
                              "read-only",
                              ro));
    }
    cfg.shm.push_back(std::move(m));
}

// `restore = "FILE"`: the machine keys the table does not give come from the snapshot's saved
// configuration (as `vireo restore` takes them); the ones it gives must describe the same
// machine (the lists as many devices), else the domain could not be restored.
void take_machine_from_snapshot(const toml::table& t, int line, Reader& r, DomainConfig& d) {
    const std::string key = r.prefix + "restore";
    std::error_code ec;
    const auto abs = std::filesystem::absolute(d.restore, ec);
    if (!ec) d.restore = abs.lexically_normal().string();
    auto m = domain::saved_machine(d.restore);
    if (!m) {
        r.p.add(line, key, m.error().message());
        return;
    }
    auto given = [&t](const char* k) { return t.contains(k); };
    auto differs = [&](const char* k, const std::string& why) {
        r.p.add(line, key, fmt::format("the snapshot's machine {}; {} says otherwise", why, k));
    };
    if (!given("kernel")) d.kernel = m->kernel;
    if (!given("initrd")) d.initrd = m->initrd;
    if (!given("cmdline")) d.cmdline = m->cmdline;
    // The file is input like the table: its sizes are held to the same limits.
    const auto memory = parse_size(m->memory);
    if (!memory || *memory < kMinDomainMemory || *memory > kMaxDomainMemory || m->cpus < 1 ||
        m->cpus > kMaxDomainVcpus) {
        r.p.add(
            line, key,
            fmt::format("{}: the saved machine's memory or vCPU count is out of range", d.restore));
        return;
    }
    if (!given("memory"))
        d.memory = *memory;
    else if (d.memory != *memory)
        differs("memory", fmt::format("has {} MiB", *memory >> 20));
    if (!given("vcpus"))
        d.vcpus = m->cpus;
    else if (d.vcpus != m->cpus)
        differs("vcpus", fmt::format("has {} vCPUs", m->cpus));
    auto list = [&](const char* k, std::vector<std::string>& mine,
                    const std::vector<std::string>& saved_list, const char* what) {
        if (!given(k))
            mine = saved_list;
        else if (mine.size() != saved_list.size())
            differs(k, fmt::format("has {} {}", saved_list.size(), what));
    };
    list("disks", d.disks, m->disks, "disk(s)");
    list("nets", d.nets, m->nets, "network device(s)");
    if (!given("vsock"))
        d.vsock = m->vsock;
    else if (m->vsock.empty())
        differs("vsock", "has no vsock device");
    if (!given("rng"))
        d.rng = m->rng;
    else if (d.rng != m->rng)
        differs("rng", m->rng ? "has an rng" : "has no rng");
    if (!given("balloon"))
        d.balloon = m->balloon;
    else if (d.balloon != m->balloon)
        differs("balloon", m->balloon ? "has a balloon" : "has no balloon");
    if (!given("memory_backing")) {
        if (const auto b = vmm::parse_backing(m->memory_backing)) d.memory_backing = *b;
    }
    if (!given("cpu")) d.cpu = m->cpu;
    if (!given("spec_ctrl")) d.spec_ctrl = m->spec_ctrl;
    if (!given("msr_filter")) d.msr_filter = m->msr_filter;
    if (!given("irqchip")) d.irqchip = m->irqchip;
    if (d.memory_backing == MemoryBacking::HugePages)
        r.p.add(line, key,
                "a snapshot's memory is mapped from its file: hugepages cannot be used (set "
                "memory_backing)");
}

void parse_domain(const std::string& name, const toml::table& t, Problems& p, HostConfig& cfg) {
    DomainConfig d;
    d.name = name;
    d.line = line_of(t);
    Reader r{p, "domains." + name + "."};
    int backing_line = 0;  // of memory_backing = "hugepages"
    int restore_line = 0;
    if (!valid_name(name))
        p.add(d.line, "domains." + name, "a name is 1-64 letters, digits, -, _, . (not first)");
    for (auto&& [k, v] : t) {
        const std::string key(k.str());
        int64_t n = 0;
        std::string s;
        if (key == "kernel")
            r.str(v, key, d.kernel);
        else if (key == "initrd")
            r.str(v, key, d.initrd);
        else if (key == "cmdline")
            r.str(v, key, d.cmdline);
        else if (key == "memory") {
            if (r.size(v, key, d.memory) &&
                (d.memory < kMinDomainMemory || d.memory > kMaxDomainMemory))
                p.add(line_of(v), r.prefix + key,
                      fmt::format("{} MiB is out of range (64 MiB to {} GiB)", d.memory >> 20,
                                  kMaxDomainMemory >> 30));
        } else if (key == "vcpus") {
            if (r.integer(v, key, 1, kMaxDomainVcpus, n)) d.vcpus = static_cast<uint32_t>(n);
        } else if (key == "pool")
            r.str(v, key, d.pool);
        else if (key == "weight") {
            if (r.integer(v, key, 1, 10000, n)) d.weight = static_cast<uint32_t>(n);
        } else if (key == "cap") {
            if (r.integer(v, key, 0, 100 * 1024, n)) d.cap = static_cast<uint32_t>(n);
        } else if (key == "disks" || key == "nets") {
            // Each spec goes through the parser the domain uses (as --disk, --net), so a bad
            // one is reported here, before anything starts.
            auto& specs = key == "disks" ? d.disks : d.nets;
            const size_t first = specs.size();
            if (!r.strings(v, key, specs)) continue;
            const auto& arr = *v.as_array();
            for (size_t i = first; i < specs.size(); ++i) {
                auto why = key == "disks" ? error_of(domain::parse_disk_option(specs[i]))
                                          : error_of(domain::parse_net_option(specs[i]));
                if (why) p.add(line_of(arr[i - first]), r.prefix + key, *why);
            }
        } else if (key == "vsock") {
            if (r.str(v, key, d.vsock))
                if (auto why = error_of(domain::parse_vsock_option(d.vsock)))
                    p.add(line_of(v), r.prefix + key, *why);
        } else if (key == "rng")
            r.boolean(v, key, d.rng);
        else if (key == "balloon")
            r.boolean(v, key, d.balloon);
        else if (key == "vmm_pool") {
            if (r.size(v, key, d.vmm_pool) && !vmm_pool_ok(d.vmm_pool))
                p.add(line_of(v), r.prefix + key,
                      fmt::format("{} bytes is out of range ({})", d.vmm_pool, kVmmPoolRange));
        } else if (key == "console_log_max") {
            if (r.size(v, key, d.console_log_max) && !console_log_max_ok(d.console_log_max))
                p.add(line_of(v), r.prefix + key,
                      fmt::format("{} bytes is out of range ({})", d.console_log_max,
                                  kConsoleLogMaxRange));
        } else if (key == "autostart")
            r.boolean(v, key, d.autostart);
        else if (key == "allow_software_kvm")
            r.boolean(v, key, d.allow_software_kvm);
        else if (key == "sandbox")
            r.boolean(v, key, d.sandbox);
        else if (key == "restore") {
            if (r.str(v, key, d.restore)) restore_line = line_of(v);
        } else if (key == "memory_backing") {
            if (!r.str(v, key, s)) continue;
            if (const auto b = vmm::parse_backing(s))
                d.memory_backing = *b;
            else
                p.add(line_of(v), r.prefix + key,
                      fmt::format("\"{}\": use anonymous, prefault, locked or hugepages", s));
            if (d.memory_backing == MemoryBacking::HugePages) backing_line = line_of(v);
        } else if (key == "cpu") {
            if (!r.str(v, key, s)) continue;
            if (auto c = arch::x86::parse_cpu_template(s); !c)
                p.add(line_of(v), r.prefix + key, c.error().message());
            else
                d.cpu = s;
        } else if (key == "spec_ctrl") {
            if (!r.str(v, key, s)) continue;
            if (auto c = arch::x86::parse_spec_ctrl(s); !c)
                p.add(line_of(v), r.prefix + key, c.error().message());
            else
                d.spec_ctrl = s;
        } else if (key == "msr_filter") {
            if (!r.str(v, key, s)) continue;
            if (auto c = arch::x86::parse_msr_policy(s); !c)
                p.add(line_of(v), r.prefix + key, c.error().message());
            else
                d.msr_filter = s;
        } else if (key == "irqchip") {
            if (!r.str(v, key, s)) continue;
            if (!vmm::parse_irqchip(s))
                p.add(line_of(v), r.prefix + key,
                      fmt::format("\"{}\": use kernel, split or userspace", s));
            else
                d.irqchip = s;
        } else if (key == "on_poweroff" || key == "on_reboot" || key == "on_crash") {
            if (!r.str(v, key, s)) continue;
            auto a = parse_action(s);
            if (!a) {
                p.add(line_of(v), r.prefix + key,
                      fmt::format("\"{}\": use destroy, restart or preserve", s));
                continue;
            }
            (key == "on_poweroff" ? d.on_poweroff
             : key == "on_reboot" ? d.on_reboot
                                  : d.on_crash) = *a;
        } else {
            p.add(line_of(v), r.prefix + key,
                  "unknown key (known: kernel, initrd, cmdline, memory, vcpus, pool, weight, cap, "
                  "disks, nets, vsock, rng, balloon, console_log_max, memory_backing, cpu, "
                  "spec_ctrl, msr_filter, irqchip, vmm_pool, "
                  "on_poweroff, on_reboot, on_crash, autostart, allow_software_kvm, sandbox, "
                  "restore)");
        }
    }
    if (restore_line != 0) take_machine_from_snapshot(t, restore_line, r, d);
    if (backing_line != 0) {
        if (d.memory % (uint64_t{2} << 20) != 0)
            p.add(backing_line, r.prefix + "memory_backing",
                  fmt::format("hugepages needs memory in whole 2 MiB pages ({} MiB is not)",
                              d.memory >> 20));
        if (d.balloon)
            p.add(backing_line, r.prefix + "memory_backing",
                  "hugepages cannot be used with balloon = true (the balloon frees 4 KiB pages)");
    }
    cfg.domains.push_back(std::move(d));
}

}  // namespace

int ShmRegion::peer_of(const std::string& domain) const {
    const auto it = std::find(domains.begin(), domains.end(), domain);
    return it == domains.end() ? -1 : static_cast<int>(it - domains.begin());
}

bool ShmRegion::is_readonly(const std::string& domain) const {
    return std::find(readonly.begin(), readonly.end(), domain) != readonly.end();
}

bool valid_name(std::string_view n) {
    if (n.empty() || n.size() > 64) return false;
    for (char c : n)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
            return false;
    return n[0] != '.' && n[0] != '-';
}

Result<HostConfig> parse_host_config(std::string_view text, const std::string& path,
                                     uint32_t num_cpus, const HostConfig* base) {
    toml::table root;
    try {
        root = toml::parse(text, path);
    } catch (const toml::parse_error& e) {
        return fail(ErrorCode::InvalidArgument, "{}:{}: {}", path, e.source().begin.line,
                    e.description());
    }
    Problems p{path, {}};
    HostConfig cfg;
    cfg.path = path;
    std::map<uint32_t, std::string> owner;  // CPU -> pool
    Reader top{p, ""};
    if (base != nullptr) cfg.pools = base->pools;
    for (auto&& [k, v] : root) {
        const std::string key(k.str());
        if (base != nullptr && key != "domains") {
            p.add(line_of(v), key,
                  "a file for vireo create holds [domains.NAME] tables only (the host's "
                  "settings and pools come from the running host)");
            continue;
        }
        if (key == "overcommit") {
            top.boolean(v, key, cfg.overcommit);
        } else if (key == "reserve") {
            top.size(v, key, cfg.reserve);
        } else if (key == "run_dir") {
            top.str(v, key, cfg.run_dir);
        } else if (key == "uid_base") {
            int64_t first = 0;
            if (const auto* i = v.as_integer()) first = i->get();
            if (v.as_integer() == nullptr || first < 1000 ||
                first > int64_t{UINT32_MAX} - 1 - kMaxDomainIds)
                p.add(line_of(v), key,
                      fmt::format("must be an integer from 1000 to {} (the ids uid_base .. "
                                  "uid_base + {} are the domains')",
                                  uint64_t{UINT32_MAX} - 1 - kMaxDomainIds, kMaxDomainIds - 1));
            else
                cfg.uid_base = static_cast<uint32_t>(first);
        } else if (key == "pools" || key == "domains" || key == "shm") {
            const auto* t = v.as_table();
            if (t == nullptr) {
                p.add(line_of(v), key, "must be a table ([" + key + ".NAME] sections)");
                continue;
            }
            for (auto&& [name, body] : *t) {
                const auto* bt = body.as_table();
                if (bt == nullptr) {
                    p.add(line_of(body), key + "." + std::string(name.str()),
                          "must be a table ([" + key + "." + std::string(name.str()) + "])");
                    continue;
                }
                if (key == "pools")
                    parse_pool(std::string(name.str()), *bt, num_cpus, p, cfg, owner);
                else if (key == "shm")
                    parse_shm(std::string(name.str()), *bt, p, cfg);
                else
                    parse_domain(std::string(name.str()), *bt, p, cfg);
            }
        } else {
            p.add(line_of(v), key,
                  "unknown key (known: overcommit, reserve, run_dir, uid_base, pools, domains, "
                  "shm)");
        }
    }
    // toml++ keeps tables sorted by key; domains start in file order.
    std::stable_sort(cfg.domains.begin(), cfg.domains.end(),
                     [](const DomainConfig& a, const DomainConfig& b) { return a.line < b.line; });
    // The default pool: every CPU no pool names (it may be empty if none is left).
    if (cfg.pools.count("default") == 0) {
        Pool def;
        def.name = "default";
        for (uint32_t c = 0; c < num_cpus; ++c)
            if (owner.count(c) == 0) def.cpus.insert(c);
        cfg.pools["default"] = std::move(def);
    }
    for (const auto& d : cfg.domains) {
        if (base != nullptr)
            for (const auto& e : base->domains)
                if (e.name == d.name)
                    p.add(d.line, "domains." + d.name,
                          "a domain of that name is already on this host");
        auto it = cfg.pools.find(d.pool);
        if (it == cfg.pools.end()) {
            p.add(d.line, "domains." + d.name + ".pool", fmt::format("no pool \"{}\"", d.pool));
        } else if (it->second.cpus.empty() && d.pool == "default") {
            p.add(d.line, "domains." + d.name + ".pool",
                  fmt::format("pool \"{}\" has no CPUs (the other pools took them all)", d.pool));
        }
    }
    // Shared regions: every domain named must be declared here; each domain's regions and
    // devices must fit its machine (one interrupt line each).
    std::stable_sort(cfg.shm.begin(), cfg.shm.end(),
                     [](const ShmRegion& a, const ShmRegion& b) { return a.line < b.line; });
    std::map<std::string, size_t> regions_of;
    for (const auto& m : cfg.shm) {
        for (const auto& name : m.domains) {
            const auto d = std::find_if(cfg.domains.begin(), cfg.domains.end(),
                                        [&](const DomainConfig& x) { return x.name == name; });
            if (d == cfg.domains.end()) {
                p.add(m.line, "shm." + m.name + ".domains",
                      fmt::format("no domain \"{}\" in this file", name));
                continue;
            }
            ++regions_of[name];
            if (!d->restore.empty())
                p.add(m.line, "shm." + m.name + ".domains",
                      fmt::format("\"{}\" starts from a snapshot (restore): a domain with shared "
                                  "memory cannot be restored",
                                  name));
        }
    }
    for (const auto& d : cfg.domains) {
        const size_t regions = regions_of.count(d.name) ? regions_of[d.name] : 0;
        size_t fds = 0;
        for (const auto& m : cfg.shm)
            if (m.peer_of(d.name) >= 0) fds += 1 + (m.doorbells ? m.domains.size() * m.vectors : 0);
        if (fds > kMaxHandedFds)
            p.add(d.line, "domains." + d.name,
                  fmt::format("its shared regions need {} descriptors (a region and its peers x "
                              "vectors doorbells each); at most {}",
                              fds, kMaxHandedFds));
        if (regions > vmm::kMaxShmRegions)
            p.add(d.line, "domains." + d.name,
                  fmt::format("shares {} regions; at most {}", regions, vmm::kMaxShmRegions));
        const size_t devices = d.disks.size() + d.nets.size() + (d.vsock.empty() ? 0 : 1) +
                               (d.rng ? 1 : 0) + (d.balloon ? 1 : 0) + regions;
        if (regions > 0 && devices > vmm::kMaxVirtioDevices)
            p.add(d.line, "domains." + d.name,
                  fmt::format("{} devices with its shared regions; at most {} (one interrupt "
                              "line each)",
                              devices, vmm::kMaxVirtioDevices));
    }
    if (cfg.domains.empty()) p.add(1, "domains", "the file declares no domain");
    if (!p.list.empty()) {
        std::string all;
        for (const auto& s : p.list)
            all += (all.empty() ? "" : "\n") + s;
        return fail(ErrorCode::InvalidArgument, "{}", all);
    }
    return cfg;
}

Result<HostConfig> load_host_config(const std::string& path, uint32_t num_cpus,
                                    const HostConfig* base) {
    std::ifstream f(path);
    if (!f) return fail_errno(errno, "cannot read {}", path);
    std::stringstream ss;
    ss << f.rdbuf();
    return parse_host_config(ss.str(), path, num_cpus, base);
}

uint64_t vmm_pool_of(const DomainConfig& d) noexcept {
    return d.vmm_pool != 0 ? d.vmm_pool : domain::default_vmm_pool_for(d.nets, !d.vsock.empty());
}

uint64_t domain_memory_budget(const DomainConfig& d) noexcept {
    const uint64_t tables = d.memory / 256;  // two tables of 8 bytes per 4 KiB page
    const uint64_t process = saturating_add(kVmmBase, uint64_t{d.vcpus} * kVmmPerVcpu);
    return saturating_add(saturating_add(d.memory, tables),
                          saturating_add(process, vmm_pool_of(d)));
}

Result<void> admit(const HostConfig& cfg, const HostFacts& facts) {
    std::vector<std::string> short_of;
    // Saturating sums: a total that does not fit 64 bits is more than any host has.
    uint64_t need = cfg.reserve, locked = 0, huge = 0;
    std::map<std::string, uint32_t> pinned_vcpus;
    for (const auto& m : cfg.shm) {  // once each, however many domains share it
        need = saturating_add(need, m.size);
        if (m.hugepages) huge = saturating_add(huge, m.size);
    }
    for (const auto& d : cfg.domains) {
        need = saturating_add(need, domain_memory_budget(d));
        if (d.memory_backing == MemoryBacking::Locked) locked = saturating_add(locked, d.memory);
        if (d.memory_backing == MemoryBacking::HugePages) huge = saturating_add(huge, d.memory);
        if (cfg.pools.at(d.pool).policy == PoolPolicy::Pinned) pinned_vcpus[d.pool] += d.vcpus;
    }
    const auto mib = [](uint64_t b) { return b >> 20; };
    if (!cfg.overcommit && need > facts.mem_available)
        short_of.push_back(fmt::format(
            "memory: the domains need {} MiB (guest memory + each domain's VMM share: page "
            "tables, its process, its vmm_pool; + shared regions + reserve {} MiB) "
            "but {} MiB is available: {} MiB short (or set overcommit = true)",
            mib(need), mib(cfg.reserve), mib(facts.mem_available),
            mib(need - facts.mem_available)));
    if (locked > facts.lockable)
        short_of.push_back(fmt::format(
            "locked memory: {} MiB to lock but RLIMIT_MEMLOCK allows {} MiB: {} MiB short",
            mib(locked), mib(facts.lockable), mib(locked - facts.lockable)));
    if (huge > facts.hugepages_free)
        short_of.push_back(fmt::format(
            "huge pages: {} MiB wanted but {} MiB of 2 MiB pages are free: {} MiB short", mib(huge),
            mib(facts.hugepages_free), mib(huge - facts.hugepages_free)));
    for (const auto& [pool, vcpus] : pinned_vcpus) {
        const size_t have = cfg.pools.at(pool).cpus.size();
        if (vcpus > have)
            short_of.push_back(fmt::format(
                "pool {}: pinned, its domains have {} vCPUs but it has {} CPUs: {} short", pool,
                vcpus, have, vcpus - have));
    }
    if (short_of.empty()) return ok();
    std::string all;
    for (const auto& s : short_of)
        all += (all.empty() ? "" : "\n") + s;
    return fail(ErrorCode::ResourceExhausted, "{}", all);
}

const char* to_string(Action a) noexcept {
    switch (a) {
        case Action::Destroy:
            return "destroy";
        case Action::Restart:
            return "restart";
        case Action::Preserve:
            return "preserve";
    }
    return "?";
}

}  // namespace vireo::host
