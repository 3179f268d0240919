// What a platform device can ask of the machine: power off, reset, or report a guest panic.
#pragma once

#include <functional>

namespace vireo::devices {

enum class PlatformEvent { PowerOff, Reset, Panic };

/// Called from vCPU threads when the guest triggers a platform event.
using PlatformEventSink = std::function<void(PlatformEvent)>;

}  // namespace vireo::devices
