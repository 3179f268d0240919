#!/usr/bin/env bash
# Writes OUT: the default guest's initramfs with a second archive appended that holds netbench
# (the kernel unpacks both into one initramfs), for guests of the vsock and network tests.
# usage: tests/linux/net-initrd.sh BUILD_DIR OUT
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
guest=$("$repo/scripts/guest-image.sh")
work=$(mktemp -d "${TMPDIR:-/tmp}/vireo-initrd.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/extra/bin"
cp "$1/netbench" "$work/extra/bin/"
(cd "$work/extra" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/extra.cpio.gz"
cat "$guest/initrd.img" "$work/extra.cpio.gz" >"$2"
