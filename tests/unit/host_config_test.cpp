// The host configuration: parsing, every validation error (file, line, key, reason, all at
// once), CPU lists, and admission against given host facts.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>

#include "base/unique_fd.hpp"
#include "domain/protocol.hpp"
#include "host/config.hpp"
#include "snapshot/format.hpp"

namespace vireo::host {
namespace {

constexpr const char* kGood = R"(
overcommit = false
reserve = "128M"

[pools.fast]
cpus = "2-3"
policy = "pinned"

[pools.batch]
cpus = "4-7,^5"

[domains.web]
memory = "512M"
vcpus = 2
pool = "fast"
disks = ["/srv/web.img"]
on_reboot = "restart"

[domains.db]
memory = 1024
pool = "batch"
weight = 200
cap = 150
memory_backing = "prefault"
cpu = "x86-64-v2"
spec_ctrl = "on,-psfd"
on_crash = "preserve"

[domains.tiny]
kernel = "/boot/tiny.elf"
memory = "64M"
sandbox = false
)";

TEST(HostConfig, ParsesAGoodFile) {
    auto c = parse_host_config(kGood, "host.toml", 8);
    ASSERT_TRUE(c) << c.error().message();
    EXPECT_EQ(c->reserve, uint64_t{128} << 20);
    ASSERT_EQ(c->domains.size(), 3u);
    EXPECT_EQ(c->domains[0].name, "web");
    EXPECT_EQ(c->domains[0].memory, uint64_t{512} << 20);
    EXPECT_EQ(c->domains[0].vcpus, 2u);
    EXPECT_EQ(c->domains[1].memory, uint64_t{1024} << 20);  // a bare number is MiB
    EXPECT_EQ(c->domains[1].on_crash, Action::Preserve);
    EXPECT_EQ(c->domains[1].memory_backing, MemoryBacking::Prefault);
    EXPECT_EQ(c->domains[1].cpu, "x86-64-v2");
    EXPECT_EQ(c->domains[0].cpu, "host");
    EXPECT_EQ(c->domains[1].spec_ctrl, "on,-psfd");
    EXPECT_EQ(c->domains[0].spec_ctrl, "on");
    EXPECT_EQ(c->domains[2].pool, "default");
    EXPECT_EQ(c->pools.at("fast").policy, PoolPolicy::Pinned);
    EXPECT_EQ(c->pools.at("batch").cpus, (std::set<uint32_t>{4, 6, 7}));
    EXPECT_EQ(c->pools.at("default").cpus, (std::set<uint32_t>{0, 1, 5}));  // the rest
    EXPECT_TRUE(c->domains[0].sandbox);                                     // on unless turned off
    EXPECT_FALSE(c->domains[2].sandbox);
    EXPECT_EQ(c->uid_base, kDefaultUidBase);
}

TEST(HostConfig, UidBaseIsARangeOfUnprivilegedIds) {
    const std::string domain = "[domains.a]\nmemory = \"64M\"\n";
    auto c = parse_host_config("uid_base = 500000\n" + domain, "host.toml", 8);
    ASSERT_TRUE(c) << c.error().message();
    EXPECT_EQ(c->uid_base, 500000u);
    for (const char* bad : {"uid_base = 0\n", "uid_base = 999\n", "uid_base = \"70000\"\n",
                            "uid_base = 4294967295\n"}) {
        auto r = parse_host_config(bad + domain, "host.toml", 8);
        ASSERT_FALSE(r) << bad;
        EXPECT_NE(r.error().message().find("host.toml:1: uid_base: must be an integer"),
                  std::string::npos)
            << r.error().message();
    }
}

TEST(HostConfig, ReportsEveryProblemWithFileLineAndKey) {
    const char* bad = R"([pools.p]
cpus = "0-9"

[domains.a]
memory = "lots"
vcpus = "two"
colour = "blue"
pool = "nowhere"
on_crash = "explode"

[domains.b]
vcpus = 5000
memory_backing = "swap"
cpu = "x86-64-v3,+nosuch"
spec_ctrl = "maybe"
irqchip = "userland"
)";
    auto c = parse_host_config(bad, "h.toml", 4);
    ASSERT_FALSE(c);
    const std::string m = c.error().message();
    for (const char* want :
         {"h.toml:2: pools.p.cpus: CPU 9 does not exist", "h.toml:5: domains.a.memory",
          "h.toml:6: domains.a.vcpus: must be an integer",
          "h.toml:7: domains.a.colour: unknown key", "domains.a.pool: no pool \"nowhere\"",
          "h.toml:9: domains.a.on_crash", "h.toml:12: domains.b.vcpus: 5000 is out of range",
          "h.toml:13: domains.b.memory_backing",
          "h.toml:14: domains.b.cpu: \"+nosuch\": no CPU feature of that name",
          "h.toml:15: domains.b.spec_ctrl: \"maybe\": a policy starts with on",
          "h.toml:16: domains.b.irqchip: \"userland\": use kernel, split or userspace"})
        EXPECT_NE(m.find(want), std::string::npos) << want << "\n--- in ---\n" << m;
}

TEST(HostConfig, DeviceSpecsAreCheckedByTheDomainsOwnParsers) {
    // What `vireo up --check` reports before anything starts: the same parsers as --disk,
    // --net and --vsock, each problem at the element's own line.
    const char* bad = R"([domains.a]
disks = ["/srv/a.img,readonly",
         "/srv/b.img,speed=fast"]
nets = ["user,mtu=20"]
vsock = "cid=2,socket=/tmp/a.vsock"
[domains.b]
disks = ["/srv/c.img,queue-size=3"]
nets = ["user", "bridge=br0"]
)";
    auto c = parse_host_config(bad, "h.toml", 4);
    ASSERT_FALSE(c);
    const std::string m = c.error().message();
    for (const char* want :
         {"h.toml:3: domains.a.disks: \"/srv/b.img,speed=fast\": unknown option \"speed=fast\"",
          "h.toml:4: domains.a.nets: \"user,mtu=20\"", "h.toml:5: domains.a.vsock: \"cid=2,",
          "h.toml:7: domains.b.disks: \"/srv/c.img,queue-size=3\": queue-size",
          "h.toml:8: domains.b.nets: \"bridge=br0\""})
        EXPECT_NE(m.find(want), std::string::npos) << want << "\n--- in ---\n" << m;
    EXPECT_EQ(m.find("a.img"), std::string::npos) << "a good spec is not reported:\n" << m;
    EXPECT_TRUE(
        parse_host_config("[domains.a]\ndisks = [\"/srv/a.img,readonly,serial=A1\"]\n"
                          "nets = [\"user,hostfwd=tcp::8080-:80\"]\n"
                          "vsock = \"cid=3,socket=/tmp/none.vsock\"\n",
                          "h.toml", 4));
}

TEST(HostConfig, HugepagesNeedWholeHugePagesAndNoBalloon) {
    auto good = parse_host_config(
        "[domains.a]\nmemory = \"256M\"\nmemory_backing = \"hugepages\"\n", "h.toml", 4);
    ASSERT_TRUE(good) << good.error().message();
    EXPECT_EQ(good->domains[0].memory_backing, MemoryBacking::HugePages);
    auto bad = parse_host_config(
        "[domains.a]\nmemory = 65\nmemory_backing = \"hugepages\"\n"
        "[domains.b]\nmemory_backing = \"hugepages\"\nballoon = true\n",
        "h.toml", 4);
    ASSERT_FALSE(bad);
    const std::string m = bad.error().message();
    EXPECT_NE(m.find("h.toml:3: domains.a.memory_backing: hugepages needs memory in whole 2 MiB"),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("h.toml:5: domains.b.memory_backing: hugepages cannot be used with balloon"),
              std::string::npos)
        << m;
}

// A snapshot file holding a saved domain configuration, as vireo save writes it (its machine
// state is not read by the host file's parser).
std::string snapshot_with(const domain::DomainText& machine) {
    char path[] = "/tmp/vireo-host-config-snap.XXXXXX";
    UniqueFd fd(::mkstemp(path));
    EXPECT_TRUE(fd);
    const std::string json = domain::spec_json(machine);
    snapshot::Writer w(fd.get());
    EXPECT_TRUE(w.add(snapshot::tag("DOMN"), 1,
                      std::span(reinterpret_cast<const uint8_t*>(json.data()), json.size())));
    EXPECT_TRUE(w.finish());
    return path;
}

TEST(HostConfig, ADomainRestoredFromASnapshotTakesItsMachineFromIt) {
    domain::DomainText m;
    m.kernel = "/boot/vmlinuz";
    m.cmdline = "console=ttyS0 -- true";
    m.memory = "512M";
    m.cpus = 2;
    m.disks = {"/srv/a.img"};
    m.nets = {"user"};
    m.rng = true;
    const std::string snap = snapshot_with(m);
    auto c = parse_host_config(
        "[domains.a]\nrestore = \"" + snap + "\"\n[domains.b]\nrestore = \"" + snap +
            "\"\ndisks = [\"/srv/b.img\"]\nnets = [\"user,mac=52:54:00:00:00:0b\"]\n",
        "h.toml", 4);
    ASSERT_TRUE(c) << c.error().message();
    const auto& a = c->domains[0];
    EXPECT_EQ(a.restore, snap);
    EXPECT_EQ(a.kernel, "/boot/vmlinuz");
    EXPECT_EQ(a.cmdline, "console=ttyS0 -- true");
    EXPECT_EQ(a.memory, uint64_t{512} << 20);  // admission counts the snapshot's memory
    EXPECT_EQ(a.vcpus, 2u);
    EXPECT_EQ(a.disks, m.disks);
    EXPECT_TRUE(a.rng);
    EXPECT_EQ(c->domains[1].disks, std::vector<std::string>{"/srv/b.img"});  // a clone's own
    EXPECT_EQ(c->domains[1].nets, std::vector<std::string>{"user,mac=52:54:00:00:00:0b"});

    auto bad = parse_host_config("[domains.a]\nrestore = \"" + snap +
                                     "\"\nvcpus = 3\ndisks = []\n[domains.b]\nrestore = "
                                     "\"/nonexistent.snap\"\n",
                                 "h.toml", 4);
    ASSERT_FALSE(bad);
    const std::string e = bad.error().message();
    EXPECT_NE(e.find("h.toml:2: domains.a.restore: the snapshot's machine has 2 vCPUs; vcpus says "
                     "otherwise"),
              std::string::npos)
        << e;
    EXPECT_NE(
        e.find("domains.a.restore: the snapshot's machine has 1 disk(s); disks says otherwise"),
        std::string::npos)
        << e;
    EXPECT_NE(e.find("h.toml:6: domains.b.restore: /nonexistent.snap: No such file or directory"),
              std::string::npos)
        << e;
    ::unlink(snap.c_str());

    // A file whose machine is out of the limits a table is held to.
    m.cpus = 0;
    const std::string odd = snapshot_with(m);
    auto out = parse_host_config("[domains.a]\nrestore = \"" + odd + "\"\n", "h.toml", 4);
    ASSERT_FALSE(out);
    EXPECT_NE(out.error().message().find("memory or vCPU count is out of range"), std::string::npos)
        << out.error().message();
    ::unlink(odd.c_str());
}

TEST(HostConfig, RefusesDuplicatesAndOverlaps) {
    auto dup = parse_host_config("[domains.a]\n[domains.a]\n", "h.toml", 4);
    ASSERT_FALSE(dup);
    EXPECT_NE(dup.error().message().find("h.toml:2"), std::string::npos) << dup.error().message();
    auto overlap = parse_host_config(
        "[pools.x]\ncpus = \"0-1\"\n[pools.y]\ncpus = \"1-2\"\n[domains.a]\n", "h.toml", 4);
    ASSERT_FALSE(overlap);
    EXPECT_NE(overlap.error().message().find("CPU 1 is already in pool x"), std::string::npos)
        << overlap.error().message();
    auto none = parse_host_config("overcommit = true\n", "h.toml", 4);
    ASSERT_FALSE(none);
    EXPECT_NE(none.error().message().find("no domain"), std::string::npos);
    auto syntax = parse_host_config("[domains.a\n", "h.toml", 4);
    ASSERT_FALSE(syntax);
    EXPECT_NE(syntax.error().message().find("h.toml:1"), std::string::npos);
}

TEST(HostConfig, CpuLists) {
    EXPECT_EQ(parse_cpu_list("0-3,^1", 4).value(), (std::set<uint32_t>{0, 2, 3}));
    EXPECT_EQ(parse_cpu_list("all", 3).value(), (std::set<uint32_t>{0, 1, 2}));
    EXPECT_EQ(parse_cpu_list("2", 3).value(), (std::set<uint32_t>{2}));
    for (const char* bad : {"", "3-1", "a", "0-", "^0", "0,,1", "4"})
        EXPECT_FALSE(parse_cpu_list(bad, 4)) << bad;
}

TEST(Admission, SaysWhatIsShortAndByHowMuch) {
    auto c = parse_host_config(kGood, "host.toml", 8).value();
    HostFacts plenty{uint64_t{64} << 30, UINT64_MAX, 0, 8};
    EXPECT_TRUE(admit(c, plenty));
    HostFacts small{uint64_t{1} << 30, UINT64_MAX, 0, 8};
    auto r = admit(c, small);
    ASSERT_FALSE(r);
    // 1600 MiB of guests; their page tables (1/256: 6.25 MiB); 3 processes (8 MiB each and
    // 256 KiB per vCPU, 4 vCPUs: 25 MiB); 3 default pools without vsock (8 MiB each); 128 MiB
    // reserve: 1783.25 MiB; 1024 there.
    EXPECT_NE(r.error().message().find("1783 MiB"), std::string::npos) << r.error().message();
    EXPECT_NE(r.error().message().find("759 MiB short"), std::string::npos) << r.error().message();
    c.overcommit = true;
    EXPECT_TRUE(admit(c, small));
    // A pinned pool with fewer CPUs than vCPUs.
    c.domains[0].vcpus = 3;
    auto p = admit(c, plenty);
    ASSERT_FALSE(p);
    EXPECT_NE(p.error().message().find("pool fast"), std::string::npos) << p.error().message();
}

// A domain's memory budget (admission, its cgroup's memory.max): guest memory, page tables,
// the VMM process, and its pool — by default larger with vsock and user networks, whose
// connections and host sockets it bounds.
TEST(Admission, CountsEachDomainsMemoryBudget) {
    DomainConfig d;  // 256 MiB, 1 vCPU
    constexpr uint64_t MiB = uint64_t{1} << 20;
    EXPECT_EQ(vmm_pool_of(d), 8 * MiB);
    EXPECT_EQ(domain_memory_budget(d), 256 * MiB + 1 * MiB + 8 * MiB + 256 * 1024 + 8 * MiB);
    d.vsock = "cid=3,socket=/run/v.sock";
    EXPECT_EQ(vmm_pool_of(d), 80 * MiB);
    d.nets = {"user,hostfwd=tcp::8080-:80", "tap=t0", "user"};  // 80 MiB per user network
    EXPECT_EQ(vmm_pool_of(d), 240 * MiB);
    d.vmm_pool = 2 * MiB;  // its own
    d.vcpus = 4;
    EXPECT_EQ(domain_memory_budget(d), 256 * MiB + 1 * MiB + 8 * MiB + 1 * MiB + 2 * MiB);
    d.memory = UINT64_MAX;  // saturates, never wraps
    EXPECT_EQ(domain_memory_budget(d), UINT64_MAX);
}

TEST(HostConfig, SharedRegions) {
    const char* good = R"([domains.a]
[domains.b]
[domains.c]
[shm.ring]
size = "16M"
domains = ["a", "b", "c"]
readonly = ["c"]
vectors = 2
[shm.plain]
size = "4K"
domains = ["b"]
doorbells = false
)";
    auto c = parse_host_config(good, "h.toml", 4);
    ASSERT_TRUE(c) << c.error().message();
    ASSERT_EQ(c->shm.size(), 2u);
    const ShmRegion& ring = c->shm[0];
    EXPECT_EQ(ring.name, "ring");
    EXPECT_EQ(ring.size, uint64_t{16} << 20);
    EXPECT_EQ(ring.peer_of("a"), 0);
    EXPECT_EQ(ring.peer_of("c"), 2);
    EXPECT_EQ(ring.peer_of("z"), -1);
    EXPECT_TRUE(ring.is_readonly("c"));
    EXPECT_FALSE(ring.is_readonly("b"));
    EXPECT_EQ(ring.vectors, 2);
    EXPECT_TRUE(ring.doorbells);
    EXPECT_FALSE(c->shm[1].doorbells);
    // Counted once by admission, however many domains share it.
    HostFacts facts{3 * domain_memory_budget(c->domains[0]) + ((256 + 16) << 20) + 4096, UINT64_MAX,
                    0, 4};
    EXPECT_TRUE(admit(*c, facts));
    facts.mem_available -= 1;
    EXPECT_FALSE(admit(*c, facts));

    const char* bad = R"([domains.a]
[domains.b]
[shm.x]
size = "3M"
domains = ["a", "nobody", "a"]
readonly = ["a", "b"]
backing = "disk"
colour = 1
[shm.y]
domains = []
[shm.z]
size = "1M"
domains = ["b"]
backing = "hugepages"
)";
    auto e = parse_host_config(bad, "h.toml", 4);
    ASSERT_FALSE(e);
    const std::string m = e.error().message();
    for (const char* want :
         {"h.toml:4: shm.x.size: 3145728 bytes: must be a power of two",
          "h.toml:5: shm.x.domains: \"a\" is listed twice",
          "h.toml:3: shm.x.domains: no domain \"nobody\" in this file",
          "h.toml:3: shm.x.readonly: \"a\" owns the region",
          "h.toml:3: shm.x.readonly: \"b\" is not one of the region's domains",
          "h.toml:7: shm.x.backing: \"disk\": use anonymous or hugepages",
          "h.toml:8: shm.x.colour: unknown key", "h.toml:9: shm.y.size: is required",
          "h.toml:10: shm.y.domains: 0 domains", "h.toml:14: shm.z.backing: hugepages needs"})
        EXPECT_NE(m.find(want), std::string::npos) << want << "\n--- in ---\n" << m;
    // A file for vireo create holds domains only.
    auto base = parse_host_config("[domains.a]\n", "h.toml", 4).value();
    EXPECT_FALSE(parse_host_config("[shm.r]\nsize = \"4K\"\ndomains = [\"a\"]\n[domains.n]\n",
                                   "c.toml", 4, &base));
}

// Sizes that do not fit 64 bits are errors, never wrapped into small ones (issue 14: memory =
// 17592186044480 MiB ran the domain with 64M; a huge reserve wrapped the admission sum).
TEST(HostConfig, SizesThatOverflowAreRefused) {
    auto huge = parse_host_config("[domains.a]\nmemory = 17592186044480\n", "h.toml", 4);
    ASSERT_FALSE(huge);
    EXPECT_NE(huge.error().message().find("h.toml:2: domains.a.memory"), std::string::npos)
        << huge.error().message();
    EXPECT_NE(huge.error().message().find("too large"), std::string::npos)
        << huge.error().message();
    auto bare_max = parse_host_config("[domains.a]\nmemory = 9223372036854775807\n", "h.toml", 4);
    EXPECT_FALSE(bare_max);
}

TEST(HostConfig, ConsoleLogMaxIsASizeInRange) {
    auto ok = parse_host_config("[domains.a]\nconsole_log_max = \"1M\"\n", "h.toml", 4);
    ASSERT_TRUE(ok) << ok.error().message();
    EXPECT_EQ(ok->domains[0].console_log_max, uint64_t{1} << 20);
    auto dflt = parse_host_config("[domains.a]\n", "h.toml", 4);
    ASSERT_TRUE(dflt);
    EXPECT_EQ(dflt->domains[0].console_log_max, kDefaultConsoleLogMax);
    auto tiny = parse_host_config("[domains.a]\nconsole_log_max = \"1K\"\n", "h.toml", 4);
    ASSERT_FALSE(tiny);
    EXPECT_NE(tiny.error().message().find("h.toml:2: domains.a.console_log_max"), std::string::npos)
        << tiny.error().message();
}

TEST(Admission, SumsThatOverflowAreRefused) {
    auto c = parse_host_config("reserve = \"17179869183G\"\n[domains.a]\nmemory = \"2G\"\n",
                               "h.toml", 4);
    ASSERT_TRUE(c) << c.error().message();
    HostFacts plenty{uint64_t{1} << 40, UINT64_MAX, 0, 4};
    auto r = admit(*c, plenty);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message().find("memory:"), std::string::npos) << r.error().message();
    // Locked and huge-page totals saturate too.
    c->reserve = 0;
    c->domains.push_back(c->domains[0]);
    for (auto& d : c->domains) {
        d.memory = UINT64_MAX - 1;
        d.memory_backing = MemoryBacking::Locked;
    }
    c->overcommit = true;
    HostFacts lockable{uint64_t{1} << 40, uint64_t{1} << 40, 0, 4};
    auto l = admit(*c, lockable);
    ASSERT_FALSE(l);
    EXPECT_NE(l.error().message().find("locked memory"), std::string::npos) << l.error().message();
}

}  // namespace
}  // namespace vireo::host
