#!/bin/sh
# Runs inside the test host (bench/snapshot.sh): save and restore under vireo and under QEMU+KVM
# (-M microvm, the same kernel, initrd and command line), side by side.
#  Save: each VMM's own figure (vireo save's "saved in N ms"; QEMU's `info migrate` "total
#  time" for `migrate exec:cat > FILE`), the file's size and the disk it takes (sparse), for a
#  tiny guest (256 MiB), a Debian guest idle at 256 MiB and at 1 GiB, and the 1 GiB one after it
#  wrote 200 MiB.
#  Restore: process start -> the guest's next console line (vireo restore; QEMU -incoming from
#  the file), alternating, RUNS each (vireo-bench boot --stop-at-marker), with a fresh boot of
#  the tiny guest under vireo for scale; and for vireo, process start -> "running" (its log
#  line just before the vCPUs start), jailed and not, against `vireo --version` (the floor of
#  starting the process in this emulated host).
runs=${1:-5}
CNT=/opt/vireo/files/pvh_counter.elf
K=/guest/vmlinuz
I=/guest/initrd.img
Q="qemu-system-x86_64 -accel kvm -cpu host -nodefaults -no-user-config -display none -M microvm"
TICKS='while :; do echo TICK; usleep 20000; done'

# until SECS FILE TEXT: waits for TEXT in FILE.
# lib.sh (packed by bench/snapshot.sh): within SECS COMMAND..., waits bounded by wall time.
. /opt/vireo/files/lib.sh
size_of() { echo "$(($(stat -c %s "$1") >> 20)) MiB, $(($(du -k "$1" | cut -f1) >> 10)) MiB on disk"; }

# vireo_save NAME MARKER RUN-ARGS...: boots, waits for MARKER, saves to /tmp/NAME.vsnap.
vireo_save() {
  n=$1 m=$2
  shift 2
  rm -f /tmp/$n.vsnap /tmp/$n.vsock
  vireo run "$@" --api-socket /tmp/$n.vsock --console file:/tmp/$n.vcon >/tmp/$n.verr 2>&1 </dev/null &
  p=$!
  within 120 grep -qs "$m" /tmp/$n.vcon || { echo "$n: vireo: no $m: $(tail -n 3 /tmp/$n.verr)"; kill $p; return; }
  sleep 1
  out=$(vireo save --api-socket /tmp/$n.vsock /tmp/$n.vsnap 2>&1)
  wait $p
  ms=$(echo "$out" | sed -n 's/.* in \([0-9.]*\) ms.*/\1/p')
  printf '%-22s vireo  save %7s ms  file %s\n' "$n" "$ms" "$(size_of /tmp/$n.vsnap)"
}

# qemu_save NAME MARKER QEMU-ARGS...: the same with QEMU: its monitor on a FIFO, `migrate` to
# the file, `info migrate` until completed.
qemu_save() {
  n=$1 m=$2
  shift 2
  rm -f /tmp/$n.qsnap /tmp/$n.mon /tmp/$n.qcon
  mkfifo /tmp/$n.mon
  $Q "$@" -serial file:/tmp/$n.qcon -monitor stdio </tmp/$n.mon >/tmp/$n.qout 2>&1 &
  p=$!
  exec 3>/tmp/$n.mon
  within 120 grep -qs "$m" /tmp/$n.qcon || { echo "$n: qemu: no $m: $(tail -n 3 /tmp/$n.qout)"; kill $p; exec 3>&-; return; }
  sleep 1
  echo "migrate \"exec:cat > /tmp/$n.qsnap\"" >&3
  end=$(($(cut -d. -f1 /proc/uptime) + 300))
  while ! grep -q "Migration status: completed" /tmp/$n.qout; do
    [ "$(cut -d. -f1 /proc/uptime)" -lt $end ] || break
    echo "info migrate" >&3
    sleep 0.5
  done
  ms=$(sed -n 's/^total time: \([0-9]*\) ms.*/\1/p' /tmp/$n.qout | tail -n1)
  echo quit >&3
  exec 3>&-
  wait $p
  printf '%-22s qemu   save %7s ms  file %s\n' "$n" "${ms:-?}" "$(size_of /tmp/$n.qsnap)"
}

echo "== save (each VMM's own figure; the file's size and what it takes on disk)"
vireo_save tiny-256M C= --kernel $CNT --memory 256M
qemu_save tiny-256M C= -m 256M -kernel $CNT
L="console=ttyS0 reboot=k panic=-1 quiet"
vireo_save linux-256M TICK --memory 256M --cmdline "$L -- $TICKS"
qemu_save linux-256M TICK -m 256M -kernel $K -initrd $I -append "$L -- $TICKS"
vireo_save linux-1G TICK --memory 1G --cmdline "$L -- $TICKS"
qemu_save linux-1G TICK -m 1G -kernel $K -initrd $I -append "$L -- $TICKS"
FILL="yes abcdefgh | head -c 209715200 >/tmp/fill; $TICKS"
vireo_save linux-1G-wrote-200M TICK --memory 1G --cmdline "$L -- $FILL"
qemu_save linux-1G-wrote-200M TICK -m 1G -kernel $K -initrd $I -append "$L -- $FILL"

echo
echo "== restore: process start -> the guest's next console line"
vireo-bench boot --runs "$runs" --marker C= --stop-at-marker --pause-ms 200 \
  --case "vireo=exec vireo restore /tmp/tiny-256M.vsnap --console stdio" \
  --case "vireo-boot=exec vireo run --kernel $CNT --memory 256M --console stdio" \
  --case "qemu-microvm=exec $Q -m 256M -kernel $CNT -serial stdio -incoming 'exec:cat /tmp/tiny-256M.qsnap'"
vireo-bench boot --runs "$runs" --marker TICK --stop-at-marker --pause-ms 200 \
  --case "vireo=exec vireo restore /tmp/linux-256M.vsnap --console stdio" \
  --case "qemu-microvm=exec $Q -m 256M -kernel $K -initrd $I -append '$L -- $TICKS' -serial stdio -incoming 'exec:cat /tmp/linux-256M.qsnap'"
echo
echo "== vireo restore: process start -> running (its log line as the vCPUs start); the floor:"
echo "   the same binary printing its version ($(vireo-bench boot --runs 3 --marker vireo --case "v=exec vireo --version" | sed -n 's/^v  *\([0-9]*\).*/\1/p') ms)"
vireo-bench boot --runs "$runs" --marker "running," --stop-at-marker --pause-ms 200 \
  --case "vireo-tiny-256M=exec vireo restore /tmp/tiny-256M.vsnap --console none" \
  --case "vireo-tiny-256M-no-sandbox=exec vireo restore /tmp/tiny-256M.vsnap --console none --sandbox off" \
  --case "vireo-linux-256M=exec vireo restore /tmp/linux-256M.vsnap --console none" \
  --case "vireo-linux-1G-wrote-200M=exec vireo restore /tmp/linux-1G-wrote-200M.vsnap --console none"
