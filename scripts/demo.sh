#!/usr/bin/env bash
# The main job: set up, build, and boot vireo's default guest (Debian's cloud kernel with a
# busybox initramfs) on this host's KVM. Extra arguments go to `vireo run`.
#
# On a host whose KVM cannot run a full kernel (no VT-x/AMD-V, e.g. kvm_pvm), the same boot runs
# inside vireo's test host (QEMU emulating AMD-V, running Debian's kvm_amd) instead.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
./scripts/guest-image.sh >/dev/null

if ./build/vireo info | grep -q "hardware-assisted"; then
  # A shell on the guest's console; "poweroff -f" or Ctrl-A x ends it.
  exec ./build/vireo run "$@"
fi
echo "vireo: this host's KVM ($(./build/vireo info | awk '/^implementation/ {print $2}')) cannot run a full kernel; booting the default guest inside the test host instead (QEMU emulating AMD-V; slower)" >&2
if [ $# -eq 0 ]; then
  set -- --cpus 2 --append '-- uname -sr; nproc; grep MemTotal /proc/meminfo; poweroff -f'
fi
quoted=""
for a in "$@"; do quoted="$quoted '${a//\'/\'\\\'\'}'"; done  # POSIX-sh single quoting
exec tests/host/run.sh -q -t 300 -- "vireo run --stats$quoted"
