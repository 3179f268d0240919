#!/bin/sh
# Linux guest tests. Runs inside the test host (tests/host/run.sh), where /dev/kvm is real
# hardware-style KVM and the default guest is in $VIREO_GUEST_DIR. Each case boots Debian's
# cloud kernel under vireo and checks what the guest reports. Ends with "N passed, M failed".
pass=0
fail=0
ok() { echo "PASS: $1"; pass=$((pass + 1)); }
bad() { echo "FAIL: $1"; fail=$((fail + 1)); echo "---- output"; tail -n 25 /tmp/out; echo "----"; }
# vrun ARGS...: runs vireo with a time limit; output in /tmp/out, status in $rc.
vrun() { timeout 180 vireo run "$@" >/tmp/out 2>&1 </dev/null; rc=$?; }
has() { grep -q -- "$1" /tmp/out; }
value() { sed -n "s/^$1=\([0-9]*\).*/\1/p" /tmp/out | tail -n1; }

# 1 vCPU: init marker, nproc, no ACPI errors, clean poweroff.
# ACPICA reports problems as "ACPI Error", "ACPI BIOS Error", "ACPI Warning". The kernel logs its
# command line and init's arguments too, so the patterns are written not to match themselves.
vrun --cpus 1 --append '-- echo NPROC=$(nproc); dmesg | grep -e ACP[I].Error -e ACP[I].BIOS -e ACP[I].Warning | sed s/^/ACPI-PROBLEM:/; echo ACPIERR=$(dmesg | grep -c -e ACP[I].Error -e ACP[I].BIOS -e ACP[I].Warning); poweroff -f'
if [ $rc = 0 ] && has VIREO-GUEST-INIT && [ "$(value NPROC)" = 1 ] && [ "$(value ACPIERR)" = 0 ]; then
  ok "boot with 1 vCPU to init, no ACPI errors, poweroff -f exits 0"
else bad "boot with 1 vCPU (status $rc)"; fi

# 4 vCPUs: SMP from the ACPI MADT.
vrun --cpus 4 --append '-- echo NPROC=$(nproc); poweroff -f'
if [ $rc = 0 ] && [ "$(value NPROC)" = 4 ]; then ok "boot with 4 vCPUs: guest sees 4"
else bad "boot with 4 vCPUs (status $rc, nproc $(value NPROC))"; fi

# Memory: MemTotal matches --memory within kernel reservations.
vrun --memory 512M --append '-- echo MEMKB=$(sed -n s/^MemTotal:\ *//p /proc/meminfo); poweroff -f'
mem=$(value MEMKB)
if [ $rc = 0 ] && [ -n "$mem" ] && [ "$mem" -gt $((440 * 1024)) ] && [ "$mem" -le $((512 * 1024)) ]; then
  ok "--memory 512M: guest MemTotal ${mem} KiB"
else bad "--memory 512M (status $rc, MemTotal ${mem:-?} KiB)"; fi

# 128 GiB on a host with far less: untouched guest memory costs nothing.
vrun --memory 128G --stats --append '-- echo MEMKB=$(sed -n s/^MemTotal:\ *//p /proc/meminfo); poweroff -f'
mem=$(value MEMKB)
rss=$(sed -n 's/.*peak_rss_kib=\([0-9]*\).*/\1/p' /tmp/out)
if [ $rc = 0 ] && [ -n "$mem" ] && [ "$mem" -gt $((120 * 1024 * 1024)) ] && [ -n "$rss" ] && [ "$rss" -lt $((4 * 1024 * 1024)) ]; then
  ok "--memory 128G boots: MemTotal ${mem} KiB, vireo peak RSS $((rss / 1024)) MiB"
else bad "--memory 128G (status $rc, MemTotal ${mem:-?} KiB, RSS ${rss:-?} KiB)"; fi

# Reboot: restarts in place by default...
vireo run --append '-- reboot -f' >/tmp/out 2>&1 </dev/null &
pid=$!
n=0
while [ $n -lt 100 ] && [ "$(grep -c VIREO-GUEST-INIT /tmp/out)" -lt 2 ]; do sleep 1; n=$((n + 1)); done
boots=$(grep -c VIREO-GUEST-INIT /tmp/out)
kill $pid 2>/dev/null; wait $pid; rc=$?
if [ "$boots" -ge 2 ] && has "restarting" && [ $rc = 0 ]; then
  ok "reboot -f restarts the guest in place; SIGTERM then stops it (status 0)"
else bad "reboot -f restart ($boots boots, status $rc)"; fi
# ...and exits with status 6 under --on-reboot exit.
vrun --on-reboot exit --append '-- reboot -f'
if [ $rc = 6 ] && [ "$(grep -c VIREO-GUEST-INIT /tmp/out)" = 1 ]; then ok "--on-reboot exit: status 6"
else bad "--on-reboot exit (status $rc)"; fi

# Guest kernel panic: pvpanic reports it, status 4.
vrun --append '-- echo c > /proc/sysrq-trigger'
if [ $rc = 4 ] && has "guest kernel panic"; then ok "guest panic: status 4 with a reason"
else bad "guest panic (status $rc)"; fi

# Console input reaches the guest shell.
rm -f /tmp/in; mkfifo /tmp/in
vireo run </tmp/in >/tmp/out 2>&1 &
pid=$!
exec 3>/tmp/in
n=0
while [ $n -lt 100 ] && ! has "starting a shell"; do sleep 1; n=$((n + 1)); done
sleep 2
echo 'echo CONSOLE-$((6 * 7))' >&3
echo 'poweroff -f' >&3
n=0
while [ $n -lt 60 ] && kill -0 $pid 2>/dev/null; do sleep 1; n=$((n + 1)); done
kill $pid 2>/dev/null
wait $pid; rc=$?
exec 3>&-
if [ $rc = 0 ] && has "CONSOLE-42"; then ok "console input reaches the guest shell"
else bad "console input (status $rc)"; fi

# Bad input: a clear error and status 1, before anything runs.
echo "not a kernel" >/tmp/notakernel
dd if=/dev/zero of=/tmp/bigfile bs=1M count=100 2>/dev/null
check_error() {  # check_error "needle" ARGS...
  needle=$1; shift
  vrun "$@"
  what=$(echo "$*" | cut -c1-60)
  if [ $rc = 1 ] && has "$needle"; then ok "refused: $what"; else bad "expected \"$needle\" for: $what (status $rc)"; fi
}
check_error "not a Linux kernel" --kernel /tmp/notakernel
check_error "cannot open kernel /nonexistent" --kernel /nonexistent
check_error "cannot open initrd /nonexistent" --initrd /nonexistent
check_error "do not fit" --memory 100M --initrd /tmp/bigfile
check_error "needs 6. MiB" --memory 64M
check_error "must be 1 to" --cpus 300
check_error "unknown unit" --memory 12Q
check_error "at most 2047" --cmdline "$(head -c 3000 /dev/zero | tr '\0' x)"

echo "linux guest tests: $pass passed, $fail failed"
[ $fail = 0 ]
