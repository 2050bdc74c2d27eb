#!/usr/bin/env bash
# c_tests/run.sh LIBDIR OUTDIR: builds and runs shmguard's C test suite.
#
# LIBDIR holds libshmguard.so (e.g. target/debug); OUTDIR receives the
# binaries, the logs and its own lib/ dir (a copy of libshmguard.so and the
# libshmguard.so.0 symlink the SONAME asks for).
#
# Programs and modes:
#   t_*.c  differential programs, three modes each:
#          plain     linked normally: glibc is the reference
#          linked    linked with -lshmguard (first), rpath to OUTDIR/lib
#          preloaded the plain binary with LD_PRELOAD=OUTDIR/lib/libshmguard.so
#          every mode must exit 0 and the linked and preloaded traces (stdout)
#          must equal the plain trace byte for byte.
#   x_api.c   the extension API, called directly: linked mode only.
#   x_leak.c  one run per scenario, linked and preloaded (it finds the
#             extension functions with dlsym, so the plain binary serves the
#             preloaded mode); this script checks stderr and the status.
#   x_policy.c, x_rules.c, x_help.c, x_guard.c, x_fault.c, x_stacks.c,
#   x_guardstack.c
#             the options, and
#   x_stress_churn.c, x_stress_threads.c, x_stress_signals.c,
#   x_stress_exec.c, x_hostile.c, x_log.c  load, signals, fork/exec,
#             hostile environments, the audit log under attack,
#   x_priv.c  privileged processes, start-up races, escaped output:
#   x_safety.c  how a program dies, signal handlers, guard page budgets,
#   x_suppress.c  suppressions=FILE (built with -O0 -g, as x_stacks.c):
#             one run per line of $option_runs (program, argument,
#             SHMGUARD_OPTIONS), linked and preloaded; each program checks
#             itself (running itself again where it needs its own stderr or
#             audit log), and a run passes if it exits 0 with nothing on
#             stderr.
# Every program links the helpers of check.c (stress.c too for the
# x_stress_* programs), compiled once per run with the programs' flags
# (CFLAGS included) and put before -lshmguard on the command line.
# In the linked and preloaded modes SHMGUARD_EXPECT=1 is set and each program
# verifies that shmget resolves to libshmguard (and to glibc in plain mode).
# Before and after each program the table /proc/sysvipc/shm is read: a new
# segment whose creator is gone is a leak, a failure, and is removed. The
# suite runs in an IPC namespace of its own when it can (unshare --ipc), so
# that table holds only its segments. Runs of the suite on one machine wait
# for each other (/tmp/shmguard-c-suite.lock).
#
# Environment: CC (default cc); CFLAGS (appended); SHMGUARD_MODES (default
# "plain linked preloaded": the modes to run); SHMGUARD_TEST_TIMEOUT
# (seconds per program, default 60); SHMGUARD_SUITE ("test", the default:
# everything above; "stress": only the long runs of $stress_runs, each phase
# SHMGUARD_STRESS_SECONDS long, default 1); SHMGUARD_PRELOAD_FIRST (a
# library put before libshmguard.so in LD_PRELOAD, e.g. libasan.so);
# SHMGUARD_WRAPPER (a command that runs each program, e.g. valgrind ...);
# SHMGUARD_SKIP (runs not to make: program names or PROGRAM:ARGUMENT, each
# printed as "SKIP name mode").
# Output: "PASS name mode" or "FAIL name mode: reason" per run, details
# indented below a failure, and last "N passed, N failed". Exit status 0
# only if nothing failed.
set -eu

if [ "$#" -ne 2 ]; then
    echo "usage: $0 LIBDIR OUTDIR" >&2
    exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
libsrc=$1
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
# Word splitting of the flags is wanted.
read -r -a extra_flags <<<"${CFLAGS:-}"
modes=${SHMGUARD_MODES:-plain linked preloaded}
limit=${SHMGUARD_TEST_TIMEOUT:-60}
suite=${SHMGUARD_SUITE:-test}
case "$suite" in
test | stress) ;;
*)
    echo "$0: SHMGUARD_SUITE must be test or stress" >&2
    exit 2
    ;;
esac
preload_first=${SHMGUARD_PRELOAD_FIRST:-}
# Word splitting of the wrapper command is wanted.
read -r -a wrapper <<<"${SHMGUARD_WRAPPER:-}"
base_flags=(-std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -pthread -g)
incs=(-I"$here" -I"$root/include")

# The suite runs in an IPC namespace of its own when it can (root, or user
# namespaces): the segment snapshots see only the suite's segments, never
# those other programs on the machine create or remove meanwhile, and the
# namespace takes anything left behind with it when the run ends.
if [ -z "${SHMGUARD_SUITE_IPCNS:-}" ] && unshare --ipc true 2>/dev/null; then
    SHMGUARD_SUITE_IPCNS=1 exec unshare --ipc "$0" "$@"
fi
if [ -z "${SHMGUARD_SUITE_IPCNS:-}" ]; then
    echo "note: no IPC namespace of its own (unshare --ipc failed): the suite shares the machine's"
fi

# One suite at a time on this machine (run.sh and cargo test's c_suite take
# the same lock): the timeouts assume the machine is not running another.
exec 9>>/tmp/shmguard-c-suite.lock
flock 9

lib="$out/lib"
bin="$out/bin"
log="$out/log"
rm -rf "$bin" "$log"
mkdir -p "$lib" "$bin" "$log"

passed=0
failed=0

pass() {
    echo "PASS $1 $2"
    passed=$((passed + 1))
}

# skipped NAME MODE: whether SHMGUARD_SKIP names the run NAME (or its
# program); says so.
skipped() {
    local word
    for word in ${SHMGUARD_SKIP:-}; do
        if [ "$word" = "$1" ] || [ "$word" = "${1%%:*}" ]; then
            echo "SKIP $1 $2 (SHMGUARD_SKIP)"
            return 0
        fi
    done
    return 1
}

# fail NAME MODE REASON [DETAIL_FILE]
fail() {
    echo "FAIL $1 $2: $3"
    if [ "$#" -ge 4 ] && [ -s "$4" ]; then
        head -n 40 "$4" | sed 's/^/    /'
    fi
    failed=$((failed + 1))
}

want_mode() {
    case " $modes " in
    *" $1 "*) return 0 ;;
    *) return 1 ;;
    esac
}

have_lib=0
if [ -f "$libsrc/libshmguard.so" ]; then
    rm -f "$lib/libshmguard.so" "$lib/libshmguard.so.0"
    cp "$libsrc/libshmguard.so" "$lib/libshmguard.so"
    ln -s libshmguard.so "$lib/libshmguard.so.0"
    have_lib=1
fi

# ------------------------------------------------------------- snapshots

# "shmid cpid" of every segment in the kernel.
snapshot() {
    awk 'NR > 1 { print $2, $5 }' /proc/sysvipc/shm | sort
}

# leak_check BEFORE_FILE REPORT_FILE: segments new since BEFORE whose
# creator is gone are written to REPORT_FILE and removed. Status 1 if any.
leak_check() {
    local leaked=0 id cpid
    : >"$2"
    while read -r id cpid; do
        if ! grep -q "^$id " "$1" && ! kill -0 "$cpid" 2>/dev/null; then
            echo "leaked segment shmid=$id (creator pid $cpid is gone)" >>"$2"
            ipcrm -m "$id" 2>/dev/null || true
            leaked=1
        fi
    done < <(snapshot)
    return "$leaked"
}

# ------------------------------------------------------------- compiling

# build OUTPUT LOG ARGS...: compile with the suite's flags.
build() {
    local output=$1 logfile=$2
    shift 2
    "$cc" "${base_flags[@]}" "${extra_flags[@]}" "${incs[@]}" -o "$output" "$@" >"$logfile" 2>&1
}

linked_args=("-L$lib" -lshmguard "-Wl,-rpath,$lib")

# The helpers, compiled once: check.c for every program, stress.c for the
# x_stress_* programs. A helper that does not compile is a failure of its
# own (and every program that needs it fails to link).
for helper in check stress; do
    if ! build "$bin/$helper.o" "$log/$helper.compile" -c "$here/$helper.c"; then
        echo "FAIL $helper.c: does not compile"
        sed 's/^/    /' "$log/$helper.compile" | head -n 40
        failed=$((failed + 1))
    fi
done

# helper_objs NAME: sets the array objs to the helper objects program NAME
# links (right after its source, before -lshmguard).
helper_objs() {
    objs=("$bin/check.o")
    case "$1" in
    x_stress_*) objs+=("$bin/stress.o") ;;
    esac
}

ctor_ok=0
if build "$bin/lib_ctor.so" "$log/lib_ctor.compile" -shared -fPIC \
    -Wl,-soname,lib_ctor.so "$here/lib_ctor.c"; then
    ctor_ok=1
fi

# prog_extra NAME: sets the array extra to the link arguments of program
# NAME that come after the source and -lshmguard.
prog_extra() {
    extra=()
    if [ "$1" = t_ctor ]; then
        extra=("$bin/lib_ctor.so" "-Wl,-rpath,$bin")
    fi
}

# ---------------------------------------------------------------- running

# run_one LOGBASE ENV_ARGS... -- CMD...: runs CMD under a timeout with a
# clean environment plus ENV_ARGS and SHMGUARD_RUN (the run's name, for
# the wrapper's logs); stdout/stderr to LOGBASE.out/.err, the status to
# LOGBASE.rc, the snapshot before to LOGBASE.before.
run_one() {
    local logbase=$1 rc=0
    shift
    local envs=()
    while [ "$1" != "--" ]; do
        envs+=("$1")
        shift
    done
    shift
    snapshot >"$logbase.before"
    if timeout -k 5 "$limit" env -u SHMGUARD_OPTIONS -u SHMGUARD_EXPECT -u LD_PRELOAD \
        "SHMGUARD_RUN=$(basename "$logbase")" "${envs[@]}" "${wrapper[@]}" "$@" \
        >"$logbase.out" 2>"$logbase.err" </dev/null 9>&-; then
        rc=0
    else
        rc=$?
    fi
    echo "$rc" >"$logbase.rc"
}

# describe_rc RC: why a status is not 0.
describe_rc() {
    if [ "$1" -eq 124 ] || [ "$1" -eq 137 ]; then
        echo "timed out after ${limit}s (status $1)"
    elif [ "$1" -gt 128 ]; then
        echo "killed by signal $(($1 - 128))"
    else
        echo "exit status $1"
    fi
}

# mode_env MODE: sets the array envs to the environment of a run in MODE.
mode_env() {
    envs=()
    case "$1" in
    plain) ;;
    linked) envs=(SHMGUARD_EXPECT=1) ;;
    preloaded) envs=(SHMGUARD_EXPECT=1 "LD_PRELOAD=${preload_first:+$preload_first:}$lib/libshmguard.so") ;;
    esac
}

# ------------------------------------------------- differential programs

diff_sources=()
if [ "$suite" = test ]; then
    diff_sources=("$here"/t_*.c)
fi
for src in "${diff_sources[@]}"; do
    name=$(basename "$src" .c)
    prog_extra "$name"
    helper_objs "$name"
    built_plain=0
    built_linked=0
    if [ "$name" = t_ctor ] && [ "$ctor_ok" -eq 0 ]; then
        for mode in $modes; do
            fail "$name" "$mode" "lib_ctor.so did not compile" "$log/lib_ctor.compile"
        done
        continue
    fi
    if want_mode plain || want_mode preloaded; then
        if build "$bin/$name.plain" "$log/$name.plain.compile" "$src" "${objs[@]}" "${extra[@]}"; then
            built_plain=1
        fi
    fi
    if want_mode linked && [ "$have_lib" -eq 1 ]; then
        if build "$bin/$name.linked" "$log/$name.linked.compile" "$src" "${objs[@]}" \
            "${linked_args[@]}" "${extra[@]}"; then
            built_linked=1
        fi
    fi
    for mode in $modes; do
        base="$log/$name.$mode"
        skipped "$name" "$mode" && continue
        if [ "$mode" != plain ] && [ "$have_lib" -eq 0 ]; then
            fail "$name" "$mode" "libshmguard.so not found in $libsrc"
            continue
        fi
        exe="$bin/$name.plain"
        ok=$built_plain
        if [ "$mode" = linked ]; then
            exe="$bin/$name.linked"
            ok=$built_linked
        fi
        if [ "$ok" -eq 0 ]; then
            compile_log="$log/$name.plain.compile"
            [ "$mode" = linked ] && compile_log="$log/$name.linked.compile"
            fail "$name" "$mode" "does not compile" "$compile_log"
            continue
        fi
        mode_env "$mode"
        run_one "$base" "${envs[@]}" -- "$exe"
        rc=$(cat "$base.rc")
        reason=""
        cp "$base.err" "$base.detail"
        if [ "$rc" -ne 0 ]; then
            reason=$(describe_rc "$rc")
        elif [ "$mode" != plain ] && grep -q "shmguard: \(leak:\|SUMMARY:\)" "$base.err"; then
            reason="unexpected leak report on stderr"
        fi
        ref="$log/$name.plain.out"
        want_mode plain || ref="$log/$name.linked.out"
        if [ "$mode" != plain ] && [ -f "$ref" ] && [ "$ref" != "$base.out" ] &&
            ! cmp -s "$ref" "$base.out"; then
            reason="${reason:+$reason; }trace differs from $(basename "$ref" .out)"
            diff -u "$ref" "$base.out" >>"$base.detail" || true
        fi
        if ! leak_check "$base.before" "$base.leaks"; then
            reason="${reason:+$reason; }leaked segments"
            cat "$base.leaks" >>"$base.detail"
        fi
        if [ -n "$reason" ]; then
            fail "$name" "$mode" "$reason" "$base.detail"
        else
            pass "$name" "$mode"
        fi
    done
done

# ---------------------------------------------------- extension programs

x_modes=""
want_mode linked && x_modes="linked"
want_mode preloaded && x_modes="$x_modes preloaded"

# The programs of the option runs (below), in the order they are built.
stress_programs="x_stress_churn x_stress_threads x_stress_signals x_stress_exec"
option_programs="x_policy x_rules x_help x_guard x_fault x_stacks x_guardstack $stress_programs x_hostile x_priv x_log x_safety x_suppress"
[ "$suite" = stress ] && option_programs=$stress_programs

if [ -n "$x_modes" ] && [ "$have_lib" -eq 0 ]; then
    for mode in $x_modes; do
        if [ "$suite" = test ]; then
            fail x_api "$mode" "libshmguard.so not found in $libsrc"
            fail x_leak "$mode" "libshmguard.so not found in $libsrc"
        fi
        for prog in $option_programs; do
            fail "$prog" "$mode" "libshmguard.so not found in $libsrc"
        done
    done
    x_modes=""
fi

# x_api: linked only.
if [ "$suite" = test ] && want_mode linked && [ "$have_lib" -eq 1 ] &&
    ! skipped x_api linked; then
    base="$log/x_api.linked"
    helper_objs x_api
    if build "$bin/x_api.linked" "$log/x_api.linked.compile" "$here/x_api.c" "${objs[@]}" \
        "${linked_args[@]}"; then
        run_one "$base" SHMGUARD_EXPECT=1 -- "$bin/x_api.linked"
        rc=$(cat "$base.rc")
        reason=""
        if [ "$rc" -ne 0 ]; then
            reason=$(describe_rc "$rc")
        elif [ -s "$base.err" ]; then
            reason="unexpected output on stderr"
        fi
        if ! leak_check "$base.before" "$base.leaks"; then
            reason="${reason:+$reason; }leaked segments"
            cat "$base.leaks" >>"$base.err"
        fi
        if [ -n "$reason" ]; then
            fail x_api linked "$reason" "$base.err"
        else
            pass x_api linked
        fi
    else
        fail x_api linked "does not compile" "$log/x_api.linked.compile"
    fi
fi

# Values printed by x_leak on stdout ("KEY VALUE" lines).
field() {
    sed -n "s/^$1 //p" "$2"
}

# count_lines REGEX FILE
count_lines() {
    grep -c -E -- "$1" "$2" || true
}

# check_report ERR PID SEGMENTS ATTACHMENTS: the leak report of PID names
# exactly these segments and attachments, every line has PID's prefix, the
# last line is the SUMMARY. Prints the first problem found.
check_report() {
    local err=$1 pid=$2 segs=$3 atts=$4 n=0 id
    local prefix="==$pid== shmguard: "
    if [ "$(count_lines "^$prefix" "$err")" -ne "$(wc -l <"$err")" ]; then
        echo "a stderr line does not begin with '$prefix'"
        return
    fi
    for id in $segs; do
        n=$((n + 1))
        if [ "$(count_lines "^${prefix}leak: segment shmid=$id([^0-9]|\$)" "$err")" -ne 1 ]; then
            echo "no single leak line for segment shmid=$id"
            return
        fi
    done
    for id in $atts; do
        n=$((n + 1))
        if [ "$(count_lines "^${prefix}leak: attachment shmid=$id([^0-9]|\$)" "$err")" -ne 1 ]; then
            echo "no single leak line for attachment shmid=$id"
            return
        fi
    done
    if [ "$(count_lines "^${prefix}leak: " "$err")" -ne "$n" ]; then
        echo "expected $n leak lines, found $(count_lines "^${prefix}leak: " "$err")"
        return
    fi
    if ! tail -n 1 "$err" | grep -q "^${prefix}SUMMARY: "; then
        echo "the last line is not '${prefix}SUMMARY: ...'"
    fi
}

# wait_gone PID: until the process has ended (10 s at most).
wait_gone() {
    local i=0
    while kill -0 "$1" 2>/dev/null && [ "$i" -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
}

# check_scenario SCENARIO BASE: what the scenario must produce; prints the
# first problem found, nothing if all is well.
check_scenario() {
    local s=$1 base=$2 rc pid err out child
    rc=$(cat "$base.rc")
    out="$base.out"
    err="$base.err"
    pid=$(field pid "$out")
    child=$(field child "$out")
    if [ -n "$child" ]; then
        wait_gone "$child"
    fi
    local want_rc=0
    [ "$s" = exitcode23 ] && want_rc=23
    if [ "$rc" -ne "$want_rc" ]; then
        echo "$(describe_rc "$rc"), expected $want_rc"
        return
    fi
    if [ -z "$pid" ]; then
        echo "no 'pid N' line on stdout"
        return
    fi
    case "$s" in
    leaky | exitcode23 | exitcode_unset)
        check_report "$err" "$pid" "$(field segment "$out")" "$(field attachment "$out")"
        ;;
    child_leak)
        if [ -z "$child" ]; then
            echo "no 'child N' line on stdout"
            return
        fi
        check_report "$err" "$child" "$(field child_segment "$out")" ""
        ;;
    note)
        local seg prefix="==$pid== shmguard: "
        seg=$(field note_segment "$out")
        if [ "$(count_lines "^$prefix" "$err")" -ne "$(wc -l <"$err")" ]; then
            echo "a stderr line does not begin with '$prefix'"
        elif [ "$(count_lines "leak: " "$err")" -ne 0 ]; then
            echo "a leak line for a segment another process still attaches"
        elif [ "$(count_lines "^${prefix}note: .*[^0-9]$seg([^0-9]|\$)" "$err")" -lt 1 ]; then
            echo "no '${prefix}note: ...' line naming shmid $seg"
        fi
        ;;
    unknown_option)
        if [ "$(wc -l <"$err")" -ne 1 ] || [ "$(count_lines bogus "$err")" -ne 1 ]; then
            echo "expected exactly one warning line naming 'bogus' on stderr"
        fi
        ;;
    *)
        if [ -s "$err" ]; then
            echo "unexpected output on stderr"
        fi
        ;;
    esac
}

scenarios="leaky exitcode23 exitcode_unset clean atexit_cleanup dtor_cleanup underscore_exit
raw_removed fork_inherit child_leak note leak_check_off unknown_option count many"

if [ "$suite" = test ] && [ -n "$x_modes" ]; then
    leak_built_plain=0
    leak_built_linked=0
    helper_objs x_leak
    if build "$bin/x_leak.plain" "$log/x_leak.plain.compile" "$here/x_leak.c" "${objs[@]}"; then
        leak_built_plain=1
    fi
    if build "$bin/x_leak.linked" "$log/x_leak.linked.compile" "$here/x_leak.c" "${objs[@]}" \
        "${linked_args[@]}"; then
        leak_built_linked=1
    fi
    for mode in $x_modes; do
        exe="$bin/x_leak.plain"
        ok=$leak_built_plain
        if [ "$mode" = linked ]; then
            exe="$bin/x_leak.linked"
            ok=$leak_built_linked
        fi
        for s in $scenarios; do
            name="x_leak:$s"
            base="$log/x_leak.$s.$mode"
            skipped "$name" "$mode" && continue
            if [ "$ok" -eq 0 ]; then
                fail "$name" "$mode" "does not compile" "$log/x_leak.$mode.compile"
                continue
            fi
            mode_env "$mode"
            arg=$s
            case "$s" in
            exitcode23)
                envs+=(SHMGUARD_OPTIONS=exitcode=23)
                arg=exitcode
                ;;
            exitcode_unset) arg=exitcode ;;
            leak_check_off) envs+=(SHMGUARD_OPTIONS=leak_check=0) ;;
            unknown_option) envs+=(SHMGUARD_OPTIONS=bogus=1) ;;
            esac
            run_one "$base" "${envs[@]}" -- "$exe" "$arg"
            reason=$(check_scenario "$s" "$base")
            # the segments leaked on purpose are ours to remove
            for id in $(field segment "$base.out") $(field child_segment "$base.out") \
                $(field note_segment "$base.out"); do
                ipcrm -m "$id" 2>/dev/null || true
            done
            if ! leak_check "$base.before" "$base.leaks"; then
                reason="${reason:+$reason; }leaked segments"
            fi
            if [ -n "$reason" ]; then
                cat "$base.leaks" >>"$base.err"
                fail "$name" "$mode" "$reason" "$base.err"
            else
                pass "$name" "$mode"
            fi
        done
    done
fi

# ------------------------------------------------------ option programs

# PROGRAM ARGUMENT SHMGUARD_OPTIONS, one run per line ("-": none). The run
# is named PROGRAM:ARGUMENT (PROGRAM alone without an argument). The
# x_stress_* programs and x_hostile take SCENARIO+WORD as SCENARIO (the word
# names the options).
# Keep in step with OPTION_RUNS and STRESS_RUNS in tests/c_suite.rs.
option_runs="x_policy strict policy=strict
x_policy audit -
x_rules strict policy=strict
x_rules audit -
x_help help -
x_help comma -
x_guard - guard_pages=1
x_fault nth fault=shmget@2=ENOSPC
x_fault twice fault=shmget@1=ENOSPC,shmget@3=ENOMEM
x_fault fork fault=shmget@2=ENOSPC
x_fault multi fault=shmat@1=ENOMEM,shmdt@2=EINVAL,shmctl@1=EIDRM,ftok@1=EACCES
x_fault invalid -
x_fault panic -
x_stacks - stacks=1
x_guardstack - guard_pages=1:stacks=1
x_stress_churn churn -
x_stress_churn churn_log -
x_stress_signals signals -
x_stress_signals signals_log -
x_stress_signals signals_fork -
x_stress_exec exec_log -
x_stress_threads reuse+stacks stacks=1
x_stress_threads fork_busy+stacks stacks=1
x_hostile late_calls -
x_hostile late_log -
x_hostile close_fds -
x_hostile close_all -
x_hostile dup2_fds -
x_hostile privdrop -
x_hostile log_unwritable -
x_hostile max_map -
x_hostile max_map+guard guard_pages=1
x_hostile options -
x_priv secure -
x_priv preinit policy=strict
x_priv fork_startup bogus=1
x_priv signal_startup bogus=1
x_priv escape -
x_priv seccomp -
x_log outside -
x_log pidns -
x_log forkraw -
x_log exec_chain -
x_log fsize -
x_log taken -
x_log aslimit -
x_log ext2 -
x_safety segv_raise guard_pages=1
x_safety segv_kill guard_pages=1
x_safety segv_siginfo guard_pages=1
x_safety segv_ign guard_pages=1
x_safety ext_in_handler -
x_safety guard_unmapped guard_pages=1
x_safety guard_map_count guard_pages=1
x_safety raw_fork -
x_suppress match -
x_suppress command -
x_suppress badline -
x_suppress fifo -"

# The long runs (SHMGUARD_SUITE=stress): every stress scenario with the
# default options, the log, guard pages and call stacks.
stress_runs="x_stress_churn churn -
x_stress_churn churn_log -
x_stress_churn churn+guard guard_pages=1
x_stress_churn churn+stacks stacks=1
x_stress_signals signals -
x_stress_signals signals_log -
x_stress_signals signals+guard guard_pages=1
x_stress_signals signals_fork -
x_stress_threads reuse -
x_stress_threads reuse+stacks stacks=1
x_stress_threads fork_busy -
x_stress_threads fork_busy+stacks stacks=1"
[ "$suite" = stress ] && option_runs=$stress_runs

# option_flags PROGRAM: sets the array oflags to the flags PROGRAM needs
# after the suite's own (x_stacks checks file:line of its frames).
option_flags() {
    oflags=()
    if [ "$1" = x_stacks ] || [ "$1" = x_guardstack ] || [ "$1" = x_suppress ]; then
        oflags=(-O0 -g)
    fi
}

if [ -n "$x_modes" ]; then
    for prog in $option_programs; do
        option_flags "$prog"
        helper_objs "$prog"
        if ! build "$bin/$prog.plain" "$log/$prog.plain.compile" "$here/$prog.c" "${objs[@]}" \
            "${oflags[@]}"; then
            rm -f "$bin/$prog.plain"
        fi
        if ! build "$bin/$prog.linked" "$log/$prog.linked.compile" "$here/$prog.c" "${objs[@]}" \
            "${linked_args[@]}" "${oflags[@]}"; then
            rm -f "$bin/$prog.linked"
        fi
    done
    for mode in $x_modes; do
        while read -r prog arg opts; do
            name=$prog
            base="$log/$prog.$mode"
            if [ "$arg" != - ]; then
                name="$prog:$arg"
                base="$log/$prog.$arg.$mode"
            fi
            skipped "$name" "$mode" && continue
            exe="$bin/$prog.plain"
            [ "$mode" = linked ] && exe="$bin/$prog.linked"
            if [ ! -x "$exe" ]; then
                fail "$name" "$mode" "does not compile" "$log/$(basename "$exe").compile"
                continue
            fi
            mode_env "$mode"
            [ "$opts" != - ] && envs+=("SHMGUARD_OPTIONS=$opts")
            args=()
            [ "$arg" != - ] && args=("$arg")
            run_one "$base" "${envs[@]}" -- "$exe" "${args[@]}"
            rc=$(cat "$base.rc")
            reason=""
            if [ "$rc" -ne 0 ]; then
                reason=$(describe_rc "$rc")
            elif [ -s "$base.err" ]; then
                reason="unexpected output on stderr"
            fi
            if ! leak_check "$base.before" "$base.leaks"; then
                reason="${reason:+$reason; }leaked segments"
                cat "$base.leaks" >>"$base.err"
            fi
            if [ -n "$reason" ]; then
                fail "$name" "$mode" "$reason" "$base.err"
            else
                pass "$name" "$mode"
            fi
        done <<<"$option_runs"
    done
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
