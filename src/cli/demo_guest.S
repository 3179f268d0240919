# The `vireo demo` guest: prints a greeting on the debug port 0xe9, one byte per OUT, then
# reports its status (0) on port 0xf4 and halts.
    .code64
    .text
    lea msg(%rip), %rsi
    mov $0xe9, %dx
1:  lodsb
    test %al, %al
    jz 2f
    out %al, %dx
    jmp 1b
2:  xor %eax, %eax
    mov $0xf4, %dx
    out %al, %dx
    hlt
msg:
    .asciz "Hello from a vireo guest: 64-bit long mode, running on KVM.\n"
    .section .note.GNU-stack,"",@progbits
