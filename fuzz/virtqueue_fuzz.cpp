// libFuzzer target: the descriptor-chain parser (Queue::pop) on guest memory the input fills.
// The input is the guest: ring addresses, queue size, features and every descriptor.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "virtio/queue.hpp"

using namespace vireo;

namespace {
constexpr uint64_t kRam = 64 * 1024;
const memory::GuestMemory& ram() {
    static auto mem = memory::GuestMemory::create_flat(kRam).value();
    return mem;
}
uint16_t u16(const uint8_t* p) {
    return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 9) return 0;
    const auto& mem = ram();
    const uint8_t flags = data[0];
    virtio::QueueConfig c;
    c.size = static_cast<uint16_t>(1u << (data[1] % 11));  // 1..1024
    c.ready = true;
    c.desc = uint64_t{u16(data + 2)} * 16 % (2 * kRam);  // mostly in RAM, sometimes not
    c.driver = uint64_t{u16(data + 4)} * 2;
    c.device = uint64_t{u16(data + 6)} * 4;
    const uint32_t max_chain = 1 + data[8] % 130;
    // Guest RAM: the rest of the input at each ring, so that rings and tables come from it.
    // The driver's view of guest RAM (the test plays the guest).
    auto* s = static_cast<uint8_t*>(mem.slice(memory::Gpa(0), kRam).value().iov().iov_base);
    std::memset(s, 0, kRam);
    const uint8_t* body = data + 9;
    const size_t body_len = std::min<size_t>(size - 9, 4096);
    for (uint64_t at : {c.desc, c.driver, c.device, uint64_t{0}})
        if (at < kRam) std::memcpy(s + at, body, std::min<uint64_t>(body_len, kRam - at));
    virtio::Queue q;
    if (!q.activate(mem, c, 1024, max_chain, flags & 1, flags & 2)) return 0;
    virtio::Chain chain(max_chain);
    for (uint32_t i = 0; i < 2u * c.size + 2; ++i) {
        auto r = q.pop(chain);
        if (!r || !*r) break;
        uint64_t sum = 0;  // touch every byte the chain claims: ASan checks the bounds
        for (const auto& seg : chain.segments()) {
            const auto* p = static_cast<const uint8_t*>(seg.buf.iov().iov_base);
            sum += p[0] + p[seg.len() - 1];
        }
        if (flags & 4) q.push_used(chain.head(), static_cast<uint32_t>(sum));
        (void)q.needs_interrupt();
    }
    return 0;
}
