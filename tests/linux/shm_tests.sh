#!/bin/sh
# Shared memory between Debian domains of one host file, inside the test host: a 16 MiB
# [shm.ring] for a (owner), b and c (read-only); d is not listed. Each guest runs
# shm_guest.sh from a disk: A writes a word into BAR2 and rings B's doorbell; B, waiting on
# /dev/uio0 (uio_pci_generic, INTx), wakes and reads it, then answers the other way; C sees A's
# word and its own write does not reach the region; D has no such device. Then A is destroyed
# and B runs on. B's interrupt controllers are vireo's (irqchip = "split"): its INTx is a level
# interrupt through vireo's I/O APIC, ended by KVM's EOI exit. Ends with "N passed, M failed".
. /opt/vireo/files/lib.sh
vireo=vireo
mkdir -p /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null
R=/tmp/run
script_disk /opt/vireo/files/shm_guest.sh /tmp/guest.img
C="console=ttyS0 reboot=k panic=-1 quiet"
dom() {
  cat <<TOML
[domains.$1]
memory = "192M"
disks = ["/tmp/guest.img,readonly"]
cmdline = "$C -- sh /dev/vda $1"
TOML
  if [ "$1" = b ]; then echo 'irqchip = "split"'; fi
}
{
  echo "run_dir = \"$R\""
  echo 'reserve = "64M"'
  for d in a b c d; do dom $d; done
  cat <<TOML
[shm.ring]
size = "16M"
domains = ["a", "b", "c"]
readonly = ["c"]
TOML
} >/tmp/host.toml
vireo up /tmp/host.toml >/tmp/up.out 2>&1 &
up=$!
log() { cat "$R/$1.log" 2>/dev/null | tr -d '\r'; }
says() { log "$1" | grep -q "^$2"; }
said() { log "$1" | sed -n "s/^$2 *//p" | head -n1; }
if within 240 says a SHM-DONE && within 60 says b SHM-DONE && within 60 says c SHM-DONE; then
  ok "three domains ran their part (a, b, c)"
else
  bad "not every domain finished: $(tail -n 3 /tmp/up.out | tr '\n' ' ')"
  for d in a b c; do echo "---- $d"; log $d | grep -v '^\[' | tail -n 8; done
fi
[ "$(said a SHM-ID)" = "0x1af4:0x1110" ] && [ "$(said a SHM-IVPOS)" = 0x00000000 ] &&
  [ "$(said b SHM-IVPOS)" = 0x00000001 ] && [ "$(said c SHM-IVPOS)" = 0x00000002 ] &&
  ok "each guest sees an ivshmem device (1af4:1110) with its peer number (0, 1, 2)" ||
  bad "device or IVPosition: a $(said a SHM-ID) $(said a SHM-IVPOS), b $(said b SHM-IVPOS), c $(said c SHM-IVPOS)"
[ "$(said b SHM-B-WOKE)" = 1 ] && [ "$(said b SHM-B-GOT)" = 0xA11CE000 ] &&
  ok "A -> B: B woke on /dev/uio0 (A's doorbell) and read A's word from the region" ||
  bad "A -> B: woke '$(said b SHM-B-WOKE)', read '$(said b SHM-B-GOT)'"
[ "$(said a SHM-A-WOKE)" = 1 ] && [ "$(said a SHM-A-GOT)" = 0xB0B0B0B0 ] &&
  ok "B -> A: A woke on its doorbell and read B's answer" ||
  bad "B -> A: woke '$(said a SHM-A-WOKE)', read '$(said a SHM-A-GOT)'"
[ "$(said c SHM-C-SEES)" = 0xA11CE000 ] && [ "$(said c SHM-C-WROTE)" = 0x00000000 ] &&
  ok "read-only borrower C sees A's word; its write does not reach the region" ||
  bad "read-only: sees '$(said c SHM-C-SEES)', after its write '$(said c SHM-C-WROTE)'"
within 60 says d SHM-NODEVICE && ok "a domain not listed has no such device ($(said d SHM-NODEVICE))" ||
  bad "d: $(log d | grep SHM | head -n 2)"
info=$(vireo info b --run-dir $R 2>&1)
echo "$info" | grep -q "^shm .*ring: 16 MiB at 0x.*peer 1 of a, b, c, doorbells (1 vector(s)): 1 in" &&
  ok "vireo info b lists the region, its peers and the doorbell it got" ||
  bad "info: $(echo "$info" | grep shm)"
echo "$info" | grep -q "^irqchip *split" && ok "vireo info b: irqchip split (its INTx went through vireo's I/O APIC)" ||
  bad "info b: $(echo "$info" | grep irqchip)"
vireo destroy a --run-dir $R >/dev/null 2>&1
sleep 2
wait_state_dir $R b running 10 && [ "$(field_dir $R a state)" != running ] &&
  ok "destroying A leaves B running" ||
  bad "after destroy a: a $(field_dir $R a state), b $(field_dir $R b state)"
vireo down --run-dir $R >/dev/null 2>&1
reap $up "vireo up" 120
echo "$pass passed, $fail failed"
[ $fail = 0 ]
