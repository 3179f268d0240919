# Reads IA32_APIC_BASE (the test traps it: the VMM completes the read) and reports the value
# with OUT to port 0x20; reads the TSC (KVM's: no exit); reads the x2APIC's TPR (KVM refuses it
# without its own local APIC: an exit only with refused_too); then HLTs.
    .code64
    .text
    mov $0x1b, %ecx
    rdmsr
    mov $0x20, %dx
    out %eax, %dx
    mov $0x10, %ecx
    rdmsr
    mov $0x808, %ecx
    rdmsr
    hlt
    .section .note.GNU-stack,"",@progbits
