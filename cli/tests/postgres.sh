#!/usr/bin/env bash
# make test-postgres: PostgreSQL with System V shared memory
# (shared_memory_type = sysv, dynamic_shared_memory_type = sysv) under
# `shmguard run`, compared with the same workload without shmguard.
#
#   cli/tests/postgres.sh TARGETDIR      (e.g. target/release)
#
# Needs root: installs Debian's postgresql when initdb is missing, and runs
# the servers as user postgres in a fresh directory under $TMPDIR, on a Unix
# socket there (listen_addresses = ''). The server runs in the foreground
# under `shmguard run` (pg_ctl would daemonize it out of the audited tree),
# is driven with pgbench and psql from outside, and is stopped with SIGINT
# sent to shmguard, which passes it on. Always cleans up: stops the servers,
# removes the directory and any segment they left. Ends with
# "N passed, N failed"; exits 0 only if all passed.
set -uo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 TARGETDIR (the directory holding shmguard and libshmguard.so)" >&2
    exit 2
fi
BIN=$(realpath "$1")
SHMGUARD=$BIN/shmguard
LIB=$BIN/libshmguard.so
if [ ! -x "$SHMGUARD" ] || [ ! -f "$LIB" ]; then
    echo "$0: $SHMGUARD or $LIB is missing: build first (make)" >&2
    exit 2
fi
if [ "$(id -u)" != 0 ]; then
    echo "$0: needs root (installs postgresql, runs it as user postgres)" >&2
    exit 2
fi

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
PGBIN=$(pg_bin)
need=()
{ [ -n "$PGBIN" ] && [ -x "$PGBIN/initdb" ]; } || need+=(postgresql)
command -v jq >/dev/null || need+=(jq)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]} (apt-get) ..."
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -q && apt-get install -y -q "${need[@]}"; } >/tmp/shmguard-pg-apt.log 2>&1; then
        echo "$0: cannot install ${need[*]} (see /tmp/shmguard-pg-apt.log)" >&2
        exit 1
    fi
    PGBIN=$(pg_bin)
fi
USER_PG=postgres
if ! id "$USER_PG" >/dev/null 2>&1; then
    echo "$0: no user $USER_PG (the postgresql package creates it)" >&2
    exit 1
fi
# The rest runs in an IPC namespace of its own: nothing else on the
# machine can see or remove the servers' segments (test runners that remove
# "new segments whose creator is gone" would take PostgreSQL's pinned
# dynamic shared memory), and no other program's segments enter the
# comparison of the kernel's table before and after. The kernel frees the
# namespace, and anything left in it, when the last server process is gone.
if [ -z "${SHMGUARD_PG_NAMESPACE:-}" ]; then
    if unshare --ipc true 2>/dev/null; then
        SHMGUARD_PG_NAMESPACE=private exec unshare --ipc -- "$0" "$@"
    fi
    echo "note: cannot make an IPC namespace (unshare --ipc); sharing the machine's"
    SHMGUARD_PG_NAMESPACE=shared
fi
echo "PostgreSQL: $("$PGBIN/postgres" --version); shmguard: $SHMGUARD; IPC namespace: $SHMGUARD_PG_NAMESPACE"

PORT=54329
T=$(mktemp -d "${TMPDIR:-/tmp}/shmguard-pg.XXXXXX")
chown "$USER_PG:" "$T"
chmod 0755 "$T"
mkdir -p "$T/sock" && chown "$USER_PG:" "$T/sock"
# The postgres user runs shmguard and loads the library: copies it can
# reach, since the checkout may sit in a directory only root may enter (as
# a clone in `mktemp -d` does).
mkdir -m 0755 "$T/bin" && cp "$SHMGUARD" "$LIB" "$T/bin/"
# The logs of the server run by root: in a directory of root's (run refuses
# a log directory under another user's, who could swap it), which the
# server, once it is postgres, can still enter.
R=$(mktemp -d "${TMPDIR:-/tmp}/shmguard-pg-root.XXXXXX")
chmod 0755 "$R"
SHMGUARD=$T/bin/shmguard
LIB=$T/bin/libshmguard.so
SEGS_BEFORE=$(awk 'NR > 1 { print $2 }' /proc/sysvipc/shm | sort)
SERVER_PID=

# A command prefix that runs as the postgres user, with the client
# environment. setpriv and env exec, so a simple command started with & in
# the background keeps its pid through them: $! is the server's own pid (a
# shell function would add a subshell, which ignores SIGINT in background).
AS_PG=(setpriv --reuid="$USER_PG" --regid="$USER_PG" --init-groups
    env HOME="$T" PGHOST="$T/sock" PGPORT="$PORT" PGUSER="$USER_PG" PGDATABASE=postgres)
as_pg() { "${AS_PG[@]}" "$@"; }

# shellcheck source=tests/checks.sh
. "$(dirname "$(realpath "$0")")/../../tests/checks.sh"
# Commands run as postgres start in the current directory: one they can enter.
cd "$T"

cleanup() {
    local d
    for d in "$T/plain" "$T/data"; do
        if [ -f "$d/postmaster.pid" ]; then
            as_pg "$PGBIN/pg_ctl" -D "$d" stop -m immediate -w >/dev/null 2>&1
        fi
    done
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null
        sleep 2
        kill -KILL "$SERVER_PID" 2>/dev/null
    fi
    # Any segment that appeared during the test and belongs to postgres.
    local id
    for id in $(awk -v u="$(id -u "$USER_PG")" 'NR > 1 && $8 == u { print $2 }' /proc/sysvipc/shm | sort); do
        if ! grep -qx "$id" <<<"$SEGS_BEFORE"; then
            echo "cleanup: removing segment $id left by the test"
            ipcrm -m "$id" 2>/dev/null
        fi
    done
    rm -rf "$T" "$R"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

configure() { # DATADIR
    cat >>"$1/postgresql.conf" <<EOF
# make test-postgres
shared_memory_type = sysv
dynamic_shared_memory_type = sysv
listen_addresses = ''
unix_socket_directories = '$T/sock'
port = $PORT
fsync = off
max_parallel_workers_per_gather = 2
EOF
}

wait_ready() { # LOGFILE
    local i
    for i in $(seq 1 60); do
        as_pg "$PGBIN/pg_isready" -q && return 0
        sleep 0.5
    done
    echo "the server did not become ready"
    return 1
}

# Waits up to SECONDS for background job PID and sets STATUS to its exit
# status, or to "timeout" after killing it. (Not in $(...): a subshell
# cannot wait for this shell's jobs.)
wait_exit() { # PID SECONDS
    local i
    for i in $(seq 1 $(($2 * 10))); do
        if ! kill -0 "$1" 2>/dev/null; then
            wait "$1"
            STATUS=$?
            return
        fi
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    STATUS=timeout
}

psql_value() { as_pg "$PGBIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -c "$1"; }
# The same, with parallel plans made cheap, so small tables use workers.
parallel_psql() {
    "${AS_PG[@]}" PGOPTIONS="-c parallel_setup_cost=0 -c parallel_tuple_cost=0 -c min_parallel_table_scan_size=0" \
        "$PGBIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -c "$1"
}

# The workload, and what must come out the same with and without shmguard.
workload() { # LABEL
    local r=$T/$1.results
    : >"$r"
    as_pg "$PGBIN/pgbench" -i -s 1 -q >"$T/$1.init.log" 2>&1 || return 1
    {
        echo "accounts=$(psql_value 'select count(*) from pgbench_accounts')"
        echo "branches=$(psql_value 'select count(*) from pgbench_branches')"
        echo "tellers=$(psql_value 'select count(*) from pgbench_tellers')"
    } >>"$r" || return 1
    as_pg "$PGBIN/pgbench" -n -c 4 -j 2 -t 250 >"$T/$1.bench.log" 2>&1 || return 1
    {
        grep -E '^number of (transactions actually processed|failed transactions)' "$T/$1.bench.log"
        echo "history=$(psql_value 'select count(*) from pgbench_history')"
        # TPC-B's invariant: every balance moved by the same deltas.
        echo "balanced=$(psql_value 'select (select sum(abalance) from pgbench_accounts) = (select sum(delta) from pgbench_history)
            and (select sum(bbalance) from pgbench_branches) = (select sum(delta) from pgbench_history)
            and (select sum(tbalance) from pgbench_tellers) = (select sum(delta) from pgbench_history)')"
        # A parallel query: dynamic shared memory (sysv) shared with workers.
        echo "parallel_count=$(parallel_psql 'select count(*) from pgbench_accounts')"
        parallel_psql 'explain (analyze, costs off, timing off, summary off) select count(*) from pgbench_accounts' |
            grep -q 'Workers Launched: [1-9]' && echo "parallel_workers=yes" || echo "parallel_workers=no"
    } >>"$r" || return 1
    as_pg "$PGBIN/pgbench" -n -c 2 -j 2 -T 5 >"$T/$1.timed.log" 2>&1 || return 1
    grep -E '^number of failed transactions' "$T/$1.timed.log" | sed 's/^/timed: /' >>"$r"
    grep -q '^number of transactions actually processed: [1-9]' "$T/$1.timed.log" &&
        echo "timed: transactions processed" >>"$r"
    return 0
}

# ---- 1. Without shmguard: the reference.
as_pg "$PGBIN/initdb" -D "$T/plain" -A trust -U "$USER_PG" >"$T/plain.initdb.log" 2>&1
check "initdb without shmguard" test -f "$T/plain/PG_VERSION" -- "$T/plain.initdb.log"
configure "$T/plain"
"${AS_PG[@]}" "$PGBIN/postgres" -D "$T/plain" >"$T/plain.server.log" 2>&1 &
SERVER_PID=$!
check "postgres starts without shmguard" wait_ready -- "$T/plain.server.log"
check "workload without shmguard" workload plain -- "$T/plain.init.log" "$T/plain.bench.log" "$T/plain.timed.log"
as_pg "$PGBIN/pg_ctl" -D "$T/plain" stop -m fast -w >/dev/null 2>&1
wait_exit "$SERVER_PID" 60
SERVER_PID=
check "postgres without shmguard stops cleanly: $STATUS" test "$STATUS" = 0

# ---- 2. initdb under shmguard (its bootstrap backends use shared memory).
as_pg "$SHMGUARD" run --lib "$LIB" --log-dir "$T/initdb-logs" --fail-on-leak --json "$T/initdb-report.json" \
    -- "$PGBIN/initdb" -D "$T/data" -A trust -U "$USER_PG" >"$T/data.initdb.log" 2>&1
status=$?
check "initdb under shmguard exits 0 (no leak)" test "$status" = 0 -- "$T/data.initdb.log" "$T/initdb-report.json"
check "initdb's report shows no leak" \
    test "$(jq '.summary.leaks' "$T/initdb-report.json" 2>/dev/null)" = 0 -- "$T/initdb-report.json"
configure "$T/data"

# ---- 3. The server under shmguard run, in the foreground, audited. run
# is started by root and the server switches to user postgres (setpriv),
# as an init script does: the server's processes must still be able to
# log into the directory run made (sticky, mode 1733 while the tree runs).
"$SHMGUARD" run --lib "$LIB" --log-dir "$R/logs" --fail-on-leak \
    --json "$T/report.json" -- "${AS_PG[@]}" "$PGBIN/postgres" -D "$T/data" >"$T/data.server.log" 2>&1 &
SERVER_PID=$!
check "postgres starts under shmguard" wait_ready -- "$T/data.server.log"
check "workload under shmguard" workload data -- "$T/data.init.log" "$T/data.bench.log" "$T/data.timed.log" "$T/data.server.log"
# Stop it through shmguard: SIGINT is passed on (a fast shutdown).
kill -INT "$SERVER_PID"
wait_exit "$SERVER_PID" 60
SERVER_PID=
check "shmguard run exits 0 after a fast shutdown (postgres's status, no leak): $STATUS" \
    test "$STATUS" = 0 -- "$T/data.server.log" "$T/report.json"

# ---- 4. Same results; the audit saw the calls and no leak.
check "same results with and without shmguard" \
    diff -u "$T/plain.results" "$T/data.results" -- "$T/plain.results" "$T/data.results"
check "the workload's checks hold" \
    grep -qx 'balanced=t' "$T/data.results" -- "$T/data.results"
check "parallel workers ran (dynamic shared memory)" \
    grep -qx 'parallel_workers=yes' "$T/data.results" -- "$T/data.results"
check "the report shows no leak" \
    test "$(jq '.summary.leaks' "$T/report.json" 2>/dev/null)" = 0 -- "$T/report.json"
check "the report names no segment left behind" \
    test "$(jq '(.leaked_segments | length) + (.notes | length)' "$T/report.json" 2>/dev/null)" = 0 -- "$T/report.json"

count_calls() { # JQ-FILTER over call events
    cat "$R"/logs/*.jsonl 2>/dev/null | tr -d '\000' | jq -c "select(.event == \"call\") | select($1)" 2>/dev/null | wc -l
}
for what in \
    'shmget creating a segment|.call == "shmget" and .created == true' \
    'shmat|.call == "shmat" and .errno == null' \
    'shmdt|.call == "shmdt" and .errno == null' \
    'shmctl IPC_STAT|.call == "shmctl" and .args.cmd == "IPC_STAT"' \
    'shmctl IPC_RMID|.call == "shmctl" and .args.cmd == "IPC_RMID" and .errno == null'; do
    name=${what%%|*}
    filter=${what#*|}
    n=$(count_calls "$filter")
    check "the logs hold $name ($n)" test "$n" -gt 0
done
check "the log directory is private again after the run" test "$(stat -c %a "$R/logs")" = 700
check "the server's logs are postgres's (it switched user under root's run)" \
    test -n "$(find "$R/logs" -name '*.jsonl' -user "$USER_PG" -print -quit)"
check "no log was set aside as untrusted" test -z "$(find "$R/logs" -name '*.untrusted' -print -quit)" -- "$T/report.json"
logged=$(jq '.summary.processes_logged' "$T/report.json" 2>/dev/null || echo 0)
check "several processes logged (postmaster, backends, workers: $logged)" test "${logged:-0}" -ge 3
# Every segment the server created was removed: none of postgres's is new.
left=$(awk -v u="$(id -u "$USER_PG")" 'NR > 1 && $8 == u { print $2 }' /proc/sysvipc/shm | sort |
    comm -13 <(echo "$SEGS_BEFORE") - | tr '\n' ' ')
check "no segment left in the kernel ($left)" test -z "${left// /}"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
