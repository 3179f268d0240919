#!/usr/bin/env bash
# Builds vireo's default guest from Debian packages into a cache outside the repository:
#   $VIREO_CACHE/guest/vmlinuz      Debian bookworm's linux-image-cloud-amd64 kernel (bzImage)
#   $VIREO_CACHE/guest/initrd.img   busybox-static initramfs with the virtio modules and guest/init
#   $VIREO_CACHE/kernel/            the unpacked kernel package (modules for the test host, too)
# Packages are fetched with apt-get download and unpacked with dpkg-deb -x; nothing is installed
# into the host's /boot. Rebuilt only when the package versions or guest/init change.
# Prints the guest directory on stdout.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${VIREO_CACHE:-$HOME/.cache/vireo}
mkdir -p "$cache"
# One at a time (parallel test hosts each ask for the guest): the others wait, then find it
# built.
exec 9>"$cache/.setup.lock"
flock 9

need() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
if ! need busybox-static || ! need cpio || ! need kmod; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static cpio kmod >/dev/null
fi

# linux-image-cloud-amd64 is a metapackage; the kernel is its versioned dependency.
if ! kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}') || [ -z "$kpkg" ]; then
  apt-get update -qq
  kpkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
kver=$(apt-cache policy "$kpkg" | awk '/Candidate:/ {print $2}')
bbver=$(dpkg-query -W -f='${Version}' busybox-static)
stamp="$kpkg $kver busybox $bbver $(cat "$repo/guest/init" "$repo/guest/udhcpc.script" "$repo/guest/power-button" "$0" | sha256sum | cut -c1-16)"

guest=$cache/guest
if [ -f "$guest/stamp" ] && [ "$(cat "$guest/stamp")" = "$stamp" ] && [ -f "$guest/initrd.img" ]; then
  echo "$guest"
  exit 0
fi

echo "vireo: building the default guest ($kpkg $kver) in $guest" >&2
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -q "$kpkg=$kver" >/dev/null 2>&1) ||
  { echo "vireo: apt-get download $kpkg failed" >&2; exit 1; }
rm -rf "$cache/kernel"
mkdir -p "$cache/kernel"
dpkg-deb -x "$work"/linux-image-*.deb "$cache/kernel"
release=$(ls "$cache/kernel/lib/modules")
depmod -b "$cache/kernel" "$release"  # the package leaves modules.dep to its postinst
echo "$release" > "$cache/kernel/release"

# The initramfs: busybox, the virtio modules with their dependencies, and /init.
root=$work/root
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,root,lib/modules/"$release"}
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
install -m 0755 "$repo/guest/init" "$root/init"
# busybox udhcpc's default hook: `udhcpc -i eth0` configures the interface, route and DNS.
install -D -m 0755 "$repo/guest/udhcpc.script" "$root/etc/udhcpc/default.script"
# busybox acpid runs /etc/acpi/PWRF/00000080 when the ACPI power button is pressed.
install -D -m 0755 "$repo/guest/power-button" "$root/etc/acpi/PWRF/00000080"
mods=$cache/kernel/lib/modules/$release
want="virtio_mmio virtio_pci virtio_blk virtio_net virtio-rng virtio_balloon vmw_vsock_virtio_transport pvpanic-mmio evdev button uio_pci_generic msr"
# Resolve dependencies from modules.dep (paths relative to the module directory).
declare -A seen=()
add_module() {
  local name=$1 line path dep
  line=$(grep -m1 -E "/${name//-/[-_]}\.ko(\.[a-z]+)?:" "$mods/modules.dep") ||
    { echo "vireo: module $name is not in $kpkg" >&2; exit 1; }
  path=${line%%:*}
  [ -n "${seen[$path]:-}" ] && return 0
  seen[$path]=1
  for dep in ${line#*:}; do add_module "$(basename "${dep%%.ko*}")"; done
  mkdir -p "$root/lib/modules/$release/$(dirname "$path")"
  cp "$mods/$path" "$root/lib/modules/$release/$path"
}
for m in $want; do add_module "$m"; done
: > "$root/lib/modules/$release/modules.dep"
for path in "${!seen[@]}"; do grep -E "^$path:" "$mods/modules.dep" >> "$root/lib/modules/$release/modules.dep"; done

mkdir -p "$guest"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -6) > "$guest/initrd.img.tmp"
cp "$cache/kernel/boot/vmlinuz-$release" "$guest/vmlinuz.tmp"
mv "$guest/initrd.img.tmp" "$guest/initrd.img"
mv "$guest/vmlinuz.tmp" "$guest/vmlinuz"
echo "$stamp" > "$guest/stamp"
echo "$guest"
