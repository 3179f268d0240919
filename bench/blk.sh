#!/usr/bin/env bash
# virtio-blk benchmark: vireo vs QEMU+KVM (q35, virtio-blk-pci) inside one test host, same
# kernel, same guest command, same raw image, alternating; plus the test host's own figure
# reading the image file directly. In the guest (bench/guest/blkbench.c, appended to the
# default guest's initramfs): sequential 1 MiB reads and writes with O_DIRECT, and random
# 4 KiB reads at queue depth 1.
# usage: bench/blk.sh [RUNS] [MIB] [SECONDS] [LIMITS]   (after building vireo into build/)
# LIMITS (e.g. bps=1T,iops=1000000000): also vireo with these rate limits on its disk, set far
# above the rates reached, to show what the limiter costs (compared with vireo without).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
mib=${2:-128}
secs=${3:-5}
limits=${4:-}
guest=$(scripts/guest-image.sh)
work=$(mktemp -d "${TMPDIR:-/tmp}/vireo-blkbench.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/extra/bin"
gcc -O2 -static -o "$work/extra/bin/blkbench" bench/guest/blkbench.c
# A second cpio archive after the first: the kernel unpacks both into one initramfs.
(cd "$work/extra" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/extra.cpio.gz"
cat "$guest/initrd.img" "$work/extra.cpio.gz" >"$work/bench-initrd.img"
exec tests/host/run.sh -Q -m 4G -t 3000 -q -f "$work/bench-initrd.img:/guest/bench-initrd.img" \
  -f "$work/extra/bin/blkbench:/opt/vireo/bin/blkbench" -f bench/blk-in-host.sh \
  -- sh /opt/vireo/files/blk-in-host.sh "$runs" "$mib" "$secs" "$limits"
