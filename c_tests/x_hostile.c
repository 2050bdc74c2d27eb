/* x_hostile.c SCENARIO: programs that make shmguard's life hard. In every
 * one the shm calls must keep the kernel's exact results and the program
 * must not crash; shmguard may print at most one warning line per process.
 *
 *   late_calls      the program's shm calls run after shmguard's exit check:
 *                   a destructor registers an exit handler, which glibc
 *                   runs after every destructor (shmguard's included).
 *   late_log        late_calls with log_path: the handler finds the exit
 *                   event already in its log (so it really ran after the
 *                   check), and the log stays whole; then the same with the
 *                   process's only calls made that late.
 *   close_fds       with log_path: after its first call the program closes
 *                   every descriptor from 3 up (close_range), opens a file of
 *                   its own (fd 3), makes enough calls to grow the log, forks
 *                   a child that calls too, and exits: its file holds only
 *                   what it wrote, every log is whole and complete.
 *   close_all       the same, closing 0, 1 and 2 too and opening three files
 *                   of its own in their place.
 *   dup2_fds        with log_path: the program puts its own file on the log's
 *                   descriptor (dup2), /dev/null on stderr and its file on
 *                   stdin, then calls on: its file untouched, the log whole.
 *   privdrop        log_path in a root-only directory (mode 0700); a child
 *                   drops to nobody before its first call, another after:
 *                   at most one warning line each, results unchanged.
 *   log_unwritable  log_path in a missing directory, under a regular file,
 *                   on a read-only tmpfs, on a full tmpfs, on a tmpfs that
 *                   fills during the run (the last three in a private mount
 *                   namespace, skipped with a message if that cannot be
 *                   made): one warning at most, the results the kernel's,
 *                   the log's lines JSON; on a planted symlink: the file it
 *                   points to untouched, the log under the next name.
 *   max_map         every mapping slot used (mmap up to vm.max_map_count in
 *                   this process), then 0..4 slots freed: shmat fails or
 *                   succeeds exactly as the raw system call (run with
 *                   guard_pages=1 too).
 *   options         SHMGUARD_OPTIONS garbage (very long, invalid UTF-8,
 *                   unknown keys, "::::", "=", a newline): the results
 *                   unchanged, each warning one line with shmguard's prefix.
 *
 * The other names are the children the scenarios run (ck_run_self). Each
 * child checks its own calls against the raw system calls and reports
 * through its exit status; the parent checks stderr, logs and files. */
#include "check.h"

#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/statvfs.h>

#define PAGE 4096UL

/* ------------------------------------------------------------ the workload */

/* Calls made through the libc names, by kind (ck_call_names order). */
static long made[5];

/* The key glibc's ftok gives, computed here. */
static key_t
ftok_by_hand(const char *path, int id)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    uint32_t k = ((uint32_t)st.st_ino & 0xffffu) | (((uint32_t)st.st_dev & 0xffu) << 16) |
                 (((uint32_t)id & 0xffu) << 24);
    return (key_t)k;
}

/* ROUNDS rounds of 9 calls, each compared with the raw system call or a
 * value computed here. Quiet: it prints only on failure (FAIL). */
static void
workload(int rounds)
{
    for (int i = 0; i < rounds; i++) {
        made[0]++;
        int id = ck_shmget(IPC_PRIVATE, 5000, IPC_CREAT | 0600);
        if (id < 0) {
            FAIL("workload shmget: %s", ck_errname(errno));
            return;
        }
        made[1]++;
        struct ck_res at = RES(shmat(id, NULL, 0));
        if (!WANT("workload shmat", at, 0)) {
            shmctl(id, IPC_RMID, NULL);
            return;
        }
        char *p = (char *)at.ret;
        p[4999] = 7;
        struct shmid_ds lib, raw;
        made[3]++;
        struct ck_res a = RES(shmctl(id, IPC_STAT, &lib));
        struct ck_res b = RES(ck_stat(id, &raw));
        if (SAME("workload IPC_STAT", a, b) && a.ret == 0)
            SAME_DS("workload IPC_STAT", &lib, &raw);
        CHECK_EQ(lib.shm_nattch, 1);
        made[2]++;
        WANT("workload shmdt", RES(shmdt(p)), 0);
        made[2]++;
        a = RES(shmdt(p));
        SAME("workload shmdt again", a, RES(raw_shmdt(p)));
        WANT("workload shmdt again", a, EINVAL);
        made[0]++;
        a = RES(shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600));
        SAME("workload shmget size 0", a, RES(raw_shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600)));
        made[1]++;
        a = RES(shmat(-1, NULL, 0));
        SAME("workload shmat(-1)", a, RES(raw_shmat(-1, NULL, 0)));
        made[3]++;
        WANT("workload IPC_RMID", RES(shmctl(id, IPC_RMID, NULL)), 0);
        CHECK_EQ(ck_nattch(id), -1);
        made[4]++;
        key_t k = ftok("/", 'h');
        CHECK_EQ(k, ftok_by_hand("/", 'h'));
    }
}

static long
made_total(void)
{
    return made[0] + made[1] + made[2] + made[3] + made[4];
}

/* ---------------------------------------------------------------- helpers */

/* A directory of the per-run one, made with MODE; its path into BUF. */
static const char *
subdir(char *buf, size_t len, const char *name, mode_t mode)
{
    ck_tmp_name(buf, len, name);
    if (mkdir(buf, mode) != 0 || chmod(buf, mode) != 0) {
        FAIL("mkdir %s: %s", buf, ck_errname(errno));
        exit(1);
    }
    return buf;
}

/* The child must have exited 0 with at most MAX_WARN shmguard lines on
 * stderr; returns the number of lines. */
static int
child_ok(const char *what, const struct ck_child *c, int max_warn)
{
    if (c->code != 0)
        FAIL("%s: the child ended with %d; its stderr:\n%s", what, c->code, c->err);
    int n = ck_shmguard_lines(what, c->err);
    if (n > max_warn)
        FAIL("%s: %d lines on stderr, at most %d allowed:\n%s", what, n, max_warn, c->err);
    return n;
}

/* "calls N" from a child's stdout, -1 if missing. */
static long
field_long(const char *out, const char *key)
{
    const char *at = strstr(out, key);
    long v = -1;
    if (at == NULL || sscanf(at + strlen(key), " %ld", &v) != 1)
        return -1;
    return v;
}

/* One log of DIR: whole, of PID, with CALLS call events. */
static void
check_log(const char *what, const char *dir, long pid, long calls, int want_exit)
{
    char path[512];
    struct ck_log log;
    if (!ck_log_read(ck_log_file(path, sizeof path, dir, pid), &log)) {
        FAIL("%s: no log %s", what, path);
        return;
    }
    ck_log_whole(what, &log, want_exit);
    if (ck_log_calls(&log) != calls)
        FAIL("%s: log %s has %ld call events, the process made %ld calls", what, log.name,
             ck_log_calls(&log), calls);
}

/* ------------------------------------------------------------ late calls */

static int late_mode;          /* 0: off; 1: after earlier calls; 2: only late */
static const char *late_logdir; /* the log's directory, to find the exit event */

static void
late_fail(const char *what)
{
    char msg[200];
    int n = snprintf(msg, sizeof msg, "FAIL: x_hostile.c: late call: %s\n", what);
    if (write(2, msg, (size_t)n) < 0) {
        /* nothing more to do */
    }
    _exit(3);
}

/* Runs after every destructor, shmguard's exit check included. Only raw
 * writes here: stdio is about to be torn down. */
static void
late_calls(void *unused)
{
    (void)unused;
    int after_check = -1;
    if (late_logdir != NULL) {
        char path[512];
        char *text = ck_slurp(ck_log_file(path, sizeof path, late_logdir, (long)getpid()));
        after_check = text != NULL && strstr(text, "\"event\":\"exit\"") != NULL;
        free(text);
    }
    int id = shmget(IPC_PRIVATE, 5000, IPC_CREAT | 0600);
    if (id < 0)
        late_fail("shmget");
    char *p = shmat(id, NULL, 0);
    if (p == (char *)-1) {
        raw_shmctl(id, IPC_RMID, NULL);
        late_fail("shmat");
    }
    p[4999] = 1;
    if (ck_nattch(id) != 1 || shmdt(p) != 0 || ck_nattch(id) != 0) {
        raw_shmctl(id, IPC_RMID, NULL);
        late_fail("shmdt");
    }
    errno = 0;
    if (shmdt(p) != -1 || errno != EINVAL) {
        raw_shmctl(id, IPC_RMID, NULL);
        late_fail("the second shmdt did not fail with EINVAL");
    }
    errno = 0;
    if (shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600) != -1 || errno != EINVAL) {
        raw_shmctl(id, IPC_RMID, NULL);
        late_fail("shmget of size 0 did not fail with EINVAL");
    }
    if (shmctl(id, IPC_RMID, NULL) != 0)
        late_fail("IPC_RMID");
    if (ck_nattch(id) != -1)
        late_fail("the segment is still there");
    if (ftok("/", 'l') != ftok_by_hand("/", 'l'))
        late_fail("ftok");
    /* 7 calls */
    char msg[64];
    int n = snprintf(msg, sizeof msg, "late ran after_check=%d calls=7\n", after_check);
    if (write(1, msg, (size_t)n) < 0)
        late_fail("write");
}

int __cxa_atexit(void (*fn)(void *), void *arg, void *dso);

/* The program's destructors run inside ld.so's _dl_fini, before those of
 * the libraries (libshmguard's exit check among them). A handler that a
 * destructor registers without a DSO handle (atexit would pass ours, and
 * our own __cxa_finalize would run it at once) runs when _dl_fini has
 * returned: after every destructor. */
__attribute__((destructor)) static void
register_late(void)
{
    if (late_mode != 0)
        __cxa_atexit(late_calls, NULL, NULL);
}

static int
scenario_late_child(int argc, char **argv)
{
    late_mode = strcmp(argv[1], "late_only") == 0 ? 2 : 1;
    late_logdir = argc > 2 ? argv[2] : NULL;
    if (late_mode == 1)
        workload(2);
    ck_flush_all();
    printf("calls %ld\n", made_total());
    return ck_failures == 0 ? 0 : 1;
}

/* Direct run (the runner's options). */
static int
scenario_late_calls(void)
{
    late_mode = 1;
    workload(2);
    tracef("late_calls", "ok registered=1");
    return ck_finish();
}

static int
scenario_late_log(void)
{
    char opts[1024], dir[256];
    const char *modes[] = {"late_after", "late_only"};
    for (int m = 0; m < 2; m++) {
        subdir(dir, sizeof dir, modes[m], 0700);
        char *argv[] = {"x_hostile", (char *)modes[m], dir, NULL};
        struct ck_child c = ck_run_child(argv, ck_log_opts(opts, sizeof opts, dir));
        child_ok(modes[m], &c, 0);
        long early = field_long(c.out, "calls");
        int after = (int)field_long(c.out, "after_check=");
        long late = field_long(c.out, "calls=");
        if (late != 7)
            FAIL("%s: the late handler did not run (stdout: %s)", modes[m], c.out);
        char path[512];
        struct ck_log log;
        int have_log = ck_log_read(ck_log_file(path, sizeof path, dir, c.pid), &log);
        if (!have_log && m == 0) {
            FAIL("%s: no log %s", modes[m], path);
        } else if (!have_log) {
            /* nothing logged after the exit check: fine */
        } else if (m == 0) {
            /* the exit check wrote its event before the late calls, which
             * are dropped quietly: the log ends with it */
            if (after != 1)
                FAIL("late_after: the exit event was not in the log when the late calls "
                     "ran (after_check=%d): they did not run after shmguard's check",
                     after);
            ck_log_whole(modes[m], &log, 1);
            if (ck_log_calls(&log) != early)
                FAIL("late_after: %ld call events, %ld calls before the exit check",
                     ck_log_calls(&log), early);
        } else {
            /* the first calls came after the check: no log, or one without
             * an exit event, every line JSON */
            ck_log_whole(modes[m], &log, 0);
            if (ck_log_calls(&log) > 7)
                FAIL("late_only: %ld call events for 7 calls", ck_log_calls(&log));
        }
        tracef(modes[m], "ok code=%d", c.code);
        ck_child_free(&c);
        ck_remove_dir(dir);
    }
    return ck_finish();
}

/* ------------------------------------------------------- hostile to fds */

static int
close_from(unsigned first)
{
    if (syscall(SYS_close_range, first, ~0U, 0) == 0)
        return 0;
    for (int fd = (int)first; fd < 65536; fd++)
        close(fd);
    return 0;
}

/* The descriptor of the open log file, -1 if none. */
static int
log_fd(const char *dir)
{
    char want[512];
    ck_log_file(want, sizeof want, dir, (long)getpid());
    DIR *d = opendir("/proc/self/fd");
    int found = -1;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        char link[300], target[512];
        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        if (strcmp(target, want) == 0)
            found = atoi(e->d_name);
    }
    if (d != NULL)
        closedir(d);
    return found;
}

static const char mine_text[] = "the program's own data\n";
static const char mine_more[] = "and more of it\n";

static void
write_all(int fd, const char *text)
{
    if (write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        FAIL("write: %s", ck_errname(errno));
}

/* Forks a child that makes a few calls and exits normally (running the
 * exit check); its exit code, and its pid in *KID. */
static int
fork_workload(pid_t *kid)
{
    *kid = fork();
    if (*kid == 0) {
        ck_child_defaults();
        workload(1);
        exit(ck_failures == 0 ? 0 : 1);
    }
    return ck_child_code(*kid, 10000);
}

/* The results for the parent, in DIR/result (stdout may be gone): pid,
 * calls made, the forked kid and its code, and LOGFD unless it is -1.
 * Exits with FAIL_CODE if the file cannot be written. */
static void
write_result(const char *dir, pid_t me, pid_t kid, int code, int logfd, int fail_code)
{
    char path[512], text[160];
    snprintf(path, sizeof path, "%s/result", dir);
    int n = snprintf(text, sizeof text, "pid %d\ncalls %ld\nkid %d\nkidcode %d\n", (int)me,
                     made_total(), (int)kid, code);
    if (logfd != -1)
        n += snprintf(text + n, sizeof text - (size_t)n, "logfd %d\n", logfd);
    int r = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (r < 0 || write(r, text, (size_t)n) != n)
        _exit(fail_code);
    close(r);
}

/* close_fds/close_all child: DIR holds the logs and its files. */
static int
scenario_close_child(int all, const char *dir)
{
    workload(1);
    pid_t me = getpid();
    close_from(all ? 0 : 3);
    int fds[3];
    char path[512];
    for (int i = 0; i < (all ? 3 : 1); i++) {
        snprintf(path, sizeof path, "%s/mine%d", dir, i);
        fds[i] = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (fds[i] != (all ? i : 3))
            _exit(40 + i);
        write_all(fds[i], mine_text);
    }
    /* enough to grow the log past its first 64 KiB */
    workload(60);
    pid_t kid;
    int code = fork_workload(&kid);
    for (int i = 0; i < (all ? 3 : 1); i++)
        write_all(fds[i], mine_more);
    write_result(dir, me, kid, code, -1, 50);
    return ck_failures == 0 && code == 0 ? 0 : 1;
}

/* Reads DIR/result of a child. */
static char *
result_of(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/result", dir);
    char *text = ck_slurp(path);
    return text == NULL ? strdup("") : text;
}

static void
check_mine(const char *what, const char *dir, int i)
{
    char path[512], want[128];
    snprintf(path, sizeof path, "%s/mine%d", dir, i);
    snprintf(want, sizeof want, "%s%s", mine_text, mine_more);
    char *text = ck_slurp(path);
    if (text == NULL || strcmp(text, want) != 0)
        FAIL("%s: the program's file %s holds \"%s\", it wrote \"%s\"", what, path,
             text == NULL ? "(unreadable)" : text, want);
    free(text);
}

static int
scenario_close(int all)
{
    const char *name = all ? "close_all" : "close_fds";
    char dir[256], opts[1024];
    subdir(dir, sizeof dir, name, 0700);
    char *argv[] = {"x_hostile", all ? "close_all_child" : "close_fds_child", dir, NULL};
    struct ck_child c = ck_run_child(argv, ck_log_opts(opts, sizeof opts, dir));
    /* stderr is closed with the rest: its file stays empty */
    child_ok(name, &c, 0);
    char *res = result_of(dir);
    long calls = field_long(res, "calls"), kid = field_long(res, "kid");
    CHECK_EQ(field_long(res, "pid"), c.pid);
    CHECK_EQ(field_long(res, "kidcode"), 0);
    for (int i = 0; i < (all ? 3 : 1); i++)
        check_mine(name, dir, i);
    check_log(name, dir, c.pid, calls, 1);
    check_log(name, dir, kid, 9, 1);
    tracef(name, "ok calls=%ld", calls);
    free(res);
    ck_child_free(&c);
    ck_remove_dir(dir);
    return ck_finish();
}

static int
scenario_dup2_child(const char *dir)
{
    workload(1);
    int L = log_fd(dir);
    if (L < 0)
        _exit(60);
    char path[512];
    snprintf(path, sizeof path, "%s/mine0", dir);
    int mine = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    int devnull = open("/dev/null", O_WRONLY);
    if (mine < 0 || devnull < 0)
        _exit(61);
    write_all(mine, mine_text);
    /* the program's file on the log's descriptor, on stdin; stderr gone */
    if (dup2(mine, L) != L || dup2(mine, 0) != 0 || dup2(devnull, 2) != 2)
        _exit(62);
    workload(60);
    pid_t kid;
    int code = fork_workload(&kid);
    /* the file's offset is shared by its three descriptors */
    write_all(mine, mine_more);
    write_result(dir, getpid(), kid, code, L, 63);
    return ck_failures == 0 && code == 0 ? 0 : 1;
}

static int
scenario_dup2(void)
{
    char dir[256], opts[1024];
    subdir(dir, sizeof dir, "dup2", 0700);
    char *argv[] = {"x_hostile", "dup2_child", dir, NULL};
    struct ck_child c = ck_run_child(argv, ck_log_opts(opts, sizeof opts, dir));
    child_ok("dup2_fds", &c, 0);
    char *res = result_of(dir);
    long calls = field_long(res, "calls"), kid = field_long(res, "kid");
    CHECK_EQ(field_long(res, "kidcode"), 0);
    check_mine("dup2_fds", dir, 0);
    check_log("dup2_fds", dir, c.pid, calls, 1);
    check_log("dup2_fds", dir, kid, 9, 1);
    tracef("dup2_fds", "ok calls=%ld logfd_high=%d", calls, field_long(res, "logfd") >= 512);
    free(res);
    ck_child_free(&c);
    ck_remove_dir(dir);
    return ck_finish();
}

/* ---------------------------------------------------------- privileges */

static void
drop_to_nobody(void)
{
    struct passwd *pw = getpwnam("nobody");
    if (pw == NULL)
        _exit(70);
    if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)
        _exit(71);
    if (getuid() != pw->pw_uid || geteuid() != pw->pw_uid)
        _exit(72);
}

/* privdrop_child before|after ROOT_SEGMENT: calls as nobody, one of them on
 * a root-only segment, each compared with the raw system call. */
static int
scenario_privdrop_child(const char *when, int root_seg)
{
    if (strcmp(when, "after") == 0) {
        /* first calls as root: the log opens (nothing left behind) */
        workload(1);
        drop_to_nobody();
    } else {
        drop_to_nobody();
    }
    struct ck_res a = RES(shmat(root_seg, NULL, 0));
    SAME("nobody shmat(root's 0600)", a, RES(raw_shmat(root_seg, NULL, 0)));
    WANT("nobody shmat(root's 0600)", a, EACCES);
    made[1]++;
    struct shmid_ds ds;
    a = RES(shmctl(root_seg, IPC_STAT, &ds));
    SAME("nobody IPC_STAT(root's 0600)", a, RES(ck_stat(root_seg, &ds)));
    made[3]++;
    a = RES(shmctl(root_seg, IPC_RMID, NULL));
    SAME("nobody IPC_RMID(root's)", a, RES(raw_shmctl(root_seg, IPC_RMID, NULL)));
    WANT("nobody IPC_RMID(root's)", a, EPERM);
    made[3]++;
    /* enough to grow the log (when it is open) */
    workload(60);
    pid_t kid;
    int code = fork_workload(&kid);
    CHECK_EQ(code, 0);
    printf("calls %ld\nkid %d\n", made_total(), (int)kid);
    return ck_failures == 0 ? 0 : 1;
}

static int
scenario_privdrop(void)
{
    if (geteuid() != 0 || getpwnam("nobody") == NULL) {
        printf("skip: privdrop needs root and a user nobody\n");
        tracef("privdrop", "ok skipped=1");
        return ck_finish();
    }
    int root_seg = ck_fixture(PAGE, 0600);
    char seg[16];
    snprintf(seg, sizeof seg, "%d", root_seg);
    const char *whens[] = {"before", "after"};
    for (int w = 0; w < 2; w++) {
        char dir[256], opts[1024], what[64];
        snprintf(what, sizeof what, "privdrop %s the first call", whens[w]);
        subdir(dir, sizeof dir, whens[w], 0700);
        char *argv[] = {"x_hostile", "privdrop_child", (char *)whens[w], seg, NULL};
        struct ck_child c = ck_run_child(argv, ck_log_opts(opts, sizeof opts, dir));
        long calls = field_long(c.out, "calls"), kid = field_long(c.out, "kid");
        if (w == 0) {
            /* nobody cannot open a log there: one warning, in each process */
            int lines = child_ok(what, &c, 2);
            if (lines != 2 || ck_count_lines(c.err, NULL, "log") != 2)
                FAIL("%s: expected one warning about the log from each of the 2 processes:\n%s",
                     what, c.err);
            struct ck_log *logs;
            int n = ck_logs_read(dir, "l.", &logs);
            CHECK_EQ(n, 0);
            free(logs);
        } else {
            /* the log opened as root goes on; the child forked as nobody
             * cannot open its own: one warning */
            int lines = child_ok(what, &c, 1);
            if (lines != 1 || ck_count_lines(c.err, NULL, "log") != 1)
                FAIL("%s: expected exactly one warning (the child's log):\n%s", what, c.err);
            check_log(what, dir, c.pid, calls, 1);
            char path[512];
            struct ck_log log;
            if (ck_log_read(ck_log_file(path, sizeof path, dir, kid), &log))
                FAIL("%s: nobody's child wrote %s in a root-only directory", what, path);
        }
        tracef("privdrop", "ok when=%s code=%d", whens[w], c.code);
        ck_child_free(&c);
        ck_remove_dir(dir);
    }
    CHECK(ck_nattch(root_seg) == 0);
    return ck_finish();
}

/* ------------------------------------------------- unwritable log paths */

/* A private mount namespace with a tmpfs of SIZE KiB at DIR (read-only if
 * RO); 0 if that cannot be done here. */
static int
private_tmpfs(const char *dir, int kib, int ro)
{
    char opts[32];
    snprintf(opts, sizeof opts, "size=%dk", kib);
    if (unshare(CLONE_NEWNS) != 0)
        return 0;
    /* the file system type is ignored for these two; "none", not NULL,
     * keeps valgrind from reading address 0 */
    if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0)
        return 0;
    if (mount("shmguard-test", dir, "tmpfs", 0, opts) != 0)
        return 0;
    if (ro && mount("none", dir, "none", MS_REMOUNT | MS_RDONLY, NULL) != 0)
        return 0;
    return 1;
}

/* Fills the file system of DIR until KEEP_KIB are left (0: all of it). */
static int
fill(const char *dir, int keep_kib)
{
    char path[512];
    snprintf(path, sizeof path, "%s/filler", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return 0;
    static char block[PAGE];
    memset(block, 'f', sizeof block);
    for (;;) {
        struct statvfs sv;
        if (fstatvfs(fd, &sv) != 0)
            break;
        unsigned long long avail = (unsigned long long)sv.f_bavail * sv.f_frsize;
        if (avail <= (unsigned long long)keep_kib * 1024)
            break;
        if (write(fd, block, sizeof block) != (ssize_t)sizeof block)
            break;
    }
    close(fd);
    return 1;
}

/* logcase CASE DIR: sets up CASE, then runs the workload with the log in
 * DIR (SHMGUARD_OPTIONS, set by the parent, points there). Prints "skip"
 * when the case cannot be set up, and what it finds in the log. */
static int
scenario_logcase(const char *kase, const char *dir)
{
    char path[512], victim[512];
    if (strcmp(kase, "readonly") == 0 || strcmp(kase, "full") == 0 ||
        strcmp(kase, "fills") == 0) {
        int kib = strcmp(kase, "fills") == 0 ? 256 : 64;
        if (!private_tmpfs(dir, kib, strcmp(kase, "readonly") == 0)) {
            printf("skip: no private mount namespace with a tmpfs here (%s)\n",
                   ck_errname(errno));
            return 0;
        }
        /* full: nothing left; fills: the first 64 KiB of the log fit, the
         * next step does not */
        if ((strcmp(kase, "full") == 0 && !fill(dir, 0)) ||
            (strcmp(kase, "fills") == 0 && !fill(dir, 100)))
            return 80;
    } else if (strcmp(kase, "symlink") == 0) {
        /* someone planted a symlink where this process's log will go */
        snprintf(victim, sizeof victim, "%s/victim", dir);
        int fd = open(victim, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0)
            return 81;
        write_all(fd, mine_text);
        close(fd);
        if (symlink(victim, ck_log_file(path, sizeof path, dir, (long)getpid())) != 0)
            return 82;
    }
    workload(80);
    /* the log as it is now (no exit event yet); a planted symlink takes the
     * first name, so the log has the next one (docs/log-schema.md) */
    struct ck_log log;
    char logpath[512];
    ck_log_file(logpath, sizeof logpath, dir, (long)getpid());
    if (strcmp(kase, "symlink") == 0)
        snprintf(logpath, sizeof logpath, "%s/l.%ld.1.jsonl", dir, (long)getpid());
    if (ck_log_read(logpath, &log)) {
        if (log.bad != 0)
            FAIL("%s: %d lines of %s are not JSON, first: %s", kase, log.bad, logpath,
                 log.bad_line);
        printf("logged %ld of %ld\n", ck_log_calls(&log), made_total());
    }
    if (strcmp(kase, "symlink") == 0) {
        char *text = ck_slurp(victim);
        if (text == NULL || strcmp(text, mine_text) != 0)
            FAIL("symlink: the file the planted link points to was changed: \"%s\"",
                 text == NULL ? "(unreadable)" : text);
        free(text);
        unlink(path);
        unlink(victim);
    }
    printf("calls %ld\n", made_total());
    return ck_failures == 0 ? 0 : 1;
}

static int
scenario_log_unwritable(void)
{
    const char *cases[] = {"missing", "notdir", "symlink", "readonly", "full", "fills"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *kase = cases[i];
        char dir[256], logdir[300], opts[1024], extra[400];
        subdir(dir, sizeof dir, kase, 0700);
        snprintf(logdir, sizeof logdir, "%s", dir);
        if (strcmp(kase, "missing") == 0) {
            snprintf(logdir, sizeof logdir, "%s/missing", dir);
        } else if (strcmp(kase, "notdir") == 0) {
            snprintf(logdir, sizeof logdir, "%s/file", dir);
            int fd = open(logdir, O_WRONLY | O_CREAT, 0600);
            CHECK(fd >= 0);
            close(fd);
        }
        snprintf(extra, sizeof extra, "log_path=%s/l.%%p.jsonl", logdir);
        ck_options_plus(opts, sizeof opts, extra);
        char *argv[] = {"x_hostile", "logcase", (char *)kase, dir, NULL};
        struct ck_child c = ck_run_child(argv, opts);
        int skipped = strstr(c.out, "skip:") != NULL;
        int lines = child_ok(kase, &c, 1);
        long calls = field_long(c.out, "calls");
        long logged = field_long(c.out, "logged");
        if (!skipped) {
            CHECK(calls > 0);
            if (strcmp(kase, "fills") == 0) {
                /* logging stops when the disk is full, with one warning */
                if (lines != 1 || ck_count_lines(c.err, NULL, "log") != 1)
                    FAIL("fills: expected one warning about the log:\n%s", c.err);
                if (logged < 1 || logged >= calls)
                    FAIL("fills: %ld of %ld calls logged: the disk did not fill, or the log "
                         "went on",
                         logged, calls);
            } else if (strcmp(kase, "symlink") == 0) {
                /* the name is taken: the log goes under the next one, quietly */
                if (lines != 0)
                    FAIL("symlink: expected no warning (the next name is free):\n%s", c.err);
                if (logged != calls)
                    FAIL("symlink: %ld of %ld calls logged under the next name", logged, calls);
            } else if (lines != 1 || ck_count_lines(c.err, NULL, "log") != 1) {
                FAIL("%s: expected one warning about the log:\n%s", kase, c.err);
            }
        }
        if (skipped)
            printf("%s", c.out);
        tracef("log_unwritable", "ok case=%s warnings=%d", kase, skipped ? -1 : lines);
        ck_child_free(&c);
        char file[300];
        snprintf(file, sizeof file, "%s/file", dir);
        unlink(file);
        ck_remove_dir(dir);
    }
    return ck_finish();
}

/* -------------------------------------------------------------- max_map */

static char **maps;
static long nmaps;

/* One-page mappings, alternately readable and not (so that they never
 * merge), until the kernel refuses: every slot of vm.max_map_count used. */
static long
exhaust(long cap)
{
    maps = malloc((size_t)cap * sizeof *maps);
    if (maps == NULL)
        return 0;
    nmaps = 0;
    while (nmaps < cap) {
        void *p = mmap(NULL, PAGE, (nmaps & 1) ? PROT_READ : PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            break;
        maps[nmaps++] = p;
    }
    return nmaps;
}

static void
release_maps(long keep)
{
    while (nmaps > keep)
        munmap(maps[--nmaps], PAGE);
}

struct attempt {
    struct ck_res raw, lib;
    int raw_left, lib_left; /* free slots after the attempt */
};

/* How many more mappings fit now (at most LIMIT + 1 tried); unmapped again.
 * Write-only and exec-only pages merge with nothing around them, so each
 * probe takes a slot of its own. */
static int
free_slots(int limit)
{
    void *p[8];
    int n = 0;
    while (n <= limit && n < 8) {
        p[n] = mmap(NULL, PAGE, (n & 1) ? PROT_WRITE : PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS,
                    -1, 0);
        if (p[n] == MAP_FAILED)
            break;
        n++;
    }
    for (int i = 0; i < n; i++)
        munmap(p[i], PAGE);
    return n;
}

static int
scenario_max_map(void)
{
    int id = ck_fixture(5 * PAGE, 0600);
    /* warm up: shmguard's first call and its first record are made */
    void *w = shmat(id, NULL, 0);
    CHECK(w != (void *)-1);
    CHECK_EQ(shmdt(w), 0);
    long max = (long)ck_proc_ull("/proc/sys/vm/max_map_count");
    struct attempt at[5];
    long got = exhaust(max + 16);
    if (got < 100) {
        FAIL("could only map %ld pages", got);
        return ck_finish();
    }
    long full = nmaps;
    /* no printing until the mappings are back: stdio may need a mapping */
    for (int k = 0; k < 5; k++) {
        release_maps(full - k);
        at[k].raw = RES(raw_shmat(id, NULL, 0));
        if (at[k].raw.ret != -1)
            raw_shmdt((void *)at[k].raw.ret);
        /* nothing may be left of an attempt: K slots free again */
        at[k].raw_left = free_slots(k);
        at[k].lib = RES(shmat(id, NULL, 0));
        if (at[k].lib.ret != -1)
            shmdt((void *)at[k].lib.ret);
        at[k].lib_left = free_slots(k);
        /* back to every slot used */
        while (nmaps < full) {
            void *p = mmap(NULL, PAGE, (nmaps & 1) ? PROT_READ : PROT_NONE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED)
                break;
            maps[nmaps++] = p;
        }
    }
    release_maps(0);
    free(maps);
    printf("info: %ld mappings filled vm.max_map_count=%ld\n", full, max);
    for (int k = 0; k < 5; k++) {
        char name[64];
        snprintf(name, sizeof name, "shmat_with_%d_free_slots", k);
        SAME(name, at[k].lib, at[k].raw);
        if (k == 0)
            WANT(name, at[k].raw, ENOMEM);
        if (at[k].raw_left != k || at[k].lib_left != k)
            FAIL("%s: %d free slots after the raw attempt, %d after shmguard's (want %d)",
                 name, at[k].raw_left, at[k].lib_left, k);
        tracef(name, "%s raw=%s", ck_outcome(at[k].lib), ck_outcome(at[k].raw));
    }
    /* and everything works again */
    w = shmat(id, NULL, 0);
    CHECK(w != (void *)-1);
    CHECK_EQ(shmdt(w), 0);
    size_t (*leak_count)(void);
    *(void **)&leak_count = ck_sym("shmguard_leak_count");
    CHECK_EQ(leak_count(), 0);
    return ck_finish();
}

/* -------------------------------------------------------------- options */

struct garbage {
    const char *name;
    char *value;
    int warnings; /* shmguard lines expected on stderr */
};

static char *
repeat(char c, size_t n, const char *tail)
{
    size_t t = strlen(tail);
    char *s = malloc(n + t + 1);
    if (s == NULL) {
        FAIL("out of memory");
        exit(1);
    }
    memset(s, c, n);
    memcpy(s + n, tail, t + 1);
    return s;
}

static int
scenario_options(void)
{
    /* the environment holds at most 128 KiB per string */
    struct garbage cases[] = {
        {"empty", strdup(""), 0},
        {"colons", strdup("::::"), 0},
        {"equals", strdup("="), 1},
        {"no_value", strdup("verbosity"), 1},
        {"unknown_keys", strdup("bogus=1:alsobogus=2:leak_check=1"), 2},
        {"double_equals", strdup("verbosity=1=2"), 1},
        {"invalid_utf8", strdup("\xff\xfe=\x80\xc3"), 1},
        {"utf8_key", strdup("cl\xc3\xa9=1"), 1},
        {"long_key", repeat('x', 100000, "=1"), 1},
        {"long_value", NULL, 1},
        {"many_colons", repeat(':', 100000, "exitcode=0"), 0},
        {"many_keys", repeat(':', 0, ""), 100},
        {"tab", strdup("bo\tgus=1\t"), 1},
        /* a line break inside: still one line, still shmguard's */
        {"newline", strdup("bogus\nleak_check=1"), 1},
        {"carriage_return", strdup("bogus\r=1"), 1},
    };
    /* many_keys: 100 unknown keys, one line each */
    char *many = malloc(100 * 8 + 1);
    CHECK(many != NULL);
    many[0] = '\0';
    for (int i = 0; i < 100; i++)
        snprintf(many + strlen(many), 9, "k%03d=1:", i);
    free(cases[11].value);
    cases[11].value = many;
    /* long_value: exitcode=999...9, a bad value */
    char *lv = repeat('9', 100000, "");
    memcpy(lv, "exitcode=", 9);
    free(cases[9].value);
    cases[9].value = lv;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *argv[] = {"x_hostile", "workload", NULL};
        struct ck_child c = ck_run_child(argv, cases[i].value);
        int lines = child_ok(cases[i].name, &c, cases[i].warnings);
        if (lines >= 0 && lines != cases[i].warnings)
            FAIL("%s: %d warning lines, expected %d:\n%s", cases[i].name, lines,
                 cases[i].warnings, c.err);
        /* one readable line each, however long the garbage */
        for (const char *l = c.err; *l != '\0';) {
            const char *nl = strchr(l, '\n');
            size_t len = nl == NULL ? strlen(l) : (size_t)(nl - l);
            if (len > 300)
                FAIL("%s: a warning line of %zu bytes", cases[i].name, len);
            l = nl == NULL ? l + len : nl + 1;
        }
        CHECK_EQ(field_long(c.out, "calls"), 45);
        tracef("options", "%s case=%s warnings=%d", c.code == 0 ? "ok" : "fail",
               cases[i].name, lines);
        ck_child_free(&c);
        free(cases[i].value);
    }
    return ck_finish();
}

static int
scenario_workload(void)
{
    workload(5);
    printf("calls %ld\n", made_total());
    return ck_failures == 0 ? 0 : 1;
}

/* ------------------------------------------------------------------- main */

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: x_hostile SCENARIO\n");
        return 2;
    }
    const char *s = argv[1];
    ck_init();
    /* children first: they print no trace */
    if ((strcmp(s, "late_after") == 0 || strcmp(s, "late_only") == 0) && argc == 3)
        return scenario_late_child(argc, argv);
    if (strcmp(s, "close_fds_child") == 0 && argc == 3)
        return scenario_close_child(0, argv[2]);
    if (strcmp(s, "close_all_child") == 0 && argc == 3)
        return scenario_close_child(1, argv[2]);
    if (strcmp(s, "dup2_child") == 0 && argc == 3)
        return scenario_dup2_child(argv[2]);
    if (strcmp(s, "privdrop_child") == 0 && argc == 4)
        return scenario_privdrop_child(argv[2], atoi(argv[3]));
    if (strcmp(s, "logcase") == 0 && argc == 4)
        return scenario_logcase(argv[2], argv[3]);
    if (strcmp(s, "workload") == 0)
        return scenario_workload();

    tracef("scenario", "ok name=%s", s);
    if (strcmp(s, "late_calls") == 0)
        return scenario_late_calls();
    if (strcmp(s, "late_log") == 0)
        return scenario_late_log();
    if (strcmp(s, "close_fds") == 0)
        return scenario_close(0);
    if (strcmp(s, "close_all") == 0)
        return scenario_close(1);
    if (strcmp(s, "dup2_fds") == 0)
        return scenario_dup2();
    if (strcmp(s, "privdrop") == 0)
        return scenario_privdrop();
    if (strcmp(s, "log_unwritable") == 0)
        return scenario_log_unwritable();
    if (strncmp(s, "max_map", 7) == 0)
        return scenario_max_map();
    if (strcmp(s, "options") == 0)
        return scenario_options();
    fprintf(stderr, "x_hostile: unknown scenario %s\n", s);
    return 2;
}
