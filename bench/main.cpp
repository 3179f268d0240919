// vireo-bench: performance figures for vireo, printed (and with --json, machine-readable).
#include <CLI/CLI.hpp>

#include "exits.hpp"

int main(int argc, char** argv) {
    CLI::App app{"vireo benchmarks", "vireo-bench"};
    app.require_subcommand(1);

    vireo::bench::ExitsOptions exits;
    auto* cmd = app.add_subcommand(
        "exits",
        "ns per PIO / MMIO exit through the vireo API vs raw KVM ioctls, and per "
        "in-kernel exit (CPUID)");
    cmd->add_option("-n,--iterations", exits.iterations, "Exits per timed run")
        ->capture_default_str()
        ->check(CLI::Range(uint64_t{100}, uint64_t{100000000}));
    cmd->add_option("-r,--runs", exits.runs, "Timed runs per loop (the median is reported)")
        ->capture_default_str()
        ->check(CLI::Range(1, 1000));
    cmd->add_flag("--user", exits.user_mode, "Run the guest loops in ring 3 instead of ring 0");
    cmd->add_flag("--json", exits.json, "End with one line of JSON");

    CLI11_PARSE(app, argc, argv);
    if (*cmd) return vireo::bench::run_exits(exits);
    return 0;
}
