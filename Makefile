# shmguard: build, test, install.
#
#   make                 the libraries, the header and the command (target/release)
#   make test            every test: Rust unit tests, the C suite (plain, linked,
#                        preloaded), header, exported symbols, install + pkg-config
#   make lint            rustfmt and clippy -D warnings
#   make test-postgres   PostgreSQL with System V shared memory under shmguard run
#   make asan / valgrind the C suite under ASan+UBSan / Valgrind memcheck
#   make stress          the long stress runs (threads, signals, fork, exec)
#   make test-stress-ng  Debian's stress-ng --shm-sysv with and without shmguard run
#   make miri            the safe core's unit tests under Miri (nightly + miri component)
#   make fuzz SEEDS=N    differential fuzzing against the kernel (N random sequences)
#   make fuzz-parsers    cargo fuzz on the options parser and the log reader (nightly)
#   make bench           per-call cost against plain glibc and strace (docs/benchmarks.md)
#   make demo            a leaky C program run under shmguard
#   make install PREFIX=/usr/local [DESTDIR=...]   stripped; man pages,
#                        completions (bash, zsh, fish), docs
#   make install-debug   the same, with the debug info in LIBDIR/debug
#   make uninstall       removes what install put there

PREFIX  ?= /usr/local
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
BINDIR  ?= $(PREFIX)/bin
PCDIR   ?= $(LIBDIR)/pkgconfig
DATADIR ?= $(PREFIX)/share
MANDIR  ?= $(DATADIR)/man
DOCDIR  ?= $(DATADIR)/doc/shmguard
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
ZSHCOMPDIR  ?= $(DATADIR)/zsh/site-functions
FISHCOMPDIR ?= $(DATADIR)/fish/vendor_completions.d
DEBUGDIR    ?= $(LIBDIR)/debug
STRIP   ?= strip
OBJCOPY ?= objcopy
CC      ?= cc
CXX     ?= c++
CARGO   ?= cargo

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
SOMAJOR := 0
REL     := target/release
BUILD   := build

CWARN   := -Wall -Wextra -Werror
# What a program linking libshmguard.a also needs (rustc --print
# native-static-libs, less -lgcc_s: the compiler driver adds libgcc itself,
# and a -static link has no libgcc_s).
STATIC_LIBS := -lutil -lrt -lpthread -lm -ldl -lc

# The symbols the library must export, and only these.
EXPORTS := ftok shmat shmctl shmdt shmget \
	shmguard_attachment_size shmguard_copy_from shmguard_copy_to shmguard_ftok \
	shmguard_last_error shmguard_leak_count shmguard_leak_report shmguard_shmat \
	shmguard_shmctl shmguard_shmdt shmguard_shmget shmguard_version

.PHONY: generated split-debug link-debug asan valgrind stress test-stress-ng miri fuzz test-fuzz fuzz-parsers bench test-postgres all build test test-rust test-c check-header check-symbols check-install \
	check-test-tools \
	lint demo install install-debug uninstall clean

all: build

build:
	$(CARGO) build --release --workspace
	ln -sf libshmguard.so $(REL)/libshmguard.so.$(SOMAJOR)

test: check-test-tools build test-rust test-c test-fuzz check-header check-symbols check-install
	@echo "make test: all passed"

# Tools the tests need beyond the Rust toolchain and a C compiler (.ci/run
# installs them): the validators of the CI formats (cli/tests/ci_formats.rs,
# cli/tests/examples.rs) check JUnit XML with xmllint against
# tests/schemas/junit-10.xsd and SARIF with Debian's python3-jsonschema
# against the SARIF 2.1.0 schema. Missing, they stop make test at once.
check-test-tools:
	@command -v xmllint >/dev/null || \
		{ echo "make test needs xmllint: apt-get install libxml2-utils"; exit 1; }
	@/usr/bin/python3 -c 'import jsonschema' 2>/dev/null || \
		{ echo "make test needs /usr/bin/python3 with jsonschema: apt-get install python3-jsonschema"; exit 1; }

# Unit tests of the safe core, and the C suite against the debug build
# (cargo test alone does not refresh target/debug/libshmguard.so).
test-rust:
	$(CARGO) build --workspace
	$(CARGO) test --workspace

# The C suite against the release build, then a leak-free program under
# valgrind's memcheck with default options: as clean with shmguard as
# without it.
test-c: build
	CC="$(CC)" c_tests/run.sh $(REL) $(BUILD)/c_tests
	CC="$(CC)" c_tests/memcheck.sh $(REL) $(BUILD)/memcheck

# The committed header must be what build.rs generates, and compile as C11
# and C++17 with every warning an error.
check-header: build
	@git diff --exit-code --stat -- include/shmguard.h || \
		{ echo "include/shmguard.h is stale: commit the regenerated header"; exit 1; }
	@mkdir -p $(BUILD)
	printf '#include "shmguard.h"\nint main(void) { return shmguard_version() == 0; }\n' > $(BUILD)/header.c
	$(CC) -std=c11 $(CWARN) -pedantic -Iinclude -c $(BUILD)/header.c -o $(BUILD)/header-c.o
	cp $(BUILD)/header.c $(BUILD)/header.cpp
	$(CXX) -std=c++17 $(CWARN) -pedantic -Iinclude -c $(BUILD)/header.cpp -o $(BUILD)/header-cxx.o

# nm -D must list exactly $(EXPORTS); the SONAME must be libshmguard.so.0.
check-symbols: build
	@mkdir -p $(BUILD)
	@nm -D --defined-only $(REL)/libshmguard.so | awk '$$2 == "T" { print $$3 }' | sort > $(BUILD)/exports.txt
	@printf '%s\n' $(EXPORTS) | sort > $(BUILD)/exports.expected
	@diff -u $(BUILD)/exports.expected $(BUILD)/exports.txt || \
		{ echo "exported symbols differ from the expected list"; exit 1; }
	@readelf -d $(REL)/libshmguard.so | grep -q 'Library soname: \[libshmguard.so.$(SOMAJOR)\]' || \
		{ echo "SONAME is not libshmguard.so.$(SOMAJOR)"; exit 1; }
	@echo "exports and SONAME ok"

# Install into a scratch prefix, then build the README's pkg-config recipe
# (shared with an rpath, and static) and run it, render the man pages, load
# the completions, check that everything is stripped; then install-debug
# and uninstall under a DESTDIR: debug files, and nothing left.
check-install: build
	rm -rf $(BUILD)/prefix $(BUILD)/destdir
	$(MAKE) --no-print-directory install PREFIX=$(CURDIR)/$(BUILD)/prefix
	c_tests/check-install.sh $(CURDIR)/$(BUILD)/prefix "$(CC)"
	$(MAKE) --no-print-directory install-debug PREFIX=/opt/shmguard DESTDIR=$(CURDIR)/$(BUILD)/destdir
	c_tests/check-install.sh --debug $(CURDIR)/$(BUILD)/destdir/opt/shmguard
	$(MAKE) --no-print-directory uninstall PREFIX=/opt/shmguard DESTDIR=$(CURDIR)/$(BUILD)/destdir
	c_tests/check-install.sh --uninstalled $(CURDIR)/$(BUILD)/destdir
	rm -rf $(BUILD)/prefix $(BUILD)/destdir

# PostgreSQL (shared_memory_type = sysv) under `shmguard run`: installs
# Debian's postgresql when missing.
test-postgres: build
	cli/tests/postgres.sh $(REL)

# The C suite under AddressSanitizer + UndefinedBehaviorSanitizer, and
# under Valgrind memcheck (c_tests/sanitize.sh says what each checks).
asan: build
	c_tests/sanitize.sh asan $(REL) $(BUILD)/asan

valgrind: build
	c_tests/sanitize.sh valgrind $(REL) $(BUILD)/valgrind

# The stress scenarios for longer (SHMGUARD_STRESS_SECONDS each phase).
STRESS_SECONDS ?= 20
stress: build
	SHMGUARD_SUITE=stress SHMGUARD_STRESS_SECONDS=$(STRESS_SECONDS) c_tests/run.sh $(REL) $(BUILD)/stress

# Debian's stress-ng (--shm-sysv) with and without shmguard run, each in its
# own IPC namespace: same outcome, every call logged, no leak; prints the
# overhead. Installs stress-ng when missing (root).
test-stress-ng: build
	tests/stress-ng.sh $(REL)

# Miri checks the unit tests for undefined behaviour; tests that need the
# kernel's shm, file mappings or fork handlers are ignored under Miri.
miri:
	MIRIFLAGS=-Zmiri-disable-isolation $(CARGO) +nightly miri test --lib

# Differential fuzzing: random call sequences through raw system calls and
# through shmguard (default options, with the log, with guard pages).
SEEDS ?= 2000
fuzz: build
	fuzz/run.sh $(REL) $(BUILD)/fuzz $(SEEDS)

# The fixed seeds that make test runs.
test-fuzz: build
	fuzz/run.sh $(REL) $(BUILD)/fuzz fixed

# cargo fuzz (libFuzzer, nightly) on the parsers of untrusted input, each
# target for FUZZ_SECONDS from the seeds in fuzz/parsers/corpus-seeds; new
# inputs go to fuzz/parsers/corpus, crashes to fuzz/parsers/artifacts.
# Installs cargo-fuzz when missing.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := options log_file suppressions
fuzz-parsers:
	$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install --locked cargo-fuzz
	for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/parsers/corpus/$$t && \
		$(CARGO) +nightly fuzz run --fuzz-dir fuzz/parsers $$t \
			fuzz/parsers/corpus/$$t fuzz/parsers/corpus-seeds/$$t \
			-- -max_total_time=$(FUZZ_SECONDS) -max_len=16384 || exit 1; \
	done

# Per-call cost as ratios against plain glibc, measured in one interleaved run.
bench: build
	bench/run.sh $(REL) $(BUILD)/bench

# rustfmt, clippy, and the library's module layers (no import circle).
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test -q --test module_graph

# A program that leaks one attachment and two segments, linked with
# -lshmguard: the report names them. The demo removes them afterwards.
demo: build
	demo/run.sh $(REL) $(BUILD)/demo "$(CC)"

# What make install puts in place, generated from the clap definitions by
# the command itself: shmguard.1 and a page per subcommand, and the
# completion scripts.
GEN := $(BUILD)/gen
DOCS := docs/cli.md docs/log-schema.md docs/security.md docs/benchmarks.md
generated: build
	rm -rf $(GEN) && mkdir -p $(GEN)/man1 $(GEN)/completions
	$(REL)/shmguard __generate man $(GEN)/man1
	for sh in bash zsh fish; do \
		$(REL)/shmguard __generate completion $$sh > $(GEN)/completions/shmguard.$$sh || exit 1; \
	done

# Binaries and library stripped of debug info (install-debug keeps it, in
# separate files under $(DEBUGDIR), which the stripped files name with a
# debug link).
install: build generated
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(PCDIR) $(DESTDIR)$(BINDIR) \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3 $(DESTDIR)$(DOCDIR)/docs \
		$(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	install -m 0755 $(REL)/shmguard $(DESTDIR)$(BINDIR)/shmguard
	install -m 0755 $(REL)/libshmguard.so $(DESTDIR)$(LIBDIR)/libshmguard.so.$(VERSION)
	ln -sf libshmguard.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libshmguard.so.$(SOMAJOR)
	ln -sf libshmguard.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/libshmguard.so
	tools/lean-archive.sh $(REL)/libshmguard.a $(GEN)/libshmguard.a $(EXPORTS)
	install -m 0644 $(GEN)/libshmguard.a $(DESTDIR)$(LIBDIR)/libshmguard.a
	$(if $(KEEP_DEBUG),$(MAKE) --no-print-directory split-debug)
	$(STRIP) --strip-unneeded $(DESTDIR)$(BINDIR)/shmguard $(DESTDIR)$(LIBDIR)/libshmguard.so.$(VERSION)
	$(STRIP) --strip-debug $(DESTDIR)$(LIBDIR)/libshmguard.a
	$(if $(KEEP_DEBUG),$(MAKE) --no-print-directory link-debug)
	install -m 0644 include/shmguard.h $(DESTDIR)$(INCDIR)/shmguard.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
		-e 's|@VERSION@|$(VERSION)|' -e 's|@STATIC_LIBS@|$(STATIC_LIBS)|' \
		shmguard.pc.in > $(DESTDIR)$(PCDIR)/shmguard.pc
	install -m 0644 $(GEN)/man1/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 man/shmguard.3 $(DESTDIR)$(MANDIR)/man3/shmguard.3
	install -m 0644 $(GEN)/completions/shmguard.bash $(DESTDIR)$(BASHCOMPDIR)/shmguard
	install -m 0644 $(GEN)/completions/shmguard.zsh $(DESTDIR)$(ZSHCOMPDIR)/_shmguard
	install -m 0644 $(GEN)/completions/shmguard.fish $(DESTDIR)$(FISHCOMPDIR)/shmguard.fish
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -m 0644 $(DOCS) $(DESTDIR)$(DOCDIR)/docs/

install-debug:
	$(MAKE) --no-print-directory install KEEP_DEBUG=1

# (install-debug) The debug info of the installed, not yet stripped files,
# then a debug link from each stripped file to its .debug file.
DEBUG_FILES := $(BINDIR)/shmguard $(LIBDIR)/libshmguard.so.$(VERSION)
split-debug:
	for f in $(DEBUG_FILES); do \
		install -d $(DESTDIR)$(DEBUGDIR)$$(dirname $$f) && \
		$(OBJCOPY) --only-keep-debug $(DESTDIR)$$f $(DESTDIR)$(DEBUGDIR)$$f.debug && \
		chmod 0644 $(DESTDIR)$(DEBUGDIR)$$f.debug || exit 1; \
	done

link-debug:
	for f in $(DEBUG_FILES); do \
		$(OBJCOPY) --add-gnu-debuglink=$(DESTDIR)$(DEBUGDIR)$$f.debug $(DESTDIR)$$f || exit 1; \
	done

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/shmguard $(DESTDIR)$(LIBDIR)/libshmguard.so* $(DESTDIR)$(LIBDIR)/libshmguard.a \
		$(DESTDIR)$(INCDIR)/shmguard.h $(DESTDIR)$(PCDIR)/shmguard.pc \
		$(DESTDIR)$(MANDIR)/man1/shmguard.1 $(DESTDIR)$(MANDIR)/man1/shmguard-*.1 \
		$(DESTDIR)$(MANDIR)/man3/shmguard.3 \
		$(DESTDIR)$(BASHCOMPDIR)/shmguard $(DESTDIR)$(ZSHCOMPDIR)/_shmguard \
		$(DESTDIR)$(FISHCOMPDIR)/shmguard.fish \
		$(foreach f,$(DEBUG_FILES),$(DESTDIR)$(DEBUGDIR)$(f).debug)
	rm -rf $(DESTDIR)$(DOCDIR)
	-for d in $(dir $(DEBUG_FILES)); do rmdir -p $(DESTDIR)$(DEBUGDIR)$$d 2>/dev/null; done; true

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
