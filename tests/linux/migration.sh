#!/usr/bin/env bash
# Runs tests/linux/migration_tests.sh in the test host (a Debian guest moved 12 times between
# vireo processes). The test host gets tests/lib.sh and e2fsprogs' mke2fs and e2fsck.
# usage: tests/linux/migration.sh [BUILD_DIR]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$repo/build}" && pwd)
"$repo/tests/host/run.sh" -b "$build" -s 1 -m 3G -t 900 -q \
  -f "$repo/tests/lib.sh" -B /usr/sbin/mke2fs -B /usr/sbin/e2fsck \
  -f "$repo/tests/linux/migration_tests.sh" -- sh /opt/vireo/files/migration_tests.sh
