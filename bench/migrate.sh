#!/usr/bin/env bash
# Live-migration benchmark: vireo vs QEMU+KVM (-M microvm) inside one test host, side by side,
# the same Debian kernel, initrd and command line, the same downtime bound (100 ms), over a
# Unix socket on the same host: downtime (each VMM's own figure, and the largest gap in the
# guest's own clock, printed in a tight loop) and total time, for an idle 1 GiB guest and one
# rewriting 64 MiB of memory every second. bench/migrate-in-host.sh says how each is taken.
# usage: bench/migrate.sh [RUNS]   (after building vireo into build/)
set -euo pipefail
cd "$(dirname "$0")/.."
exec tests/host/run.sh -Q -s 1 -m 4G -t 3000 -q -f tests/lib.sh -f bench/migrate-lib.sh \
  -f bench/migrate-in-host.sh -- sh /opt/vireo/files/migrate-in-host.sh "${1:-3}"
