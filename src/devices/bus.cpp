#include "devices/bus.hpp"

#include <algorithm>
#include <cstring>

namespace vireo::devices {

Result<void> Bus::attach(uint64_t base, uint64_t size, std::shared_ptr<Device> device) {
    if (size == 0 || base + size < base)
        return fail(ErrorCode::InvalidArgument, "{} bus: bad range [{:#x}, +{:#x}) for {}", name_,
                    base, size, device->name());
    auto it = std::lower_bound(ranges_.begin(), ranges_.end(), base,
                               [](const Range& r, uint64_t b) { return r.base < b; });
    if (it != ranges_.end() && it->base < base + size)
        return fail(ErrorCode::AlreadyExists, "{} bus: {} at {:#x} overlaps {} at {:#x}", name_,
                    device->name(), base, it->device->name(), it->base);
    if (it != ranges_.begin() && std::prev(it)->base + std::prev(it)->size > base)
        return fail(ErrorCode::AlreadyExists, "{} bus: {} at {:#x} overlaps {} at {:#x}", name_,
                    device->name(), base, std::prev(it)->device->name(), std::prev(it)->base);
    ranges_.insert(it, Range{base, size, std::move(device)});
    return ok();
}

const Bus::Range* Bus::find(uint64_t addr, size_t len) const noexcept {
    auto it = std::upper_bound(ranges_.begin(), ranges_.end(), addr,
                               [](uint64_t a, const Range& r) { return a < r.base; });
    if (it == ranges_.begin()) return nullptr;
    --it;
    uint64_t off = addr - it->base;
    if (off >= it->size || len > it->size - off) return nullptr;
    return &*it;
}

bool Bus::read(uint64_t addr, std::span<uint8_t> data) const {
    const Range* r = find(addr, data.size());
    if (r == nullptr) {
        std::memset(data.data(), 0xff, data.size());
        return false;
    }
    r->device->read(addr - r->base, data);
    return true;
}

bool Bus::write(uint64_t addr, std::span<const uint8_t> data) const {
    const Range* r = find(addr, data.size());
    if (r == nullptr) return false;
    r->device->write(addr - r->base, data);
    return true;
}

}  // namespace vireo::devices
