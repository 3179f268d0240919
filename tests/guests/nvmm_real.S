# libnvmm's real-mode guest (tests/nvmm/nvmm_test.c), entered at 0000:1000 through setstate:
# port I/O in byte/word/dword sizes, REP OUTSB and REP INSW, MMIO through ES (0x10000 is not
# RAM) with and without 0x66/0x67 prefixes; results land in RAM at 0x2000; then HLT.
    .code16
    .text
    mov $0x3f8, %dx
    mov $0x41, %al
    out %al, %dx
    in %dx, %al
    mov %al, 0x2000
    mov $0x1234, %ax
    out %ax, $0x80
    in $0x84, %eax
    mov %eax, 0x2004
    cld
    mov $0x3000, %si
    mov $4, %cx
    rep outsb
    mov $0x3100, %di
    mov $3, %cx
    rep insw
    mov $0x1000, %ax
    mov %ax, %es
    movb $0x77, %es:0x10
    mov %es:0x20, %ax
    mov %ax, 0x2008
    mov $0x30, %ebx
    movl %es:(%ebx), %eax          # 0x66 and 0x67 prefixes in 16-bit code
    mov %eax, 0x200c
    hlt
    .section .note.GNU-stack,"",@progbits
