# A PVH guest that floods COM1: "FLOOD" lines as fast as the port takes them, forever. For the
# console log bound (rotation, a full disk).
#include "pvh_entry.inc"
_start:
    cli
1:  lea msg, %esi
    mov $0x3f8, %dx
2:  lodsb
    test %al, %al
    jz 1b
    out %al, %dx
    jmp 2b

msg: .asciz "FLOOD 0123456789abcdefghijklmnopqrstuvwxyz\n"
    .section .note.GNU-stack,"",@progbits
