#include "hv/stats.hpp"

#include <unistd.h>

#include <cstring>

#include "hv/kvm_uapi.hpp"

namespace vireo::hv {

namespace {

Result<void> pread_all(int fd, void* buf, size_t len, uint64_t off, const char* what) {
    auto* p = static_cast<uint8_t*>(buf);
    size_t done = 0;
    while (done < len) {
        const ssize_t n = ::pread(fd, p + done, len - done, static_cast<off_t>(off + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno(errno, "reading KVM statistics ({})", what);
        if (n == 0) return fail(ErrorCode::System, "KVM statistics ({}) end early", what);
        done += static_cast<size_t>(n);
    }
    return ok();
}

}  // namespace

Result<Stats> Stats::from_fd(UniqueFd fd) {
    Stats s;
    kvm_stats_header h{};
    VIREO_TRY(pread_all(fd.get(), &h, sizeof h, 0, "header"));
    // Each descriptor is the fixed part followed by a name of h.name_size bytes.
    const size_t fixed = sizeof(kvm_stats_desc);
    const size_t desc_size = fixed + h.name_size;
    if (h.num_desc > 4096 || h.name_size == 0 || h.name_size > 256)
        return fail(ErrorCode::System, "KVM statistics: implausible header ({} descriptors)",
                    h.num_desc);
    std::vector<uint8_t> descs(desc_size * h.num_desc);
    VIREO_TRY(pread_all(fd.get(), descs.data(), descs.size(), h.desc_offset, "descriptors"));
    uint64_t data_end = 0;
    for (uint32_t i = 0; i < h.num_desc; ++i) {
        const uint8_t* d = descs.data() + size_t{i} * desc_size;
        kvm_stats_desc desc{};
        std::memcpy(&desc, d, fixed);
        data_end = std::max<uint64_t>(data_end, uint64_t{desc.offset} + uint64_t{desc.size} * 8);
        // Histograms (size > 1) are left out; counters and instant values have one element.
        if (desc.size != 1) continue;
        const char* name = reinterpret_cast<const char*>(d + fixed);
        s.names_.emplace_back(name, strnlen(name, h.name_size));
        s.offsets_.push_back(desc.offset);
    }
    s.data_offset_ = h.data_offset;
    s.data_size_ = static_cast<size_t>(data_end);
    s.fd_ = std::move(fd);
    return s;
}

Result<void> Stats::read(std::span<uint64_t> out) const {
    if (!fd_) return fail(ErrorCode::BadState, "no KVM statistics");
    if (out.size() != names_.size())
        return fail(ErrorCode::InvalidArgument, "statistics buffer has {} entries, want {}",
                    out.size(), names_.size());
    // Small blocks (a vCPU's is ~300 bytes) stay on the stack; this is called by a scraper.
    uint8_t stack[2048];
    std::vector<uint8_t> heap;
    uint8_t* buf = stack;
    if (data_size_ > sizeof stack) {
        heap.resize(data_size_);
        buf = heap.data();
    }
    VIREO_TRY(pread_all(fd_.get(), buf, data_size_, data_offset_, "values"));
    for (size_t i = 0; i < names_.size(); ++i)
        std::memcpy(&out[i], buf + offsets_[i], sizeof(uint64_t));
    return ok();
}

}  // namespace vireo::hv
