# Spins forever counting in rax; only request_stop() gets it out.
    .code64
    .text
1:  inc %rax
    jmp 1b
    .section .note.GNU-stack,"",@progbits
