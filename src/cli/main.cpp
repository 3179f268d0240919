// The vireo command. Thin: parses arguments and calls into the library layers.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "base/limits.hpp"
#include "base/log.hpp"
#include "cli/demo.hpp"
#include "cli/run.hpp"
#include "hv/hypervisor.hpp"

namespace vireo::cli {

int print_kvm_info(const std::string& device) {
    using vireo::hv::Feature;
    auto hv = vireo::hv::Hypervisor::open(device);
    if (!hv) {
        vireo::log::error("{}", hv.error().message());
        return 1;
    }
    const auto& l = hv->limits();
    std::printf("device            %s\n", device.c_str());
    std::printf("implementation    %s (%s)\n",
                hv->flavor().empty() ? "unknown" : hv->flavor().c_str(),
                hv->hardware_assisted() ? "hardware-assisted: full OS kernels run"
                                        : "software: only tiny guests run");
    std::printf("vCPUs per VM      %u (recommended %u, ids below %u)\n", l.max_vcpus,
                l.recommended_vcpus, l.max_vcpu_id);
    std::printf("memory slots      %u\n", l.max_memslots);
    std::printf("guest phys bits   %u\n", l.phys_addr_bits);
    std::printf("CPUID leaves      %zu\n", hv->supported_cpuid().size());
    struct Named {
        Feature f;
        const char* name;
    };
    std::printf("features         ");
    for (auto [f, name] :
         {Named{Feature::KernelIrqchip, "irqchip"}, Named{Feature::SplitIrqchip, "split-irqchip"},
          Named{Feature::Ioeventfd, "ioeventfd"}, Named{Feature::Irqfd, "irqfd"},
          Named{Feature::ReadonlyMemory, "readonly-mem"}, Named{Feature::Xsave, "xsave"},
          Named{Feature::Pit, "pit"}, Named{Feature::UserSpaceMsr, "user-msr"},
          Named{Feature::BinaryStats, "stats-fd"}, Named{Feature::KvmclockCtrl, "kvmclock-ctrl"},
          Named{Feature::MsrFilter, "msr-filter"}}) {
        if (hv->has(f)) std::printf(" %s", name);
    }
    std::printf("\n");
    return 0;
}

}  // namespace vireo::cli

int main(int argc, char** argv) {
    vireo::raise_fd_limit();  // a vCPU is an fd: large machines need more than 1024
    vireo::set_thread_stack_size();
    CLI::App app{"vireo: a small, explicit KVM hypervisor stack", "vireo"};
    app.set_version_flag("--version", "vireo 0.1.0");
    app.require_subcommand(1);

    bool quiet = false;
    auto* demo = app.add_subcommand("demo", "Run the built-in tiny guest and print its greeting");
    demo->add_flag("-q,--quiet", quiet, "Do not print the guest's output");

    vireo::cli::RunOptions run_options;
    auto* run = vireo::cli::add_run_command(app, run_options);
    vireo::cli::IncomingOptions incoming;
    vireo::cli::add_incoming_options(run, incoming);
    vireo::cli::RestoreOptions restore_options;
    auto* restore = vireo::cli::add_restore_command(app, restore_options);
    auto run_client = vireo::cli::add_client_commands(app);
    auto run_host = vireo::cli::add_host_commands(app);
    auto run_control = vireo::cli::add_control_commands(app);

    // CLI11's own handling prints its message bare and exits with its error number (104-114);
    // docs/cli.md promises one "vireo: error:" line and status 1 for every usage error.
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        vireo::log::error("{} (see vireo --help)", e.what());
        return 1;
    }
    if (*run && incoming.address.empty() && !incoming.token.empty()) {
        vireo::log::error("--token: only with --incoming");
        return 1;
    }
    if (*run)
        return incoming.address.empty() ? vireo::cli::run_guest(run_options)
                                        : vireo::cli::incoming_guest(run_options, incoming);
    if (*restore) return vireo::cli::restore_guest(restore_options);
    if (*demo) return vireo::cli::run_demo(quiet);
    if (int rc = run_client(); rc >= 0) return rc;
    if (int rc = run_host(); rc >= 0) return rc;
    if (int rc = run_control(); rc >= 0) return rc;
    return 0;
}
