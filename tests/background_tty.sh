#!/usr/bin/env bash
# `vireo run ... &` from an interactive shell: stdin is a terminal vireo does not own, so it must
# leave it alone (reading it or setting it raw would stop vireo, guest and all, with SIGTTIN or
# SIGTTOU). script(1) gives an interactive bash a terminal, and so job control.
# usage: tests/background_tty.sh VIREO PVH_HELLO_ELF
set -euo pipefail
out=$(timeout 60 script -qec "bash --norc --noprofile -i -c '$1 run --kernel $2 --allow-software-kvm \
  --memory 64M --on-reboot exit & wait \$!; echo STATUS=\$?'" /dev/null)
echo "$out"
if grep -q "STATUS=0" <<<"$out" && grep -q "PVH-OK" <<<"$out" && grep -q "console input is off" <<<"$out"; then
  echo "PASS: vireo run in the background of a shell ran its guest to the end"
else
  echo "FAIL: vireo run in the background of a shell (stopped or failed)"
  exit 1
fi
