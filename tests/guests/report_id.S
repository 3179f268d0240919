# Reports its vCPU id (edi) with OUT to port 0x20, then HLTs.
    .code64
    .text
    mov %edi, %eax
    mov $0x20, %dx
    out %eax, %dx
    hlt
    .section .note.GNU-stack,"",@progbits
