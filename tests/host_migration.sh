#!/bin/sh
# A `vireo up` domain moves between two hosts' supervisors on one machine (vireo migrate NAME
# --to-host RUN_DIR), jailed tiny guests on /dev/kvm:
#  - host A's counting guest goes to host B: A's list no longer has it, B's lists it running,
#    the counts go on in B's console log with none repeated or lost, B's own domain runs on;
#  - it comes back to A the same way (A takes the name it gave away);
#  - a host that cannot take it (no such pool) refuses before anything moves: the domain runs on
#    where it was and the other host lists nothing new;
#  - both hosts go down cleanly.
# usage: host_migration.sh VIREO PVH_COUNTER_ELF
vireo=$1
counter=$2
. "$(dirname "$0")/lib.sh"
work=$(mktemp -d /tmp/vireo-hostmig.XXXXXX)
trap '"$vireo" down --timeout 0 --run-dir "$work/a" >/dev/null 2>&1
      "$vireo" down --timeout 0 --run-dir "$work/b" >/dev/null 2>&1; sleep 1; rm -rf "$work"' EXIT

listed() { "$vireo" list --run-dir "$1" --json 2>/dev/null | tr -d ' \n' | grep -q "\"name\":\"$2\""; }
not_listed() { ! listed "$@"; }

# Two hosts; distinct id ranges (one machine, two supervisors).
cat >"$work/a.toml" <<TOML
run_dir = "$work/a"
reserve = "64M"
[domains.mover]
kernel = "$counter"
memory = "64M"
allow_software_kvm = true
TOML
cat >"$work/b.toml" <<TOML
run_dir = "$work/b"
reserve = "64M"
uid_base = 71100
[domains.resident]
kernel = "$counter"
memory = "64M"
allow_software_kvm = true
TOML
"$vireo" up "$work/a.toml" >"$work/a.out" 2>&1 &
"$vireo" up "$work/b.toml" >"$work/b.out" 2>&1 &
if within 60 state_is "$work/a" mover running && within 60 state_is "$work/b" resident running &&
  within 60 has_lines "$work/a/mover.log" 3; then
  ok "two hosts up, A's guest counting"
else
  bad "up: $(cat "$work/a.out" "$work/b.out")"
fi

# A -> B.
if "$vireo" migrate mover --run-dir "$work/a" --to-host "$work/b" --allow-software-kvm --json \
  >"$work/m1.json" 2>"$work/m1.err"; then
  ok "A -> B: $(tr -d ' \n' <"$work/m1.json")"
else
  bad "A -> B: $(cat "$work/m1.err")"
fi
within 30 not_listed "$work/a" mover && ok "A no longer lists it" ||
  bad "A still lists it: $("$vireo" list --run-dir "$work/a" 2>&1)"
within 30 state_is "$work/b" mover running && ok "B lists it running" ||
  bad "B: $("$vireo" list --run-dir "$work/b" 2>&1)"
counting "$work/b/mover.log" && ok "it counts on at B" || bad "no count at B"
if gaps=$(no_repeat_no_gap "$work/a/mover.log" "$work/b/mover.log"); then
  ok "no count repeated or lost: $(counts "$work/a/mover.log" | tail -1) at A, then $(counts "$work/b/mover.log" | head -1) at B"
else
  bad "counts across the move: $gaps"
fi
counting "$work/b/resident.log" && ok "B's own domain runs on" || bad "B's resident stopped"

# B -> A: A takes back the name it gave away.
if "$vireo" migrate mover --run-dir "$work/b" --to-host "$work/a" --allow-software-kvm \
  >"$work/m2.out" 2>&1; then
  ok "B -> A: $(cat "$work/m2.out")"
else
  bad "B -> A: $(cat "$work/m2.out")"
fi
within 30 not_listed "$work/b" mover && within 30 state_is "$work/a" mover running &&
  ok "back at A: A lists it running, B no longer" ||
  bad "after B -> A: A: $("$vireo" list --run-dir "$work/a" 2>&1); B: $("$vireo" list --run-dir "$work/b" 2>&1)"
counting "$work/a/mover.log" && ok "it counts on at A again" || bad "no count at A after the return"

# A host that cannot take it: refused before anything moves.
if "$vireo" migrate mover --run-dir "$work/a" --to-host "$work/b" --pool nosuch \
  --allow-software-kvm >"$work/m3.out" 2>&1; then
  bad "a move into a pool B lacks went through"
else
  grep -q "nosuch" "$work/m3.out" && ok "refused: $(cat "$work/m3.out")" || bad "refusal: $(cat "$work/m3.out")"
fi
state_is "$work/a" mover running && not_listed "$work/b" mover && counting "$work/a/mover.log" &&
  ok "after the refusal it runs on at A; B lists nothing new" || bad "after the refusal"

"$vireo" down --run-dir "$work/a" >/dev/null 2>&1
"$vireo" down --run-dir "$work/b" >/dev/null 2>&1
within 60 sh -c "! [ -S '$work/a/vireo.sock' ] && ! [ -S '$work/b/vireo.sock' ]" &&
  ok "both hosts went down" || bad "a host did not go down"
echo "host migration: $pass passed, $fail failed"
[ $fail -eq 0 ]
