# A PVH guest that prints the CPUID feature registers a CPU template decides, then powers off:
# "CPUID 1.ECX=<8 hex> 7.0.EBX=<8 hex> 81.ECX=<8 hex>" and the speculation controls' registers,
# "SPEC 7.0.EDX=<8 hex> 88.EBX=<8 hex>", on COM1. For the --cpu and --spec-ctrl tests
# (tests/cpu_template.sh).
#include "pvh_entry.inc"
#include "pvh_poweroff.inc"
_start:
    cli
    lea stack_top, %esp
    lea msg1, %esi
    call puts
    mov $1, %eax
    xor %ecx, %ecx
    cpuid
    mov %ecx, %ebx
    call hex8
    lea msg7, %esi
    call puts
    mov $7, %eax
    xor %ecx, %ecx
    cpuid
    call hex8
    lea msg81, %esi
    call puts
    mov $0x80000001, %eax
    xor %ecx, %ecx
    cpuid
    mov %ecx, %ebx
    call hex8
    lea msgs7, %esi
    call puts
    mov $7, %eax
    xor %ecx, %ecx
    cpuid
    mov %edx, %ebx
    call hex8
    lea msg88, %esi
    call puts
    mov $0x80000008, %eax
    xor %ecx, %ecx
    cpuid
    call hex8
    mov $'\n', %al
    mov $0x3f8, %dx
    out %al, %dx
    power_off_s5

#include "pvh_hex.inc"
#include "pvh_puts.inc"

msg1:  .asciz "CPUID 1.ECX="
msg7:  .asciz " 7.0.EBX="
msg81: .asciz " 81.ECX="
msgs7: .asciz "\nSPEC 7.0.EDX="
msg88: .asciz " 88.EBX="
    .balign 16
stack:   .fill 256, 1, 0
stack_top:
    .section .note.GNU-stack,"",@progbits
