# HLT, then after being resumed OUT 0x1 to port 0x10 and HLT again.
    .code64
    .text
    hlt
    mov $1, %al
    mov $0x10, %dx
    out %al, %dx
    hlt
    .section .note.GNU-stack,"",@progbits
