#include "jail.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "base/thread_class.hpp"
#include "sandbox/sandbox.hpp"
#include "stats.hpp"

namespace vireo::bench {

namespace {

double now_ms() {
    timespec t{};
    ::clock_gettime(CLOCK_MONOTONIC, &t);
    return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) / 1e6;
}

// What the domain sends once every thread runs (confined, in the jail case).
struct Ready {
    int ok = 0;
    sandbox::StepTimes steps;
};

constexpr ThreadClass kClasses[] = {ThreadClass::Vcpu,    ThreadClass::IoLoop,
                                    ThreadClass::Api,     ThreadClass::Console,
                                    ThreadClass::Metrics, ThreadClass::Signals};

// The domain: (jail) prepare, enter, then its threads, each confining itself; reports and ends.
enum class Mode { Plain, Keeper, Jail };

[[noreturn]] void domain(int out, bool jail, int threads) {
    Ready r;
    r.ok = 1;
    if (jail) {
        sandbox::Plan plan;
        plan.uid = plan.gid = sandbox::kDefaultRunUid;
        // The vCPU threads, as a domain's: started by enter(), before the main filter.
        for (int i = 0; i < threads; ++i)
            if (kClasses[static_cast<size_t>(i) % std::size(kClasses)] == ThreadClass::Vcpu)
                ++plan.vcpu_threads;
        if (!sandbox::prepare() || !sandbox::enter(plan)) r.ok = 0;
        r.steps = sandbox::step_times();
    }
    std::atomic<int> running{0};
    std::atomic<bool> done{false};
    std::vector<ClassThread> started;
    for (int i = 0; i < threads && r.ok; ++i) {
        const ThreadClass c = kClasses[static_cast<size_t>(i) % std::size(kClasses)];
        started.push_back(start_thread(c, [&, c] {
            confine_thread(c);
            running.fetch_add(1);
            while (!done.load())
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }));
    }
    while (r.ok && running.load() < threads)
        std::this_thread::yield();
    (void)!::write(out, &r, sizeof r);
    done.store(true);
    for (auto& t : started)
        t.join();
    ::_exit(0);
}

struct Sample {
    double ready_ms = 0;  // fork -> every thread running
    double exit_ms = 0;   // fork -> reaped (namespaces torn down on the way)
    sandbox::StepTimes steps;
    bool ok = false;
};

Sample one(Mode mode, int threads) {
    const bool jail = mode == Mode::Jail;
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return {};
    const double t0 = now_ms();
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::close(p[0]);
        if (mode != Mode::Plain) {
            // `vireo run`'s keeper: the domain is PID 1 of a new PID namespace.
            if (::unshare(CLONE_NEWPID) != 0) ::_exit(3);
            const pid_t d = ::fork();
            if (d == 0) domain(p[1], jail, threads);
            int st = 0;
            ::waitpid(d, &st, 0);
            ::_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 4);
        }
        domain(p[1], false, threads);
    }
    ::close(p[1]);
    Sample s;
    Ready r;
    if (::read(p[0], &r, sizeof r) == static_cast<ssize_t>(sizeof r) && r.ok) {
        s.ready_ms = now_ms() - t0;
        s.steps = r.steps;
        s.ok = true;
    }
    ::close(p[0]);
    int st = 0;
    ::waitpid(pid, &st, 0);
    s.exit_ms = now_ms() - t0;
    s.ok = s.ok && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    return s;
}

}  // namespace

int run_jail(const JailOptions& o) {
    if (::geteuid() != 0) {
        std::fprintf(stderr, "vireo-bench jail: needs root (namespaces, ids), as vireo's jail\n");
        return 2;
    }
    std::vector<Sample> jail, keeper, plain;
    for (int i = 0; i < o.runs; ++i) {
        // Alternating, so that the machine's drift lands on every case.
        jail.push_back(one(Mode::Jail, o.threads));
        keeper.push_back(one(Mode::Keeper, o.threads));
        plain.push_back(one(Mode::Plain, o.threads));
        if (!jail.back().ok || !keeper.back().ok || !plain.back().ok) {
            std::fprintf(stderr, "vireo-bench jail: run %d failed (jail %d, keeper %d, plain %d)\n",
                         i, jail.back().ok, keeper.back().ok, plain.back().ok);
            return 1;
        }
    }
    auto col = [](const std::vector<Sample>& v, auto f) {
        std::vector<double> out;
        for (const auto& s : v)
            out.push_back(f(s));
        return median(out);
    };
    const double jr = col(jail, [](const Sample& s) { return s.ready_ms; });
    const double pr = col(plain, [](const Sample& s) { return s.ready_ms; });
    const double je = col(jail, [](const Sample& s) { return s.exit_ms; });
    const double pe = col(plain, [](const Sample& s) { return s.exit_ms; });
    const double kr = col(keeper, [](const Sample& s) { return s.ready_ms; });
    const double ke = col(keeper, [](const Sample& s) { return s.exit_ms; });
    auto step = [&](uint32_t sandbox::StepTimes::*m) {
        return col(jail, [m](const Sample& s) { return (s.steps.*m) / 1000.0; });
    };
    std::printf("vireo-bench jail: %d runs per case, %d threads, medians\n", o.runs, o.threads);
    std::printf("%-10s %14s %14s\n", "case", "ready ms", "exit ms");
    std::printf("%-10s %14.3f %14.3f\n", "jail", jr, je);
    std::printf("%-10s %14.3f %14.3f\n", "keeper", kr, ke);
    std::printf("%-10s %14.3f %14.3f\n", "plain", pr, pe);
    std::printf(
        "jail - plain: ready +%.3f ms, exit +%.3f ms (of which the keeper and its PID "
        "namespace: +%.3f ms, +%.3f ms)\n",
        jr - pr, je - pe, kr - pr, ke - pe);
    std::printf(
        "jail steps (ms): namespaces %.3f, network %.3f, root %.3f, ids %.3f, vCPU threads "
        "%.3f, main filter %.3f\n",
        step(&sandbox::StepTimes::prepare_us), step(&sandbox::StepTimes::network_us),
        step(&sandbox::StepTimes::root_us), step(&sandbox::StepTimes::identity_us),
        step(&sandbox::StepTimes::vcpus_us), step(&sandbox::StepTimes::filter_us));
    if (o.json)
        std::printf(
            "{\"jail_ready_ms\":%.3f,\"plain_ready_ms\":%.3f,\"jail_exit_ms\":%.3f,"
            "\"plain_exit_ms\":%.3f}\n",
            jr, pr, je, pe);
    return 0;
}

}  // namespace vireo::bench
