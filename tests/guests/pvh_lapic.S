# A PVH guest that exercises the local APIC as kernels use it, on 2 vCPUs (--cpus 2):
# - PERIODIC: the timer in periodic mode, divide by 1, 10 ms at the 1 GHz bus clock KVM's APIC
#   and vireo's share (10,000,000 counts); TICKS ticks on vector 0x40. The TSC is read at the
#   start and end: the TSC's counts per tick for the deadline phase.
# - ONESHOT: one-shot mode, re-armed in each tick's handler: TICKS ticks of 10 ms.
# - DEADLINE: TSC-deadline mode (if CPUID.1:ECX[24] offers it; else "DEADLINE-SKIP"): each
#   handler writes IA32_TSC_DEADLINE one tick's TSC counts ahead: TICKS ticks.
#   Each of the three prints "<NAME>-START" and "<NAME>-DONE <ticks>" (the test times them).
# - TPR: with the task priority at class 5, three self-IPIs (vectors 0x45, 0x55, 0x65) with
#   interrupts off; interrupts on: only 0x65 may come; the priority back to 0: 0x55, then 0x45.
#   Prints "TPR-ORDER <the vectors in the order taken>" ("65 55 45" is right).
# - IPI: the BSP starts the AP (INIT, startup IPI to APIC ID 1; a real-mode trampoline takes it
#   to 32-bit protected mode, this IDT, its own APIC on) and plays PINGS rounds of ping-pong:
#   vector 0x50 to APIC 1, whose handler answers with 0x51 to APIC 0. Prints "IPI-START", then
#   "IPI-DONE <pongs>".
# Then powers off (ACPI S5). An interrupt on any other vector prints "IRQ-BAD <vector>".
# Handlers never IRET (as pvh_irqs.S): each goes back to where its CPU waited (`resume`), on
# the stack saved there, with interrupts off.
#define LAPIC 0xfee00000
#define TICKS 100
#define COUNT_10MS 10000000
#define PINGS 1000
#define TRAMPOLINE 0x10000         /* startup IPI vector 0x10 */

#include "pvh_entry.inc"
#include "pvh_poweroff.inc"
_start:
    lgdt gdtr
    ljmp $0x08, $1f
1:  mov $0x10, %eax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    lea stack_top, %esp
    # The IDT: every vector to `unexpected` (its stub pushes the number), then the handlers.
    xor %ecx, %ecx
1:  lea stubs(,%ecx,8), %edx
    call set_gate
    inc %ecx
    cmp $256, %ecx
    jb 1b
    mov $0x40, %ecx
    lea timer_tick, %edx
    call set_gate
    mov $0x45, %ecx
    lea v45, %edx
    call set_gate
    mov $0x55, %ecx
    lea v55, %edx
    call set_gate
    mov $0x65, %ecx
    lea v65, %edx
    call set_gate
    mov $0x50, %ecx
    lea ap_ping, %edx
    call set_gate
    mov $0x51, %ecx
    lea bsp_pong, %edx
    call set_gate
    mov $0xff, %ecx
    lea spurious, %edx
    call set_gate
    lidt idt_desc

    movl $0x1ff, LAPIC + 0xf0      # the local APIC on, spurious vector 0xff
    movl $0xb, LAPIC + 0x3e0       # timer divide by 1

    # PERIODIC, and the TSC's counts per tick.
    movl $0, rearm
    movl $(0x40 | 1 << 17), LAPIC + 0x320
    lea m_periodic, %esi
    call start_phase
    rdtsc
    mov %eax, tsc0
    mov %edx, tsc0 + 4
    movl $COUNT_10MS, LAPIC + 0x380
    call count_ticks
    rdtsc
    sub tsc0, %eax
    sbb tsc0 + 4, %edx
    mov $TICKS, %ecx
    div %ecx
    mov %eax, tsc_per_tick
    movl $0, LAPIC + 0x380         # stopped
    lea m_periodic, %esi
    call done_phase

    # ONESHOT: re-armed by the handler.
    movl $0x40, LAPIC + 0x320
    lea rearm_oneshot, %eax
    mov %eax, rearm
    lea m_oneshot, %esi
    call start_phase
    movl $COUNT_10MS, LAPIC + 0x380
    call count_ticks
    movl $0, rearm
    movl $0, LAPIC + 0x380
    lea m_oneshot, %esi
    call done_phase

    # DEADLINE, if offered.
    mov $1, %eax
    cpuid
    bt $24, %ecx
    jc 1f
    lea m_deadline_skip, %esi
    call puts
    jmp tpr_phase
1:  movl $(0x40 | 2 << 17), LAPIC + 0x320
    lea rearm_deadline, %eax
    mov %eax, rearm
    lea m_deadline, %esi
    call start_phase
    call rearm_deadline
    call count_ticks
    movl $0, rearm
    movl $0x10040, LAPIC + 0x320   # masked (the next deadline, if any, does nothing)
    lea m_deadline, %esi
    call done_phase

tpr_phase:
    movl $0x50, LAPIC + 0x80       # TPR: class 5
    mov $0x45, %eax
    call self_ipi
    mov $0x55, %eax
    call self_ipi
    mov $0x65, %eax
    call self_ipi
    mov %esp, saved_esp
    movl $1f, resume
1:  sti                            # (a window for what the priority lets through)
    nop
    nop
    cli
    movl $2f, resume
    movl $0, LAPIC + 0x80          # TPR 0
2:  sti
    nop
    nop
    cli
    lea m_tpr, %esi
    call puts
    xor %edi, %edi
3:  cmp log_count, %edi
    jae 4f
    movzbl log(%edi), %ebx
    shl $24, %ebx
    mov $2, %ecx                   # two hex digits
    call hex_n
    mov $' ', %al
    out %al, %dx
    inc %edi
    jmp 3b
4:  mov $'\n', %al
    mov $0x3f8, %dx
    out %al, %dx

    # IPI: the AP up, then ping-pong.
    lea trampoline, %esi
    mov $TRAMPOLINE, %edi
    mov $(trampoline_end - trampoline), %ecx
    rep movsb
    movl $0x01000000, LAPIC + 0x310    # destination APIC 1
    movl $0x00004500, LAPIC + 0x300    # INIT
    movl $0x01000000, LAPIC + 0x310
    movl $0x00004600 | (TRAMPOLINE >> 12), LAPIC + 0x300  # startup IPI
    mov $100000000, %ecx
1:  cmpl $0, ap_up
    jne 2f
    pause
    loop 1b
    lea m_no_ap, %esi
    call puts
    jmp power_off
2:  lea m_ipi, %esi
    call start_phase
    mov %esp, saved_esp
    movl $ping_loop, resume
ping_loop:
    mov pongs, %eax
    cmp $PINGS, %eax
    jae 3f
    cmp sent, %eax
    jne 1f                         # a ping is out: wait for its pong
    incl sent
    movl $0x01000000, LAPIC + 0x310
    movl $0x50, LAPIC + 0x300      # fixed, vector 0x50, to APIC 1
1:  sti
    hlt
    jmp ping_loop
3:  lea m_ipi, %esi
    call puts
    lea m_done, %esi
    call puts
    mov pongs, %ebx
    call hex8
    mov $'\n', %al
    out %al, %dx

power_off:
    power_off_s5

# set_gate: IDT entry %ecx -> handler %edx (32-bit interrupt gate, selector 0x08).
set_gate:
    mov %edx, %ebx
    and $0xffff, %ebx
    or $0x08 << 16, %ebx
    mov %ebx, idt(,%ecx,8)
    mov %edx, %ebx
    and $0xffff0000, %ebx
    or $0x8e00, %ebx
    mov %ebx, idt+4(,%ecx,8)
    ret

# self_ipi: a fixed self-IPI (shorthand "self") of vector %eax.
self_ipi:
    or $0x40000, %eax
    movl $0, LAPIC + 0x310
    mov %eax, LAPIC + 0x300
    ret

start_phase:                       # prints "<name at %esi>-START"
    call puts
    lea m_start, %esi
    jmp puts
done_phase:                        # prints "<name at %esi>-DONE <ticks>"
    call puts
    lea m_done, %esi
    call puts
    mov ticks, %ebx
    call hex8
    mov $'\n', %al
    out %al, %dx
    ret

# count_ticks: waits, interrupts on, until TICKS timer interrupts came (from 0).
count_ticks:
    movl $0, ticks
    mov %esp, saved_esp
    movl $wait_tick, resume
wait_tick:
    cmpl $TICKS, ticks
    jae 1f
    sti                            # (its shadow covers the HLT: no tick slips in between)
    hlt
    jmp wait_tick
1:  ret

rearm_oneshot:
    movl $COUNT_10MS, LAPIC + 0x380
    ret
rearm_deadline:                    # IA32_TSC_DEADLINE = now + one tick
    rdtsc
    add tsc_per_tick, %eax
    adc $0, %edx
    mov $0x6e0, %ecx
    wrmsr
    ret

# hex_n: prints the top %ecx hex digits of %ebx.
hex_n:
    mov $0x3f8, %dx
1:  rol $4, %ebx
    mov %ebx, %eax
    and $0xf, %eax
    movb hex8_digits(%eax), %al
    out %al, %dx
    loop 1b
    ret

# The BSP's handlers.
timer_tick:
    incl ticks
    mov rearm, %eax
    test %eax, %eax
    jz 1f
    call *%eax
1:  movl $0, LAPIC + 0xb0          # EOI
    jmp back
v45: mov $0x45, %eax
    jmp logged
v55: mov $0x55, %eax
    jmp logged
v65: mov $0x65, %eax
logged:
    mov log_count, %ecx
    cmp $8, %ecx
    jae 1f
    mov %al, log(%ecx)
    incl log_count
1:  movl $0, LAPIC + 0xb0
    jmp back
bsp_pong:
    incl pongs
    movl $0, LAPIC + 0xb0
    jmp back
spurious:                          # no EOI
back:
    mov saved_esp, %esp
    jmp *resume

# The AP: from the trampoline, in 32-bit protected mode.
ap_entry:
    mov $0x10, %eax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    lea ap_stack_top, %esp
    lidt idt_desc
    movl $0x1ff, LAPIC + 0xf0
    movl $1, ap_up
ap_wait:
    sti
    hlt
    jmp ap_wait
ap_ping:                           # answer with 0x51 to APIC 0
    movl $0, LAPIC + 0xb0
    movl $0, LAPIC + 0x310
    movl $0x51, LAPIC + 0x300
    lea ap_stack_top, %esp
    jmp ap_wait

#include "pvh_puts.inc"
#include "pvh_hex.inc"
#include "pvh_stubs.inc"

# Copied to TRAMPOLINE; the AP starts here in real mode (CS = TRAMPOLINE >> 4, IP = 0).
    .code16
trampoline:
    cli
    mov %cs, %ax
    mov %ax, %ds
    lgdtl tramp_gdtr - trampoline
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x08, $ap_entry
    .balign 8
tramp_gdtr:
    .word 3 * 8 - 1
    .long gdt
trampoline_end:
    .code32

m_periodic: .asciz "PERIODIC"
m_oneshot: .asciz "ONESHOT"
m_deadline: .asciz "DEADLINE"
m_deadline_skip: .asciz "DEADLINE-SKIP\n"
m_ipi: .asciz "IPI"
m_tpr: .asciz "TPR-ORDER "
m_no_ap: .asciz "IPI-NO-AP\n"
m_start: .asciz "-START\n"
m_done: .asciz "-DONE "

    .data
#include "pvh_gdt.inc"
ticks: .long 0
rearm: .long 0
resume: .long 0
saved_esp: .long 0
tsc0: .quad 0
tsc_per_tick: .long 0
log_count: .long 0
log: .space 8
ap_up: .long 0
sent: .long 0
pongs: .long 0
    .bss
    .balign 8
    .space 4096
stack_top:
    .space 1024
ap_stack_top:
    .section .note.GNU-stack,"",@progbits
