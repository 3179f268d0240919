# A hostile virtio driver (PVH ELF, 32-bit, paging off). It sets up the virtio-mmio devices at
# 0xd0000000 and 0xd0001000 the way a driver would, then for ITERATIONS rounds does one of, at
# random: write a register (any offset, hostile values), read a register, scribble over the
# avail/used rings with raw values, scribble over the descriptor table with plausible-looking
# addresses and lengths, notify a queue, or set the device up again (a fixed seed: the same
# sequence every run). Prints the seed first and "HOSTILE-DONE" at the end, then powers off
# through the ACPI sleep register.
#
# The values it writes never point into its own code (1-2 MiB), so whatever the devices do
# with them, the guest itself survives; the VMM must too.
    .set ITERATIONS, 100000
    .set RINGS, 0x200000           # device 0's rings; device 1's at RINGS + 0x10000

#include "pvh_entry.inc"
#include "pvh_poweroff.inc"
_start:
    lea stack_top, %esp
    # A fixed seed: the same attacks every run, so the test's verdict cannot depend on luck.
    # (With rdtsc seeds, seed 0x21ea24c3 never scribbled virtio-blk's avail index word, the
    # only scribble that makes a device process chains, so its counters stayed at zero: a
    # gamble of the test, not a vireo fault. The fuzzers cover random register sequences.)
    mov $0x105dc36f, %eax          # xorshift state must not be 0
    mov %eax, seed
    lea start_msg, %esi
    call puts
    mov seed, %eax
    call puthex
    mov $0xd0000000, %ebp
    call setup
    mov $0xd0001000, %ebp
    call setup
    movl $ITERATIONS, count

main_loop:
    call rand
    mov %eax, %ebx
    mov %ebx, %ebp                 # device: bit 3
    shr $3, %ebp
    and $1, %ebp
    shl $12, %ebp
    add $0xd0000000, %ebp
    mov %ebx, %eax
    and $7, %eax
    cmp $3, %eax
    jb op_regwrite                 # 0, 1, 2
    je op_regread                  # 3
    cmp $5, %eax
    jb op_scribble_rings           # 4
    je op_scribble_desc            # 5
    cmp $6, %eax
    je op_notify                   # 6
    test $0x300, %ebx              # 7: set up again, one time in four
    jnz next
    call setup
    jmp next

op_regwrite:
    mov %ebx, %edi
    shr $4, %edi
    and $0x1fc, %edi
    call rand
    and $0x8021ffff, %eax          # small, in the ring area, or far outside RAM
    mov %eax, (%ebp,%edi)
    jmp next
op_regread:
    mov %ebx, %edi
    shr $4, %edi
    and $0x1fc, %edi
    mov (%ebp,%edi), %eax
    jmp next
op_scribble_rings:                 # avail and used rings: raw values
    call ring_area
    mov %ebx, %eax
    shr $4, %eax
    and $0x1ffc, %eax
    lea 0x1000(%edi,%eax), %edi
    call rand
    mov %eax, (%edi)
    jmp next
op_scribble_desc:                  # descriptor table: plausible addresses and lengths
    call ring_area
    mov %ebx, %eax
    shr $4, %eax
    and $0x3fc, %eax
    add %eax, %edi
    call rand
    test $0x10000000, %ebx
    jz 1f
    and $0x1ffff, %eax             # a small value (length, flags, next) or low address
    jmp 2f
1:  and $0x1ffff, %eax             # an address in the ring area
    or $RINGS, %eax
2:  mov %eax, (%edi)
    jmp next
op_notify:
    mov %ebx, %eax
    shr $8, %eax
    and $1, %eax
    mov %eax, 0x50(%ebp)

next:
    decl count
    jnz main_loop
    lea done_msg, %esi
    call puts
    power_off_s5

ring_area:                         # edi = rings of the device at ebp
    mov %ebp, %edi
    and $0x1000, %edi
    shl $4, %edi
    add $RINGS, %edi
    ret

setup:                             # a driver's set-up of queue 0 of the device at ebp
    movl $0, 0x70(%ebp)            # reset
    movl $1, 0x70(%ebp)            # ACKNOWLEDGE
    movl $3, 0x70(%ebp)            # DRIVER
    movl $0, 0x24(%ebp)
    call rand
    and $0x30000000, %eax          # INDIRECT_DESC and EVENT_IDX at random
    mov %eax, 0x20(%ebp)
    movl $1, 0x24(%ebp)
    movl $1, 0x20(%ebp)            # VERSION_1
    movl $0xb, 0x70(%ebp)          # FEATURES_OK
    movl $0, 0x30(%ebp)            # QueueSel 0
    movl $64, 0x38(%ebp)           # QueueNum
    call ring_area
    mov %edi, 0x80(%ebp)
    movl $0, 0x84(%ebp)
    lea 0x1000(%edi), %eax
    mov %eax, 0x90(%ebp)
    movl $0, 0x94(%ebp)
    lea 0x2000(%edi), %eax
    mov %eax, 0xa0(%ebp)
    movl $0, 0xa4(%ebp)
    movl $1, 0x44(%ebp)            # QueueReady
    movl $0xf, 0x70(%ebp)          # DRIVER_OK
    ret

rand:                              # eax = next xorshift32 value
    mov seed, %eax
    mov %eax, %edx
    shl $13, %edx
    xor %edx, %eax
    mov %eax, %edx
    shr $17, %edx
    xor %edx, %eax
    mov %eax, %edx
    shl $5, %edx
    xor %edx, %eax
    mov %eax, seed
    ret

#include "pvh_puts.inc"

#include "pvh_hex.inc"

puthex:                            # eax in hex and a newline, on COM1
    mov %eax, %ebx
    call hex8
    mov $'\n', %al
    out %al, %dx
    ret

start_msg: .asciz "HOSTILE-START seed="
done_msg:  .asciz "HOSTILE-DONE\n"
    .balign 4
seed:  .long 0
count: .long 0
    .balign 16
stack: .fill 512, 1, 0
stack_top:
    .section .note.GNU-stack,"",@progbits
