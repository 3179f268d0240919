# libnvmm's long-mode guest (tests/nvmm/nvmm_test.c), entered at 1 MiB in 64-bit mode through
# setstate from a zeroed state. Device memory (MMIO) at 4 MiB, RAM results at 0x8000. Each step
# is an instruction form x86 guests use on device memory; then REP OUTSB from paged memory;
# OUT to port 0x99 marks the phases.
    .code64
    .text
    mov $0x400000, %rbx
    mov $0x8000, %r15
    # MOV stores of every size, immediate and register
    movb $0x11, (%rbx)
    movw $0x2222, 2(%rbx)
    movl $0x33333333, 4(%rbx)
    movq $-0x44444445, 8(%rbx)
    mov $0x5566778899aabbcc, %rax
    mov %rax, 16(%rbx)
    mov %eax, 24(%rbx)
    mov %ax, 28(%rbx)
    mov %al, 30(%rbx)
    # MOV loads of every size
    mov 0x100(%rbx), %rax
    mov %rax, (%r15)
    mov 0x100(%rbx), %ecx
    mov %rcx, 8(%r15)
    mov 0x100(%rbx), %dx
    mov %dx, 16(%r15)
    mov 0x100(%rbx), %sil
    mov %sil, 18(%r15)
    # a load through an index register and scale
    mov $2, %rcx
    mov 0xf0(%rbx,%rcx,8), %rax
    mov %rax, 24(%r15)
    # MOVZX
    movzbl 0x101(%rbx), %eax
    mov %eax, 32(%r15)
    movzwq 0x102(%rbx), %rax
    mov %rax, 40(%r15)
    # read-modify-write ALU forms
    orl $0x0f000000, 0x40(%rbx)
    andl $0x00ffff00, 0x44(%rbx)
    xorw $0xffff, 0x48(%rbx)
    subq $1, 0x50(%rbx)
    # CMP and TEST against device memory: flags to RAM
    cmpl $0x12345678, 0x58(%rbx)
    sete 48(%r15)
    testb $0x80, 0x5c(%rbx)
    setne 49(%r15)
    # XCHG
    mov $0xabcdef, %rax
    xchg %rax, 0x60(%rbx)
    mov %rax, 56(%r15)
    # MOVABS with a 64-bit address
    movabs 0x400100, %rax
    mov %rax, 64(%r15)
    mov $0x0102030405060708, %rax
    movabs %rax, 0x400068
    # STOS (single and REP), LODS, MOVS both ways, CMPS
    cld
    mov $0x400200, %rdi
    mov $0x7777777777777777, %rax
    stosq
    mov $0x400210, %rdi
    mov $3, %rcx
    mov $0x99, %al
    rep stosb
    mov $0x400100, %rsi
    lodsl
    mov %eax, 72(%r15)
    mov $0x8100, %rsi
    mov $0x400300, %rdi
    mov $4, %rcx
    rep movsw
    mov $0x400100, %rsi
    mov $0x8200, %rdi
    mov $2, %rcx
    rep movsl
    mov $0x400100, %rsi
    mov $0x8200, %rdi
    cmpsl
    sete 80(%r15)
    mov $0x400100, %rsi
    mov $0x8200, %rdi
    mov $8, %rcx
    repe cmpsb
    sete 81(%r15)
    mov %rcx, 84(%r15)
    movsb
    mov $0x400100, %rsi
    mov $3, %rcx
    rep lodsb
    mov %al, 82(%r15)
    # REP OUTSB from RAM through the page tables
    mov $0x8100, %rsi
    mov $4, %rcx
    mov $0x3f9, %dx
    rep outsb
    mov $1, %eax
    out %eax, $0x99
    # MSRs KVM does not know: RDMSR and WRMSR come to the client
    mov $0x4b564d99, %ecx
    rdmsr
    mov %eax, 88(%r15)
    mov %edx, 92(%r15)
    mov $0x4b564d98, %ecx
    mov $0x0badf00d, %eax
    mov $0x1, %edx
    wrmsr
    mov $2, %eax
    out %eax, $0x99
    # an interrupt, injected once the client's interrupt window opens
    cli
    lea handler(%rip), %rax
    mov $0x600 + 0x40 * 16, %rdi
    mov %ax, (%rdi)
    movw $0x8, 2(%rdi)
    movw $0x8e00, 4(%rdi)
    shr $16, %rax
    mov %ax, 6(%rdi)
    shr $16, %rax
    mov %eax, 8(%rdi)
    movl $0, 12(%rdi)
    mov $3, %eax
    out %eax, $0x99
    sti
    nop
    mov $4, %eax
    out %eax, $0x99
    hlt
handler:
    incl 96(%r15)
    mov $5, %eax
    out %eax, $0x99
    iretq
    .section .note.GNU-stack,"",@progbits
