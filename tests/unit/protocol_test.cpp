// The launch protocol between the supervisor and a domain process (domain/protocol.hpp).
#include "domain/protocol.hpp"

#include <gtest/gtest.h>

#include <string>

namespace vireo::domain {
namespace {

using K = Message::Kind;

TEST(LaunchProtocol, EveryMessageRoundTrips) {
    for (const Message& m : {Message{K::Ready, {}}, Message{K::Paused, {}}, Message{K::Running, {}},
                             Message{K::Crashed, {}}, Message{K::Error, "kernel k.elf: not ELF"}}) {
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

}  // namespace
}  // namespace vireo::domain
