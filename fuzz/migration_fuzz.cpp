// libFuzzer target: the receiving side of a live migration (snapshot/stream.hpp) over bytes a
// stranger or a broken sender could send: the hello (magic, version, token, the domain's
// configuration, parsed as vireo run --incoming parses it), then the records (pages and zero
// runs written into a small guest RAM of two regions, the state's length), then the state as the
// snapshot parser reads it, and a reply as the sender reads one. Any input must give a parse or
// one clear error, never a crash, a write outside guest RAM or an allocation over the bounds.
// Runs on a thread with the production stack size (a receiving domain's main thread's);
// scripts/fuzz.sh gives it inputs up to 256 KiB (records of a few pages each).
#include <cstdint>
#include <span>

#include "domain/protocol.hpp"
#include "memory/guest_memory.hpp"
#include "production_stack.hpp"
#include "snapshot/format.hpp"
#include "snapshot/stream.hpp"

namespace {

namespace stream = vireo::snapshot::stream;

const vireo::memory::GuestMemory& guest_ram() {
    // Two regions with a hole between them, as a machine past the MMIO hole has.
    static const auto mem = [] {
        const vireo::memory::RegionSpec layout[] = {{vireo::memory::Gpa(0), 64 * 4096},
                                                    {vireo::memory::Gpa(1 << 20), 16 * 4096}};
        auto m = vireo::memory::GuestMemory::create(layout, "fuzz-guest-ram");
        if (!m) std::abort();
        return std::move(m).value();
    }();
    return mem;
}

void parse(std::span<const uint8_t> bytes) {
    if (bytes.empty()) return;
    // The first byte picks where the stream starts: at the hello, at the records, or a reply.
    const uint8_t mode = bytes[0] % 3;
    stream::MemoryInput src(bytes.subspan(1));
    if (mode == 0) {
        auto hello = stream::read_hello(src);
        if (!hello) return;
        (void)vireo::domain::parse_spec_json(hello->spec, "the incoming domain's configuration");
    }
    if (mode == 2) {
        (void)stream::read_reply(src);
        return;
    }
    stream::ReceiveStats stats;
    auto state = stream::receive_memory(src, guest_ram(), stats);
    if (!state) return;
    (void)vireo::snapshot::Reader::open(vireo::snapshot::memory_source(*state));
    (void)stream::receive_go(src);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    vireo::fuzz::on_production_stack(std::span<const uint8_t>(data, size), parse);
    return 0;
}
