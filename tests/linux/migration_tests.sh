#!/bin/sh
# Live migration with a Debian guest, inside the test host (tests/linux/migration.sh packs this,
# tests/lib.sh and e2fsprogs). Every wait is bounded by wall time (lib.sh's within).
# The guest prints a counter every 0.1 s and, every 10 counts, writes a file to an ext4 disk
# (synced, acknowledged with its checksum) and reads a control disk (O_DIRECT): it counts on
# until the test writes STOP there after the moves, so the test waits for the moves, not for
# a fixed count. It moves between vireo processes:
#  1. over unix:, then back over tcp:127.0.0.1 with a token: the count goes on, the source
#     exits 0 after each hand-over;
#  2. ping-pong: 10 more moves back and forth over unix:;
#  3. at the end the guest unmounts, mounts again and lists every file with its checksum: every
#     acknowledged file is there unchanged, no count was repeated or lost across the 12 moves
#     (the largest gap between two counts' arrival is reported), and the file system checks
#     clean; the last destination exits 0 at the guest's poweroff.
vireo=vireo
. /opt/vireo/files/lib.sh
# The console logs of the moves, in order, as one stream: a line the switch cut in two (the
# source printed its start, the destination its end) is whole again; without CRs.
joined() { cat "$@" | tr -d '\r'; }
has_line() { tr -d '\r' 2>/dev/null <"$1" | grep -q "^$2"; }

/usr/sbin/mke2fs -q -F -t ext4 /tmp/fs.img 64M
head -c 4096 /dev/zero >/tmp/ctl.img
cat >/tmp/mover.sh <<'EOS'
mkdir -p /mnt
mount -t ext4 /dev/vda /mnt || echo MOUNT-FAILED
i=0
while [ $i -lt 6000 ]; do
  i=$((i + 1))
  echo "CNT=$i"
  if [ $((i % 10)) = 0 ]; then
    dd if=/dev/urandom of=/mnt/f$i bs=4k count=8 2>/dev/null
    s=$(sha256sum /mnt/f$i | cut -c1-16)
    sync
    echo "ACK=$i $s"
    dd if=/dev/vdc bs=512 count=1 iflag=direct 2>/dev/null | grep -q STOP && break
  fi
  [ $i = 50 ] && echo MOVE-READY
  sleep 0.1
done
umount /mnt
mount -t ext4 /dev/vda /mnt
for f in /mnt/f*; do echo "HAVE=${f#/mnt/f} $(sha256sum $f | cut -c1-16)"; done
umount /mnt
echo DISK-DONE
poweroff -f
EOS
script_disk /tmp/mover.sh /tmp/mover.img

logs=""
# The first domain (the guest counts until STOP, then checks its disk).
vireo run --memory 256M --disk /tmp/fs.img --disk /tmp/mover.img --disk /tmp/ctl.img --api-socket /tmp/m0.sock \
  --console file:/tmp/m0.log --append '-- sh /dev/vdb' >/tmp/m0.err 2>&1 </dev/null &
pid=$!
logs=/tmp/m0.log
within 180 has_line /tmp/m0.log MOVE-READY || bad "the guest did not start counting: $(tail -n 5 /tmp/m0.err)"

# move FROM TO ADDR [TOKEN]: a destination waiting on ADDR, the domain moved there.
moves=0
move() {
  _from=$1
  _to=$2
  _addr=$3
  _tok=${4:+--token $4}
  rm -f /tmp/$_to.log /tmp/$_to.err # an old .err's listening line would end the wait below early
  vireo run --incoming "$_addr" $_tok --console file:/tmp/$_to.log --api-socket /tmp/$_to.sock \
    >/tmp/$_to.err 2>&1 </dev/null &
  _pid=$!
  within 30 grep -q "waiting for an incoming domain" /tmp/$_to.err ||
    bad "$_to: the destination did not listen: $(cat /tmp/$_to.err)"
  if vireo migrate --api-socket /tmp/$_from.sock "$_addr" $_tok --json >/tmp/$_to.json \
    2>/tmp/$_to.mig; then
    moves=$((moves + 1))
  else
    bad "$_from -> $_to over $_addr: $(cat /tmp/$_to.mig)"
  fi
  reap $pid "the source $_from" 60
  _st=$?
  [ $_st = 0 ] || bad "the source $_from ended with status $_st"
  pid=$_pid
  logs="$logs /tmp/$_to.log"
  within 30 has_line /tmp/$_to.log "CNT=" || bad "$_to: the guest does not count after the move: $(tail -n 3 /tmp/$_to.err)"
}

move m0 m1 unix:/tmp/in-m1.sock
move m1 m2 tcp:127.0.0.1:47123 sesame
[ $moves = 2 ] && ok "unix: and tcp: (with a token): the Debian guest moved and back, each source exited 0 ($(cat /tmp/m1.json /tmp/m2.json | sed -n 's/.*"downtime_ms": *\([0-9.]*\).*/\1/p' | awk '{ printf "%.0f ms ", $1 }')downtime)"
i=2
while [ $i -lt 12 ]; do
  move m$i m$((i + 1)) unix:/tmp/in-m$((i + 1)).sock
  i=$((i + 1))
done
[ $moves = 12 ] && ok "ping-pong: 10 more moves ($(cat /tmp/m[3-9].json /tmp/m1[0-2].json | sed -n 's/.*"downtime_ms": *\([0-9.]*\).*/\1/p' | awk '{ printf "%.0f ", $1 }')ms downtime)"

# The last destination: told to stop, the guest finishes, lists its files, powers off (status 0).
printf 'STOP\n' | dd of=/tmp/ctl.img conv=notrunc 2>/dev/null
within 120 has_line /tmp/m12.log DISK-DONE || bad "the guest did not finish: $(tail -n 3 /tmp/m12.err)"
reap $pid "the last destination" 60
rc=$?
joined $logs >/tmp/all.log
# Every count once, in order.
bad_seq=$(sed -n 's/^CNT=\([0-9]*\)$/\1/p' /tmp/all.log | awk 'NR > 1 && $1 != prev + 1 { print prev " then " $1 } { prev = $1 }' | head -n 3)
cnts=$(grep -c '^CNT=[0-9]*$' /tmp/all.log)
first=$(sed -n 's/^CNT=\([0-9]*\)$/\1/p' /tmp/all.log | head -n1)
if [ -z "$bad_seq" ] && [ "$first" = 1 ]; then
  ok "one unbroken count over 13 processes: $cnts counts, none repeated or lost"
else
  bad "counts across the moves: ${bad_seq:-starts at $first}"
fi
missing=0
sed -n 's/^ACK=\([0-9]*\) \([0-9a-f]*\)$/\1 \2/p' /tmp/all.log >/tmp/acks
while read -r n s; do
  grep -q "^HAVE=$n $s" /tmp/all.log || missing=$((missing + 1))
done </tmp/acks
/usr/sbin/e2fsck -fn /tmp/fs.img >/tmp/fsck.out 2>&1
fsck=$?
if [ $rc = 0 ] && [ "$(wc -l </tmp/acks)" -ge 5 ] && [ $missing = 0 ] && [ $fsck = 0 ]; then
  ok "disk: all $(wc -l </tmp/acks) acknowledged files are there unchanged after 12 moves, e2fsck -fn is clean, the last destination exited 0 at poweroff"
else
  bad "disk: status $rc, $(wc -l </tmp/acks) acknowledged, $missing missing or changed, e2fsck $fsck: $(tail -n 3 /tmp/fsck.out)"
fi
echo "linux migration: $pass passed, $fail failed"
[ $fail = 0 ]
