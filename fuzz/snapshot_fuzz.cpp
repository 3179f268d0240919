// libFuzzer target: the snapshot parser (snapshot::Reader over a file's bytes) and the state
// decoder over every section it accepts, read as a device would (fixed fields, a bounded
// length-prefixed field, finish()). Any input must give a parse or a clear error, never a
// crash, an over-long allocation or a read outside the input. Each input is parsed on a thread
// with the production stack size (kThreadStackSize, as a restoring domain's main thread has);
// scripts/fuzz.sh gives it files up to 256 KiB (a real snapshot's state sections are KiBs;
// guest memory is a mapped section, never read by the parser).
#include <pthread.h>

#include <cstdint>
#include <cstdlib>
#include <span>

#include "base/limits.hpp"
#include "snapshot/format.hpp"
#include "snapshot/state.hpp"

namespace {

struct Input {
    std::span<const uint8_t> bytes;
};

void* parse(void* arg) {
    const auto* in = static_cast<const Input*>(arg);
    auto r = vireo::snapshot::Reader::open(vireo::snapshot::memory_source(in->bytes));
    if (!r) return nullptr;
    for (const auto& s : r->sections()) {
        vireo::snapshot::Decoder d(r->bytes(s), vireo::snapshot::tag_name(s.tag));
        (void)d.u32();
        (void)d.boolean();
        (void)d.bytes(4096);
        (void)d.u64();
        (void)d.finish();
    }
    return nullptr;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Input in{std::span<const uint8_t>(data, size)};
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, vireo::kThreadStackSize);
    pthread_t t;
    if (pthread_create(&t, &attr, parse, &in) != 0) std::abort();
    pthread_join(t, nullptr);
    pthread_attr_destroy(&attr);
    return 0;
}
