# A PVH guest that starts every CPU the firmware tables announce, as an OS does: it finds the
# MADT through hvm_start_info.rsdp_paddr -> RSDP -> XSDT, notes the APIC ID of every enabled
# local APIC and x2APIC entry, sends INIT and a startup IPI to all other CPUs, and waits until
# each one has run a real-mode trampoline that sets its x2APIC ID (CPUID leaf 0xB) in a bitmap. When the
# bitmap equals the MADT's it prints "SMP-OK <cpus>" on COM1 and powers off (ACPI S5); otherwise
# "SMP-BAD <n>" (1 no RSDP, 2 no XSDT, 3 no MADT, 4 bad entry, 5 an AP did not start in time,
# 6 the APs' IDs differ from the MADT's) followed by a triple fault.
#define LAPIC 0xfee00000
#define TRAMPOLINE 0x10000       /* startup IPI vector 0x10 */
#define AP_DATA 0x11000          /* AP count at +0, APIC ID bitmap at +0x100 (1024 bits) */
#define MAX_ID 1024
#define WAIT_LOOPS 50000000

#include "pvh_entry.inc"
#include "pvh_poweroff.inc"
_start:
    lea stack_top, %esp
    mov $1, %edi
    mov 32(%ebx), %esi             # hvm_start_info.rsdp_paddr (low half)
    test %esi, %esi
    jz fail
    cmpl $0x20445352, (%esi)       # "RSD "
    jne fail
    mov $2, %edi
    mov 24(%esi), %esi             # RSDP.xsdt_address (low half)
    cmpl $0x54445358, (%esi)       # "XSDT"
    jne fail
    mov $3, %edi
    mov 4(%esi), %ecx
    add %esi, %ecx                 # end of the XSDT
    lea 36(%esi), %edx             # its first entry
find_madt:
    cmp %ecx, %edx
    jae fail
    mov (%edx), %eax
    cmpl $0x43495041, (%eax)       # "APIC"
    je found_madt
    add $8, %edx
    jmp find_madt
found_madt:
    mov $4, %edi
    mov 4(%eax), %ecx
    add %eax, %ecx                 # end of the MADT
    lea 44(%eax), %edx             # its first entry
    xor %ebp, %ebp                 # CPUs found
next_entry:
    cmp %ecx, %edx
    jae entries_done
    movzbl (%edx), %eax            # type
    cmp $0, %eax
    je lapic_entry
    cmp $9, %eax
    je x2apic_entry
skip_entry:
    movzbl 1(%edx), %eax           # length
    test %eax, %eax
    jz fail
    add %eax, %edx
    jmp next_entry
lapic_entry:                       # type 0: ACPI id, APIC id (8 bits), flags
    testl $1, 4(%edx)
    jz skip_entry
    movzbl 3(%edx), %eax
    jmp note_cpu
x2apic_entry:                      # type 9: x2APIC id (32 bits), flags, ACPI uid
    testl $1, 8(%edx)
    jz skip_entry
    mov 4(%edx), %eax
    cmp $MAX_ID, %eax
    jae fail
note_cpu:
    bts %eax, expected
    inc %ebp
    jmp skip_entry
entries_done:
    test %ebp, %ebp
    jz fail

    # The trampoline goes below 1 MiB, where a startup IPI can point.
    lea trampoline, %esi
    mov $TRAMPOLINE, %edi
    mov $(trampoline_end - trampoline), %ecx
    rep movsb
    mov $AP_DATA, %edi
    xor %eax, %eax
    mov $(0x100 + MAX_ID / 8), %ecx
    rep stosb
    mov $0xb, %eax                 # the BSP notes itself: x2APIC ID from the topology leaf
    xor %ecx, %ecx
    cpuid
    bts %edx, AP_DATA + 0x100

    movl $0x1ff, LAPIC + 0xf0      # spurious vector register: APIC software-enabled
    movl $0, LAPIC + 0x310
    movl $0x000c4500, LAPIC + 0x300    # INIT, all excluding self
    call wait_icr
    movl $0x000c4600 | (TRAMPOLINE >> 12), LAPIC + 0x300  # startup IPI, all excluding self
    call wait_icr

    mov $5, %edi
    lea -1(%ebp), %ebx             # APs expected
    mov $WAIT_LOOPS, %ecx
wait_aps:
    cmp AP_DATA, %ebx
    je aps_done
    pause
    dec %ecx
    jnz wait_aps
    jmp fail
aps_done:
    mov $6, %edi
    lea expected, %esi
    mov $(AP_DATA + 0x100), %edx
    mov $(MAX_ID / 32), %ecx
compare:
    mov (%esi), %eax
    cmp (%edx), %eax
    jne fail
    add $4, %esi
    add $4, %edx
    dec %ecx
    jnz compare

    lea ok_msg, %esi
    call puts
    mov %ebp, %eax
    call put_decimal
    mov $'\n', %al
    mov $0x3f8, %dx
    out %al, %dx
    power_off_s5

fail:
    lea bad_msg, %esi
    call puts
    mov %edi, %eax
    call put_decimal
    mov $'\n', %al
    mov $0x3f8, %dx
    out %al, %dx
    ud2                            # no IDT: triple fault

wait_icr:                          # until the ICR's delivery status bit is clear
    testl $0x1000, LAPIC + 0x300
    jz 1f
    pause
    jmp wait_icr
1:  ret

#include "pvh_puts.inc"

put_decimal:                       # prints eax in decimal on COM1
    mov $10, %ecx
    xor %ebx, %ebx
1:  xor %edx, %edx
    div %ecx
    add $'0', %dl
    push %edx
    inc %ebx
    test %eax, %eax
    jnz 1b
    mov $0x3f8, %dx
2:  pop %eax
    out %al, %dx
    dec %ebx
    jnz 2b
    ret

# Runs on each AP in real mode at TRAMPOLINE (CS = TRAMPOLINE >> 4, IP = 0): sets the AP's
# x2APIC ID in the bitmap, counts itself, and halts for good.
    .code16
trampoline:
    cli
    mov $(AP_DATA >> 4), %ax
    mov %ax, %ds
    mov $0xb, %eax                 # x2APIC ID (leaf 1 has only its low 8 bits)
    xor %ecx, %ecx
    cpuid
    lock btsl %edx, 0x100
    lock incl 0
1:  hlt
    jmp 1b
trampoline_end:
    .code32

ok_msg:  .asciz "SMP-OK "
bad_msg: .asciz "SMP-BAD "
    .balign 16
stack:   .fill 512, 1, 0
stack_top:
expected: .fill MAX_ID / 8, 1, 0
    .section .note.GNU-stack,"",@progbits
