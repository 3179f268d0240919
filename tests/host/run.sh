#!/usr/bin/env bash
# Runs a command inside vireo's test host: a simulated hardware-virtualization machine.
#
# QEMU (TCG) emulates an AMD EPYC with AMD-V and nested paging; inside it, Debian's own cloud
# kernel loads the real kvm_amd, so /dev/kvm there is hardware-style KVM and vireo's production
# code paths run for real. The test host boots from an initramfs that holds busybox, the KVM
# modules, vireo's binaries (with the shared libraries they need), the default guest and any
# extra files, runs the command, prints its exit status and powers off. Its serial console is
# streamed to stdout; this script exits with the command's status (125 if the host itself failed
# twice: a host that dies or never comes up is booted once more, see below).
#
# usage: tests/host/run.sh [options] -- COMMAND...
#   -b DIR     vireo build directory to pack (default: build)
#   -m SIZE    test host memory (default: 3G)
#   -s N       test host CPUs (default: 1; with several, TCG's threads have been seen to
#              lose a CPU's timer under nested KVM and lock the host up)
#   -t SECS    timeout for the whole run (default: 600)
#   -f SRC[:DST]  add a file (DST defaults to /opt/vireo/files/<basename>)
#   -q         do not stream the host's console (only the command's output lines)
#   -Q         also pack qemu-system-x86_64 and its firmware (for side-by-side benchmarks)
#   -k MODULE  also load a kernel module (and its dependencies), e.g. vhost_net; tun is always
#              loaded and loopback is up
#   -B PATH    also pack this machine's program PATH (same path inside) and the libraries it
#              loads, e.g. /bin/bash
#   -N ADDR/PREFIX,NETDEV  also a network card (virtio-net, eth0 inside, address ADDR/PREFIX) on
#              QEMU's back-end NETDEV: two test hosts joined on this machine's loopback, e.g.
#              -N 10.9.0.1/24,socket,listen=127.0.0.1:5555 and
#              -N 10.9.0.2/24,socket,connect=127.0.0.1:5555 (start the listener first)
# VIREO_TEST_HOST_LOG=FILE keeps the host's whole console there when the host dies.
# VIREO_TEST_HOST_RETRIES=N (default 2) and VIREO_TEST_HOST_READY_SECS=S (default 120): how
# often a failed host (or a command failed by an L2 guest's triple fault) is booted again, and
# how long it may take to come up.
# Inside, PATH has /opt/vireo/bin (vireo, vireo-bench, test binaries), VIREO_GUEST_DIR=/guest,
# LD_LIBRARY_PATH=/opt/vireo/lib (libraries of the build a binary loads, e.g. libnvmm).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build=$repo/build
mem=3G
smp=1
timeout=600
quiet=0
files=()
with_qemu=0
kmodules=()
binaries=()
net=""
while getopts "b:m:s:t:f:k:B:N:qQ" opt; do
  case $opt in
    b) build=$(cd "$OPTARG" && pwd) ;;
    m) mem=$OPTARG ;;
    s) smp=$OPTARG ;;
    t) timeout=$OPTARG ;;
    f) files+=("$OPTARG") ;;
    q) quiet=1 ;;
    Q) with_qemu=1 ;;
    k) kmodules+=("$OPTARG") ;;
    B) binaries+=("$OPTARG") ;;
    N) net=$OPTARG ;;
    *) sed -n '2,32p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] || { echo "usage: $0 [options] -- COMMAND..." >&2; exit 2; }

cache=${VIREO_CACHE:-$HOME/.cache/vireo}
mkdir -p "$cache"
need() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
if ! need qemu-system-x86 || ! need busybox-static || ! need cpio; then
  # One installer at a time: ctest starts several test hosts at once (apt's own lock fails
  # the second instead of waiting). scripts/setup.sh installs these first in the test command.
  (
    flock 9
    if ! need qemu-system-x86 || ! need busybox-static || ! need cpio; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 busybox-static cpio >/dev/null
    fi
  ) 9>"$cache/.setup.lock"
fi
guest=$("$repo/scripts/guest-image.sh")
release=$(cat "$cache/kernel/release")
kmods=$cache/kernel/lib/modules/$release/kernel

work=$(mktemp -d "${TMPDIR:-/tmp}/vireo-host.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,proc,sys,dev,tmp,guest,lib/modules,opt/vireo/bin,opt/vireo/files}
cp /bin/busybox "$root/bin/"
ln -s busybox "$root/bin/sh"
cp "$kmods/virt/lib/irqbypass.ko" "$kmods/arch/x86/kvm/kvm.ko" "$kmods/arch/x86/kvm/kvm-amd.ko" \
   "$kmods/drivers/net/tun.ko" "$root/lib/modules/"
# Extra modules (-k), with what they depend on, loaded in dependency order.
extra_mods=""
mods_dep=$cache/kernel/lib/modules/$release/modules.dep
add_mod() {
  local line path
  line=$(grep -m1 -E "/${1//-/[-_]}\.ko(\.[a-z]+)?:" "$mods_dep") || { echo "vireo test host: no module $1" >&2; exit 2; }
  path=${line%%:*}
  case $(basename "$path" .ko) in irqbypass|kvm|kvm-amd|tun) return 0 ;; esac  # always loaded
  case " $extra_mods " in *" $(basename "$path" .ko) "*) return 0 ;; esac
  for dep in ${line#*:}; do add_mod "$(basename "${dep%%.ko*}")"; done
  cp "$cache/kernel/lib/modules/$release/$path" "$root/lib/modules/"
  extra_mods="$extra_mods $(basename "$path" .ko)"
}
net_args=()
if [ -n "$net" ]; then
  addr=${net%%,*}
  case $addr in
    *.*.*.*/*) ;;
    *) echo "vireo test host: -N wants ADDR/PREFIX,NETDEV (got '$net')" >&2; exit 2 ;;
  esac
  kmodules+=(virtio_pci virtio_net)
  echo "$addr" > "$root/netaddr"
  # A MAC of its own per address (the last octet), so two hosts on one link differ.
  last=${addr%/*}; last=${last##*.}
  net_args=(-netdev "${net#*,},id=n0" -device "virtio-net-pci,netdev=n0,romfile=,mac=52:54:00:12:34:$(printf %02x "$last")")
fi
for m in "${kmodules[@]}"; do add_mod "$m"; done
echo "$extra_mods" > "$root/extra_mods"
cp "$guest/vmlinuz" "$guest/initrd.img" "$root/guest/"

# vireo's binaries and every shared library they load (same paths as on this machine).
add_binary() {  # add_binary PATH [DEST_DIR]
  mkdir -p "$root${2:-/opt/vireo/bin}"
  strip -o "$root${2:-/opt/vireo/bin}/$(basename "$1")" "$1"
  ldd "$1" | awk '/=> \// {print $3} /^[ \t]*\/lib/ {print $1}' | while read -r lib; do
    case $lib in
      /lib/* | /lib64/* | /usr/*) mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib" ;;
      # A library of the build (libnvmm) keeps its name but not its place: the build may sit
      # under /tmp, which the host mounts a tmpfs over. The host's LD_LIBRARY_PATH finds it.
      *) mkdir -p "$root/opt/vireo/lib"; cp -L "$lib" "$root/opt/vireo/lib/" ;;
    esac
  done
}
add_binary /usr/bin/unshare /usr/bin  # network namespaces for tap tests (util-linux)
for b in "${binaries[@]}"; do add_binary "$b" "$(dirname "$b")"; done
# vireo dlopen()s libslirp for user-mode networking: ldd does not list it.
slirp=$(ldconfig -p | awk '/libslirp\.so\.0 / && !found {print $NF; found = 1}')  # no early exit: SIGPIPE + pipefail
if [ -n "$slirp" ]; then
  for lib in "$slirp" $(ldd "$slirp" | awk '/=> \// {print $3}'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
fi
for b in vireo vireo-bench tests/vireo_kvm_tests tests/vireo_unit_tests; do
  [ -x "$build/$b" ] && add_binary "$build/$b"
done
if [ $with_qemu = 1 ]; then
  add_binary /usr/bin/qemu-system-x86_64 /usr/bin  # it finds firmware relative to itself
  mkdir -p "$root/usr/share/qemu" "$root/usr/share/seabios"
  for f in /usr/share/qemu/{bios-microvm.bin,qboot.rom,linuxboot_dma.bin,pvh.bin,kvmvapic.bin} \
           /usr/share/seabios/{bios-256k.bin,bios-microvm.bin,bios.bin}; do
    [ -e "$f" ] && cp -L "$f" "$root$f"
  done
  ln -sf ../seabios/bios-256k.bin "$root/usr/share/qemu/bios-256k.bin"
fi
for f in "${files[@]}"; do
  src=${f%%:*}; dst=${f#*:}; [ "$dst" = "$f" ] && dst=/opt/vireo/files/$(basename "$src")
  mkdir -p "$root$(dirname "$dst")"
  cp -a "$src" "$root$dst"
done

printf '%s\n' "$*" > "$root/cmd"
# What every process is doing, printed by the host itself shortly before the run's timeout, so
# a hang is reported with the state it hung in (each vireo thread's kernel stack, the last lines
# of vireo's logs) instead of only "timed out".
echo "$timeout" > "$root/timeout"
cat > "$root/stuck" <<'STUCK'
#!/bin/sh
{
echo "at $(cut -d' ' -f1 /proc/uptime)s the command still runs; its processes:"
for p in /proc/[0-9]*; do
  cmd=$(cat "$p/cmdline" 2>/dev/null | tr '\0' ' ' | cut -c1-150)
  [ -n "$cmd" ] || continue  # a kernel thread
  echo "  $(basename "$p") $(sed -n 's/^State:\t*//p' "$p/status") wchan=$(cat "$p/wchan") $cmd"
  case $cmd in *vireo*|*api_load*)  # its threads (the first 16) and their kernel stacks
    echo "    $(ls "$p/task" | wc -l) threads"
    for t in $(ls -d "$p"/task/* | head -n 16); do
      echo "    task $(basename "$t") $(cat "$t/comm") $(sed -n 's/^State:\t*//p' "$t/status") wchan=$(cat "$t/wchan")"
      head -n 6 "$t/stack" | sed 's/^/      /'
    done ;;
  esac
done
for f in $(find /tmp -name '*.log' 2>/dev/null | grep vireo | head -n 30); do
  echo "  == $f"; tail -n 4 "$f" | cut -c1-200 | sed 's/^/     /'
done
} 2>&1 | sed 's/^/VIREO-HOST-STUCK| /'
STUCK
chmod +x "$root/stuck"
cat > "$root/init" <<'INIT'
#!/bin/sh
# A real host runs from a real root file system, not from the initramfs (rootfs), and vireo's
# sandbox needs one (pivot_root cannot leave rootfs): first move everything onto a tmpfs and
# switch to it, as an initramfs hands over to the real root.
if [ ! -e /.real-root ]; then
  /bin/busybox mkdir -p /newroot
  /bin/busybox mount -t tmpfs -o mode=0755 root /newroot
  for f in /*; do
    case $f in /newroot|/proc|/sys|/dev) ;; *) /bin/busybox cp -a "$f" /newroot/ ;; esac
  done
  /bin/busybox mkdir -p /newroot/proc /newroot/sys /newroot/dev
  /bin/busybox touch /newroot/.real-root
  exec /bin/busybox switch_root /newroot /init
fi
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp
mkdir -p /dev/pts; mount -t devpts -o ptmxmode=0666 devpts /dev/pts  # script(1), terminals
# The unified cgroup hierarchy, where a real host's init (systemd) mounts it: vireo up's pools
# and per-domain limits (memory.max, pids.max) live there.
mount -t cgroup2 cgroup2 /sys/fs/cgroup || echo "vireo test host: no cgroup2"
for m in irqbypass kvm kvm-amd tun $(cat /extra_mods); do insmod /lib/modules/$m.ko || echo "vireo test host: insmod $m failed"; done
ip link set lo up
if [ -e /netaddr ]; then ip link set eth0 up && ip addr add "$(cat /netaddr)" dev eth0 || echo "vireo test host: no eth0"; fi
export PATH=/opt/vireo/bin:$PATH VIREO_GUEST_DIR=/guest HOME=/root LD_LIBRARY_PATH=/opt/vireo/lib
cd /opt/vireo
if [ -c /dev/kvm ]; then
  echo "VIREO-HOST-READY $(cut -d' ' -f1 /proc/uptime)s"
  # A heartbeat: run.sh tells a host that stopped (no beat) from a command that hangs.
  (while :; do sleep 10; echo "VIREO-HOST-ALIVE $(cut -d' ' -f1 /proc/uptime)s"; done) &
  exec 3<&0  # an asynchronous command's stdin would be /dev/null: keep the console's
  sh /cmd <&3 3<&- &
  cmd=$!
  t=$(cat /timeout)
  (sleep $((t > 120 ? t - 60 : t * 3 / 4)); /stuck) &
  stuck=$!
  wait $cmd
  rc=$?
  kill $stuck 2>/dev/null
  # A failed command whose logs show an L2 guest's triple fault: run.sh may run it again.
  if [ $rc != 0 ]; then
    tf=$(find /tmp -type f \( -name '*.log' -o -name '*.err' -o -name '*.out' \) -size -32768 \
      -exec grep -l 'triple-faulted' {} + 2>/dev/null | head -n 5 | tr '\n' ' ' | sed 's/ $//')
    [ -n "$tf" ] && echo "VIREO-HOST-L2-TRIPLE-FAULT $tf"
  fi
else
  echo "vireo test host: /dev/kvm did not appear"
  rc=125
fi
echo "VIREO-HOST-EXIT: $rc"
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/host.img"

out=$work/console.log
# The host prints VIREO-HOST-READY a few seconds after QEMU starts. Now and then a TCG host never
# prints a line at all (its kernel hangs before the console, before anything of vireo runs):
# such a boot is killed after $ready_secs s.
# Once up, it beats every 10 s (VIREO-HOST-ALIVE); a host whose beat stops for $frozen_secs s
# has stopped as a machine (its CPUs no longer run its own processes) and is killed then.
ready_secs=${VIREO_TEST_HOST_READY_SECS:-120}
frozen_secs=${VIREO_TEST_HOST_FROZEN_SECS:-120}
boot_host() {
  : >"$out"
  rm -f "$work/silent" "$work/frozen"
  (
    n=0
    until grep -q -e '^VIREO-HOST-READY' -e '^vireo test host:' "$out" 2>/dev/null; do
      if [ $n -ge "$ready_secs" ]; then
        touch "$work/silent"
        pkill -f -- "-initrd $work/host.img" || true
        exit 0
      fi
      sleep 1; n=$((n + 1))
    done
    beats=0; still=0
    while sleep 5; do
      b=$(grep -c '^VIREO-HOST-ALIVE' "$out" 2>/dev/null || true)
      if [ "$b" != "$beats" ]; then beats=$b; still=0; else still=$((still + 5)); fi
      if [ $still -ge "$frozen_secs" ]; then
        touch "$work/frozen"
        pkill -KILL -f -- "^qemu-system-x86_64 .*-initrd $work/host.img" || true  # not timeout(1)
        exit 0
      fi
    done
  ) &
  local watcher=$!
  set +e
  timeout --foreground "$timeout" qemu-system-x86_64 -M q35 -accel tcg,thread=multi \
    -cpu EPYC,+svm,+npt -smp "$smp" -m "$mem" -nodefaults -no-user-config -display none \
    -serial stdio -no-reboot -kernel "$guest/vmlinuz" -initrd "$work/host.img" "${net_args[@]}" \
    -append "console=ttyS0 quiet panic=-1 softlockup_panic=1 rdinit=/init" </dev/null 2>"$work/qemu.err" |
    stdbuf -oL tr -d '\r' | tee "$out" | if [ $quiet = 1 ]; then grep --line-buffered -v -e '^\[' -e '^VIREO-HOST' || true
                                      else grep --line-buffered -v '^VIREO-HOST-ALIVE' || true; fi
  qemu_rc=${PIPESTATUS[0]}
  set -e
  kill "$watcher" 2>/dev/null || true
  wait "$watcher" 2>/dev/null || true
}

# When the host itself fails — no sign of life, its heartbeat stopping, or its own kernel
# reporting an oops, a panic or a lock-up (softlockup_panic=1: a CPU stuck in the host's
# kernel, seen for minutes in a domain's main thread at `vireo down`, panics the host instead of
# hanging it until the timeout) — the command is run again in a fresh host
# (VIREO_TEST_HOST_RETRIES, default 2). A command that hangs in a live host is not retried: near
# the time limit the host prints what each process is doing (VIREO-HOST-STUCK).
# A process cannot do that to a correct kernel: it is the emulation (multi-threaded TCG's AMD-V
# has been seen to take an interrupt with the L2 guest's GS base still loaded; see
# docs/test-host.md). The command failing is retried only when an L2 guest triple-faulted on the
# way (below); the whole run timing out never is (a guest's own panic on the console must not
# turn a hang into a second run).
attempts=$((1 + ${VIREO_TEST_HOST_RETRIES:-2}))
attempt=1
while :; do
  boot_host
  rc=$(sed -n 's/^VIREO-HOST-EXIT: \([0-9]*\)$/\1/p' "$out" | tail -n1)
  # A command that failed while an L2 guest triple-faulted: on this emulated host that is the
  # emulation's too (guests triple-fault at any point, more often with two host CPUs: see
  # docs/test-host.md), so it is run again in a fresh host, saying so. A failure that is
  # vireo's comes back in the next run.
  if [ -n "$rc" ] && [ "$rc" != 0 ] && [ $attempt -lt $attempts ] &&
     tf=$(sed -n 's/^VIREO-HOST-L2-TRIPLE-FAULT //p' "$out" | tail -n1) && [ -n "$tf" ]; then
    attempt=$((attempt + 1))
    echo "vireo test host: the command failed (status $rc) after an L2 guest triple-faulted (in $tf); running it again in a fresh host (attempt $attempt of $attempts)" >&2
    continue
  fi
  [ -n "$rc" ] && exit "$rc"
  if [ -e "$work/silent" ]; then echo "vireo test host: no sign of life after ${ready_secs}s ($(wc -l <"$out") console lines)" >&2
  elif [ -e "$work/frozen" ]; then echo "vireo test host: stopped: no heartbeat for ${frozen_secs}s (its last: $(grep '^VIREO-HOST-ALIVE' "$out" | tail -n1))" >&2
  elif [ "$qemu_rc" = 124 ]; then echo "vireo test host: timed out after ${timeout}s" >&2
  else echo "vireo test host: exited (status $qemu_rc) before the command finished" >&2; fi
  grep -v "TCG doesn't support requested feature" "$work/qemu.err" >&2 || true
  # Why (a panic, an OOM kill, a lock-up report): the test host's own console from its first
  # kernel error report (the top of an oops says what failed), else its last lines.
  first=$(grep -n -m1 -E '(BUG:|Oops|general protection|Kernel panic|stack guard|double fault|watchdog:|rcu: INFO)' "$out" | cut -d: -f1 || true)
  if [ -n "$first" ]; then
    echo "vireo test host: its kernel reported (console from line $first):" >&2
    sed -n "${first},$((first + 59))p" "$out" >&2  # no pipe: pipefail would end the script
    echo "... and its console ended with:" >&2
    tail -n 8 "$out" >&2
  else
    echo "vireo test host: its console ended with:" >&2
    grep -v -e '^VIREO-HOST-ALIVE' -e '^VIREO-HOST-STUCK| ' "$out" | tail -n 40 >&2
  fi
  if grep -q '^VIREO-HOST-STUCK| ' "$out"; then
    echo "vireo test host: what its processes were doing 60 s before the time limit:" >&2
    sed -n 's/^VIREO-HOST-STUCK| //p' "$out" | head -n 400 >&2
  fi
  [ -n "${VIREO_TEST_HOST_LOG:-}" ] && cp "$out" "$VIREO_TEST_HOST_LOG"
  if { [ -e "$work/silent" ] || [ -e "$work/frozen" ] || { [ -n "$first" ] && [ "$qemu_rc" != 124 ]; }; } &&
     [ $attempt -lt $attempts ]; then
    attempt=$((attempt + 1))
    echo "vireo test host: the host failed, not the command; running the command again in a fresh host (attempt $attempt of $attempts)" >&2
    continue
  fi
  exit 125
done
