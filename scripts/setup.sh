#!/usr/bin/env bash
# Installs everything vireo needs to build and test, from Debian packages. Idempotent: only
# missing packages are installed, and apt's lists are refreshed only when something is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config      # toolchain
  clang clang-format libclang-rt-14-dev             # clang 14: sanitizer/fuzzing builds, format
  libfmt-dev libcli11-dev liburing-dev libslirp-dev  # libraries
  libseccomp-dev                                    # the sandbox's system call filters
  zlib1g-dev                                        # snapshot checksums (CRC-32)
  nlohmann-json3-dev libtomlplusplus-dev            # the API (JSON), host config (TOML)
  libgtest-dev acpica-tools                         # tests (iasl decodes our ACPI tables)
  curl procps socat                                 # tests: the metrics page, pgrep, a relay
  qemu-system-x86 busybox-static cpio kmod e2fsprogs          # the test host and the default guest
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  SUDO=sudo
else
  SUDO=
fi
echo "vireo setup: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
