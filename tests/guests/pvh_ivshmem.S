# ivshmem doorbells and MSI-X from a tiny PVH guest (32-bit, paging off), for tests/shm.sh. It
# finds its ivshmem device at 00:01.0 through configuration mechanism #1 (ports 0xCF8/0xCFC),
# turns memory decoding on, reads its BARs as vireo placed them and its peer number
# (IVPosition). Peer 0 rings peer 1's vector 0 (the Doorbell register) about every few ms,
# forever. Peer 1 points MSI-X vector 0 at its LAPIC (vector 0x40), enables MSI-X and counts
# the interrupts: "MSI" per interrupt, "SHM-MSI-DONE" after the 8th, and on.
#include "pvh_entry.inc"
#define LAPIC 0xfee00000
#define VECTOR 0x40
_start:
    cli
    lgdt gdtr                  # a GDT of its own: interrupts reload CS from it
    ljmp $0x08, $1f
1:  mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $stack_top, %esp
    mov $0x80000804, %eax      # command: memory decoding and bus master
    mov $0xcf8, %dx
    out %eax, %dx
    mov $0xcfc, %dx
    mov $0x0006, %ax
    out %ax, %dx
    mov $0x80000810, %eax      # BAR0 (registers) -> %edi
    call config_read
    mov %eax, %edi
    mov $0x80000814, %eax      # BAR1 (MSI-X table) -> %ebp
    call config_read
    mov %eax, %ebp
    mov 8(%edi), %eax          # IVPosition
    test %eax, %eax
    jz sender
    cmp $1, %eax
    jne other

receiver:
    lea handler, %eax          # IDT entry VECTOR: a 32-bit interrupt gate
    mov %ax, idt + VECTOR * 8
    movw $0x08, idt + VECTOR * 8 + 2
    movw $0x8e00, idt + VECTOR * 8 + 4
    shr $16, %eax
    mov %ax, idt + VECTOR * 8 + 6
    lidt idtr
    mov $0xff, %al             # both 8259s masked: no other interrupt than the MSI
    out %al, $0x21
    out %al, $0xa1
    orl $0x10000, LAPIC + 0x350  # LINT0 masked too
    mov LAPIC + 0xf0, %eax     # LAPIC software-enabled
    or $0x100, %eax
    mov %eax, LAPIC + 0xf0
    movl $0xfee00000, 0(%ebp)  # MSI-X entry 0: to APIC 0, VECTOR, unmasked
    movl $0, 4(%ebp)
    movl $VECTOR, 8(%ebp)
    movl $0, 12(%ebp)
    mov $0x80000840, %eax      # MSI-X capability (0x40): control word's enable bit
    mov $0xcf8, %dx
    out %eax, %dx
    mov $0xcfe, %dx
    mov $0x8000, %ax
    out %ax, %dx
    lea ready, %esi
    call puts
wait_msi:                      # interrupts on only while halted: the handler jumps back here
    sti
    hlt
    jmp wait_msi

# The interrupt gate clears IF; the handler drops its frame and goes back to waiting instead of
# returning: on a software KVM (kvm_pvm) every instruction of this guest is emulated, and KVM's
# emulator cannot do a protected-mode IRET.
handler:
    add $12, %esp              # EIP, CS, EFLAGS (same privilege level)
    incl count
    lea msi, %esi
    call puts
    movl $0, LAPIC + 0xb0      # EOI
    cmpl $8, count
    jne wait_msi
    lea done, %esi
    call puts
    jmp wait_msi

sender:
    lea sending, %esi
    call puts
1:  movl $0x10000, 12(%edi)    # Doorbell: peer 1, vector 0
    mov $100000, %ecx
2:  dec %ecx
    jnz 2b
    jmp 1b

other:
    lea other_msg, %esi
    call puts
1:  hlt
    jmp 1b

# config_read: CONFIG_ADDRESS %eax -> the dword with its low 4 bits cleared (a BAR's address).
config_read:
    mov $0xcf8, %dx
    out %eax, %dx
    mov $0xcfc, %dx
    in %dx, %eax
    and $0xfffffff0, %eax
    ret

#include "pvh_puts.inc"

    .data
ready: .asciz "SHM-MSI-READY\n"
done: .asciz "SHM-MSI-DONE\n"
msi: .asciz "MSI\n"
sending: .asciz "SHM-RINGING\n"
other_msg: .asciz "SHM-PEER-OTHER\n"
    .balign 4
count: .long 0
#include "pvh_gdt.inc"
idtr:
    .word (VECTOR + 1) * 8 - 1
    .long idt
    .balign 8
idt: .space (VECTOR + 1) * 8
    .balign 16
    .space 4096
stack_top:
    .section .note.GNU-stack,"",@progbits
