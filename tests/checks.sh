# Sourced by the shell test scripts (tests/stress-ng.sh, cli/tests/postgres.sh):
# "ok - NAME" / "not ok - NAME" lines, counted in $passed and $failed.
# shellcheck shell=bash

passed=0
failed=0

ok() {
    echo "ok - $1"
    passed=$((passed + 1))
}

# not_ok NAME [FILE...]: the tail of each FILE follows, as comments.
not_ok() {
    echo "not ok - $1"
    shift
    local f
    for f in "$@"; do
        [ -s "$f" ] || continue
        echo "# ---- $f"
        tail -n 25 "$f" | cut -c1-400 | sed 's/^/#   /'
    done
    failed=$((failed + 1))
}

# check NAME COMMAND... [-- FILES TO SHOW ON FAILURE]
check() {
    local name=$1
    shift
    local cmd=() files=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do cmd+=("$1"); shift; done
    [ $# -gt 0 ] && shift && files=("$@")
    if "${cmd[@]}"; then ok "$name"; else not_ok "$name" "${files[@]}"; fi
}
