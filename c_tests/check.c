/*
 * check.c: the shared helpers of shmguard's C test programs (check.h says
 * what each does and how the programs use them).
 *
 * Compiled once per build configuration and linked into every program
 * before -lshmguard: the libc names called here (shmget, shmat, shmdt,
 * shmctl) resolve as the program's own calls do.
 */
#include "check.h"

__attribute__((used, visibility("default"))) int __lsan_is_turned_off(void);

/* ---------------------------------------------------------------- failures */

int ck_failures;
int ck_cases;

void
ck_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "FAIL: %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    __atomic_add_fetch(&ck_failures, 1, __ATOMIC_SEQ_CST);
}

/* ------------------------------------------------------------ errno names */

const char *
ck_errname(int e)
{
    static __thread char bufs[4][24];
    static __thread unsigned next;
    const char *name = strerrorname_np(e); /* glibc 2.32: "EPERM", "0" */
    if (name != NULL)
        return name;
    char *buf = bufs[next++ % 4];
    snprintf(buf, sizeof bufs[0], "E%d", e);
    return buf;
}

/* ----------------------------------------------------------- raw syscalls */

int
raw_shmget(key_t key, size_t size, int flg)
{
    return (int)syscall(SYS_shmget, key, size, flg);
}

void *
raw_shmat(int id, const void *addr, int flg)
{
    return (void *)syscall(SYS_shmat, id, addr, flg);
}

int
raw_shmdt(const void *addr)
{
    return (int)syscall(SYS_shmdt, addr);
}

int
raw_shmctl(int id, int cmd, void *buf)
{
    return (int)syscall(SYS_shmctl, id, cmd, buf);
}

/* ---------------------------------------------------------------- results */

struct ck_res
ck_res_of(long ret)
{
    struct ck_res r;
    r.ret = ret;
    r.err = ret == -1 ? errno : 0;
    return r;
}

/* "ok" or "fail EXXX" into BUF. */
const char *
ck_outcome_into(char *buf, size_t len, struct ck_res r)
{
    if (r.ret != -1)
        snprintf(buf, len, "ok");
    else
        snprintf(buf, len, "fail %s", ck_errname(r.err));
    return buf;
}

const char *
ck_outcome(struct ck_res r)
{
    static __thread char buf[40];
    return ck_outcome_into(buf, sizeof buf, r);
}

/* The two outcomes must be of the same class, with the same errno. */
int
ck_same(const char *file, int line, const char *name, struct ck_res lib,
        struct ck_res raw)
{
    if ((lib.ret == -1) != (raw.ret == -1) || lib.err != raw.err) {
        char a[40], b[40];
        ck_fail(file, line, "%s: libc name gave %s (ret %ld), raw syscall %s (ret %ld)",
                name, ck_outcome_into(a, sizeof a, lib), lib.ret,
                ck_outcome_into(b, sizeof b, raw), raw.ret);
        return 0;
    }
    return 1;
}

/* The outcome must be success (want_err 0) or failure with want_err. */
int
ck_want(const char *file, int line, const char *name, struct ck_res r, int want_err)
{
    int ok = want_err == 0 ? r.ret != -1 : (r.ret == -1 && r.err == want_err);
    if (!ok) {
        char want[40];
        if (want_err == 0)
            snprintf(want, sizeof want, "ok");
        else
            snprintf(want, sizeof want, "fail %s", ck_errname(want_err));
        ck_fail(file, line, "%s: expected %s, got %s", name, want, ck_outcome(r));
    }
    return ok;
}

/* --------------------------------------------------------------- the trace */

void
tracef(const char *name, const char *fmt, ...)
{
    char line[512];
    int n = snprintf(line, sizeof line, "case %s: ", name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    printf("%s\n", line);
    fflush(stdout);
    __atomic_add_fetch(&ck_cases, 1, __ATOMIC_SEQ_CST);
}

/* "case NAME: ok" or "case NAME: fail EXXX". */
void
trace(const char *name, struct ck_res r)
{
    tracef(name, "%s", ck_outcome(r));
}

/* "case NAME: ok EXTRA" on success, else "case NAME: fail EXXX". */
void
trace_ok(const char *name, struct ck_res r, const char *fmt, ...)
{
    char extra[400];
    va_list ap;
    if (r.ret == -1) {
        trace(name, r);
        return;
    }
    va_start(ap, fmt);
    vsnprintf(extra, sizeof extra, fmt, ap);
    va_end(ap);
    tracef(name, "ok %s", extra);
}

/* -------------------------------------------------------------- registry */

/* Slots hold id + 1 (0 = empty) so that shmid 0 can be recorded. */
int ck_ids[CK_MAX_IDS];
unsigned char ck_crash_only[CK_MAX_IDS];
int ck_nids;
pid_t ck_owner;
static char ck_tmp_path[64];
static char ck_tmp_dir[64];

static void
ck_track_mode(int id, int crash_only)
{
    if (id < 0)
        return;
    int slot = __atomic_fetch_add(&ck_nids, 1, __ATOMIC_SEQ_CST);
    if (slot >= CK_MAX_IDS) {
        FAIL("registry full: segment %d may leak", id);
        return;
    }
    ck_crash_only[slot] = (unsigned char)crash_only;
    __atomic_store_n(&ck_ids[slot], id + 1, __ATOMIC_SEQ_CST);
}

/* Remove ID at exit and on a fatal signal. */
void
ck_track(int id)
{
    ck_track_mode(id, 0);
}

/* Remove ID only on a fatal signal (segments a program leaks on purpose). */
void
ck_track_crash_only(int id)
{
    ck_track_mode(id, 1);
}

/* A program's own cleanup (segments it tracks outside the registry, such
 * as the stress test's live tables), run with the registry's: at exit and
 * from the fatal-signal handlers, in the owning process only. It must be
 * async-signal-safe. */
void (*ck_cleanup_hook)(void);

/* Async-signal-safe: raw syscalls only. */
void
ck_remove_all(int at_exit)
{
    if ((pid_t)syscall(SYS_getpid) != ck_owner)
        return;
    if (ck_cleanup_hook != NULL)
        ck_cleanup_hook();
    int n = __atomic_load_n(&ck_nids, __ATOMIC_SEQ_CST);
    if (n > CK_MAX_IDS)
        n = CK_MAX_IDS;
    for (int i = 0; i < n; i++) {
        int v = __atomic_load_n(&ck_ids[i], __ATOMIC_SEQ_CST);
        if (v == 0 || (at_exit && ck_crash_only[i]))
            continue;
        syscall(SYS_shmctl, v - 1, IPC_RMID, 0);
    }
    if (ck_tmp_path[0] != '\0')
        unlink(ck_tmp_path);
}

/* Empties and removes the per-run directory (at exit only: not
 * async-signal-safe). */
static void
ck_remove_tmpdir(void)
{
    if (ck_tmp_dir[0] == '\0' || getpid() != ck_owner)
        return;
    DIR *d = opendir(ck_tmp_dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            char path[sizeof ck_tmp_dir + 256];
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof path, "%s/%s", ck_tmp_dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(ck_tmp_dir);
}

static void
ck_atexit(void)
{
    ck_remove_all(1);
    ck_remove_tmpdir();
}

static void
ck_on_signal(int sig)
{
    int saved = errno;
    if ((pid_t)syscall(SYS_getpid) == ck_owner) {
        static const char msg[] = "FAIL: fatal signal, removing segments\n";
        if (write(2, msg, sizeof msg - 1) < 0) {
            /* nothing to do */
        }
        ck_remove_all(0);
    }
    signal(sig, SIG_DFL);
    errno = saved;
    raise(sig);
}

/* Wrappers that create and record. */
int
ck_shmget(key_t key, size_t size, int flg)
{
    int id = shmget(key, size, flg);
    if (id >= 0)
        ck_track(id);
    return id;
}

int
ck_raw_shmget(key_t key, size_t size, int flg)
{
    int id = raw_shmget(key, size, flg);
    if (id >= 0)
        ck_track(id);
    return id;
}

/* A new private segment, made with the raw syscall: a fixture, not a case. */
int
ck_fixture(size_t size, int mode)
{
    int id = ck_raw_shmget(IPC_PRIVATE, size, IPC_CREAT | mode);
    if (id < 0) {
        FAIL("fixture shmget(%zu): %s", size, ck_errname(errno));
        exit(1);
    }
    return id;
}

/* A key nobody else uses: derived from our pid and a small number N < 64.
 * Negative keys (bit 31) are keys like any other. */
key_t
ck_key(unsigned n, int negative)
{
    uint32_t k = 0x40000000u | ((uint32_t)ck_owner << 6) | (n & 63u);
    if (negative)
        k |= 0x80000000u;
    return (key_t)k;
}

/* A per-run temp file (unlinked at exit). */
const char *
ck_tmpfile(void)
{
    if (ck_tmp_path[0] == '\0') {
        char path[sizeof ck_tmp_path];
        snprintf(path, sizeof path, "/tmp/shmguard-test-XXXXXX");
        int fd = mkstemp(path);
        if (fd < 0) {
            FAIL("mkstemp: %s", ck_errname(errno));
            exit(1);
        }
        close(fd);
        memcpy(ck_tmp_path, path, sizeof path);
    }
    return ck_tmp_path;
}

/* --------------------------------------------------------------- helpers */

/* An unsigned number from a /proc file such as /proc/sys/kernel/shmmax. */
unsigned long long
ck_proc_ull(const char *path)
{
    unsigned long long v = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL || fscanf(f, "%llu", &v) != 1)
        FAIL("cannot read %s", path);
    if (f != NULL)
        fclose(f);
    return v;
}

int
ck_stat(int id, struct shmid_ds *ds)
{
    memset(ds, 0, sizeof *ds);
    return raw_shmctl(id, IPC_STAT, ds);
}

/* nattch by the raw syscall, -1 if the segment is gone. */
long
ck_nattch(int id)
{
    struct shmid_ds ds;
    if (ck_stat(id, &ds) != 0)
        return -1;
    return (long)ds.shm_nattch;
}

/* Compare the fields of two IPC_STAT results. */
int
ck_same_ds(const char *file, int line, const char *name, const struct shmid_ds *a,
           const struct shmid_ds *b)
{
#define CK_FIELD(f)                                                            \
    if ((long long)a->f != (long long)b->f) {                                  \
        ck_fail(file, line, "%s: field %s differs: %lld vs %lld", name, #f,    \
                (long long)a->f, (long long)b->f);                             \
        return 0;                                                              \
    }
    CK_FIELD(shm_perm.__key);
    CK_FIELD(shm_perm.uid);
    CK_FIELD(shm_perm.gid);
    CK_FIELD(shm_perm.cuid);
    CK_FIELD(shm_perm.cgid);
    CK_FIELD(shm_perm.mode);
    CK_FIELD(shm_perm.__seq);
    CK_FIELD(shm_segsz);
    CK_FIELD(shm_atime);
    CK_FIELD(shm_dtime);
    CK_FIELD(shm_ctime);
    CK_FIELD(shm_cpid);
    CK_FIELD(shm_lpid);
    CK_FIELD(shm_nattch);
#undef CK_FIELD
    return 1;
}

void
ck_flush_all(void)
{
    fflush(stdout);
    fflush(stderr);
}

/* SHMGUARD_TIMEOUT_SCALE (default 1): every timeout of the suite is
 * multiplied by it, for slow runs (valgrind, sanitizers). */
int
ck_scale(void)
{
    const char *s = getenv("SHMGUARD_TIMEOUT_SCALE");
    int n = s == NULL ? 1 : atoi(s);
    return n > 0 ? n : 1;
}

/* Set in a child forked while other threads ran: what those threads were
 * allocating is referenced only from stacks the child does not have, so
 * leak checkers would call it lost. LeakSanitizer asks this function at
 * exit; valgrind is told by ck_child_of_threads(). */
static int ck_forked_from_threads;

__attribute__((used, visibility("default"))) int
__lsan_is_turned_off(void)
{
    return ck_forked_from_threads;
}

/* In a child forked while other threads ran: no leak check at its exit
 * (LeakSanitizer, valgrind; a no-op otherwise). */
void
ck_child_of_threads(void)
{
    ck_forked_from_threads = 1;
#ifdef VALGRIND_CLO_CHANGE
    VALGRIND_CLO_CHANGE("--leak-check=no");
#endif
}

/* The number of threads of this process (from /proc, without malloc). */
int
ck_threads(void)
{
    char buf[1024];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 1;
    buf[n] = '\0';
    /* field 20; the command (field 2) may hold spaces: count after ')' */
    const char *p = strrchr(buf, ')');
    int field = 2, threads = 1;
    for (; p != NULL && *p != '\0'; p++)
        if (*p == ' ' && ++field == 20) {
            threads = atoi(p + 1);
            break;
        }
    return threads;
}

pid_t
ck_fork(void)
{
    ck_flush_all();
    int threads = ck_threads();
    pid_t pid = fork();
    if (pid < 0) {
        FAIL("fork: %s", ck_errname(errno));
        exit(1);
    }
    if (pid == 0 && threads > 1)
        ck_child_of_threads();
    return pid;
}

/* Wait for PID up to TIMEOUT_MS (times ck_scale()); kill it on expiry.
 * Returns the wait status or -1 on timeout. */
int
ck_wait(pid_t pid, int timeout_ms)
{
    int status = 0;
    timeout_ms *= ck_scale();
    for (int waited = 0;; waited += 2) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0 && errno != EINTR) {
            FAIL("waitpid(%d): %s", (int)pid, ck_errname(errno));
            return -1;
        }
        if (waited >= timeout_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            FAIL("child %d did not finish in %d ms, killed", (int)pid, timeout_ms);
            return -1;
        }
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* The child's exit code, or a distinct negative value if it did not exit
 * normally: -SIGNAL for a signal, -1000 for a timeout. */
int
ck_child_code(pid_t pid, int timeout_ms)
{
    int st = ck_wait(pid, timeout_ms);
    if (st == -1)
        return -1000;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return -WTERMSIG(st);
    return -999;
}

/* Permissions of the mapping starting at ADDR in /proc/self/maps, e.g.
 * "rw-s", or "none" when no mapping starts there. */
const char *
ck_map_perms(const void *addr)
{
    static char perms[8];
    char line[512];
    FILE *f = fopen("/proc/self/maps", "r");
    snprintf(perms, sizeof perms, "none");
    if (f == NULL)
        return perms;
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long start, end;
        char p[8];
        if (sscanf(line, "%lx-%lx %7s", &start, &end, p) == 3 &&
            start == (unsigned long)(uintptr_t)addr) {
            snprintf(perms, sizeof perms, "%s", p);
            break;
        }
    }
    fclose(f);
    return perms;
}

/* A free, page-aligned address range of LEN bytes (mapped then unmapped). */
char *
ck_free_range(size_t len)
{
    void *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        FAIL("mmap: %s", ck_errname(errno));
        exit(1);
    }
    munmap(p, len);
    return p;
}

/* ---------------------------------------------------- options and logs */

/* Segments in the kernel that this process created (cpid = our pid): a
 * count that other processes on the machine do not disturb. */
int
ck_own_segments(void)
{
    char line[512];
    int n = 0;
    long me = (long)getpid();
    FILE *f = fopen("/proc/sysvipc/shm", "r");
    if (f == NULL) {
        FAIL("cannot read /proc/sysvipc/shm");
        return -1;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        long key, id, cpid;
        unsigned long size;
        int perms;
        if (sscanf(line, "%ld %ld %o %lu %ld", &key, &id, &perms, &size, &cpid) == 5 &&
            cpid == me)
            n++;
    }
    fclose(f);
    return n;
}

/* The whole file at PATH, NUL-terminated, malloc'd, its length in *LEN
 * (the file may hold NUL bytes); NULL if unreadable. */
char *
ck_slurp_len(const char *path, size_t *len_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (buf == NULL)
            break;
        if (len + 1 >= cap) {
            char *bigger = realloc(buf, cap * 2);
            if (bigger == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    if (buf != NULL)
        buf[len] = '\0';
    if (len_out != NULL)
        *len_out = buf == NULL ? 0 : len;
    return buf;
}

/* The whole file at PATH, NUL-terminated, malloc'd; NULL if unreadable. */
char *
ck_slurp(const char *path)
{
    return ck_slurp_len(path, NULL);
}

/* A per-run directory, mode 01777 so that a child that dropped privileges
 * may write its log there; emptied and removed at exit. */
const char *
ck_tmpdir(void)
{
    if (ck_tmp_dir[0] == '\0') {
        char path[sizeof ck_tmp_dir];
        snprintf(path, sizeof path, "/tmp/shmguard-test-XXXXXX");
        if (mkdtemp(path) == NULL || chmod(path, 01777) != 0) {
            FAIL("mkdtemp: %s", ck_errname(errno));
            exit(1);
        }
        memcpy(ck_tmp_dir, path, sizeof path);
    }
    return ck_tmp_dir;
}

/* The path of NAME in the per-run directory, written into BUF. */
const char *
ck_tmp_name(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", ck_tmpdir(), name);
    return buf;
}

/* This process's SHMGUARD_OPTIONS followed by EXTRA (":"-joined). */
const char *
ck_options_plus(char *buf, size_t len, const char *extra)
{
    const char *now = getenv("SHMGUARD_OPTIONS");
    if (now == NULL || now[0] == '\0')
        snprintf(buf, len, "%s", extra);
    else
        snprintf(buf, len, "%s:%s", now, extra);
    return buf;
}

/* This program's path, for exec'ing it again: /proc/self/exe resolved (under
 * valgrind, exec of /proc/self/exe itself would start valgrind's tool, while
 * readlink gives the program's own path). */
const char *
ck_self_exe(void)
{
    static char path[4096];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0)
        return "/proc/self/exe";
    path[n] = '\0';
    return path;
}

/* Runs this program again (ck_self_exe) with ARGV, the environment kept
 * but SHMGUARD_OPTIONS set to OPTS (removed if NULL), stdout and stderr
 * written to the files OUT and ERR. Returns ck_child_code() (killed after
 * TIMEOUT_MS) and the child's pid in *PID. */
int
ck_run_self_timeout(char *const argv[], const char *opts, const char *out, const char *err,
                    pid_t *pid_out, int timeout_ms)
{
    extern char **environ;
    size_t n = 0;
    while (environ[n] != NULL)
        n++;
    char **envp = calloc(n + 2, sizeof *envp);
    size_t olen = opts == NULL ? 0 : strlen(opts) + sizeof "SHMGUARD_OPTIONS=";
    char *env_opts = olen == 0 ? NULL : malloc(olen);
    if (envp == NULL || (olen != 0 && env_opts == NULL)) {
        FAIL("out of memory");
        exit(1);
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "SHMGUARD_OPTIONS=", 17) != 0)
            envp[m++] = environ[i];
    if (env_opts != NULL) {
        snprintf(env_opts, olen, "SHMGUARD_OPTIONS=%s", opts);
        envp[m++] = env_opts;
    }
    envp[m] = NULL;
    pid_t pid = ck_fork();
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
            _exit(98);
        close(o);
        close(e);
        execve(ck_self_exe(), argv, envp);
        _exit(99);
    }
    free(envp);
    free(env_opts);
    if (pid_out != NULL)
        *pid_out = pid;
    return ck_child_code(pid, timeout_ms);
}

/* ck_run_self_timeout with 40 s. */
int
ck_run_self(char *const argv[], const char *opts, const char *out, const char *err,
            pid_t *pid_out)
{
    return ck_run_self_timeout(argv, opts, out, err, pid_out, 40000);
}

/* log_path=DIR/l.%p.jsonl (after this process's own options). */
const char *
ck_log_opts(char *buf, size_t len, const char *dir)
{
    char extra[300];
    snprintf(extra, sizeof extra, "log_path=%s/l.%%p.jsonl", dir);
    return ck_options_plus(buf, len, extra);
}

/* The log file of PID in DIR. */
const char *
ck_log_file(char *buf, size_t len, const char *dir, long pid)
{
    snprintf(buf, len, "%s/l.%ld.jsonl", dir, pid);
    return buf;
}

/* Lines of TEXT: every one must begin "==N== shmguard: " (some pid N) and
 * have no carriage return; returns how many, or -1 (FAILed with WHAT). */
int
ck_shmguard_lines(const char *what, const char *text)
{
    int n = 0;
    for (const char *line = text; line != NULL && *line != '\0';) {
        const char *nl = strchr(line, '\n');
        size_t len = nl == NULL ? strlen(line) : (size_t)(nl - line);
        int pid_end = 0;
        char head[64];
        snprintf(head, sizeof head, "%.*s", (int)(len < 63 ? len : 63), line);
        if (sscanf(head, "==%*d==%n", &pid_end) != 0 || pid_end == 0 ||
            strncmp(head + pid_end, " shmguard: ", 11) != 0 ||
            memchr(line, '\r', len) != NULL) {
            FAIL("%s: a stderr line is not a shmguard line: \"%.*s\"", what,
                 (int)(len > 200 ? 200 : len), line);
            return -1;
        }
        n++;
        line = nl == NULL ? NULL : nl + 1;
    }
    return n;
}

/* The number after "KEY " at the start of a line of TEXT, or -1. */
long
ck_field(const char *text, const char *key)
{
    char want[64];
    snprintf(want, sizeof want, "%s ", key);
    size_t n = strlen(want);
    for (const char *line = text; line != NULL && *line != '\0';) {
        if (strncmp(line, want, n) == 0)
            return strtol(line + n, NULL, 10);
        line = strchr(line, '\n');
        if (line != NULL)
            line++;
    }
    return -1;
}

/* Lines of TEXT that contain every one of the N needles. */
int
ck_lines_with(const char *text, const char *const *needles, int n)
{
    int count = 0;
    const char *line = text;
    while (line != NULL && *line != '\0') {
        const char *nl = strchr(line, '\n');
        size_t len = nl == NULL ? strlen(line) : (size_t)(nl - line);
        char *copy = strndup(line, len);
        int all = copy != NULL;
        for (int i = 0; all && i < n; i++)
            all = strstr(copy, needles[i]) != NULL;
        count += all;
        free(copy);
        line = nl == NULL ? NULL : nl + 1;
    }
    return count;
}

/* Runs this program again with ARGV and SHMGUARD_OPTIONS=OPTS (ck_run_self)
 * and collects what it printed. */
struct ck_child
ck_run_child(char *const argv[], const char *opts)
{
    struct ck_child c;
    char out[256], err[256];
    ck_tmp_name(out, sizeof out, "child.out");
    ck_tmp_name(err, sizeof err, "child.err");
    c.code = ck_run_self(argv, opts, out, err, &c.pid);
    c.out = ck_slurp(out);
    c.err = ck_slurp(err);
    if (c.out == NULL)
        c.out = strdup("");
    if (c.err == NULL)
        c.err = strdup("(stderr unreadable)\n");
    unlink(out);
    unlink(err);
    return c;
}

void
ck_child_free(struct ck_child *c)
{
    free(c->out);
    free(c->err);
}

/* Empties DIR (files only, not subdirectories) and removes it. */
void
ck_remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            char path[600];
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* Lines of TEXT that begin "==N== shmguard: " (any pid N) followed by
 * REST; or, if REST is NULL, lines that contain NEEDLE. */
int
ck_count_lines(const char *text, const char *rest, const char *needle)
{
    int n = 0;
    for (const char *line = text; line != NULL && *line != '\0';) {
        const char *nl = strchr(line, '\n');
        size_t len = nl == NULL ? strlen(line) : (size_t)(nl - line);
        char buf[2048];
        if (len >= sizeof buf)
            len = sizeof buf - 1;
        memcpy(buf, line, len);
        buf[len] = '\0';
        if (rest == NULL) {
            n += strstr(buf, needle) != NULL;
        } else {
            int pid_end = 0;
            if (sscanf(buf, "==%*d==%n", &pid_end) == 0 && pid_end > 0 &&
                strncmp(buf + pid_end, " shmguard: ", 11) == 0 &&
                strncmp(buf + pid_end + 11, rest, strlen(rest)) == 0)
                n++;
        }
        line = nl == NULL ? NULL : nl + 1;
    }
    return n;
}

/* The extension function NAME, looked up with dlsym so that one binary
 * serves the linked and the preloaded modes. */
void *
ck_sym(const char *name)
{
    void *f = dlsym(RTLD_DEFAULT, name);
    if (f == NULL) {
        FAIL("shmguard's %s is not there", name);
        exit(1);
    }
    return f;
}

/* shmguard_last_error() of this thread, "(null)" for NULL. */
const char *
ck_last_error(void)
{
    const char *(*last)(void);
    *(void **)&last = ck_sym("shmguard_last_error");
    const char *e = last();
    return e == NULL ? "(null)" : e;
}

/* -------------------------------------------------------- audit logs */

/* A strict JSON (RFC 8259) validator for one line (struct ck_json). */

static void
ck_json_ws(struct ck_json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

/* One UTF-8 sequence (RFC 3629: no overlongs, no surrogates). */
static int
ck_json_utf8(struct ck_json *j)
{
    const unsigned char *s = j->p;
    size_t left = (size_t)(j->end - s);
    unsigned c = s[0];
    int n;
    unsigned min, cp;
    if (c < 0x80)
        n = 1, min = 0, cp = c;
    else if ((c & 0xe0) == 0xc0)
        n = 2, min = 0x80, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0)
        n = 3, min = 0x800, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0)
        n = 4, min = 0x10000, cp = c & 0x07;
    else
        return 0;
    if ((size_t)n > left)
        return 0;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    j->p += n;
    return 1;
}

/* A string; its raw bytes (escapes kept) into OUT when OUT is not NULL. */
static int
ck_json_string(struct ck_json *j, char *out, size_t outlen)
{
    size_t n = 0;
    if (j->p >= j->end || *j->p != '"')
        return 0;
    j->p++;
    while (j->p < j->end) {
        unsigned char c = *j->p;
        if (c == '"') {
            j->p++;
            if (out != NULL)
                out[n < outlen ? n : outlen - 1] = '\0';
            return 1;
        }
        if (c < 0x20)
            return 0;
        if (out != NULL && n + 1 < outlen)
            out[n++] = (char)c;
        if (c == '\\') {
            j->p++;
            if (j->p >= j->end)
                return 0;
            c = *j->p;
            if (c == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (j->p + i >= j->end || !strchr("0123456789abcdefABCDEF", j->p[i]) ||
                        j->p[i] == '\0')
                        return 0;
                j->p += 5;
            } else if (strchr("\"\\/bfnrt", c) != NULL && c != '\0') {
                j->p++;
            } else {
                return 0;
            }
        } else if (!ck_json_utf8(j)) {
            return 0;
        }
    }
    return 0;
}

static int
ck_json_number(struct ck_json *j, long *out)
{
    const unsigned char *start = j->p;
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p >= j->end)
        return 0;
    if (*j->p == '0')
        j->p++;
    else if (*j->p >= '1' && *j->p <= '9')
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    else
        return 0;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9')
            return 0;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9')
            return 0;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    }
    if (out != NULL) {
        char buf[32];
        size_t n = (size_t)(j->p - start);
        if (n >= sizeof buf)
            n = sizeof buf - 1;
        memcpy(buf, start, n);
        buf[n] = '\0';
        *out = strtol(buf, NULL, 10);
    }
    return 1;
}

static int
ck_json_literal(struct ck_json *j, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
        return 0;
    j->p += n;
    return 1;
}

static int ck_json_value(struct ck_json *j, int top);

/* An object; TOP: capture its members. */
static int
ck_json_object(struct ck_json *j, int top)
{
    j->p++;
    ck_json_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return 1;
    }
    for (;;) {
        char key[16];
        ck_json_ws(j);
        if (!ck_json_string(j, key, sizeof key))
            return 0;
        ck_json_ws(j);
        if (j->p >= j->end || *j->p != ':')
            return 0;
        j->p++;
        ck_json_ws(j);
        int ok;
        if (top && strcmp(key, "event") == 0)
            ok = ck_json_string(j, j->event, sizeof j->event);
        else if (top && strcmp(key, "call") == 0 && j->p < j->end && *j->p == '"')
            ok = ck_json_string(j, j->call, sizeof j->call);
        else if (top && strcmp(key, "pid") == 0)
            ok = ck_json_number(j, &j->pid);
        else if (top && strcmp(key, "errno") == 0 && j->p < j->end && *j->p == '"')
            ok = ck_json_string(j, NULL, 0), j->failed = 1;
        else if (top && strcmp(key, "forked") == 0 && ck_json_literal(j, "true"))
            ok = 1, j->forked = 1;
        else
            ok = ck_json_value(j, 0);
        if (!ok)
            return 0;
        ck_json_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == '}') {
            j->p++;
            return 1;
        }
        return 0;
    }
}

static int
ck_json_value(struct ck_json *j, int top)
{
    int ok;
    if (++j->depth > 64)
        return 0;
    ck_json_ws(j);
    if (j->p >= j->end)
        return 0;
    switch (*j->p) {
    case '{':
        ok = ck_json_object(j, top);
        break;
    case '[':
        j->p++;
        ck_json_ws(j);
        if (j->p < j->end && *j->p == ']') {
            j->p++;
            ok = 1;
            break;
        }
        for (;;) {
            ok = ck_json_value(j, 0);
            if (!ok)
                break;
            ck_json_ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            ok = j->p < j->end && *j->p == ']';
            if (ok)
                j->p++;
            break;
        }
        break;
    case '"':
        ok = ck_json_string(j, NULL, 0);
        break;
    case 't':
        ok = ck_json_literal(j, "true");
        break;
    case 'f':
        ok = ck_json_literal(j, "false");
        break;
    case 'n':
        ok = ck_json_literal(j, "null");
        break;
    default:
        ok = ck_json_number(j, NULL);
        break;
    }
    j->depth--;
    return ok;
}

/* Whether LINE (LEN bytes, no newline) is one JSON object; its captured
 * members in *J. */
int
ck_json_line(const char *line, size_t len, struct ck_json *j)
{
    memset(j, 0, sizeof *j);
    j->pid = -1;
    j->p = (const unsigned char *)line;
    j->end = j->p + len;
    ck_json_ws(j);
    if (j->p >= j->end || *j->p != '{' || !ck_json_value(j, 1))
        return 0;
    ck_json_ws(j);
    return j->p == j->end;
}

/* The calls a log counts, in this order. */
const char *const ck_call_names[5] = {"shmget", "shmat", "shmdt", "shmctl", "ftok"};

/* Reads the log file PATH into *LOG: NUL bytes and blank lines are skipped
 * (docs/log-schema.md); every other line must be a JSON object. Returns 0
 * if the file cannot be read. */
int
ck_log_read(const char *path, struct ck_log *log)
{
    size_t len = 0;
    char *text = ck_slurp_len(path, &len);
    memset(log, 0, sizeof *log);
    log->pid = -1;
    const char *slash = strrchr(path, '/');
    snprintf(log->name, sizeof log->name, "%s", slash == NULL ? path : slash + 1);
    if (text == NULL)
        return 0;
    size_t at = 0;
    int last_was_exit = 0;
    while (at < len) {
        size_t end = at;
        while (end < len && text[end] != '\n')
            end++;
        /* skip NUL padding */
        size_t s = at, e = end;
        while (s < e && text[s] == '\0')
            s++;
        while (e > s && text[e - 1] == '\0')
            e--;
        if (e > s) {
            struct ck_json j;
            if (!ck_json_line(text + s, e - s, &j)) {
                if (log->bad++ == 0)
                    snprintf(log->bad_line, sizeof log->bad_line, "%.*s",
                             (int)(e - s > 190 ? 190 : e - s), text + s);
            } else {
                if (log->events++ == 0) {
                    log->pid = j.pid;
                    log->start_first = strcmp(j.event, "start") == 0;
                } else if (j.pid != log->pid) {
                    log->other_pid++;
                }
                last_was_exit = strcmp(j.event, "exit") == 0;
                if (strcmp(j.event, "start") == 0) {
                    log->starts++;
                    log->forked = j.forked;
                } else if (last_was_exit) {
                    log->exits++;
                } else if (strcmp(j.event, "finding") == 0) {
                    log->findings++;
                } else if (strcmp(j.event, "call") == 0) {
                    for (int i = 0; i < 5; i++)
                        if (strcmp(j.call, ck_call_names[i]) == 0)
                            log->calls[i]++;
                    log->failed += j.failed;
                }
            }
        }
        at = end + 1;
    }
    log->exit_last = log->exits == 1 && last_was_exit;
    size_t last = len;
    while (last > 0 && text[last - 1] == '\0')
        last--;
    log->unterminated = last > 0 && text[last - 1] != '\n';
    free(text);
    return 1;
}

/* Reads every file of DIR whose name begins with PREFIX into a malloc'd
 * array (*LOGS); returns how many (0 if none or on error). */
int
ck_logs_read(const char *dir, const char *prefix, struct ck_log **logs)
{
    int n = 0, cap = 0;
    *logs = NULL;
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        if (n == cap) {
            int bigger = cap == 0 ? 64 : cap * 2;
            struct ck_log *more = realloc(*logs, (size_t)bigger * sizeof **logs);
            if (more == NULL)
                break;
            *logs = more;
            cap = bigger;
        }
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (ck_log_read(path, &(*logs)[n]))
            n++;
    }
    closedir(d);
    return n;
}

/* The log of PID among LOGS, or NULL. */
struct ck_log *
ck_log_of(struct ck_log *logs, int n, long pid)
{
    for (int i = 0; i < n; i++)
        if (logs[i].pid == pid)
            return &logs[i];
    return NULL;
}

/* The sum of a log's call events. */
long
ck_log_calls(const struct ck_log *log)
{
    long n = 0;
    for (int i = 0; i < 5; i++)
        n += log->calls[i];
    return n;
}

/* A log must be whole: every line JSON, one start event first, one exit
 * event last (WANT_EXIT), all of one pid, ending in a newline. FAILs with
 * WHAT and returns 0 otherwise. */
int
ck_log_whole(const char *what, const struct ck_log *log, int want_exit)
{
    int ok = log->bad == 0 && log->starts == 1 && log->start_first && log->other_pid == 0 &&
             !log->unterminated && (!want_exit || log->exit_last) &&
             (want_exit || log->exits == 0);
    if (!ok)
        FAIL("%s: log %s: %d events, %d bad lines%s%s, %d start (first %d), %d exit (last %d), "
             "%d of another pid, unterminated %d",
             what, log->name, log->events, log->bad, log->bad ? ", first: " : "",
             log->bad ? log->bad_line : "", log->starts, log->start_first, log->exits,
             log->exit_last, log->other_pid, log->unterminated);
    return ok;
}

/* ------------------------------------------------------------ init/finish */

int
ck_expect_shmguard(void)
{
    const char *e = getenv("SHMGUARD_EXPECT");
    return e != NULL && strcmp(e, "1") == 0;
}

void
ck_check_mode(void)
{
    Dl_info info;
    int expect = ck_expect_shmguard();
    const char *where = "?";
    memset(&info, 0, sizeof info);
    if (dladdr((void *)&shmget, &info) != 0 && info.dli_fname != NULL)
        where = info.dli_fname;
    int from_lib = strstr(where, "libshmguard") != NULL;
    int has_ext = dlsym(RTLD_DEFAULT, "shmguard_version") != NULL;
    if (expect && !(from_lib && has_ext)) {
        FAIL("SHMGUARD_EXPECT=1 but shmget resolves to %s (shmguard_version %s)",
             where, has_ext ? "found" : "missing");
        exit(1);
    }
    if (!expect && (from_lib || has_ext)) {
        FAIL("plain mode but shmget resolves to %s (shmguard_version %s)", where,
             has_ext ? "found" : "missing");
        exit(1);
    }
}

/* SIGSEGV and SIGBUS as the program found them (with guard_pages=1:
 * shmguard's fault reporter), before ck_init installed its own. */
static struct sigaction ck_start_segv, ck_start_bus;

void
ck_init(void)
{
    struct sigaction sa;
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGABRT, SIGALRM, SIGTERM,
                               SIGINT, SIGILL, SIGFPE};
    ck_owner = getpid();
    sigaction(SIGSEGV, NULL, &ck_start_segv);
    sigaction(SIGBUS, NULL, &ck_start_bus);
    setvbuf(stdout, NULL, _IOLBF, 0);
    atexit(ck_atexit);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = ck_on_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
    alarm(55 * (unsigned)ck_scale());
    ck_check_mode();
}

/* In a forked child: back to default signal actions so that a deliberate
 * SIGSEGV kills the child plainly. */
void
ck_child_defaults(void)
{
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    alarm(20 * (unsigned)ck_scale());
}

/* In a forked child: SIGSEGV and SIGBUS back to what the program started
 * with (shmguard's guard-page reporter when it installed one), so that a
 * deliberate fault is reported and kills the child; and no core file. */
void
ck_child_start_signals(void)
{
    sigaction(SIGSEGV, &ck_start_segv, NULL);
    sigaction(SIGBUS, &ck_start_bus, NULL);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    alarm(20 * (unsigned)ck_scale());
}

int
ck_finish(void)
{
    ck_flush_all();
    if (ck_cases == 0) {
        fprintf(stderr, "FAIL: no case ran\n");
        return 1;
    }
    if (ck_failures != 0) {
        fprintf(stderr, "%d of the checks failed (%d cases)\n", ck_failures, ck_cases);
        return 1;
    }
    return 0;
}
