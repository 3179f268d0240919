// Workers (base/thread_class.hpp): threads started ahead, each confined first thing, then lent
// to functions. The sandbox starts a domain's vCPU threads this way so that they carry their
// own seccomp list alone; here with a class no other unit test starts threads of.
#include "base/thread_class.hpp"

#include <gtest/gtest.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <latch>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace vireo {
namespace {

constexpr ThreadClass kClass = ThreadClass::Signals;

std::mutex g_seen_mu;
std::vector<std::string> g_confined;  // thread names, as the hook saw them
std::atomic<bool> g_refuse{false};

bool test_hook(ThreadClass c) noexcept {
    char name[16] = {};
    ::pthread_getname_np(::pthread_self(), name, sizeof name);
    std::lock_guard lock(g_seen_mu);
    g_confined.push_back(std::string(to_string(c)) + ":" + name);
    return !g_refuse.load();
}

std::string thread_name() {
    char name[16] = {};
    ::pthread_getname_np(::pthread_self(), name, sizeof name);
    return name;
}

TEST(Workers, AreConfinedFirstThenLentAndReused) {
    set_confine_hook(test_hook);
    ASSERT_TRUE(start_workers(kClass, 2, "vireo-test"));
    set_confine_hook(nullptr);
    {
        std::lock_guard lock(g_seen_mu);
        EXPECT_EQ(std::set<std::string>(g_confined.begin(), g_confined.end()),
                  (std::set<std::string>{"signals:vireo-test0", "signals:vireo-test1"}));
    }
    EXPECT_EQ(idle_workers(kClass), 2u);

    // Three at once: two on the workers, the third on a thread of its own.
    std::latch all_running(3);
    std::mutex mu;
    std::set<std::string> names;
    std::set<pid_t> tids;
    auto body = [&] {
        {
            std::lock_guard lock(mu);
            names.insert(thread_name());
            tids.insert(::gettid());
        }
        all_running.arrive_and_wait();
    };
    std::vector<ClassThread> threads;
    for (int i = 0; i < 3; ++i)
        threads.push_back(start_thread(kClass, body));
    EXPECT_EQ(idle_workers(kClass), 0u);
    for (auto& t : threads)
        t.join();
    EXPECT_EQ(idle_workers(kClass), 2u);
    EXPECT_EQ(tids.size(), 3u);
    EXPECT_TRUE(names.count("vireo-test0") && names.count("vireo-test1"));

    // Lent again: the same threads (a reboot's vCPU loops run where the last boot's did).
    std::set<pid_t> again;
    for (int round = 0; round < 2; ++round) {
        std::vector<ClassThread> two;
        for (int i = 0; i < 2; ++i)
            two.push_back(start_thread(kClass, [&] {
                std::lock_guard lock(mu);
                again.insert(::gettid());
            }));
        // The destructors join.
    }
    EXPECT_EQ(again.size(), 2u);
    for (pid_t t : again)
        EXPECT_TRUE(tids.count(t)) << t;
    EXPECT_EQ(idle_workers(kClass), 2u);
}

TEST(Workers, OneThatCannotConfineItselfIsNotLent) {
    const size_t before = idle_workers(kClass);
    g_refuse = true;
    set_confine_hook(test_hook);
    const auto r = start_workers(kClass, 1, "vireo-bad");
    set_confine_hook(nullptr);
    g_refuse = false;
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message().find("could not confine"), std::string::npos);
    EXPECT_EQ(idle_workers(kClass), before);
}

TEST(Workers, WithoutWorkersAThreadOfItsOwn) {
    pid_t tid = 0;
    ClassThread t = start_thread(ThreadClass::Control, [&] { tid = ::gettid(); });
    EXPECT_TRUE(t.joinable());
    t.join();
    EXPECT_FALSE(t.joinable());
    EXPECT_NE(tid, 0);
    EXPECT_NE(tid, ::gettid());
}

}  // namespace
}  // namespace vireo
