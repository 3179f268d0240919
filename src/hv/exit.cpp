#include "hv/exit.hpp"

namespace vireo::hv {

const char* to_string(ExitReason reason) noexcept {
    switch (reason) {
        case ExitReason::Io:
            return "io";
        case ExitReason::Mmio:
            return "mmio";
        case ExitReason::Halt:
            return "halt";
        case ExitReason::Shutdown:
            return "shutdown";
        case ExitReason::SystemEvent:
            return "system-event";
        case ExitReason::Interrupted:
            return "interrupted";
        case ExitReason::InternalError:
            return "internal-error";
        case ExitReason::FailEntry:
            return "fail-entry";
        case ExitReason::Hypercall:
            return "hypercall";
        case ExitReason::Debug:
            return "debug";
        case ExitReason::IrqWindowOpen:
            return "irq-window-open";
        case ExitReason::Msr:
            return "msr";
        case ExitReason::IoapicEoi:
            return "ioapic-eoi";
        case ExitReason::SetTpr:
            return "set-tpr";
        case ExitReason::Unknown:
            return "unknown";
    }
    return "?";
}

}  // namespace vireo::hv
