// The launch protocol between the supervisor and a domain process (domain/protocol.hpp).
#include "domain/protocol.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace vireo::domain {
namespace {

using K = Message::Kind;

TEST(LaunchProtocol, EveryMessageRoundTrips) {
    for (const Message& m : {Message{K::Ready, {}}, Message{K::Paused, {}}, Message{K::Running, {}},
                             Message{K::Crashed, {}}, Message{K::Migrated, {}},
                             Message{K::Error, "kernel k.elf: not ELF"}}) {
        const std::string line = encode(m);
        ASSERT_EQ(line.back(), '\n');
        EXPECT_EQ(decode(std::string_view(line).substr(0, line.size() - 1)), m) << line;
    }
    EXPECT_EQ(encode({K::Ready, {}}), "ready\n");  // what older domains and docs say
}

TEST(LaunchProtocol, AnErrorIsOneLineOfBoundedLength) {
    const std::string line = encode({K::Error, "first\nsecond" + std::string(10000, 'x')});
    EXPECT_EQ(line.find('\n'), line.size() - 1);
    EXPECT_LE(line.size(), kMaxLine);
    EXPECT_EQ(line.rfind("error: first second", 0), 0u);
}

TEST(LaunchProtocol, OtherLinesAreNotMessages) {
    EXPECT_FALSE(decode(""));
    EXPECT_FALSE(decode("READY"));
    EXPECT_FALSE(decode("ready "));
    EXPECT_FALSE(decode("error:"));
    EXPECT_TRUE(decode("error: "));
}

TEST(LaunchProtocol, LinesAreSplitAndBounded) {
    LineReader r;
    EXPECT_TRUE(r.feed("rea"));
    EXPECT_FALSE(r.next());
    EXPECT_TRUE(r.feed("dy\npaused\nrun"));
    EXPECT_EQ(r.next(), "ready");
    EXPECT_EQ(r.next(), "paused");
    EXPECT_FALSE(r.next());
    EXPECT_TRUE(r.feed("ning\n"));
    EXPECT_EQ(r.next(), "running");
    // A domain that writes without end is cut off, not buffered.
    LineReader flood;
    EXPECT_TRUE(flood.feed(std::string(kMaxLine, 'x')));
    EXPECT_FALSE(flood.feed("x"));
    EXPECT_FALSE(flood.next());
}

TEST(LaunchProtocol, ExitStatusesAreDescribed) {
    EXPECT_EQ(describe_exit(kExitPowerOff), "powered off");
    EXPECT_EQ(describe_exit(kExitReboot), "rebooted");
    EXPECT_EQ(describe_exit(kExitPanic),
              "crashed (vireo run exit status 4: the guest kernel panicked)");
    EXPECT_EQ(describe_exit(42), "crashed (vireo run exit status 42)");
}

TEST(LaunchProtocol, EverySpecFieldCrossesTheWire) {
    DomainText t;
    t.name = "n";
    t.kernel = "/k";
    t.initrd = "/i";
    t.cmdline = "c";
    t.append = "a\nb";  // a newline inside a value stays inside the one line
    t.memory = "1G";
    t.cpus = 7;
    t.console = "none";
    t.console_log_max = "1M";
    t.on_reboot = "exit";
    t.on_crash = "preserve";
    t.disks = {"/d1", "/d2,readonly"};
    t.nets = {"user"};
    t.vsock = "cid=3,socket=/s";
    t.balloon = t.rng = true;
    t.shm = {"fd=4,size=16M,name=ring,peers=2,peer=1,vectors=1,doorbell-fds=5"};
    t.memory_backing = "locked";
    t.cpu = "x86-64-v3,-avx2";
    t.cpu_affinity = "0-1";
    t.pin_vcpus = "0,1";
    t.process.api_socket = "/api";
    t.process.console_socket = "/con";
    t.process.metrics = "127.0.0.1:9";
    t.process.stats = t.process.allow_software_kvm = true;
    t.process.sandbox = false;  // not the default
    t.process.uid = 70001;
    t.process.gid = 70002;
    const std::string line = encode_spec(t);
    ASSERT_EQ(line.find('\n'), line.size() - 1);
    auto got = decode_spec(std::string_view(line).substr(0, line.size() - 1));
    ASSERT_TRUE(got) << got.error().message();
    t.process.ctl_fd = -1;  // never sent
    EXPECT_EQ(*got, t);
}

TEST(LaunchProtocol, ASpecThatIsNotOneIsRefusedWithItsSource) {
    const std::string good = spec_json(DomainText{});
    ASSERT_TRUE(parse_spec_json(good, "file"));
    // Nested deeper than a spec ever is, or larger than the bound: refused before parsing.
    const std::string deep = "{\"disks\":" + std::string(1000, '[') + std::string(1000, ']') + "}";
    auto r = parse_spec_json(deep, "snap: the saved domain configuration");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().message().rfind("snap: the saved domain configuration: not a spec", 0), 0u)
        << r.error().message();
    EXPECT_FALSE(parse_spec_json(std::string(kMaxSpecLine + 1, ' '), "file"));
    EXPECT_FALSE(parse_spec_json("[]", "file"));
    auto extra = parse_spec_json(good.substr(0, good.size() - 1) + ",\"x\":1}", "file");
    ASSERT_FALSE(extra);
    EXPECT_EQ(extra.error().message(), "file: it has a field this vireo does not know");
    // A snapshot from before CPU templates has no "cpu" and no "spec_ctrl": it ran with the
    // host's CPU and every speculation control KVM offered.
    auto j = nlohmann::json::parse(good);
    j.erase("cpu");
    j.erase("spec_ctrl");
    auto old = parse_spec_json(j.dump(), "file");
    ASSERT_TRUE(old) << old.error().message();
    EXPECT_EQ(old->cpu, "host");
    EXPECT_EQ(old->spec_ctrl, "on");
    j.erase("memory");
    EXPECT_FALSE(parse_spec_json(j.dump(), "file")) << "the other fields stay required";
}

}  // namespace
}  // namespace vireo::domain
