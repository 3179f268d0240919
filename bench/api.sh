#!/usr/bin/env bash
# Control API figures on this machine's /dev/kvm, with a tiny PVH guest (pvh_idle):
#   - latency of `info` and of `pause` + `unpause` (p50/p99, one persistent connection), and of
#     `info` from 50 concurrent clients (vireo-bench api);
#   - what the control endpoints cost a domain: RSS and PSS of `vireo run` with --api-socket and
#     --console-socket against the same domain without them (median of RUNS starts each).
# usage: bench/api.sh [RUNS] [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
build=${2:-build}
vireo=$build/vireo
guest=$build/tests/pvh_idle.elf
work=$(mktemp -d /tmp/vireo-apibench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

start() {  # start NAME [ARGS...]: a tiny domain in the background; prints its pid
  local name=$1
  shift
  "$vireo" run --kernel "$guest" --allow-software-kvm --memory 64M --console none \
    --name "$name" "$@" >/dev/null 2>&1 &
  echo $!
}
mem() {  # mem PID: "RSS_KiB PSS_KiB"
  awk '/^Rss:/ {r = $2} /^Pss:/ {p = $2} END {print r, p}' "/proc/$1/smaps_rollup"
}
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

echo "== latency (vireo-bench api)"
pid=$(start bench --api-socket "$work/api.sock")
while [ ! -S "$work/api.sock" ]; do sleep 0.01; done
sleep 0.3
"$build/vireo-bench" api "$work/api.sock" --requests 4000 --clients 50
kill "$pid"; wait "$pid" 2>/dev/null || true

echo "== memory of the control endpoints (median of $runs)"
for mode in bare api; do
  : >"$work/rss.$mode"; : >"$work/pss.$mode"
  for i in $(seq 1 "$runs"); do
    if [ $mode = api ]; then
      pid=$(start "m$i" --api-socket "$work/m$i.api" --console-socket "$work/m$i.con")
      while [ ! -S "$work/m$i.api" ]; do sleep 0.01; done
      "$vireo" api "$work/m$i.api" info >/dev/null  # the API thread has served a request
    else
      pid=$(start "m$i")
    fi
    sleep 0.5
    read -r rss pss < <(mem "$pid")
    echo "$rss" >>"$work/rss.$mode"; echo "$pss" >>"$work/pss.$mode"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
rb=$(median <"$work/rss.bare"); ra=$(median <"$work/rss.api")
pb=$(median <"$work/pss.bare"); pa=$(median <"$work/pss.api")
printf '%-34s %10s %10s\n' "vireo run (tiny guest)" "RSS KiB" "PSS KiB"
printf '%-34s %10s %10s\n' "without API/console sockets" "$rb" "$pb"
printf '%-34s %10s %10s\n' "with --api-socket --console-socket" "$ra" "$pa"
printf '%-34s %10s %10s\n' "cost of the control threads" "$((ra - rb))" "$((pa - pb))"
