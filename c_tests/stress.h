/* stress.h: what the x_stress_*.c programs share (defined in stress.c,
 * linked into those programs only, next to check.c).
 *
 * Each program runs one SCENARIO (its first argument) for
 * SHMGUARD_STRESS_SECONDS (default 1; `make stress` sets more). A run named
 * SCENARIO+WORD (churn+guard) is SCENARIO: the runner gives it other
 * options. Deadlocks: a watchdog thread fails the run when a thread stops
 * making progress for 6 s, and a child that has not ended after 3 s is
 * killed, each naming the system call it is blocked in. Segments made by
 * the threads live in a table (live_ids) that the cleanup hook removes if
 * the program dies; the children report through their exit status. */
#ifndef SHMGUARD_STRESS_H
#define SHMGUARD_STRESS_H

#include "check.h"

#include <pthread.h>
#include <sys/time.h>

#define PAGE 4096UL
#define WORKERS 4
#define SLOTS 8
#define MAGIC 0x5a
/* A thread that makes no progress for STALL_MS is deadlocked; a child that
 * has not ended after CHILD_MS is too. Both scale with
 * SHMGUARD_TIMEOUT_SCALE (for slow runs, such as under valgrind). */
#define STALL_MS 6000
#define CHILD_MS 3000

/* How long each phase runs (SHMGUARD_STRESS_SECONDS). */
extern double seconds;
/* The program's name, for the image it execs and for messages. */
extern const char *stress_program;
/* main's arguments (for the internal scenarios that take more). */
extern int stress_argc;
extern char **stress_argv;

/* The extension functions, found with dlsym (load_api). */
extern ssize_t (*api_size)(const void *);
extern size_t (*api_leak_count)(void);
extern int (*api_leak_report)(int);
void load_api(void);

double now_s(void);
void sleep_us(long us);

/* ------------------------------------------------------------ sanitizers */

/* GCC 12's AddressSanitizer does not hold its allocator's locks across
 * fork: a child forked while another thread allocates can wait forever in
 * its first malloc. Built with ASan, no child that allocates is forked
 * while allocating threads run (children that exec at once still are). */
#if defined(__SANITIZE_ADDRESS__)
#define FORK_WITH_THREADS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FORK_WITH_THREADS 0
#endif
#endif
#ifndef FORK_WITH_THREADS
#define FORK_WITH_THREADS 1
#endif

/* (A child forked while threads run skips the leak checkers: ck_fork.) */

/* ------------------------------------------------------------ the watchdog */

/* Progress counters: [0] the main thread, [1..WORKERS] the workers. A
 * counter is watched while its thread is active. */
#define WATCHED (WORKERS + 1)
/* What the main thread does, for the watchdog's message. */
extern const char *volatile main_phase;
void watch(int i);
void unwatch(int i);
void tick(int i);
/* Starts the watchdog with every signal blocked in it (and watches the
 * main thread); stop_watchdog stops it. */
void start_watchdog(void);
void stop_watchdog(void);

/* ------------------------------------------------ segments of the threads */

/* Segments the workers created and have not marked yet: id + 1, 0 = free.
 * The cleanup hook (remove_live) removes them if the program ends early. */
extern int live_ids[WORKERS * SLOTS + 8];
void remove_live(void);
/* The signals loop's one temporary segment, removed by the cleanup hook if
 * the program dies between its shmget and its IPC_RMID. */
#define TEMP_SLOT (WORKERS * SLOTS)

/* Call counters by kind, as the log counts them (ck_call_names order). */
enum { C_GET, C_AT, C_DT, C_CTL };

/* ------------------------------------------------------------- children */

/* Waits for child PID up to CHILD_MS (within the watchdog's limit). On a
 * timeout, says which system call the child is blocked in, then kills it.
 * Returns its exit code, -SIGNAL, or -1000 for a timeout. */
int wait_child(pid_t pid, const char *what);
/* SYSV mappings of SHMID in /proc/self/maps (-1: all of them). */
int maps_count(int shmid);
/* Runs this program with ARG and log_path in the per-run directory; the
 * child's stdout in OUT (malloc'd), its pid in *PID. Returns its code. */
int run_logged(const char *arg, char **out, pid_t *pid);

/* ------------------------------------------------------------------- main */

/* A scenario: NAME, the function that runs it; BARE: an image a scenario
 * execs, run after ck_init alone (no watchdog settings, no trace line). */
struct stress_scenario {
    const char *name;
    int (*run)(void);
    int bare;
};

/* The programs' main: runs the scenario argv[1] names (up to a '+') from
 * SCENARIOS (ended by a NULL name) in PROGRAM. */
int stress_main(int argc, char **argv, const char *program,
                const struct stress_scenario *scenarios);

#endif /* SHMGUARD_STRESS_H */
