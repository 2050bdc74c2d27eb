#!/bin/bash
# Checks an installed shmguard (make check-install runs it).
#
#   c_tests/check-install.sh PREFIX CC
#       what `make install PREFIX=PREFIX` installed: the README's pkg-config
#       recipe, run exactly as the README shows it (shared with an rpath,
#       and fully static, which must link without a warning), both programs
#       run; man shmguard, shmguard-run and shmguard(3) render; the bash
#       completion loads, the zsh and fish ones are in place; binaries and
#       libraries are stripped; the docs are there.
#   c_tests/check-install.sh --debug PREFIX
#       what `make install-debug` added: stripped files with a debug link to
#       a .debug file under PREFIX/lib/debug that holds the debug info.
#   c_tests/check-install.sh --uninstalled DIR
#       `make uninstall` left no file and no link under DIR (a DESTDIR).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
readme=$here/../README.md

fail() { echo "check-install: $*" >&2; exit 1; }

# has_section FILE SECTION: FILE (ELF, or an archive's members) has SECTION.
has_section() { readelf -SW "$1" 2>/dev/null | grep -q " $2 "; }

case ${1:-} in
--debug)
    prefix=$2
    for f in bin/shmguard lib/libshmguard.so.*.*.*; do
        file=$(echo "$prefix"/$f)
        has_section "$file" .debug_info && fail "$f is not stripped"
        has_section "$file" .gnu_debuglink || fail "$f has no debug link"
        # The .debug file mirrors the installed path under lib/debug.
        debug=$(find "$prefix/lib/debug" -name "$(basename "$file").debug" -type f | head -n 1)
        [ -n "$debug" ] || fail "no .debug file for $f under $prefix/lib/debug"
        has_section "$debug" .debug_info || fail "$debug holds no debug info"
        readelf -p .gnu_debuglink "$file" | grep -q "$(basename "$debug")" ||
            fail "$f's debug link does not name $(basename "$debug")"
    done
    echo "install-debug: stripped files with debug links, debug info kept"
    exit 0
    ;;
--uninstalled)
    left=$(find "$2" \( -type f -o -type l \) -print)
    [ -z "$left" ] || fail "make uninstall left: $left"
    echo "uninstall: nothing left"
    exit 0
    ;;
esac

prefix=$1
cc=${2:-cc}
out=$prefix/check
rm -rf "$out"
mkdir -p "$out"

cat > "$out/prog.c" <<'PROG'
#include <stdio.h>
#include <sys/shm.h>
#include "shmguard.h"

int main(void)
{
    int id = shmget(IPC_PRIVATE, 4096, 0600);
    if (id == -1) { perror("shmget"); return 1; }
    /* Only shmguard's shmget is tracked: one unmarked segment is one leak. */
    size_t before = shmguard_leak_count();
    int rc = shmctl(id, IPC_RMID, NULL);
    size_t after = shmguard_leak_count();
    printf("shmguard %s: leaks %zu -> %zu\n", shmguard_version(), before, after);
    return rc == 0 && before == 1 && after == 0 ? 0 : 1;
}
PROG

# --- The README's pkg-config recipe, exactly as the README shows it, with
# PREFIX set and cc the compiler under test. No LD_LIBRARY_PATH: the
# program must find the library by itself.
sed -n '/<!-- recipe: pkg-config/,/^```$/p' "$readme" | sed -n '/^```sh$/,/^```$/p' | sed '1d;$d' \
    > "$out/recipe.sh"
grep -q 'rpath' "$out/recipe.sh" || fail "no recipe with an rpath in README.md: $(cat "$out/recipe.sh")"
mkdir -p "$out/bin"
# (the wrapper calls the compiler by its full path, not itself)
real_cc=$(command -v "$cc") || fail "no compiler $cc"
printf '#!/bin/sh\nexec %s "$@"\n' "$real_cc" > "$out/bin/cc"
chmod +x "$out/bin/cc"
if ! (cd "$out" && env -u LD_LIBRARY_PATH -u PKG_CONFIG_PATH PATH="$out/bin:$PATH" \
        PREFIX="$prefix" bash -euo pipefail recipe.sh) > "$out/recipe.log" 2>&1; then
    cat "$out/recipe.log"
    fail "README's pkg-config recipe failed against $prefix"
fi
cat "$out/recipe.log"
[ "$(grep -c '^shmguard .*: leaks 1 -> 0$' "$out/recipe.log")" = 2 ] ||
    fail "the recipe's programs did not both run"
if grep -i 'warning' "$out/recipe.log"; then
    fail "the recipe's links printed warnings"
fi
readelf -d "$out/prog" | grep -q 'NEEDED.*libshmguard.so.0' || fail "prog does not need libshmguard.so.0"
readelf -d "$out/prog" | grep -Eq "R(UN)?PATH.*$prefix/lib" || fail "prog has no rpath to $prefix/lib"
if readelf -d "$out/prog-static" 2>/dev/null | grep -q NEEDED; then
    fail "prog-static is not static"
fi
echo "install + pkg-config: the README's recipe builds and runs (shared with rpath, static without warnings)"

# --- Man pages: shmguard(1) and a page per subcommand, from the clap
# definitions; shmguard(3) for the library. Rendered by man itself.
export MANPATH=$prefix/share/man
for page in "1 shmguard" "1 shmguard-run" "1 shmguard-report" "1 shmguard-ls" "1 shmguard-clean" "3 shmguard"; do
    # shellcheck disable=SC2086 # section and name
    text=$(MANWIDTH=80 man -P cat $page 2>"$out/man.err") || {
        cat "$out/man.err"; fail "man $page does not render"; }
    [ -s "$out/man.err" ] && { cat "$out/man.err"; fail "man $page warns"; }
    echo "$text" | grep -q '^NAME' || fail "man $page has no NAME section"
done
MANWIDTH=80 man -P cat 1 shmguard | grep -q 'shmguard-run(1)\|run' || fail "shmguard(1) does not list run"
MANWIDTH=80 man -P cat 3 shmguard | grep -q 'leak_check=0|1' || fail "shmguard(3) does not list the options"
unset MANPATH
echo "man pages: shmguard(1), shmguard-run(1), ..., shmguard(3) render"

# --- Completions.
bash_comp=$prefix/share/bash-completion/completions/shmguard
[ -f "$bash_comp" ] || fail "no $bash_comp"
bash -c "source '$bash_comp' && complete -p shmguard" | grep -q -- '-F _shmguard shmguard' ||
    fail "the bash completion does not load"
# What bash would offer after `shmguard r`:
got=$(bash -c "source '$bash_comp'; COMP_WORDS=(shmguard r); COMP_CWORD=1; COMP_LINE='shmguard r'; COMP_POINT=10; _shmguard shmguard r shmguard; echo \${COMPREPLY[*]}")
[ "$got" = "run report" ] || fail "bash completes 'shmguard r' to '$got', not 'run report'"
head -n 1 "$prefix/share/zsh/site-functions/_shmguard" | grep -q '^#compdef shmguard' ||
    fail "no zsh completion"
grep -q '^complete -c shmguard' "$prefix/share/fish/vendor_completions.d/shmguard.fish" ||
    fail "no fish completion"
echo "completions: bash loads and completes, zsh and fish in place"

# --- Stripped.
for f in "$prefix/bin/shmguard" "$prefix"/lib/libshmguard.so.*.*.* "$prefix/lib/libshmguard.a"; do
    has_section "$f" .debug_info && fail "$f is not stripped"
done
has_section "$prefix/bin/shmguard" .symtab && fail "$prefix/bin/shmguard keeps its symbol table"
echo "stripped: shmguard, libshmguard.so, libshmguard.a"

# --- Docs.
for d in README.md docs/cli.md docs/log-schema.md docs/security.md; do
    [ -f "$prefix/share/doc/shmguard/$d" ] || fail "no $d under share/doc/shmguard"
done
echo "docs: under share/doc/shmguard"
