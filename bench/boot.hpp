// `vireo-bench boot`: launch commands (VMMs booting a guest) alternately, N times each, and
// report time to a marker line, time to exit, peak RSS and VMM overhead. Works for any VMM, so
// vireo and QEMU are measured the same way in the same run.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace vireo::bench {

struct BootOptions {
    int runs = 5;
    std::string marker = "VIREO-GUEST-INIT";
    uint64_t guest_ram_min_mib = 32;  ///< mappings at least this large count as guest RAM
    std::vector<std::pair<std::string, std::string>> cases;  ///< name, shell command
    bool json = false;
    int timeout_s = 120;
    int pause_ms = 0;  ///< idle time between runs (lets the kernel finish tearing a VM down)
    bool stop_at_marker = false;  ///< SIGTERM the VMM once the marker appears
};

int run_boot(const BootOptions& options);

}  // namespace vireo::bench
