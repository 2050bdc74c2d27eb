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
#   make install PREFIX=/usr/local [DESTDIR=...]

PREFIX  ?= /usr/local
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
BINDIR  ?= $(PREFIX)/bin
PCDIR   ?= $(LIBDIR)/pkgconfig
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

.PHONY: asan valgrind stress test-stress-ng miri fuzz test-fuzz fuzz-parsers bench test-postgres all build test test-rust test-c check-header check-symbols check-install \
	lint demo install uninstall clean

all: build

build:
	$(CARGO) build --release --workspace
	ln -sf libshmguard.so $(REL)/libshmguard.so.$(SOMAJOR)

test: build test-rust test-c test-fuzz check-header check-symbols check-install
	@echo "make test: all passed"

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

# Install into a scratch prefix, then build a program with pkg-config, once
# against the shared library and once statically, and run both.
check-install: build
	rm -rf $(BUILD)/prefix
	$(MAKE) --no-print-directory install PREFIX=$(CURDIR)/$(BUILD)/prefix
	c_tests/check-install.sh $(CURDIR)/$(BUILD)/prefix "$(CC)"

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

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# A program that leaks one attachment and two segments, linked with
# -lshmguard: the report names them. The demo removes them afterwards.
demo: build
	demo/run.sh $(REL) $(BUILD)/demo "$(CC)"

install: build
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(PCDIR) $(DESTDIR)$(BINDIR)
	install -m 0755 $(REL)/shmguard $(DESTDIR)$(BINDIR)/shmguard
	install -m 0755 $(REL)/libshmguard.so $(DESTDIR)$(LIBDIR)/libshmguard.so.$(VERSION)
	ln -sf libshmguard.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libshmguard.so.$(SOMAJOR)
	ln -sf libshmguard.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/libshmguard.so
	install -m 0644 $(REL)/libshmguard.a $(DESTDIR)$(LIBDIR)/libshmguard.a
	install -m 0644 include/shmguard.h $(DESTDIR)$(INCDIR)/shmguard.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
		-e 's|@VERSION@|$(VERSION)|' -e 's|@STATIC_LIBS@|$(STATIC_LIBS)|' \
		shmguard.pc.in > $(DESTDIR)$(PCDIR)/shmguard.pc

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/shmguard $(DESTDIR)$(LIBDIR)/libshmguard.so* $(DESTDIR)$(LIBDIR)/libshmguard.a \
		$(DESTDIR)$(INCDIR)/shmguard.h $(DESTDIR)$(PCDIR)/shmguard.pc

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
