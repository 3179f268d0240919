// libFuzzer target: the snapshot parser (snapshot::Reader over a file's bytes) and the state
// decoders over every section it accepts: generic fields, the UART's and the CMOS's restore, the
// machine's clock and chips, the RAM layout, the saved domain configuration (JSON), the CPUID the
// guest saw, a virtio-mmio transport's restore (with the rng's and the balloon's state, its queues
// activated against a small guest RAM), a vCPU's state. Any input must give a parse or a clear
// error, never a crash, an over-long allocation or a read outside the input. Each input is parsed
// on a thread with the production stack size (kThreadStackSize, as a restoring domain's main thread
// has); scripts/fuzz.sh gives it files up to 256 KiB (a real snapshot's state sections are KiBs;
// guest memory is a mapped section, never read by the parser).
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "devices/legacy/cmos.hpp"
#include "devices/legacy/serial.hpp"
#include "domain/protocol.hpp"
#include "production_stack.hpp"
#include "snapshot/format.hpp"
#include "snapshot/machine.hpp"
#include "snapshot/memory.hpp"
#include "snapshot/state.hpp"
#include "snapshot/vcpu.hpp"
#include "virtio/balloon/device.hpp"
#include "virtio/mmio.hpp"
#include "virtio/rng/device.hpp"

namespace {

uint64_t le(const uint8_t* p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; ++i)
        v |= static_cast<uint64_t>(p[i]) << (8 * i);
    return v;
}
void put32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; ++i)
        p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// A fuzzer seldom guesses a CRC: for inputs whose last byte is odd, the checksums are made to
// match (the header's, and each unmapped section's the walk reaches), so the parser's deeper
// checks and the decoder see as many inputs as its first checks do.
void seal(std::vector<uint8_t>& f) {
    namespace s = vireo::snapshot;
    if (f.size() < s::kHeaderBytes) return;
    uint64_t at = s::kHeaderBytes;
    for (int i = 0; i < 64 && at + s::kSectionHeaderBytes <= f.size(); ++i) {
        uint8_t* h = f.data() + at;
        const uint64_t off = le(h + 16, 8), len = le(h + 24, 8);
        if ((le(h + 8, 4) & s::kSectionMapped) == 0 && off <= f.size() && len <= f.size() - off)
            put32(h + 12, s::crc32(std::span(f).subspan(off, len)));
        if (off > f.size() || len > f.size() - off) break;
        at = (off + len + 7) & ~uint64_t{7};
    }
    put32(f.data() + 24, 0);
    put32(f.data() + 24, s::crc32(std::span(f).first(s::kHeaderBytes)));
}

void parse(std::span<const uint8_t> bytes) {
    auto r = vireo::snapshot::Reader::open(vireo::snapshot::memory_source(bytes));
    if (!r) return;
    (void)vireo::snapshot::memory_layout(*r);  // the RAM layout against its sections
    // Virtio transports over a small guest RAM (a restore activates queues against it).
    static const auto mem = vireo::memory::GuestMemory::create_flat(1 << 20).value();
    auto rng = vireo::virtio::MmioTransport::create(
                   mem, std::make_shared<vireo::virtio::EntropyDevice>(), 0xd0000000)
                   .value();
    auto balloon = vireo::virtio::MmioTransport::create(
                       mem, std::make_shared<vireo::virtio::BalloonDevice>(), 0xd0001000)
                       .value();
    for (const auto& s : r->sections()) {
        vireo::snapshot::Decoder d(r->bytes(s), vireo::snapshot::tag_name(s.tag));
        (void)d.u32();
        (void)d.boolean();
        (void)d.bytes(4096);
        (void)d.u64();
        (void)d.finish();
        // ... as the UART's and the CMOS's state,
        vireo::devices::Serial uart(nullptr, nullptr);
        vireo::snapshot::Decoder u(r->bytes(s), "serial");
        uart.restore(u);
        (void)u.finish();
        vireo::devices::Cmos cmos;
        vireo::snapshot::Decoder c(r->bytes(s), "cmos");
        cmos.restore(c);
        (void)c.finish();
        vireo::snapshot::MachineState machine;  // as the machine's
        vireo::snapshot::Decoder m(r->bytes(s), "machine");
        vireo::snapshot::decode(m, machine);
        (void)m.finish();
        for (auto* t : {rng.get(), balloon.get()}) {  // as a virtio transport's
            vireo::snapshot::Decoder v(r->bytes(s), "virtio");
            t->restore(v);
            (void)v.finish();
        }
        // ... as a saved domain configuration (vireo restore reads it),
        (void)vireo::domain::parse_spec_json(
            std::string_view(reinterpret_cast<const char*>(r->bytes(s).data()), r->bytes(s).size()),
            "domain");
        std::vector<vireo::hv::CpuidEntry> cpuid;  // as the CPUID the guest saw,
        vireo::snapshot::Decoder cp(r->bytes(s), "CPUID");
        vireo::snapshot::decode(cp, cpuid);
        (void)cp.finish();
        vireo::hv::VcpuState vcpu;  // and as a vCPU's state
        vireo::snapshot::Decoder v(r->bytes(s), "vCPU");
        vireo::snapshot::decode(v, vcpu);
        (void)v.finish();
    }
}

// Inputs starting with 'W' describe sections instead: [tag choice u8][length u16][bytes]...,
// written by snapshot::Writer as vireo writes a snapshot, so every decoder sees well-formed
// files with hostile payloads.
std::vector<uint8_t> written(std::span<const uint8_t> in) {
    namespace s = vireo::snapshot;
    const uint32_t tags[] = {s::vcpu_tag(0), s::tag("UART"), s::tag("CMOS"), s::kMachineTag,
                             s::kRamTag,     s::ram_tag(0),  s::ram_tag(1),  s::tag("DOMN")};
    const int fd = ::memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0) std::abort();
    s::Writer w(fd);
    std::vector<uint32_t> used;
    while (in.size() >= 3) {
        const uint32_t t = tags[in[0] % std::size(tags)];
        const size_t len = std::min<size_t>(in[1] | size_t{in[2]} << 8, in.size() - 3);
        if (std::find(used.begin(), used.end(), t) == used.end()) {
            used.push_back(t);
            if ((t & 0xff) == 'R' && t != s::kRamTag)  // a RAM region's bytes: pages, a hole
                (void)w.add_mapped(t, 1, uint64_t{in[1]} << 12);
            else
                (void)w.add(t, 1, in.subspan(3, len));
        }
        in = in.subspan(3 + len);
    }
    (void)w.finish();
    std::vector<uint8_t> out(static_cast<size_t>(::lseek(fd, 0, SEEK_END)));
    if (::pread(fd, out.data(), out.size(), 0) != static_cast<ssize_t>(out.size())) out.clear();
    ::close(fd);
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::vector<uint8_t> made;
    std::span<const uint8_t> bytes(data, size);
    if (size > 0 && data[0] == 'W') {
        made = written(bytes.subspan(1));
        bytes = made;
    } else if (size > 0 && (data[size - 1] & 1) != 0) {
        made.assign(data, data + size);
        seal(made);
        bytes = made;
    }
    vireo::fuzz::on_production_stack(bytes, parse);
    return 0;
}
