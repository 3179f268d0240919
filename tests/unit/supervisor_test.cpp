// The supervisor's parts that need no processes: the spec a host configuration's domain is
// launched with (through the wire and the same parser as `vireo run`), CPU pools, the
// on_* policy and the restart guard.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include "domain/protocol.hpp"
#include "host/config.hpp"
#include "host/cpu_pools.hpp"
#include "host/domain_process.hpp"
#include "host/policy.hpp"

namespace vireo::host {
namespace {

DomainConfig full_domain() {
    DomainConfig d;
    d.name = "web";
    d.kernel = "/srv/vmlinuz";
    d.initrd = "/srv/initrd.img";
    d.cmdline = "console=ttyS0 quiet";
    d.memory = uint64_t{768} << 20;
    d.vcpus = 2;
    d.disks = {"/srv/root.img,serial=R", "/srv/data.img,readonly"};
    d.nets = {"user,hostfwd=tcp::8080-:80,mac=52:54:00:00:00:01"};
    d.vsock = "cid=5,socket=/run/web.vsock";
    d.rng = d.balloon = true;
    d.console_log_max = uint64_t{1} << 20;
    d.memory_backing = MemoryBacking::HugePages;
    d.on_reboot = Action::Restart;
    d.on_crash = Action::Preserve;
    d.allow_software_kvm = true;
    d.sandbox = false;
    return d;
}

TEST(LaunchSpec, AHostDomainArrivesAsTheSameDomain) {
    const DomainConfig d = full_domain();
    Pool pool;
    pool.name = "fast";
    pool.cpus = {0, 1};  // parse_spec checks them against this machine's CPUs
    pool.policy = PoolPolicy::Pinned;
    const auto text = launch_text(d, "/run/vireo/h", pool, {1, 0}, 70005);
    // Over the wire (one line) and back: exactly the same text.
    const std::string line = domain::encode_spec(text);
    ASSERT_EQ(line.find('\n'), line.size() - 1);
    auto got = domain::decode_spec(std::string_view(line).substr(0, line.size() - 1));
    ASSERT_TRUE(got) << got.error().message();
    EXPECT_EQ(*got, text);
    // And through `vireo run`'s own parser: what the host configuration said.
    auto spec = domain::parse_spec(*got, "/nowhere");
    ASSERT_TRUE(spec) << spec.error().message();
    EXPECT_EQ(spec->name, "web");
    EXPECT_EQ(spec->kernel_path, d.kernel);
    EXPECT_EQ(spec->initrd_path, d.initrd);
    EXPECT_EQ(spec->cmdline, d.cmdline);
    EXPECT_EQ(spec->memory_bytes, d.memory);
    EXPECT_EQ(spec->cpus, 2u);
    EXPECT_EQ(spec->console, domain::ConsoleKind::Append);
    EXPECT_EQ(spec->console_path, "/run/vireo/h/web.log");
    EXPECT_EQ(spec->console_log_max, d.console_log_max);
    EXPECT_EQ(spec->on_reboot, domain::OnReboot::Restart);
    EXPECT_EQ(spec->on_crash, domain::OnCrash::Preserve);
    EXPECT_EQ(spec->backing, MemoryBacking::HugePages);
    ASSERT_EQ(spec->disks.size(), 2u);
    EXPECT_EQ(spec->disks[0].serial, "R");
    EXPECT_TRUE(spec->disks[1].readonly);
    ASSERT_EQ(spec->nets.size(), 1u);
    ASSERT_TRUE(spec->vsock);
    EXPECT_EQ(spec->vsock->cid, 5u);
    EXPECT_TRUE(spec->rng);
    EXPECT_TRUE(spec->balloon);
    EXPECT_EQ(spec->cpu_affinity, (std::vector<uint32_t>{0, 1}));
    EXPECT_EQ(spec->vcpu_affinity, (std::vector<std::vector<int>>{{1}, {0}}));
    EXPECT_EQ(spec->process.api_socket, "/run/vireo/h/web.api");
    EXPECT_EQ(spec->process.console_socket, "/run/vireo/h/web.console");
    EXPECT_TRUE(spec->process.allow_software_kvm);
    EXPECT_FALSE(spec->process.sandbox);
    EXPECT_EQ(spec->process.uid, 70005u);
    EXPECT_EQ(spec->process.gid, 70005u);
    EXPECT_EQ(spec->process.ctl_fd, -1);  // the receiver's own, never sent
}

TEST(LaunchSpec, PoliciesTheProcessDoesNotKeepEndIt) {
    DomainConfig d = full_domain();
    d.on_reboot = Action::Destroy;
    d.on_crash = Action::Restart;
    const auto text = launch_text(d, "/run", Pool{}, {});
    EXPECT_EQ(text.on_reboot, "exit");
    EXPECT_EQ(text.on_crash, "exit");
    EXPECT_TRUE(text.cpu_affinity.empty());  // a pool without CPUs: any
    EXPECT_TRUE(text.pin_vcpus.empty());
}

TEST(LaunchSpec, ABadSpecLineIsRefusedByName) {
    const std::string good = domain::encode_spec(domain::DomainText{});
    const std::string_view body = std::string_view(good).substr(0, good.size() - 1);
    EXPECT_TRUE(domain::decode_spec(body));
    struct Case {
        std::string line, says;
    };
    const Case cases[] = {
        {"ready", "expected the spec"},
        {"spec [1,2]", "not a JSON object"},
        {"spec {\"name\":", "not a JSON object"},
        {"spec {}", "\"name\" is missing"},
        {std::string(body).replace(body.find("\"cpus\":1"), 8, "\"cpus\":\"1\""),
         "\"cpus\" has the wrong type"},
        {std::string(body).replace(body.find("\"cpus\":1"), 8, "\"cpus\":-1"),
         "\"cpus\" has the wrong type"},
        {std::string(body).replace(body.find("\"cpus\":1"), 8, "\"cpus\":4294967296"),
         "\"cpus\" has the wrong type"},
        {std::string(body).replace(body.find("\"disks\":[]"), 10, "\"disks\":[1]"),
         "\"disks\" has the wrong type"},
        {std::string(body).insert(body.size() - 1, ",\"extra\":1"), "does not know"},
    };
    for (const auto& c : cases) {
        auto r = domain::decode_spec(c.line);
        ASSERT_FALSE(r) << c.line;
        EXPECT_NE(r.error().message().find(c.says), std::string::npos)
            << c.line << " -> " << r.error().message();
    }
}

TEST(CpuPools, PinnedPoolsHandOutTheLowestFreeCpus) {
    Pool pinned;
    pinned.cpus = {1, 2, 3, 5};
    pinned.policy = PoolPolicy::Pinned;
    EXPECT_EQ(pick_pins(pinned, 2, {}), (std::vector<int>{1, 2}));
    EXPECT_EQ(pick_pins(pinned, 2, {1, 3}), (std::vector<int>{2, 5}));
    EXPECT_EQ(pick_pins(pinned, 3, {1, 3}), (std::vector<int>{2, 5}));  // short: caller checks
    EXPECT_EQ(free_cpus(pinned, {2, 9}), (std::vector<uint32_t>{1, 3, 5}));
    Pool shared = pinned;
    shared.policy = PoolPolicy::Shared;
    EXPECT_TRUE(pick_pins(shared, 2, {}).empty());
}

int exited(int code) {
    return W_EXITCODE(code, 0);
}
int killed(int sig) {
    return W_EXITCODE(0, sig);
}

TEST(Policy, EachEndingTakesItsPolicy) {
    DomainConfig d;
    d.on_poweroff = Action::Destroy;
    d.on_reboot = Action::Restart;
    d.on_crash = Action::Restart;
    const auto run = DomainState::Running;

    auto e = judge_end(d, exited(domain::kExitPowerOff), run, false);
    EXPECT_EQ(e.state, DomainState::Shutoff);
    EXPECT_EQ(e.action, Action::Destroy);
    EXPECT_EQ(e.last, "powered off");

    e = judge_end(d, exited(domain::kExitReboot), run, false);
    EXPECT_EQ(e.state, DomainState::Shutoff);
    EXPECT_EQ(e.action, Action::Restart);

    e = judge_end(d, exited(domain::kExitPanic), run, false);
    EXPECT_EQ(e.state, DomainState::Crashed);
    EXPECT_EQ(e.action, Action::Restart);
    EXPECT_NE(e.last.find("panicked"), std::string::npos);

    e = judge_end(d, killed(SIGKILL), DomainState::Paused, false);
    EXPECT_EQ(e.state, DomainState::Crashed);
    EXPECT_EQ(e.last, "killed by signal 9");

    // A killed process preserved nothing.
    d.on_crash = Action::Preserve;
    EXPECT_EQ(judge_end(d, killed(SIGSEGV), run, false).action, Action::Destroy);

    // Destroyed on purpose, or died while being built: no policy.
    e = judge_end(d, killed(SIGKILL), run, true);
    EXPECT_EQ(e.state, DomainState::Destroyed);
    EXPECT_EQ(e.action, Action::Destroy);
    e = judge_end(d, exited(1), DomainState::Starting, false);
    EXPECT_EQ(e.state, DomainState::Failed);
    EXPECT_EQ(e.action, Action::Destroy);
}

TEST(Policy, AMigratedDomainLeavesAndAnIncomingOneThatNeverArrivedFailed) {
    DomainConfig d;
    d.on_poweroff = d.on_crash = Action::Restart;
    // Gone to another vireo: nothing is restarted, whatever the policy.
    auto e = judge_end(d, exited(domain::kExitPowerOff), DomainState::Migrated, false);
    EXPECT_EQ(e.state, DomainState::Migrated);
    EXPECT_EQ(e.action, Action::Destroy);
    // It said "migrated" and then crashed: a crash, under its policy.
    e = judge_end(d, exited(domain::kExitPanic), DomainState::Migrated, false);
    EXPECT_EQ(e.state, DomainState::Crashed);
    // An incoming domain whose migration failed never ran: failed, and not started again.
    e = judge_end(d, exited(domain::kExitError), DomainState::Incoming, false);
    EXPECT_EQ(e.state, DomainState::Failed);
    EXPECT_EQ(e.action, Action::Destroy);
    EXPECT_NE(e.last.find("incoming migration did not complete"), std::string::npos) << e.last;
}

TEST(Policy, RunningDomainsMoveWithTheirMessages) {
    using K = domain::Message::Kind;
    EXPECT_EQ(state_after({K::Paused, {}}), DomainState::Paused);
    EXPECT_EQ(state_after({K::Running, {}}), DomainState::Running);
    EXPECT_EQ(state_after({K::Crashed, {}}), DomainState::Crashed);
    EXPECT_EQ(state_after({K::Migrated, {}}), DomainState::Migrated);
    EXPECT_FALSE(state_after({K::Ready, {}}));
    EXPECT_FALSE(state_after({K::Error, "x"}));
    EXPECT_STREQ(to_string(DomainState::Shutoff), "shutoff");
}

TEST(Policy, QuickRestartsAreGivenUpAfterTen) {
    using std::chrono::milliseconds;
    RestartGuard g;
    for (unsigned i = 1; i < RestartGuard::kMaxQuickRestarts; ++i)
        EXPECT_TRUE(g.allow(milliseconds(10))) << i;
    EXPECT_FALSE(g.allow(milliseconds(10)));
    // One run that lasted starts the count again.
    RestartGuard h;
    for (int i = 0; i < 9; ++i)
        EXPECT_TRUE(h.allow(milliseconds(10)));
    EXPECT_TRUE(h.allow(std::chrono::seconds(5)));
    for (int i = 0; i < 9; ++i)
        EXPECT_TRUE(h.allow(milliseconds(10)));
}

}  // namespace
}  // namespace vireo::host
