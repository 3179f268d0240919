#!/usr/bin/env bash
# Network and vsock benchmark: vireo vs QEMU+KVM inside one test host, same kernel, same guest
# commands, alternating. TCP throughput both ways and 1-byte round-trip latency over a tap
# device (QEMU: virtio-net-pci on a tap with its user-space back-end, and vhost-net as a
# reference), and the same over vsock (vireo's Unix-socket host side vs QEMU's vhost-vsock).
# The guest runs bench/guest/net-guest.sh with netbench, appended to its initramfs.
# usage: bench/net.sh [RUNS] [MIB]   (after building vireo into build/)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
mib=${2:-256}
guest=$(scripts/guest-image.sh)
work=$(mktemp -d "${TMPDIR:-/tmp}/vireo-netbench.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/extra/bin"
cp build/netbench "$work/extra/bin/"
cp bench/guest/net-guest.sh "$work/extra/net-guest.sh"
# A second cpio archive after the first: the kernel unpacks both into one initramfs.
(cd "$work/extra" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/extra.cpio.gz"
cat "$guest/initrd.img" "$work/extra.cpio.gz" >"$work/bench-initrd.img"
exec tests/host/run.sh -Q -k vhost_net -k vhost_vsock -m 4G -t 3000 -q \
  -f "$work/bench-initrd.img:/guest/bench-initrd.img" -f build/netbench:/opt/vireo/bin/netbench \
  -f bench/net-in-host.sh -- sh /opt/vireo/files/net-in-host.sh "$runs" "$mib"
