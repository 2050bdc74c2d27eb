#!/bin/sh
# make demo: run demo/leaky.c under shmguard, linked and preloaded, then
# remove the segments it leaked. Usage: demo/run.sh LIBDIR BUILDDIR CC
set -eu
lib=$(cd "$1" && pwd)
out=$2
cc=${3:-cc}
mkdir -p "$out"
log=$out/leaky.err
: > "$log"

"$cc" -std=c11 -Wall -Wextra -Werror -o "$out/leaky" demo/leaky.c -L"$lib" -lshmguard -Wl,-rpath,"$lib"
"$cc" -std=c11 -Wall -Wextra -Werror -o "$out/leaky-plain" demo/leaky.c

echo
echo "== 1. linked with -lshmguard, SHMGUARD_OPTIONS=verbosity=1 (explain each failure) =="
status=0
SHMGUARD_OPTIONS=verbosity=1 "$out/leaky" 2> "$out/run1.err" || status=$?
cat "$out/run1.err"; cat "$out/run1.err" >> "$log"
echo "(exit status $status)"

echo
echo "== 2. an unmodified binary, LD_PRELOAD=$lib/libshmguard.so, SHMGUARD_OPTIONS=exitcode=23 =="
status=0
LD_PRELOAD=$lib/libshmguard.so SHMGUARD_OPTIONS=exitcode=23 "$out/leaky-plain" 2> "$out/run2.err" || status=$?
cat "$out/run2.err"; cat "$out/run2.err" >> "$log"
echo "(exit status $status: a leak with exitcode=23 fails the run, as a CI job would want)"

ids=$(sed -n 's/.*leak: segment shmid=\([0-9]*\).*/\1/p' "$log")
for id in $ids; do ipcrm -m "$id"; done
echo
echo "The demo removed the segments it leaked:" $ids
