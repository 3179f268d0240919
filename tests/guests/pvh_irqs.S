# A PVH guest that counts the 8254 PIT's interrupts (channel 0, rate generator, 100 Hz) in three
# ways, as firmware and kernels take them: through the 8259A pair (IRQ 0, vector 0x20, the local
# APIC's LINT0 as ExtINT; EOI to the PIC), then through the I/O APIC's pin 2 (the MADT's
# override of IRQ 0) edge-triggered, then level-triggered (vector 0x30 each; EOI to the local
# APIC, which for a level entry also ends the I/O APIC's remote IRR: without that only the first
# tick would come). Before each phase it prints "<NAME>-START", after TICKS ticks
# "<NAME>-DONE <ticks>" (the test times the lines: TICKS at 100 Hz is one second), then powers
# off (ACPI S5). An interrupt on any other vector prints "IRQ-BAD <vector>" and stops.
#define LAPIC 0xfee00000
#define IOAPIC 0xfec00000
#define TICKS 100
#define PIT_COUNT 11932            /* 1193182 Hz / 100 */

#include "pvh_entry.inc"
#include "pvh_poweroff.inc"
_start:
    # Our own GDT: the boot loader's CS selector need not name a 32-bit segment an interrupt
    # gate could use.
    lgdt gdtr
    ljmp $0x08, $1f
1:  mov $0x10, %eax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    lea stack_top, %esp
    # The IDT: every vector to `unexpected` (which learns its number from its stub), 0x20 to
    # pic_tick, 0x27 and 0xff (spurious: no EOI) to `spurious`, 0x30 to apic_tick.
    mov $0x08 << 16, %eax          # the selector in each gate's first dword
    xor %ecx, %ecx
1:  lea stubs(,%ecx,8), %edx       # the stub of vector %ecx (8 bytes each)
    cmp $0x20, %ecx
    jne 2f
    lea pic_tick, %edx
2:  cmp $0x27, %ecx
    je 3f
    cmp $0xff, %ecx
    jne 4f
3:  lea spurious, %edx
4:  cmp $0x30, %ecx
    jne 5f
    lea apic_tick, %edx
5:  mov %edx, %ebx
    and $0xffff, %ebx
    or %eax, %ebx
    mov %ebx, idt(,%ecx,8)
    and $0xffff0000, %edx
    or $0x8e00, %edx               # present, DPL 0, 32-bit interrupt gate
    mov %edx, idt+4(,%ecx,8)
    inc %ecx
    cmp $256, %ecx
    jb 1b
    lidt idt_desc

    orl $0x1ff, LAPIC + 0xf0       # the local APIC on, spurious vector 0xff
    # The 8259s: ICW1-4 (edge, cascade, 8086 mode), vectors 0x20 and 0x28; only IRQ 0 unmasked.
    mov $0x11, %al
    out %al, $0x20
    out %al, $0xa0
    mov $0x20, %al
    out %al, $0x21
    mov $0x28, %al
    out %al, $0xa1
    mov $0x04, %al
    out %al, $0x21
    mov $0x02, %al
    out %al, $0xa1
    mov $0x01, %al
    out %al, $0x21
    out %al, $0xa1
    mov $0xfe, %al
    out %al, $0x21
    mov $0xff, %al
    out %al, $0xa1
    # The PIT: channel 0, LSB then MSB, mode 2 (rate generator), binary.
    mov $0x34, %al
    out %al, $0x43
    mov $(PIT_COUNT & 0xff), %al
    out %al, $0x40
    mov $(PIT_COUNT >> 8), %al
    out %al, $0x40

    lea m_pic, %esi
    call phase
    # The 8259s masked; the I/O APIC's pin 2 to vector 0x30 on APIC 0, edge, then level.
    mov $0xff, %al
    out %al, $0x21
    movl $0x15, IOAPIC             # redirection entry 2, high half: destination APIC 0
    movl $0, IOAPIC + 0x10
    movl $0x14, IOAPIC             # low half
    movl $0x30, IOAPIC + 0x10      # fixed, physical, active high, edge, unmasked
    lea m_edge, %esi
    call phase
    movl $0x14, IOAPIC
    movl $0x8030, IOAPIC + 0x10    # level-triggered
    lea m_level, %esi
    call phase

    power_off_s5

# phase: prints the name at %esi with "-START", counts TICKS interrupts with interrupts on,
# prints the name with "-DONE " and the count.
phase:
    push %esi
    call puts
    lea m_start, %esi
    call puts
    movl $0, ticks
    mov %esp, saved_esp
wait_tick:                         # each handler comes back here, with interrupts off
    cmpl $TICKS, ticks
    jae 1f
    sti                            # (its shadow covers the HLT: no tick slips in between)
    hlt
    jmp wait_tick
1:  pop %esi
    call puts
    lea m_done, %esi
    call puts
    mov ticks, %ebx
    call hex8
    mov $'\n', %al
    out %al, %dx
    ret

# The handlers go back to wait_tick on the stack it saved, without an IRET (this machine's
# software KVM, kvm_pvm, cannot emulate IRET in 32-bit protected mode; pvh_msr.S does the same).
pic_tick:
    incl ticks
    mov $0x20, %al                 # non-specific EOI
    out %al, $0x20
    jmp back
apic_tick:
    incl ticks
    movl $0, LAPIC + 0xb0          # EOI
    jmp back
spurious:
back:
    mov saved_esp, %esp
    jmp wait_tick

#include "pvh_puts.inc"
#include "pvh_hex.inc"
#include "pvh_stubs.inc"

m_pic: .asciz "PIC"
m_edge: .asciz "EDGE"
m_level: .asciz "LEVEL"
m_start: .asciz "-START\n"
m_done: .asciz "-DONE "

    .data
#include "pvh_gdt.inc"
ticks: .long 0
saved_esp: .long 0
    .bss
    .balign 8
    .space 4096
stack_top:
    .section .note.GNU-stack,"",@progbits
