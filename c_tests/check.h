/*
 * check.h: shared helpers of shmguard's C test programs, defined in
 * check.c. The runners compile check.c once per build configuration (with
 * the same flags as the programs) and link the object into every program,
 * before -lshmguard: its calls of the libc names resolve as the program's
 * own do (to libshmguard in the linked and preloaded modes).
 *
 * Every program calls ck_init() first and returns ck_finish() from main.
 *
 * - Trace: one stdout line per case, "case NAME: RESULT", where RESULT is
 *   "ok" (plus normalised values) or "fail ERRNONAME". The runner requires
 *   the trace to be identical in the plain, linked and preloaded modes.
 * - Self-check: FAIL()/CHECK() report "FAIL: file:line: what" on stderr and
 *   count; ck_finish() makes the program exit 1 if anything failed. Each case
 *   compares the libc name (shmguard in the linked and preloaded modes) with
 *   the raw system call, or with a number computed independently.
 * - Cleanup: SysV segments outlive processes, so every shmid a program
 *   creates is recorded and removed with the raw IPC_RMID at exit and from
 *   the fatal-signal handlers, only in the process that owns the registry:
 *   a forked child (which ends with _exit, or with exit() where a test needs
 *   it) never cleans up for its parent.
 * - Mode: with SHMGUARD_EXPECT=1 the libc names must resolve to
 *   libshmguard; without it they must not.
 * - Options: programs that test SHMGUARD_OPTIONS run themselves again
 *   (ck_run_self) with options of their choosing and read the child's
 *   stdout, stderr and audit logs from files in ck_tmpdir().
 * - Logs: ck_log_read()/ck_logs_read() check that audit logs are JSON Lines
 *   (a strict JSON parser) and count their events by kind, call and pid.
 * - Timeouts (alarms, child waits) are multiplied by SHMGUARD_TIMEOUT_SCALE
 *   (default 1) for slow runs under valgrind or sanitizers.
 */
#ifndef SHMGUARD_CHECK_H
#define SHMGUARD_CHECK_H

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The extension API: the generated header once it exists, else our own
 * prototypes (only programs that define SHMGUARD_EXT need them). */
#if defined(__has_include)
#if __has_include("shmguard.h")
#include "shmguard.h"
#define CK_HAVE_SHMGUARD_H 1
#endif
#endif
#if defined(SHMGUARD_EXT) && !defined(CK_HAVE_SHMGUARD_H)
const char *shmguard_last_error(void);
ssize_t shmguard_attachment_size(const void *addr);
int shmguard_copy_to(void *shmaddr, size_t off, const void *src, size_t len);
int shmguard_copy_from(const void *shmaddr, size_t off, void *dst, size_t len);
size_t shmguard_leak_count(void);
int shmguard_leak_report(int fd);
const char *shmguard_version(void);
int shmguard_shmget(key_t key, size_t size, int shmflg);
void *shmguard_shmat(int shmid, const void *shmaddr, int shmflg);
int shmguard_shmdt(const void *shmaddr);
int shmguard_shmctl(int shmid, int cmd, struct shmid_ds *buf);
key_t shmguard_ftok(const char *pathname, int proj_id);
#endif

#define CK_UNUSED __attribute__((unused))

/* Valgrind's client requests, when its header is there (no-ops outside
 * valgrind). */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif

/* ---------------------------------------------------------------- failures */

extern int ck_failures; /* FAILs so far (all threads) */
extern int ck_cases;    /* trace lines so far */

/* "FAIL: FILE:LINE: what" on stderr, and one more failure. */
__attribute__((format(printf, 3, 4))) void ck_fail(const char *file, int line,
                                                   const char *fmt, ...);

#define FAIL(...) ck_fail(__FILE__, __LINE__, __VA_ARGS__)
#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            FAIL("check failed: %s", #cond);                                   \
    } while (0)
#define CHECK_EQ(a, b)                                                         \
    do {                                                                       \
        long long ck_a_ = (long long)(a), ck_b_ = (long long)(b);              \
        if (ck_a_ != ck_b_)                                                    \
            FAIL("%s == %s: %lld != %lld", #a, #b, ck_a_, ck_b_);              \
    } while (0)

/* "EPERM" for EPERM ("E123" if glibc has no name); a per-thread buffer of 4. */
const char *ck_errname(int e);

/* ----------------------------------------------------------- raw syscalls */

/* The system calls themselves, never shmguard: the reference. */
int raw_shmget(key_t key, size_t size, int flg);
void *raw_shmat(int id, const void *addr, int flg);
int raw_shmdt(const void *addr);
int raw_shmctl(int id, int cmd, void *buf);

/* ---------------------------------------------------------------- results */

/* One call's outcome: its return value (pointers as integers, so that
 * (void *)-1 is -1) and errno when it returned -1. */
struct ck_res {
    long ret;
    int err;
};

struct ck_res ck_res_of(long ret);

/* Evaluate EXPR with errno cleared and capture return value and errno. */
#define RES(expr) (errno = 0, ck_res_of((long)(expr)))

/* "ok" or "fail EXXX": into BUF, or into a per-thread buffer. */
const char *ck_outcome_into(char *buf, size_t len, struct ck_res r);
const char *ck_outcome(struct ck_res r);

/* The two outcomes must be of the same class, with the same errno. */
int ck_same(const char *file, int line, const char *name, struct ck_res lib,
            struct ck_res raw);
#define SAME(name, lib, raw) ck_same(__FILE__, __LINE__, name, lib, raw)

/* The outcome must be success (want_err 0) or failure with want_err. */
int ck_want(const char *file, int line, const char *name, struct ck_res r, int want_err);
#define WANT(name, r, err) ck_want(__FILE__, __LINE__, name, r, err)

/* --------------------------------------------------------------- the trace */

/* "case NAME: " and the rest from FMT. */
__attribute__((format(printf, 2, 3))) void tracef(const char *name, const char *fmt, ...);
/* "case NAME: ok" or "case NAME: fail EXXX". */
void trace(const char *name, struct ck_res r);
/* "case NAME: ok EXTRA" on success, else "case NAME: fail EXXX". */
__attribute__((format(printf, 3, 4))) void trace_ok(const char *name, struct ck_res r,
                                                    const char *fmt, ...);

/* -------------------------------------------------------------- registry */

#define CK_MAX_IDS 16384

/* The segments to remove: slots hold id + 1 (0 = empty), ck_nids used. */
extern int ck_ids[CK_MAX_IDS];
extern unsigned char ck_crash_only[CK_MAX_IDS];
extern int ck_nids;
/* The process that owns the registry (ck_init's caller). */
extern pid_t ck_owner;

/* Remove ID at exit and on a fatal signal. */
void ck_track(int id);
/* Remove ID only on a fatal signal (segments a program leaks on purpose). */
void ck_track_crash_only(int id);

/* A program's own cleanup (segments it tracks outside the registry, such
 * as the stress tests' live tables), run with the registry's: at exit and
 * from the fatal-signal handlers, in the owning process only. It must be
 * async-signal-safe. */
extern void (*ck_cleanup_hook)(void);

/* Removes the registry's segments (AT_EXIT: not the crash-only ones) and
 * the temp file, in the owning process only. Async-signal-safe. */
void ck_remove_all(int at_exit);

/* shmget through the libc name, or the raw syscall, recording the id. */
int ck_shmget(key_t key, size_t size, int flg);
int ck_raw_shmget(key_t key, size_t size, int flg);
/* A new private segment, made with the raw syscall: a fixture, not a case. */
int ck_fixture(size_t size, int mode);
/* A key nobody else uses: from our pid and a small number N < 64. */
key_t ck_key(unsigned n, int negative);
/* A per-run temp file (unlinked at exit). */
const char *ck_tmpfile(void);

/* --------------------------------------------------------------- helpers */

/* An unsigned number from a /proc file such as /proc/sys/kernel/shmmax. */
unsigned long long ck_proc_ull(const char *path);
/* IPC_STAT by the raw syscall. */
int ck_stat(int id, struct shmid_ds *ds);
/* nattch by the raw syscall, -1 if the segment is gone. */
long ck_nattch(int id);
/* Compare the fields of two IPC_STAT results. */
int ck_same_ds(const char *file, int line, const char *name, const struct shmid_ds *a,
               const struct shmid_ds *b);
#define SAME_DS(name, a, b) ck_same_ds(__FILE__, __LINE__, name, a, b)

void ck_flush_all(void);
/* SHMGUARD_TIMEOUT_SCALE (default 1), which every timeout is multiplied by. */
int ck_scale(void);
/* In a child forked while other threads ran: no leak check at its exit
 * (LeakSanitizer, valgrind; a no-op otherwise). */
void ck_child_of_threads(void);
/* The number of threads of this process. */
int ck_threads(void);
/* fork, flushing stdio first; exits on failure. */
pid_t ck_fork(void);
/* Wait for PID up to TIMEOUT_MS (times ck_scale()); kill it on expiry.
 * Returns the wait status or -1 on timeout. */
int ck_wait(pid_t pid, int timeout_ms);
/* The child's exit code, or -SIGNAL, or -1000 for a timeout. */
int ck_child_code(pid_t pid, int timeout_ms);
/* Permissions of the mapping starting at ADDR ("rw-s"), or "none". */
const char *ck_map_perms(const void *addr);
/* A free, page-aligned address range of LEN bytes. */
char *ck_free_range(size_t len);

/* ---------------------------------------------------- options and logs */

/* Segments in the kernel that this process created. */
int ck_own_segments(void);
/* The whole file at PATH, NUL-terminated, malloc'd (its length in *LEN_OUT);
 * NULL if unreadable. */
char *ck_slurp_len(const char *path, size_t *len_out);
char *ck_slurp(const char *path);
/* A per-run directory (mode 01777), emptied and removed at exit. */
const char *ck_tmpdir(void);
/* The path of NAME in the per-run directory, written into BUF. */
const char *ck_tmp_name(char *buf, size_t len, const char *name);
/* This process's SHMGUARD_OPTIONS followed by EXTRA (":"-joined). */
const char *ck_options_plus(char *buf, size_t len, const char *extra);
/* This program's path, for exec'ing it again. */
const char *ck_self_exe(void);
/* Runs this program again with ARGV and SHMGUARD_OPTIONS=OPTS (unset if
 * NULL), stdout and stderr to the files OUT and ERR; ck_child_code() of it
 * (killed after TIMEOUT_MS; ck_run_self: 40 s), its pid in *PID_OUT. */
int ck_run_self_timeout(char *const argv[], const char *opts, const char *out, const char *err,
                        pid_t *pid_out, int timeout_ms);
int ck_run_self(char *const argv[], const char *opts, const char *out, const char *err,
                pid_t *pid_out);
/* log_path=DIR/l.%p.jsonl (after this process's own options). */
const char *ck_log_opts(char *buf, size_t len, const char *dir);
/* The log file of PID in DIR. */
const char *ck_log_file(char *buf, size_t len, const char *dir, long pid);
/* Lines of TEXT, each "==N== shmguard: ..." without a carriage return;
 * their number, or -1 (FAILed with WHAT). */
int ck_shmguard_lines(const char *what, const char *text);
/* Lines of TEXT that contain every one of the N needles. */
int ck_lines_with(const char *text, const char *const *needles, int n);
/* The number after "KEY " at the start of a line of TEXT, or -1. */
long ck_field(const char *text, const char *key);

/* A child run by ck_run_child: its exit code (negative: killed by that
 * signal), pid, stdout and stderr (malloc'd; ck_child_free frees them). */
struct ck_child {
    int code;
    pid_t pid;
    char *out, *err;
};

/* Runs this program again with ARGV and SHMGUARD_OPTIONS=OPTS (ck_run_self)
 * and collects what it printed. */
struct ck_child ck_run_child(char *const argv[], const char *opts);
void ck_child_free(struct ck_child *c);
/* Empties DIR (files only) and removes it. */
void ck_remove_dir(const char *dir);
/* Lines of TEXT that begin "==N== shmguard: " followed by REST; or, if
 * REST is NULL, lines that contain NEEDLE. */
int ck_count_lines(const char *text, const char *rest, const char *needle);
/* The extension function NAME (dlsym); exits if it is not there. */
void *ck_sym(const char *name);
/* shmguard_last_error() of this thread, "(null)" for NULL. */
const char *ck_last_error(void);

/* -------------------------------------------------------- audit logs */

/* A strict JSON (RFC 8259) validator for one line, which also captures
 * what the tests count: the top-level members "event", "call" (strings),
 * "pid" (number), "errno" (string: the call failed) and "forked". */
struct ck_json {
    const unsigned char *p, *end;
    int depth;
    char event[16], call[16];
    long pid;
    int failed, forked;
};

/* Whether LINE (LEN bytes, no newline) is one JSON object; its captured
 * members in *J. */
int ck_json_line(const char *line, size_t len, struct ck_json *j);

/* The calls a log counts, in this order. */
extern const char *const ck_call_names[5];

/* What one log file holds. */
struct ck_log {
    char name[128];
    long pid;      /* of the first event */
    int events;    /* lines that are JSON objects */
    int bad;       /* lines that are not (the first in bad_line) */
    int starts, exits, findings;
    int start_first; /* the first event is the start event */
    int exit_last;   /* an exit event, and nothing after it */
    int forked;      /* the start event says "forked":true */
    int unterminated; /* the last line has no newline */
    int other_pid;   /* events of another pid than the first's */
    long calls[5];   /* call events, by ck_call_names */
    long failed;     /* call events with an errno */
    char bad_line[200];
};

/* Reads the log file PATH into *LOG; 0 if it cannot be read. */
int ck_log_read(const char *path, struct ck_log *log);
/* Every file of DIR whose name begins with PREFIX, read into a malloc'd
 * array (*LOGS); how many. */
int ck_logs_read(const char *dir, const char *prefix, struct ck_log **logs);
/* The log of PID among LOGS, or NULL. */
struct ck_log *ck_log_of(struct ck_log *logs, int n, long pid);
/* The sum of a log's call events. */
long ck_log_calls(const struct ck_log *log);
/* The log must be whole (every line JSON, one start event first, one exit
 * event last if WANT_EXIT, one pid, a final newline); else FAIL with WHAT
 * and 0. */
int ck_log_whole(const char *what, const struct ck_log *log, int want_exit);

/* ------------------------------------------------------------ init/finish */

/* SHMGUARD_EXPECT=1: the libc names must resolve to libshmguard. */
int ck_expect_shmguard(void);
/* Exits with a FAIL if they do not resolve as SHMGUARD_EXPECT says. */
void ck_check_mode(void);
/* First thing in main: the registry's owner, cleanup at exit and on fatal
 * signals, line-buffered stdout, a 55 s alarm, the mode check. */
void ck_init(void);
/* In a forked child: default SIGSEGV/SIGBUS actions, a 20 s alarm. */
void ck_child_defaults(void);
/* In a forked child: SIGSEGV/SIGBUS as the program started with them
 * (shmguard's guard-page reporter, if any), no core file, a 20 s alarm. */
void ck_child_start_signals(void);
/* main's return value: 1 if a check failed or no case ran. */
int ck_finish(void);

#endif /* SHMGUARD_CHECK_H */
