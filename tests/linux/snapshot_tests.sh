#!/bin/sh
# Save and restore with Debian guests, inside the test host (tests/linux/snapshot.sh packs this,
# tests/lib.sh, netbench and e2fsprogs). Every wait is bounded by wall time (lib.sh's within).
#  1. a counting guest is saved and restored by `vireo restore`: the count and the uptime go on,
#     no second boot, and the restore exits 0 when the guest powers off;
#  2. a guest writing files to an ext4 disk is saved mid-write: every file it acknowledged
#     (written and synced) is there with its content after the restore, and the file system
#     checks clean;
#  3. a guest with every device type (2 vCPUs, virtio-blk, user-mode net with a forwarded port,
#     vsock, rng, an inflated balloon) survives a save and two restores running at once (clones
#     with their own name, MAC and vsock CID and socket): ticks go on, both vCPUs and the balloon
#     stay, the forwarded TCP port serves, vsock clients reconnect, and a clone's guest reaches
#     the host from its new CID.
vireo=vireo
. /opt/vireo/files/lib.sh
# A console log's complete lines (a save may cut the last one), without their CR.
log() { [ -f "$1" ] && grep "$(printf '\r')\$" "$1" | tr -d '\r'; }
# (A guest's script comes on a disk, lib.sh's script_disk: the kernel passes init at most 32
# words.)

count_of() { log "$1" | grep -c "^$2"; }
has_line() { log "$1" | grep -q "^$2"; }
last_value() { log "$1" | sed -n "s/^$2=\([0-9]*\).*/\1/p" | tail -n1; }
first_value() { log "$1" | sed -n "s/^$2=\([0-9]*\).*/\1/p" | head -n1; }
guest_up() { log "$1" | sed -n "s/^$2=[0-9]* UP=\([0-9]*\).*/\1/p" | ${3:-tail} -n1; }

# --- 1. a counter: saved, restored, goes on -------------------------------------------------
# In the three interrupt models: split's I/O APIC, 8259s and PIT are vireo's and travel in the
# snapshot's UIRQ section; userspace's, with its local APICs, in a UAPC section.
counter() {  # counter IRQCHIP
  rm -f /tmp/c.snap /tmp/c1.log /tmp/c2.log
  A='-- i=0; while [ $i -lt 60 ]; do i=$((i+1)); echo CNT=$i UP=$(cut -d" " -f1 /proc/uptime); sleep 0.2; done; poweroff -f'
  vireo run --irqchip $1 --memory 256M --api-socket /tmp/c.sock --console file:/tmp/c1.log --append "$A" \
    >/tmp/c1.err 2>&1 </dev/null &
  p=$!
  within 120 has_line /tmp/c1.log CNT=10 || bad "the counting guest ($1) did not count: $(tail -n 5 /tmp/c1.err)"
  if vireo save --api-socket /tmp/c.sock /tmp/c.snap >/tmp/save.out 2>&1; then
    ok "counter ($1): $(cat /tmp/save.out)"
  else bad "counter ($1): save failed: $(cat /tmp/save.out)"; fi
  reap $p "the saved domain" 60
  saved=$(last_value /tmp/c1.log CNT)
  saved_up=$(guest_up /tmp/c1.log CNT)
  vireo restore /tmp/c.snap --console file:/tmp/c2.log >/tmp/c2.err 2>&1 </dev/null &
  p=$!
  reap $p "the restored counter" 120
  rc=$?
  first=$(first_value /tmp/c2.log CNT)
  first_up=$(guest_up /tmp/c2.log CNT head)
  if [ $rc = 0 ] && [ -n "$first" ] && [ "$first" -gt "$saved" ] && [ "$first" -le $((saved + 2)) ] &&
     [ "$(last_value /tmp/c2.log CNT)" = 60 ] && ! has_line /tmp/c2.log VIREO-GUEST-INIT &&
     [ "$first_up" -ge "$saved_up" ] && [ "$first_up" -le $((saved_up + 3)) ]; then
    ok "counter ($1 irqchip): saved at $saved (uptime ${saved_up} s), restored at $first (uptime ${first_up} s), counted to 60 with no second boot, vireo restore exited 0 at poweroff"
  else
    bad "counter ($1 irqchip): saved at $saved (uptime $saved_up), restored ${first:-nothing} (uptime $first_up), last $(last_value /tmp/c2.log CNT), status $rc: $(tail -n 3 /tmp/c2.err)"
  fi
}
counter kernel
counter split
counter userspace

# --- 2. a disk saved mid-write --------------------------------------------------------------
/usr/sbin/mke2fs -q -F -t ext4 /tmp/fs.img 64M
cat >/tmp/writer.sh <<'EOF'
mkdir -p /mnt
mount -t ext4 /dev/vda /mnt || echo MOUNT-FAILED
i=0
while [ $i -lt 50 ]; do
  i=$((i + 1))
  dd if=/dev/urandom of=/mnt/f$i bs=4k count=16 2>/dev/null
  s=$(sha256sum /mnt/f$i | cut -c1-16)
  sync
  echo "ACK=$i $s"
done
umount /mnt
mount -t ext4 /dev/vda /mnt
for f in /mnt/f*; do echo "HAVE=${f#/mnt/f} $(sha256sum $f | cut -c1-16)"; done
umount /mnt
echo DISK-DONE
poweroff -f
EOF
script_disk /tmp/writer.sh /tmp/writer.img
vireo run --memory 256M --disk /tmp/fs.img --disk /tmp/writer.img --api-socket /tmp/d.sock \
  --console file:/tmp/d1.log --append '-- sh /dev/vdb' >/tmp/d1.err 2>&1 </dev/null &
p=$!
within 120 has_line /tmp/d1.log ACK=12 || bad "the writing guest did not write: $(tail -n 5 /tmp/d1.err)"
vireo save --api-socket /tmp/d.sock /tmp/d.snap >/tmp/save.out 2>&1 ||
  bad "disk: save failed: $(cat /tmp/save.out)"
reap $p "the saved writer" 60
acked=$(last_value /tmp/d1.log ACK)
vireo restore /tmp/d.snap --console file:/tmp/d2.log >/tmp/d2.err 2>&1 </dev/null &
p=$!
reap $p "the restored writer" 180
rc=$?
missing=0
for f in /tmp/d1.log /tmp/d2.log; do
  log $f | sed -n 's/^ACK=\([0-9]*\) \([0-9a-f]*\).*/\1 \2/p'
done >/tmp/acks
while read -r i s; do
  log /tmp/d2.log | grep -q "^HAVE=$i $s" || missing=$((missing + 1))
done </tmp/acks
/usr/sbin/e2fsck -fn /tmp/fs.img >/tmp/fsck.out 2>&1
fsck=$?
# (An ACK line the save cut in two is not counted: hence 49 or 50 acknowledged.)
have=$(log /tmp/d2.log | grep -c '^HAVE=')
if [ $rc = 0 ] && has_line /tmp/d2.log DISK-DONE && [ "$(wc -l </tmp/acks)" -ge 49 ] &&
   [ "$have" = 50 ] && [ $missing = 0 ] && [ $fsck = 0 ]; then
  ok "disk: saved after $acked acknowledged files; after the restore all 50 are there with their content, and e2fsck -fn finds the file system clean"
else
  bad "disk: status $rc, $(wc -l </tmp/acks) acknowledged, $have files, $missing missing or changed, e2fsck $fsck: $(tail -n 3 /tmp/fsck.out) $(tail -n 3 /tmp/d2.err)"
fi

# --- 3. every device type; two clones at once -------------------------------------------------
cat >/tmp/all.sh <<'EOF'
udhcpc -i eth0 -q -n -t 5 >/dev/null 2>&1
mkdir -p /tmp/w && head -c 200000 /dev/urandom >/tmp/w/g && echo "GUEST-HAS=$(sha256sum /tmp/w/g | cut -c1-64)"
httpd -p 80 -h /tmp/w
netbench echo vsock:5000 100 >/dev/null 2>&1 &
echo GUEST-READY
i=0
while true; do
  i=$((i + 1))
  echo "TICK=$i CPUS=$(grep -c ^processor /proc/cpuinfo) HW=$(head -c 4 /dev/hwrng | od -An -tx1 | tr -d ' \n') DISK=$(head -c 512 /dev/vda | md5sum | cut -c1-8)"
  # Every 5 ticks the guest reaches the host (CID 2 port 6000): from its CID, which a clone
  # changes (the guest learns it from the transport reset a restore sends).
  [ $((i % 5)) = 0 ] && timeout 10 netbench send vsock:2:6000 4096 2>&1 | sed 's/^/G2H: /'
  sleep 1
done
EOF
script_disk /tmp/all.sh /tmp/all.img
rm -f /tmp/v.sock /tmp/v.sock_6000 /tmp/v9.sock /tmp/v9.sock_6000
netbench echo unix:/tmp/v.sock_6000 1000 >/dev/null 2>&1 &
e1=$!
netbench echo unix:/tmp/v9.sock_6000 1000 >/dev/null 2>&1 &
e2=$!
within 10 test -S /tmp/v.sock_6000 && within 10 test -S /tmp/v9.sock_6000
chown 69999 /tmp/v.sock_6000 /tmp/v9.sock_6000
I=/guest/net-initrd.img
vireo run --initrd $I --cpus 2 --memory 256M --disk /tmp/all.img --rng --balloon \
  --net user,hostfwd=tcp:127.0.0.1:18080-:80 --vsock cid=7,socket=/tmp/v.sock \
  --api-socket /tmp/a.sock --console file:/tmp/a1.log --append '-- sh /dev/vda' \
  >/tmp/a1.err 2>&1 </dev/null &
p=$!
within 150 has_line /tmp/a1.log TICK=3 || bad "the all-devices guest did not start: $(tail -n 5 /tmp/a1.err)"
served() { wget -q -O /tmp/got "http://127.0.0.1:$1/g" && [ "$(sha256sum /tmp/got | cut -c1-64)" = "$2" ]; }
echoed() { netbench send "fc:$1:5000" 65536 2>&1 | grep -q "BACK_BYTES=65536 BACK_MATCH=1"; }
has_g=$(log /tmp/a1.log | sed -n 's/^GUEST-HAS=\([0-9a-f]*\).*/\1/p')
served 18080 "$has_g" && echoed /tmp/v.sock || bad "all devices: before the save, TCP or vsock did not work"
vireo mem-set --api-socket /tmp/a.sock 160M >/dev/null 2>&1
balloon() { vireo api "$1" balloon.info 2>/dev/null | sed -n 's/.*"actual_bytes": *\([0-9]*\).*/\1/p'; }
inflated() { [ "$(balloon /tmp/a.sock)" = $((96 << 20)) ]; }
within 60 inflated || bad "all devices: the balloon did not inflate to 96 MiB ($(balloon /tmp/a.sock))"
vireo save --api-socket /tmp/a.sock /tmp/a.snap >/tmp/save.out 2>&1 ||
  bad "all devices: save failed: $(cat /tmp/save.out)"
reap $p "the saved all-devices domain" 60
# A writable disk is locked by the domain using it: the clone gets a copy of the image as it
# was at the save (docs/snapshot.md).
cp /tmp/all.img /tmp/all-clone.img
ticks=$(last_value /tmp/a1.log TICK)
vireo restore /tmp/a.snap --api-socket /tmp/a.sock --console file:/tmp/a2.log >/tmp/a2.err 2>&1 </dev/null &
p1=$!
vireo restore /tmp/a.snap --name clone --api-socket /tmp/b.sock --console file:/tmp/b2.log \
  --disk /tmp/all-clone.img \
  --net user,hostfwd=tcp:127.0.0.1:18081-:80,mac=52:54:00:00:00:09 --vsock cid=9,socket=/tmp/v9.sock \
  >/tmp/b2.err 2>&1 </dev/null &
p2=$!
ticking() { [ "$(last_value "$1" TICK)" -ge $((ticks + $2)) ] 2>/dev/null; }
within 90 ticking /tmp/a2.log 12 && within 90 ticking /tmp/b2.log 12
for c in a2 b2; do
  t=$(first_value /tmp/$c.log TICK)
  cpus=$(log /tmp/$c.log | sed -n 's/^TICK=.* CPUS=\([0-9]*\).*/\1/p' | sort -u | tr '\n' ' ')
  hw=$(log /tmp/$c.log | grep -c '^TICK=.* HW=[0-9a-f]\{8\} ')
  disk=$( (log /tmp/a1.log; log /tmp/$c.log) | sed -n 's/^TICK=.* DISK=\([0-9a-f]*\).*/\1/p' | sort -u | wc -l)
  g2h=$(log /tmp/$c.log | grep -c 'G2H: .*BACK_MATCH=1')
  if [ -n "$t" ] && [ "$t" -gt "$ticks" ] && [ "$t" -le $((ticks + 2)) ] && [ "$cpus" = "2 " ] &&
     [ "$hw" -ge 10 ] && [ "$disk" = 1 ] && [ "$g2h" -ge 1 ] && ! has_line /tmp/$c.log VIREO-GUEST-INIT; then
    ok "all devices, restore $c: ticks go on ($ticks, then $t), 2 vCPUs, virtio-rng and virtio-blk read on every tick, the guest reached the host over vsock from its CID ($g2h times)"
  else
    bad "all devices, restore $c: first tick ${t:-none} after $ticks, CPUs '$cpus', $hw rng reads, $disk disk contents, $g2h guest-to-host vsock: $(tail -n 3 /tmp/$c.err)"
  fi
done
if served 18080 "$has_g" && served 18081 "$has_g"; then
  ok "all devices: each clone serves the guest's file on its own forwarded TCP port (18080, 18081)"
else bad "all devices: TCP through the forwarded ports after the restore: $(netstat -ltn | grep 1808) $(tail -n 3 /tmp/a2.err /tmp/b2.err)"; fi
if echoed /tmp/v.sock && echoed /tmp/v9.sock; then
  ok "all devices: vsock clients reconnect to each clone (through /tmp/v.sock and /tmp/v9.sock)"
else bad "all devices: vsock after the restore"; fi
b1=$(balloon /tmp/a.sock)
b2=$(balloon /tmp/b.sock)
if [ "$b1" = $((96 << 20)) ] && [ "$b2" = $((96 << 20)) ]; then
  ok "all devices: the balloon stays inflated by 96 MiB in both"
else bad "all devices: balloon after the restore: $b1 and $b2 bytes"; fi
kill $p1 $p2 $e1 $e2 2>/dev/null
reap $p1 "restore a" 30
reap $p2 "restore b" 30

echo "$pass passed, $fail failed"
[ $fail = 0 ]
