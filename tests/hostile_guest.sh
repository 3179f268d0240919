#!/bin/sh
# Boots the hostile virtio driver (guests/pvh_hostile.S) under vireo with a virtio-blk disk and
# virtio-rng, directly on /dev/kvm. Passes if vireo survives and ends normally (the guest
# powered off, or at worst brought itself down), no sanitizer reported anything, and the attacks
# reached both devices: each one's counters (vireo run --stats) show rule violations it caught
# (driver_errors) or requests it served.
# usage: hostile_guest.sh VIREO ELF
vireo=$1
elf=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/vireo-hostile.XXXXXX")
trap 'rm -rf "$dir"' EXIT
truncate -s 1M "$dir/disk.img"
"$vireo" run --kernel "$elf" --allow-software-kvm --memory 64M --console stdio \
  --on-reboot exit --disk "$dir/disk.img" --rng --stats >"$dir/out" 2>&1
rc=$?
cat "$dir/out" | grep -v "broke the virtio rules" | head -n 40
echo "driver-error log lines (rate-limited): $(grep -c 'broke the virtio rules' "$dir/out")"
if grep -q -e "AddressSanitizer" -e "runtime error" -e "LeakSanitizer" "$dir/out"; then
  echo "FAIL: a sanitizer reported an error"; exit 1
fi
case $rc in
  0) grep -q HOSTILE-DONE "$dir/out" || { echo "FAIL: no HOSTILE-DONE"; exit 1; } ;;
  5|6) echo "note: the guest brought itself down (status $rc); vireo survived" ;;
  *) echo "FAIL: vireo exited with status $rc"; exit 1 ;;
esac
# DEVICE.COUNTER=N fields of the stats line; a device was reached if any of its figures is non-zero.
stats=$(grep "vireo: stats:" "$dir/out" | tr ' ' '\n')
for dev in virtio-blk@0xd0000000 virtio-rng@0xd0001000; do
  figures=$(echo "$stats" | grep "^$dev\." | tr '\n' ' ')
  echo "$dev: $figures"
  if ! echo "$figures" | grep -q "=[1-9]"; then
    echo "FAIL: the hostile driver never reached $dev"; exit 1
  fi
done
echo "PASS: vireo survived the hostile driver (status $rc), which reached both devices"
