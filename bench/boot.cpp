#include "boot.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>

namespace vireo::bench {

namespace {

using Clock = std::chrono::steady_clock;

struct Sample {
    double marker_ms = -1, exit_ms = -1;
    long peak_rss_kib = 0;       // wait4's ru_maxrss
    long peak_overhead_kib = 0;  // max over samples of RSS outside guest-RAM mappings
    int status = -1;
};

// RSS of mappings smaller than `ram_min` bytes (the VMM itself: code, heap, stacks, buffers);
// the large mappings are guest RAM.
long overhead_kib(pid_t pid, uint64_t ram_min) {
    std::ifstream smaps("/proc/" + std::to_string(pid) + "/smaps");
    std::string line;
    uint64_t size = 0;
    long total = 0;
    while (std::getline(smaps, line)) {
        if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
            line.find('-') != std::string::npos && line.find(' ') > line.find('-')) {
            uint64_t lo = 0, hi = 0;
            if (std::sscanf(line.c_str(), "%lx-%lx", &lo, &hi) == 2) size = hi - lo;
        } else if (line.rfind("Rss:", 0) == 0 && size < ram_min) {
            total += std::strtol(line.c_str() + 4, nullptr, 10);
        }
    }
    return total;
}

Sample launch(const std::string& cmd, const BootOptions& o) {
    Sample s;
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return s;
    auto t0 = Clock::now();
    pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(fds[1], 1);
        ::dup2(fds[1], 2);
        int devnull = ::open("/dev/null", O_RDONLY);
        ::dup2(devnull, 0);
        // Commands without shell syntax are split on spaces and exec'd directly, so the time
        // measured starts with the VMM's own process, not with a shell's.
        if (cmd.find_first_of("'\"$;|&<>()*?\\`") == std::string::npos) {
            std::istringstream words(cmd.rfind("exec ", 0) == 0 ? cmd.substr(5) : cmd);
            std::vector<std::string> argv_s{std::istream_iterator<std::string>(words), {}};
            std::vector<char*> argv;
            for (auto& a : argv_s)
                argv.push_back(a.data());
            argv.push_back(nullptr);
            ::execvp(argv[0], argv.data());
            ::_exit(127);
        }
        ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    ::close(fds[1]);
    const uint64_t ram_min = o.guest_ram_min_mib << 20;
    std::string pending;
    char buf[4096];
    auto next_sample = Clock::now();
    for (;;) {
        auto now = Clock::now();
        if (now >= next_sample) {
            // The shell execs the VMM, so the child pid is the VMM.
            s.peak_overhead_kib = std::max(s.peak_overhead_kib, overhead_kib(pid, ram_min));
            next_sample = now + std::chrono::milliseconds(50);
        }
        if (now - t0 > std::chrono::seconds(o.timeout_s)) {
            ::kill(pid, SIGKILL);
            break;
        }
        pollfd p{fds[0], POLLIN, 0};
        if (::poll(&p, 1, 20) <= 0) continue;
        ssize_t n = ::read(fds[0], buf, sizeof buf);
        if (n <= 0) break;
        if (s.marker_ms < 0) {
            pending.append(buf, static_cast<size_t>(n));
            if (pending.find(o.marker) != std::string::npos) {
                s.marker_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
                s.peak_overhead_kib = std::max(s.peak_overhead_kib, overhead_kib(pid, ram_min));
                if (o.stop_at_marker) ::kill(pid, SIGTERM);
            }
            if (pending.size() > 65536) pending.erase(0, pending.size() - o.marker.size());
        }
    }
    int status = 0;
    rusage ru{};
    ::wait4(pid, &status, 0, &ru);
    s.exit_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    ::close(fds[0]);
    s.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    s.peak_rss_kib = ru.ru_maxrss;
    return s;
}

struct Stat {
    double median = 0, min = 0, max = 0;
};

Stat stat(std::vector<double> v) {
    if (v.empty()) return {};
    std::sort(v.begin(), v.end());
    size_t n = v.size();
    return {n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, v.front(), v.back()};
}

}  // namespace

int run_boot(const BootOptions& o) {
    std::map<std::string, std::vector<Sample>> results;
    for (int r = 0; r < o.runs; ++r) {
        for (size_t i = 0; i < o.cases.size(); ++i) {
            // Rotate the order every run so warm caches and drift favour no one.
            const auto& [name, cmd] = o.cases[(i + static_cast<size_t>(r)) % o.cases.size()];
            if (o.pause_ms > 0) ::usleep(static_cast<useconds_t>(o.pause_ms) * 1000);
            Sample s = launch(cmd, o);
            std::fprintf(stderr,
                         "run %d %-14s marker %8.1f ms  exit %8.1f ms  peak RSS %6ld KiB  "
                         "overhead %6ld KiB  status %d\n",
                         r + 1, name.c_str(), s.marker_ms, s.exit_ms, s.peak_rss_kib,
                         s.peak_overhead_kib, s.status);
            results[name].push_back(s);
        }
    }
    std::printf("vireo-bench boot: %d runs per case, medians (min..max)\n", o.runs);
    std::printf("%-14s %22s %22s %16s %16s %6s\n", "case", "to marker ms", "to exit ms",
                "peak RSS MiB", "overhead MiB", "ok");
    std::ostringstream json;
    json << "{\"bench\":\"boot\",\"runs\":" << o.runs << ",\"cases\":{";
    bool first = true;
    for (const auto& [name, cmd] : o.cases) {
        auto& v = results[name];
        std::vector<double> m, e, rss, ovh;
        int good = 0;
        for (const auto& s : v) {
            if (s.marker_ms >= 0 && s.status == 0) ++good;
            if (s.marker_ms >= 0) m.push_back(s.marker_ms);
            e.push_back(s.exit_ms);
            rss.push_back(static_cast<double>(s.peak_rss_kib) / 1024);
            ovh.push_back(static_cast<double>(s.peak_overhead_kib) / 1024);
        }
        Stat sm = stat(m), se = stat(e), sr = stat(rss), so = stat(ovh);
        std::printf(
            "%-14s %8.0f (%5.0f..%5.0f) %8.0f (%5.0f..%5.0f) %6.1f (%4.0f..%4.0f) %6.1f "
            "(%3.1f..%3.1f) %3d/%d\n",
            name.c_str(), sm.median, sm.min, sm.max, se.median, se.min, se.max, sr.median, sr.min,
            sr.max, so.median, so.min, so.max, good, o.runs);
        json << (first ? "" : ",") << "\"" << name << "\":{\"marker_ms\":" << sm.median
             << ",\"exit_ms\":" << se.median << ",\"peak_rss_mib\":" << sr.median
             << ",\"overhead_mib\":" << so.median << ",\"ok\":" << good << "}";
        first = false;
    }
    json << "}}";
    if (o.cases.size() > 1) {
        const auto& base = o.cases[0].first;
        std::vector<double> bm;
        for (const auto& s : results[base])
            if (s.marker_ms >= 0) bm.push_back(s.marker_ms);
        for (size_t i = 1; i < o.cases.size(); ++i) {
            std::vector<double> om;
            for (const auto& s : results[o.cases[i].first])
                if (s.marker_ms >= 0) om.push_back(s.marker_ms);
            std::printf("%s / %s to marker: %.2f\n", base.c_str(), o.cases[i].first.c_str(),
                        stat(bm).median / stat(om).median);
        }
    }
    if (o.json) std::printf("%s\n", json.str().c_str());
    return 0;
}

}  // namespace vireo::bench
