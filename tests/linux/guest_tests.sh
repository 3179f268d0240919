#!/bin/sh
# Linux guest tests. Runs inside the test host (tests/host/run.sh), where /dev/kvm is real
# hardware-style KVM and the default guest is in $VIREO_GUEST_DIR. Each case boots Debian's
# cloud kernel under vireo and checks what the guest reports. Ends with "N passed, M failed".
. /opt/vireo/files/lib.sh  # script_disk, within, reap (its ok and bad are replaced below)
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

# CPU templates: /proc/cpuinfo's flags under host, x86-64-v2 and host with one feature taken
# away (MOVBE and BMI2 show what v2 hides: the guest's kernel shows no AVX here); the
# TSC-deadline timer is offered (the clock event device says which mode the LAPIC timer runs).
# Speculation controls ride along: spec_ctrl on (the default) shows the test host's VIRT_SSBD
# and ARCH_CAPABILITIES, so the guest mitigates speculative store bypass (prctl); the
# host,-movbe boot also has --spec-ctrl off, and its kernel finds itself vulnerable. So does
# the MSR allow-list: through the msr module, /dev/cpu/0/msr reads the TSC (0x10) but not
# SMI_COUNT (0x34: KVM has it, no kernel needs it) under the default --msr-filter on, which
# counts the refusal; the host,-movbe boot has --msr-filter off too and reads both.
# (The probe runs from a script disk: the kernel gives init at most 32 arguments.)
cat >/tmp/cpu-probe.sh <<'PROBE'
echo FLAGS: $(grep -m1 ^flags /proc/cpuinfo | cut -d: -f2) :
echo CLOCKEVENT=$(cat /sys/devices/system/clockevents/clockevent0/current_device)
echo SSB=$(cat /sys/devices/system/cpu/vulnerabilities/spec_store_bypass)
modprobe msr
for m in 16 52; do  # /dev/cpu/0/msr at offset MSR reads it
  echo MSR$m=$(dd if=/dev/cpu/0/msr bs=8 count=1 skip=$m iflag=skip_bytes 2>/dev/null | od -A n -t x8 | tr -d ' \n')
done
echo UNCHECKED=$(dmesg | grep -c 'unchecked MSR')
poweroff -f
PROBE
script_disk /tmp/cpu-probe.sh /tmp/cpu-probe.img
F='-- sh /dev/vda'
P='--disk /tmp/cpu-probe.img,readonly'
flags() { sed -n 's/^FLAGS: \(.*\) :.*/ \1 /p' /tmp/out | tail -n1; }
ssb() { sed -n 's/^SSB=//p' /tmp/out | tr -d '\r' | tail -n1; }
msr() { sed -n "s/^MSR$1=//p" /tmp/out | tr -d '\r' | tail -n1; }
hex() { echo "$1" | grep -q '^[0-9a-f]\{16\}$'; }
vrun $P --append "$F"; host_flags=$(flags); ce=$(sed -n 's/^CLOCKEVENT=//p' /tmp/out | tr -d '\r')
host_ssb=$(ssb) on_tsc=$(msr 16) on_smi=$(msr 52) on_unchecked=$(value UNCHECKED)
on_refused=$(sed -n 's/.*MSR allow-list: \([0-9]*\) refused.*/\1/p' /tmp/out | tail -n1)
vrun $P --cpu x86-64-v2 --append "$F"; v2_flags=$(flags)
vrun $P --cpu host,-movbe --spec-ctrl off --msr-filter off --append "$F"; nomovbe_flags=$(flags)
off_ssb=$(ssb) off_smi=$(msr 52) off_refused=$(grep -c 'MSR allow-list' /tmp/out)
if echo "$host_flags" | grep -q ' movbe .* bmi2 ' && echo "$v2_flags" | grep -q ' sse4_2 ' &&
   ! echo "$v2_flags" | grep -q -e ' movbe ' -e ' bmi2 ' -e ' svm ' &&
   ! echo "$nomovbe_flags" | grep -q ' movbe ' && echo "$nomovbe_flags" | grep -q ' bmi2 ' &&
   echo "$host_flags" | grep -q ' tsc_deadline_timer ' && [ "$ce" = lapic-deadline ]; then
  ok "--cpu: x86-64-v2 hides movbe, bmi2 and svm and keeps sse4_2; host,-movbe hides movbe only; the LAPIC timer runs in TSC-deadline mode"
else bad "--cpu: host [$host_flags] clock event $ce; x86-64-v2 [$v2_flags]; host,-movbe [$nomovbe_flags]"; fi
if echo "$host_flags" | grep -q ' virt_ssbd ' && echo "$host_ssb" | grep -q '^Mitigation' &&
   ! echo "$nomovbe_flags" | grep -q -e ' virt_ssbd ' -e ' ssbd ' -e ' arch_capabilities ' &&
   [ "$off_ssb" = Vulnerable ]; then
  ok "--spec-ctrl: on shows virt_ssbd (spec_store_bypass: $host_ssb); off hides it (spec_store_bypass: $off_ssb)"
else bad "--spec-ctrl: on: [$host_ssb] flags [$host_flags]; off: [$off_ssb] flags [$nomovbe_flags]"; fi
if hex "$on_tsc" && [ -z "$on_smi" ] && [ "${on_refused:-0}" -ge 2 ] && [ "$on_unchecked" = 0 ] &&
   hex "$off_smi" && [ "$off_refused" = 0 ]; then
  ok "--msr-filter: on: TSC $on_tsc, SMI_COUNT refused (EIO), $on_refused refusals counted, no unchecked MSR access at boot; off: SMI_COUNT $off_smi"
else bad "--msr-filter: on: TSC [$on_tsc] SMI_COUNT [$on_smi] refused [$on_refused] unchecked [$on_unchecked]; off: SMI_COUNT [$off_smi] refused lines [$off_refused]"; fi
# x86-64-v3: its BMI2 and MOVBE, none of AES, PCLMULQDQ, SVM. (The guest's kernel turns XSAVE
# off on this emulated CPU, and AVX, AVX2 and FMA with it, under any template.)
vrun $P --cpu x86-64-v3 --append "$F"; v3_flags=$(flags)
if [ $rc = 0 ] && echo "$v3_flags" | grep -q ' movbe .* bmi2 ' &&
   ! echo "$v3_flags" | grep -q -e ' aes ' -e ' pclmulqdq ' -e ' svm '; then
  ok "--cpu x86-64-v3: movbe and bmi2 stay, aes, pclmulqdq and svm go"
else bad "--cpu x86-64-v3 (status $rc): [$v3_flags]"; fi
vrun $P --cpu host,+avx512f --append "$F"
if [ $rc != 0 ] && has 'cpu: cannot set avx512f' && ! has VIREO-GUEST-INIT; then
  ok "--cpu host,+avx512f refused on a host without it: $(grep 'cannot set' /tmp/out | tail -n1)"
else bad "--cpu host,+avx512f (status $rc)"; fi

# 4 vCPUs: SMP from the ACPI MADT. In the emulated test host a multi-vCPU L2 guest is now and
# then lost (a triple fault, or no progress until the time limit; docs/test-host.md). Measured
# 2026-12-05: 12 of 12 such boots took 4-6 s outside CI; a clean-clone CI run lost one (no
# output in 180 s). A loss is started again, at most twice, and counted in the PASS line.
lost() { [ $rc = 5 ] || has 'stopped by a signal'; }
losses=0
vrun --cpus 4 --append '-- echo NPROC=$(nproc); poweroff -f'
while lost && [ $losses -lt 2 ]; do
  losses=$((losses + 1)); echo "note: 4-vCPU guest lost (status $rc): $(tail -n 2 /tmp/out | tr '\n' ' ')"
  vrun --cpus 4 --append '-- echo NPROC=$(nproc); poweroff -f'
done
if [ $rc = 0 ] && [ "$(value NPROC)" = 4 ]; then ok "boot with 4 vCPUs: guest sees 4 ($losses emulated-host losses retried)"
else bad "boot with 4 vCPUs (status $rc, nproc $(value NPROC), $losses retried)"; fi

# 256 vCPUs on this KVM (kvm_amd): a tiny PVH guest starts every AP the MADT lists with INIT +
# startup IPI and checks each one ran. (A 256-vCPU Linux guest is more than the emulated test
# host can run, under any VMM: docs/test-host.md.)
vrun --kernel /opt/vireo/files/pvh_smp.elf --memory 64M --cpus 256 --on-reboot exit
if [ $rc = 0 ] && has "SMP-OK 256"; then ok "256 vCPUs: every CPU in the MADT started (tiny guest)"
else bad "256 vCPUs, tiny SMP guest (status $rc)"; fi

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
: >/tmp/out  # before each background start: no wait below may see an earlier run's lines
vireo run --append '-- reboot -f' >/tmp/out 2>&1 </dev/null &
pid=$!
n=0
while [ $n -lt 100 ] && [ "$(grep -c VIREO-GUEST-INIT /tmp/out)" -lt 2 ]; do sleep 1; n=$((n + 1)); done
boots=$(grep -c VIREO-GUEST-INIT /tmp/out)
kill $pid 2>/dev/null; wait $pid; rc=$?
if [ "$boots" -ge 2 ] && has "restarting" && [ $rc = 0 ]; then
  ok "reboot -f restarts the guest in place; SIGTERM then stops it (status 0)"
else bad "reboot -f restart ($boots boots, status $rc)"; fi
# The reboot resets the machine in place (same KVM VM, vCPUs and memory slots; the sandboxed
# domain could not build another): with two vCPUs and a disk being read as the guest reboots,
# every boot sees both CPUs and the whole disk again.
# Like the 4-vCPU boot above, a 2-vCPU guest is now and then lost in the emulated host (a
# clean-clone ASan CI run, 2026-12-05: no console output at all in 150 s): a run that only fell
# short of three boots, every boot it made right and no violation, is started again, at most twice.
dd if=/dev/zero of=/tmp/r.img bs=1M count=8 2>/dev/null
reboots() {
  : >/tmp/out
  vireo run --cpus 2 --disk /tmp/r.img --append '-- echo BOOTED NCPU=$(grep -c ^processor /proc/cpuinfo) VDA=$(cat /sys/block/vda/size); dd if=/dev/vda of=/dev/null bs=4k & reboot -f' >/tmp/out 2>&1 </dev/null &
  pid=$!
  n=0
  while [ $n -lt 150 ] && [ "$(grep -c '^BOOTED' /tmp/out)" -lt 3 ]; do sleep 1; n=$((n + 1)); done
  kill $pid 2>/dev/null; wait $pid; rc=$?
  good=$(grep -c '^BOOTED NCPU=2 VDA=16384' /tmp/out)
  all=$(grep -c '^BOOTED' /tmp/out)
}
losses=0
reboots
while [ "$all" -lt 3 ] && [ "$good" = "$all" ] && [ $rc = 0 ] && ! has "violation" && [ $losses -lt 2 ]; do
  losses=$((losses + 1)); echo "note: 2-vCPU rebooting guest lost after $all boots: $(tail -n 2 /tmp/out | tr '\n' ' ')"
  reboots
done
if [ "$good" -ge 3 ] && [ "$good" = "$all" ] && [ $rc = 0 ] && ! has "violation"; then
  ok "reboot in place with 2 vCPUs and a busy disk: $good boots, each with both CPUs and the disk ($losses emulated-host losses retried)"
else bad "reboot in place: $(grep '^BOOTED' /tmp/out | sort | uniq -c | tr '\n' ' ') status $rc, $losses retried; $(grep -i 'error\|violation' /tmp/out | head -3)"; fi
# ...and exits with status 6 under --on-reboot exit.
vrun --on-reboot exit --append '-- reboot -f'
if [ $rc = 6 ] && [ "$(grep -c VIREO-GUEST-INIT /tmp/out)" = 1 ]; then ok "--on-reboot exit: status 6"
else bad "--on-reboot exit (status $rc)"; fi

# Guest kernel panic: pvpanic reports it, status 4, and the guest's own last words (written to
# the console after its pvpanic notifier ran) are in the output.
vrun --append '-- echo c > /proc/sysrq-trigger'
if [ $rc = 4 ] && has "guest kernel panic" && has "Kernel panic - not syncing"; then
  ok "guest panic: status 4 with a reason, the guest's panic message on the console"
else bad "guest panic (status $rc)"; fi

# Console input reaches the guest shell.
rm -f /tmp/in; mkfifo /tmp/in
: >/tmp/out
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

# virtio-blk and virtio-rng, found through the ACPI DSDT. vda: a read-write image the host
# filled; vdb: a read-only one. The guest reads both back, writes a pattern to vda (O_DIRECT,
# fsync), fails to write vdb, and reads /dev/hwrng.
dd if=/dev/urandom of=/tmp/a.img bs=1M count=8 2>/dev/null
dd if=/dev/urandom of=/tmp/b.img bs=1M count=4 2>/dev/null
a_sum=$(sha256sum /tmp/a.img | cut -d' ' -f1)
b_sum=$(sha256sum /tmp/b.img | cut -d' ' -f1)
# The kernel passes at most 32 words to init, so the guest's script travels as a disk of its
# own (/dev/vdc), padded with newlines to whole sectors.
cat >/tmp/blk.sh <<'SCRIPT'
echo VDA=$(cat /sys/block/vda/size)
echo VDB=$(cat /sys/block/vdb/size)
echo VDBRO=$(cat /sys/block/vdb/ro)
echo SUMA=$(sha256sum /dev/vda)
echo SUMB=$(sha256sum /dev/vdb)
echo SERIAL=$(cat /sys/block/vda/serial)
dd if=/dev/urandom of=/tmp/p bs=1M count=4 2>/dev/null
dd if=/tmp/p of=/dev/vda bs=1M oflag=direct conv=fsync 2>/dev/null && echo WROTE-A
echo PSUM=$(sha256sum /tmp/p)
dd if=/dev/zero of=/dev/vdb bs=4k count=1 oflag=direct 2>/dev/null || echo VDB-WRITE-REFUSED
echo RNG=$(cat /sys/class/misc/hw_random/rng_current)
echo RNGBYTES=$(head -c 4096 /dev/hwrng | wc -c)
SCRIPT
script_disk /tmp/blk.sh /tmp/blk.img
vrun --rng --disk /tmp/a.img,serial=vireo-disk-a --disk /tmp/b.img,readonly --disk /tmp/blk.img,readonly --append '-- sh /dev/vdc; poweroff -f'
p_sum=$(sed -n 's/^PSUM=\([0-9a-f]*\).*/\1/p' /tmp/out)
host_p_sum=$(head -c 4194304 /tmp/a.img | sha256sum | cut -d' ' -f1)
if [ $rc = 0 ] && [ "$(value VDA)" = 16384 ] && [ "$(value VDB)" = 8192 ] && has "VDBRO=1"; then
  ok "two virtio-blk disks: /dev/vda and /dev/vdb with the right sizes, vdb read-only"
else bad "virtio-blk disks seen by the guest (status $rc)"; fi
if has "SUMA=$a_sum" && has "SUMB=$b_sum"; then ok "host-written images read back identically in the guest"
else bad "guest reads of host-written images (sha256 mismatch)"; fi
if has WROTE-A && [ -n "$p_sum" ] && [ "$p_sum" = "$host_p_sum" ]; then
  ok "pattern written by the guest (O_DIRECT, fsync) reads back identically on the host"
else bad "guest-written pattern on the host (guest $p_sum, host $host_p_sum)"; fi
if has VDB-WRITE-REFUSED && [ "$(sha256sum /tmp/b.img | cut -d' ' -f1)" = "$b_sum" ]; then
  ok "read-only disk refuses writes; its image is untouched"
else bad "read-only disk"; fi
if has "SERIAL=vireo-disk-a"; then ok "serial=ID reaches the guest (GET_ID)"
else bad "disk serial"; fi
if has "RNG=virtio_rng" && [ "$(value RNGBYTES)" = 4096 ]; then ok "virtio-rng: /dev/hwrng yields data"
else bad "virtio-rng (RNGBYTES $(value RNGBYTES))"; fi

# I/O rate limits: vdb limited to 10 MB/s gives 50 MB read with O_DIRECT in 4.5 to 5.5 s; vdc
# limited to 200 operations a second gives 1000 reads of 4 KiB in as long (a bucket holds a
# tenth of a second's worth: the second read starts two seconds after boot with little saved).
cat >/tmp/limits.sh <<'PROBE'
t() { cut -d' ' -f1 /proc/uptime; }
a=$(t); dd if=/dev/vdb of=/dev/null bs=512000 count=98 iflag=direct 2>/dev/null; b=$(t)
dd if=/dev/vdc of=/dev/null bs=4096 count=1000 iflag=direct 2>/dev/null; c=$(t)
echo "LIMITS $a $b $c"
poweroff -f
PROBE
script_disk /tmp/limits.sh /tmp/limits.img
truncate -s 64M /tmp/lim-b.img /tmp/lim-c.img
vrun --disk /tmp/limits.img,readonly --disk /tmp/lim-b.img,readonly,bps=10000000 \
  --disk /tmp/lim-c.img,readonly,iops=200 --append '-- sh /dev/vda'
set -- $(sed -n 's/^LIMITS //p' /tmp/out | tr -d '\r' | tail -n1)
bps_s=$(awk "BEGIN { printf \"%.2f\", ${2:-0} - ${1:-0} }")
iops_s=$(awk "BEGIN { printf \"%.2f\", ${3:-0} - ${2:-0} }")
if [ $rc = 0 ] && [ $# = 3 ] && awk "BEGIN { exit !($bps_s >= 4.5 && $bps_s <= 5.5 && $iops_s >= 4.5 && $iops_s <= 5.5) }"; then
  ok "rate limits: 50 MB at bps=10000000 in $bps_s s; 1000 reads at iops=200 in $iops_s s"
else bad "rate limits (status $rc): 50 MB in $bps_s s, 1000 reads in $iops_s s (want 4.5 to 5.5)"; fi
rm -f /tmp/lim-b.img /tmp/lim-c.img

# Interrupt models (--irqchip): split keeps KVM's local APICs and puts the I/O APIC, the 8259s
# and the PIT in vireo; userspace has vireo emulate the local APICs too (x2APIC, the
# TSC-deadline timer, INIT and startup IPIs for the APs). In each, with 1 and 4 vCPUs: nproc,
# `sleep 1` takes a second of guest uptime, the UART's (split: KVM_SIGNAL_MSI from vireo's I/O
# APIC; userspace: into vireo's local APIC) and the disk's (split: an irqfd on the I/O APIC
# entry's route; userspace: its eventfd on the device loop) interrupts arrive, a write survives
# a reboot in place (the chips back to power-on) and no APIC error is logged; `vireo info`
# shows the model. (`sleep 1` in the emulated
# host, measured 2026-12-07 with 4 vCPUs: 105-114 cs of uptime in either model, 5 sleeps each;
# once 153 cs right after a reboot. Below 100 or far above is broken time.)
cat >/tmp/irq.sh <<'SCRIPT'
if [ "$(dd if=/dev/vda bs=5 count=1 2>/dev/null)" = BOOT1 ]; then
  echo NPROC=$(nproc)
  a=$(cut -d' ' -f1 /proc/uptime); sleep 1; b=$(cut -d' ' -f1 /proc/uptime)
  echo SLEPT_CS=$(echo "$a $b" | awk '{ printf "%d", ($2 - $1) * 100 }')
  echo UART_IRQS=$(awk '/ttyS0/ { n = 0; for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) n += $i; print n }' /proc/interrupts)
  echo DISK_IRQS=$(awk '/virtio0/ { n = 0; for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) n += $i; print n }' /proc/interrupts)
  echo APICERR=$(dmesg | grep -c -i -e 'APIC.*error' -e 'IO-APIC.*bug' -e 'timer doesn.t work' -e 'spurious')
  sleep 600  # until the host has asked for `vireo info` and stops the domain (SIGTERM)
fi
printf BOOT1 | dd of=/dev/vda conv=notrunc 2>/dev/null; sync
reboot -f
SCRIPT
script_disk /tmp/irq.sh /tmp/irq-script.img
irq_boot() {  # irq_boot MODEL CPUS: output in /tmp/out
  dd if=/dev/zero of=/tmp/irq.img bs=1M count=1 2>/dev/null
  rm -f /tmp/irq-api.sock
  : >/tmp/out  # before the background start: the wait below must not see the last run's lines
  timeout 180 vireo run --irqchip "$1" --cpus "$2" --disk /tmp/irq.img \
    --disk /tmp/irq-script.img,readonly --api-socket /tmp/irq-api.sock \
    --append '-- sh /dev/vdb' >/tmp/out 2>&1 </dev/null &
  ipid=$!
  n=0
  while [ $n -lt 150 ] && ! has '^APICERR=' && kill -0 $ipid 2>/dev/null; do sleep 1; n=$((n + 1)); done
  vireo info --api-socket /tmp/irq-api.sock >/tmp/irq-info 2>&1
  kill $ipid 2>/dev/null; wait $ipid; rc=$?
}
for model in split userspace; do for cpus in 1 4; do
  losses=0
  irq_boot $model $cpus
  while ! has '^APICERR=' && lost && [ $losses -lt 2 ]; do
    losses=$((losses + 1)); echo "note: $cpus-vCPU $model-irqchip guest lost (status $rc): $(tail -n 2 /tmp/out | tr '\n' ' ')"
    irq_boot $model $cpus
  done
  slept=$(value SLEPT_CS)
  if [ $rc = 0 ] && [ "$(grep -c VIREO-GUEST-INIT /tmp/out)" = 2 ] && [ "$(value NPROC)" = $cpus ] &&
     [ -n "$slept" ] && [ "$slept" -ge 95 ] && [ "$slept" -le 200 ] &&
     [ "$(value UART_IRQS)" -gt 0 ] && [ "$(value DISK_IRQS)" -gt 0 ] && [ "$(value APICERR)" = 0 ] &&
     grep -q "^irqchip *$model" /tmp/irq-info; then
    ok "--irqchip $model, $cpus vCPU(s): nproc $cpus, sleep 1 took ${slept}0 ms, UART $(value UART_IRQS) and disk $(value DISK_IRQS) interrupts, reboot in place, no APIC errors, info says $model ($losses emulated-host losses retried)"
  else bad "--irqchip $model, $cpus vCPU(s) (status $rc, nproc $(value NPROC), slept ${slept:-?}0 ms, UART $(value UART_IRQS), disk $(value DISK_IRQS), APIC errors $(value APICERR), info: $(head -c 300 /tmp/irq-info))"; fi
done; done
rm -f /tmp/irq.img /tmp/irq-script.img /tmp/irq-info

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
check_error "fits neither above the kernel" --memory 100M --initrd /tmp/bigfile
check_error "needs 6. MiB" --memory 64M
check_error "must be 1 to" --cpus 2000
check_error "unknown unit" --memory 12Q
check_error "is a directory" --disk /tmp
check_error "not a positive multiple of 512" --disk /tmp/notakernel
check_error "unknown option" --disk /tmp/a.img,bogus
check_error "cannot open" --disk /nonexistent.img
check_error "at most 2047" --cmdline "$(head -c 3000 /dev/zero | tr '\0' x)"
check_error "irqchip: \"userland\": use kernel, split or userspace" --irqchip userland

echo "linux guest tests: $pass passed, $fail failed"
[ $fail = 0 ]
