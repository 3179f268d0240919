#!/bin/sh
# Network and host-channel tests: virtio-net (user mode and tap), virtio-vsock, the VMM pool,
# virtio-balloon.
# Runs inside the test host (tests/host/run.sh) with Debian's cloud kernel as the guest. Each
# guest gets its script as a raw disk (/dev/vda). Ends with "N passed, M failed".
. /opt/vireo/files/lib.sh  # script_disk, within, reap (its ok and bad are replaced below)
pass=0
fail=0
ok() { echo "PASS: $1"; pass=$((pass + 1)); }
bad() { echo "FAIL: $1"; fail=$((fail + 1)); echo "---- output"; tail -n 30 /tmp/out; echo "----"; }
has() { grep -q -- "$1" /tmp/out; }
sha() { sha256sum "$1" | cut -c1-64; }
# wait_for TEXT [SECONDS]: until TEXT appears in /tmp/out.
wait_for() {
  n=0
  while ! has "$1" && [ $n -lt "${2:-90}" ]; do sleep 1; n=$((n + 1)); done
  has "$1"
}
# Complete console lines only (they end in CR LF): the guest may be mid-line as we read.
guest_value() { grep "$(printf '\r')\$" "${2:-/tmp/out}" | tr -d '\r' | sed -n "s/^$1=\([^ ]*\).*/\1/p" | tail -n1; }

# The sandbox (docs/security.md), from the host's side: `vireo run` as root keeps a small
# keeper process; the domain is its child. jail_report PID prints the domain's thread count
# and then what is wrong with its threads, root and namespaces (nothing when all is right).
cat >/tmp/jail.sh <<'EOF'
vmm_pid() { c=$(cat /proc/$1/task/$1/children 2>/dev/null | cut -d' ' -f1); echo "${c:-$1}"; }
jail_report() {
  d=$(vmm_pid "$1"); n=0; wrong=""
  for t in /proc/$d/task/*; do
    n=$((n + 1)); st=$(cat "$t/status"); c=$(cat "$t/comm")
    echo "$st" | grep -q '^Uid:[[:space:]]*69999[[:space:]]' || wrong="$wrong $c:uid"
    echo "$st" | grep -q '^CapEff:[[:space:]]*0000000000000000$' || wrong="$wrong $c:CapEff"
    echo "$st" | grep -q '^NoNewPrivs:[[:space:]]*1$' || wrong="$wrong $c:NoNewPrivs"
    echo "$st" | grep -q '^Seccomp:[[:space:]]*2$' || wrong="$wrong $c:Seccomp"
  done
  [ "$(stat -L -c %d:%i /proc/$d/root)" != "$(stat -L -c %d:%i /)" ] || wrong="$wrong root"
  [ "$(readlink /proc/$d/ns/mnt)" != "$(readlink /proc/self/ns/mnt)" ] || wrong="$wrong mnt-ns"
  [ "$(readlink /proc/$d/ns/pid)" != "$(readlink /proc/self/ns/pid)" ] || wrong="$wrong pid-ns"
  echo "$n$wrong"
}
EOF
. /tmp/jail.sh
jailed() {  # jailed PID WHAT
  r=$(jail_report "$1")
  case $r in
    *" "*) bad "$2: the domain is not jailed as documented: threads $r" ;;
    *) ok "$2: all $r threads of the domain: uid 69999, CapEff 0, NoNewPrivs 1, Seccomp 2; own root, mount and PID namespaces" ;;
  esac
}

mkdir -p /tmp/www
: >/tmp/out
head -c 3000000 /dev/urandom >/tmp/www/blob
blob_sum=$(sha /tmp/www/blob)

# --- user mode: DHCP, a host service on loopback, a forwarded port into the guest ----------
# Then the VMM pool (--vmm-pool 25M: 32 TCP host sockets of 800 KiB) against a guest opening 300 TCP
# connections to a host program that accepts them all: it keeps the ones the pool holds, the
# rest are refused at once (a reset: ECONNREFUSED, not a timeout) and counted; once both sides
# closed them it connects again. Forwarded ports (the host's side, not charged) work meanwhile.
# Last, the guest sends 50 MB to a host program that never reads: what the kernel holds for
# slirp's socket stays at its cap, 128 KiB and a packet of up to 64 KiB (4 MB without a cap).
httpd -p 127.0.0.1:8080 -h /tmp/www
netbench accept tcp:6100 200 >/tmp/u-accept 2>&1 &
uacc_pid=$!
netbench accept tcp:6200 300 >/dev/null 2>&1 &
ustall_pid=$!
cat >/tmp/user.sh <<'EOF'
udhcpc -i eth0 -q -n -t 5 >/dev/null 2>&1
echo "GUEST-IP=$(ip -o -4 addr show eth0 | sed -n 's/.* inet \([0-9.]*\).*/\1/p')"
wget -q -O /tmp/b http://10.0.2.2:8080/blob && echo "GUEST-GOT=$(sha256sum /tmp/b | cut -c1-64)"
mkdir -p /tmp/w && head -c 2000000 /dev/urandom >/tmp/w/g && echo "GUEST-HAS=$(sha256sum /tmp/w/g | cut -c1-64)"
httpd -p 80 -h /tmp/w
echo GUEST-SERVING
netbench sink tcp:81 >/dev/null
netbench hold tcp:10.0.2.2:6100 300 6
# Sockets the host closed first stay in slirp's TIME_WAIT (10 s): connect again until one fits.
n=0; until wget -q -O /tmp/b2 http://10.0.2.2:8080/blob || [ $n -ge 30 ]; do sleep 1; n=$((n + 1)); done
echo "AFTER_S=$n"
echo "GUEST-AFTER=$(sha256sum /tmp/b2 | cut -c1-64)"
# (its connection may be refused while the ones before are in TIME_WAIT: tries again)
(n=0; until netbench send tcp:10.0.2.2:6200 50000000 || [ $n -ge 30 ]; do sleep 1; n=$((n + 1)); done) >/dev/null 2>&1 &
echo GUEST-STALLING
sleep 60
EOF
script_disk /tmp/user.sh /tmp/user.img
vireo run --initrd /guest/net-initrd.img \
  --net user,hostfwd=tcp:127.0.0.1:18080-:80,hostfwd=tcp:127.0.0.1:18081-:81 \
  --disk /tmp/user.img --vmm-pool 25M --api-socket /tmp/u.api \
  --append '-- sh /dev/vda' >/tmp/out 2>&1 </dev/null &
pid=$!
if wait_for GUEST-SERVING && [ "$(guest_value GUEST-IP)" = 10.0.2.15 ] &&
   [ "$(guest_value GUEST-GOT)" = "$blob_sum" ]; then
  ok "user mode: DHCP lease 10.0.2.15, 3 MB fetched from a host server on 127.0.0.1, checksum matches"
else bad "user mode: DHCP + fetch from the host"; fi
# The guest's file through the forwarded port 18080, intact.
fetch_forwarded() {
  rm -f /tmp/fwd
  wget -q -O /tmp/fwd http://127.0.0.1:18080/g
  [ -s /tmp/fwd ] && [ "$(sha /tmp/fwd)" = "$(guest_value GUEST-HAS)" ]
}
if fetch_forwarded; then
  ok "user mode: hostfwd tcp:127.0.0.1:18080 reaches the guest's httpd on port 80, checksum matches"
else bad "user mode: hostfwd into the guest"; fi
jailed $pid "sandbox with user networking (slirp thread, host network)"
# The guest floods once told so through a forwarded port (no connection of its own before).
tries=0; while [ $tries -lt 10 ] && [ -z "$(guest_value HOLD_OK)" ]; do
  netbench send tcp:127.0.0.1:18081 16 >/dev/null 2>&1
  n=0; while [ -z "$(guest_value HOLD_OK)" ] && [ $n -lt 12 ]; do sleep 1; n=$((n + 1)); done
  tries=$((tries + 1))
done
held=$(guest_value HOLD_OK)
set -- $(grep "$(printf '\r')\$" /tmp/out | tr -d '\r' | sed -n 's/^HOLD_OK=.* HOLD_REFUSED=\([0-9]*\) HOLD_MS=\([0-9]*\).*/\1 \2/p' | tail -n1)
refused=${1:-0} ms=${2:-99999}
counters=$(vireo api /tmp/u.api metrics | tr -d ' \n' | grep -o '"host_sockets":[0-9]*,"pool_refused":[0-9]*')
sockets=$(echo "$counters" | sed -n 's/.*"host_sockets":\([0-9]*\).*/\1/p')
prefused=$(echo "$counters" | sed -n 's/.*"pool_refused":\([0-9]*\).*/\1/p')
if [ "${held:-0}" -ge 28 ] && [ "${held:-0}" -le 32 ] && [ "$refused" -ge 260 ] &&
   [ "${prefused:-0}" -ge "$refused" ] && [ "${sockets:-99}" -le 32 ] && [ "$ms" -lt 30000 ]; then
  ok "vmm pool (user network): of 300 guest TCP connections $held were held, $refused refused at once (ECONNREFUSED; all 300 in $ms ms); $sockets host sockets, $prefused refusals counted"
else bad "vmm pool (user network): held ${held:-none}, refused $refused in $ms ms; $counters; $(tail -n 3 /tmp/out)"; fi
if fetch_forwarded; then
  ok "vmm pool (user network): meanwhile the forwarded port still reaches the guest"
else bad "vmm pool (user network): the forwarded port during the flood"; fi
kill $uacc_pid 2>/dev/null  # the host side closes too: slirp frees the sockets
if wait_for GUEST-AFTER 60 && [ "$(guest_value GUEST-AFTER)" = "$blob_sum" ]; then
  ok "vmm pool (user network): once its connections are closed the guest connects again (3 MB fetched, $(guest_value AFTER_S) s after)"
else bad "vmm pool (user network): after the flood ($(tail -n 3 /tmp/out))"; fi
# /proc/net/tcp: slirp's socket to port 6200 (hex 1838), its send queue (bytes, hex).
stalled_queue() {
  awk '$3 ~ /:1838$/ && $2 !~ /:1838$/ { split($5, q, ":"); print q[1]; exit }' /proc/net/tcp
}
if wait_for GUEST-STALLING 30; then
  # Until the queue stops growing: the host's receive buffer, then slirp's send buffer filled.
  n=0; while [ -z "$(stalled_queue)" ] && [ $n -lt 40 ]; do sleep 1; n=$((n + 1)); done
  q=0 last=-1 n=0
  while { [ "$q" != "$last" ] || [ "$q" = 0 ]; } && [ $n -lt 30 ]; do
    last=$q; sleep 2; n=$((n + 1))
    sq=$(stalled_queue); q=$((0x${sq:-0}))
  done
  if [ "$q" -gt 0 ] && [ "$q" -le 196608 ]; then
    ok "vmm pool (user network): a host peer that never reads holds $q bytes in slirp's socket (its kernel buffer's cap: 128 KiB and a packet; 4 MB without)"
  else bad "vmm pool (user network): slirp's socket to a peer that never reads holds $q bytes ($(grep -c ':1838 ' /proc/net/tcp) sockets of port 6200: $(awk '$2 ~ /:1838$/ || $3 ~ /:1838$/ { print $2, $3, $4, $5 }' /proc/net/tcp | head -n 4 | tr '\n' ';'))"; fi
else bad "vmm pool (user network): the stalled sender ($(tail -n 3 /tmp/out))"; fi
kill $pid $uacc_pid $ustall_pid 2>/dev/null; wait $pid

# --- tap, in a network namespace of the test's own -----------------------------------------
# With --irqchip userspace: every virtio-net interrupt goes from its eventfd through vireo's
# I/O APIC into vireo's local APIC and is injected by the vCPU's thread.
cat >/tmp/tap-guest.sh <<'EOF'
ip addr add 192.168.77.2/24 dev eth0
ip link set eth0 up
mkdir -p /tmp/w && head -c 2000000 /dev/urandom >/tmp/w/g && echo "GUEST-HAS=$(sha256sum /tmp/w/g | cut -c1-64)"
httpd -p 8081 -h /tmp/w
wget -q -O /tmp/b http://192.168.77.1:8080/blob && echo "GUEST-GOT=$(sha256sum /tmp/b | cut -c1-64)"
echo GUEST-SERVING
sleep 60
EOF
script_disk /tmp/tap-guest.sh /tmp/tap.img
cat >/tmp/tap-host.sh <<'EOF'
ip link set lo up
vireo run --irqchip userspace --net tap=vtap0,mac=52:54:00:aa:bb:cc --disk /tmp/tap.img --append '-- cat /sys/class/net/eth0/address; sh /dev/vda' >/tmp/out 2>&1 </dev/null &
pid=$!
n=0; while ! ip link show vtap0 >/dev/null 2>&1 && [ $n -lt 600 ]; do sleep 0.1; n=$((n + 1)); done
ip addr add 192.168.77.1/24 dev vtap0
ip link set vtap0 up
httpd -p 192.168.77.1:8080 -h /tmp/www
n=0; while ! grep -q GUEST-SERVING /tmp/out && [ $n -lt 90 ]; do sleep 1; n=$((n + 1)); done
wget -q -O /tmp/hb http://192.168.77.2:8081/g
. /tmp/jail.sh
r=$(jail_report $pid)
[ "$(readlink /proc/$(vmm_pid $pid)/ns/net)" != "$(readlink /proc/self/ns/net)" ] || r="$r net-ns"
echo "$r" >/tmp/tap-jail
kill $pid; wait $pid
EOF
rm -f /tmp/hb
timeout 150 unshare -n sh /tmp/tap-host.sh
if [ "$(guest_value GUEST-GOT)" = "$blob_sum" ] && has 52:54:00:aa:bb:cc; then
  ok "tap (userspace irqchip): guest (MAC 52:54:00:aa:bb:cc) fetched 3 MB from the host side, checksum matches"
else bad "tap: host -> guest"; fi
if [ -s /tmp/hb ] && [ "$(sha /tmp/hb)" = "$(guest_value GUEST-HAS)" ]; then
  ok "tap (userspace irqchip): host fetched 2 MB from the guest, checksum matches"
else bad "tap: guest -> host"; fi
case "$(cat /tmp/tap-jail 2>/dev/null)" in
  *" "*|"") bad "sandbox with a tap: the domain is not jailed as documented: threads $(cat /tmp/tap-jail 2>/dev/null)" ;;
  *) ok "sandbox with a tap: all $(cat /tmp/tap-jail) threads jailed, in a network namespace of its own" ;;
esac

# --- rate limits on a tap: each direction held to its limit; a change at run time ------------
# Limits count Ethernet frame bytes (the virtio header aside); TCP's payload is within a few per
# cent of them (TSO frames of up to 64 KiB). 5 MB each way at 1 MB/s: 5 s each, within 10 %.
# Then, in a 40 MB download at 1 MB/s, the receive limit goes to 4 MB/s: the second after the
# change (from 1 s to 2 s after it, the download still running) must already run at the new rate.
# The "second" is measured, not assumed: on a loaded test host each `vireo api` call may take
# seconds, so the window is whatever the clock says, and the download must not have ended in it.
head -c 5000000 /dev/urandom >/tmp/www/dl5
head -c 40000000 /dev/urandom >/tmp/www/dl40
rm -f /tmp/www/go /tmp/www/ready
cat >/tmp/lim-guest.sh <<'EOF'
ip addr add 192.168.77.2/24 dev eth0
ip link set eth0 up
mkdir -p /tmp/w && head -c 5000000 /dev/urandom >/tmp/w/up
httpd -p 8081 -h /tmp/w
t() { cut -d' ' -f1 /proc/uptime; }
until wget -q -O /dev/null http://192.168.77.1:8080/ready 2>/dev/null; do sleep 0.2; done
a=$(t); wget -q -O /dev/null http://192.168.77.1:8080/dl5; b=$(t)
echo "GUEST-RX $a $b"
until wget -q -O /dev/null http://192.168.77.1:8080/go 2>/dev/null; do sleep 0.2; done
wget -q -O /dev/null http://192.168.77.1:8080/dl40 && echo GUEST-BIG-DONE
sleep 60
EOF
script_disk /tmp/lim-guest.sh /tmp/lim.img
cat >/tmp/lim-host.sh <<'EOF'
ip link set lo up
rm -f /tmp/lim.api /tmp/lim-result
vireo run --net tap=vtap1,bps=1000000 --api-socket /tmp/lim.api --disk /tmp/lim.img \
  --append '-- sh /dev/vda' >/tmp/out 2>&1 </dev/null &
pid=$!
n=0; while ! ip link show vtap1 >/dev/null 2>&1 && [ $n -lt 600 ]; do sleep 0.1; n=$((n + 1)); done
ip addr add 192.168.77.1/24 dev vtap1
ip link set vtap1 up
httpd -p 192.168.77.1:8080 -h /tmp/www
: >/tmp/www/ready
n=0; while ! grep -q GUEST-RX /tmp/out && [ $n -lt 120 ]; do sleep 1; n=$((n + 1)); done
now() { cut -d" " -f1 /proc/uptime; }
a=$(now); wget -q -O /tmp/lim-up http://192.168.77.2:8081/up; b=$(now)
echo "HOST-TX $a $b $(stat -c %s /tmp/lim-up 2>/dev/null)" >>/tmp/lim-result
rx_bytes() { vireo api /tmp/lim.api metrics | tr -d ' \n' | grep -o '"rx_bytes":[0-9]*' | cut -d: -f2; }
: >/tmp/www/go
# Once the download runs (a megabyte in), the limit changes.
n=0; while [ "$(rx_bytes)" -lt 6500000 ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
vireo io-limit --api-socket /tmp/lim.api net0 rx-bps=4000000,tx-bps=1000000 >>/tmp/lim-result
c=$(now); sleep 1; b1=$(rx_bytes); t1=$(now); sleep 1; b2=$(rx_bytes); t2=$(now)
done2=$(grep -c GUEST-BIG-DONE /tmp/out)
echo "HOST-CHANGE $c $t1 $b1 $t2 $b2 $done2" >>/tmp/lim-result
vireo io-limit --api-socket /tmp/lim.api net0 >>/tmp/lim-result
vireo api /tmp/lim.api metrics | tr -d ' \n' | grep -o '"[rt]x_throttled_ms":[0-9]*' >>/tmp/lim-result
kill $pid; wait $pid
EOF
timeout 200 unshare -n sh /tmp/lim-host.sh
set -- $(tr -d '\r' </tmp/out | sed -n 's/^GUEST-RX //p' | tail -n1)
rx_s=$(awk "BEGIN { printf \"%.2f\", ${2:-0} - ${1:-0} }")
set -- $(sed -n 's/^HOST-TX //p' /tmp/lim-result)
tx_s=$(awk "BEGIN { printf \"%.2f\", ${2:-0} - ${1:-0} }")
if [ "${3:-0}" = 5000000 ] && awk "BEGIN { exit !($rx_s >= 4.5 && $rx_s <= 5.5 && $tx_s >= 4.5 && $tx_s <= 5.5) }"; then
  ok "net rate limit bps=1000000 on a tap: 5 MB to the guest in $rx_s s, 5 MB from it in $tx_s s"
else bad "net rate limits: 5 MB to the guest in $rx_s s, from it in $tx_s s (want 4.5 to 5.5); $(cat /tmp/lim-result)"; fi
set -- $(sed -n 's/^HOST-CHANGE //p' /tmp/lim-result)
rate=$(awk "BEGIN { printf \"%.0f\", (${5:-0} - ${3:-0}) / ((${4:-0} - ${2:-0}) + 1e-9) }")
if grep -q "net0: rx-bps=4000000,tx-bps=1000000" /tmp/lim-result &&
   [ "${6:-1}" = 0 ] && awk "BEGIN { exit !($rate >= 3400000 && $rate <= 4400000) }"; then
  ok "vireo io-limit at run time: receive 1 -> 4 MB/s; from 1 s to 2 s after the change the guest got $rate B/s"
else bad "io-limit at run time: $rate B/s in the second after the first; $(cat /tmp/lim-result)"; fi

# --- vsock: host -> guest and guest -> host, 1 MiB echoed intact each way ------------------
I=/guest/net-initrd.img
rm -f /tmp/v.sock
netbench echo unix:/tmp/v.sock_6000 >/tmp/host-echo 2>&1 &
echo_pid=$!
# The sandboxed domain connects as its own uid (69999): the host side's socket lets it.
n=0; while [ ! -S /tmp/v.sock_6000 ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
chown 69999 /tmp/v.sock_6000
vireo run --initrd $I --vsock cid=7,socket=/tmp/v.sock --append \
  '-- netbench echo vsock:5000 2 & sleep 1; echo GUEST-LISTENING; netbench send vsock:2:6000 1048576; sleep 300' \
  >/tmp/out 2>&1 </dev/null &
pid=$!
wait_for GUEST-LISTENING
netbench send fc:/tmp/v.sock:5000 1048576 >/tmp/h2g 2>&1
if grep -q "SEND_BYTES=1048576 .*BACK_BYTES=1048576 BACK_MATCH=1" /tmp/h2g; then
  ok "vsock host -> guest: CONNECT 5000 through /tmp/v.sock, 1 MiB echoed back intact"
else bad "vsock host -> guest ($(cat /tmp/h2g))"; fi
wait_for "BACK_MATCH" 30
if tr -d '\r' </tmp/out | grep -q "SEND_BYTES=1048576 .*BACK_BYTES=1048576 BACK_MATCH=1"; then
  ok "vsock guest -> host: CID 2 port 6000 reached /tmp/v.sock_6000, 1 MiB echoed back intact"
else bad "vsock guest -> host"; fi
# A port nobody listens on: the host side is told (connection closed, no OK).
if ! netbench send fc:/tmp/v.sock:5999 16 >/tmp/h2g 2>&1 && grep -q "no OK" /tmp/h2g; then
  ok "vsock: CONNECT to a port the guest does not listen on is refused"
else bad "vsock: refused port ($(cat /tmp/h2g))"; fi
jailed $pid "sandbox with vsock (its socket's directory bound read-only)"

# --- the VMM pool: a guest opening 2000 vsock connections to a host program that accepts them
# all gets the ones its pool holds (--vmm-pool 256K: 64 of 4 KiB); the rest are reset and
# counted; the domain runs on and connects again once it closed them; the vsock domain above,
# its neighbour, is unaffected meanwhile.
rm -f /tmp/f.sock
netbench accept unix:/tmp/f.sock_6000 100 >/tmp/f-accept 2>&1 &
acc_pid=$!
netbench echo unix:/tmp/f.sock_6001 >/tmp/f-echo 2>&1 &
fecho_pid=$!
n=0; while { [ ! -S /tmp/f.sock_6000 ] || [ ! -S /tmp/f.sock_6001 ]; } && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
chown 69999 /tmp/f.sock_6000 /tmp/f.sock_6001
vireo run --initrd $I --vsock cid=8,socket=/tmp/f.sock --vmm-pool 256K --api-socket /tmp/f.api \
  --append '-- netbench hold vsock:2:6000 2000 12; echo FLOOD-OVER; netbench send vsock:2:6001 65536; sleep 300' \
  >/tmp/fout 2>&1 </dev/null &
flood=$!
n=0; while [ -z "$(guest_value HOLD_OK /tmp/fout)" ] && [ $n -lt 120 ]; do sleep 1; n=$((n + 1)); done
held=$(guest_value HOLD_OK /tmp/fout)
pool=$(vireo api /tmp/f.api info | tr -d ' \n' | sed -n 's/.*"vmm_pool":{\([^}]*\)}.*/\1/p')
refused=$(echo "$pool" | sed -n 's/.*"refused":\([0-9]*\).*/\1/p')
used=$(echo "$pool" | sed -n 's/.*"used_bytes":\([0-9]*\).*/\1/p')
high=$(echo "$pool" | sed -n 's/.*"high_water_bytes":\([0-9]*\).*/\1/p')
if [ "${held:-0}" -ge 60 ] && [ "${held:-0}" -le 64 ] && [ "${refused:-0}" -ge 1900 ] &&
   [ "${high:-0}" -le 262144 ] && [ "${used:-0}" -le 262144 ]; then
  ok "vmm pool: of 2000 guest vsock connections $held were held, the rest reset; the pool refused $refused, used $used of 262144 bytes (high-water $high)"
else bad "vmm pool: held ${held:-none}; pool: $pool; $(tail -n 3 /tmp/fout)"; fi
netbench send fc:/tmp/v.sock:5000 1048576 >/tmp/h2g 2>&1
if grep -q "BACK_BYTES=1048576 BACK_MATCH=1" /tmp/h2g && ! grep -q FLOOD-OVER /tmp/fout; then
  ok "vmm pool: meanwhile the neighbour domain's vsock echoed 1 MiB intact"
else bad "vmm pool: the neighbour ($(cat /tmp/h2g); $(tail -n 3 /tmp/out))"; fi
n=0; while ! tr -d '\r' </tmp/fout | grep -q BACK_MATCH && [ $n -lt 60 ]; do sleep 1; n=$((n + 1)); done
if tr -d '\r' </tmp/fout | grep -q "SEND_BYTES=65536 .*BACK_MATCH=1" && kill -0 $flood 2>/dev/null; then
  ok "vmm pool: the flooding domain runs on and connects again once its connections are closed"
else bad "vmm pool: after the flood ($(tail -n 3 /tmp/fout))"; fi
kill $flood $acc_pid $fecho_pid 2>/dev/null; wait $flood 2>/dev/null

kill $pid $echo_pid 2>/dev/null; wait $pid
if [ ! -e /tmp/v.sock ]; then ok "vsock: the socket is removed when vireo exits"
else bad "vsock: /tmp/v.sock left behind"; fi

# --- balloon: inflate by half, the guest and the host both see it, deflate restores --------
cat >/tmp/balloon.sh <<'EOF'
dd if=/dev/zero of=/tmp/fill bs=1M count=300 2>/dev/null
echo GUEST-FILLED
rm /tmp/fill
while true; do echo "MEMKB=$(sed -n 's/^MemTotal: *\([0-9]*\).*/\1/p' /proc/meminfo)"; sleep 1; done
EOF
script_disk /tmp/balloon.sh /tmp/balloon.img
rm -f /tmp/api.sock
vireo run --memory 1G --balloon --rng --api-socket /tmp/api.sock --disk /tmp/balloon.img \
  --append '-- sh /dev/vda' >/tmp/out 2>&1 </dev/null &
pid=$!
wait_for GUEST-FILLED
jailed $pid "sandbox with a disk, balloon, rng and the API"
keeper=$pid
pid=$(vmm_pid $pid)  # RSS is the domain's, not its keeper's
sleep 1
rss_full=$(sed -n 's/^VmRSS:[^0-9]*\([0-9]*\).*/\1/p' /proc/$pid/status)
mem_full=$(guest_value MEMKB)
vireo mem-set --api-socket /tmp/api.sock 512M >/dev/null
n=0
while [ $n -lt 60 ]; do
  actual=$(vireo api /tmp/api.sock balloon.info '{"refresh": false}' | sed -n 's/.*"actual_bytes": \([0-9]*\).*/\1/p')
  [ "${actual:-0}" -ge $((512 << 20)) ] && break
  sleep 1; n=$((n + 1))
done
sleep 2
rss_small=$(sed -n 's/^VmRSS:[^0-9]*\([0-9]*\).*/\1/p' /proc/$pid/status)
mem_small=$(guest_value MEMKB)
# The guest filled its memory, then freed it: free page reporting may already have returned
# much of it, so the check is that vireo's RSS fits the 512 MiB left plus its overhead.
if [ "${actual:-0}" -ge $((512 << 20)) ] && [ "$mem_small" -lt $((mem_full - 500 * 1024)) ] &&
   [ "$rss_small" -lt $((512 * 1024 + 64 * 1024)) ]; then
  ok "balloon: mem-set 512M: guest MemTotal ${mem_full} -> ${mem_small} KiB, vireo RSS $((rss_full / 1024)) -> $((rss_small / 1024)) MiB"
else bad "balloon inflate (actual ${actual:-?}, MemTotal $mem_full -> $mem_small KiB, RSS $rss_full -> $rss_small KiB)"; fi
vireo mem-set --api-socket /tmp/api.sock 1G >/dev/null
n=0
while [ $n -lt 60 ] && [ "$(guest_value MEMKB)" -lt $((mem_full - 4096)) ]; do sleep 1; n=$((n + 1)); done
if [ "$(guest_value MEMKB)" -ge $((mem_full - 4096)) ]; then
  ok "balloon: mem-set 1G deflates: MemTotal back to $(guest_value MEMKB) KiB"
else bad "balloon deflate (MemTotal $(guest_value MEMKB) KiB)"; fi
vireo api /tmp/api.sock balloon.info >/tmp/info
if grep -q '"free-memory"' /tmp/info; then ok "balloon: the guest's statistics arrive (free-memory, ...)"
else bad "balloon statistics ($(cat /tmp/info))"; fi
if vireo api /tmp/api.sock balloon.set '{"memory": "2G"}' 2>&1 | grep -q "more than the domain"; then
  ok "API: balloon.set beyond the domain's memory is refused"
else bad "API: balloon.set 2G"; fi
if vireo api /tmp/api.sock no.such.method 2>&1 | grep -q "unknown-method"; then
  ok "API: unknown methods get a structured error"
else bad "API: unknown method"; fi
kill $keeper; wait $keeper
if [ ! -e /tmp/api.sock ]; then ok "API: the socket is removed when vireo exits"
else bad "API: /tmp/api.sock left behind"; fi

# --- bad input: one clear line, nothing started --------------------------------------------
check_error() {  # check_error "needle" ARGS...
  needle=$1; shift
  timeout 30 vireo run "$@" >/tmp/out 2>&1 </dev/null; rc=$?
  if [ $rc != 0 ] && has "$needle" && ! has VIREO-GUEST-INIT; then ok "refused: $* ($needle)"
  else bad "expected \"$needle\" for: $* (status $rc)"; fi
}
check_error "is not XX:XX" --net user,mac=52:54:00:zz:00:01
check_error "multicast" --net tap=t0,mac=01:00:5e:00:00:01
check_error "hostfwd must be tcp" --net user,hostfwd=sctp:1-:2
check_error "port must be a number" --net user,hostfwd=tcp::99999-:80
check_error "hostfwd is for user-mode" --net tap=t0,hostfwd=tcp::8000-:80
check_error "tap name must be" --net tap=a-name-far-too-long-for-linux
check_error "unknown option" --net user,speed=fast
check_error "cannot forward tcp 127.0.0.1:8080" --net user,hostfwd=tcp:127.0.0.1:8080-:80
: >/tmp/exists.sock
check_error "already exists" --vsock cid=5,socket=/tmp/exists.sock
check_error "cid must be from 3" --vsock cid=2,socket=/tmp/x.sock
check_error "expected cid=N,socket=PATH" --vsock cid=9
check_error "socket path is" --vsock cid=9,socket=/tmp/$(printf '%0120d' 0)
check_error "exists and is not a socket" --api-socket /tmp/exists.sock

echo "$pass passed, $fail failed"
[ $fail = 0 ]
