#!/usr/bin/env bash
# vireo up launch benchmark, tiny PVH guests on this host's /dev/kvm: for N domains from one
# host file, the time from `vireo up` to the last domain's report on its console, the launch
# rate, and memory: the supervisor's RSS and each domain process's PSS (proportional set
# size: shared library pages split among the processes that map them) and RSS.
# usage: bench/up.sh [N...]   (default 1 16 64 128; after building into build/)
# VIREO_UP_SANDBOX=false: the domains without their sandbox (`sandbox = false`), to compare.
set -euo pipefail
cd "$(dirname "$0")/.."
vireo=${VIREO:-$PWD/build/vireo}            # VIREO, VIREO_IDLE: other builds (the test host's)
idle=${VIREO_IDLE:-$PWD/build/tests/pvh_idle.elf}
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 16 64 128)
work=$(mktemp -d "${TMPDIR:-/tmp}/vireo-upbench.XXXXXX")
trap 'rm -rf "$work"' EXIT
printf '%8s %10s %14s %16s %18s %18s\n' domains "to last s" "domains/s" "supervisor RSS" "domain PSS (avg)" "domain RSS (avg)"
for n in "${counts[@]}"; do
  dir=$work/n$n
  mkdir -p "$dir"
  {
    echo "run_dir = \"$dir/run\""
    echo 'reserve = "64M"'
    for i in $(seq 1 "$n"); do
      printf '[domains.d%d]\nkernel = "%s"\nmemory = "64M"\nallow_software_kvm = true\nsandbox = %s\n' \
        "$i" "$idle" "${VIREO_UP_SANDBOX:-true}"
    done
  } >"$dir/host.toml"
  start=${EPOCHREALTIME/./}  # µs (bash 5; busybox's date has no %N)
  "$vireo" up "$dir/host.toml" >"$dir/up.out" 2>&1 &
  up_pid=$!
  # Polled every 20 ms: each poll forks cat and grep, which a slow (emulated) host feels.
  while [ "$(cat "$dir"/run/d*.log 2>/dev/null | grep -c PVH-UP)" -lt "$n" ]; do sleep 0.02; done
  end=${EPOCHREALTIME/./}
  sleep 0.5
  sup=$(awk '/^VmRSS/ {print $2}' /proc/$up_pid/status)
  pss=0; rss=0; k=0
  for p in $(pgrep -P "$up_pid"); do  # the domain processes: the supervisor's children
    pss=$((pss + $(awk '/^Pss:/ {print $2}' /proc/$p/smaps_rollup)))
    rss=$((rss + $(awk '/^VmRSS/ {print $2}' /proc/$p/status)))
    k=$((k + 1))
  done
  "$vireo" down --run-dir "$dir/run"
  wait $up_pid || true
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
  printf '%8d %10s %14s %13s KiB %14s KiB %14s KiB\n' "$n" "$secs" \
    "$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')" "$sup" \
    "$((pss / (k > 0 ? k : 1)))" "$((rss / (k > 0 ? k : 1)))"
done
