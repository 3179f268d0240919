# Sourced by the shell tests (tests/*.sh; tests/on_kvm.sh packs it next to them in the test
# host): verdict lines, and waits bounded by wall time. A wait counted in tries is not bounded:
# one `vireo list` takes from milliseconds here to seconds in an emulated host, and a test that
# hangs until the test host's timeout says nothing about why.
pass=0
fail=0
ok() { echo "PASS: $1"; pass=$((pass + 1)); }
bad() { echo "FAIL: $1"; fail=$((fail + 1)); }
now() { cut -d. -f1 /proc/uptime; }  # seconds, monotonic

# within SECS COMMAND...: runs COMMAND every 0.1 s until it succeeds, for at most SECS seconds.
within() {
  _within_end=$(($(now) + $1))
  shift
  until "$@"; do
    [ "$(now)" -lt "$_within_end" ] || return 1
    sleep 0.1
  done
}

# field_dir RUN_DIR NAME KEY: a domain's KEY from `$vireo list --json`.
field_dir() {
  "$vireo" list --run-dir "$1" --json 2>/dev/null | tr -d ' \n' | sed 's/},{/}\n{/g' |
    grep "\"name\":\"$2\"" | sed -n "s/.*\"$3\":\"\{0,1\}\([^,\"}]*\).*/\1/p"
}
state_is() { [ "$(field_dir "$1" "$2" state)" = "$3" ]; }
# wait_state_dir RUN_DIR NAME STATE [SECS]: until the domain is in STATE (at most 60 s).
wait_state_dir() { within "${4:-60}" state_is "$1" "$2" "$3"; }

# running PID: the process exists and is not a zombie (kill -0 succeeds on a zombie).
running() {
  _st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [ -n "$_st" ] && [ "$_st" != Z ]
}
gone() { ! running "$1"; }
# reap PID WHAT [SECS]: waits for a background command to end, at most SECS (default 60) s,
# and returns its status; one still running then is a FAIL naming WHAT, killed (status 124).
reap() {
  if within "${3:-60}" gone "$1"; then
    wait "$1"
    return
  fi
  bad "$2 still running after ${3:-60} s: killed"
  kill -9 "$1" 2>/dev/null
  wait "$1" 2>/dev/null
  return 124
}

# script_disk SCRIPT IMAGE: a raw image holding SCRIPT, padded with newlines to whole sectors,
# for a guest to run with `sh /dev/vdX`.
script_disk() {
  cp "$1" "$2"
  _size=$(wc -c <"$2")
  _pad=$(((512 - _size % 512) % 512))
  [ $_pad -gt 0 ] && head -c $_pad /dev/zero | tr '\0' '\n' >>"$2"
  true
}
