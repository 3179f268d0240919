# PIO round trip: OUT edi to port 0x10, IN a dword from port 0x11, OUT it + 1 to port 0x12, HLT.
    .code64
    .text
    mov %edi, %eax
    mov $0x10, %dx
    out %eax, %dx
    mov $0x11, %dx
    in %dx, %eax
    inc %eax
    mov $0x12, %dx
    out %eax, %dx
    hlt
    .section .note.GNU-stack,"",@progbits
