// Descriptor tables from fuzzer input, shared by the virtio fuzz targets.
#pragma once

#include <cstdint>
#include <cstring>

#include "virtio/testing/driver.hpp"

namespace vireo::fuzz {

/// Writes descriptors 0, 1, ... of `q` from 16-byte records at `p`, advancing `p`, until `end`
/// or the queue size. Addresses land in [data, data + data_size) unless their bit 63 is set
/// (then they stay raw, so addresses outside RAM are tried too); lengths are taken modulo
/// `len_mod` (0: as given).
inline void fill_descriptors(virtio::testing::DriverQueue& q, const uint8_t*& p, const uint8_t* end,
                             uint64_t data, uint64_t data_size, uint32_t len_mod = 0) {
    for (uint16_t i = 0; i < q.size() && p + 16 <= end; ++i, p += 16) {
        virtio::testing::RawDesc d;
        std::memcpy(&d, p, 16);
        if (!(d.addr >> 63)) d.addr = data + (d.addr % data_size);
        if (len_mod != 0) d.len %= len_mod;
        q.write_desc(i, d);
    }
}

}  // namespace vireo::fuzz
