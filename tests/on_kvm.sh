#!/usr/bin/env bash
# Runs a test that needs /dev/kvm: on this machine's, or, where there is none (a machine whose
# own kernel runs under kvm_pvm cannot offer KVM to its processes: "this kernel is itself a
# kvm-pvm guest; not binding"), inside the test host (tests/host/run.sh), which always has one.
# Files named among the arguments are packed into the test host under /opt/vireo/files (the
# build's vireo is on PATH there), so the same command line works in both places.
#
# usage: tests/on_kvm.sh BUILD_DIR [run.sh options, e.g. -B /bin/bash] -- COMMAND ARGS...
set -euo pipefail
build=$(cd "$1" && pwd)
shift
opts=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do opts+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
if [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] && [ -z "${VIREO_TEST_IN_HOST:-}" ]; then
  exec "$@"
fi
echo "on_kvm: no usable /dev/kvm on this machine: running in the test host"
files=(-f "$(dirname "$0")/lib.sh")  # what the shell tests source
args=()
for a in "$@"; do
  if [ "$a" = "$build/vireo" ]; then
    args+=(/opt/vireo/bin/vireo)
  elif [ -f "$a" ]; then
    files+=(-f "$a")
    args+=("/opt/vireo/files/$(basename "$a")")
  else
    args+=("$a")
  fi
done
exec "$(dirname "$0")/host/run.sh" -b "$build" -q "${opts[@]}" "${files[@]}" -- "${args[@]}"
