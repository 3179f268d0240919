# Benchmark loop: OUT al to port dx forever (one exit per iteration).
    .code64
    .text
1:  out %al, %dx
    jmp 1b
    .section .note.GNU-stack,"",@progbits
