#!/usr/bin/env bash
# c_tests/memcheck.sh LIBDIR OUTDIR: a program that leaks nothing
# (c_tests/memcheck_clean.c) must be as clean under Valgrind's memcheck
# with shmguard as without it, with valgrind's default options plus
# --leak-check=full --error-exitcode=9: no error and no definitely or
# possibly lost block, in the process and in its forked child (which ends
# with _exit, so shmguard's exit check never runs there).
#
# Runs: the program without shmguard (the reference), then linked with
# -lshmguard and preloaded (LD_PRELOAD), each with several SHMGUARD_OPTIONS
# (none, the audit log, call stacks, verbosity, guard pages, no leak check).
# LIBDIR holds libshmguard.so; OUTDIR receives the binaries and each run's
# valgrind output (RUN.vg). Without valgrind it says so on one SKIP line
# and exits 0 (.ci/run installs valgrind). Last line: "N passed, N failed".
set -eu

if [ "$#" -ne 2 ]; then
    echo "usage: $0 LIBDIR OUTDIR" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$2/lib"
out=$(cd "$2" && pwd)
libdir=$(cd "$1" && pwd)
cc=${CC:-cc}

if ! command -v valgrind >/dev/null; then
    echo "SKIP memcheck: valgrind is not installed (Debian: apt-get install valgrind; .ci/run installs it)"
    exit 0
fi

# A copy of the library and the SONAME link, as c_tests/run.sh makes.
cp "$libdir/libshmguard.so" "$out/lib/libshmguard.so"
ln -sf libshmguard.so "$out/lib/libshmguard.so.0"
lib=$out/lib

flags=(-std=c11 -Wall -Wextra -Werror -g -pthread)
"$cc" "${flags[@]}" -o "$out/clean.plain" "$here/memcheck_clean.c"
"$cc" "${flags[@]}" -o "$out/clean.linked" "$here/memcheck_clean.c" \
    "-L$lib" -lshmguard "-Wl,-rpath,$lib"

passed=0
failed=0
# run NAME ENV...: the program under memcheck, with the environment ENV.
run() {
    local name=$1 exe=$out/clean.plain
    shift
    case "$name" in linked*) exe=$out/clean.linked ;; esac
    rm -f "$out"/logs/*
    if env "$@" valgrind -q --leak-check=full --error-exitcode=9 "$exe" \
        >"$out/$name.vg" 2>&1; then
        echo "PASS memcheck $name"
        passed=$((passed + 1))
    else
        echo "FAIL memcheck $name: exit status $? (valgrind's 9: memcheck found something)"
        grep -E 'lost|Invalid|uninitial|ERROR|memcheck_clean' "$out/$name.vg" | head -n 20 | sed 's/^/    /'
        failed=$((failed + 1))
    fi
}

mkdir -p "$out/logs"
run plain SHMGUARD_OPTIONS=
i=0
while read -r opts; do
    i=$((i + 1))
    [ "$opts" = - ] && opts=
    run "linked.$i" "SHMGUARD_OPTIONS=$opts"
    run "preloaded.$i" "SHMGUARD_OPTIONS=$opts" "LD_PRELOAD=$lib/libshmguard.so"
done <<EOF2
-
log_path=$out/logs/l.%p.jsonl
stacks=1:verbosity=1
log_path=$out/logs/v.%p.jsonl:stacks=1:verbosity=2:guard_pages=1
leak_check=0
EOF2
rm -rf "$out/logs"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
