// libFuzzer target: the device option parsers (`vireo run`'s --disk, --net, --vsock, --shm and
// --vmm-pool, a host file's `disks`, `nets`, `vsock`, `shm` and `vmm_pool`, and the run-time
// limits of `vireo disk-limit` / `net-limit`, which reach a running domain through its control
// socket). Every parser sees the whole input: each refuses it with a message or gives options
// whose limits, as vireo shows them, parse back to the same limits. Run on the production stack
// size, like every parser of vireo's.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "base/mem_pool.hpp"
#include "base/size.hpp"
#include "domain/device_options.hpp"
#include "production_stack.hpp"

namespace {

using namespace vireo;
using namespace vireo::domain;

template <typename R>
bool refused(const R& r) {
    if (r) return false;
    if (r.error().message().empty()) std::abort();  // every refusal says why
    return true;
}

void disk_limits_round_trip(const IoLimits& l) {
    auto back = parse_disk_limits(format_disk_limits(l));
    if (!back || !(*back == l)) std::abort();
}

void net_limits_round_trip(const IoLimits& rx, const IoLimits& tx) {
    auto back = parse_net_limits(format_net_limits(rx, tx));
    if (!back || !(back->first == rx) || !(back->second == tx)) std::abort();
}

void one(std::string_view text) {
    if (auto d = parse_disk_option(text); !refused(d)) {
        if (d->path.empty() || d->serial.size() > virtio::kBlkIdBytes) std::abort();
        if (d->queue_size < 2 || (d->queue_size & (d->queue_size - 1)) != 0) std::abort();
        disk_limits_round_trip(d->limits);
    }
    if (auto n = parse_net_option(text); !refused(n)) {
        if (n->queue_size < 64 || (n->queue_size & (n->queue_size - 1)) != 0) std::abort();
        net_limits_round_trip(n->rx_limits, n->tx_limits);
    }
    if (auto l = parse_disk_limits(text); !refused(l)) disk_limits_round_trip(*l);
    if (auto l = parse_net_limits(text); !refused(l)) net_limits_round_trip(l->first, l->second);
    if (auto v = parse_vsock_option(text); !refused(v)) {
        if (v->cid < 3 || v->socket.empty()) std::abort();
    }
    if (auto s = parse_shm_option(text); !refused(s)) {
        if (!valid_shm_size(s->size) || s->peers > kMaxShmPeers || s->vectors > kMaxShmVectors)
            std::abort();
        if ((s->doorbells && s->peer >= s->peers) ||
            (!s->names.empty() && s->peer >= s->names.size()))
            std::abort();
    }
    // --vmm-pool: a size, then the one range check.
    if (auto p = parse_size(text); !refused(p)) (void)vmm_pool_ok(*p);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    vireo::fuzz::on_production_stack(vireo::fuzz::as_text(data, size), one);
    return 0;
}
