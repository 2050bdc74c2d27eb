#!/bin/sh
# Builds a program against an installed shmguard through pkg-config, once
# with the shared library and once fully static, and runs both.
# Usage: c_tests/check-install.sh PREFIX CC
set -eu
prefix=$1
cc=${2:-cc}
out=$prefix/check
mkdir -p "$out"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"

cat > "$out/prog.c" <<'PROG'
#include <stdio.h>
#include <sys/shm.h>
#include "shmguard.h"

int main(void)
{
    int id = shmget(IPC_PRIVATE, 4096, 0600);
    if (id == -1) { perror("shmget"); return 1; }
    /* Only shmguard's shmget is tracked: one unmarked segment is one leak. */
    size_t before = shmguard_leak_count();
    int rc = shmctl(id, IPC_RMID, NULL);
    size_t after = shmguard_leak_count();
    printf("shmguard %s: leaks %zu -> %zu\n", shmguard_version(), before, after);
    return rc == 0 && before == 1 && after == 0 ? 0 : 1;
}
PROG

# shellcheck disable=SC2046 # pkg-config output is a list of words
"$cc" -std=c11 -Wall -Wextra -Werror -o "$out/prog-shared" "$out/prog.c" \
    $(pkg-config --cflags --libs shmguard) -Wl,-rpath,"$prefix/lib"
"$out/prog-shared"
readelf -d "$out/prog-shared" | grep -q 'NEEDED.*libshmguard.so.0' || {
    echo "prog-shared does not need libshmguard.so.0"; exit 1; }

# shellcheck disable=SC2046
"$cc" -std=c11 -Wall -Wextra -Werror -static -o "$out/prog-static" "$out/prog.c" \
    $(pkg-config --cflags --static --libs shmguard)
"$out/prog-static"
if readelf -d "$out/prog-static" 2>/dev/null | grep -q NEEDED; then
    echo "prog-static is not static"; exit 1
fi
echo "install + pkg-config: shared and static links ok"
