#!/bin/sh
# The MSR allow-list (--msr-filter) with a tiny guest on /dev/kvm (tests/guests/pvh_msr.S), which
# reads MSRs, writes one and floods one, catching #GP:
#  - on (the default): the APIC base and the microcode revision read; SMI_COUNT, which KVM knows
#    but no kernel needs, and an MSR no CPU has get #GP, as does the write; 1000 RDMSRs in a
#    loop all get #GP, are all counted (vireo info's msrs_refused, the metrics) and logged once
#    a second at most, naming the MSR;
#  - on,+0x34 allows SMI_COUNT; off leaves every MSR to KVM (SMI_COUNT reads, the unknown one
#    gets KVM's own #GP, uncounted);
#  - a bad policy is refused in one line before anything is created.
# usage: msr_filter.sh VIREO PVH_MSR_ELF
vireo=$1
guest=$2
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/vireo-msr.XXXXXX)
trap 'kill $p 2>/dev/null; sleep 1; rm -rf "$work"' EXIT

# start POLICY: runs the guest until its flood line, leaves its API at $work/api.
start() {
  rm -f "$work/out" "$work/api"
  "$vireo" run --kernel "$guest" --allow-software-kvm --memory 64M --msr-filter "$1" \
    --api-socket "$work/api" >"$work/out" 2>"$work/err" &
  p=$!
  # The whole line: the console writes it a byte at a time, and its count comes last.
  within 60 grep -q 'MSR-FLOOD [0-9a-f]\{8\}' "$work/out" || bad "--msr-filter $1: the guest did not finish: $(cat "$work/err")"
}
line() { tr -d '\r' <"$work/out" | sed -n 's/^MSR \(.*\)$/\1/p' | head -n1; }
flood() { tr -d '\r' <"$work/out" | sed -n 's/^MSR-FLOOD \([0-9a-f]*\)$/\1/p'; }
info() { "$vireo" info --api-socket "$work/api" 2>&1 | sed -n "s/^$1  *//p"; }
stop() { kill $p; reap $p "the domain" 30 >/dev/null; }

start on
l=$(line) f=$(flood) n=$(info msrs_refused) pol=$(info msr_filter)
m=$("$vireo" api "$work/api" metrics 2>&1 | tr -d ' \n' | sed -n 's/.*"msrs_refused":\([0-9]*\).*/\1/p')
logged=$(grep -c 'refused with #GP' "$work/err")
if [ "$l" = "0000001b=ok 00000034=gp 0000008b=ok 12345678=gp W34=gp" ] && [ "$f" = 000003e8 ] &&
   [ "$n" = 1003 ] && [ "$m" = 1003 ] && [ "$pol" = on ] && [ "$logged" -ge 1 ] && [ "$logged" -le 5 ] &&
   grep -q 'RDMSR SMI_COUNT (0x34) refused with #GP: not in the domain.s MSR allow-list' "$work/err"; then
  ok "--msr-filter on: $l, 1000 of 1000 flood reads #GP; msrs_refused $n (info and metrics), $logged log line(s): $(grep -m1 'refused with' "$work/err")"
else bad "--msr-filter on: '$l' flood '$f' info '$n' metrics '$m' policy '$pol', $logged log lines: $(head -c 600 "$work/err")"; fi
stop

start on,+0x34
l=$(line) n=$(info msrs_refused) pol=$(info msr_filter)
if [ "$l" = "0000001b=ok 00000034=ok 0000008b=ok 12345678=gp W34=gp" ] && [ "$(flood)" = 00000000 ] &&
   [ "$pol" = on,+0x34 ] && [ "$n" = 1 ]; then
  ok "--msr-filter on,+0x34: $l (KVM refuses the write itself: SMI_COUNT is read-only); msrs_refused $n"
else bad "--msr-filter on,+0x34: '$l' flood '$(flood)' policy '$pol' refused '$n'"; fi
stop

start off
l=$(line) n=$(info msrs_refused)
if [ "$l" = "0000001b=ok 00000034=ok 0000008b=ok 12345678=gp W34=gp" ] && [ "$n" = 0 ] &&
   ! grep -q 'refused with' "$work/err"; then
  ok "--msr-filter off: $l (KVM's own #GP, not counted: msrs_refused $n)"
else bad "--msr-filter off: '$l' refused '$n'"; fi
stop

out=$("$vireo" run --kernel "$guest" --allow-software-kvm --memory 64M --msr-filter on,+0x34-0x20 \
  --console "file:$work/never.log" 2>&1) && bad "--msr-filter on,+0x34-0x20 was accepted"
if echo "$out" | grep -q 'msr-filter: "+0x34-0x20": the range ends before it starts' &&
   [ ! -e "$work/never.log" ]; then
  ok "--msr-filter on,+0x34-0x20: $(echo "$out" | tail -n1)"
else bad "--msr-filter on,+0x34-0x20: $out"; fi

echo "msr filter: $pass passed, $fail failed"
[ $fail -eq 0 ]
