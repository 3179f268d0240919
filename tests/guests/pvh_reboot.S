# A PVH guest that resets the machine (i8042 pulse reset) as soon as it runs, forever: a
# reboot loop, for the restart throttle.
#include "pvh_entry.inc"
_start:
    cli
    mov $0xfe, %al
    out %al, $0x64
1:  hlt
    jmp 1b

    .section .note.GNU-stack,"",@progbits
