# Writes one byte to each of rsi pages starting at rdi, r8 bytes apart; then OUT to port 0x10.
    .code64
    .text
1:  movb $0xab, (%rdi)
    add %r8, %rdi
    dec %rsi
    jnz 1b
    mov $0x10, %dx
    out %al, %dx
    hlt
    .section .note.GNU-stack,"",@progbits
