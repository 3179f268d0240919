#!/bin/sh
# Interrupt models with tiny guests on /dev/kvm, under --irqchip kernel (KVM's chips), split
# (vireo's I/O APIC, 8259s and PIT; KVM's local APICs) and userspace (all of them vireo's):
# - tests/guests/pvh_irqs.S: the PIT at 100 Hz through the 8259s (ExtINT), then through the
#   I/O APIC edge- and level-triggered; the level phase needs the EOI to reach the I/O APIC.
# - tests/guests/pvh_lapic.S (2 vCPUs): the local APIC's timer at 100 Hz periodic, one-shot and
#   TSC-deadline; self-IPIs taken in priority order under the task priority (TPR); the AP
#   started with INIT and a startup IPI, then 1000 IPI round trips between the two vCPUs.
# Each timed phase's 100 ticks must take about a second (timed here from the guest's console
# lines, by /proc/uptime), on no other vector.
# usage: irqchip.sh VIREO PVH_IRQS_ELF PVH_LAPIC_ELF
vireo=$1
irqs=$2
lapic=$3
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/vireo-irq.XXXXXX)
trap 'rm -rf "$work"' EXIT
up() { cut -d' ' -f1 /proc/uptime; }
# run MODEL GUEST CPUS: each console line with the uptime it arrived at (straight from vireo's
# output: a filter in between, such as tr, would hand lines on in buffered batches).
run() {
  timeout 120 "$vireo" run --kernel "$2" --allow-software-kvm --memory 64M --cpus "$3" \
    --irqchip "$1" --console stdio --on-reboot exit 2>"$work/err" </dev/null |
    while IFS= read -r line; do echo "$(up) $line"; done | tr -d '\r' >"$work/out"
}
# phases MODEL NAME...: each phase's 100 ticks in about a second; the summary in $msg.
phases() {
  model=$1
  shift
  msg=""
  for phase in "$@"; do
    s=$(sed -n "s/^\([0-9.]*\) $phase-START.*/\1/p" "$work/out" | head -n1)
    e=$(sed -n "s/^\([0-9.]*\) $phase-DONE.*/\1/p" "$work/out" | head -n1)
    n=$(sed -n "s/^[0-9.]* $phase-DONE \([0-9a-f]*\)$/\1/p" "$work/out")
    d=$(awk -v s="$s" -v e="$e" 'BEGIN { if (s == "" || e == "") print "-"; else printf "%.2f", e - s }')
    msg="$msg $phase ${d} s"
    if [ "$n" != 00000064 ] || ! awk -v d="$d" 'BEGIN { exit !(d != "-" && d >= 0.9 && d <= 2.0) }'; then
      bad "--irqchip $model: $phase: ${n:-no} ticks in $d s (want 100 in about 1 s): $(tail -n 4 "$work/out" | tr '\n' ' ') $(tail -n 2 "$work/err")"
      return 1
    fi
  done
  if grep -q IRQ-BAD "$work/out"; then bad "--irqchip $model: $(grep IRQ-BAD "$work/out")"; return 1; fi
}
for model in ${IRQCHIP_MODELS:-kernel split userspace}; do
  run $model "$irqs" 1
  phases $model PIC EDGE LEVEL &&
    ok "--irqchip $model: 100 PIT ticks at 100 Hz through the 8259s, the I/O APIC edge and level:$msg"
  run $model "$lapic" 2
  if phases $model PERIODIC ONESHOT DEADLINE; then
    tpr=$(sed -n 's/^[0-9.]* TPR-ORDER \(.*\)$/\1/p' "$work/out" | sed 's/ *$//')
    pongs=$(sed -n 's/^[0-9.]* IPI-DONE \([0-9a-f]*\)$/\1/p' "$work/out")
    s=$(sed -n 's/^\([0-9.]*\) IPI-START.*/\1/p' "$work/out")
    e=$(sed -n 's/^\([0-9.]*\) IPI-DONE.*/\1/p' "$work/out")
    if [ "$tpr" != "65 55 45" ]; then
      bad "--irqchip $model: self-IPIs 0x45, 0x55, 0x65 under TPR 0x50, then TPR 0: taken as '$tpr' (want 65 55 45)"
    elif [ "$pongs" != 000003e8 ]; then
      bad "--irqchip $model: IPI round trips: ${pongs:-none} of 1000: $(tail -n 3 "$work/out" | tr '\n' ' ') $(tail -n 2 "$work/err")"
    else
      ok "--irqchip $model: local APIC timer at 100 Hz periodic, one-shot and TSC-deadline:$msg; self-IPIs by priority under the TPR (65 55 45); the AP started by INIT and SIPI, 1000 IPI round trips in $(awk -v s="$s" -v e="$e" 'BEGIN { printf "%.2f", e - s }') s"
    fi
  fi
done
echo "$pass passed, $fail failed"
[ $fail = 0 ]
