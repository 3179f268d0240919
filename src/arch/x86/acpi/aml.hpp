// A small AML (ACPI Machine Language) encoder: just the terms vireo's DSDT needs. Each function
// returns encoded bytes; compose them like the ASL they stand for:
//
//   scope("\\_SB_", {device("COM1", {name("_HID", eisa_id("PNP0501")), ...})})
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <vector>

namespace vireo::arch::x86::aml {

using Bytes = std::vector<uint8_t>;

/// Concatenates terms.
Bytes join(std::initializer_list<Bytes> terms);
Bytes join(const std::vector<Bytes>& terms);

/// PkgLength encoding of a package whose contents are `content_len` bytes (the encoding counts
/// itself). Exposed for tests.
Bytes pkg_length(size_t content_len);

/// NameString: "\\_SB_.COM1", "_HID", "COM1" (segments shorter than 4 are padded with '_').
Bytes name_string(std::string_view path);

Bytes integer(uint64_t value);
Bytes string(std::string_view s);
/// EISA id such as "PNP0501" compressed to a DWord integer.
Bytes eisa_id(std::string_view id);

/// Name(path, value)
Bytes name(std::string_view path, const Bytes& value);
/// Scope(path) { terms }
Bytes scope(std::string_view path, const std::vector<Bytes>& terms);
/// Device(name) { terms }
Bytes device(std::string_view path, const std::vector<Bytes>& terms);
/// Package() { elements }
Bytes package(const std::vector<Bytes>& elements);

/// ResourceTemplate() { descriptors } — a Buffer with the end tag appended.
Bytes resource_template(const std::vector<Bytes>& descriptors);
/// IO(Decode16, min, min, 1, len)
Bytes io(uint16_t base, uint8_t len);
/// IRQNoFlags() { irq }
Bytes irq_no_flags(uint8_t irq);
/// Memory32Fixed(ReadWrite, base, len)
Bytes memory32_fixed(uint32_t base, uint32_t len);
/// What an address space descriptor's range is of.
enum class Space : uint8_t { Memory = 0, Io = 1, BusNumber = 2 };
/// WordBusNumber / WordIO / WordMemory, DWord..., QWord...(ResourceProducer, PosDecode,
/// MinFixed, MaxFixed, NonCacheable, ReadWrite): a window [min, min + len) a bridge decodes for
/// the devices behind it (ACPI 6.5, 6.4.3.5). `len` > 0 and the window within the width.
Bytes word_space(Space space, uint16_t min, uint16_t len);
Bytes dword_space(Space space, uint32_t min, uint32_t len);
Bytes qword_space(Space space, uint64_t min, uint64_t len);
/// Method(path, args, NotSerialized) { terms }
Bytes method(std::string_view path, uint8_t args, const std::vector<Bytes>& terms);
/// Notify(path, value)
Bytes notify(std::string_view path, uint64_t value);
/// Interrupt(ResourceConsumer, Edge|Level, ActiveHigh, Exclusive) { gsi }
Bytes interrupt(uint32_t gsi, bool level_triggered);

}  // namespace vireo::arch::x86::aml
