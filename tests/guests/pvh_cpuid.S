# A PVH guest that prints the CPUID feature registers a CPU template decides, then powers off:
# "CPUID 1.ECX=<8 hex> 7.0.EBX=<8 hex> 81.ECX=<8 hex>" on COM1. For the --cpu tests
# (tests/cpu_template.sh).
#include "pvh_entry.inc"
_start:
    cli
    lea stack_top, %esp
    lea msg1, %esi
    call puts
    mov $1, %eax
    xor %ecx, %ecx
    cpuid
    mov %ecx, %ebx
    call hex
    lea msg7, %esi
    call puts
    mov $7, %eax
    xor %ecx, %ecx
    cpuid
    call hex
    lea msg81, %esi
    call puts
    mov $0x80000001, %eax
    xor %ecx, %ecx
    cpuid
    mov %ecx, %ebx
    call hex
    mov $'\n', %al
    mov $0x3f8, %dx
    out %al, %dx
    mov $0x34, %al                 # SLP_TYP 5 (S5) | SLP_EN
    mov $0x3c0, %dx
    out %al, %dx                   # vireo: ACPI sleep control register
    hlt

# hex: prints %ebx as 8 hex digits on COM1 (clobbers %eax, %ecx, %edx).
hex:
    mov $0x3f8, %dx
    mov $8, %ecx
1:  rol $4, %ebx
    mov %ebx, %eax
    and $0xf, %eax
    movb hexdigits(%eax), %al
    out %al, %dx
    dec %ecx
    jnz 1b
    ret

#include "pvh_puts.inc"

hexdigits: .ascii "0123456789abcdef"
msg1:  .asciz "CPUID 1.ECX="
msg7:  .asciz " 7.0.EBX="
msg81: .asciz " 81.ECX="
    .balign 16
stack:   .fill 256, 1, 0
stack_top:
    .section .note.GNU-stack,"",@progbits
