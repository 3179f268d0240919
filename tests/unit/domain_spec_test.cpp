// A domain's configuration: text (flags) to a checked, typed spec; every error names its field.
#include <gtest/gtest.h>

#include <filesystem>

#include "domain/spec.hpp"

namespace vireo::domain {
namespace {

DomainText with_kernel() {
    DomainText t;
    t.kernel = "/boot/vmlinuz";  // parse_spec does not open it
    return t;
}

TEST(DomainSpec, DefaultsAndTypedFields) {
    DomainText t = with_kernel();
    t.append = "-- true";
    t.memory = "1G";
    t.cpus = 2;
    t.console = "append:/var/log/d.log";
    t.on_reboot = "exit";
    t.on_crash = "preserve";
    t.memory_backing = "locked";
    t.disks = {"/srv/a.img,readonly,serial=A1", "/srv/b.img"};
    t.nets = {"user,hostfwd=tcp::8080-:80"};
    t.vsock = "cid=3,socket=/tmp/d.vsock";
    t.pin_vcpus = "0,1";
    t.cpu = "x86-64-v2,-popcnt";
    t.spec_ctrl = "off,+ssbd";
    t.irqchip = "split";
    t.vmm_pool = "32M";
    auto s = parse_spec(t, "/nowhere");
    ASSERT_TRUE(s) << s.error().message();
    EXPECT_EQ(s->kernel_path, "/boot/vmlinuz");
    EXPECT_TRUE(s->initrd_path.empty());
    EXPECT_EQ(s->cmdline, std::string(kDefaultCmdline) + " -- true");
    EXPECT_EQ(s->memory_bytes, uint64_t{1} << 30);
    EXPECT_EQ(s->console, ConsoleKind::Append);
    EXPECT_EQ(s->console_path, "/var/log/d.log");
    EXPECT_EQ(s->console_log_max, uint64_t{16} << 20);
    EXPECT_EQ(s->on_reboot, OnReboot::Exit);
    EXPECT_EQ(s->on_crash, OnCrash::Preserve);
    EXPECT_EQ(s->backing, vmm::VmConfig::Backing::Locked);
    ASSERT_EQ(s->disks.size(), 2u);
    EXPECT_TRUE(s->disks[0].readonly);
    EXPECT_EQ(s->disks[0].serial, "A1");
    ASSERT_EQ(s->nets.size(), 1u);
    ASSERT_TRUE(s->vsock);
    EXPECT_EQ(s->vsock->cid, 3u);
    EXPECT_EQ(s->vcpu_affinity, (std::vector<std::vector<int>>{{0}, {1}}));
    EXPECT_EQ(s->cpu.name, "x86-64-v2");
    EXPECT_EQ(s->cpu.overrides.size(), 1u);
    EXPECT_EQ(s->machine.cpu, "x86-64-v2,-popcnt") << "a snapshot keeps the template";
    EXPECT_EQ(arch::x86::to_string(s->cpu.spec_ctrl), "off,+ssbd");
    EXPECT_EQ(s->machine.spec_ctrl, "off,+ssbd") << "and the speculation-control policy";
    EXPECT_EQ(s->irqchip, hv::IrqchipMode::Split);
    EXPECT_EQ(s->machine.irqchip, "split") << "and the interrupt model";
    EXPECT_EQ(parse_spec(with_kernel(), "/nowhere")->irqchip, hv::IrqchipMode::Kernel);
    EXPECT_EQ(s->vmm_pool, uint64_t{32} << 20);
    t.vmm_pool.clear();  // the default follows the devices it bounds
    EXPECT_EQ(parse_spec(t, "/nowhere")->vmm_pool, uint64_t{80 + 80} << 20);
    t.vsock.clear();
    EXPECT_EQ(parse_spec(t, "/nowhere")->vmm_pool, uint64_t{8 + 80} << 20);
    t.nets = {"tap=t0"};
    EXPECT_EQ(parse_spec(t, "/nowhere")->vmm_pool, uint64_t{8} << 20);
}

TEST(DomainSpec, EveryErrorNamesItsField) {
    struct Case {
        void (*edit)(DomainText&);
        const char* starts;
    };
    const Case cases[] = {
        {[](DomainText& t) { t.memory = "12Q"; }, "memory: "},
        {[](DomainText& t) { t.console = "file:"; }, "console: "},
        {[](DomainText& t) { t.console = "tty"; }, "console: "},
        {[](DomainText& t) { t.console_log_max = "1K"; }, "console-log-max: "},
        {[](DomainText& t) { t.on_reboot = "pause"; }, "on-reboot: "},
        {[](DomainText& t) { t.on_crash = "restart"; }, "on-crash: "},
        {[](DomainText& t) { t.memory_backing = "swap"; }, "memory-backing: "},
        {[](DomainText& t) { t.cpu = "x86-64-v9"; }, "cpu: \"x86-64-v9\": not a CPU template"},
        {[](DomainText& t) { t.spec_ctrl = "on,-ibrsb"; }, "spec-ctrl: \"ibrsb\": no such control"},
        {[](DomainText& t) { t.disks = {"/a.img,fast"}; }, "disk: \"/a.img,fast\": "},
        {[](DomainText& t) { t.nets = {"bridge=br0"}; }, "net: \"bridge=br0\": "},
        {[](DomainText& t) { t.vsock = "cid=1,socket=/x"; }, "vsock: "},
        {[](DomainText& t) { t.pin_vcpus = "0,x"; }, "pin-vcpus: "},
        {[](DomainText& t) { t.pin_vcpus = "0,1"; }, "pin-vcpus: 2 CPUs for 1 vCPUs"},
        {[](DomainText& t) { t.cpu_affinity = "0-99999"; }, "cpu-affinity: "},
        {[](DomainText& t) { t.disks.assign(16, "/a.img"); }, "at most 15 devices"},
        {[](DomainText& t) { t.shm = {"/dev/shm/x,size=5M"}; }, "shm: "},
        {[](DomainText& t) { t.vmm_pool = "100K"; }, "vmm-pool: \"100K\": a size from 256K to 64G"},
        {[](DomainText& t) { t.irqchip = "none"; },
         "irqchip: \"none\": use kernel, split or userspace"},
    };
    for (const auto& c : cases) {
        DomainText t = with_kernel();
        c.edit(t);
        auto s = parse_spec(t, "/nowhere");
        ASSERT_FALSE(s) << c.starts;
        EXPECT_EQ(s.error().message().rfind(c.starts, 0), 0u) << s.error().message();
    }
    // No kernel and no default guest: the field is the kernel.
    auto s = parse_spec(DomainText{}, "/nowhere");
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().message().rfind("kernel: none given", 0), 0u) << s.error().message();
}

TEST(DomainSpec, TheMachineTextHoldsTheMachineWithAbsolutePaths) {
    DomainText t;
    t.name = "web";
    t.kernel = "k/vmlinuz";  // relative: made absolute against the current directory
    t.append = "-- true";
    t.memory = "512M";
    t.cpus = 2;
    t.console = "file:/var/log/web.log";
    t.disks = {"img/a.img,readonly,serial=A1", "/srv/b.img"};
    t.nets = {"user,hostfwd=tcp::8080-:80"};
    t.vsock = "cid=3,socket=run/web.vsock";
    t.rng = true;
    t.cpu_affinity = "0";
    t.process.api_socket = "/run/web.sock";
    auto s = parse_spec(t, "/nowhere");
    ASSERT_TRUE(s) << s.error().message();
    const std::string cwd = std::filesystem::current_path().string();
    const DomainText& m = s->machine;
    EXPECT_EQ(m.name, "web");
    EXPECT_EQ(m.kernel, cwd + "/k/vmlinuz");
    EXPECT_EQ(m.initrd, "");
    EXPECT_EQ(m.cmdline, std::string(kDefaultCmdline) + " -- true");
    EXPECT_EQ(m.append, "");
    EXPECT_EQ(m.memory, "512M");
    EXPECT_EQ(m.cpus, 2u);
    EXPECT_EQ(m.disks,
              (std::vector<std::string>{cwd + "/img/a.img,readonly,serial=A1", "/srv/b.img"}));
    EXPECT_EQ(m.nets, t.nets);
    EXPECT_EQ(m.vsock, "cid=3,socket=" + cwd + "/run/web.vsock");
    EXPECT_TRUE(m.rng);
    // Not the machine's: how it runs on this host is given again at a restore.
    EXPECT_EQ(m.console, DomainText{}.console);
    EXPECT_EQ(m.cpu_affinity, "");
    EXPECT_EQ(m.process, ProcessOptions{});
    // And it is a spec of the same machine.
    auto again = parse_spec(m, "/nowhere");
    ASSERT_TRUE(again) << again.error().message();
    EXPECT_EQ(again->cmdline, s->cmdline);
    EXPECT_EQ(again->machine, m);
}

TEST(ShmOption, FileAndHandedDownForms) {
    auto a = parse_shm_option("/dev/shm/ring,size=16M,readonly,name=ring0");
    ASSERT_TRUE(a) << a.error().message();
    EXPECT_EQ(a->path, "/dev/shm/ring");
    EXPECT_EQ(a->size, uint64_t{16} << 20);
    EXPECT_TRUE(a->readonly);
    EXPECT_EQ(a->name, "ring0");
    EXPECT_FALSE(a->doorbells);
    auto b = parse_shm_option("fd=7,size=4K,name=r,peers=3,peer=2,vectors=2,doorbell-fds=8");
    ASSERT_TRUE(b) << b.error().message();
    EXPECT_EQ(b->fd, 7);
    EXPECT_TRUE(b->doorbells);
    EXPECT_EQ(b->peers, 3);
    EXPECT_EQ(b->peer, 2);
    EXPECT_EQ(b->vectors, 2);
    EXPECT_EQ(b->doorbell_fds, 8);
    for (const char* bad : {"", "/x", "/x,size=3M", "/x,size=2K", "/x,size=128G", "/x,size=16M,wat",
                            "fd=5,/x,size=4K", "/x,size=4K,fd=5", "/x,size=4K,peers=2",
                            "fd=5,size=4K,peers=2", "fd=5,size=4K,peers=2,peer=2,doorbell-fds=6",
                            "fd=1,size=4K", "/x,size=4K,name=a/b", "/x,size=4K,name="})
        EXPECT_FALSE(parse_shm_option(bad)) << bad;
}

TEST(DomainSpec, SharedMemoryRegions) {
    DomainText t = with_kernel();
    t.shm = {"/dev/shm/a,size=1M", "/dev/shm/b,size=1M,name=b"};
    auto s = parse_spec(t, "/nowhere");
    ASSERT_TRUE(s) << s.error().message();
    ASSERT_EQ(s->shm.size(), 2u);
    t.shm = {"/dev/shm/a,size=1M", "/dev/shm/b,size=1M"};  // both named "shm"
    auto dup = parse_spec(t, "/nowhere");
    ASSERT_FALSE(dup);
    EXPECT_NE(dup.error().message().find("shm: two regions named"), std::string::npos);
    t.shm = {"/dev/shm/a,size=1M,wat"};
    auto bad = parse_spec(t, "/nowhere");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().message().rfind("shm: ", 0), 0u) << bad.error().message();
    // Interrupt lines: 15 devices in all.
    t.shm = {"/dev/shm/a,size=1M"};
    t.disks.assign(15, "/srv/d.img");
    EXPECT_FALSE(parse_spec(t, "/nowhere"));
}

}  // namespace
}  // namespace vireo::domain
