# With an empty IDT (limit 0), #UD escalates to #GP, then #DF, then a triple fault.
    .code64
    .text
    ud2
    .section .note.GNU-stack,"",@progbits
