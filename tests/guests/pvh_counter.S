# A PVH guest that counts: "C=<8 hex digits>" and a newline on COM1, the count kept in memory
# and incremented before each line, with a spin between lines. A machine saved and restored
# mid-run goes on with the next number; one that booted again would start at 1. For the
# snapshot tests (tests/kvm/snapshot_test.cpp).
#include "pvh_entry.inc"
#include "pvh_count_line.inc"
_start:
    cli
    mov $0x3f8, %dx
1:  incl counter
    count_line
    mov $100000, %ecx
3:  dec %ecx
    jnz 3b
    jmp 1b

hexdigits: .ascii "0123456789abcdef"
    .data
    .balign 4
counter: .long 0
    .section .note.GNU-stack,"",@progbits
