// A process's or thread's scheduling figures from /proc (.../stat).
#pragma once

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

namespace vireo {

struct ProcStat {
    double cpu_s = 0;  ///< user + system CPU time
    int cpu = -1;      ///< the CPU it last ran on
};

/// Reads /proc/PID/stat or /proc/self/task/TID/stat (`path`); zeros if it is gone.
inline ProcStat read_proc_stat(const std::string& path) {
    ProcStat out;
    std::ifstream f(path);
    const std::string s((std::istreambuf_iterator<char>(f)), {});
    const size_t rp = s.rfind(')');  // the command name may hold spaces and parentheses
    if (rp == std::string::npos || rp + 2 >= s.size()) return out;
    std::istringstream in(s.substr(rp + 2));
    std::string field;
    unsigned long long ut = 0, st = 0;
    for (int i = 3; i <= 39 && in >> field; ++i) {  // field numbers as in proc(5)
        if (i == 14) ut = std::stoull(field);
        if (i == 15) st = std::stoull(field);
        if (i == 39) out.cpu = std::stoi(field);
    }
    out.cpu_s = static_cast<double>(ut + st) / static_cast<double>(::sysconf(_SC_CLK_TCK));
    return out;
}

}  // namespace vireo
