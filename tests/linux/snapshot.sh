#!/usr/bin/env bash
# Runs tests/linux/snapshot_tests.sh in the test host, with two CPUs (a 2-vCPU guest and two
# clones at once). The guest needs netbench (vsock), so it gets the default initramfs with a
# second archive appended holding it; the test host gets netbench, tests/lib.sh and e2fsprogs'
# mke2fs and e2fsck (an ext4 disk made and checked on the host side).
# usage: tests/linux/snapshot.sh [BUILD_DIR]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$repo/build}" && pwd)
guest=$("$repo/scripts/guest-image.sh")
work=$(mktemp -d "${TMPDIR:-/tmp}/vireo-snapshot.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/extra/bin"
cp "$build/netbench" "$work/extra/bin/"
(cd "$work/extra" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/extra.cpio.gz"
cat "$guest/initrd.img" "$work/extra.cpio.gz" >"$work/net-initrd.img"
exec "$repo/tests/host/run.sh" -b "$build" -s 2 -m 3G -t 900 -q \
  -f "$work/net-initrd.img:/guest/net-initrd.img" -f "$build/netbench:/opt/vireo/bin/netbench" \
  -f "$repo/tests/lib.sh" -B /usr/sbin/mke2fs -B /usr/sbin/e2fsck \
  -f "$repo/tests/linux/snapshot_tests.sh" -- sh /opt/vireo/files/snapshot_tests.sh
