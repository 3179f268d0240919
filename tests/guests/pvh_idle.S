# A PVH guest that reports in and then idles forever: prints "PVH-UP" on COM1, then halts with
# interrupts off (the vCPU blocks in KVM and costs no CPU). For supervisor and scale tests.
#include "pvh_entry.inc"
_start:
    lea msg, %esi
    mov $0x3f8, %dx
1:  lodsb
    test %al, %al
    jz 2f
    out %al, %dx
    jmp 1b
2:  cli
3:  hlt
    jmp 3b

msg: .asciz "PVH-UP\n"
    .section .note.GNU-stack,"",@progbits
