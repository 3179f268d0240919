#!/bin/sh
# Runs inside the test host (bench/blk.sh). Alternates vireo and QEMU+KVM on the same image,
# then prints medians (min-max) and vireo/QEMU ratios. With LIMITS (disk options such as
# bps=1T,iops=1000000000), a third VMM alternates with them: vireo with those limits on its disk.
runs=${1:-3}
mib=${2:-128}
secs=${3:-5}
limits=${4:-}
vmms="vireo qemu"
[ -n "$limits" ] && vmms="vireo vireo-limited qemu"
K=/guest/vmlinuz
I=/guest/bench-initrd.img
img=/tmp/bench.img
dd if=/dev/urandom of=$img bs=1M count=$((mib + 16)) 2>/dev/null
C="console=ttyS0 reboot=k panic=-1 quiet -- blkbench all /dev/vda $mib $secs; poweroff -f"
echo "test host itself, reading the image file (tmpfs, page cache):"
blkbench seqread $img $mib | grep MBPS
blkbench randread $img $secs | grep IOPS
: >/tmp/results
for r in $(seq 1 "$runs"); do
  for vmm in $vmms; do
    if [ $vmm = vireo ]; then
      vireo run --memory 512M --kernel $K --initrd $I --cmdline "$C" --disk $img >/tmp/o 2>&1
    elif [ $vmm = vireo-limited ]; then
      vireo run --memory 512M --kernel $K --initrd $I --cmdline "$C" --disk "$img,$limits" >/tmp/o 2>&1
    else
      qemu-system-x86_64 -M q35 -accel kvm -cpu host -m 512M -smp 1 -nodefaults -no-user-config \
        -display none -serial stdio -no-reboot -kernel $K -initrd $I -append "$C" \
        -drive file=$img,format=raw,if=none,id=d0,cache=writeback,aio=io_uring \
        -device virtio-blk-pci,drive=d0 >/tmp/o 2>&1
    fi
    for k in SEQREAD_MBPS RANDREAD_IOPS SEQWRITE_MBPS; do
      v=$(tr -d '\r' </tmp/o | sed -n "s/^$k=//p" | tail -n1)
      echo "$vmm $k ${v:-0}" >>/tmp/results
    done
    grep -q SEQWRITE_MBPS /tmp/o || { echo "$vmm failed; its output ends:"; tail -n 15 /tmp/o; }
    echo "run $r $vmm: $(grep "^$vmm " /tmp/results | tail -n3 | awk '{printf "%s=%s ", $2, $3}')"
  done
done
echo
printf '%-16s %24s %24s %8s\n' figure vireo "qemu-q35 (virtio-blk-pci)" ratio
for k in SEQREAD_MBPS SEQWRITE_MBPS RANDREAD_IOPS; do
  stats() { grep "^$1 $k " /tmp/results | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {printf "%s %s %s", a[int((NR+1)/2)], a[1], a[NR]}'; }
  set -- $(stats vireo); vm=$1; vmin=$2; vmax=$3
  set -- $(stats qemu); qm=$1; qmin=$2; qmax=$3
  ratio=$(awk -v a="$vm" -v b="$qm" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
  printf '%-16s %24s %24s %7sx\n' "$k" "$vm ($vmin-$vmax)" "$qm ($qmin-$qmax)" "$ratio"
done
if [ -n "$limits" ]; then
  echo
  printf '%-16s %24s %24s %8s\n' figure vireo "vireo ($limits)" "limited/unlimited"
  for k in SEQREAD_MBPS SEQWRITE_MBPS RANDREAD_IOPS; do
    stats() { grep "^$1 $k " /tmp/results | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {printf "%s %s %s", a[int((NR+1)/2)], a[1], a[NR]}'; }
    set -- $(stats vireo); vm=$1; vmin=$2; vmax=$3
    set -- $(stats vireo-limited); lm=$1; lmin=$2; lmax=$3
    ratio=$(awk -v a="$lm" -v b="$vm" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }')
    printf '%-16s %24s %24s %7sx\n' "$k" "$vm ($vmin-$vmax)" "$lm ($lmin-$lmax)" "$ratio"
  done
fi
