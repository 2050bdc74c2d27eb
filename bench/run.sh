#!/usr/bin/env bash
# bench/run.sh LIBDIR OUTDIR: shmguard's benchmark (`make bench`).
#
# LIBDIR holds libshmguard.so and, when it has been built and works, the
# shmguard command (target/release). OUTDIR receives the programs (bin/),
# a copy of the library (lib/), the raw results and the table:
#   machine.txt     nproc, CPU, kernel, date, tools found
#   samples.tsv     every sample of every phase (one line each)
#   results.md      the tables, as printed (markdown)
#   table.txt       everything the driver printed
#   shm_vs_pipe.txt the output of examples/shm_vs_pipe.c
#   stderr/         the workers' stderr, one file per variant
#   exit-report.txt the leak report of one exit with 60,000 attachments
#   tree-report.txt `shmguard run`'s report of the last tree
#   report-1m.txt   `shmguard report`'s output on the 1,000,000 events
#
# What it measures and how: bench/driver.c and docs/benchmarks.md.
# Environment:
#   CC               C compiler (default cc)
#   BENCH_ROUNDS     rounds of the per-call measures (default 15)
#   BENCH_BUDGET_MS  ms of timed calls per measure and sample (default 20)
#   BENCH_QUICK=1    a smoke run: few rounds, small tree and log set
#   BENCH_STRICT=1   exit 1 when a target is missed
# SHMGUARD_BENCH_IPCNS is set by the script itself when it re-runs in an
# IPC namespace of its own (unshare --ipc).
# Exit status: 0 when every measure ran (targets missed are printed as
# MISS, not failures, unless BENCH_STRICT=1); 1 when a measure failed or a
# segment was left behind; 2 on a usage or build error.
set -eu

if [ "$#" -ne 2 ]; then
    echo "usage: $0 LIBDIR OUTDIR" >&2
    exit 2
fi

# The benchmark runs in an IPC namespace of its own when it can (root, or
# user namespaces): its segments are then invisible to other programs and
# theirs to it, and the namespace takes any segment left behind with it
# when the run ends (the check at the end still names and removes them).
if [ -z "${SHMGUARD_BENCH_IPCNS:-}" ] && unshare --ipc true 2>/dev/null; then
    SHMGUARD_BENCH_IPCNS=1 exec unshare --ipc "$0" "$@"
fi

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
libdir=$(cd "$1" && pwd)
mkdir -p "$2"
out=$(cd "$2" && pwd)
case "$out" in
*[[:space:]:]*)
    # ld.so splits LD_PRELOAD at spaces and colons
    echo "$0: OUTDIR must not contain spaces or ':' (LD_PRELOAD names a file in it)" >&2
    exit 2
    ;;
esac
cc=${CC:-cc}
rounds=${BENCH_ROUNDS:-15}
budget=${BENCH_BUDGET_MS:-20}
exit_rounds=9
tree=1000
tree_rounds=3
log_files=100
log_events_per_file=10000
report_rounds=5
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    rounds=${BENCH_ROUNDS:-3}
    budget=${BENCH_BUDGET_MS:-10}
    exit_rounds=2
    tree=100
    tree_rounds=1
    log_files=10
    log_events_per_file=1000
    report_rounds=2
fi

if [ ! -f "$libdir/libshmguard.so" ]; then
    echo "$0: $libdir/libshmguard.so not found (make build)" >&2
    exit 2
fi

bin="$out/bin"
lib="$out/lib"
rm -rf "$bin" "$out/stderr"
mkdir -p "$bin" "$lib"
rm -f "$lib/libshmguard.so" "$lib/libshmguard.so.0"
cp "$libdir/libshmguard.so" "$lib/libshmguard.so"
ln -s libshmguard.so "$lib/libshmguard.so.0"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/shmguard-bench.XXXXXX")
case "$tmp" in
*[[:space:]:]*)
    echo "$0: the scratch directory $tmp must not contain spaces or ':'" >&2
    exit 2
    ;;
esac

# ------------------------------------------------------------- segments

# "shmid cpid" of every segment in the kernel.
snapshot() {
    awk 'NR > 1 { print $2, $5 }' /proc/sysvipc/shm | sort
}

before="$tmp/segments.before"
snapshot >"$before"

# Segments new since the start whose creator is gone were left behind:
# named, and removed when they are surely ours (in our own IPC namespace).
# Status 1 if any.
leftovers() {
    local left=0 id cpid
    while read -r id cpid; do
        if ! grep -q "^$id " "$before" && ! kill -0 "$cpid" 2>/dev/null; then
            if [ -n "${SHMGUARD_BENCH_IPCNS:-}" ]; then
                echo "bench: segment shmid=$id left behind (creator pid $cpid is gone); removing it" >&2
                ipcrm -m "$id" 2>/dev/null || true
            else
                echo "bench: segment shmid=$id appeared during the run and its creator (pid $cpid) is gone;" \
                    "not removed: without an IPC namespace of our own it may be another program's (ipcrm -m $id)" >&2
            fi
            left=1
        fi
    done < <(snapshot)
    return "$left"
}

# shellcheck disable=SC2317 # called by the trap
cleanup() {
    rm -rf "$tmp"
}
trap cleanup EXIT

# ------------------------------------------------------------ building

cflags=(-std=c11 -O2 -Wall -Wextra -Werror)
echo "bench: building in $bin"
"$cc" "${cflags[@]}" -pthread -o "$bin/shmbench.plain" "$here/shmbench.c" -ldl
"$cc" "${cflags[@]}" -pthread -o "$bin/shmbench.linked" "$here/shmbench.c" \
    "-L$lib" -lshmguard "-Wl,-rpath,$lib" -ldl
"$cc" "${cflags[@]}" -o "$bin/tiny" "$here/tiny.c"
"$cc" "${cflags[@]}" -o "$bin/genlog" "$here/genlog.c"
"$cc" "${cflags[@]}" -o "$bin/driver" "$here/driver.c" -lm
"$cc" "${cflags[@]}" -pthread -I"$root/include" -o "$bin/shm_vs_pipe" \
    "$root/examples/shm_vs_pipe.c" "-L$lib" -lshmguard "-Wl,-rpath,$lib"

# --------------------------------------------------------------- tools

strace_bin=$(command -v strace || true)
if [ -z "$strace_bin" ]; then
    echo "bench: strace not found: no strace variant (apt-get install strace)"
fi

# The shmguard command: used only if it runs a trivial tree and reports.
shmguard_bin=""
if [ -x "$libdir/shmguard" ]; then
    if "$libdir/shmguard" run --lib "$lib/libshmguard.so" --log-dir "$tmp/probe" \
        -o "$tmp/probe.report" -- /bin/true >"$tmp/probe.out" 2>&1 &&
        "$libdir/shmguard" report "$tmp/probe" >>"$tmp/probe.out" 2>&1; then
        shmguard_bin="$libdir/shmguard"
    else
        echo "bench: skipping the shmguard run and report measures: '$libdir/shmguard run -- /bin/true' or 'shmguard report' failed:"
        sed 's/^/    /' "$tmp/probe.out" | head -n 10
    fi
    rm -rf "$tmp/probe"
else
    echo "bench: skipping the shmguard run and report measures: $libdir/shmguard not found (make build)"
fi

# ------------------------------------------------------------- machine

max_map=$(cat /proc/sys/vm/max_map_count)
held=$((max_map - 3000))
if [ "$held" -gt 60000 ]; then
    held=60000
fi
if [ "${BENCH_QUICK:-0}" = 1 ] && [ "$held" -gt 5000 ]; then
    held=5000
fi
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "nproc: $(nproc)"
    echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
    echo "kernel: $(uname -r)"
    echo "libc: $(ldd --version 2>&1 | head -n 1)"
    echo "cc: $("$cc" --version | head -n 1)"
    echo "vm.max_map_count: $max_map (live attachments measured: $held)"
    echo "strace: ${strace_bin:-none}${strace_bin:+ ($("$strace_bin" -V | head -n 1))}"
    echo "shmguard command: ${shmguard_bin:-none}"
    echo "library: $libdir/libshmguard.so ($(stat -c %s "$libdir/libshmguard.so") bytes)"
    echo "ipc namespace: $(if [ -n "${SHMGUARD_BENCH_IPCNS:-}" ]; then echo "own (unshare --ipc)"; else echo "shared with the system"; fi)"
    echo "commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet -- src 2>/dev/null || echo ' + uncommitted changes in src/')"
} >"$out/machine.txt"
sed 's/^/bench: /' "$out/machine.txt"

# One benchmark or C suite at a time on this machine: they share the
# segment table (c_tests/run.sh and cargo test take the same lock), and a
# concurrent suite would be noise. Waits at most a minute.
exec 9>>/tmp/shmguard-c-suite.lock
if ! flock -w 60 9; then
    echo "bench: another suite holds /tmp/shmguard-c-suite.lock; running anyway"
fi

# ------------------------------------------------------------- the log

logs=""
log_events=0
if [ -n "$shmguard_bin" ]; then
    logs="$tmp/log1m"
    mkdir -p "$logs"
    log_events=$((log_files * log_events_per_file))
    echo "bench: writing $log_events synthetic events ($log_files logs) for shmguard report"
    "$bin/genlog" "$logs" "$log_files" "$log_events_per_file"
fi

# ------------------------------------------------------------- the run

status=0
start=$(date +%s)
set +e
"$bin/driver" bin="$bin" lib="$lib/libshmguard.so" out="$out" tmp="$tmp" \
    rounds="$rounds" budget="$budget" strace="$strace_bin" shmguard="$shmguard_bin" \
    logs="$logs" log_events="$log_events" held="$held" exit_rounds="$exit_rounds" \
    tree="$tree" tree_rounds="$tree_rounds" report_rounds="$report_rounds" 9>&- |
    tee "$out/table.txt"
driver_status=${PIPESTATUS[0]}
set -e
if [ "$driver_status" -eq 1 ] && [ "${BENCH_STRICT:-0}" != 1 ]; then
    : # targets missed: printed as MISS
elif [ "$driver_status" -ne 0 ]; then
    status=1
fi

echo
echo "### examples/shm_vs_pipe.c"
echo
if "$bin/shm_vs_pipe" 9>&- | tee "$out/shm_vs_pipe.txt"; then
    :
else
    echo "bench: shm_vs_pipe failed"
    status=1
fi

if ! leftovers; then
    status=1
fi
echo
echo "bench: $(($(date +%s) - start)) s; raw results in $out"
exit "$status"
