#!/bin/sh
# Makes the static library that `make install` installs out of the one
# cargo builds, so that a program linked with it (`cc -static ...
# $(pkg-config --static --libs shmguard)`) pulls in only what the library
# uses.
#
# Usage: tools/lean-archive.sh IN.a OUT.a SYMBOL...   (SYMBOLs: the C API)
#
# Why: a Rust staticlib holds the Rust standard library as archive members
# of one object each (std is built as a single codegen unit). The library
# needs a few things from std (a `Once`, the panic machinery), and the
# linker, which takes whole members, then takes all of std's object, whose
# unused functions (`std::env::home_dir`, `std::net`'s `lookup_host`)
# reference glibc's `getpwuid_r` and `getaddrinfo`: glibc's static
# libc.a warns about each ("Using 'getpwuid_r' in statically linked
# applications requires at runtime the shared libraries ..."), although
# the library never calls them. `-Wl,--gc-sections` in the program's link
# drops the code but not the warnings, which the linker gives when it
# resolves the reference, before collecting garbage.
#
# How: one relocatable link of every member (`ld -r --whole-archive`) with
# garbage collection rooted at the exported SYMBOLs (and the
# constructors and destructors, which the linker keeps: their sections are
# SHF_GNU_RETAIN), then `objcopy --strip-unneeded`, which drops the
# undefined symbols nothing refers to any more (getpwuid_r, getaddrinfo and
# about a hundred others), and `--keep-global-symbols`, which makes every symbol but
# the C API local, so the archive no longer exports std's or hashbrown's
# symbols into the program (two Rust static libraries in one program no
# longer clash). The LLVM bitcode that rustc embeds (`.llvmbc`, unused by
# a C link) is removed; the debug info is kept (make install strips it).
set -eu
in=$1
out=$2
shift 2
[ $# -gt 0 ] || { echo "usage: $0 IN.a OUT.a SYMBOL..." >&2; exit 2; }
LD=${LD:-ld}
OBJCOPY=${OBJCOPY:-objcopy}
AR=${AR:-ar}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
roots=""
for s in "$@"; do
    roots="$roots -u $s"
    echo "$s" >> "$tmp/exports"
done
# shellcheck disable=SC2086 # $roots is a list of words
"$LD" -r --gc-sections $roots --whole-archive "$in" -o "$tmp/whole.o"
"$OBJCOPY" --remove-section=.llvmbc --remove-section=.llvmcmd --strip-unneeded \
    --keep-section='.debug_*' --keep-global-symbols="$tmp/exports" \
    "$tmp/whole.o" "$tmp/shmguard.o"
# Every SYMBOL must still be defined, and global.
for s in "$@"; do
    nm -g --defined-only "$tmp/shmguard.o" | awk -v s="$s" '$3 == s { ok = 1 } END { exit !ok }' || {
        echo "$0: $s is not defined by the merged object" >&2; exit 1; }
done
rm -f "$tmp/out.a"
"$AR" rcs "$tmp/out.a" "$tmp/shmguard.o"
mv -f "$tmp/out.a" "$out"
