#!/bin/sh
# Runs inside the test host (bench/irqchip.sh): each interrupt model of vireo and of QEMU+KVM
# (q35, virtio-pci), alternating. Boot to init with vireo-bench boot; then per model, in a fresh
# network namespace, one guest with a disk and a tap: sequential and random disk reads
# (blkbench), then the tap's 1-byte TCP round trip (netbench rr). Prints medians (min-max).
# (internal: `irqchip-in-host.sh --one MODEL SECS` measures one model once)
K=/guest/vmlinuz
I=/guest/bench-initrd.img
img=/tmp/irqbench.img
Q="qemu-system-x86_64 -accel kvm -cpu host -m 512M -smp 1 -nodefaults -no-user-config -display none -serial stdio -no-reboot -kernel $K -initrd $I"
models="vireo-kernel vireo-split vireo-userspace qemu-on qemu-split qemu-off"
# QEMU's kernel-irqchip=off (its user-space local APIC, "deprecated for KVM") aborts at start on
# this KVM with its default CPU: it sets MSR_KVM_ASYNC_PF_INT (0x4b564d06), which KVM refuses
# without an in-kernel LAPIC. With that feature off (kvm-asyncpf-int=off, as vireo's userspace
# model leaves it out) it starts; that is how it runs here.
qoff="-cpu host,kvm-asyncpf-int=off"
val() { tr -d '\r' <"$2" | sed -n "s/.*$1=\([0-9.]*\).*/\1/p" | tail -n1; }

# Runs MODEL's VMM in place of the calling (background) shell, with the guest's command line $C
# and more VMM arguments: its pid is the job's, so a kill ends the VMM itself.
start() {
  model=$1; shift
  case $model in
    vireo-*) exec vireo run --irqchip "${model#vireo-}" --memory 512M --kernel $K --initrd $I --cmdline "$C" "$@" ;;
    qemu-off) exec $Q $qoff -M q35,kernel-irqchip=off -append "$C" "$@" ;;
    qemu-*) exec $Q -M q35,kernel-irqchip="${model#qemu-}" -append "$C" "$@" ;;
  esac
}

if [ "$1" = --one ]; then
  model=$2; secs=$3
  ip link set lo up
  C="console=ttyS0 reboot=k panic=-1 quiet -- sh -c 'blkbench seqread /dev/vda 64; blkbench randread /dev/vda $secs; sh /net-guest.sh tap 1048576'"
  case $model in
    vireo-*) start $model --disk $img --net tap=vtap0 >/tmp/o 2>&1 </dev/null & ;;
    qemu-*) start $model -drive file=$img,format=raw,if=none,id=d0,cache=writeback,aio=io_uring \
      -device virtio-blk-pci,drive=d0 -netdev tap,id=n0,ifname=vtap0,script=no,downscript=no \
      -device virtio-net-pci,netdev=n0,romfile= >/tmp/o 2>&1 </dev/null & ;;
  esac
  pid=$!
  n=0; while ! ip link show vtap0 >/dev/null 2>&1 && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
  ip addr add 192.168.77.1/24 dev vtap0; ip link set vtap0 up
  netbench sink tcp:5002 >/dev/null 2>&1 &
  n=0; while ! tr -d '\r' </tmp/o | grep -q "LISTENING tcp:5001" && [ $n -lt 600 ] && kill -0 $pid 2>/dev/null; do sleep 0.5; n=$((n + 1)); done
  sleep 0.5
  netbench send tcp:192.168.77.2:5001 1048576 >/dev/null
  n=0; while ! tr -d '\r' </tmp/o | grep -q GUEST-BENCH-DONE && [ $n -lt 240 ]; do sleep 0.5; n=$((n + 1)); done
  netbench rr tcp:192.168.77.2:5003 2000 >/tmp/rr
  echo "$model SEQREAD_MBPS $(val SEQREAD_MBPS /tmp/o)" >>/tmp/results
  echo "$model RANDREAD_IOPS $(val RANDREAD_IOPS /tmp/o)" >>/tmp/results
  echo "$model TAP_RR_P50_US $(val RR_P50_US /tmp/rr)" >>/tmp/results
  kill $pid; wait $pid 2>/dev/null
  grep -q GUEST-BENCH-DONE /tmp/o || { echo "$model failed; its output ends:"; tail -n 15 /tmp/o; }
  exit 0
fi

runs=${1:-3}
secs=${2:-4}
dd if=/dev/urandom of=$img bs=1M count=80 2>/dev/null
C="console=ttyS0 reboot=k panic=-1 quiet -- poweroff -f"
set --
for m in $models; do
  case $m in
    vireo-*) set -- "$@" --case "$m=exec vireo run --irqchip ${m#vireo-} --memory 256M --kernel $K --initrd /guest/initrd.img --cmdline '$C'" ;;
    qemu-off) set -- "$@" --case "$m=exec ${Q%%-kernel*} $qoff -kernel $K -initrd /guest/initrd.img -M q35,kernel-irqchip=off -append '$C'" ;;
    qemu-*) set -- "$@" --case "$m=exec ${Q%%-kernel*} -kernel $K -initrd /guest/initrd.img -M q35,kernel-irqchip=${m#qemu-} -append '$C'" ;;
  esac
done
echo "boot to init, each model $runs times (alternating):"
vireo-bench boot --runs "$runs" "$@"
echo "(qemu-off with its default CPU: $(${Q%%-kernel*} -kernel $K -initrd /guest/initrd.img -M q35,kernel-irqchip=off -append "$C" 2>&1 </dev/null | grep -m1 -e error -e Assertion))"
: >/tmp/results
for r in $(seq 1 "$runs"); do
  for m in $models; do
    unshare -n sh "$0" --one $m "$secs" </dev/null
    echo "run $r $m: $(grep "^$m " /tmp/results | tail -n3 | awk '{printf "%s=%s ", $2, $3}')"
  done
done
echo
printf '%-14s' model
for k in SEQREAD_MBPS RANDREAD_IOPS TAP_RR_P50_US; do printf ' %22s' $k; done
echo
for m in $models; do
  printf '%-14s' $m
  for k in SEQREAD_MBPS RANDREAD_IOPS TAP_RR_P50_US; do
    s=$(grep "^$m $k " /tmp/results | awk '$3 != "" {print $3}' | sort -n | awk '{a[NR]=$1} END {if (NR) printf "%s (%s-%s)", a[int((NR+1)/2)], a[1], a[NR]; else print "-"}')
    printf ' %22s' "$s"
  done
  echo
done
echo "(MBPS: MB/s and IOPS: higher is better; RR_P50_US: median 1-byte TCP round trip in microseconds, lower is better)"
