#!/usr/bin/env bash
# Live migration between two machines: two test hosts on this machine, each its own emulated
# AMD-V host with its own kernel and KVM, joined by a network (a virtio-net card each, QEMU's
# socket back-end over this machine's loopback: 10.9.0.1 and 10.9.0.2). A 1 GiB Debian guest
# moves from the first to the second over TCP, under vireo (`vireo run --incoming tcp:...
# --token`, `vireo migrate ... tcp:...`) and under QEMU+KVM (-incoming tcp:...), side by side,
# idle and dirtying memory, as bench/migrate.sh does within one host.
# usage: bench/migrate-hosts.sh [RUNS]   (after building vireo into build/; this machine needs
# two free CPUs and about 7 GiB of memory for the two hosts)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-2}
out=$(mktemp -d "${TMPDIR:-/tmp}/vireo-migrate-hosts.XXXXXX")
declare -A pid
stop_hosts() { for p in "${pid[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done; }
trap 'stop_hosts; rm -rf "$out"' EXIT

# host src|dst NETDEV: one test host in a process group of its own (so that it can be stopped
# whole), its scratch files under $out. No retries of a single host: a host booted again alone
# would wait for its peer forever; the pair is run again instead (below).
host() {
  TMPDIR=$out VIREO_TEST_HOST_RETRIES=0 setsid tests/host/run.sh -Q -s 1 -m 3G \
    -t $((600 + runs * 600)) -q -N "$2" -f tests/lib.sh -f bench/migrate-lib.sh \
    -f bench/migrate-hosts-in-host.sh -- sh /opt/vireo/files/migrate-hosts-in-host.sh "$1" "$runs" >"$out/$1.out" 2>&1 &
  pid[$1]=$!
}

# A pair: the destination first (its QEMU listens; the source's connects when it starts). When
# one host ends in failure the other, waiting for it, is stopped.
pair() {
  local port rc=0 first
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  host dst "10.9.0.2/24,socket,listen=127.0.0.1:$port"
  for _ in $(seq 300); do
    ss -ltn "sport = :$port" | grep -q LISTEN && break
    kill -0 "${pid[dst]}" 2>/dev/null || break
    sleep 0.2
  done
  host src "10.9.0.1/24,socket,connect=127.0.0.1:$port"
  local r=0
  wait -n -p first "${pid[src]}" "${pid[dst]}" || r=$?
  [ $r = 0 ] || { rc=$r; stop_hosts; }
  for p in "${pid[@]}"; do
    [ "$p" != "$first" ] || continue
    r=0
    wait "$p" || r=$?
    [ $rc != 0 ] || rc=$r
  done
  pid=()
  return "$rc"
}

# The figures; everything both hosts said (progress lines, kernel messages) on a failure.
clean() { grep -v -E -e '^# ' -e '^ *\[ *[0-9]+\.[0-9]+\]' "$1" || true; }
rc=0
for attempt in 1 2; do
  rc=0
  pair || rc=$?
  # The emulated hosts now and then stop as machines (docs/test-host.md): then the pair again.
  if [ $rc != 0 ] && [ $attempt = 1 ] && grep -qs 'vireo test host: stopped' "$out/src.out" "$out/dst.out"; then
    echo "(a test host stopped running, not vireo or QEMU: $(grep -hs 'vireo test host: stopped' "$out"/*.out | head -n1); the pair again)"
    continue
  fi
  break
done
clean "$out/src.out"
if [ $rc != 0 ] || grep -q -e 'did not' -e ': no ' -e 'vireo migrate:' -e '  qemu:' "$out/src.out"; then
  echo "-- the source host said:"; cat "$out/src.out"
  echo "-- the destination host said:"; cat "$out/dst.out"
  [ $rc != 0 ] || rc=1
fi
exit $rc
