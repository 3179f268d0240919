#!/bin/sh
# Shared memory between tiny guests of one host file, on /dev/kvm: a's guest rings b's vector
# 0 through its ivshmem Doorbell register; b's guest has MSI-X on and counts the interrupts.
# Once the vector is enabled and unmasked its doorbells go from a's ioeventfd into b's irqfd
# in the kernel: b's guest goes on counting interrupts while vireo's own count of the
# doorbells it delivered (vireo info: doorbells_in) stands still.
# usage: shm.sh VIREO PVH_IVSHMEM_ELF
vireo=$1
elf=$2
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/vireo-shm.XXXXXX)
R="--run-dir $work/run"
trap '"$vireo" down --timeout 0 $R >/dev/null 2>&1; sleep 1; rm -rf "$work"' EXIT
cat >"$work/host.toml" <<TOML
run_dir = "$work/run"
reserve = "64M"
[domains.a]
kernel = "$elf"
memory = "64M"
allow_software_kvm = true
[domains.b]
kernel = "$elf"
memory = "64M"
allow_software_kvm = true
[shm.bell]
size = "4K"
domains = ["a", "b"]
TOML
"$vireo" up "$work/host.toml" >"$work/up.out" 2>&1 &
up=$!
log() { tr -d '\r' <"$work/run/$1.log" 2>/dev/null; }
says() { log "$1" | grep -q "^$2"; }
if within 120 says b SHM-MSI-DONE; then
  ok "b's guest took 8 MSI-X interrupts from a's doorbell (a: $(log a | grep -c SHM-RINGING) ringing)"
else
  bad "b: $(log b | tail -n 3 | tr '\n' ' '); a: $(log a | tail -n 2 | tr '\n' ' '); up: $(tail -n 3 "$work/up.out" | tr '\n' ' ')"
fi
through_vireo() {
  "$vireo" info b $R --json 2>/dev/null | tr -d ' \n' | sed -n 's/.*"doorbells_in":\([0-9]*\).*/\1/p'
}
msis() { log b | grep -c '^MSI'; }
v1=$(through_vireo); m1=$(msis)
sleep 3
v2=$(through_vireo); m2=$(msis)
echo "b: $m1 -> $m2 interrupts in the guest, $v1 -> $v2 doorbells through vireo"
if [ -n "$v1" ] && [ "$m2" -gt "$m1" ] && [ "$v2" = "$v1" ]; then
  ok "doorbells into an enabled MSI-X vector stay in the kernel ($((m2 - m1)) interrupts, none through vireo)"
else
  bad "kernel-only doorbells: guest $m1 -> $m2, vireo $v1 -> $v2; $(log b | grep -v "^MSI" | tail -n 4 | tr "\n" " ")"
fi
# Shared memory is other domains' memory too: no save (refused before anything is written,
# the file removed again, the domain running on; a migration is refused the same way, before
# a page is sent).
out=$("$vireo" save b "$work/b.snap" $R 2>&1)
if [ $? != 0 ] && echo "$out" | grep -q "shared memory" && [ ! -e "$work/b.snap" ] &&
   state_is "$work/run" b running; then
  ok "save of a domain with shared memory is refused, no file left; it runs on"
else
  bad "save with shared memory: $out; file: $(ls -l "$work/b.snap" 2>&1); state $(field_dir "$work/run" b state)"
fi
"$vireo" down $R >/dev/null 2>&1
reap $up "vireo up" 60
echo "$pass passed, $fail failed"
[ $fail = 0 ]
