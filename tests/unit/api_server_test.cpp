// The control API server against hostile local clients (issue 14): requests nested too deep or
// too long, clients that send slowly, never read, half-close, or come in numbers, and a method
// that blocks. A real server on a real Unix socket; `version` must keep answering within
// 100 ms throughout.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "api/server.hpp"
#include "base/limits.hpp"
#include "base/unix_socket.hpp"

namespace vireo::api {
namespace {

using Clock = std::chrono::steady_clock;

struct Rig {
    std::string dir, path;
    std::unique_ptr<Server> server;
    explicit Rig(bool with_blocking = false) {
        char tmpl[] = "/tmp/vireo-api-test.XXXXXX";
        dir = ::mkdtemp(tmpl);
        path = dir + "/api.sock";
        auto s = Server::create(path);
        EXPECT_TRUE(s) << s.error().message();
        server = std::move(s).value();
        server->add("echo", [](const Json& p) -> Result<Json> { return p; });
        if (with_blocking)
            server->add(
                "slow",
                [](const Json&) -> Result<Json> {
                    std::this_thread::sleep_for(std::chrono::seconds(2));
                    return Json("done");
                },
                Server::Kind::Blocking);
        EXPECT_TRUE(server->start());
    }
    ~Rig() {
        server.reset();
        ::rmdir(dir.c_str());
    }
};

UniqueFd connect_to(const std::string& path) {
    auto fd = connect_unix(path);
    EXPECT_TRUE(fd) << fd.error().message();
    return fd ? std::move(fd).value() : UniqueFd();
}

// Reads one line (up to `ms`), "" on timeout or close.
std::string read_line(int fd, int ms = 3000) {
    std::string line;
    const auto deadline = Clock::now() + std::chrono::milliseconds(ms);
    while (line.empty() || line.back() != '\n') {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        pollfd p{fd, POLLIN, 0};
        if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return "";
        char c;
        if (::recv(fd, &c, 1, 0) != 1) return "";
        line += c;
    }
    return line;
}

// Latencies of `n` version calls on fresh connections, each after `gap`, sorted.
std::vector<std::chrono::milliseconds> version_latencies(const std::string& path, int n,
                                                         std::chrono::milliseconds gap) {
    std::vector<std::chrono::milliseconds> all;
    for (int i = 0; i < n; ++i) {
        const auto t0 = Clock::now();
        auto r = call(path, "version", {}, 2000);
        all.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0));
        EXPECT_TRUE(r) << r.error().message();
        std::this_thread::sleep_for(gap);
    }
    std::sort(all.begin(), all.end());
    return all;
}

TEST(ApiServer, DeeplyNestedRequestsAreRefusedOnTheRealStack) {
    // The server thread runs with the production stack (1 MiB); 20 KB of '[' once overflowed it
    // when the echoed id was copied and printed.
    set_thread_stack_size();
    Rig rig;
    for (const std::string& nested :
         {R"({"id":)" + std::string(20000, '[') + R"(,"method":"version"})",
          R"({"id":1,"method":"echo","params":{"a":)" + std::string(60000, '{') + "}}",
          R"({"id":1,"method":"echo","params":{"a":")" + std::string(60000, '[') + R"("}})"}) {
        auto fd = connect_to(rig.path);
        ASSERT_TRUE(send_all(fd.get(), nested + "\n"));
        const std::string reply = read_line(fd.get());
        // Brackets inside a string do not nest: that one is an ordinary (large) echo.
        if (nested.find(R"("a":")") != std::string::npos)
            EXPECT_NE(reply.find("\"result\""), std::string::npos) << reply.substr(0, 200);
        else
            EXPECT_NE(reply.find("too-deep"), std::string::npos) << reply.substr(0, 200);
    }
    // 32 levels still pass.
    std::string ok = R"({"id":1,"method":"echo","params":{"a":)";
    ok += std::string(30, '[') + std::string(30, ']') + "}}";
    auto fd = connect_to(rig.path);
    ASSERT_TRUE(send_all(fd.get(), ok + "\n"));
    EXPECT_NE(read_line(fd.get()).find("\"result\""), std::string::npos);
    EXPECT_EQ(rig.server->stats().too_deep.load(), 2u);
    EXPECT_TRUE(call(rig.path, "version"));
}

TEST(ApiServer, OverlongRequestGetsAnErrorAndTheConnectionCloses) {
    Rig rig;
    auto fd = connect_to(rig.path);
    const std::string big(kMaxRequest + 10, 'x');
    (void)send_all(fd.get(), big, 2000);
    EXPECT_NE(read_line(fd.get()).find("too-large"), std::string::npos);
    EXPECT_EQ(read_line(fd.get(), 1000), "");  // closed
    EXPECT_TRUE(call(rig.path, "version"));
}

TEST(ApiServer, HalfClosedClientGetsItsAnswers) {
    Rig rig;
    auto fd = connect_to(rig.path);
    // The last request has no newline: end of input ends it.
    ASSERT_TRUE(
        send_all(fd.get(), "{\"id\":1,\"method\":\"version\"}\n{\"id\":2,\"method\":\"version\"}"));
    ::shutdown(fd.get(), SHUT_WR);
    EXPECT_NE(read_line(fd.get()).find("\"id\":1"), std::string::npos);
    EXPECT_NE(read_line(fd.get()).find("\"id\":2"), std::string::npos);
    EXPECT_EQ(read_line(fd.get(), 1000), "");
}

TEST(ApiServer, HostileClientsDoNotHoldUpOthers) {
    set_thread_stack_size();
    Rig rig(/*with_blocking=*/true);
    // 1. Every client slot taken by clients that send one byte and then nothing.
    std::vector<UniqueFd> slow;
    for (size_t i = 0; i < kMaxClients + 8; ++i) {
        slow.push_back(connect_to(rig.path));
        ASSERT_TRUE(send_all(slow.back().get(), "{"));
    }
    // 2. Clients that send requests and never read the answers (their replies pile up).
    std::vector<UniqueFd> deaf;
    const std::string burst = [] {
        std::string b;
        for (int i = 0; i < 2000; ++i)
            b += R"({"id":1,"method":"echo","params":{"pad":")" + std::string(400, 'p') + "\"}}\n";
        return b;
    }();
    for (int i = 0; i < 4; ++i) {
        deaf.push_back(connect_to(rig.path));
        ::fcntl(deaf.back().get(), F_SETFL, O_NONBLOCK);
        (void)::send(deaf.back().get(), burst.data(), burst.size(), MSG_NOSIGNAL);
    }
    // 3. A method that blocks for 2 s, from several clients.
    std::vector<std::thread> blockers;
    for (int i = 0; i < 3; ++i)
        blockers.emplace_back([&] { (void)call(rig.path, "slow", {}, 5000); });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    // Meanwhile `version` on fresh connections: typically within 100 ms (the median: CI runs
    // this beside emulated test hosts on two cores, where a scheduler hiccup is no hold-up), and
    // none held up by any of the above, whose waits last seconds (a worst case under 1 s).
    const auto lat = version_latencies(rig.path, 40, std::chrono::milliseconds(20));
    EXPECT_LT(lat[lat.size() / 2].count(), 100) << "median answer";
    EXPECT_LT(lat.back().count(), 1000) << "slowest answer";
    for (auto& t : blockers)
        t.join();
    const auto& st = rig.server->stats();
    EXPECT_GT(st.evicted.load(), 0u);  // the silent clients made room
    EXPECT_EQ(st.busy.load(), 0u);
}

TEST(ApiServer, BusyAnswerReachesAClientThatCouldNotSend) {
    // At the limit with every client mid-request on a worker, a new client is told "busy";
    // api::call retries and reports busy, never "Broken pipe".
    Rig rig(/*with_blocking=*/true);
    std::vector<std::thread> blockers;
    for (size_t i = 0; i < kMaxWorkers + 2; ++i)
        blockers.emplace_back([&] { (void)call(rig.path, "slow", {}, 5000); });
    // Once one of them was told busy, all workers are taken (for ~2 s more).
    for (int i = 0; i < 300 && rig.server->stats().busy.load() == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_GT(rig.server->stats().busy.load(), 0u);
    auto r = call(rig.path, "slow", {}, 5000);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message().find("busy"), std::string::npos) << r.error().message();
    for (auto& t : blockers)
        t.join();
}

TEST(ApiServer, SocketIsOwnerOnlyAndRemovedOnlyIfStillItsOwn) {
    const mode_t old = ::umask(0);
    {
        Rig rig;
        struct stat st {};
        ASSERT_EQ(::lstat(rig.path.c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 0777, 0600u);
        // Another server replaced the socket at the same path (its run directory was
        // recreated): the first one's exit must leave the new one alone.
        ASSERT_EQ(::unlink(rig.path.c_str()), 0);
        auto second = Server::create(rig.path);
        ASSERT_TRUE(second) << second.error().message();
        rig.server.reset();
        EXPECT_EQ(::lstat(rig.path.c_str(), &st), 0) << "the second server's socket was removed";
        second->reset();
        EXPECT_NE(::lstat(rig.path.c_str(), &st), 0);
    }
    ::umask(old);
}

}  // namespace
}  // namespace vireo::api

namespace vireo::api {
namespace {

// A descriptor sent with a request reaches a method that takes one (a jailed domain gets the
// snapshot file this way), goes no further than that request, and a method that takes one
// but got none says so.
TEST(ApiServer, ADescriptorSentWithARequestReachesItsMethodOnly) {
    char tmpl[] = "/tmp/vireo-api-test.XXXXXX";
    const std::string dir = ::mkdtemp(tmpl), path = dir + "/api.sock";
    auto server = Server::create(path);
    ASSERT_TRUE(server);
    (*server)->add("echo", [](const Json& p) -> Result<Json> { return p; });
    (*server)->add("size", [](const Json&, UniqueFd fd) -> Result<Json> {
        if (!fd) return fail(ErrorCode::InvalidArgument, "no descriptor");
        struct stat st {};
        if (::fstat(fd.get(), &st) != 0) return fail_errno(errno, "fstat");
        return Json(static_cast<uint64_t>(st.st_size));
    });
    ASSERT_TRUE((*server)->start());
    UniqueFd file(::memfd_create("api-fd-test", MFD_CLOEXEC));
    ASSERT_EQ(::ftruncate(file.get(), 12345), 0);
    auto client = Client::connect(path, 5000);
    ASSERT_TRUE(client);
    auto r = client->call_with_fd("size", Json::object(), file.get());
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->get<uint64_t>(), 12345u);
    // The next request on the connection has none: the first went with its request.
    auto again = client->call("size", Json::object());
    ASSERT_FALSE(again);
    EXPECT_NE(again.error().message().find("no descriptor"), std::string::npos);
    // Sent to a method that takes none: it answers as usual (and the descriptor is closed).
    auto echo = client->call_with_fd("echo", Json{{"a", 1}}, file.get());
    ASSERT_TRUE(echo);
    EXPECT_EQ((*echo)["a"], 1);
    auto none = client->call("size", Json::object());
    EXPECT_FALSE(none);
    server->reset();
    ::rmdir(dir.c_str());
}

// A request still running when the server stops (a save or a migration that ends the domain
// it was asked of) is answered before the server goes.
TEST(ApiServer, ARequestRunningAtStopIsStillAnswered) {
    Rig rig(/*with_blocking=*/true);
    auto fd = connect_to(rig.path);
    const std::string req = R"({"id":1,"method":"slow"})"
                            "\n";
    ASSERT_EQ(::send(fd.get(), req.data(), req.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(req.size()));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the worker runs
    std::thread stopper([&] { rig.server->stop(); });
    const std::string line = read_line(fd.get(), 5000);
    stopper.join();
    EXPECT_NE(line.find("\"done\""), std::string::npos) << line;
}

}  // namespace
}  // namespace vireo::api
