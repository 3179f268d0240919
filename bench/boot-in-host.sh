#!/bin/sh
# Runs inside the test host (bench/boot.sh): boots the default guest under vireo and under
# QEMU+KVM (microvm and q35), same kernel, initrd and command line, alternating.
runs=${1:-5}
K=/guest/vmlinuz
I=/guest/initrd.img
C="console=ttyS0 reboot=k panic=-1 quiet -- poweroff -f"
Q="qemu-system-x86_64 -accel kvm -cpu host -m 256M -smp 1 -nodefaults -no-user-config -display none -serial stdio -no-reboot -kernel $K -initrd $I"
vireo-bench boot --runs "$runs" --json \
  --case "vireo=exec vireo run --memory 256M --kernel $K --initrd $I --cmdline '$C'" \
  --case "qemu-microvm=exec $Q -M microvm -append '$C'" \
  --case "qemu-q35=exec $Q -M q35 -append '$C'"
