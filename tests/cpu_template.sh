#!/bin/sh
# vireo run --cpu with a tiny guest on /dev/kvm that prints the CPUID registers a template
# decides (tests/guests/pvh_cpuid.S: leaf 1 ECX, 7.0 EBX, 0x80000001 ECX):
#  - host is what KVM offers; x86-64-v2 hides AVX2, BMI, MOVBE, AVX and XSAVE and keeps SSE4.2;
#    x86-64-v3 shows exactly BMI1, AVX2 and BMI2 in 7.0 EBX (where the host has them; else it
#    is refused, naming the first feature missing);
#  - an override clears one feature and leaves the rest; setting a bit KVM does not offer, or an
#    unknown template, is refused in one line before anything is created;
#  - --spec-ctrl off hides every speculation control (7.0 EDX, 0x80000008 EBX) and nothing else;
#    on,-ssbd,-virt-ssbd only SSBD; an unknown control is refused;
#  - a guest saved under host is not restored where it would lose features (--cpu x86-64-v2),
#    and vireo restore brings a saved template and policy back (vireo info).
# It runs in the test host (kvm_amd): this machine's software KVM (kvm_pvm) shows a guest the
# real CPU's CPUID whatever KVM_SET_CPUID2 says, and lists no SSE3 in KVM_GET_SUPPORTED_CPUID.
# usage: cpu_template.sh VIREO PVH_CPUID_ELF PVH_COUNTER_ELF
vireo=$1
guest=$2
counter=$3
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/vireo-cpu.XXXXXX)
trap 'kill $p1 $p2 2>/dev/null; sleep 1; rm -rf "$work"' EXIT

# regs SPEC: "ECX1 EBX7 ECX81" as the guest printed them (hex), or the error.
regs() {
  out=$("$vireo" run --kernel "$guest" --allow-software-kvm --memory 64M --cpu "$1" 2>&1)
  line=$(echo "$out" | tr -d '\r' | sed -n 's/^CPUID 1.ECX=\([0-9a-f]*\) 7.0.EBX=\([0-9a-f]*\) 81.ECX=\([0-9a-f]*\)$/\1 \2 \3/p')
  [ -n "$line" ] && echo "$line" || { echo "$out" | tail -n 2; return 1; }
}
has() { [ $((0x$1 & $2)) != 0 ]; }

set -- $(regs host) || bad "host: $*"
h1=$1 h7=$2 h81=$3
ok "host: 1.ECX=$h1 7.0.EBX=$h7 0x80000001.ECX=$h81"
if r=$(regs x86-64-v2); then
  set -- $r
  # SSE4.2 (1.ECX 20) stays; MOVBE 22, XSAVE 26, AVX 28 go; 7.0 EBX is empty; LZCNT goes.
  if has $1 $((1 << 20)) && ! has $1 $((1 << 22 | 1 << 26 | 1 << 28)) && [ $((0x$2)) = 0 ] &&
     ! has $3 $((1 << 5)); then
    ok "x86-64-v2: 1.ECX=$1 7.0.EBX=$2 (SSE4.2 stays; no MOVBE, XSAVE, AVX, AVX2, BMI, LZCNT)"
  else bad "x86-64-v2: $r"; fi
else bad "x86-64-v2: $r"; fi
if has $h7 $((1 << 5 | 1 << 3 | 1 << 8)) && [ $((0x$h7 & 0x128)) = $((0x128)) ]; then
  if r=$(regs x86-64-v3) && set -- $r && [ $((0x$2)) = $((0x128)) ] && has $1 $((1 << 28)); then
    ok "x86-64-v3: 7.0.EBX=$2 (exactly BMI1, AVX2, BMI2), AVX in 1.ECX"
  else bad "x86-64-v3: $r"; fi
else
  r=$(regs x86-64-v3)
  echo "$r" | grep -q "x86-64-v3 needs" && ok "x86-64-v3 refused on this host: $r" || bad "x86-64-v3: $r"
fi
if has $h7 $((1 << 5)); then
  if r=$(regs host,-avx2) && set -- $r && [ $((0x$2)) = $((0x$h7 & ~(1 << 5))) ] && [ "$1" = "$h1" ]; then
    ok "host,-avx2: 7.0.EBX=$2, the rest as the host's"
  else bad "host,-avx2: $r"; fi
fi
# Refusals: one line, nothing created (the console file is an output).
refused() {
  out=$("$vireo" run --kernel "$guest" --allow-software-kvm --memory 64M --cpu "$1" \
    --console "file:$work/never.log" 2>&1) && { bad "--cpu $1 was accepted"; return; }
  if echo "$out" | grep -q "$2" && [ ! -e "$work/never.log" ]; then ok "--cpu $1: $(echo "$out" | tail -n1)"
  else bad "--cpu $1: $out; $(ls "$work")"; fi
}
refused "x86-64-v2,0x1:ecx+=0x8" "cpu: cannot set CPUID 0x1 ECX bit 3: this host's KVM does not offer it"
refused "pentium" "cpu: \"pentium\": not a CPU template (use host, x86-64-v2, x86-64-v3)"
refused "host,-nosuch" "no CPU feature of that name"

# Speculation controls (--spec-ctrl): the guest's 7.0 EDX and 0x80000008 EBX under a policy.
spec() {
  out=$("$vireo" run --kernel "$guest" --allow-software-kvm --memory 64M --spec-ctrl "$1" 2>&1)
  line=$(echo "$out" | tr -d '\r' | sed -n 's/^SPEC 7.0.EDX=\([0-9a-f]*\) 88.EBX=\([0-9a-f]*\)$/\1 \2/p')
  [ -n "$line" ] && echo "$line" || { echo "$out" | tail -n 2; return 1; }
}
# Intel's controls in 7.0 EDX (md_clear, spec_ctrl, stibp, flush_l1d, arch_capabilities, ssbd);
# AMD's in 0x80000008 EBX (ibpb, ibrs, stibp, their always-on/preferred/same-mode forms, ssbd,
# virt_ssbd, psfd).
intel=$((1 << 10 | 1 << 26 | 1 << 27 | 1 << 28 | 1 << 29 | 1 << 31))
amd=$((1 << 12 | 1 << 14 | 1 << 15 | 1 << 16 | 1 << 17 | 1 << 18 | 1 << 19 | 1 << 24 | 1 << 25 | 1 << 28))
set -- $(spec on) || bad "spec-ctrl on: $*"
se=$1 sa=$2
ok "spec-ctrl on: 7.0.EDX=$se 0x80000008.EBX=$sa (controls: 7.0.EDX $(printf %x $((0x$se & intel))), 0x80000008.EBX $(printf %x $((0x$sa & amd))))"
if r=$(spec off) && set -- $r && [ $((0x$1)) = $((0x$se & ~intel)) ] && [ $((0x$2)) = $((0x$sa & ~amd)) ]; then
  ok "spec-ctrl off: 7.0.EDX=$1 0x80000008.EBX=$2 (every control gone, nothing else)"
else bad "spec-ctrl off: $r"; fi
ssbd=$((1 << 24 | 1 << 25))
if r=$(spec on,-ssbd,-virt-ssbd) && set -- $r && [ $((0x$1)) = $((0x$se & ~(1 << 31))) ] &&
  [ $((0x$2)) = $((0x$sa & ~ssbd)) ]; then
  ok "spec-ctrl on,-ssbd,-virt-ssbd: 7.0.EDX=$1 0x80000008.EBX=$2 (only SSBD gone)"
else bad "spec-ctrl on,-ssbd,-virt-ssbd: $r"; fi
out=$("$vireo" run --kernel "$guest" --allow-software-kvm --memory 64M --spec-ctrl on,-retpoline \
  --console "file:$work/never.log" 2>&1) && bad "--spec-ctrl on,-retpoline was accepted"
if echo "$out" | grep -q 'spec-ctrl: "retpoline": no such control' && [ ! -e "$work/never.log" ]; then
  ok "--spec-ctrl on,-retpoline: $(echo "$out" | tail -n1)"
else bad "--spec-ctrl on,-retpoline: $out"; fi

# A guest saved under host keeps what it saw: a restore under x86-64-v2, which would take
# features away, is refused naming one. vireo restore brings a saved template back.
RUN="run --kernel $counter --memory 64M --allow-software-kvm"
save_counter() {  # SPEC SNAPSHOT [SPEC_CTRL]
  rm -f "$work/a.log"
  "$vireo" $RUN --cpu "$1" --spec-ctrl "${3:-on}" --console "file:$work/a.log" --api-socket "$work/a.sock" \
    2>"$work/a.err" &
  p1=$!
  within 60 has_lines "$work/a.log" 2 || bad "the counting guest did not count: $(cat "$work/a.err")"
  "$vireo" save --api-socket "$work/a.sock" "$2" >/dev/null 2>&1 || bad "save under $1 failed"
  reap $p1 "the domain saved under $1" 60
}
save_counter host "$work/host.snap"
out=$("$vireo" $RUN --restore "$work/host.snap" --cpu x86-64-v2 2>&1) &&
  bad "a guest saved under host was restored under x86-64-v2" ||
  { echo "$out" | grep -q "uses CPU feature" && ok "restore under x86-64-v2 refused: $(echo "$out" | tail -n1)" ||
    bad "restore under x86-64-v2: $out"; }
save_counter x86-64-v2 "$work/v2.snap" off
(cd / && "$vireo" restore "$work/v2.snap" --allow-software-kvm --console "file:$work/b.log" \
  --api-socket "$work/b.sock" 2>"$work/b.err") &
p2=$!
within 60 has_lines "$work/b.log" 2 || bad "vireo restore printed nothing: $(cat "$work/b.err")"
info=$("$vireo" info --api-socket "$work/b.sock" 2>&1)
cpu=$(echo "$info" | sed -n 's/^cpu  *//p')
sc=$(echo "$info" | sed -n 's/^spec_ctrl  *//p')
seen=$(echo "$info" | sed -n 's/^spec_controls  *//p')
[ "$cpu" = x86-64-v2 ] && [ "$sc" = off ] && [ "$seen" = none ] &&
  ok "vireo restore brings the template and the policy back (info: cpu $cpu, spec_ctrl $sc, spec_controls $seen)" ||
  bad "vireo restore: info says cpu '$cpu', spec_ctrl '$sc', spec_controls '$seen'"
kill $p2

echo "cpu templates: $pass passed, $fail failed"
[ $fail -eq 0 ]
