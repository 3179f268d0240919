#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what is needed, then
#   1. checks formatting (clang-format, the project's .clang-format),
#   2. builds with GCC (warnings are errors) and runs every test on real /dev/kvm,
#   3. builds with clang 14 + AddressSanitizer/UndefinedBehaviorSanitizer and runs them again,
#   4. runs each libFuzzer target (fuzz/) for a short while (scripts/fuzz.sh runs them longer).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

step() { printf '\n== %s\n' "$*"; }

step "format check"
git ls-files -- '*.cpp' '*.hpp' | xargs clang-format --dry-run --Werror

jobs=$(nproc)

step "default guest (Debian's kernel, fetched once into the cache)"
./scripts/guest-image.sh

step "GCC build and tests"
VIREO_BUILD_DIR=build ./scripts/build.sh -DCMAKE_C_COMPILER=gcc -DCMAKE_CXX_COMPILER=g++
ctest --test-dir build --output-on-failure -j "$jobs"

step "clang 14 + ASan/UBSan build and tests"
VIREO_BUILD_DIR=build-asan ./scripts/build.sh -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=Debug -DVIREO_SANITIZE=ON -DVIREO_FUZZ=ON
# The tiny-guest KVM suite already ran inside the test host in the GCC build; under the
# sanitizers and the fuzzers' coverage instrumentation it takes minutes more there, for nothing
# the direct run does not cover. Of the Linux-guest suites, those that drive virtio devices with
# Linux's own drivers and the Debian guest's live migrations run again (vireo under ASan, built
# at -O1: ~80 s each); the supervisor and control-plane suites (linux_up_tests,
# linux_control_tests) are covered under ASan by host_up and host_control with tiny guests,
# which keeps CI within 45 minutes.
skip='kvm_tests_in_test_host|linux_up_tests|linux_control_tests'
# On a machine without /dev/kvm the tiny-guest tests run in the test host too (tests/on_kvm.sh);
# there, under ASan, host_up's 128 domains and the 256/1024-vCPU guests cost minutes each for
# paths the GCC pass ran and hardening/host_control cover under ASan.
[ -c /dev/kvm ] || skip="$skip|host_up|pvh_smp_256|pvh_smp_1024"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs" -E "^($skip)\$"

step "fuzzing (${VIREO_FUZZ_SECONDS:-20} s per target)"
./scripts/fuzz.sh "${VIREO_FUZZ_SECONDS:-20}" build-asan
