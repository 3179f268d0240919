# MMIO round trip at rsi (unmapped): 4-byte write of edi at +0, 8-byte read from +8,
# 8-byte write of that value + 1 at +16, 1-byte write of 0x5a at +24, HLT.
    .code64
    .text
    mov %edi, (%rsi)
    mov 8(%rsi), %rax
    inc %rax
    mov %rax, 16(%rsi)
    movb $0x5a, 24(%rsi)
    hlt
    .section .note.GNU-stack,"",@progbits
