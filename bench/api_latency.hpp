// vireo-bench api: latency of the control API on a running domain (info; pause + unpause),
// and the same under concurrent clients.
#pragma once

#include <string>

namespace vireo::bench {

struct ApiOptions {
    std::string socket;   ///< the domain's API socket
    int requests = 2000;  ///< per measured case
    int clients = 50;     ///< for the concurrent case
    bool json = false;
};

int run_api(const ApiOptions& options);

}  // namespace vireo::bench
