// vireo-bench blk-path: virtio-blk's device path without a guest CPU in the way.
#pragma once

#include <string>

namespace vireo::bench {

struct BlkPathOptions {
    std::string image;            ///< raw image to read (default: a temporary one of `size_mib`)
    unsigned size_mib = 256;      ///< size of the temporary image
    double seconds = 2;           ///< per timed run
    unsigned runs = 5;            ///< timed runs per case (median reported)
    unsigned depth = 32;          ///< requests in flight
    unsigned request_kib = 1016;  ///< bytes per sequential request (254 segments of 4 KiB)
    unsigned segment_kib = 4;     ///< guest buffer segment size
    uint64_t limit_bps = 0;       ///< a rate limit on the device (0: none), e.g. far above it
    bool accuracy = false;        ///< also the rate limiter's accuracy table at three rates
    bool limit_cost = false;      ///< also what a limit far above the rate costs (paired runs)
    bool json = false;
};

int run_blk_path(const BlkPathOptions& options);

}  // namespace vireo::bench
