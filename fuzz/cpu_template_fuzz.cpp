// libFuzzer target: the CPU template, spec_ctrl and MSR policy parsers (--cpu, --spec-ctrl and
// --msr-filter, a host file's `cpu`, `spec_ctrl` and `msr_filter`, and those of a snapshot's
// saved domain, which a restore reads from a file it did not write), applying the result to a
// host's CPUID and the MSR allow-list from it. The input is a template, after a first newline a
// speculation-control policy, after a second an MSR policy. Any input is refused with a message or
// gives a template whose text (vireo info's) parses back to it; applying never reads or writes
// outside the leaves. Run on the production stack size, like every parser of vireo's.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "arch/x86/cpu_template.hpp"
#include "arch/x86/msr_policy.hpp"
#include "production_stack.hpp"

namespace {

void one(std::string_view text) {
    using namespace vireo::arch::x86;
    const size_t nl = text.find('\n');
    const std::string_view rest =
        nl == std::string_view::npos ? std::string_view("on") : text.substr(nl + 1);
    const size_t nl2 = rest.find('\n');
    const std::string_view policy = rest.substr(0, nl2);
    const std::string_view msr_text =
        nl2 == std::string_view::npos ? std::string_view("on") : rest.substr(nl2 + 1);
    auto msrs = parse_msr_policy(msr_text);
    if (!msrs) {
        if (msrs.error().message().empty()) std::abort();
        return;
    }
    auto msrs_back = parse_msr_policy(to_string(*msrs));
    if (!msrs_back || !(*msrs_back == *msrs)) std::abort();
    auto s = parse_spec_ctrl(policy);
    if (!s) {
        if (s.error().message().empty()) std::abort();
        return;
    }
    auto s_back = parse_spec_ctrl(to_string(*s));
    if (!s_back || !(*s_back == *s)) std::abort();
    auto t = parse_cpu_template(text.substr(0, nl));
    if (!t) {
        if (t.error().message().empty()) std::abort();
        return;
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
    if (out) {
        // Sorted, no repeats, bounded: the built-in list and 32 additions of 4096 at most.
        const auto list = msr_allow_list(*msrs, *out);
        if (!std::is_sorted(list.begin(), list.end()) ||
            std::adjacent_find(list.begin(), list.end()) != list.end() ||
            list.size() > 4096 + 32 * 4096)
            std::abort();
    }
    if (out && out->size() != host.size()) std::abort();
    return;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    vireo::fuzz::on_production_stack(vireo::fuzz::as_text(data, size), one);
    return 0;
}
