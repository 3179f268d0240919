// EventLoop's hold()/release(): a held loop calls no handler until released (what a snapshot
// relies on to keep devices still), and a held loop still stops.
#include "base/event_loop.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "base/event_fd.hpp"

namespace vireo {
namespace {

using namespace std::chrono_literals;

bool eventually(const std::function<bool()>& done) {
    for (int i = 0; i < 1000 && !done(); ++i)
        std::this_thread::sleep_for(10ms);
    return done();
}

TEST(EventLoop, AHeldLoopCallsNoHandlerUntilReleased) {
    auto loop = EventLoop::create("test").value();
    auto fd = EventFd::create().value();
    std::atomic<int> calls{0};
    ASSERT_TRUE(loop->add(fd.fd(), [&] {
        (void)fd.consume();
        calls.fetch_add(1);
    }));
    loop->hold();  // not started: returns at once
    loop->release();
    ASSERT_TRUE(loop->start());
    ASSERT_TRUE(fd.signal());
    ASSERT_TRUE(eventually([&] { return calls.load() == 1; }));

    loop->hold();
    ASSERT_TRUE(fd.signal());
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(calls.load(), 1);  // held: the signal waits
    loop->release();
    EXPECT_TRUE(eventually([&] { return calls.load() == 2; }));

    loop->hold();
    loop->stop();  // a held loop stops and joins
    EXPECT_EQ(calls.load(), 2);
}

}  // namespace
}  // namespace vireo
