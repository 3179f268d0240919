#!/usr/bin/env bash
# The main job: set up, build, and run vireo's demo guest on this host's KVM.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
exec ./build/vireo demo
