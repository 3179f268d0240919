// libFuzzer target: the CPU template parser (--cpu, a host file's `cpu`, and the `cpu` of a
// snapshot's saved domain, which a restore reads from a file it did not write) and applying the
// result to a host's CPUID. Any input is refused with a message or gives a template whose text
// (vireo info's) parses back to it; applying never reads or writes outside the leaves. Run on
// the production stack size, like every parser of vireo's.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "arch/x86/cpu_template.hpp"
#include "production_stack.hpp"

namespace {

struct Input {
    std::string_view text;
};

void* one(void* arg) {
    using namespace vireo::arch::x86;
    const auto* in = static_cast<const Input*>(arg);
    auto t = parse_cpu_template(in->text);
    if (!t) {
        if (t.error().message().empty()) std::abort();
        return nullptr;
    }
    auto back = parse_cpu_template(to_string(*t));
    if (!back || !(*back == *t)) std::abort();
    // A host with a little of everything the templates look at.
    static const std::vector<vireo::hv::CpuidEntry> host = {
        {.function = 1, .ecx = 0xf7f83203, .edx = 0x178bfbff},
        {.function = 7, .index = 0, .flags = 1, .ebx = 0x009c01ab, .edx = 0xac000010},
        {.function = 0xd, .index = 0, .flags = 1, .eax = 0xe7, .ecx = 2696},
        {.function = 0xd, .index = 1, .flags = 1, .eax = 0xf},
        {.function = 0xd, .index = 2, .flags = 1, .eax = 256, .ebx = 576},
        {.function = 0x80000001, .ecx = 0x75, .edx = 0x2fd3fbff},
        {.function = 0x80000008, .ebx = 0x1005},
    };
    auto out = apply_cpu_template(*t, host);
    if (out && out->size() != host.size()) std::abort();
    return nullptr;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Input in{std::string_view(reinterpret_cast<const char*>(data), size)};
    vireo::fuzz::on_production_stack(one, &in);
    return 0;
}
