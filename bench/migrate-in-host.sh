#!/bin/sh
# Runs inside the test host (bench/migrate.sh): live migration under vireo and under QEMU+KVM
# (-M microvm), side by side, alternating, RUNS each, over a Unix socket.
#  - vireo: `vireo run --incoming unix:S`, then `vireo migrate --json` (downtime_ms: from the
#    pause to the destination's "running"; total_ms);
#  - QEMU: a destination with `-incoming unix:S`, the source's monitor `migrate_set_parameter
#    downtime-limit 100` and `migrate unix:S`, then `info migrate` until completed ("downtime"
#    and "total time");
#  - in the guest: a loop printing /proc/uptime (10 ms resolution) as fast as it can; the
#    largest gap between two of its lines across the move, against the largest gap before it
#    (what the loop's own scheduling gives in this emulated host).
# Guests: idle (only the loop) and dirtying (a background job rewriting a 64 MiB file in its
# RAM-backed root every second, as fast as `yes` fills it), 1 GiB each.
runs=${1:-3}

# lib.sh (packed by bench/migrate.sh): within SECS COMMAND..., waits bounded by wall time.
. /opt/vireo/files/lib.sh
. /opt/vireo/files/migrate-lib.sh  # the guest, gap, qemu_migrate

vireo_move() {  # vireo_move NAME CMDLINE-TAIL
  rm -f /tmp/va.* /tmp/vb.* /tmp/vin.sock
  vireo run --memory 1G --cmdline "$L -- $2" --api-socket /tmp/va.sock --console file:/tmp/va.log \
    >/tmp/va.err 2>&1 </dev/null &
  pa=$!
  within 120 grep -qs '^[0-9]' /tmp/va.log || { echo "vireo: the guest did not start"; kill $pa; return; }
  sleep 3
  vireo run --incoming unix:/tmp/vin.sock --console file:/tmp/vb.log --api-socket /tmp/vb.sock \
    >/tmp/vb.err 2>&1 </dev/null &
  pb=$!
  within 30 grep -qs waiting /tmp/vb.err || { echo "vireo: no destination"; kill $pa $pb; return; }
  before=$(gap /tmp/va.log)
  out=$(vireo migrate --api-socket /tmp/va.sock unix:/tmp/vin.sock --json 2>&1 | tr -d ' \n')
  wait $pa
  sleep 2
  kill $pb
  wait $pb 2>/dev/null
  dt=$(echo "$out" | sed -n 's/.*"downtime_ms":\([0-9.]*\).*/\1/p')
  tt=$(echo "$out" | sed -n 's/.*"total_ms":\([0-9.]*\).*/\1/p')
  printf '%-10s vireo  downtime %6.0f ms  total %7.0f ms  guest gap %5s ms (before: %s ms)\n' \
    "$1" "${dt:-0}" "${tt:-0}" "$(gap /tmp/va.log /tmp/vb.log)" "$before"
  [ -n "$dt" ] || echo "  vireo migrate: $out $(tail -n 2 /tmp/vb.err)"
}

qemu_move() {  # qemu_move NAME CMDLINE-TAIL
  rm -f /tmp/qa.* /tmp/qb.* /tmp/qin.sock
  mkfifo /tmp/qa.mon
  $Q -m 1G -kernel $K -initrd $I -append "$L -- $2" -serial file:/tmp/qa.log -monitor stdio \
    </tmp/qa.mon >/tmp/qa.out 2>&1 &
  pa=$!
  exec 3>/tmp/qa.mon
  within 120 grep -qs '^[0-9]' /tmp/qa.log || { echo "qemu: the guest did not start"; kill $pa; exec 3>&-; return; }
  sleep 3
  $Q -m 1G -kernel $K -initrd $I -append "$L -- $2" -serial file:/tmp/qb.log -monitor none \
    -incoming unix:/tmp/qin.sock >/tmp/qb.out 2>&1 &
  pb=$!
  within 30 test -S /tmp/qin.sock
  before=$(gap /tmp/qa.log)
  qemu_migrate unix:/tmp/qin.sock
  wait $pa
  sleep 2
  kill $pb
  wait $pb 2>/dev/null
  dt=$(sed -n 's/^downtime: \([0-9]*\) ms.*/\1/p' /tmp/qa.out | tail -n1)
  tt=$(sed -n 's/^total time: \([0-9]*\) ms.*/\1/p' /tmp/qa.out | tail -n1)
  printf '%-10s qemu   downtime %6.0f ms  total %7.0f ms  guest gap %5s ms (before: %s ms)\n' \
    "$1" "${dt:-0}" "${tt:-0}" "$(gap /tmp/qa.log /tmp/qb.log)" "$before"
  [ -n "$dt" ] || echo "  qemu: $(grep -i -m2 'status\|error' /tmp/qa.out)"
}

echo "== live migration over a Unix socket, 1 GiB Debian guests, downtime bound 100 ms ($runs runs)"
i=0
while [ $i -lt "$runs" ]; do
  i=$((i + 1))
  vireo_move idle "$LOOP"
  qemu_move idle "$LOOP"
  vireo_move dirtying "$DIRTY $LOOP"
  qemu_move dirtying "$DIRTY $LOOP"
done
