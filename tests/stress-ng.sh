#!/usr/bin/env bash
# make test-stress-ng: Debian's stress-ng, System V shared-memory stressor
# (--shm-sysv), with and without shmguard.
#
#   tests/stress-ng.sh LIBDIR      (e.g. target/release: libshmguard.so, shmguard)
#
# Runs the same stress-ng command twice, each in an IPC namespace of its own
# (unshare --ipc; without it, the machine's namespace, with a note), so the
# kernel's segment table holds only that run's segments:
#   plain     stress-ng alone: the reference
#   shmguard  shmguard run --log-dir DIR --fail-on-leak --per-process -- stress-ng ...
# and checks: both exit 0 with stress-ng's success line and the same outcome
# (same stressors dispatched, every instance ended cleanly, no failure line);
# the audit logs exist, every line is JSON, and they hold shmget, shmat, shmdt
# and shmctl calls; and shmguard's account of leaks is the kernel's: the
# segments left in the shmguard run's namespace (ipcs -m, read inside it
# before it ends) are exactly those the report lists as leaked and those the
# logs show created and never removed, and shmguard run exits 1
# (--fail-on-leak) exactly when there are any. stress-ng itself leaks now and
# then: a worker killed at the timeout between its shmget and handing the id
# to its parent leaves the segment behind, with or without shmguard; the
# plain run's leftovers are printed, not failed. Prints stress-ng's
# bogo-ops/s with and without shmguard and their ratio (no threshold).
#
# Installs stress-ng with apt-get when missing (needs root). Always cleans up
# (temporary directory, segments). Prints "ok - ..." / "not ok - ..." lines
# and "N passed, N failed"; exits 0 only if none failed.
#
# Environment: STRESS_NG_SECONDS (each run's --timeout, default 5).
set -uo pipefail

# stress-ng's own limit for each run, and a hard limit on top of it.
SECS=${STRESS_NG_SECONDS:-5}
HARD_LIMIT=$((SECS + 30))

# ---- Inside a namespace (the script runs itself here through unshare):
#   stress-ng.sh --in-namespace private|shared OUT -- CMD [ARGS...]
# Runs CMD (output to OUT.log, status to OUT.status), then, before the
# namespace can end, records `ipcs -m` (OUT.ipcs) and the segments the run
# left (OUT.left: shmid cpid size nattch), and removes them. In the machine's
# namespace ("shared") only new segments created by a pid allocated during
# the run, by this user, count; and only unattached ones whose creator is
# gone are removed.
if [ "${1:-}" = --in-namespace ]; then
    mode=$2
    out=$3
    shift 4
    last_pid() { awk '{ print $5 }' /proc/loadavg; }
    awk 'NR > 1 { print $2, $5 }' /proc/sysvipc/shm >"$out.before"
    pid_lo=$(last_pid)
    timeout -k 5 "$HARD_LIMIT" "$@" >"$out.log" 2>&1 </dev/null &
    child=$!
    # Pass a stop request on to the run (timeout sends it to the whole
    # process group of the command), record and clean up, and only then
    # die of the signal, so that the calling script stops too.
    caught=
    for sig in INT TERM HUP; do
        # shellcheck disable=SC2064 # $sig now, $child when it runs
        trap "caught=$sig; kill -TERM \"\$child\" 2>/dev/null" "$sig"
    done
    while :; do
        wait "$child"
        status=$?
        kill -0 "$child" 2>/dev/null || break
    done
    trap - INT TERM HUP
    echo "$status" >"$out.status"
    pid_hi=$(last_pid)
    ipcs -m >"$out.ipcs" 2>&1
    awk -v mode="$mode" -v lo="$pid_lo" -v hi="$pid_hi" -v uid="$(id -u)" '
        FILENAME == ARGV[1] { before[$1 " " $2] = 1; next }
        FNR == 1 { next }
        {
            if (mode == "shared") {
                if (($2 " " $5) in before || $10 != uid) next
                # A pid allocated during the run (pids wrap at pid_max).
                if (lo <= hi ? !($5 > lo && $5 <= hi) : !($5 > lo || $5 <= hi)) next
            }
            print $2, $5, $4, $7
        }' "$out.before" /proc/sysvipc/shm >"$out.left"
    while read -r shmid cpid _ nattch; do
        if [ "$mode" = private ] || { [ "$nattch" = 0 ] && [ ! -d "/proc/$cpid" ]; }; then
            ipcrm -m "$shmid" 2>/dev/null
        fi
    done <"$out.left"
    if [ -n "$caught" ]; then
        kill -s "$caught" "$$"
    fi
    exit "$status"
fi

if [ $# -ne 1 ]; then
    echo "usage: $0 LIBDIR (the directory holding libshmguard.so and shmguard)" >&2
    exit 2
fi
START=$SECONDS
SELF=$(realpath "$0")
BIN=$(realpath "$1")
SHMGUARD=$BIN/shmguard
LIB=$BIN/libshmguard.so
if [ ! -x "$SHMGUARD" ] || [ ! -f "$LIB" ]; then
    echo "$0: $SHMGUARD or $LIB is missing: build first (make build)" >&2
    exit 2
fi
# Both runs see the same environment: nothing preloaded, default options.
unset LD_PRELOAD SHMGUARD_OPTIONS SHMGUARD_LIB

# shellcheck source=tests/checks.sh
. "$(dirname "$SELF")/checks.sh"
finish() {
    echo "# time: $((SECONDS - START)) s"
    echo "$passed passed, $failed failed"
    [ "$failed" = 0 ]
    exit
}

T=$(mktemp -d "${TMPDIR:-/tmp}/shmguard-stress-ng.XXXXXX")
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() { rm -rf "$T"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- stress-ng, from Debian.
if ! command -v stress-ng >/dev/null; then
    echo "# installing stress-ng (apt-get) ..."
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q stress-ng >"$T/apt.log" 2>&1; then
        apt-get update -q >>"$T/apt.log" 2>&1
        apt-get install -y -q stress-ng >>"$T/apt.log" 2>&1
    fi
fi
if ! command -v stress-ng >/dev/null; then
    not_ok "stress-ng is installed (apt-get install stress-ng)" "$T/apt.log"
    finish
fi
VERSION=$(stress-ng --version 2>&1 | head -n 1)
echo "# $VERSION; shmguard: $SHMGUARD"

# ---- The namespace each run gets.
if unshare --ipc true 2>/dev/null; then
    IN_NS=(unshare --ipc -- "$SELF" --in-namespace private)
    echo "# each run in an IPC namespace of its own (unshare --ipc)"
else
    IN_NS=("$SELF" --in-namespace shared)
    echo "# note: cannot make an IPC namespace (unshare --ipc: not root?); both runs share"
    echo "# the machine's, where segments other programs create during a run can be"
    echo "# counted as the run's (and as leaks by shmguard run)"
fi

# The workload: 2 workers, 1 MiB segments, 4 per iteration. --verbose adds the
# per-instance lines ("process [PID] terminated") that say which instances
# ended cleanly, and the metrics sanity check.
STRESS=(stress-ng --shm-sysv 2 --shm-sysv-bytes 1M --shm-sysv-segs 4 --timeout "${SECS}s"
    --metrics-brief --verbose --temp-path "$T/work")
mkdir -p "$T/work"
cd "$T/work" || exit 1

# ---- 1. Plain.
"${IN_NS[@]}" "$T/plain" -- "${STRESS[@]}"
plain_status=$?
# ---- 2. Under shmguard run.
# --per-process: the processes' own exit reports are checked below too.
"${IN_NS[@]}" "$T/guard" -- "$SHMGUARD" run --lib "$LIB" --log-dir "$T/logs" --fail-on-leak \
    --per-process --json "$T/report.json" -- "${STRESS[@]}"
guard_status=$?

# ---- stress-ng's outcome, as key=value lines.
outcome() { # OUT
    local log=$1.log
    echo "success=$(grep -c 'successful run completed' "$log")"
    echo "dispatched=$(sed -n 's/.*dispatching hogs: *//p' "$log" | head -n 1)"
    # Instances that ended cleanly (stress-ng 0.15: one debug line each;
    # later versions also print "passed: N: ..."), and anything that says
    # otherwise.
    local passed
    passed=$(sed -n 's/.* passed: \([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
    echo "passed=${passed:-$(grep -cE 'process \[[0-9]+\] terminated$' "$log")}"
    echo "failed=$(grep -ciE ' fail: |terminated with an error|terminated on signal|unsuccessful run|untrustworthy' "$log")"
    echo "sane=$(grep -c 'metrics validated and sane' "$log")"
    # --metrics-brief: stressor, bogo ops, real, usr, sys, ops/s (real), ops/s (usr+sys).
    awk '$2 == "metrc:" && $4 == "shm-sysv" && NF == 10 && $5 ~ /^[0-9]+$/ {
        print "ops=" $5; print "ops_real=" $9; print "ops_cpu=" $10; exit }' "$log"
}
declare -A P G
while IFS='=' read -r k v; do P[$k]=$v; done < <(outcome "$T/plain")
while IFS='=' read -r k v; do G[$k]=$v; done < <(outcome "$T/guard")

# ---- shmguard's JSON report, as key=value lines (and the parts worth showing).
# shellcheck disable=SC2016 # Python source, not shell.
PY_REPORT='
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception as e:
    print("error=" + str(e).replace("\n", " "))
    sys.exit(0)
s = r.get("summary", {})
print("leaks=%s" % s.get("leaks"))
print("leaked_ids=" + " ".join(str(x) for x in sorted(g.get("shmid") for g in r.get("leaked_segments") or [])))
print("other=%d" % sum(len(r.get(k) or []) for k in ("leaked_attachments", "notes")))
print("processes=%s" % s.get("processes_logged"))
print("calls=%d" % sum(p.get("calls", 0) for p in r.get("processes", [])))
print("failed_calls=%s" % s.get("failed_calls"))
print("findings=%s" % s.get("findings"))
print("warnings=%d" % len(r.get("warnings") or []))
with open(sys.argv[2], "w") as out:
    for k in ("run", "summary", "leaked_segments", "leaked_attachments", "notes", "warnings", "unlogged"):
        out.write("%s: %s\n" % (k, json.dumps(r.get(k))[:2000]))
'
declare -A R
while IFS='=' read -r k v; do R[$k]=$v; done < <(python3 -c "$PY_REPORT" "$T/report.json" "$T/report.txt")

check "plain: stress-ng exits 0 ($plain_status)" test "$plain_status" = 0 -- "$T/plain.log"
check "plain: stress-ng's success line" test "${P[success]}" = 1 -- "$T/plain.log"
# What each run left in the kernel: "shmid(size)" each, and the shmids alone.
left() { awk '{ printf "%s%s(%s)", sep, $1, $3; sep = " " }' "$1.left" 2>/dev/null; }
left_ids() { awk '{ print $1 }' "$1.left" 2>/dev/null | sort -n | paste -sd ' '; }
GUARD_LEFT=$(left_ids "$T/guard")
# --fail-on-leak: 1 exactly when the tree left a segment (stress-ng exits 0).
expected_status=0
[ -n "$GUARD_LEFT" ] && expected_status=1
check "shmguard: shmguard run exits $expected_status: stress-ng's status, or 1 for a leak (${GUARD_LEFT:+segments left: $GUARD_LEFT; }status $guard_status)" \
    test "$guard_status" = "$expected_status" -- "$T/guard.log" "$T/report.txt"
check "shmguard: stress-ng's success line" test "${G[success]}" = 1 -- "$T/guard.log"
# shellcheck disable=SC2317 # called through check
same_outcome() {
    [ -n "${P[dispatched]}" ] && [ "${P[dispatched]}" = "${G[dispatched]}" ] &&
        [ "${P[passed]}" = 2 ] && [ "${G[passed]}" = "${P[passed]}" ] &&
        [ "${P[failed]}" = 0 ] && [ "${G[failed]}" = 0 ] &&
        [ "${G[sane]}" = "${P[sane]}" ]
}
check "same outcome: dispatched '${P[dispatched]}' / '${G[dispatched]}', instances passed ${P[passed]} / ${G[passed]}, failure lines ${P[failed]} / ${G[failed]}, metrics sane ${P[sane]} / ${G[sane]}" \
    same_outcome -- "$T/plain.log" "$T/guard.log"
check "both runs did work: bogo ops ${P[ops]:-none} / ${G[ops]:-none}" \
    test "${P[ops]:-0}" -gt 0 -a "${G[ops]:-0}" -gt 0 -- "$T/plain.log" "$T/guard.log"

# ---- shmguard's report and the library's own per-process reports.
check "shmguard: the report reads (${R[error]:-JSON})" test -z "${R[error]:-}" -- "$T/report.json"
check "shmguard: the report's leaked segments are those left in the kernel (report: ${R[leaked_ids]:-none}; kernel: ${GUARD_LEFT:-none})" \
    test "${R[leaked_ids]-x}" = "$GUARD_LEFT" -a -f "$T/guard.left" -- "$T/report.txt" "$T/guard.ipcs"
check "shmguard: the report lists no leaked attachment or note (${R[other]:-?})" \
    test "${R[other]:-x}" = 0 -- "$T/report.txt"
check "shmguard: the report has no warnings (${R[warnings]:-?}: unreadable log lines, other namespaces)" \
    test "${R[warnings]:-x}" = 0 -- "$T/report.txt"
# A process's own exit report may name a segment it created and never
# removed, but only one that is really left behind.
lib_ids=$(sed -n 's/^==[0-9]*== shmguard: leak: segment shmid=\([0-9]*\) .*/\1/p' "$T/guard.log")
lib_false=$(for id in $lib_ids; do
    case " $GUARD_LEFT " in *" $id "*) ;; *) printf '%s ' "$id" ;; esac
done)
lib_att=$(grep -cE '^==[0-9]+== shmguard: leak: attachment' "$T/guard.log")
check "shmguard: processes' own leak reports name only segments left in the kernel (false: ${lib_false:-none}; attachments: $lib_att)" \
    test -z "$lib_false" -a "$lib_att" = 0 -- "$T/guard.log"

# ---- The audit logs.
# shellcheck disable=SC2016 # Python source, not shell.
PY_LOGS='
import collections, glob, json, os, sys
files = sorted(glob.glob(os.path.join(sys.argv[1], "*.jsonl")))
lines = 0
bad = []
calls = collections.Counter()
good = collections.Counter()
created = collections.Counter()
removed = collections.Counter()
starts = 0
for f in files:
    with open(f, "rb") as fh:
        data = fh.read().replace(b"\0", b"")
    for n, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        lines += 1
        try:
            e = json.loads(raw.decode("utf-8"))
            if not isinstance(e, dict):
                raise ValueError("not an object")
        except Exception as x:
            bad.append("%s:%d: %s: %r" % (os.path.basename(f), n, x, raw[:120]))
            continue
        if e.get("event") == "start":
            starts += 1
        if e.get("event") != "call":
            continue
        c = e.get("call")
        calls[c] += 1
        if e.get("errno") is None:
            good[c] += 1
            if c == "shmget" and e.get("created"):
                created[e.get("ret")] += 1
            if c == "shmctl" and (e.get("args") or {}).get("cmd") == "IPC_RMID":
                removed[e.get("args", {}).get("shmid")] += 1
print("files=%d" % len(files))
print("starts=%d" % starts)
print("lines=%d" % lines)
print("bad=%d" % len(bad))
for b in bad[:5]:
    print("bad_line=" + b)
print("total=%d" % sum(calls.values()))
for c in ("shmget", "shmat", "shmdt", "shmctl", "ftok"):
    print("calls_%s=%d" % (c, calls[c]))
    print("ok_%s=%d" % (c, good[c]))
print("created=%d" % sum(created.values()))
print("rmid=%d" % sum(removed.values()))
# Each creation of a shmid needs a removal of it (shmids may be reused).
missing = sorted(i for i in created if removed[i] < created[i])
print("unremoved=%d" % len(missing))
print("unremoved_ids=" + " ".join(str(i) for i in missing))
'
declare -A L
while IFS='=' read -r k v; do
    if [ "$k" = bad_line ]; then echo "# bad log line: $v" >>"$T/bad-lines"; else L[$k]=$v; fi
done < <(python3 -c "$PY_LOGS" "$T/logs")
check "shmguard: logs exist, one per process that made a shm call (${L[files]:-0} files, ${L[starts]:-0} start events, report: ${R[processes]:-?} processes)" \
    test "${L[files]:-0}" -gt 0 -a "${L[starts]:-0}" = "${L[files]:-0}" -a "${R[processes]:-x}" = "${L[files]:-0}" \
    -- "$T/report.txt"
check "shmguard: every log line is JSON (${L[lines]:-0} lines, ${L[bad]:-?} not)" \
    test "${L[lines]:-0}" -gt 0 -a "${L[bad]:-x}" = 0 -- "$T/bad-lines"
for c in shmget shmat shmdt shmctl; do
    check "shmguard: the logs hold $c calls (${L[calls_$c]:-0}, ${L[ok_$c]:-0} succeeded)" \
        test "${L[ok_$c]:-0}" -gt 0
done
check "shmguard: the report counts every logged call (logs ${L[total]:-?}, report ${R[calls]:-?})" \
    test "${L[total]:-x}" = "${R[calls]:-y}" -- "$T/report.txt"
check "shmguard: the segments created and never removed in the logs are those left in the kernel (${L[created]:-0} created, ${L[rmid]:-0} IPC_RMID; logs: ${L[unremoved_ids]:-none}; kernel: ${GUARD_LEFT:-none})" \
    test "${L[created]:-0}" -gt 0 -a "${L[unremoved_ids]-x}" = "$GUARD_LEFT"

# ---- stress-ng's own leftovers (informational: see the top).
plain_left=$(left "$T/plain")
check "plain: the segments left in its namespace were recorded" test -f "$T/plain.left" -- "$T/plain.ipcs"
if [ -n "$plain_left" ]; then
    echo "# plain: stress-ng itself left $plain_left (a worker killed at its timeout; removed)"
fi
if [ -n "$GUARD_LEFT" ]; then
    echo "# shmguard: stress-ng left $(left "$T/guard") in this run too; shmguard reported it (removed)"
fi

# ---- The overhead (informational: the machine may be busy).
ratio() { # WITH WITHOUT
    awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "n/a" }'
}
echo "# bogo-ops/s (real time): plain ${P[ops_real]:-n/a}, shmguard ${G[ops_real]:-n/a}: ratio $(ratio "${G[ops_real]:-0}" "${P[ops_real]:-0}")"
echo "# bogo-ops/s (usr+sys):   plain ${P[ops_cpu]:-n/a}, shmguard ${G[ops_cpu]:-n/a}: ratio $(ratio "${G[ops_cpu]:-0}" "${P[ops_cpu]:-0}")"
echo "# shmguard saw ${L[total]:-?} calls (${R[failed_calls]:-?} failed, stress-ng tries invalid ones on purpose), ${R[findings]:-?} policy findings, ${R[processes]:-?} processes"
finish
