// Access to the tiny guests embedded by vireo_add_guest() (cmake/guests.cmake).
#pragma once

#include <cstdint>
#include <span>

#define VIREO_GUEST(name)                                                                    \
    extern "C" const uint8_t vireo_guest_##name##_start[];                                   \
    extern "C" const uint8_t vireo_guest_##name##_end[];                                     \
    inline std::span<const uint8_t> guest_##name() {                                         \
        return {vireo_guest_##name##_start,                                                  \
                static_cast<size_t>(vireo_guest_##name##_end - vireo_guest_##name##_start)}; \
    }
