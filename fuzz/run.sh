#!/usr/bin/env bash
# fuzz/run.sh LIBDIR OUTDIR SEEDS: differential fuzzing of shmguard against
# the kernel (fuzz/README.md).
#
#   SEEDS  fixed          the seeds in fuzz/fixed-seeds.txt (make test-fuzz)
#          N              N random seeds, consecutive from a start read from
#                         /dev/urandom and printed (make fuzz SEEDS=N)
#          0xS[+N][,...]  these seeds (a failure's "rerun" line)
#
# Environment: CC (cc), JOBS (nproc), FUZZ_SETS (glibc,default,log,guard),
# FUZZ_TIMEOUT (seconds per run, 60), FUZZ_NO_NS=1 (stay in the shared IPC
# namespace, as when unshare is not allowed), FUZZ_LENGTH (calls per
# sequence instead of 50-200 chosen by the seed), FUZZ_NO_HUGE_NULL=1 (no
# kernel-chosen attach of a hugetlb segment: looks past the guard_pages bug
# described in fuzz/README.md).
#
# Builds fuzz/shmfuzz.c and fuzz/drive.c into OUTDIR, then runs every seed
# through the raw system calls and through each option set (drive.c). The
# last line is "N passed, N failed"; the status is 0 only if none failed.
set -euo pipefail

if [ $# -ne 3 ]; then
    echo "usage: fuzz/run.sh LIBDIR OUTDIR SEEDS|fixed" >&2
    exit 2
fi
libdir=$1
outdir=$2
seeds_arg=$3
here=$(cd "$(dirname "$0")" && pwd)
cc=${CC:-cc}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
sets=${FUZZ_SETS:-glibc,default,log,guard}
timeout=${FUZZ_TIMEOUT:-60}
cflags=(-std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -O1 -g)

lib=$(cd "$libdir" && pwd)/libshmguard.so
if [ ! -f "$lib" ]; then
    echo "fuzz/run.sh: $lib not found (make build)" >&2
    exit 2
fi
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

# shmfuzz must be position-independent: it maps at fixed low addresses.
"$cc" "${cflags[@]}" -fPIE -pie "$here/shmfuzz.c" -o "$outdir/shmfuzz"
"$cc" "${cflags[@]}" "$here/drive.c" -o "$outdir/drive"

python=python3
if ! command -v "$python" >/dev/null 2>&1; then
    echo "fuzz/run.sh: python3 not found: the log set cannot check its JSON" >&2
    exit 2
fi

# A private IPC namespace per run makes shmids deterministic; without one,
# shmfuzz falls back to per-process keys and skips index-based commands.
extra_args=()
if [ -n "${FUZZ_LENGTH:-}" ]; then
    extra_args+=(--length "$FUZZ_LENGTH")
fi
if [ "${FUZZ_NO_HUGE_NULL:-0}" = 1 ]; then
    extra_args+=(--no-huge-null)
fi
if [ "${FUZZ_NO_NS:-0}" = 1 ]; then
    extra_args+=(--no-ns)
elif ! unshare --ipc true 2>/dev/null; then
    echo "fuzz/run.sh: cannot create IPC namespaces (not root?): shared namespace," \
        "index-based commands skipped" >&2
fi

seeds=()
case "$seeds_arg" in
fixed)
    while read -r seed _; do
        case "$seed" in '' | '#'*) continue ;; esac
        seeds+=("$seed")
    done <"$here/fixed-seeds.txt"
    ;;
0x* | 0X*)
    IFS=, read -r -a seeds <<<"$seeds_arg"
    ;;
*[!0-9]* | '' | 0)
    echo "fuzz/run.sh: SEEDS must be 'fixed', a count (> 0), or 0xSEED[+N][,...]" >&2
    exit 2
    ;;
*)
    start=$(od -An -N8 -tx8 /dev/urandom | tr -d ' \n')
    echo "random seeds: 0x$start+$seeds_arg (from /dev/urandom)"
    seeds=("0x$start+$seeds_arg")
    ;;
esac

# The log set's sequences switch to nobody's effective uid, so their log
# directories must be reachable by nobody, which OUTDIR may not be (a
# checkout inside a 0700 directory, as CI's mktemp -d is).
logroot=$(mktemp -d "${TMPDIR:-/tmp}/shmguard-fuzz-logs.XXXXXX")
chmod 0755 "$logroot"
trap 'rm -rf "$logroot"' EXIT
"$outdir/drive" --prog "$outdir/shmfuzz" --lib "$lib" --out "$outdir" \
    --jobs "$jobs" --sets "$sets" --timeout "$timeout" --python "$python" \
    --logcheck "$here/logcheck.py" --repro "fuzz/run.sh $libdir $2" --logroot "$logroot" \
    ${extra_args[@]+"${extra_args[@]}"} "${seeds[@]}"
