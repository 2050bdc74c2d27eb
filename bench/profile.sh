#!/usr/bin/env bash
# bench/profile.sh OUTDIR [MEASURE...]: where libshmguard spends its
# instructions, per call, under valgrind's callgrind.
#
# OUTDIR is the output directory of a `make bench` run (its bin/ and lib/
# are used). MEASUREs are those of bench/shmbench.c (default: attach_4k
# ipc_stat get_rmid ftok). For each measure and for three variants --
# glibc (shmbench.plain), linked (shmbench.linked, default options) and log
# (shmbench.plain preloaded with log_path=...) -- it runs `shmbench loop`
# twice, with N and 3N operations, and divides the difference of the
# instruction counts by 2N: the instructions per operation, without the
# start-up. Then it lists the functions of the 3N run by inclusive
# instructions per operation (the top 15 of libshmguard and libc). One
# "operation" is one measure's op: attach_4k is an shmat plus an shmdt,
# get_rmid an shmget plus an IPC_RMID.
#
# Instructions are not time: system calls, cache misses and page faults
# cost far more per instruction (see `perf record -e cpu-clock -g` for
# time; docs/benchmarks.md). Callgrind files are kept in OUTDIR/profile/.
set -eu

if [ "$#" -lt 1 ]; then
    echo "usage: $0 OUTDIR [MEASURE...]" >&2
    exit 2
fi
out=$(cd "$1" && pwd)
shift
measures=${*:-attach_4k ipc_stat get_rmid ftok}
bin="$out/bin"
lib="$out/lib/libshmguard.so"
prof="$out/profile"
if [ ! -x "$bin/shmbench.linked" ] || [ ! -f "$lib" ]; then
    echo "$0: run make bench first (no $bin/shmbench.linked or $lib)" >&2
    exit 2
fi
if ! command -v valgrind >/dev/null; then
    echo "$0: valgrind not found (apt-get install valgrind)" >&2
    exit 2
fi
mkdir -p "$prof"
n=10000
logdir=$(mktemp -d "${TMPDIR:-/tmp}/shmguard-profile.XXXXXX")
trap 'rm -rf "$logdir"' EXIT

# run VARIANT MEASURE COUNT: callgrind file name on stdout; the count of
# instructions in $prof/VARIANT.MEASURE.COUNT.total
run() {
    local variant=$1 measure=$2 count=$3 file="$prof/$1.$2.$3.callgrind"
    local -a envs=() exe=("$bin/shmbench.plain")
    case "$variant" in
    linked) exe=("$bin/shmbench.linked") ;;
    log) envs=("LD_PRELOAD=$lib" "SHMGUARD_OPTIONS=log_path=$logdir/p.%p.jsonl") ;;
    esac
    env -u LD_PRELOAD -u SHMGUARD_OPTIONS "${envs[@]}" valgrind --tool=callgrind \
        --callgrind-out-file="$file" "${exe[@]}" loop "$measure" "$count" \
        >/dev/null 2>"$file.err"
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$file.err" >"$prof/$variant.$measure.$count.total"
    rm -f "$logdir"/p.*.jsonl
}

for m in $measures; do
    echo "== $m: instructions per operation (user space)"
    for v in glibc linked log; do
        run "$v" "$m" "$n"
        run "$v" "$m" $((3 * n))
        a=$(cat "$prof/$v.$m.$n.total")
        b=$(cat "$prof/$v.$m.$((3 * n)).total")
        printf '   %-7s %6d\n' "$v" $(((b - a) / (2 * n)))
    done
    for v in linked log; do
        echo "   $v, inclusive instructions per operation by function:"
        callgrind_annotate --inclusive=yes "$prof/$v.$m.$((3 * n)).callgrind" 2>/dev/null |
            awk -v ops=$((3 * n)) '
                /libshmguard|libc\.so/ && $1 ~ /^[0-9,]+$/ {
                    c = $1; gsub(",", "", c)
                    name = $0; sub(/^ *[0-9,]+ +\([^)]*\) +/, "", name); sub(/ \[.*$/, "", name)
                    sub(/^.*\/library\//, "std:", name)
                    if (name ~ /libc-start|below main/) next
                    if (c / ops >= 1) printf "     %7.0f  %s\n", c / ops, name
                }' | head -n 15
    done
done
