#include "virtio/rng/device.hpp"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>

#include "virtio/virtio.hpp"

namespace vireo::virtio {

uint32_t EntropyDevice::device_id() const noexcept {
    return kDeviceEntropy;
}

uint64_t EntropyDevice::device_features() const noexcept {
    return kFeatureIndirectDesc | kFeatureEventIdx;
}

Result<void> EntropyDevice::activate(const memory::GuestMemory&, std::span<Queue> queues, uint64_t,
                                     Transport& transport) {
    VIREO_TRY_ASSIGN(queue_, only_queue(queues));
    transport_ = &transport;
    return ok();
}

Result<void> EntropyDevice::process(size_t) {
    if (queue_ == nullptr) return ok();
    for (;;) {
        VIREO_TRY_ASSIGN(bool got, queue_->pop(chain_));
        if (!got) break;
        if (chain_.readable_bytes() != 0)
            return fail(ErrorCode::InvalidArgument, "entropy request with {} device-readable bytes",
                        chain_.readable_bytes());
        uint32_t written = 0;
        for (const auto& s : chain_.writable()) {
            uint32_t want = std::min(s.len(), kMaxBytesPerRequest - written);
            const iovec dst = s.buf.iov(0, want);
            uint32_t got_here = 0;
            while (got_here < want) {
                // SAFETY: [got_here, want) lies inside dst, which iov() clamped to the buffer.
                ssize_t n =
                    ::getrandom(static_cast<uint8_t*>(dst.iov_base) + got_here, want - got_here, 0);
                if (n < 0) {
                    if (errno == EINTR) continue;
                    break;
                }
                got_here += static_cast<uint32_t>(n);
            }
            written += got_here;
            if (got_here < want || written == kMaxBytesPerRequest) break;
        }
        bytes_ += written;
        queue_->push_used(chain_, written);
    }
    if (queue_->needs_interrupt()) transport_->signal_used();
    return ok();
}

}  // namespace vireo::virtio
