#!/usr/bin/env bash
# Save/restore benchmark: vireo vs QEMU+KVM (-M microvm) inside one test host, side by side:
# save time and snapshot size (tiny guest; Debian idle at 256 MiB and 1 GiB; 1 GiB after writing
# 200 MiB), restore to the guest's next console line (alternating), and vireo's restore to
# running. bench/snapshot-in-host.sh says how each figure is taken.
# usage: bench/snapshot.sh [RUNS]   (after building vireo into build/)
set -euo pipefail
cd "$(dirname "$0")/.."
exec tests/host/run.sh -Q -s 1 -m 4G -t 3000 -q -f tests/lib.sh -f build/tests/pvh_counter.elf \
  -f bench/snapshot-in-host.sh -- sh /opt/vireo/files/snapshot-in-host.sh "${1:-5}"
