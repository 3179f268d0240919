#!/bin/sh
# The sandbox from the host's side, with tiny guests on /dev/kvm (needs root): every thread of
# a domain runs as a non-root uid with no capabilities, no_new_privs and a seccomp filter; its
# root is not the host's; its namespaces differ as docs/security.md says; its sockets belong to
# its uid; `vireo info` shows the jail; a violation ends the domain with status 8 naming the
# call, and under `vireo up` is a crash for on_crash while the other domains run on.
# usage: sandbox.sh VIREO PVH_IDLE_ELF
vireo=$1
idle=$2
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/vireo-sandbox.XXXXXX)
R="--run-dir $work/run"
trap '"$vireo" down --timeout 0 $R >/dev/null 2>&1; kill $run_pid 2>/dev/null; sleep 1; rm -rf "$work"' EXIT

# Waits (up to 30 s) for a process of uid $1 whose threads include a vCPU; prints its pid.
vcpu_process_of() {
  for d in /proc/[0-9]*; do
    if grep -q "^Uid:[[:space:]]*$1[[:space:]]" "$d/status" 2>/dev/null &&
       grep -qs '^vireo-vcpu' "$d"/task/*/comm 2>/dev/null; then
      echo "${d#/proc/}"; return 0
    fi
  done
  return 1
}
pid_of_uid() { within 30 vcpu_process_of "$1"; }
same_file() { [ "$(stat -L -c %d:%i "$1")" = "$(stat -L -c %d:%i "$2")" ]; }

# Every thread: uid, capabilities, no_new_privs, seccomp; the root; the namespaces.
check_jail() {  # check_jail PID UID WHAT [host-net]
  p=$1
  threads=0
  wrong=""
  for t in /proc/$p/task/*; do
    threads=$((threads + 1))
    st=$(cat "$t/status")
    name=$(cat "$t/comm")
    echo "$st" | grep -q "^Uid:[[:space:]]*$2[[:space:]]*$2[[:space:]]*$2[[:space:]]*$2$" || wrong="$wrong $name:uid"
    echo "$st" | grep -q '^CapEff:[[:space:]]*0000000000000000$' || wrong="$wrong $name:CapEff"
    echo "$st" | grep -q '^CapBnd:[[:space:]]*0000000000000000$' || wrong="$wrong $name:CapBnd"
    echo "$st" | grep -q '^NoNewPrivs:[[:space:]]*1$' || wrong="$wrong $name:NoNewPrivs"
    echo "$st" | grep -q '^Seccomp:[[:space:]]*2$' || wrong="$wrong $name:Seccomp"
  done
  if [ -z "$wrong" ] && [ $threads -ge 3 ]; then ok "$3: all $threads threads: uid $2, CapEff 0, CapBnd 0, NoNewPrivs 1, Seccomp 2"
  else bad "$3: threads ($threads):$wrong"; fi
  if ! same_file /proc/$p/root /; then ok "$3: its root is not the host's"
  else bad "$3: /proc/$p/root is the host's root"; fi
  differ=""
  for ns in mnt ipc uts pid net; do
    if [ "$(readlink /proc/$p/ns/$ns)" != "$(readlink /proc/self/ns/$ns)" ]; then differ="$differ $ns"; fi
  done
  want=" mnt ipc uts pid net"
  [ "$4" = host-net ] && want=" mnt ipc uts pid"
  if [ "$differ" = "$want" ]; then ok "$3: own namespaces:$differ"
  else bad "$3: namespaces that differ from the host's:$differ (want$want)"; fi
}

# --- vireo run: a tiny guest with an API, console and vsock socket, a disk and metrics.
mkdir -p "$work/vs"
head -c 1048576 /dev/zero >"$work/disk.img"
"$vireo" run --allow-software-kvm --memory 64M --kernel "$idle" --console "file:$work/c.log" \
  --api-socket "$work/api.sock" --console-socket "$work/con.sock" --disk "$work/disk.img" \
  --vsock "cid=3,socket=$work/vs/v.sock" --metrics 127.0.0.1:$((20000 + $$ % 20000)) \
  </dev/null >"$work/run.out" 2>&1 &
run_pid=$!
if p=$(pid_of_uid 69999); then
  check_jail "$p" 69999 "vireo run"
  own=$(stat -c %u:%g:%a "$work/api.sock" "$work/con.sock" "$work/vs/v.sock" | sort -u)
  if [ "$own" = "69999:69999:600" ]; then ok "its API, console and vsock sockets: 0600, owned by uid 69999"
  else bad "socket owners and modes: $own"; fi
  info=$("$vireo" api "$work/api.sock" info)
  if echo "$info" | tr -d ' \n' | grep -q '"active":true' &&
     echo "$info" | tr -d ' \n' | grep -q '"uid":69999' &&
     echo "$info" | grep -q '"class": "vcpu"' && echo "$info" | grep -q '"seccomp": "filter"'; then
    ok "the API's info shows the jail (uid, namespaces, each thread's class and seccomp)"
  else bad "info: $info"; fi
  "$vireo" api "$work/api.sock" sandbox.selftest >/dev/null 2>&1
  reap $run_pid "vireo run after its violation"
  rc=$?
  if [ $rc = 8 ] && grep -q "sandbox violation: thread vireo-api.* (api) called ptrace" "$work/run.out"; then
    ok "a violation ends vireo run with status 8, naming the call and the thread"
  else bad "violation: status $rc: $(cat "$work/run.out")"; fi
  if [ ! -e "$work/api.sock" ] && [ ! -e "$work/con.sock" ] && [ ! -e "$work/vs/v.sock" ]; then
    ok "its sockets are removed after it ends (by the keeper outside the jail)"
  else bad "sockets left: $(ls "$work" "$work/vs")"; fi
else
  bad "vireo run: no sandboxed domain process found: $(cat "$work/run.out")"
  kill $run_pid 2>/dev/null
fi

# --- Stopped by a signal, with its API socket next to the vsock socket (a directory the jail
# reaches by name): the domain leaves the files to its keeper instead of calling unlink, which
# its allow-list refuses.
mkdir -p "$work/vs2"
"$vireo" run --allow-software-kvm --memory 64M --kernel "$idle" --console none \
  --api-socket "$work/vs2/api.sock" --vsock "cid=3,socket=$work/vs2/v.sock" \
  </dev/null >"$work/term.out" 2>&1 &
term_pid=$!
if within 30 test -S "$work/vs2/api.sock" && pid_of_uid 69999 >/dev/null; then
  kill -TERM $term_pid
  reap $term_pid "vireo run after SIGTERM"
  rc=$?
  if [ $rc = 0 ] && ! grep -q violation "$work/term.out" && [ ! -e "$work/vs2/api.sock" ] &&
     [ ! -e "$work/vs2/v.sock" ]; then
    ok "SIGTERM: status 0, no violation, its sockets removed by the keeper"
  else bad "SIGTERM: status $rc, $(ls "$work/vs2"): $(cat "$work/term.out")"; fi
else
  bad "vireo run with its API socket next to the vsock one: $(cat "$work/term.out")"
  kill $term_pid 2>/dev/null
fi

# --- Off, with a warning; the uid must not be root.
"$vireo" run --allow-software-kvm --memory 64M --kernel "$idle" --console none --sandbox off \
  </dev/null >"$work/off.out" 2>&1 &
off_pid=$!
sleep 2
if grep -q "the sandbox is off" "$work/off.out" && grep -q '^Seccomp:[[:space:]]*0' /proc/$off_pid/status; then
  ok "--sandbox off: a warning, no filter"
else bad "--sandbox off: $(cat "$work/off.out")"; fi
kill $off_pid; reap $off_pid "vireo run --sandbox off after SIGTERM"
if "$vireo" run --kernel "$idle" --uid 0 >"$work/uid0.out" 2>&1; then bad "--uid 0 accepted"
elif grep -q "uid" "$work/uid0.out"; then ok "--uid 0 is refused"
else bad "--uid 0: $(cat "$work/uid0.out")"; fi

# --- vireo up: one id per domain, the supervisor's cgroup limits; a violation is a crash for
# on_crash, the other domain runs on.
cat >"$work/host.toml" <<TOML
run_dir = "$work/run"
reserve = "64M"
[domains.a]
kernel = "$idle"
memory = "64M"
allow_software_kvm = true
[domains.b]
kernel = "$idle"
memory = "64M"
allow_software_kvm = true
TOML
if "$vireo" up "$work/host.toml" --detach >"$work/up.out" 2>&1; then
  pa=$(pid_of_uid 70000) && check_jail "$pa" 70000 "up domain a"
  pb=$(pid_of_uid 70001) && check_jail "$pb" 70001 "up domain b"
  own=$(stat -c %u:%a "$work/run/a.api" "$work/run/b.api" | tr '\n' ' ')
  if [ "$own" = "70000:600 70001:600 " ]; then ok "each domain's API socket is 0600 and its own uid's"
  else bad "up socket owners: $own"; fi
  cg=$(grep -h '^0::' /proc/"$pa"/cgroup | cut -d: -f3)
  if [ -n "$cg" ] && [ -r "/sys/fs/cgroup$cg/memory.max" ]; then
    mm=$(cat "/sys/fs/cgroup$cg/memory.max"); pm=$(cat "/sys/fs/cgroup$cg/pids.max")
    # Its memory budget: 64 MiB guest, 256 KiB of page tables, the process (8 MiB + 256 KiB
    # per vCPU), the default pool without vsock (8 MiB); a sanitizer build adds 512 MiB.
    budget=$((64 * 1048576 + 262144 + 8 * 1048576 + 262144 + 8 * 1048576))
    if { [ "$mm" = $budget ] || [ "$mm" = $((budget + 512 * 1048576)) ]; } && [ "$pm" = 65 ]; then
      ok "its cgroup: memory.max = its memory budget ($mm), pids.max = vCPUs + 64"
    else bad "cgroup $cg: memory.max $mm pids.max $pm"; fi
  else echo "SKIP: no delegated memory controller here ($cg)"; fi
  "$vireo" api "$work/run/a.api" sandbox.selftest >/dev/null 2>&1
  a_crashed() { "$vireo" list $R | grep -q "^a .*crashed"; }
  within 30 a_crashed
  list=$("$vireo" list $R)
  if echo "$list" | grep -q "^a .*crashed" && echo "$list" | grep -q "^b .*running" &&
     grep -q "called ptrace" "$work/run/a.log"; then
    ok "a violating domain is a crash (its log names the call), the other runs on"
  else bad "after a's violation: $list / $(tail -3 "$work/run/a.log")"; fi
  "$vireo" down $R --timeout 5 >/dev/null 2>&1
else
  bad "vireo up: $(cat "$work/up.out")"
fi

echo "sandbox: $pass passed, $fail failed"
[ $fail = 0 ]
