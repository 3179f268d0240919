#!/bin/sh
# Runs inside the test host (bench/net.sh). Alternates vireo and QEMU+KVM with the same
# back-ends: a tap device in a network namespace (QEMU: virtio-net-pci on the same kind of tap,
# its own user-space back-end; with vhost-net as a reference row), and vsock (vireo: its Unix
# socket host side; QEMU: vhost-vsock-pci, the kernel's). Prints medians (min-max) and ratios.
# (internal: `net-in-host.sh --tap VMM MIB` runs one tap measurement in a fresh namespace)
if [ "$1" = --tap ]; then tap_only=$2; runs=1; mib=$3; else runs=${1:-3}; mib=${2:-256}; fi
bytes=$((mib << 20))
K=/guest/vmlinuz
I=/guest/bench-initrd.img
export NETBENCH_NOHASH=1
ip link set lo up

# wait_for TEXT [HALF_SECONDS]: until the VMM ($pid) prints TEXT, exits, or time runs out.
wait_for() {
  n=0
  while ! tr -d '\r' </tmp/o | grep -q "$1" && [ $n -lt "${2:-120}" ] && kill -0 "$pid" 2>/dev/null; do
    sleep 0.5; n=$((n + 1))
  done
}
val() { tr -d '\r' <"$2" | sed -n "s/.*$1=\([0-9.]*\).*/\1/p" | tail -n1; }

# one_tap VMM: boots VMM with a tap in this namespace, measures, records.
one_tap() {
  vmm=$1
  C="console=ttyS0 reboot=k panic=-1 quiet -- sh /net-guest.sh tap $bytes"
  case $vmm in
    vireo) vireo run --memory 512M --kernel $K --initrd $I --cmdline "$C" --net tap=vtap0 >/tmp/o 2>&1 </dev/null & ;;
    qemu|qemu-vhost)
      vh=off; [ $vmm = qemu-vhost ] && vh=on
      qemu-system-x86_64 -M q35 -accel kvm -cpu host -m 512M -smp 1 -nodefaults -no-user-config \
        -display none -serial stdio -no-reboot -kernel $K -initrd $I -append "$C" \
        -netdev tap,id=n0,ifname=vtap0,script=no,downscript=no,vhost=$vh \
        -device virtio-net-pci,netdev=n0,romfile= >/tmp/o 2>&1 </dev/null & ;;
  esac
  pid=$!
  n=0; while ! ip link show vtap0 >/dev/null 2>&1 && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
  ip addr add 192.168.77.1/24 dev vtap0; ip link set vtap0 up
  netbench sink tcp:5002 >/tmp/g2h 2>&1 &
  wait_for "LISTENING tcp:5001"
  sleep 0.5
  netbench send tcp:192.168.77.2:5001 $bytes >/dev/null
  wait_for GUEST-BENCH-DONE 600
  netbench rr tcp:192.168.77.2:5003 2000 >/tmp/rr
  echo "$vmm TAP_H2G_MBPS $(val SINK_MBPS /tmp/o)" >>/tmp/results
  echo "$vmm TAP_G2H_MBPS $(val SINK_MBPS /tmp/g2h)" >>/tmp/results
  echo "$vmm TAP_RR_P50_US $(val RR_P50_US /tmp/rr)" >>/tmp/results
  kill $pid; wait $pid 2>/dev/null
  grep -q GUEST-BENCH-DONE /tmp/o || { echo "$vmm tap run failed; its output ends:"; tail -n 15 /tmp/o; }
}

one_vsock() {
  vmm=$1
  C="console=ttyS0 reboot=k panic=-1 quiet -- sh /net-guest.sh vsock $bytes"
  rm -f /tmp/v.sock /tmp/v.sock_5002
  if [ $vmm = vireo ]; then
    netbench sink unix:/tmp/v.sock_5002 >/tmp/g2h 2>&1 &
    vireo run --memory 512M --kernel $K --initrd $I --cmdline "$C" --vsock cid=7,socket=/tmp/v.sock >/tmp/o 2>&1 </dev/null &
    pid=$!; to=fc:/tmp/v.sock
  else
    netbench sink vsock:5002 >/tmp/g2h 2>&1 &
    qemu-system-x86_64 -M q35 -accel kvm -cpu host -m 512M -smp 1 -nodefaults -no-user-config \
      -display none -serial stdio -no-reboot -kernel $K -initrd $I -append "$C" \
      -device vhost-vsock-pci,guest-cid=7,romfile= >/tmp/o 2>&1 </dev/null &
    pid=$!; to=vsock:7
  fi
  wait_for "LISTENING vsock:5001"
  sleep 0.5
  netbench send $to:5001 $bytes >/dev/null
  wait_for GUEST-BENCH-DONE 600
  netbench rr $to:5003 2000 >/tmp/rr
  echo "$vmm VSOCK_H2G_MBPS $(val SINK_MBPS /tmp/o)" >>/tmp/results
  echo "$vmm VSOCK_G2H_MBPS $(val SINK_MBPS /tmp/g2h)" >>/tmp/results
  echo "$vmm VSOCK_RR_P50_US $(val RR_P50_US /tmp/rr)" >>/tmp/results
  kill $pid; wait $pid 2>/dev/null
  grep -q GUEST-BENCH-DONE /tmp/o || { echo "$vmm vsock run failed; its output ends:"; tail -n 15 /tmp/o; }
}

if [ -n "${tap_only:-}" ]; then one_tap "$tap_only"; exit 0; fi

: >/tmp/results
# Each VMM's tap run in a fresh network namespace (the tap goes away with its process).
for r in $(seq 1 "$runs"); do
  for vmm in vireo qemu qemu-vhost; do
    unshare -n sh "$0" --tap $vmm "$mib" </dev/null
    echo "run $r $vmm: $(grep "^$vmm TAP" /tmp/results | tail -n3 | awk '{printf "%s=%s ", $2, $3}')"
  done
  for vmm in vireo qemu; do
    one_vsock $vmm
    echo "run $r $vmm: $(grep "^$vmm VSOCK" /tmp/results | tail -n3 | awk '{printf "%s=%s ", $2, $3}')"
  done
done
echo
printf '%-16s %22s %22s %8s %22s\n' figure vireo "qemu (tap/vhost-vsock)" ratio "qemu vhost-net"
for k in TAP_H2G_MBPS TAP_G2H_MBPS TAP_RR_P50_US VSOCK_H2G_MBPS VSOCK_G2H_MBPS VSOCK_RR_P50_US; do
  stats() { grep "^$1 $k " /tmp/results | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {if (NR) printf "%s %s %s", a[int((NR+1)/2)], a[1], a[NR]; else print "- - -"}'; }
  set -- $(stats vireo); vm=$1; vmin=$2; vmax=$3
  set -- $(stats qemu); qm=$1; qmin=$2; qmax=$3
  set -- $(stats qemu-vhost); hm=$1; hmin=$2; hmax=$3
  ratio=$(awk -v a="$vm" -v b="$qm" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
  hv="-"; [ "$hm" != "-" ] && hv="$hm ($hmin-$hmax)"
  printf '%-16s %22s %22s %7sx %22s\n' "$k" "$vm ($vmin-$vmax)" "$qm ($qmin-$qmax)" "$ratio" "$hv"
done
echo "(MBPS: MB/s, higher is better; RR_P50_US: median 1-byte round trip in microseconds, lower is better)"
