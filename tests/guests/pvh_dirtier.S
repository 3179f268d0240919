# A PVH guest that counts like pvh_counter ("C=<8 hex digits>" lines on COM1, the count in
# memory) and between two lines writes the count into every 4 KiB page of [16 MiB, 32 MiB):
# 4096 pages dirtied per line, as fast as the vCPU runs. A live migration cannot converge on it
# with a small downtime unless the vCPU is slowed (auto-converge); the last count it wrote is in
# every page, which a migrated guest checks before each sweep ("BAD" on COM1 and a halt if a
# page holds another: a page lost or stale in the migration). For tests/migration.sh.
#include "pvh_entry.inc"
#include "pvh_count_line.inc"
_start:
    cli
    mov $0x3f8, %dx
1:  # Every page must still hold the previous count (0 before the first sweep).
    mov counter, %eax
    mov $0x1000000, %edi
4:  cmp %eax, (%edi)
    jne bad
    add $0x1000, %edi
    cmp $0x2000000, %edi
    jb 4b
    incl counter
    count_line
    # The sweep: the new count into every page.
    mov counter, %eax
    mov $0x1000000, %edi
3:  mov %eax, (%edi)
    add $0x1000, %edi
    cmp $0x2000000, %edi
    jb 3b
    jmp 1b

bad:
    mov $'B', %al
    out %al, %dx
    mov $'A', %al
    out %al, %dx
    mov $'D', %al
    out %al, %dx
    mov $'\n', %al
    out %al, %dx
5:  hlt
    jmp 5b

hexdigits: .ascii "0123456789abcdef"
    .data
    .balign 4
counter: .long 0
    .section .note.GNU-stack,"",@progbits
