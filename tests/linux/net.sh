#!/usr/bin/env bash
# Runs tests/linux/net_tests.sh in the test host. The guest needs netbench (the vsock tests'
# stream/echo tool), so it gets the default initramfs with a second archive appended holding
# it; the test host gets netbench too (the host side of the same tests).
# usage: tests/linux/net.sh [BUILD_DIR]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$repo/build}" && pwd)
guest=$("$repo/scripts/guest-image.sh")
work=$(mktemp -d "${TMPDIR:-/tmp}/vireo-net.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/extra/bin"
cp "$build/netbench" "$work/extra/bin/"
# A second cpio archive after the first: the kernel unpacks both into one initramfs.
(cd "$work/extra" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/extra.cpio.gz"
cat "$guest/initrd.img" "$work/extra.cpio.gz" >"$work/net-initrd.img"
exec "$repo/tests/host/run.sh" -b "$build" -s 1 -m 3G -t 900 -q \
  -f "$work/net-initrd.img:/guest/net-initrd.img" -f "$build/netbench:/opt/vireo/bin/netbench" \
  -f "$repo/tests/linux/net_tests.sh" -- sh /opt/vireo/files/net_tests.sh
