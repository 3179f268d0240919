# Benchmark loop: 4-byte store to unmapped address rsi forever (one exit per iteration).
    .code64
    .text
1:  mov %eax, (%rsi)
    jmp 1b
    .section .note.GNU-stack,"",@progbits
