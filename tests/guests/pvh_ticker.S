# A PVH guest that prints "TICK" on COM1 about every 0.1-0.3 s (a spin loop; on kvm_pvm each
# ring-0 instruction is emulated) forever. While the domain is paused no line appears. For
# the control-plane tests (pause/unpause, metrics).
#include "pvh_entry.inc"
_start:
    cli
1:  lea msg, %esi
    mov $0x3f8, %dx
2:  lodsb
    test %al, %al
    jz 3f
    out %al, %dx
    jmp 2b
3:  mov $150000, %ecx
4:  dec %ecx
    jnz 4b
    jmp 1b

msg: .asciz "TICK\n"
    .section .note.GNU-stack,"",@progbits
