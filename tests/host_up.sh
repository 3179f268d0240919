#!/bin/sh
# vireo up with tiny PVH guests directly on /dev/kvm: pools and affinity, list, policies,
# kill -9 of one domain, destroy, admission refusal, validation errors, down, and 128 domains
# from one file. usage: host_up.sh VIREO PVH_IDLE_ELF PVH_HELLO_ELF
vireo=$1
idle=$2
hello=$3
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/vireo-up.XXXXXX)
trap '"$vireo" down --timeout 0 --run-dir "$work/run" >/dev/null 2>&1; rm -rf "$work"' EXIT
ncpu=$(nproc)
last=$((ncpu - 1))
# field_dir and wait_state_dir (lib.sh) for the first host (RUN_DIR $work/run).
field() { field_dir "$work/run" "$@"; }
wait_state() { wait_state_dir "$work/run" "$@"; }

cat >"$work/host.toml" <<TOML
run_dir = "$work/run"
reserve = "64M"

[pools.first]
cpus = "0"

[domains.alpha]
kernel = "$idle"
memory = "64M"
pool = "first"
weight = 300
allow_software_kvm = true

[domains.beta]
kernel = "$idle"
memory = "64M"
vcpus = 2
allow_software_kvm = true
on_crash = "destroy"

[domains.gamma]
kernel = "$hello"
memory = "64M"
allow_software_kvm = true
on_poweroff = "destroy"
TOML
"$vireo" up "$work/host.toml" >"$work/up.out" 2>&1 &
up_pid=$!
if wait_state alpha running && wait_state beta running && wait_state gamma shutoff; then
  ok "3 domains in 2 pools: alpha and beta running, gamma powered off (on_poweroff = destroy)"
else bad "vireo up: $(cat "$work/up.out")"; fi
sleep 0.5
if grep -q PVH-UP "$work/run/alpha.log" && grep -q PVH-UP "$work/run/beta.log"; then
  ok "each domain's console is in RUN_DIR/NAME.log"
else bad "console logs"; fi
a=$(field alpha id)
aff=$(grep Cpus_allowed_list /proc/"$a"/task/*/status | sed 's/.*:\s*//' | sort -u | tr '\n' ' ')
if [ "$aff" = "0 " ]; then ok "alpha (pool first = CPU 0): every thread's affinity is CPU 0"
else bad "alpha affinity: $aff"; fi
b=$(field beta id)
aff=$(grep Cpus_allowed_list /proc/"$b"/status | sed 's/.*:\s*//')
want=$([ "$ncpu" -gt 1 ] && echo "1-$last" | sed 's/^1-1$/1/' || echo "")
if [ "$ncpu" -eq 1 ] || [ "$aff" = "$want" ]; then ok "beta (default pool = the other CPUs): affinity $aff"
else bad "beta affinity: $aff, wanted $want"; fi
kill -9 "$b"
if wait_state beta crashed && [ "$(field alpha state)" = running ] &&
   grep -q "beta.*killed by signal 9" "$work/up.out"; then
  ok "kill -9 of beta: reported (killed by signal 9), listed as crashed, alpha keeps running"
else bad "kill -9 beta: $(cat "$work/up.out")"; fi
"$vireo" destroy alpha --run-dir "$work/run"
if wait_state alpha destroyed; then ok "vireo destroy alpha"; else bad "destroy alpha"; fi
if "$vireo" destroy nosuch --run-dir "$work/run" 2>&1 | grep -q "no domain"; then
  ok "vireo destroy of an unknown domain: clear error"
else bad "destroy unknown"; fi
"$vireo" down --timeout 0 --run-dir "$work/run"
if reap $up_pid "vireo up after vireo down" && [ ! -e "$work/run/vireo.sock" ]; then ok "vireo down: supervisor gone, socket removed"
else bad "vireo down"; fi

# Admission: more memory than the host has; nothing may start.
cat >"$work/big.toml" <<TOML
run_dir = "$work/run-big"
[domains.huge1]
kernel = "$idle"
memory = "256G"
[domains.huge2]
kernel = "$idle"
memory = "256G"
TOML
out=$("$vireo" up "$work/big.toml" 2>&1); rc=$?
if [ $rc != 0 ] && echo "$out" | grep -q "MiB short" && echo "$out" | grep -q "no domain was started" &&
   ! pgrep -f "name huge" >/dev/null; then
  ok "admission: 512 GiB refused, naming the shortfall; no domain process exists"
else bad "admission: $out"; fi

# Validation: every problem, each with file, line and key.
cat >"$work/bad.toml" <<TOML
[pools.p]
cpus = "0-4096"
[domains.x]
memroy = "1G"
vcpus = 0
pool = "nope"
on_crash = "explode"
TOML
out=$("$vireo" up "$work/bad.toml" 2>&1); rc=$?
if [ $rc != 0 ] && echo "$out" | grep -q "bad.toml:2: pools.p.cpus" &&
   echo "$out" | grep -q "bad.toml:4: domains.x.memroy: unknown key" &&
   echo "$out" | grep -q "bad.toml:5: domains.x.vcpus" &&
   echo "$out" | grep -q 'domains.x.pool: no pool "nope"' &&
   echo "$out" | grep -q "bad.toml:7: domains.x.on_crash"; then
  ok "validation: 5 problems reported at once, each as FILE:LINE: KEY: reason"
else bad "validation: $out"; fi

# 128 domains from one file, all report in.
{
  echo "run_dir = \"$work/run128\""
  echo 'reserve = "64M"'
  for i in $(seq 1 128); do
    printf '[domains.d%d]\nkernel = "%s"\nmemory = "64M"\nallow_software_kvm = true\n' "$i" "$idle"
  done
} >"$work/128.toml"
start=$(now)
"$vireo" up "$work/128.toml" >"$work/up128.out" 2>&1 &
up_pid=$!
reported() { grep -l PVH-UP "$work"/run128/d*.log 2>/dev/null | wc -l; }
all_reported() { [ "$(reported)" -ge 128 ]; }
within 120 all_reported
up=$(reported)
if [ "$up" = 128 ]; then ok "128 domains from one file all report in ($(($(now) - start)) s)"
else bad "128 domains: $up reported; $(tail -3 "$work/up128.out")"; fi
"$vireo" down --timeout 0 --run-dir "$work/run128"
reap $up_pid "vireo up of 128 domains after vireo down"

# Limits: one domain with 1024 vCPUs, one with 256 GiB (untouched; overcommit on this host).
cat >"$work/limits.toml" <<TOML
run_dir = "$work/runl"
overcommit = true
[domains.wide]
kernel = "$idle"
memory = "256M"
vcpus = 1024
allow_software_kvm = true
[domains.deep]
kernel = "$idle"
memory = "256G"
allow_software_kvm = true
TOML
"$vireo" up "$work/limits.toml" >"$work/upl.out" 2>&1 &
up_pid=$!
both_reported() { [ "$(cat "$work"/runl/*.log 2>/dev/null | grep -c PVH-UP)" -ge 2 ]; }
within 60 both_reported
# vCPU 0 reports before the last of 1024 vCPU threads has started (each confines itself to its
# seccomp list first): wait for them.
wide_threads() { ls /proc/"$(field_dir "$work/runl" wide id)"/task 2>/dev/null | wc -l; }
all_threads() { [ "$(wide_threads)" -ge 1024 ]; }
within 30 all_threads
if [ "$(cat "$work"/runl/*.log 2>/dev/null | grep -c PVH-UP)" = 2 ] && wait_state_dir "$work/runl" wide running &&
   [ "$(wide_threads)" -ge 1024 ]; then
  ok "limits: a 1024-vCPU domain and a 256 GiB domain run (1024+ threads in the wide one)"
else
  bad "limits: $(cat "$work"/runl/*.log 2>/dev/null | grep -c PVH-UP) of 2 reported, wide is $(field_dir "$work/runl" wide state) with $(wide_threads) threads"
  echo "---- vireo up:"; tail -n 5 "$work/upl.out"
  for f in "$work"/runl/*.log; do echo "---- $f:"; tail -n 5 "$f"; done
fi
"$vireo" down --timeout 0 --run-dir "$work/runl"
reap $up_pid "vireo up of the limits host after vireo down"

# --detach: returns once every domain runs (the host then logs to RUN_DIR/vireo.log), or with
# the failure when a domain cannot be built.
cat >"$work/det.toml" <<TOML
run_dir = "$work/rund"
[domains.bg]
kernel = "$idle"
memory = "64M"
allow_software_kvm = true
TOML
out=$("$vireo" up --detach "$work/det.toml" 2>&1)
rc=$?
if [ $rc = 0 ] && echo "$out" | grep -q "is up in the background" &&
   [ "$(field_dir "$work/rund" bg state)" = running ] && [ -e "$work/rund/vireo.log" ]; then
  ok "up --detach: returns with the domain running, supervisor logging to vireo.log"
else bad "up --detach: rc $rc: $out"; fi
"$vireo" down --timeout 0 --run-dir "$work/rund" >/dev/null
within 60 test ! -e "$work/rund/vireo.sock"
sed -i "s|kernel = .*|kernel = \"/etc/hostname\"|" "$work/det.toml"
out=$("$vireo" up --detach "$work/det.toml" 2>&1)
rc=$?
if [ $rc != 0 ] && echo "$out" | grep -q "could not be built"; then
  ok "up --detach: a domain that cannot be built fails the command (status $rc)"
else bad "up --detach with a bad kernel: rc $rc: $out"; fi

# memory_backing = "hugepages": 2 MiB pages reserved before the guest runs, returned after;
# admission counts free huge pages; vireo run says when there are too few. Needs root (the
# huge page pool is the host's); the pool's old size is restored.
hp=/proc/sys/vm/nr_hugepages
if [ -w $hp ]; then
  old_hp=$(cat $hp)
  trap 'echo "$old_hp" >'$hp'; "$vireo" down --timeout 0 --run-dir "$work/run" >/dev/null 2>&1; rm -rf "$work"' EXIT
  hfree() { sed -n 's/^HugePages_Free: *//p' /proc/meminfo; }
  echo $((old_hp + 40)) >$hp
  free0=$(hfree)
  cat >"$work/huge.toml" <<TOML
run_dir = "$work/runh"
[domains.huge]
kernel = "$idle"
memory = "64M"
memory_backing = "hugepages"
allow_software_kvm = true
TOML
  if [ "$free0" -lt 32 ]; then
    echo "SKIP: hugepages: only $free0 free 2 MiB pages after asking for 40 more (fragmented memory)"
  else
    "$vireo" up "$work/huge.toml" >"$work/uph.out" 2>&1 &
    up_pid=$!
    if wait_state_dir "$work/runh" huge running && [ "$(hfree)" = $((free0 - 32)) ]; then
      ok "hugepages: a 64 MiB domain holds 32 huge pages while it runs ($free0 -> $(hfree) free)"
    else bad "hugepages: free $free0 -> $(hfree); $(tail -3 "$work/uph.out"; tail -2 "$work"/runh/*.log)"; fi
    "$vireo" down --timeout 0 --run-dir "$work/runh" >/dev/null
    reap $up_pid "vireo up of the huge-page domain after vireo down"
    if [ "$(hfree)" = "$free0" ]; then ok "hugepages: all $free0 free again after the domain stopped"
    else bad "hugepages: $(hfree) free after down, $free0 before"; fi
    sed -i 's/memory = "64M"/memory = "2G"/' "$work/huge.toml"
    out=$("$vireo" up "$work/huge.toml" 2>&1)
    if echo "$out" | grep -q "huge pages" && echo "$out" | grep -q "no domain was started"; then
      ok "hugepages: a domain needing more huge pages than are free is refused"
    else bad "hugepages admission: $out"; fi
  fi
  echo 0 >$hp
  if [ "$(hfree)" = 0 ]; then
    out=$("$vireo" run --kernel "$idle" --memory 64M --memory-backing hugepages --allow-software-kvm 2>&1)
    if [ $? != 0 ] && echo "$out" | grep -q "not enough free 2 MiB huge pages"; then
      ok "hugepages: vireo run without free huge pages says so"
    else bad "vireo run --memory-backing hugepages without huge pages: $out"; fi
  fi
  echo "$old_hp" >$hp
fi

echo "$pass passed, $fail failed"
[ $fail = 0 ]
