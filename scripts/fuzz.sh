#!/usr/bin/env bash
# Runs vireo's libFuzzer targets (fuzz/): the descriptor-chain parser, the virtio-mmio register
# interface, the virtio-blk request path, the virtio-net frame path and the virtio-vsock packet
# path, the control API's request parser, the snapshot file parser, the live-migration
# stream's receiving side, the PCI bus (configuration ports, BARs, MSI-X), the interrupt
# controllers (I/O APIC, 8259A pair, 8254 PIT), libnvmm's page walk, the CPU template
# parser and the device options (disks, nets, vsock, shm, I/O limits), each for SECONDS (default 300), with ASan/UBSan.
# Corpora persist in ~/.cache/vireo/fuzz/NAME (outside the repo); crashes are saved there as
# crash-* and make this script fail. Prints executions and crashes per target.
#
# usage: scripts/fuzz.sh [SECONDS] [BUILD_DIR]    (default BUILD_DIR: build-asan)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-300}
build=${2:-build-asan}
if [ ! -x "$build/fuzz/fuzz_blk" ]; then
  ./scripts/setup.sh
  VIREO_BUILD_DIR=$build ./scripts/build.sh -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=Debug -DVIREO_SANITIZE=ON -DVIREO_FUZZ=ON
fi
cache=${VIREO_CACHE:-$HOME/.cache/vireo}/fuzz
status=0
printf '%-14s %12s %10s %8s\n' target executions exec/s crashes
for t in virtqueue mmio blk net vsock api snapshot migration pci irqchip nvmm_walk cpu_template device_options; do
  dir=$cache/$t
  mkdir -p "$dir/corpus"
  log=$dir/last.log
  # Realistic sizes: API requests up to past the 64 KiB request limit, device inputs 4 KiB.
  max_len=4096
  [ $t = api ] && max_len=70000
  [ $t = cpu_template ] && max_len=2048  # past its 1 KiB limit
  [ $t = snapshot ] && max_len=262144
  [ $t = migration ] && max_len=262144
  [ $t = nvmm_walk ] && max_len=65576  # five levels of tables anywhere in its 64 KiB
  set +e
  ASAN_OPTIONS=detect_leaks=1 "$build/fuzz/fuzz_$t" -max_total_time="$secs" -print_final_stats=1 \
    -artifact_prefix="$dir/" -max_len=$max_len "$dir/corpus" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
  crashes=0
  if [ $rc -ne 0 ]; then
    crashes=1
    status=1
    echo "fuzz_$t failed (status $rc); log: $log" >&2
    grep -A30 -m1 -e "ERROR: AddressSanitizer" -e "runtime error" -e "ERROR: libFuzzer" "$log" >&2 || tail -n 30 "$log" >&2
  fi
  printf '%-14s %12s %10s %8s\n' "$t" "${execs:-?}" "${rate:-?}" "$crashes"
done
exit $status
