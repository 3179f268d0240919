// Constants of the virtio 1.x specification (OASIS virtio v1.2) that vireo uses.
#pragma once

#include <cstdint>

namespace vireo::virtio {

// Device status bits (2.1).
inline constexpr uint32_t kStatusAcknowledge = 1;
inline constexpr uint32_t kStatusDriver = 2;
inline constexpr uint32_t kStatusDriverOk = 4;
inline constexpr uint32_t kStatusFeaturesOk = 8;
inline constexpr uint32_t kStatusNeedsReset = 64;
inline constexpr uint32_t kStatusFailed = 128;

// Reserved feature bits (6).
inline constexpr uint64_t kFeatureIndirectDesc = uint64_t{1} << 28;
inline constexpr uint64_t kFeatureEventIdx = uint64_t{1} << 29;
inline constexpr uint64_t kFeatureVersion1 = uint64_t{1} << 32;

// Device IDs (5).
inline constexpr uint32_t kDeviceNet = 1;
inline constexpr uint32_t kDeviceBlock = 2;
inline constexpr uint32_t kDeviceEntropy = 4;
inline constexpr uint32_t kDeviceBalloon = 5;
inline constexpr uint32_t kDeviceVsock = 19;

// Split virtqueue descriptor flags (2.7.5).
inline constexpr uint16_t kDescNext = 1;
inline constexpr uint16_t kDescWrite = 2;
inline constexpr uint16_t kDescIndirect = 4;
// Ring flags.
inline constexpr uint16_t kAvailNoInterrupt = 1;

/// The largest queue size vireo offers (QueueNumMax); the spec allows up to 32768.
inline constexpr uint16_t kMaxQueueSize = 1024;

// Interrupt status bits (4.2.2).
inline constexpr uint32_t kInterruptUsedBuffer = 1;
inline constexpr uint32_t kInterruptConfigChange = 2;

}  // namespace vireo::virtio
