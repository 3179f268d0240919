# A PVH guest (32-bit, paging off) that tries MSRs and reports which ones fault, for
# tests/msr_filter.sh: "MSR 0000001b=ok 00000034=gp 0000008b=ok 12345678=gp W34=gp" — RDMSR of
# the APIC base (every guest's), of SMI_COUNT (KVM knows it; no kernel needs it), of the
# microcode revision, of an MSR no CPU has, and a WRMSR of SMI_COUNT — then "MSR-FLOOD n" after
# RDMSR of SMI_COUNT 1000 times (n of them faulted, in hex), then halts for good. The #GP
# handler counts and goes on after the faulting instruction (`resume`, with the stack as it
# was), without an IRET: this machine's software KVM (kvm_pvm) cannot emulate IRET in 32-bit
# protected mode.
#include "pvh_entry.inc"
_start:
    cli
    lgdt gdtr                  # a GDT of its own: the #GP handler reloads CS from it
    ljmp $0x08, $1f
1:  mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $stack_top, %esp
    lea gp_handler, %eax       # IDT entry 13: a 32-bit interrupt gate
    mov %ax, idt + 13 * 8
    movw $0x08, idt + 13 * 8 + 2
    movw $0x8e00, idt + 13 * 8 + 4
    shr $16, %eax
    mov %ax, idt + 13 * 8 + 6
    lidt idtr
    lea hdr, %esi
    call puts
    mov $0x1b, %edi
    call try_read
    mov $0x34, %edi
    call try_read
    mov $0x8b, %edi
    call try_read
    mov $0x12345678, %edi
    call try_read
    lea wr, %esi               # " W34="
    call puts
    movl $0, gp_count
    mov %esp, saved_esp
    movl $4f, resume
    mov $0x34, %ecx
    xor %eax, %eax
    xor %edx, %edx
    wrmsr
4:  call verdict
    lea flood, %esi
    call puts
    movl $0, gp_count
    mov %esp, saved_esp
    movl $5f, resume
    mov $1000, %edi
2:  mov $0x34, %ecx
    rdmsr
5:  dec %edi
    jnz 2b
    mov gp_count, %ebx
    call hex8
    mov $'\n', %al
    out %al, %dx
6:  hlt                        # and waits (interrupts off) for the test to read the count
    jmp 6b

# try_read: prints " <MSR %edi in hex>=" and whether RDMSR of it faulted.
try_read:
    mov $' ', %al
    mov $0x3f8, %dx
    out %al, %dx
    mov %edi, %ebx
    call hex8
    mov $'=', %al
    out %al, %dx
    movl $0, gp_count
    mov %esp, saved_esp
    movl $verdict, resume
    mov %edi, %ecx
    rdmsr
    # falls through
# verdict: "ok" or "gp" by gp_count.
verdict:
    lea ok, %esi
    cmpl $0, gp_count
    je 3f
    lea gp, %esi
3:  jmp puts

gp_handler:
    incl gp_count
    mov saved_esp, %esp
    jmp *resume

#include "pvh_hex.inc"
#include "pvh_puts.inc"

    .data
hdr:   .asciz "MSR"
wr:    .asciz " W34="
ok:    .asciz "ok"
gp:    .asciz "gp"
flood: .asciz "\nMSR-FLOOD "
    .balign 4
gp_count: .long 0
saved_esp: .long 0
resume: .long 0
#include "pvh_gdt.inc"
idtr:
    .word 14 * 8 - 1
    .long idt
    .balign 8
idt: .space 14 * 8
    .balign 16
    .space 1024
stack_top:
    .section .note.GNU-stack,"",@progbits
