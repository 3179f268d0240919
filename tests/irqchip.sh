#!/bin/sh
# Interrupt models with a tiny guest on /dev/kvm (tests/guests/pvh_irqs.S): the PIT at 100 Hz
# through the 8259s (ExtINT), then through the I/O APIC edge- and level-triggered, under
# --irqchip kernel (KVM's chips) and split (vireo's I/O APIC, 8259s and PIT; KVM's local APIC).
# Each phase's 100 ticks must take about a second (timed here from the guest's console lines,
# by /proc/uptime), on no other vector; the level phase needs the EOI to reach the I/O APIC.
# usage: irqchip.sh VIREO PVH_IRQS_ELF
vireo=$1
guest=$2
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/vireo-irq.XXXXXX)
trap 'rm -rf "$work"' EXIT
up() { cut -d' ' -f1 /proc/uptime; }
for model in ${IRQCHIP_MODELS:-kernel split userspace}; do
  # Each console line with the uptime it arrived at (straight from vireo's output: a filter in
  # between, such as tr, would hand lines on in buffered batches).
  timeout 120 "$vireo" run --kernel "$guest" --allow-software-kvm --memory 64M --irqchip $model \
    --console stdio --on-reboot exit 2>"$work/err" </dev/null |
    while IFS= read -r line; do echo "$(up) $line"; done | tr -d '\r' >"$work/out"
  at() { sed -n "s/^\([0-9.]*\) $1.*/\1/p" "$work/out" | head -n1; }
  msg=""
  for phase in PIC EDGE LEVEL; do
    s=$(at "$phase-START"); e=$(at "$phase-DONE")
    n=$(sed -n "s/^[0-9.]* $phase-DONE \([0-9a-f]*\)$/\1/p" "$work/out")
    d=$(awk -v s="$s" -v e="$e" 'BEGIN { if (s == "" || e == "") print "-"; else printf "%.2f", e - s }')
    msg="$msg $phase ${d} s"
    if [ "$n" != 00000064 ] || ! awk -v d="$d" 'BEGIN { exit !(d != "-" && d >= 0.9 && d <= 2.0) }'; then
      bad "--irqchip $model: $phase: ${n:-no} ticks in $d s (want 100 in about 1 s): $(tail -n 4 "$work/out" | tr '\n' ' ') $(tail -n 2 "$work/err")"
      continue 2
    fi
  done
  if grep -q IRQ-BAD "$work/out"; then bad "--irqchip $model: $(grep IRQ-BAD "$work/out")"; continue; fi
  ok "--irqchip $model: 100 PIT ticks at 100 Hz through the 8259s, the I/O APIC edge and level:$msg"
done
echo "$pass passed, $fail failed"
[ $fail = 0 ]
