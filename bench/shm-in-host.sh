#!/bin/sh
# Runs inside the test host (bench/shm.sh). Alternates vireo and QEMU+KVM, each running two
# guests A and B that share a 16 MiB region with doorbells and have vsock: vireo from a host
# file ([shm.bench], jailed domains as by default), QEMU with ivshmem-doorbell on
# ivshmem-server and vhost-vsock, each QEMU in a cgroup of its own (in_cgroup). A host relay
# joins A's vsock connection to CID 2 port 5004 to B's port 5003. Each run boots vireo's pair
# twice (MSI-X, then INTx) and QEMU's once (MSI-X: its ivshmem-doorbell has no INTx). Prints
# medians (min-max).
runs=${1:-3}
count=${2:-500}
mib=${3:-256}
vmms=${4:-vireo,qemu}
K=/guest/vmlinuz
I=/guest/bench-initrd.img
C="console=ttyS0 reboot=k panic=-1 quiet"
R=/tmp/run
mkdir -p /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null
ip link set lo up

# wait_file FILE TEXT [HALF_SECONDS]: until FILE holds TEXT or time runs out.
wait_file() {
  n=0
  while ! cat "$1" 2>/dev/null | tr -d '\r' | grep -q "$2" && [ $n -lt "${3:-240}" ]; do
    sleep 0.5; n=$((n + 1))
  done
  cat "$1" 2>/dev/null | tr -d '\r' | grep -q "$2"
}
val() { tr -d '\r' <"$2" | tr ' ' '\n' | sed -n "s/^$1=\([0-9.]*\)$/\1/p" | tail -n1; }
record() {  # VMM MODE GUEST_A_OUTPUT
  if [ "$2" = intx ]; then
    echo "$1 INTX_RR_P50_US $(val SHM_RR_P50_US "$3")" >>/tmp/results
    return
  fi
  echo "$1 MSIX_RR_P50_US $(val SHM_RR_P50_US "$3")" >>/tmp/results
  echo "$1 VSOCK_RR_P50_US $(val RR_P50_US "$3")" >>/tmp/results
  for k in COPY_RAM_MBPS COPY_TO_SHM_MBPS COPY_FROM_SHM_MBPS; do
    echo "$1 $k $(val $k "$3")" >>/tmp/results
  done
}

one_vireo() {  # MODE
  mode=$1
  rm -rf $R /tmp/vs; mkdir -p /tmp/vs
  dom() {  # NAME CID
    cat <<TOML
[domains.$1]
memory = "256M"
kernel = "$K"
initrd = "$I"
cmdline = "$C -- sh /shm-guest.sh $1 $count $mib 0000:00:01.0 $mode"
vsock = "cid=$2,socket=/tmp/vs/$1.sock"
TOML
  }
  { echo "run_dir = \"$R\""; echo 'reserve = "64M"'; dom a 7; dom b 8
    printf '[shm.bench]\nsize = "16M"\ndomains = ["a", "b"]\n'; } >/tmp/host.toml
  rm -f /tmp/relay.ready
  netbench ready-file /tmp/relay.ready relay unix:/tmp/vs/a.sock_5004 fc:/tmp/vs/b.sock:5003 \
    >/tmp/relay.out 2>&1 &
  relay=$!
  n=0; while [ ! -e /tmp/relay.ready ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
  chmod 0666 /tmp/vs/a.sock_5004  # the jailed domain connects as its own uid
  vireo up /tmp/host.toml >/tmp/up.out 2>&1 &
  up=$!
  wait_file $R/a.log GUEST-BENCH-DONE 480 ||
    { echo "vireo $mode run failed; A's console ends:"; tr -d '\r' <$R/a.log | tail -n 12
      echo "B's:"; tr -d '\r' <$R/b.log | tail -n 6; tail -n 5 /tmp/up.out; }
  cp $R/a.log /tmp/a.out
  record vireo $mode /tmp/a.out
  # Doorbells vireo's device loop saw (vireo info: "N in"): with MSI-X they stay in the kernel.
  for d in a b; do
    n=$(vireo info $d --run-dir $R 2>/dev/null | sed -n 's/.*doorbells.*: \([0-9]*\) in.*/\1/p')
    echo "vireo ${mode}_DOORBELLS_THROUGH_VIREO_$d ${n:--}" >>/tmp/results
  done
  vireo down --run-dir $R >/dev/null 2>&1
  wait $up 2>/dev/null
  kill $relay 2>/dev/null; wait $relay 2>/dev/null
}

# in_cgroup NAME PID: a QEMU process in its own cgroup with the controllers vireo's domains have
# (cpu, memory, pids), as libvirt puts each VM in one (machine.slice); vireo up puts each domain
# in vireo-host/POOL/NAME. Group scheduling is on the doorbell's path: a wake-up crosses groups.
in_cgroup() {
  for d in /sys/fs/cgroup /sys/fs/cgroup/qemu-bench; do
    mkdir -p $d && echo "+cpu +memory +pids" >$d/cgroup.subtree_control 2>/dev/null
  done
  mkdir -p /sys/fs/cgroup/qemu-bench/$1 && echo $2 >/sys/fs/cgroup/qemu-bench/$1/cgroup.procs ||
    echo "QEMU $1 is not in a cgroup of its own"
}

one_qemu() {  # MODE (msix)
  mode=$1
  rm -f /tmp/ivs-bench /tmp/ivs.sock
  ivshmem-server /tmp/ivs.sock /tmp/ivs-bench 16777216 1 >/tmp/ivs.out 2>&1 &
  server=$!
  wait_file /tmp/ivs.out LISTENING 20
  netbench relay vsock:5004 vsock:8:5003 >/tmp/relay.out 2>&1 &
  relay=$!
  qemu() {  # NAME CID OUTPUT
    qemu-system-x86_64 -M q35 -accel kvm -cpu host -m 256M -smp 1 -nodefaults -no-user-config \
      -display none -serial stdio -no-reboot -kernel $K -initrd $I \
      -append "$C -- sh /shm-guest.sh $1 $count $mib 0000:00:05.0 $mode" \
      -chardev socket,path=/tmp/ivs.sock,id=ivs \
      -device ivshmem-doorbell,chardev=ivs,vectors=1,addr=0x5 \
      -device vhost-vsock-pci,guest-cid=$2,romfile= >"$3" 2>&1 </dev/null &
  }
  qemu a 7 /tmp/a.out; qa=$!
  in_cgroup a $qa
  wait_file /tmp/ivs.out "client 0 connected" 20  # A is peer 0, as in vireo's file
  qemu b 8 /tmp/b.out; qb=$!
  in_cgroup b $qb
  wait_file /tmp/a.out GUEST-BENCH-DONE 480 ||
    { echo "qemu run failed; A's console ends:"; tr -d '\r' </tmp/a.out | tail -n 12
      echo "B's:"; tr -d '\r' </tmp/b.out | tail -n 6; cat /tmp/ivs.out; }
  record qemu $mode /tmp/a.out
  kill $qa $qb $relay $server 2>/dev/null
  wait $qa $qb $relay $server 2>/dev/null
}

: >/tmp/results
for r in $(seq 1 "$runs"); do
  for vmm in $(echo "$vmms" | tr , " "); do
    modes=msix; lines=5
    [ $vmm = vireo ] && modes="msix intx" && lines=10
    for mode in $modes; do
      one_$vmm $mode
    done
    echo "run $r $vmm: $(grep "^$vmm " /tmp/results | tail -n$lines | awk '{printf "%s=%s ", $2, $3}')"
  done
done
echo
printf '%-20s %22s %22s %8s\n' figure vireo qemu ratio
for k in MSIX_RR_P50_US INTX_RR_P50_US VSOCK_RR_P50_US COPY_RAM_MBPS COPY_TO_SHM_MBPS \
    COPY_FROM_SHM_MBPS; do
  stats() { grep "^$1 $k [0-9]" /tmp/results | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {if (NR) printf "%s %s %s", a[int((NR+1)/2)], a[1], a[NR]; else print "- - -"}'; }
  set -- $(stats vireo); vm=$1; vmin=$2; vmax=$3
  set -- $(stats qemu); qm=$1; qmin=$2; qmax=$3
  ratio=$(awk -v a="$vm" -v b="$qm" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-" }')
  printf '%-20s %22s %22s %7sx\n' "$k" "$vm ($vmin-$vmax)" "$qm ($qmin-$qmax)" "$ratio"
done
echo "(RR: median round trip in microseconds, lower is better: MSIX/INTX the doorbell A -> B -> A"
echo " through the region's interrupts (QEMU's ivshmem-doorbell has no INTx); VSOCK the same"
echo " guests' 1-byte round trip over vsock through the host. COPY: memcpy MB/s in guest A, RAM"
echo " to RAM and into/out of the region; higher is better)"
