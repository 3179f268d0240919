# A minimal PVH guest (ELF with XEN_ELFNOTE_PHYS32_ENTRY). It checks the entry state the PVH
# boot protocol promises — 32-bit protected mode, paging off, EBX -> hvm_start_info with the
# magic, a command line and a memory map — prints "PVH-OK" on COM1 and powers off: through
# QEMU's isa-debug-exit (port 0xf4) and through vireo's ACPI sleep register (S5, port 0x3c0).
# On a failed check it prints "PVH-BAD <n>" and triple-faults.
#include "pvh_entry.inc"
#include "pvh_poweroff.inc"
_start:
    lea stack_top, %esp            # PVH provides no stack
    mov $1, %edi
    cmpl $0x336ec578, (%ebx)       # hvm_start_info.magic
    jne fail
    mov $2, %edi
    mov %cr0, %eax
    test $0x80000000, %eax         # paging off
    jnz fail
    test $1, %eax                  # protected mode on
    jz fail
    mov $3, %edi
    cmpl $0, 24(%ebx)              # cmdline_paddr (low half)
    je fail
    mov $4, %edi
    cmpl $0, 48(%ebx)              # memmap_entries
    je fail
    mov $5, %edi
    mov %cs, %ax                   # a code segment selector is loaded
    test %ax, %ax
    jz fail
    lea ok_msg, %esi
    call puts
    mov $0, %al
    mov $0xf4, %dx
    out %al, %dx                   # QEMU: isa-debug-exit
    power_off_s5

fail:
    lea bad_msg, %esi
    call puts
    mov %edi, %eax
    add $'0', %al
    mov $0x3f8, %dx
    out %al, %dx
    mov $'\n', %al
    out %al, %dx
    ud2                            # no IDT: triple fault

#include "pvh_puts.inc"

ok_msg:  .asciz "PVH-OK\n"
    .balign 16
stack:   .fill 256, 1, 0
stack_top:
bad_msg: .asciz "PVH-BAD "
    .section .note.GNU-stack,"",@progbits
