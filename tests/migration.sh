#!/bin/sh
# Live migration (vireo migrate, vireo run --incoming) with tiny guests on /dev/kvm, every
# domain jailed as by default:
#  - a counting guest (pvh_counter: "C=<count>" lines, the count in guest memory) with a disk
#    (whose lock each destination takes at the hand-over) moves over unix: and back over
#    tcp:127.0.0.1 with a token; the counts go on with no number repeated
#    and none lost, the source exits 0, --json reports downtime_ms, total_ms, bytes, passes;
#  - ping-pong: it moves 10 times more, back and forth;
#  - a wrong token is refused, and the source keeps running;
#  - a guest dirtying 16 MiB per line (pvh_dirtier, which checks that every page still holds
#    its last write: a lost or stale page prints BAD) does not converge with a 1 ms downtime
#    over a link limited to 8 MiB/s (--max-bandwidth: in the emulated test host a guest
#    dirties pages far slower than on hardware, each first write a nested fault):
#    the migration fails at --timeout and the source runs on; --cancel and a destination
#    killed mid-way, or the connection cut silently (a socat relay stopped), leave the source
#    running too; with --auto-converge it completes and the
#    migrated guest finds every page intact.
# usage: migration.sh VIREO PVH_COUNTER_ELF PVH_DIRTIER_ELF
vireo=$1
counter=$2
dirtier=$3
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/vireo-migration.XXXXXX)
pids=""
trap 'kill $pids 2>/dev/null; sleep 1; rm -rf "$work"' EXIT
port=$((40000 + $$ % 20000))

# source NAME KERNEL [ARGS]: a domain with its console in NAME.log and API at NAME.sock.
source_domain() {
  _name=$1
  _kernel=$2
  shift 2
  "$vireo" run --kernel "$_kernel" --memory 64M --cpus 2 --rng --allow-software-kvm \
    --console "file:$work/$_name.log" --api-socket "$work/$_name.sock" "$@" 2>"$work/$_name.err" &
  last=$!
  pids="$pids $last"
}
# incoming NAME ADDR [ARGS]: a destination waiting on ADDR.
incoming() {
  _name=$1
  _addr=$2
  shift 2
  # A name used before left its log: the new process's redirection truncates it only once it runs,
  # so the wait below could read the old listening line and connect before anyone listens.
  rm -f "$work/$_name.err"
  "$vireo" run --incoming "$_addr" --allow-software-kvm --console "file:$work/$_name.log" \
    --api-socket "$work/$_name.sock" "$@" 2>"$work/$_name.err" &
  last=$!
  pids="$pids $last"
  # Listening once the socket (unix:) or the log line (tcp:) is there.
  within 30 grep -q "waiting for an incoming domain" "$work/$_name.err" ||
    bad "$_name: the destination did not listen: $(cat "$work/$_name.err")"
}
# --- unix: the counter moves, then back over tcp: with a token --------------------------------
# With a disk: its lock goes to the destination at the hand-over (both open the same image).
head -c 1048576 /dev/zero >"$work/disk.img"
source_domain a "$counter" --disk "$work/disk.img"
pa=$last
within 60 has_lines "$work/a.log" 3 || bad "the guest did not count: $(cat "$work/a.err")"
incoming b "unix:$work/in-b.sock"
pb=$last
if "$vireo" migrate --api-socket "$work/a.sock" "unix:$work/in-b.sock" --json >"$work/m1.json" \
  2>"$work/m1.err"; then
  ok "unix: migrated: $(tr -d ' \n' <"$work/m1.json")"
else
  bad "unix: migrate failed: $(cat "$work/m1.err")"
fi
for k in downtime_ms total_ms bytes passes; do
  grep -q "\"$k\"" "$work/m1.json" || bad "--json lacks $k"
done
reap $pa "the source after the migration" 60
st=$?
[ $st -eq 0 ] && ok "the source exited 0 after handing over" || bad "the source ended with $st"
counting "$work/b.log" && ok "the migrated guest counts on at the destination" ||
  bad "the destination does not count: $(cat "$work/b.err")"
[ ! -e "$work/in-b.sock" ] && ok "the destination's listening socket is gone" ||
  bad "the destination's listening socket is still there"
if gaps=$(no_repeat_no_gap "$work/a.log" "$work/b.log"); then
  ok "no count repeated or lost: $(counts "$work/a.log" | tail -1) at the source, then $(counts "$work/b.log" | head -1)"
else
  bad "counts across the migration: $gaps"
fi

# A wrong token: refused, the source runs on.
incoming c "tcp:127.0.0.1:$port" --token secret
pc=$last
if "$vireo" migrate --api-socket "$work/b.sock" "tcp:127.0.0.1:$port" --token guess \
  >"$work/m2.out" 2>&1; then
  bad "a wrong token was accepted"
else
  grep -q "token" "$work/m2.out" && ok "a wrong token is refused: $(cat "$work/m2.out")" ||
    bad "a wrong token: $(cat "$work/m2.out")"
fi
reap $pc "the destination given a wrong token" 30
counting "$work/b.log" && ok "after the refusal the source counts on" ||
  bad "the source stopped after a refused migration"

incoming c "tcp:127.0.0.1:$port" --token secret
pc=$last
if "$vireo" migrate --api-socket "$work/b.sock" "tcp:127.0.0.1:$port" --token secret \
  >"$work/m3.out" 2>&1; then
  ok "tcp: migrated back: $(cat "$work/m3.out")"
else
  bad "tcp: migrate failed: $(cat "$work/m3.out")"
fi
reap $pb "the source of the tcp: migration" 60
counting "$work/c.log" && ok "the guest counts on after tcp:" || bad "no count after tcp:"

# --- ping-pong: 10 more moves ---------------------------------------------------------------
from=c
pfrom=$pc
logs="$work/a.log $work/b.log $work/c.log"
moved=0
for i in 1 2 3 4 5 6 7 8 9 10; do
  to=p$i
  incoming $to "unix:$work/in-$to.sock"
  pto=$last
  if "$vireo" migrate --api-socket "$work/$from.sock" "unix:$work/in-$to.sock" --json \
    >"$work/$to.json" 2>"$work/$to.mig"; then
    moved=$((moved + 1))
  else
    bad "ping-pong move $i failed: $(cat "$work/$to.mig")"
    break
  fi
  reap $pfrom "ping-pong source $i" 60 >/dev/null
  counting "$work/$to.log" || bad "ping-pong $i: no count at the destination"
  logs="$logs $work/$to.log"
  from=$to
  pfrom=$pto
done
downtimes=$(cat "$work"/p*.json 2>/dev/null | sed -n 's/.*"downtime_ms": *\([0-9.]*\).*/\1/p' |
  awk '{ printf "%.0f ", $1 }')
[ $moved -eq 10 ] && ok "ping-pong: 10 moves (downtimes in ms: $downtimes)"
if gaps=$(no_repeat_no_gap $logs); then
  ok "ping-pong: one unbroken count over $(echo $logs | wc -w) domains ($(counts $logs | wc -l) lines)"
else
  bad "ping-pong counts: $gaps"
fi
kill $pfrom

# --- a guest that dirties memory faster than a 1 ms downtime allows -------------------------
source_domain d "$dirtier"
pd=$last
within 60 has_lines "$work/d.log" 3 || bad "the dirtying guest did not count: $(cat "$work/d.err")"
incoming e "unix:$work/in-e.sock"
pe=$last
if "$vireo" migrate --api-socket "$work/d.sock" "unix:$work/in-e.sock" --downtime-ms 1 \
  --max-bandwidth 8 --timeout 5 >"$work/m4.out" 2>&1; then
  bad "a migration that cannot converge completed: $(cat "$work/m4.out")"
else
  grep -q "did not converge in 5 s" "$work/m4.out" &&
    ok "no convergence: fails at --timeout: $(cat "$work/m4.out")" ||
    bad "no convergence: $(cat "$work/m4.out")"
fi
reap $pe "the destination of the failed migration" 30
counting "$work/d.log" && ok "after the timeout the source runs on" ||
  bad "the source stopped after a failed migration"

# long_migration NAME OUT [ADDR]: the dirtying guest sent to a new destination NAME (through
# ADDR, default its own socket) in the background (1 ms downtime over 8 MiB/s: it runs until
# stopped); after 2 s the caller interrupts it. Sets pdest (the destination) and pm (the
# migration).
long_migration() {
  incoming "$1" "unix:$work/in-$1.sock"
  pdest=$last
  "$vireo" migrate --api-socket "$work/d.sock" "${3:-unix:$work/in-$1.sock}" --downtime-ms 1 \
    --max-bandwidth 8 --timeout 120 >"$2" 2>&1 &
  pm=$!
  sleep 2
}
# sending: the migration out of d.sock is past its handshake (it has sent pages).
sending() {
  b=$("$vireo" api "$work/d.sock" migrate.status 2>/dev/null | tr -d ' \n' |
    sed -n 's/.*"bytes":\([0-9]*\).*/\1/p')
  [ "${b:-0}" -gt 0 ]
}
# failed_runs_on OUT WHAT: the interrupted migration (its output in OUT) failed with a reason,
# and the source counts on.
failed_runs_on() {
  if [ -s "$1" ] && ! grep -q migrated "$1"; then
    ok "$2 fails the migration: $(cat "$1")"
  else
    bad "$2: $(cat "$1")"
  fi
  counting "$work/d.log" && ok "after that ($2) the source runs on" ||
    bad "the source stopped ($2)"
}

# Cancelled mid-way.
long_migration f "$work/m5.out"
pf=$pdest
"$vireo" migrate --cancel --api-socket "$work/d.sock" >"$work/cancel.out" 2>&1 ||
  bad "--cancel: $(cat "$work/cancel.out")"
reap $pm "the cancelled migration" 30
grep -q "cancelled" "$work/m5.out" && ok "--cancel: $(cat "$work/m5.out")" ||
  bad "--cancel: the migration said: $(cat "$work/m5.out")"
reap $pf "the destination of the cancelled migration" 30
counting "$work/d.log" && ok "after --cancel the source runs on" ||
  bad "the source stopped after --cancel"

# The destination killed mid-way.
long_migration g "$work/m6.out"
kill -9 $pdest
reap $pm "the migration to a killed destination" 60
failed_runs_on "$work/m6.out" "a killed destination"

# The connection cut mid-way, silently (a relay between the two stops forwarding, as a cable
# pulled out would: no FIN, no RST): the source's next write times out (30 s) and it runs on.
if command -v socat >/dev/null; then
  socat "UNIX-LISTEN:$work/relay.sock" "UNIX-CONNECT:$work/in-cut.sock" 2>/dev/null &
  prelay=$!
  pids="$pids $prelay"
  within 10 test -S "$work/relay.sock" || bad "the relay did not listen"
  long_migration cut "$work/m8.out" "unix:$work/relay.sock"
  # Cut once pages flow: before, the source waits for the destination's answer to its hello
  # (which may take 120 s: it builds the machine), and a slow host (ASan) may still be there.
  within 60 sending || bad "the migration through the relay sent no page in 60 s"
  kill -STOP $prelay
  reap $pm "the migration over a cut connection" 90
  failed_runs_on "$work/m8.out" "a connection cut silently"
  kill -9 $prelay  # the destination sees its connection end and gives up
  reap $pdest "the destination of the cut connection" 30
  st=$?
  [ $st -ne 0 ] && ok "the destination of the cut connection gave up (status $st)" ||
    bad "the destination of the cut connection ended with 0"
else
  echo "note: no socat here: the cut-connection case did not run"
fi

# With auto-converge it completes, every page intact.
incoming h "unix:$work/in-h.sock"
ph=$last
if "$vireo" migrate --api-socket "$work/d.sock" "unix:$work/in-h.sock" --downtime-ms 30 \
  --max-bandwidth 8 --timeout 120 --auto-converge --json >"$work/m7.json" 2>"$work/m7.err"; then
  ok "--auto-converge: migrated: $(tr -d ' \n' <"$work/m7.json")"
else
  bad "--auto-converge: $(cat "$work/m7.err")"
fi
reap $pd "the dirtying source" 60
counting "$work/h.log" && ok "the dirtying guest counts on at the destination" ||
  bad "the dirtying guest does not count at the destination: $(cat "$work/h.err")"
grep -q BAD "$work/d.log" "$work/h.log" && bad "a page was lost or stale: the guest printed BAD" ||
  ok "every page the guest wrote arrived (no BAD)"
if gaps=$(no_repeat_no_gap "$work/d.log" "$work/h.log"); then
  ok "the dirtying guest's counts go on unbroken"
else
  bad "the dirtying guest's counts: $gaps"
fi
kill $ph

echo "migration: $pass passed, $fail failed"
[ $fail -eq 0 ]
