#!/usr/bin/env bash
# Linux boot benchmark: vireo vs QEMU+KVM (microvm, q35) inside one test host, alternating.
# usage: bench/boot.sh [RUNS]   (after building vireo into build/)
set -euo pipefail
cd "$(dirname "$0")/.."
exec tests/host/run.sh -Q -m 4G -t 3000 -q -f bench/boot-in-host.sh -- sh /opt/vireo/files/boot-in-host.sh "${1:-5}"
