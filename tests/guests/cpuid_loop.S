# Benchmark loop: rdi times CPUID (handled inside KVM), then OUT to port 0x10, repeat.
    .code64
    .text
2:  mov %rdi, %r8
1:  xor %eax, %eax
    xor %ecx, %ecx
    cpuid
    dec %r8
    jnz 1b
    mov $0x10, %dx
    out %al, %dx
    jmp 2b
    .section .note.GNU-stack,"",@progbits
