#!/usr/bin/env bash
# Start-up floor on this machine's /dev/kvm: a minimal PVH guest that prints a marker and powers
# off, under vireo and under QEMU -M microvm -accel kvm, alternating. Process start -> marker
# -> exit, peak RSS and VMM overhead. vireo runs twice: as it runs by default (in its sandbox, when
# run as root: namespaces, keeper process, seccomp) and with --sandbox off, so the sandbox's cost
# is the difference.   usage: bench/startup.sh [RUNS]   (after building)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v qemu-system-x86_64 >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null
}
elf=$PWD/build/tests/pvh_hello.elf
exec build/vireo-bench boot --runs "${1:-20}" --pause-ms 200 --marker PVH-OK --json \
  --case "vireo=exec $PWD/build/vireo run --kernel $elf --allow-software-kvm --memory 64M" \
  --case "vireo-no-sandbox=exec $PWD/build/vireo run --kernel $elf --allow-software-kvm --memory 64M --sandbox off" \
  --case "qemu-microvm=exec qemu-system-x86_64 -M microvm -accel kvm -m 64M -nodefaults -no-user-config -display none -serial stdio -kernel $elf -device isa-debug-exit,iobase=0xf4"
