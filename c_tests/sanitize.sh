#!/usr/bin/env bash
# c_tests/sanitize.sh asan|valgrind LIBDIR OUTDIR: the whole C suite (t_*
# and x_* programs, c_tests/run.sh) under a memory checker.
#
#   asan      every program built with -fsanitize=address,undefined
#             -fno-omit-frame-pointer and run plain, linked (the compiler
#             driver puts libasan first in the link) and preloaded with
#             LD_PRELOAD=libasan.so:libshmguard.so (ASan must come first).
#             ASan or UBSan finding anything aborts the program: its run
#             fails, with the report in its stderr.
#   valgrind  the plain (reference) and linked programs run under
#             valgrind --error-exitcode=1 --leak-check=full
#             --errors-for-leak-kinds=definite --trace-children=yes (the
#             programs fork and exec themselves). Valgrind writes to
#             OUTDIR/valgrind/RUN.PID.xml, not to the program's stderr. A
#             run passes if memcheck found no error in any of its processes
#             and it did not time out (valgrind changes what shmat does, so
#             the suite's own verdicts are only notes here). Runs that cannot
#             work under valgrind are skipped (SHMGUARD_SKIP, reasons below),
#             and a probe checks that a program with log_path can exit under
#             memcheck at all.
#
# Both run the short stress phases (SHMGUARD_STRESS_SECONDS, default 1)
# with the suite's deadlock timeouts scaled (SHMGUARD_TIMEOUT_SCALE) and a
# longer per-program timeout (SHMGUARD_TEST_TIMEOUT) unless set. The last
# line is "N passed, N failed"; the status is 0 only if nothing failed.
set -eu

if [ "$#" -ne 3 ] || { [ "$1" != asan ] && [ "$1" != valgrind ]; }; then
    echo "usage: $0 asan|valgrind LIBDIR OUTDIR" >&2
    exit 2
fi
tool=$1
here=$(cd "$(dirname "$0")" && pwd)
libdir=$2
mkdir -p "$3"
out=$(cd "$3" && pwd)
cc=${CC:-cc}
export SHMGUARD_STRESS_SECONDS=${SHMGUARD_STRESS_SECONDS:-1}

case "$tool" in
asan)
    libasan=$("$cc" -print-file-name=libasan.so)
    if [ ! -e "$libasan" ]; then
        echo "$0: $cc has no libasan.so (Debian: apt-get install libasan8)" >&2
        exit 2
    fi
    libasan=$(readlink -f "$libasan")
    # detect_leaks: LeakSanitizer at every exit. abort_on_error: a finding
    # kills the program (SIGABRT) instead of exiting with a code that a
    # child's parent might not look at. handle_segv=0: the suite makes
    # deliberate faults (guard pages, EFAULT probes in children) that must
    # end in SIGSEGV as they do without ASan; wild accesses still crash.
    # allocator_may_return_null=1: malloc returns NULL when the address
    # space is used up (x_hostile max_map), as glibc's does, instead of
    # aborting.
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:handle_segv=0:allocator_may_return_null=1
    export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
    export CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer ${CFLAGS:-}"
    export SHMGUARD_PRELOAD_FIRST=$libasan
    # x_guard compares the number of lines of /proc/self/maps before and
    # after calls; ASan's allocator maps a new region the first time each
    # size class is used, so those counts move under ASan for no fault of
    # shmguard's; so do x_safety's guard_unmapped and guard_map_count
    # (which also compares how many attachments fit in the last free map
    # entries). Everything else runs.
    export SHMGUARD_SKIP=${SHMGUARD_SKIP-x_guard x_safety:guard_unmapped x_safety:guard_map_count}
    export SHMGUARD_TIMEOUT_SCALE=${SHMGUARD_TIMEOUT_SCALE:-3}
    export SHMGUARD_TEST_TIMEOUT=${SHMGUARD_TEST_TIMEOUT:-180}
    exec "$here/run.sh" "$libdir" "$out"
    ;;
valgrind)
    if ! command -v valgrind >/dev/null; then
        echo "$0: valgrind is not installed (Debian: apt-get install valgrind)" >&2
        exit 2
    fi
    vglogs="$out/valgrind"
    rm -rf "$vglogs"
    mkdir -p "$vglogs"
    supp="$out/valgrind.supp"
    {
        # Not shmguard's errors: the suite's own deliberate ones. The
        # differential tests pass invalid pointers on purpose, to compare
        # shmguard's EFAULT with the kernel's (shmguard hands the pointer to
        # the kernel unread): t_shmctl.c diff_fail, x_api.c case_mirrors,
        # x_policy.c case_ipc_set,
        # t_ftok.c ftok_case and key_by_hand, x_priv.c scenario_seccomp
        # (an unmapped path that a seccomp filter answers for the kernel).
        # Valgrind matches the parameter's name exactly, hence one entry per
        # name.
        for param in "shmctl(IPC_STAT, arg.buf)" "shmctl(IPC_SET, arg.buf)" \
            "shmctl(SHM_STAT, arg.buf)" "shmctl(SHM_STAT_ANY, arg.buf)" \
            "shmctl(IPC_INFO, buf)" "shmctl(SHM_INFO, buf)"; do
            for fn in diff_fail case_mirrors case_ipc_set; do
                printf '{\n   efault-probe\n   Memcheck:Param\n   %s\n   ...\n   fun:%s\n}\n' \
                    "$param" "$fn"
            done
        done
        for fn in ftok_case key_by_hand scenario_seccomp; do
            printf '{\n   efault-probe\n   Memcheck:Param\n   fstatat(file_name)\n   ...\n   fun:%s\n}\n' "$fn"
        done
        # x_guard.c fault_case_of touches a guard page on purpose, in a child
        # that must then die by SIGSEGV.
        printf '{\n   guard-page-hit\n   Memcheck:Addr1\n   fun:fault_case_of\n}\n'
        # So does x_guardstack.c's child.
        printf '{\n   guard-page-hit\n   Memcheck:Addr1\n   fun:guardstack_child\n}\n'
        # x_safety.c faults on a no-access page of its own on purpose: a
        # child that must die by SIGSEGV, and one whose handler recovers.
        for fn in scenario_ign_child scenario_siginfo_child; do
            printf '{\n   deliberate-fault\n   Memcheck:Addr1\n   fun:%s\n}\n' "$fn"
        done
    } >"$supp"
    # Errors are counted in XML (<error>: what --error-exitcode counts,
    # without the notes on processes that die by a signal on purpose), one
    # file per process, named after the run (run.sh sets SHMGUARD_RUN).
    # --fair-sched=yes: valgrind runs one thread at a time under a lock that
    # is unfair by default; t_threads' three threads calling shm functions
    # in a loop then starved its main thread for good (seen: 10 minutes of
    # CPU without one fork, in the plain reference run).
    vg=(valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite
        --show-leak-kinds=definite --trace-children=yes --fair-sched=yes --suppressions="$supp"
        --xml=yes "--xml-file=$vglogs/%q{SHMGUARD_RUN}.%p.xml"
        "--log-file=$vglogs/%q{SHMGUARD_RUN}.%p.log")
    export SHMGUARD_WRAPPER="${vg[*]}"
    export SHMGUARD_MODES=${SHMGUARD_MODES:-plain linked}
    export SHMGUARD_TIMEOUT_SCALE=${SHMGUARD_TIMEOUT_SCALE:-20}
    export SHMGUARD_TEST_TIMEOUT=${SHMGUARD_TEST_TIMEOUT:-900}
    # Runs that cannot work under valgrind:
    # - x_hostile max_map, x_safety guard_map_count and x_leak many (60,000
    #   attachments): valgrind's own address-space manager has a fixed table
    #   of segments and aborts long before vm.max_map_count; x_safety
    #   guard_unmapped counts the lines of /proc/self/maps, which valgrind's
    #   emulation of shmat and munmap does not keep as the kernel does.
    # - x_hostile privdrop: once the process is nobody, valgrind cannot write
    #   its logs in this directory.
    # - x_priv secure: the same, and valgrind (which --trace-children runs
    #   on the set-user-ID copy) is not set-user-ID itself: the copy would
    #   not run privileged.
    # - x_log ext2: it runs mount(8), which --trace-children cannot start
    #   (valgrind refuses setuid programs: "Permission denied").
    export SHMGUARD_SKIP=${SHMGUARD_SKIP-x_leak:many x_hostile:max_map x_hostile:max_map+guard x_hostile:privdrop x_priv:secure x_log:ext2 x_safety:guard_map_count x_safety:guard_unmapped}
    set +e
    "$here/run.sh" "$libdir" "$out" >"$out/run.txt" 2>&1
    set -e

    # The verdict is memcheck's. The suite's own checks ran too, but
    # valgrind emulates shmat (it picks the address itself, answers some
    # requests with its own errno, lets a read of a guard page through) and
    # cannot exec /proc/self/exe: where they fail, that is listed as a note.
    passed=0
    failed=0
    notes=()
    # errors_of RUN: memcheck's errors in the processes of RUN, shown.
    errors_of() {
        local f n total=0
        for f in "$vglogs/$1".*.xml; do
            [ -e "$f" ] || continue
            n=$(grep -c "<error>" "$f" || true)
            [ "$n" -gt 0 ] || continue
            total=$((total + n))
            echo "    $n in $(basename "$f"):"
            awk '/<error>/ { frames = 0 }
                /<what>|<text>/ { gsub(/^ *<[a-z]+>|<\/[a-z]+> *$/, ""); print "      " $0 }
                /<fn>/ { gsub(/^ *<fn>|<\/fn> *$/, ""); fn = $0 }
                /<line>/ { gsub(/^ *<line>|<\/line> *$/, ""); if (frames++ < 8) print "        at " fn ":" $0 }' \
                "$f" | head -n 40
        done
        return "$total"
    }
    for rcfile in "$out"/log/*.rc; do
        [ -e "$rcfile" ] || continue
        run=$(basename "$rcfile" .rc)
        rc=$(cat "$rcfile")
        set +e
        shown=$(errors_of "$run")
        n=$?
        set -e
        if [ "$n" -ne 0 ]; then
            echo "FAIL $run: memcheck errors"
            echo "$shown"
            failed=$((failed + 1))
        elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
            echo "FAIL $run: timed out under valgrind"
            failed=$((failed + 1))
        else
            echo "PASS $run"
            passed=$((passed + 1))
        fi
    done
    # run.sh's own failures, "FAIL name mode: ...", as RUN names
    while read -r _ name mode _; do
        notes+=("$(echo "$name.${mode%:}" | tr ':' '.')")
    done < <(grep '^FAIL ' "$out/run.txt" || true)
    grep '^SKIP ' "$out/run.txt" || true
    if [ "${#notes[@]}" -ne 0 ]; then
        echo "note: the suite's own checks failed under valgrind in: ${notes[*]}"
        echo "note: see $out/run.txt and $out/log/RUN.err"
    fi

    # The probe: a short program with log_path must exit under memcheck (it
    # removes its segments before exit, so a kill leaves nothing behind).
    probe_dir="$out/probe"
    rm -rf "$probe_dir"
    mkdir -p "$probe_dir"
    probe_rc=0
    timeout -k 5 120 env SHMGUARD_EXPECT=1 SHMGUARD_RUN=probe \
        "SHMGUARD_OPTIONS=log_path=$probe_dir/l.%p.jsonl" \
        "${vg[@]}" "$out/bin/x_hostile.linked" workload >"$probe_dir/out" 2>"$probe_dir/err" ||
        probe_rc=$?
    if [ "$probe_rc" -eq 0 ]; then
        echo "PASS valgrind:log_exit"
        passed=$((passed + 1))
    else
        echo "FAIL valgrind:log_exit: a program with log_path set did not finish under" \
            "memcheck's leak check (status $probe_rc; 124 or 137: still running after 120 s)"
        failed=$((failed + 1))
    fi
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    ;;
esac
