#include "devices/pci/msix.hpp"

#include <cstring>

namespace vireo::devices::pci {

namespace {
// The specification's rule for table and PBA accesses: 4 or 8 bytes, aligned, inside.
bool allowed(uint64_t offset, size_t size, uint32_t limit) noexcept {
    return (size == 4 || size == 8) && offset % size == 0 && offset < limit;
}
}  // namespace

Result<std::unique_ptr<Msix>> Msix::create(uint16_t vectors, Send send, Changed changed) {
    if (vectors == 0 || vectors > kMsixMaxVectors)
        return fail(ErrorCode::InvalidArgument, "msi-x: {} vectors (1 to {})", vectors,
                    kMsixMaxVectors);
    if (!send) return fail(ErrorCode::InvalidArgument, "msi-x: no way to send a message");
    return std::unique_ptr<Msix>(new Msix(vectors, std::move(send), std::move(changed)));
}

Msix::Msix(uint16_t vectors, Send send, Changed changed)
    : entries_(vectors), send_(std::move(send)), changed_(std::move(changed)) {}

std::array<uint8_t, 10> Msix::capability(uint8_t table_bar, uint32_t table_offset, uint8_t pba_bar,
                                         uint32_t pba_offset) const {
    const uint16_t control = static_cast<uint16_t>(vectors() - 1);
    const uint32_t table = (table_offset & ~7u) | (table_bar & 7u);
    const uint32_t pba = (pba_offset & ~7u) | (pba_bar & 7u);
    std::array<uint8_t, 10> b{};
    b[0] = static_cast<uint8_t>(control);
    b[1] = static_cast<uint8_t>(control >> 8);
    std::memcpy(&b[2], &table, 4);  // little-endian host (x86)
    std::memcpy(&b[6], &pba, 4);
    return b;
}

std::array<uint8_t, 10> Msix::capability_writable() {
    return {0, static_cast<uint8_t>((kMsixEnable | kMsixFunctionMask) >> 8), 0, 0, 0, 0, 0, 0, 0,
            0};
}

bool Msix::deliverable_locked(const Entry& e) const noexcept {
    return enabled_ && !function_masked_ && (e.control & 1) == 0;
}

void Msix::flush_locked(std::vector<std::pair<uint16_t, MsiMessage>>& out) {
    for (size_t i = 0; i < entries_.size(); ++i) {
        Entry& e = entries_[i];
        if (!e.pending || !deliverable_locked(e)) continue;
        e.pending = false;
        out.push_back({static_cast<uint16_t>(i), e.message()});
    }
}

void Msix::set_control(uint16_t control) {
    std::vector<std::pair<uint16_t, MsiMessage>> out;
    bool changed = false;
    {
        std::lock_guard lock(mu_);
        const bool enabled = (control & kMsixEnable) != 0;
        const bool masked = (control & kMsixFunctionMask) != 0;
        changed = enabled != enabled_ || masked != function_masked_;
        enabled_ = enabled;
        function_masked_ = masked;
        flush_locked(out);
    }
    // Every vector's deliverability follows the control word.
    if (changed && changed_)
        for (uint16_t v = 0; v < vectors(); ++v)
            changed_(v);
    for (const auto& [v, m] : out)
        send_(v, m);
}

void Msix::table_read(uint64_t offset, std::span<uint8_t> data) const {
    std::fill(data.begin(), data.end(), uint8_t{0});
    if (!allowed(offset, data.size(), table_size())) return;
    std::lock_guard lock(mu_);
    const Entry& e = entries_[offset / kMsixEntrySize];
    const uint32_t words[4] = {e.address_lo, e.address_hi, e.data, e.control};
    const size_t first = (offset % kMsixEntrySize) / 4;
    std::memcpy(data.data(), &words[first], data.size());  // 8 bytes: 2 words of the same entry
}

void Msix::table_write(uint64_t offset, std::span<const uint8_t> data) {
    if (!allowed(offset, data.size(), table_size())) return;
    const auto vector = static_cast<uint16_t>(offset / kMsixEntrySize);
    std::vector<std::pair<uint16_t, MsiMessage>> out;
    bool changed = false;
    {
        std::lock_guard lock(mu_);
        Entry& e = entries_[vector];
        uint32_t* words[4] = {&e.address_lo, &e.address_hi, &e.data, &e.control};
        const size_t first = (offset % kMsixEntrySize) / 4;
        for (size_t w = 0; w < data.size() / 4; ++w) {
            uint32_t v;
            std::memcpy(&v, data.data() + 4 * w, 4);
            if (first + w == 3) v &= 1;  // vector control: only the mask bit
            changed |= *words[first + w] != v;
            *words[first + w] = v;
        }
        flush_locked(out);
    }
    if (changed && changed_) changed_(vector);
    for (const auto& [v, m] : out)
        send_(v, m);
}

void Msix::pba_read(uint64_t offset, std::span<uint8_t> data) const {
    std::fill(data.begin(), data.end(), uint8_t{0});
    if (!allowed(offset, data.size(), pba_size())) return;
    std::lock_guard lock(mu_);
    for (size_t byte = 0; byte < data.size(); ++byte)
        for (size_t bit = 0; bit < 8; ++bit) {
            const size_t v = (offset + byte) * 8 + bit;
            if (v < entries_.size() && entries_[v].pending)
                data[byte] = static_cast<uint8_t>(data[byte] | (1u << bit));
        }
}

void Msix::signal(uint16_t vector) {
    MsiMessage m;
    {
        std::lock_guard lock(mu_);
        if (vector >= entries_.size()) return;
        Entry& e = entries_[vector];
        if (!deliverable_locked(e)) {
            e.pending = true;
            return;
        }
        m = e.message();
    }
    send_(vector, m);
}

MsiMessage Msix::message(uint16_t vector) const {
    std::lock_guard lock(mu_);
    if (vector >= entries_.size()) return {};
    return entries_[vector].message();
}

bool Msix::deliverable(uint16_t vector) const {
    std::lock_guard lock(mu_);
    return vector < entries_.size() && deliverable_locked(entries_[vector]);
}

bool Msix::enabled() const {
    std::lock_guard lock(mu_);
    return enabled_;
}

void Msix::save(snapshot::Encoder& e) const {
    std::lock_guard lock(mu_);
    e.boolean(enabled_);
    e.boolean(function_masked_);
    e.u32(static_cast<uint32_t>(entries_.size()));
    for (const Entry& x : entries_) {
        e.u32(x.address_lo);
        e.u32(x.address_hi);
        e.u32(x.data);
        e.u32(x.control);
        e.boolean(x.pending);
    }
}

void Msix::restore(snapshot::Decoder& d) {
    std::lock_guard lock(mu_);
    enabled_ = d.boolean();
    function_masked_ = d.boolean();
    if (d.u32() != entries_.size()) {
        d.invalid("msi-x vectors");
        return;
    }
    for (Entry& x : entries_) {
        x.address_lo = d.u32();
        x.address_hi = d.u32();
        x.data = d.u32();
        x.control = d.u32() & 1;
        x.pending = d.boolean();
    }
}

void Msix::reset() {
    {
        std::lock_guard lock(mu_);
        enabled_ = false;
        function_masked_ = false;
        for (Entry& x : entries_)
            x = Entry{};
    }
    if (changed_)
        for (uint16_t v = 0; v < vectors(); ++v)
            changed_(v);
}

}  // namespace vireo::devices::pci
