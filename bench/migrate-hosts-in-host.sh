#!/bin/sh
# Runs inside each of two test hosts joined by a network (bench/migrate-hosts.sh): live
# migration from the source host (10.9.0.1) to the destination host (10.9.0.2) over TCP, vireo
# and QEMU+KVM (-M microvm) side by side, alternating, RUNS each, as bench/migrate-in-host.sh does
# within one host (same guests, same downtime bound, same measurements).
# usage: migrate-hosts-in-host.sh src|dst RUNS
#
# The source drives; the destination waits for its orders. They talk with busybox nc: the
# source sends an order to the destination's port 5000 ("vireo idle", "qemu dirtying", ...,
# "done"); the
# destination answers on the source's port 5001, first "ready" (or why not) once its receiver
# listens, then, once the guest has run 2 s at the destination, that console (the guest's clock
# lines after the move, for the gap across hosts).
role=$1
runs=${2:-3}
me=10.9.0.1
peer=10.9.0.2
[ "$role" = dst ] && { me=10.9.0.2; peer=10.9.0.1; }
TOKEN=vireo-bench-token
tail_of() { case $1 in idle) echo "$LOOP" ;; *) echo "$DIRTY $LOOP" ;; esac; }

. /opt/vireo/files/lib.sh
. /opt/vireo/files/migrate-lib.sh  # the guest, gap, qemu_migrate
say() { echo "# $(cut -d' ' -f1 /proc/uptime)s $role: $*" >&2; }  # progress (shown on a failure)
# send PORT [FILE]: the message on stdin (or FILE) to the peer's PORT; tries for up to 10 min (the
# peer host may still be booting, or busy with its last step).
send() {
  _end=$(($(now) + 600))
  if [ -n "${2:-}" ]; then cat "$2" >/tmp/send.msg; else cat >/tmp/send.msg; fi
  until nc "$peer" "$1" </tmp/send.msg 2>/dev/null; do
    [ "$(now)" -lt $_end ] || { echo "$role: the other host does not answer on port $1"; return 1; }
    sleep 0.5
  done
}
recv() { nc -l -p "$1"; }  # one connection on this host's PORT, to stdout

if [ "$role" = dst ]; then
  while :; do
    order=$(recv 5000)
    say "order: $order"
    rm -f /tmp/vb.* /tmp/qb.*
    case $order in
      vireo\ *)
        vireo run --incoming tcp:$me:4444 --token $TOKEN --console file:/tmp/vb.log \
          --api-socket /tmp/vb.sock >/tmp/vb.err 2>&1 </dev/null &
        pb=$!
        log=/tmp/vb.log
        if within 30 grep -qs waiting /tmp/vb.err; then echo ready | send 5001
        else echo "no vireo receiver: $(tail -n 2 /tmp/vb.err)" | send 5001; fi ;;
      qemu\ *)
        # The same machine as the source's (QEMU's convention), kernel command line included.
        $Q -m 1G -kernel $K -initrd $I -append "$L -- $(tail_of "${order#qemu }")" \
          -serial file:/tmp/qb.log -monitor none -incoming tcp:$me:4445 >/tmp/qb.out 2>&1 &
        pb=$!
        log=/tmp/qb.log
        if within 30 sh -c 'netstat -ltn | grep -q ":4445 "'; then echo ready | send 5001
        else echo "no qemu receiver: $(tail -n 2 /tmp/qb.out)" | send 5001; fi ;;
      done) exit 0 ;;
      *) echo "dst: unknown order '$order'"; exit 1 ;;
    esac
    # The guest's lines here once it runs (or the receiver gave up), 2 s of them.
    within 300 sh -c "grep -qs '^[0-9]' $log || ! kill -0 $pb 2>/dev/null"
    say "the guest runs here, or the receiver ended: $(grep -c '^[0-9]' $log) lines"
    sleep 2
    kill $pb 2>/dev/null
    wait $pb 2>/dev/null
    touch $log
    send 5001 $log
    say "sent its console"
  done
fi

# The source. jf KEY: a number from vireo migrate's JSON ($out).
jf() { echo "$out" | sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }
# ask ORDER: the destination's answer ("ready" or why not).
ask() { echo "$1" | send 5000 && say "asked: $1" && recv 5001; }

vireo_move() {  # vireo_move idle|dirtying
  rm -f /tmp/va.* /tmp/vb.*
  vireo run --memory 1G --cmdline "$L -- $(tail_of "$1")" --api-socket /tmp/va.sock \
    --console file:/tmp/va.log >/tmp/va.err 2>&1 </dev/null &
  pa=$!
  within 120 grep -qs '^[0-9]' /tmp/va.log || { echo "vireo: the guest did not start"; kill $pa; return; }
  sleep 3
  answer=$(ask "vireo $1")
  if [ "$answer" != ready ]; then echo "vireo: $answer"; kill $pa; recv 5001 >/dev/null; return; fi
  say "vireo $1: moving"
  before=$(gap /tmp/va.log)
  out=$(vireo migrate --api-socket /tmp/va.sock tcp:$peer:4444 --token $TOKEN --json 2>&1 | tr -d ' \n')
  echo "$out" | grep -q downtime_ms || kill $pa  # failed: the source runs on
  wait $pa
  say "vireo $1: source gone ($out)"
  recv 5001 >/tmp/vb.log
  dt=$(jf downtime_ms)
  tt=$(jf total_ms)
  mb=$(jf bytes)
  printf '%-10s vireo  downtime %6.0f ms  total %7.0f ms  %5s MiB  guest gap %5s ms (before: %s ms)\n' \
    "$1" "${dt:-0}" "${tt:-0}" "$(( ${mb:-0} / 1048576 ))" "$(gap /tmp/va.log /tmp/vb.log)" "$before"
  if [ -z "$dt" ]; then echo "  vireo migrate: $out"; return; fi
  printf '             (%s passes, last %s pages + %s bytes of state, link %.0f MiB/s, round trip %.1f ms; downtime: pause %.1f, copy %.1f, restore %.1f, start %.1f ms)\n' \
    "$(jf passes)" "$(jf last_pass_pages)" "$(jf state_bytes)" "$(jf bandwidth_mib_s)" \
    "$(jf round_trip_ms)" "$(jf pause)" "$(jf copy)" "$(jf restore)" "$(jf start)"
}

qemu_move() {  # qemu_move idle|dirtying
  rm -f /tmp/qa.* /tmp/qb.*
  mkfifo /tmp/qa.mon
  $Q -m 1G -kernel $K -initrd $I -append "$L -- $(tail_of "$1")" -serial file:/tmp/qa.log -monitor stdio \
    </tmp/qa.mon >/tmp/qa.out 2>&1 &
  pa=$!
  exec 3>/tmp/qa.mon
  within 120 grep -qs '^[0-9]' /tmp/qa.log || { echo "qemu: the guest did not start"; kill $pa; exec 3>&-; return; }
  sleep 3
  answer=$(ask "qemu $1")
  if [ "$answer" != ready ]; then echo "qemu: $answer"; echo quit >&3; exec 3>&-; recv 5001 >/dev/null; return; fi
  say "qemu $1: moving"
  before=$(gap /tmp/qa.log)
  qemu_migrate tcp:$peer:4445
  wait $pa
  say "qemu $1: source gone ($(grep -m1 'Migration status' /tmp/qa.out))"
  recv 5001 >/tmp/qb.log
  dt=$(sed -n 's/^downtime: \([0-9]*\) ms.*/\1/p' /tmp/qa.out | tail -n1)
  tt=$(sed -n 's/^total time: \([0-9]*\) ms.*/\1/p' /tmp/qa.out | tail -n1)
  mb=$(sed -n 's/^transferred ram: \([0-9]*\) kbytes.*/\1/p' /tmp/qa.out | tail -n1)
  printf '%-10s qemu   downtime %6.0f ms  total %7.0f ms  %5s MiB  guest gap %5s ms (before: %s ms)\n' \
    "$1" "${dt:-0}" "${tt:-0}" "$(( ${mb:-0} / 1024 ))" "$(gap /tmp/qa.log /tmp/qb.log)" "$before"
  [ -n "$dt" ] || echo "  qemu: $(grep -i -m2 'status\|error' /tmp/qa.out)"
}

echo "== live migration between two test hosts over TCP (their virtio-net link), 1 GiB Debian guests, downtime bound 100 ms ($runs runs)"
i=0
while [ $i -lt "$runs" ]; do
  i=$((i + 1))
  vireo_move idle
  qemu_move idle
  vireo_move dirtying
  qemu_move dirtying
done
echo done | send 5000
