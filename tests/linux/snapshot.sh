#!/usr/bin/env bash
# Runs tests/linux/snapshot_tests.sh in the test host, with one CPU for its 2-vCPU guest and two
# clones at once (on two, the emulated host lost restored guests to triple faults more often:
# docs/test-host.md). The guest gets netbench in its initramfs (vsock); the test host gets netbench,
# tests/lib.sh and e2fsprogs' mke2fs and e2fsck (an ext4 disk made and checked on the host side).
# usage: tests/linux/snapshot.sh [BUILD_DIR]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$repo/build}" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/vireo-snapshot.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$repo/tests/linux/net-initrd.sh" "$build" "$work/net-initrd.img"
"$repo/tests/host/run.sh" -b "$build" -s 1 -m 3G -t 900 -q \
  -f "$work/net-initrd.img:/guest/net-initrd.img" -f "$build/netbench:/opt/vireo/bin/netbench" \
  -f "$repo/tests/lib.sh" -B /usr/sbin/mke2fs -B /usr/sbin/e2fsck \
  -f "$repo/tests/linux/snapshot_tests.sh" -- sh /opt/vireo/files/snapshot_tests.sh
