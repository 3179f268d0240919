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

# The counting guest's console (tests/guests/pvh_counter.S and pvh_dirtier.S: "C=<8 hex
# digits>" lines, the count in guest memory).
# lines LOG: how many count lines LOG has (0 if none or no file).
lines() { _n=$(grep -c '^C=' "$1" 2>/dev/null); echo "${_n:-0}"; }
# has_lines LOG N: LOG has at least N count lines.
has_lines() { [ "$(lines "$1")" -ge "$2" ]; }
# counting LOG: two more count lines appear (within 30 s).
counting() {
  _n=$(lines "$1")
  within 30 has_lines "$1" $((_n + 2))
}
# counts LOG...: the counts in the LOGs, read as one stream. A line a move or save cut in two
# (its start in one log, its end in the next) is whole again; so is one that a vireo log line
# ("vireo: info: ...", written whole, as into a vireo up host's NAME.log beside the console)
# interrupted.
counts() {
  cat "$@" | tr -d '\r' |
    awk '{ i = index($0, "vireo: "); if (i > 0) { pre = pre substr($0, 1, i - 1); next }
           print pre $0; pre = "" }' |
    grep '^C=[0-9a-f]\{8\}$' | cut -c3-
}
# no_repeat_no_gap LOG...: the counts across the LOGs go up by one at a time; else prints where
# they did not, and each log's first and last count.
no_repeat_no_gap() {
  _prev=
  _res=0
  for _c in $(counts "$@"); do
    _v=$((0x$_c))
    if [ -n "$_prev" ] && [ "$_v" -ne $((_prev + 1)) ]; then
      echo "$_prev then $_v"
      _res=1
    fi
    _prev=$_v
  done
  if [ $_res -ne 0 ]; then
    printf '(each log: '
    for _l in "$@"; do
      printf '%s:%s-%s ' "$(basename "$_l" .log)" "$(counts "$_l" | head -1)" "$(counts "$_l" | tail -1)"
    done
    echo ')'
  fi
  return $_res
}
