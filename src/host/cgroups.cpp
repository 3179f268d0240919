#include "host/cgroups.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>

#include "base/cpu_list.hpp"
#include "base/log.hpp"
#include "base/unique_fd.hpp"

namespace vireo::host {

namespace {

// The cgroup v2 mount with the cpu controller, or "".
std::string cgroup2_root() {
    std::ifstream m("/proc/mounts");
    std::string dev, dir, type, rest;
    while (m >> dev >> dir >> type && std::getline(m, rest)) {
        if (type != "cgroup2") continue;
        std::ifstream c(dir + "/cgroup.controllers");
        std::string ctl;
        while (c >> ctl)
            if (ctl == "cpu") return dir;
    }
    return "";
}

}  // namespace

Result<void> write_control_file(const std::string& path, const std::string& text) {
    // O_WRONLY without O_CREAT: a control file that is not there is an error, never created.
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) return fail_errno(errno, "{}", path);
    const ssize_t n = ::write(fd.get(), text.data(), text.size());
    if (n < 0) return fail_errno(errno, "{}: writing \"{}\"", path, text);
    if (static_cast<size_t>(n) != text.size())
        return fail(ErrorCode::System, "{}: short write of \"{}\"", path, text);
    return {};
}

Cgroups Cgroups::open(const std::string& host_stem) {
    Cgroups c;
    const std::string root = cgroup2_root();
    if (root.empty()) return c;
    const std::string host = root + "/vireo-" + host_stem;
    ::mkdir(host.c_str(), 0755);
    // cpuset is optional (not every kernel delegates it); cpu is what weights and caps need.
    for (const char* controller : {"+cpu", "+cpuset", "+memory", "+pids"})
        (void)write_control_file(root + "/cgroup.subtree_control", controller);
    if (!write_control_file(host + "/cgroup.subtree_control", "+cpu")) return c;
    for (const char* controller : {"+cpuset", "+memory", "+pids"})
        (void)write_control_file(host + "/cgroup.subtree_control", controller);
    c.host_ = host;
    return c;
}

std::string Cgroups::domain_dir(const std::string& pool, const std::set<uint32_t>& pool_cpus,
                                const std::string& domain, uint32_t weight, uint32_t cap,
                                uint64_t memory_max, uint64_t pids_max) const {
    if (host_.empty()) return "";
    const std::string pool_dir = host_ + "/" + pool;
    if (::mkdir(pool_dir.c_str(), 0755) == 0) {
        (void)write_control_file(pool_dir + "/cpuset.cpus", cpu_list(pool_cpus));
        for (const char* controller : {"+cpu", "+memory", "+pids"})
            (void)write_control_file(pool_dir + "/cgroup.subtree_control", controller);
    }
    const std::string dir = pool_dir + "/" + domain;
    ::mkdir(dir.c_str(), 0755);
    if (auto r = write_control_file(dir + "/cpu.weight", std::to_string(weight)); !r)
        log::warn("{}", r.error().message());
    const std::string max = cap == 0 ? "max 100000" : std::to_string(cap * 1000) + " 100000";
    if (auto r = write_control_file(dir + "/cpu.max", max); !r)
        log::warn("{}", r.error().message());
    // Memory and tasks: only where the controllers are delegated (a file that is not there is
    // a controller the host keeps; said once per domain at debug level).
    if (memory_max != 0)
        if (auto r = write_control_file(dir + "/memory.max", std::to_string(memory_max)); !r)
            log::debug("{}", r.error().message());
    if (pids_max != 0)
        if (auto r = write_control_file(dir + "/pids.max", std::to_string(pids_max)); !r)
            log::debug("{}", r.error().message());
    return dir;
}

Result<void> Cgroups::move(const std::string& dir, const std::string& task) {
    return write_control_file(dir + "/cgroup.procs", task);
}

void Cgroups::move_all(const std::string& from, const std::string& to) {
    std::ifstream left(from + "/cgroup.procs");
    std::string task;
    while (left >> task)
        if (auto r = move(to, task); !r)
            log::warn("cannot move task {}: {}", task, r.error().message());
}

void Cgroups::remove(const std::string& dir) {
    if (dir.empty()) return;
    for (int i = 0; i < 50; ++i) {
        if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    log::warn("cannot remove cgroup {}: {}", dir, std::strerror(errno));
}

}  // namespace vireo::host
