#!/usr/bin/env bash
# Runs tests/linux/net_tests.sh in the test host. The guest needs netbench (the vsock tests'
# stream/echo tool) in its initramfs (net-initrd.sh); the test host gets netbench too (the host
# side of the same tests).
# usage: tests/linux/net.sh [BUILD_DIR]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$repo/build}" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/vireo-net.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$repo/tests/linux/net-initrd.sh" "$build" "$work/net-initrd.img"
"$repo/tests/host/run.sh" -b "$build" -s 1 -m 3G -t 900 -q \
  -f "$work/net-initrd.img:/guest/net-initrd.img" -f "$build/netbench:/opt/vireo/bin/netbench" \
  -f "$repo/tests/lib.sh" -f "$repo/tests/linux/net_tests.sh" -- sh /opt/vireo/files/net_tests.sh
