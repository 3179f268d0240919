#!/bin/sh
# vireo up with Debian guests, inside the test host (2 CPUs): pools, affinity, cgroup weight and
# cap, on_poweroff / on_reboot / on_crash, and one wide domain.
pass=0
fail=0
ok() { echo "PASS: $1"; pass=$((pass + 1)); }
bad() { echo "FAIL: $1"; fail=$((fail + 1)); }
mkdir -p /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null
field() {
  vireo list --run-dir /tmp/run --json | tr -d ' \n' | sed 's/},{/}\n{/g' |
    grep "\"name\":\"$1\"" | sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p"
}
wait_state() {
  n=0
  while [ "$(field "$1" state)" != "$2" ] && [ $n -lt 180 ]; do sleep 1; n=$((n + 1)); done
  [ "$(field "$1" state)" = "$2" ]
}
C="console=ttyS0 reboot=k panic=-1 quiet --"
cat >/tmp/host.toml <<TOML
run_dir = "/tmp/run"
reserve = "128M"
[pools.one]
cpus = "1"
[domains.steady]
pool = "one"
weight = 300
cap = 50
cmdline = "$C echo UP-STEADY; sleep 600"
[domains.brief]
cmdline = "$C echo UP-BRIEF; sleep 10; poweroff -f"
on_poweroff = "destroy"
[domains.phoenix]
cmdline = "$C echo UP-PHOENIX; sleep 5; reboot -f"
on_reboot = "restart"
on_crash = "restart"
[domains.fragile]
cmdline = "$C sleep 5; echo c > /proc/sysrq-trigger"
on_crash = "preserve"
TOML
vireo up /tmp/host.toml >/tmp/up.out 2>&1 &
up=$!
if wait_state steady running && wait_state brief shutoff && [ "$(field steady state)" = running ]; then
  ok "4 Debian domains in 2 pools up; brief powered off (on_poweroff = destroy), steady still running"
else bad "up/poweroff: $(cat /tmp/up.out; vireo list --run-dir /tmp/run)"; fi
if wait_state fragile crashed; then ok "fragile panicked: listed as crashed (on_crash = preserve)"
else bad "preserve: $(vireo list --run-dir /tmp/run)"; fi
# phoenix passes once it has booted again after a reboot: a UP-PHOENIX line after "guest
# rebooted: restarting it". on_crash = restart too: a boot that triple-faults under this
# emulation (docs/test-host.md) is started again, and counted in the PASS line, not hidden.
rebooted() { sed -n '/guest rebooted: restarting it/,$p' /tmp/run/phoenix.log | grep -c UP-PHOENIX; }
n=0; while [ "$(rebooted)" -lt 1 ] && [ $n -lt 150 ]; do sleep 1; n=$((n + 1)); done
crashes=$(grep -c 'vireo: error' /tmp/run/phoenix.log)
if [ "$(rebooted)" -ge 1 ] && [ "$(field phoenix state)" = running ]; then
  ok "phoenix came back after reboot -f (on_reboot = restart; boots that crashed on the way: $crashes)"
else bad "restart: $(grep -c UP-PHOENIX /tmp/run/phoenix.log) boots, $crashes crashed, state $(field phoenix state); log ends: $(tail -4 /tmp/run/phoenix.log); supervisor: $(tail -3 /tmp/up.out 2>/dev/null)"; fi
s=$(field steady id)
aff=$(grep Cpus_allowed_list /proc/"$s"/task/*/status | sed 's/.*:\s*//' | sort -u | tr '\n' ' ')
if [ "$aff" = "1 " ]; then ok "steady (pool one = CPU 1): every thread on CPU 1"
else bad "steady affinity: $aff"; fi
cg=/sys/fs/cgroup/vireo-host/one/steady
if [ "$(cat $cg/cpu.weight 2>/dev/null)" = 300 ] && [ "$(cat $cg/cpu.max 2>/dev/null)" = "50000 100000" ] &&
   grep -q "^$s$" $cg/cgroup.procs; then
  ok "steady's cgroup: cpu.weight 300, cpu.max 50000 100000, its process in it"
else bad "cgroup: weight $(cat $cg/cpu.weight 2>&1) max $(cat $cg/cpu.max 2>&1)"; fi
vireo down --run-dir /tmp/run
# ACPI power-off, SIGTERM after the 30 s down timeout, SIGKILL 5 s later: gone within 60 s.
n=0; while kill -0 $up 2>/dev/null && [ $n -lt 60 ]; do sleep 1; n=$((n + 1)); done
if kill -0 $up 2>/dev/null; then
  bad "vireo down: the supervisor still runs after 60 s; $(vireo list --run-dir /tmp/run 2>&1; tail -5 /tmp/up.out; ps -o pid,stat,args | grep '[v]ireo')"
  kill -9 $up
else ok "vireo down: every domain and the supervisor gone in ${n} s"; fi
wait $up

# A Linux domain on 2 MiB huge pages, with 4 vCPUs. Not the 64 the issue asks for: this emulated
# host (TCG emulating AMD-V with nested paging on 2 threads) cannot run 64 L2 vCPUs — QEMU+KVM's
# 64-vCPU guests reset before init there too — and wider guests have triple-faulted or taken the
# host's own kernel down now and then (once at 8 vCPUs). See docs/test-host.md.
# The emulated host also loses a 4-vCPU guest now and then: in two clean-clone CI runs of
# 2026-12-05 this boot triple-faulted after init once and, in the next run, stopped making
# progress early in the kernel's boot twice in a row, while 4 of 4 runs of this script and 8 of 8
# runs of this boot outside CI passed in 4-7 s. A lost boot (a triple fault, or no init within
# 90 s, where it takes 5) is started again, at most twice, and counted in the PASS line; each
# loss prints what the test host looked like.
echo 300 >/proc/sys/vm/nr_hugepages
hugepage_domain() {
  timeout 90 vireo run --cpus 4 --memory 512M --memory-backing hugepages \
    --append '-- echo NPROC=$(nproc); poweroff -f' >/tmp/out 2>&1 </dev/null
  rc=$?
}
losses=0
hugepage_domain
while { [ $rc = 5 ] || grep -q 'stopped by a signal' /tmp/out; } && [ $losses -lt 2 ]; do
  losses=$((losses + 1))
  echo "note: huge pages domain lost (status $rc, init reached: $(grep -c VIREO-GUEST-INIT /tmp/out)): $(tail -n 2 /tmp/out | tr '\n' ' ')"
  echo "note: test host: load $(cat /proc/loadavg); $(grep -E 'HugePages_Free|MemAvailable' /proc/meminfo | tr -s ' ' | tr '\n' ' '); kernel: $(dmesg | tail -n 3 | tr '\n' ' ')"
  hugepage_domain
done
if grep -q "NPROC=4" /tmp/out; then ok "a Linux domain on huge pages (4 vCPUs) boots: nproc = 4 ($losses emulated-host losses retried)"
else bad "huge pages domain ($losses retried): $(tail -5 /tmp/out)"; fi
echo 0 >/proc/sys/vm/nr_hugepages

echo "$pass passed, $fail failed"
[ $fail = 0 ]
