/* x_log.c SCENARIO: the audit log must never be the reason a program dies
 * or a call changes its result, whatever happens to the log file, the
 * process or its limits. Each scenario runs children with log_path set;
 * a child checks every call against the raw system call and reports
 * through its exit status (and small files); the parent checks the logs.
 *
 *   outside    the program's own log is truncated (as logrotate's
 *              copytruncate does), renamed, replaced and unlinked while it
 *              runs; also with SIGBUS blocked and with a SIGBUS handler of
 *              its own: it never dies, results unchanged, no warning.
 *   pidns      two processes that are both pid 1 (each in a PID namespace of
 *              its own, /proc mounted for it) with the same log_path: two
 *              files (l.1.jsonl and l.1.1.jsonl), each whole, nobody killed,
 *              though the first exits while the second is still logging.
 *   forkraw    a child made by _Fork() and one by a raw clone(SIGCHLD)
 *              (neither runs the fork handlers) logs to a file of its own
 *              under its own pid, and its exit leaves the parent's log
 *              alone: the parent logs on, its log whole and its own.
 *   exec_chain a process that execs itself 4 times, each image making twice
 *              the calls of the one before (360 to 5,760; each image writes
 *              more than the file held when it started): every event of
 *              every image is in the pid's one log, after 5 start events.
 *   fsize      RLIMIT_FSIZE lowered to 64 KiB (setrlimit) after the log is
 *              open: the log stops before the limit with one warning; no
 *              SIGXFSZ, results unchanged.
 *   taken      the log's name is taken before the first call: by a file
 *              that user nobody made (mode 0666, as root), by a stale file
 *              of another process with the same pid, by a planted symlink:
 *              none of them is written, the log is the next free name
 *              (l.PID.3.jsonl), mode 0600; the image after exec goes on
 *              in that same file.
 *   aslimit    RLIMIT_AS at the process's size + 1100 MiB (like ulimit -v):
 *              a 700 MiB segment attaches with the log on, as with glibc.
 *   ext2       the log on a small ext2 file system (no fallocate) in a
 *              private mount namespace, filled during the run: one
 *              warning, results unchanged, the program not killed.
 *
 * Runs that need root (pidns, ext2) print "skip:" with the reason when it
 * is missing. */
#include "check.h"

#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>

#define PAGE 4096UL

/* ------------------------------------------------------------ the workload */

static long made;

/* ROUNDS rounds of 9 calls, each compared with the raw system call. */
static void
workload(int rounds)
{
    for (int i = 0; i < rounds; i++) {
        made++;
        int id = ck_shmget(IPC_PRIVATE, 5000, IPC_CREAT | 0600);
        if (id < 0) {
            FAIL("workload shmget: %s", ck_errname(errno));
            return;
        }
        made++;
        struct ck_res at = RES(shmat(id, NULL, 0));
        if (!WANT("workload shmat", at, 0)) {
            shmctl(id, IPC_RMID, NULL);
            return;
        }
        char *p = (char *)at.ret;
        p[4999] = 7;
        struct shmid_ds lib, raw;
        made++;
        struct ck_res a = RES(shmctl(id, IPC_STAT, &lib));
        struct ck_res b = RES(ck_stat(id, &raw));
        if (SAME("workload IPC_STAT", a, b) && a.ret == 0)
            SAME_DS("workload IPC_STAT", &lib, &raw);
        made++;
        WANT("workload shmdt", RES(shmdt(p)), 0);
        made++;
        a = RES(shmdt(p));
        SAME("workload shmdt again", a, RES(raw_shmdt(p)));
        made++;
        a = RES(shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600));
        SAME("workload shmget size 0", a, RES(raw_shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600)));
        made++;
        a = RES(shmat(-1, NULL, 0));
        SAME("workload shmat(-1)", a, RES(raw_shmat(-1, NULL, 0)));
        made++;
        WANT("workload IPC_RMID", RES(shmctl(id, IPC_RMID, NULL)), 0);
        made++;
        CHECK(ftok("/", 'x') != -1);
    }
}

/* ---------------------------------------------------------------- helpers */

static const char *
subdir(char *buf, size_t len, const char *name)
{
    ck_tmp_name(buf, len, name);
    if (mkdir(buf, 0700) != 0) {
        FAIL("mkdir %s: %s", buf, ck_errname(errno));
        exit(1);
    }
    return buf;
}

/* The child exited 0 with exactly WARN shmguard lines (each about the log)
 * on stderr. */
static void
child_ok(const char *what, const struct ck_child *c, int warn)
{
    if (c->code != 0)
        FAIL("%s: the child ended with %d (%s); its stderr:\n%s", what, c->code,
             c->code < 0 ? strsignal(-c->code) : "exit status", c->err);
    int n = ck_shmguard_lines(what, c->err);
    if (n != warn || ck_count_lines(c->err, NULL, "audit log") != warn)
        FAIL("%s: %d lines on stderr, %d warning(s) about the log expected:\n%s", what, n, warn,
             c->err);
}

/* "KEY N" from TEXT, -1 if missing. */
static long
field_long(const char *text, const char *key)
{
    const char *at = strstr(text, key);
    long v = -1;
    if (at == NULL || sscanf(at + strlen(key), " %ld", &v) != 1)
        return -1;
    return v;
}

/* Writes TEXT to the file PATH. */
static void
put(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        _exit(97);
    close(fd);
}

/* Waits (up to 20 s) for the file PATH to exist. */
static int
await(const char *path)
{
    for (int i = 0; i < 4000; i++) {
        if (access(path, F_OK) == 0)
            return 1;
        usleep(5000);
    }
    return 0;
}

/* The log LOG must be whole, of PID, with CALLS call events and an exit. */
static void
check_whole(const char *what, const char *path, long pid, long calls)
{
    struct ck_log log;
    if (!ck_log_read(path, &log)) {
        FAIL("%s: no log %s", what, path);
        return;
    }
    ck_log_whole(what, &log, 1);
    if (log.pid != pid)
        FAIL("%s: log %s is of pid %ld, not %ld", what, log.name, log.pid, pid);
    if (ck_log_calls(&log) != calls)
        FAIL("%s: log %s has %ld call events for %ld calls", what, log.name, ck_log_calls(&log),
             calls);
}

/* ---------------------------------------------------------------- outside */

static volatile sig_atomic_t got_sigbus;

static void
on_sigbus(int sig)
{
    (void)sig;
    got_sigbus = 1;
    /* returning would fault again at once: report and leave */
    _exit(77);
}

/* outside_child MODE DIR: MODE plain, blocked (SIGBUS blocked) or handler
 * (a SIGBUS handler of the program's own). */
static int
scenario_outside_child(const char *mode, const char *dir)
{
    if (strcmp(mode, "blocked") == 0) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGBUS);
        sigprocmask(SIG_BLOCK, &set, NULL);
    } else if (strcmp(mode, "handler") == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_sigbus;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGBUS, &sa, NULL);
    }
    char log[512], moved[600], other[600];
    ck_log_file(log, sizeof log, dir, (long)getpid());
    snprintf(moved, sizeof moved, "%s.moved", log);
    snprintf(other, sizeof other, "%s/other", dir);
    workload(20);
    /* an administrator (or logrotate's copytruncate): : > LOG */
    if (truncate(log, 0) != 0)
        return 10;
    workload(20);
    if (rename(log, moved) != 0)
        return 11;
    workload(20);
    /* replaced: another file renamed over it */
    put(other, "another file\n");
    if (rename(other, moved) != 0)
        return 12;
    workload(20);
    if (unlink(moved) != 0)
        return 13;
    workload(20);
    if (got_sigbus)
        return 14;
    return ck_failures == 0 ? 0 : 1;
}

static int
scenario_outside(void)
{
    const char *modes[] = {"plain", "blocked", "handler"};
    for (int m = 0; m < 3; m++) {
        char dir[256], opts[1024], what[64];
        snprintf(what, sizeof what, "outside %s", modes[m]);
        subdir(dir, sizeof dir, modes[m]);
        char *argv[] = {"x_log", "outside_child", (char *)modes[m], dir, NULL};
        struct ck_child c = ck_run_child(argv, ck_log_opts(opts, sizeof opts, dir));
        child_ok(what, &c, 0);
        tracef("outside", "ok mode=%s code=%d", modes[m], c.code);
        ck_child_free(&c);
        ck_remove_dir(dir);
    }
    return ck_finish();
}

/* ------------------------------------------------------------------ pidns */

/* pidns_child ROLE DIR, as pid 1 of a PID namespace: "a" logs a little,
 * then exits while "b" still logs; each writes its call count. */
static int
scenario_pidns_child(const char *role, const char *dir)
{
    char path[512];
    if (getpid() != 1)
        return 20;
    if (strcmp(role, "a") == 0) {
        workload(3);
        snprintf(path, sizeof path, "%s/a.ready", dir);
        put(path, "");
        snprintf(path, sizeof path, "%s/b.ready", dir);
        if (!await(path))
            return 21;
    } else {
        snprintf(path, sizeof path, "%s/a.ready", dir);
        if (!await(path))
            return 22;
        workload(3);
        snprintf(path, sizeof path, "%s/b.ready", dir);
        put(path, "");
        /* a has exited (its exit check ran) before b logs on */
        snprintf(path, sizeof path, "%s/a.done", dir);
        if (!await(path))
            return 23;
        workload(40);
    }
    char text[64];
    snprintf(text, sizeof text, "calls %ld\n", made);
    snprintf(path, sizeof path, "%s/%s.calls", dir, role);
    put(path, text);
    return ck_failures == 0 ? 0 : 1;
}

/* Forks a process that becomes pid 1 of a new PID namespace (with its own
 * /proc, in a private mount namespace) running pidns_child ROLE DIR. */
static pid_t
spawn_pid1(const char *role, const char *dir, const char *opts)
{
    pid_t outer = ck_fork();
    if (outer != 0)
        return outer;
    if (unshare(CLONE_NEWPID | CLONE_NEWNS) != 0 ||
        mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0)
        _exit(30);
    pid_t one = fork();
    if (one == 0) {
        if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
            _exit(31);
        setenv("SHMGUARD_OPTIONS", opts, 1);
        char *argv[] = {"x_log", "pidns_child", (char *)role, (char *)dir, NULL};
        execv(ck_self_exe(), argv);
        _exit(32);
    }
    int st;
    if (one < 0 || waitpid(one, &st, 0) != one)
        _exit(33);
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

static int
scenario_pidns(void)
{
    if (geteuid() != 0) {
        printf("skip: pidns needs root (unshare --pid, mount /proc)\n");
        tracef("pidns", "ok skipped=1");
        return ck_finish();
    }
    char dir[256], opts[1024], path[512];
    subdir(dir, sizeof dir, "pidns");
    ck_log_opts(opts, sizeof opts, dir);
    pid_t a = spawn_pid1("a", dir, opts);
    pid_t b = spawn_pid1("b", dir, opts);
    int code_a = ck_child_code(a, 30000);
    snprintf(path, sizeof path, "%s/a.done", dir);
    put(path, "");
    int code_b = ck_child_code(b, 30000);
    if (code_a != 0 || code_b != 0)
        FAIL("pid 1 processes ended with %d and %d (128+7: SIGBUS)", code_a, code_b);
    snprintf(path, sizeof path, "%s/a.calls", dir);
    char *ta = ck_slurp(path);
    snprintf(path, sizeof path, "%s/b.calls", dir);
    char *tb = ck_slurp(path);
    long calls_a = ta == NULL ? -1 : field_long(ta, "calls");
    long calls_b = tb == NULL ? -1 : field_long(tb, "calls");
    /* two files of pid 1: the first created gets the name, the other the
     * next one; which is which depends on who logged first (a) */
    char first[512], second[512];
    snprintf(first, sizeof first, "%s/l.1.jsonl", dir);
    snprintf(second, sizeof second, "%s/l.1.1.jsonl", dir);
    check_whole("pidns a", first, 1, calls_a);
    check_whole("pidns b", second, 1, calls_b);
    struct ck_log *logs;
    int n = ck_logs_read(dir, "l.", &logs);
    CHECK_EQ(n, 2);
    free(logs);
    free(ta);
    free(tb);
    tracef("pidns", "ok codes=%d,%d", code_a, code_b);
    ck_remove_dir(dir);
    return ck_finish();
}

/* ---------------------------------------------------------------- forkraw */

/* forkraw_child KIND DIR: logs, then makes a child with _Fork() or a raw
 * clone(SIGCHLD), which logs and exits normally; then logs on. */
static int
scenario_forkraw_child(const char *kind)
{
    workload(3);
    pid_t kid;
    if (strcmp(kind, "_Fork") == 0)
        kid = _Fork();
    else
        kid = (pid_t)syscall(SYS_clone, (long)SIGCHLD, 0L, 0L, 0L, 0L);
    if (kid < 0)
        return 40;
    if (kid == 0) {
        made = 0;
        workload(3);
        exit(ck_failures == 0 ? 0 : 41);
    }
    int st;
    if (waitpid(kid, &st, 0) != kid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return 42;
    workload(40);
    printf("calls %ld\nkid %d\n", made, (int)kid);
    return ck_failures == 0 ? 0 : 1;
}

static int
scenario_forkraw(void)
{
    const char *kinds[] = {"_Fork", "clone"};
    for (int k = 0; k < 2; k++) {
        char dir[256], opts[1024], path[512], what[64];
        subdir(dir, sizeof dir, kinds[k]);
        char *argv[] = {"x_log", "forkraw_child", (char *)kinds[k], dir, NULL};
        struct ck_child c = ck_run_child(argv, ck_log_opts(opts, sizeof opts, dir));
        snprintf(what, sizeof what, "forkraw %s", kinds[k]);
        child_ok(what, &c, 0);
        long calls = field_long(c.out, "calls"), kid = field_long(c.out, "kid");
        snprintf(what, sizeof what, "%s parent", kinds[k]);
        check_whole(what, ck_log_file(path, sizeof path, dir, c.pid), c.pid, calls);
        snprintf(what, sizeof what, "%s child", kinds[k]);
        check_whole(what, ck_log_file(path, sizeof path, dir, kid), kid, 27);
        struct ck_log log;
        if (ck_log_read(path, &log) && !log.forked)
            FAIL("%s: the start event does not say forked", what);
        tracef("forkraw", "ok kind=%s code=%d", kinds[k], c.code);
        ck_child_free(&c);
        ck_remove_dir(dir);
    }
    return ck_finish();
}

/* ------------------------------------------------------------- exec_chain */

#define CHAIN_IMAGES 5
#define CHAIN_ROUNDS 40

/* chain N: CHAIN_ROUNDS << (CHAIN_IMAGES - 1 - N) rounds, then exec with
 * N-1 until 0. */
static int
scenario_chain(int n)
{
    if (n < 0 || n >= CHAIN_IMAGES)
        return 51;
    workload(CHAIN_ROUNDS << (CHAIN_IMAGES - 1 - n));
    if (ck_failures != 0)
        return 1;
    if (n > 0) {
        char next[16];
        snprintf(next, sizeof next, "%d", n - 1);
        char *argv[] = {"x_log", "chain", next, NULL};
        execv(ck_self_exe(), argv);
        return 50;
    }
    return 0;
}

static int
scenario_exec_chain(void)
{
    char dir[256], opts[1024], path[512], n[16];
    subdir(dir, sizeof dir, "chain");
    snprintf(n, sizeof n, "%d", CHAIN_IMAGES - 1);
    char *argv[] = {"x_log", "chain", n, NULL};
    struct ck_child c = ck_run_child(argv, ck_log_opts(opts, sizeof opts, dir));
    child_ok("exec_chain", &c, 0);
    struct ck_log log;
    long want = ((1L << CHAIN_IMAGES) - 1) * CHAIN_ROUNDS * 9L;
    if (!ck_log_read(ck_log_file(path, sizeof path, dir, c.pid), &log)) {
        FAIL("exec_chain: no log %s", path);
    } else {
        if (log.bad != 0 || !log.start_first || log.other_pid != 0 || !log.exit_last ||
            log.unterminated)
            FAIL("exec_chain: log %s: %d bad lines (first: %s), start first %d, %d of another "
                 "pid, exit last %d, unterminated %d",
                 log.name, log.bad, log.bad_line, log.start_first, log.other_pid, log.exit_last,
                 log.unterminated);
        if (log.starts != CHAIN_IMAGES || ck_log_calls(&log) != want)
            FAIL("exec_chain: %d images made %ld calls; the log has %d start events and %ld "
                 "call events",
                 CHAIN_IMAGES, want, log.starts, ck_log_calls(&log));
    }
    tracef("exec_chain", "ok code=%d", c.code);
    ck_child_free(&c);
    ck_remove_dir(dir);
    return ck_finish();
}

/* ------------------------------------------------------------------ fsize */

#define FSIZE_LIMIT (64L << 10)

static int
scenario_fsize_child(const char *dir)
{
    (void)dir;
    /* The log is open (and the limit unlimited) before the limit is
     * lowered: a limit read only at open would miss it. */
    workload(2);
    struct rlimit rl;
    getrlimit(RLIMIT_FSIZE, &rl);
    rl.rlim_cur = FSIZE_LIMIT;
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
        return 60;
    workload(80);
    printf("calls %ld\n", made);
    return ck_failures == 0 ? 0 : 1;
}

static int
scenario_fsize(void)
{
    char dir[256], opts[1024], path[512];
    subdir(dir, sizeof dir, "fsize");
    char *argv[] = {"x_log", "fsize_child", dir, NULL};
    struct ck_child c = ck_run_child(argv, ck_log_opts(opts, sizeof opts, dir));
    /* 153 = 128 + SIGXFSZ */
    child_ok("fsize", &c, 1);
    if (ck_count_lines(c.err, NULL, "RLIMIT_FSIZE") != 1)
        FAIL("fsize: the warning does not name the limit:\n%s", c.err);
    struct stat st;
    struct ck_log log;
    ck_log_file(path, sizeof path, dir, c.pid);
    if (stat(path, &st) != 0 || !ck_log_read(path, &log)) {
        FAIL("fsize: no log %s", path);
    } else {
        if (st.st_size > FSIZE_LIMIT)
            FAIL("fsize: the log has %lld bytes, past the limit", (long long)st.st_size);
        if (log.bad != 0 || log.unterminated || ck_log_calls(&log) < 1)
            FAIL("fsize: log %s: %d bad lines, unterminated %d, %ld calls", log.name, log.bad,
                 log.unterminated, ck_log_calls(&log));
    }
    tracef("fsize", "ok code=%d", c.code);
    ck_child_free(&c);
    ck_remove_dir(dir);
    return ck_finish();
}

/* ------------------------------------------------------------------ taken */

static const char stale[] =
    "{\"v\":1,\"event\":\"start\",\"pid\":%ld,\"ppid\":1,\"tid\":%ld,\"ts_ns\":1,"
    "\"boot_id\":null,\"pid_ns\":1,\"start_time\":1,\"pidfd_ino\":1,\"argv\":[]}\n";

/* taken_child DIR: takes the first three names of its own log, then logs;
 * then execs taken_image DIR, which logs too. */
static int
scenario_taken_child(const char *dir)
{
    long me = (long)getpid();
    char path[512], text[400];
    snprintf(path, sizeof path, "%s/l.%ld.jsonl", dir, me);
    if (geteuid() == 0) {
        /* another user's file, writable by all */
        pid_t kid = fork();
        if (kid == 0) {
            if (setgid(65534) != 0 || setuid(65534) != 0)
                _exit(2);
            int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0666);
            _exit(fd >= 0 && fchmod(fd, 0666) == 0 ? 0 : 3);
        }
        int st;
        if (waitpid(kid, &st, 0) != kid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return 90;
    } else {
        put(path, "");
    }
    /* a stale file of the same pid (an earlier boot, another namespace) */
    snprintf(path, sizeof path, "%s/l.%ld.1.jsonl", dir, me);
    snprintf(text, sizeof text, stale, me, me);
    put(path, text);
    /* a planted symlink */
    char victim[512];
    snprintf(victim, sizeof victim, "%s/victim", dir);
    put(victim, "victim\n");
    snprintf(path, sizeof path, "%s/l.%ld.2.jsonl", dir, me);
    if (symlink(victim, path) != 0)
        return 91;
    workload(5);
    char *argv[] = {"x_log", "taken_image", (char *)dir, NULL};
    execv(ck_self_exe(), argv);
    return 92;
}

static int
scenario_taken_image(void)
{
    workload(5);
    return ck_failures == 0 ? 0 : 1;
}

static int
scenario_taken(void)
{
    char dir[256], opts[1024], path[512], text[400];
    ck_tmp_name(dir, sizeof dir, "taken");
    /* sticky and writable by all, as /tmp */
    if (mkdir(dir, 0700) != 0 || chmod(dir, 01777) != 0) {
        FAIL("mkdir %s: %s", dir, ck_errname(errno));
        return ck_finish();
    }
    char *argv[] = {"x_log", "taken_child", dir, NULL};
    struct ck_child c = ck_run_child(argv, ck_log_opts(opts, sizeof opts, dir));
    child_ok("taken", &c, 0);
    long pid = (long)c.pid;
    struct stat st;
    snprintf(path, sizeof path, "%s/l.%ld.jsonl", dir, pid);
    char *got = ck_slurp(path);
    if (got == NULL || got[0] != '\0' || stat(path, &st) != 0 ||
        st.st_uid != (geteuid() == 0 ? 65534u : geteuid()))
        FAIL("taken: the file another user made was written: \"%.200s\"",
             got == NULL ? "(unreadable)" : got);
    free(got);
    snprintf(path, sizeof path, "%s/l.%ld.1.jsonl", dir, pid);
    snprintf(text, sizeof text, stale, pid, pid);
    got = ck_slurp(path);
    if (got == NULL || strcmp(got, text) != 0)
        FAIL("taken: the stale file was written: \"%.300s\"", got == NULL ? "(unreadable)" : got);
    free(got);
    snprintf(path, sizeof path, "%s/victim", dir);
    got = ck_slurp(path);
    if (got == NULL || strcmp(got, "victim\n") != 0)
        FAIL("taken: the symlink's target was written: \"%.200s\"",
             got == NULL ? "(unreadable)" : got);
    free(got);
    snprintf(path, sizeof path, "%s/l.%ld.3.jsonl", dir, pid);
    struct ck_log log;
    if (stat(path, &st) != 0 || !ck_log_read(path, &log)) {
        FAIL("taken: no log %s", path);
    } else {
        if ((st.st_mode & 0777) != 0600 || st.st_uid != geteuid())
            FAIL("taken: %s has mode %o, owner %d", path, st.st_mode & 0777, (int)st.st_uid);
        if (log.bad != 0 || log.starts != 2 || !log.start_first || !log.exit_last ||
            log.other_pid != 0 || log.pid != pid || ck_log_calls(&log) != 90)
            FAIL("taken: log %s: %d bad, %d starts, pid %ld, %ld calls (want 2 starts, 90 calls "
                 "of pid %ld)",
                 log.name, log.bad, log.starts, log.pid, ck_log_calls(&log), pid);
    }
    tracef("taken", "ok code=%d", c.code);
    ck_child_free(&c);
    ck_remove_dir(dir);
    return ck_finish();
}

/* ---------------------------------------------------------------- aslimit */

#define BIG (700UL << 20)

static long
vm_size_kib(void)
{
    char *text = ck_slurp("/proc/self/status");
    long kib = text == NULL ? -1 : field_long(text, "VmSize:");
    free(text);
    return kib;
}

static int
scenario_as_child(void)
{
    long kib = vm_size_kib();
    if (kib <= 0)
        return 70;
    /* glibc fits a 700 MiB attachment under this limit with room to spare */
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = ((rlim_t)kib << 10) + (1100UL << 20);
    if (setrlimit(RLIMIT_AS, &rl) != 0)
        return 71;
    int id = ck_shmget(IPC_PRIVATE, BIG, IPC_CREAT | SHM_NORESERVE | 0600);
    if (id < 0)
        return 72;
    struct ck_res at = RES(shmat(id, NULL, 0));
    int ok = WANT("shmat 700 MiB under RLIMIT_AS", at, 0);
    if (ok)
        WANT("shmdt", RES(shmdt((void *)at.ret)), 0);
    WANT("IPC_RMID", RES(shmctl(id, IPC_RMID, NULL)), 0);
    return ck_failures == 0 ? 0 : 1;
}

static int
scenario_aslimit(void)
{
    char dir[256], opts[1024];
    subdir(dir, sizeof dir, "aslimit");
    char *argv[] = {"x_log", "as_child", NULL};
    struct ck_child c = ck_run_child(argv, ck_log_opts(opts, sizeof opts, dir));
    child_ok("aslimit", &c, 0);
    tracef("aslimit", "ok code=%d", c.code);
    ck_child_free(&c);
    ck_remove_dir(dir);
    return ck_finish();
}

/* ------------------------------------------------------------------- ext2 */

/* ext2_child DIR IMAGE: in a private mount namespace, a 1 MiB ext2 file
 * system from IMAGE mounted on DIR and filled to 40 KiB free, then this
 * program again with its log there. */
static int
scenario_ext2_child(const char *dir, const char *image, const char *opts)
{
    char cmd[1200];
    if (unshare(CLONE_NEWNS) != 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0)
        return 80;
    snprintf(cmd, sizeof cmd, "mount -o loop -t ext2 '%s' '%s'", image, dir);
    if (system(cmd) != 0)
        return 81;
    char filler[512];
    snprintf(filler, sizeof filler, "%s/filler", dir);
    int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    static char block[1024];
    memset(block, 'f', sizeof block);
    for (;;) {
        struct statvfs sv;
        if (fd < 0 || fstatvfs(fd, &sv) != 0)
            return 82;
        if ((unsigned long long)sv.f_bavail * sv.f_frsize <= 40 << 10)
            break;
        if (write(fd, block, sizeof block) != (ssize_t)sizeof block)
            return 83;
    }
    close(fd);
    setenv("SHMGUARD_OPTIONS", opts, 1);
    char *argv[] = {"x_log", "ext2_work", NULL};
    pid_t pid = fork();
    if (pid == 0) {
        execv(ck_self_exe(), argv);
        _exit(84);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return 85;
    snprintf(cmd, sizeof cmd, "umount '%s'", dir);
    if (system(cmd) != 0)
        return 86;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int
scenario_ext2_work(void)
{
    workload(150);
    return ck_failures == 0 ? 0 : 1;
}

static int
scenario_ext2(void)
{
    if (geteuid() != 0) {
        printf("skip: ext2 needs root (a loop mount)\n");
        tracef("ext2", "ok skipped=1");
        return ck_finish();
    }
    char dir[256], image[300], opts[1024], cmd[600];
    subdir(dir, sizeof dir, "ext2");
    ck_tmp_name(image, sizeof image, "ext2.img");
    snprintf(cmd, sizeof cmd, "mkfs.ext2 -q -F -b 1024 '%s' 1024 >/dev/null 2>&1", image);
    if (system(cmd) != 0) {
        FAIL("ext2: mkfs.ext2 failed (e2fsprogs missing?)");
        return ck_finish();
    }
    ck_log_opts(opts, sizeof opts, dir);
    char *argv[] = {"x_log", "ext2_child", dir, image, opts, NULL};
    struct ck_child c = ck_run_child(argv, NULL);
    child_ok("ext2", &c, 1);
    if (ck_count_lines(c.err, NULL, "ENOSPC") != 1)
        FAIL("ext2: the warning is not about a full disk:\n%s", c.err);
    tracef("ext2", "ok code=%d", c.code);
    ck_child_free(&c);
    unlink(image);
    ck_remove_dir(dir);
    return ck_finish();
}

/* ------------------------------------------------------------------- main */

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: x_log SCENARIO\n");
        return 2;
    }
    const char *s = argv[1];
    ck_init();
    /* children first: they print no trace */
    if (strcmp(s, "outside_child") == 0 && argc == 4)
        return scenario_outside_child(argv[2], argv[3]);
    if (strcmp(s, "pidns_child") == 0 && argc == 4)
        return scenario_pidns_child(argv[2], argv[3]);
    if (strcmp(s, "forkraw_child") == 0 && argc == 4)
        return scenario_forkraw_child(argv[2]);
    if (strcmp(s, "chain") == 0 && argc == 3)
        return scenario_chain(atoi(argv[2]));
    if (strcmp(s, "fsize_child") == 0 && argc == 3)
        return scenario_fsize_child(argv[2]);
    if (strcmp(s, "taken_child") == 0 && argc == 3)
        return scenario_taken_child(argv[2]);
    if (strcmp(s, "taken_image") == 0)
        return scenario_taken_image();
    if (strcmp(s, "as_child") == 0)
        return scenario_as_child();
    if (strcmp(s, "ext2_child") == 0 && argc == 5)
        return scenario_ext2_child(argv[2], argv[3], argv[4]);
    if (strcmp(s, "ext2_work") == 0)
        return scenario_ext2_work();

    tracef("scenario", "ok name=%s", s);
    if (strcmp(s, "outside") == 0)
        return scenario_outside();
    if (strcmp(s, "pidns") == 0)
        return scenario_pidns();
    if (strcmp(s, "forkraw") == 0)
        return scenario_forkraw();
    if (strcmp(s, "exec_chain") == 0)
        return scenario_exec_chain();
    if (strcmp(s, "fsize") == 0)
        return scenario_fsize();
    if (strcmp(s, "taken") == 0)
        return scenario_taken();
    if (strcmp(s, "aslimit") == 0)
        return scenario_aslimit();
    if (strcmp(s, "ext2") == 0)
        return scenario_ext2();
    fprintf(stderr, "x_log: unknown scenario %s\n", s);
    return 2;
}
