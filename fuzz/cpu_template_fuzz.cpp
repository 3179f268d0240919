// libFuzzer target: the CPU template and spec_ctrl parsers (--cpu and --spec-ctrl, a host file's
// `cpu` and `spec_ctrl`, and those of a snapshot's saved domain, which a restore reads from a
// file it did not write) and applying the result to a host's CPUID. The input is a template, and
// after a first newline a policy. Any input is refused with a message or gives a template whose
// text (vireo info's) parses back to it; applying never reads or writes outside the leaves. Run on
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
    const size_t nl = in->text.find('\n');
    const std::string_view policy =
        nl == std::string_view::npos ? std::string_view("on") : in->text.substr(nl + 1);
    auto s = parse_spec_ctrl(policy);
    if (!s) {
        if (s.error().message().empty()) std::abort();
        return nullptr;
    }
    auto s_back = parse_spec_ctrl(to_string(*s));
    if (!s_back || !(*s_back == *s)) std::abort();
    auto t = parse_cpu_template(in->text.substr(0, nl));
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
    t->spec_ctrl = *s;
    auto out = apply_cpu_template(*t, host);
    if (out && spec_controls_seen(*out).empty()) std::abort();
    if (out && out->size() != host.size()) std::abort();
    return nullptr;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Input in{std::string_view(reinterpret_cast<const char*>(data), size)};
    vireo::fuzz::on_production_stack(one, &in);
    return 0;
}
