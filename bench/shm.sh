#!/usr/bin/env bash
# Shared-memory benchmark (issue 19): two Debian guests of one VMM share a 16 MiB region inside
# one test host, vireo ([shm.NAME] in a host file) and QEMU+KVM (ivshmem-doorbell with an
# ivshmem server, bench/ivshmem-server.c), alternating, same kernel and guest commands.
# Figures: the doorbell round trip A -> B -> A through MSI-X (a small guest module,
# bench/guest/shmbell.c, built here against Debian's linux-headers for the guest kernel: no
# stock driver hands MSI-X to user space without an IOMMU) and, vireo only, through INTx with
# Debian's uio_pci_generic (QEMU's ivshmem-doorbell raises no INTx); the 1-byte round trip
# between the same two guests over vsock through the host (vireo: its Unix-socket host side;
# QEMU: vhost-vsock; a relay on the host joins A's connection to B); memcpy bandwidth into and
# out of the region against guest RAM to RAM. Needs make and gcc-12 (installed if missing).
# usage: bench/shm.sh [RUNS] [COUNT] [MIB] [VMMS]   (after building vireo into build/;
#        VMMS: "vireo,qemu" by default, or one of them)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
count=${2:-500}
mib=${3:-256}
vmms=${4:-vireo,qemu}
guest=$(scripts/guest-image.sh)
work=$(mktemp -d "${TMPDIR:-/tmp}/vireo-shmbench.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/extra/bin"
cp build/netbench build/shmbench "$work/extra/bin/"

# shmbell.ko for the guest kernel, against its Debian headers (cached next to the guest).
command -v make >/dev/null && command -v gcc-12 >/dev/null ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends make gcc-12 >/dev/null
cache=${VIREO_CACHE:-$HOME/.cache/vireo}
release=$(cat "$cache/kernel/release")
hdr=$cache/headers/$release
if [ ! -f "$hdr/stamp" ]; then
  rm -rf "$hdr"
  mkdir -p "$hdr/debs"
  deps=$(apt-cache depends "linux-headers-$release" | awk '/Depends: linux-(headers|kbuild)/ {print $2}')
  (cd "$hdr/debs" && apt-get download -q "linux-headers-$release" $deps >/dev/null 2>&1) ||
    { echo "bench/shm.sh: apt-get download linux-headers-$release failed" >&2; exit 1; }
  for d in "$hdr"/debs/*.deb; do dpkg-deb -x "$d" "$hdr/root"; done
  # The flavour's Makefile includes the common tree by its installed path: point it here.
  common=$(ls -d "$hdr"/root/usr/src/linux-headers-*-common)
  echo "include $common/Makefile" >"$hdr/root/usr/src/linux-headers-$release/Makefile"
  rm -rf "$hdr/debs"
  touch "$hdr/stamp"
fi
mkdir -p "$work/mod"
cp bench/guest/shmbell.c "$work/mod/"
echo 'obj-m := shmbell.o' >"$work/mod/Kbuild"
make -C "$hdr/root/usr/src/linux-headers-$release" M="$work/mod" modules >"$work/mod.log" 2>&1 ||
  { cat "$work/mod.log" >&2; exit 1; }
cp "$work/mod/shmbell.ko" "$work/extra/"
cp bench/guest/shm-guest.sh "$work/extra/shm-guest.sh"
# A second cpio archive after the first: the kernel unpacks both into one initramfs.
(cd "$work/extra" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/extra.cpio.gz"
cat "$guest/initrd.img" "$work/extra.cpio.gz" >"$work/bench-initrd.img"
exec tests/host/run.sh -Q -k vhost_vsock -m 3G -t 3000 -q \
  -f "$work/bench-initrd.img:/guest/bench-initrd.img" -f build/netbench:/opt/vireo/bin/netbench \
  -f build/ivshmem-server:/opt/vireo/bin/ivshmem-server \
  -f bench/shm-in-host.sh -- sh /opt/vireo/files/shm-in-host.sh "$runs" "$count" "$mib" "$vmms"
