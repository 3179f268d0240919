# Tiny freestanding guests: assembled with the host toolchain, linked at a fixed
# load address into a flat binary, then embedded into a C++ target with .incbin.
#
#   vireo_add_guest(NAME SOURCE [LOAD_ADDR addr])
# creates the object library `guest_NAME` that defines
#   extern "C" const unsigned char vireo_guest_NAME_start[], vireo_guest_NAME_end[];
# (declared for C++ users by the VIREO_GUEST(NAME) macro in tests/guests/guest_blob.hpp).
set(VIREO_GUEST_LOAD_ADDR 0x100000 CACHE STRING "Load address of the tiny test guests")
set(VIREO_GUEST_DIR ${CMAKE_CURRENT_LIST_DIR})

# The object library `guest_NAME` with FILE's bytes between vireo_guest_NAME_start and _end.
function(vireo_embed_guest name file)
  set(blob ${CMAKE_CURRENT_BINARY_DIR}/guest_${name}_blob.S)
  file(WRITE ${blob}.in
    "    .section .rodata\n"
    "    .balign 16\n"
    "    .global vireo_guest_${name}_start, vireo_guest_${name}_end\n"
    "vireo_guest_${name}_start:\n"
    "    .incbin \"${file}\"\n"
    "vireo_guest_${name}_end:\n"
    "    .section .note.GNU-stack,\"\",@progbits\n")
  configure_file(${blob}.in ${blob} COPYONLY)
  set_source_files_properties(${blob} PROPERTIES OBJECT_DEPENDS ${file})
  add_library(guest_${name} OBJECT ${blob})
endfunction()

function(vireo_add_guest name source)
  cmake_parse_arguments(G "" "LOAD_ADDR" "" ${ARGN})
  if(NOT G_LOAD_ADDR)
    set(G_LOAD_ADDR ${VIREO_GUEST_LOAD_ADDR})
  endif()
  set(obj ${CMAKE_CURRENT_BINARY_DIR}/guest_${name}.o)
  set(bin ${CMAKE_CURRENT_BINARY_DIR}/guest_${name}.bin)
  get_filename_component(src ${source} ABSOLUTE)
  add_custom_command(
    OUTPUT ${bin}
    COMMAND ${CMAKE_C_COMPILER} -c -m64 -nostdlib -ffreestanding -o ${obj} ${src}
    COMMAND ${CMAKE_LINKER} -m elf_x86_64 -nostdlib -static --no-relax -Ttext=${G_LOAD_ADDR}
            -e 0 --oformat=binary -o ${bin} ${obj}
    DEPENDS ${src}
    COMMENT "Building tiny guest ${name}"
    VERBATIM)
  vireo_embed_guest(${name} ${bin})
endfunction()

#   vireo_add_elf_guest(NAME SOURCE [EMBED])
# links a tiny guest as an ELF executable at 1 MiB (for PVH boot through `vireo run`; the
# source may #include files, e.g. tests/guests/pvh_entry.inc, and is rebuilt when they change);
# the file is ${CMAKE_CURRENT_BINARY_DIR}/NAME.elf, built by the target `NAME_elf`. With EMBED,
# the ELF file is also embedded as the object library `guest_NAME_elf` (VIREO_GUEST(NAME_elf)).
function(vireo_add_elf_guest name source)
  cmake_parse_arguments(G "EMBED" "" "" ${ARGN})
  set(obj ${CMAKE_CURRENT_BINARY_DIR}/${name}.o)
  set(elf ${CMAKE_CURRENT_BINARY_DIR}/${name}.elf)
  get_filename_component(src ${source} ABSOLUTE)
  add_custom_command(
    OUTPUT ${elf}
    COMMAND ${CMAKE_C_COMPILER} -c -m64 -nostdlib -ffreestanding -MD -MF ${obj}.d -o ${obj} ${src}
    COMMAND ${CMAKE_LINKER} -m elf_x86_64 -nostdlib -static -N -Ttext=0x100000 -e _start
            -z noexecstack -o ${elf} ${obj}
    DEPENDS ${src}
    DEPFILE ${obj}.d
    COMMENT "Building ELF guest ${name}"
    VERBATIM)
  add_custom_target(${name}_elf ALL DEPENDS ${elf})
  if(G_EMBED)
    vireo_embed_guest(${name}_elf ${elf})
  endif()
endfunction()
