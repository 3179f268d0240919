# Shared by the migration benchmarks' in-host scripts (bench/migrate-in-host.sh,
# bench/migrate-hosts-in-host.sh), sourced inside the test host after tests/lib.sh: the guest,
# the QEMU command and how a move is measured, so both benchmarks measure alike.
K=/guest/vmlinuz
I=/guest/initrd.img
L="console=ttyS0 reboot=k panic=-1 quiet"
Q="qemu-system-x86_64 -accel kvm -cpu host -nodefaults -no-user-config -display none -M microvm"
# (The kernel passes init at most 32 words: both fit.)
LOOP='while :; do read u x </proc/uptime; echo $u; done'
DIRTY='(while :; do yes abcdefgh | head -c 67108864 >/tmp/x; sleep 1; done)&'

# gap LOG...: "largest gap in ms" over the uptime lines of the logs read as one stream.
gap() {
  cat "$@" | tr -d '\r' | grep '^[0-9]*\.[0-9][0-9]$' |
    awk 'NR > 1 { d = $1 - p; if (d > m) m = d } { p = $1 } END { printf "%.0f", m * 1000 }'
}

# qemu_migrate URI: the source QEMU (its monitor on fd 3, its output in /tmp/qa.out) migrates
# to URI with a 100 ms downtime limit; `info migrate` until it completed or failed (at most
# 300 s); then it quits. Its figures are then in /tmp/qa.out.
qemu_migrate() {
  echo "migrate_set_parameter downtime-limit 100" >&3
  echo "migrate $1" >&3
  _end=$(($(now) + 300))
  while ! grep -q "Migration status: completed" /tmp/qa.out; do
    [ "$(now)" -lt $_end ] || break
    grep -q "Migration status: failed" /tmp/qa.out && break
    echo "info migrate" >&3
    sleep 0.5
  done
  echo "info migrate" >&3
  sleep 0.5
  echo quit >&3
  exec 3>&-
}
