#!/usr/bin/env bash
# Interrupt models side by side in one test host (issue 22): vireo --irqchip kernel|split|userspace against
# QEMU+KVM q35 with kernel-irqchip=on|split|off, same kernel, initrd and devices. Per model: boot
# to the guest's init, virtio-blk sequential and random reads (an interrupt per request), and the
# 1-byte TCP round trip over a tap (an interrupt each way). Medians (min-max) over RUNS.
# usage: bench/irqchip.sh [RUNS] [BLK_SECS]   (after building vireo into build/)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
secs=${2:-4}
guest=$(scripts/guest-image.sh)
work=$(mktemp -d "${TMPDIR:-/tmp}/vireo-irqbench.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/extra/bin"
gcc -O2 -static -o "$work/extra/bin/blkbench" bench/guest/blkbench.c
cp build/netbench "$work/extra/bin/"
cp bench/guest/net-guest.sh "$work/extra/net-guest.sh"
(cd "$work/extra" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/extra.cpio.gz"
cat "$guest/initrd.img" "$work/extra.cpio.gz" >"$work/bench-initrd.img"
exec tests/host/run.sh -Q -m 4G -t 3000 -q -f "$work/bench-initrd.img:/guest/bench-initrd.img" \
  -f "$work/extra/bin/blkbench:/opt/vireo/bin/blkbench" -f build/netbench:/opt/vireo/bin/netbench \
  -f bench/irqchip-in-host.sh -- sh /opt/vireo/files/irqchip-in-host.sh "$runs" "$secs"
