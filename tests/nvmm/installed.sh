#!/usr/bin/env bash
# libnvmm as installed: `cmake --install` into a throwaway prefix, then a plain C99 compiler
# builds a client against the installed nvmm.h and nvmm.pc alone, linked with the shared and
# with the static library, and both run (nvmm_init, nvmm_capability where there is a /dev/kvm).
# The shared library exports nvmm_* and nothing of vireo's C++.
#
# usage: [CC=...] [NVMM_CLIENT_FLAGS=...] tests/nvmm/installed.sh BUILD_DIR CLIENT.c
set -euo pipefail
build=$1
client=$2
prefix=$(mktemp -d "${TMPDIR:-/tmp}/vireo-nvmm-install.XXXXXX")
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig:$prefix/lib/x86_64-linux-gnu/pkgconfig
for f in include/nvmm.h; do
  [ -f "$prefix/$f" ] || { echo "not installed: $f" >&2; exit 1; }
done
pkg-config --exists nvmm || { echo "nvmm.pc not found under $prefix" >&2; exit 1; }
lib=$(pkg-config --variable=libdir nvmm)
for f in libnvmm.so.2 libnvmm.a; do
  [ -e "$lib/$f" ] || { echo "not installed: $lib/$f" >&2; exit 1; }
done
exports=$(nm -D --defined-only "$lib/libnvmm.so.2" | awk '$2 == "T" {print $3}' | grep -v '^nvmm_' || true)
[ -z "$exports" ] || { echo "libnvmm.so exports more than nvmm_*: $exports" >&2; exit 1; }

cat > "$prefix/client.c" <<'C'
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <nvmm.h>

int main(void) {
    struct nvmm_capability cap;
    if (nvmm_init() == -1) {
        /* No KVM device here: the library says so with errno, as NVMM's does. */
        printf("nvmm_init: %s\n", strerror(errno));
        return errno == ENOENT || errno == EACCES ? 0 : 1;
    }
    if (nvmm_capability(&cap) == -1) return 1;
    printf("NVMM version %u, state %u bytes, %u vCPUs\n", cap.version, cap.state_size,
           cap.max_vcpus);
    return cap.version == NVMM_USER_VERSION && cap.state_size == sizeof(struct nvmm_x64_state) ? 0 : 1;
}
C
cc=${CC:-cc}
# Extra flags for the client, e.g. a sanitized build's -fsanitize=... (word-split on purpose).
flags=${NVMM_CLIENT_FLAGS:-}
# The header with a client, as C99 and as C++.
"$cc" -std=c99 -Wall -Wextra -Werror $(pkg-config --cflags nvmm) -fsyntax-only "$client"
c++ -std=c++17 -Wall -Wextra -Werror $(pkg-config --cflags nvmm) -fsyntax-only -x c++ "$prefix/client.c"
"$cc" -std=c99 -Wall -Wextra -Werror $flags $(pkg-config --cflags nvmm) "$prefix/client.c" \
  -o "$prefix/client-shared" $(pkg-config --libs nvmm) -Wl,-rpath,"$lib" $flags
"$cc" -std=c99 -Wall -Wextra -Werror $flags $(pkg-config --cflags nvmm) "$prefix/client.c" \
  -o "$prefix/client-static" -Wl,-Bstatic -lnvmm -Wl,-Bdynamic -L"$lib" -lstdc++ -lpthread $flags
"$prefix/client-shared"
"$prefix/client-static"
ldd "$prefix/client-static" | grep -q libnvmm && { echo "the static client loads libnvmm.so" >&2; exit 1; }
echo "libnvmm installed: header, shared and static library, nvmm.pc: OK"
