/* x_api.c: shmguard's extension API (linked mode only: it calls the API
 * directly). last_error, attachment_size, copy_to/copy_from, the mirrors,
 * the version, the diagnostic sentences and verbosity=1. */
#define SHMGUARD_EXT 1
#include "check.h"

#include <pthread.h>

#define PAGE 4096UL

extern char **environ;

/* ---------------------------------------------------------- last_error */

/* A copy of the current sentence ("(null)" for NULL). */
static const char *
last_error_copy(void)
{
    static char buf[1024];
    const char *e = shmguard_last_error();
    snprintf(buf, sizeof buf, "%s", e == NULL ? "(null)" : e);
    return buf;
}

/* After a failed call: errno as wanted and a sentence containing NEEDLE. */
static void
diag_case(const char *name, struct ck_res r, int want_err, const char *needle)
{
    WANT(name, r, want_err);
    const char *e = shmguard_last_error();
    int has = e != NULL && e[0] != '\0' && strstr(e, needle) != NULL;
    if (!has)
        FAIL("%s: last_error \"%s\" does not contain \"%s\"", name,
             e == NULL ? "(null)" : e, needle);
    tracef(name, "%s mentions=%d", ck_outcome(r), has);
}

static void
case_version(void)
{
    const char *v = shmguard_version();
    unsigned a, b, c;
    int ok = v != NULL && v[0] != '\0' && sscanf(v, "%u.%u.%u", &a, &b, &c) == 3;
    if (!ok)
        FAIL("version \"%s\" is not N.N.N", v == NULL ? "(null)" : v);
    tracef("version", "ok well_formed=%d", ok);
}

static void *
thread_fresh_last_error(void *arg)
{
    (void)arg;
    return (void *)shmguard_last_error();
}

static void
case_last_error_initially_null(void)
{
    const char *e = shmguard_last_error();
    if (e != NULL)
        FAIL("last_error before any failure: \"%s\"", e);
    tracef("last_error_initially_null", "ok null=%d", e == NULL);
}

static void
case_diagnostics(void)
{
    diag_case("diag_size0", RES(ck_shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600)), EINVAL, "size 0");

    /* a successful call does not clear it */
    char before[1024];
    snprintf(before, sizeof before, "%s", last_error_copy());
    int id = ck_shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
    CHECK(id >= 0);
    int kept = strcmp(before, last_error_copy()) == 0;
    CHECK(kept);
    tracef("last_error_kept_after_success", "ok kept=%d", kept);

    /* a thread that never failed sees NULL */
    pthread_t t;
    void *other = (void *)1;
    CHECK_EQ(pthread_create(&t, NULL, thread_fresh_last_error, NULL), 0);
    CHECK_EQ(pthread_join(t, &other), 0);
    CHECK(other == NULL);
    tracef("last_error_fresh_thread_null", "ok null=%d", other == NULL);

    diag_case("diag_size_max", RES(ck_shmget(IPC_PRIVATE, SIZE_MAX, IPC_CREAT | 0600)), EINVAL,
              "/proc/sys/kernel/shmmax");

    key_t key = ck_key(1, 0);
    int k = ck_raw_shmget(key, 5000, IPC_CREAT | IPC_EXCL | 0600);
    CHECK(k >= 0);
    diag_case("diag_larger_than_existing", RES(shmget(key, 6000, 0)), EINVAL, "5000");
    diag_case("diag_eexist", RES(ck_shmget(key, 5000, IPC_CREAT | IPC_EXCL | 0600)), EEXIST,
              "IPC_EXCL");
    diag_case("diag_enoent", RES(shmget(ck_key(2, 0), 5000, 0)), ENOENT, "IPC_CREAT");

    char *base = ck_free_range(4 * PAGE);
    diag_case("diag_unaligned_shmat", RES(shmat(id, base + PAGE + 5, 0)), EINVAL, "SHMLBA");

    char *p = shmat(id, NULL, 0);
    CHECK(p != (void *)-1);
    diag_case("diag_shmdt_not_start", RES(shmdt(p + 1)), EINVAL, "shmdt");
    CHECK_EQ(shmdt(p), 0);

    char missing[128];
    snprintf(missing, sizeof missing, "/nonexistent/shmguard-%d/file", (int)getpid());
    diag_case("diag_ftok_missing", RES(ftok(missing, 1)), ENOENT, missing);
}

/* EACCES for an unprivileged user on a 0600 root segment: the sentence
 * names the mode. Runs in a child that drops to uid 65534. */
static void
case_eacces(void)
{
    if (geteuid() != 0) {
        tracef("diag_eacces_mode", "skipped not_root");
        return;
    }
    key_t key = ck_key(3, 0);
    int id = ck_raw_shmget(key, PAGE, IPC_CREAT | IPC_EXCL | 0600);
    CHECK(id >= 0);
    pid_t pid = ck_fork();
    if (pid == 0) {
        ck_child_defaults();
        if (setgid(65534) != 0 || setuid(65534) != 0)
            _exit(10);
        errno = 0;
        if (shmat(id, NULL, 0) != (void *)-1 || errno != EACCES)
            _exit(11);
        const char *e = shmguard_last_error();
        if (e == NULL || strstr(e, "0600") == NULL)
            _exit(12);
        errno = 0;
        if (shmget(key, 0, 0600) != -1 || errno != EACCES)
            _exit(13);
        e = shmguard_last_error();
        if (e == NULL || strstr(e, "0600") == NULL)
            _exit(14);
        struct shmid_ds ds;
        errno = 0;
        if (shmctl(id, IPC_STAT, &ds) != -1 || errno != EACCES)
            _exit(15);
        if (raw_shmctl(id, IPC_STAT, &ds) != -1 || errno != EACCES)
            _exit(16);
        _exit(0);
    }
    int code = ck_child_code(pid, 10000);
    if (code != 0)
        FAIL("diag_eacces_mode: child ended with %d (10 setuid, 11 shmat errno, 12 shmat "
             "sentence, 13 shmget errno, 14 shmget sentence, 15/16 IPC_STAT)",
             code);
    tracef("diag_eacces_mode", "%s child=%d", code == 0 ? "ok" : "fail", code);
}

/* Per thread: two threads fail differently; each sees its own sentence. */
static pthread_barrier_t barrier;

struct per_thread {
    int which;
    int ok;
};

static void *
per_thread_main(void *arg)
{
    struct per_thread *t = arg;
    if (t->which == 0)
        shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600);
    else
        shmget(ck_key(2, 0), PAGE, 0); /* ENOENT */
    pthread_barrier_wait(&barrier);
    const char *e = shmguard_last_error();
    t->ok = e != NULL && strstr(e, t->which == 0 ? "size 0" : "IPC_CREAT") != NULL;
    pthread_barrier_wait(&barrier);
    return NULL;
}

static void
case_per_thread(void)
{
    pthread_t t[2];
    struct per_thread pt[2] = {{0, 0}, {1, 0}};
    CHECK_EQ(pthread_barrier_init(&barrier, NULL, 2), 0);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, per_thread_main, &pt[i]), 0);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(pthread_join(t[i], NULL), 0);
    pthread_barrier_destroy(&barrier);
    CHECK(pt[0].ok);
    CHECK(pt[1].ok);
    /* the main thread's own sentence is the ftok one from before */
    int main_own = strstr(last_error_copy(), "/nonexistent/shmguard-") != NULL;
    CHECK(main_own);
    tracef("last_error_per_thread", "ok a=%d b=%d main=%d", pt[0].ok, pt[1].ok, main_own);
}

/* ------------------------------------------------------ attachment_size */

static void
size_case(const char *name, const void *addr, ssize_t want)
{
    errno = 0;
    ssize_t got = shmguard_attachment_size(addr);
    int e = errno;
    if (got != want || (want == -1 && e != EINVAL))
        FAIL("%s: attachment_size gave %zd (%s), expected %zd", name, got, ck_errname(e), want);
    if (got == -1)
        tracef(name, "fail %s", ck_errname(e));
    else
        tracef(name, "ok size=%zd", got);
}

static void
case_attachment_size(void)
{
    int id = ck_fixture(10000, 0600);
    char *p = shmat(id, NULL, 0);
    char *r = shmat(id, NULL, SHM_RDONLY);
    CHECK(p != (void *)-1 && r != (void *)-1);
    size_case("attachment_size_start", p, 10000);
    size_case("attachment_size_rdonly", r, 10000);
    size_case("attachment_size_inside", p + PAGE, -1);
    size_case("attachment_size_plus1", p + 1, -1);
    size_case("attachment_size_null", NULL, -1);
    int stack_var = 0;
    size_case("attachment_size_stack", &stack_var, -1);
    CHECK_EQ(shmdt(p), 0);
    size_case("attachment_size_after_shmdt", p, -1);
    CHECK_EQ(shmdt(r), 0);

    /* attached through the mirror, and with SHM_RND */
    char *base = ck_free_range(4 * PAGE);
    char *m = shmguard_shmat(id, base + 100, SHM_RND);
    CHECK(m == base);
    size_case("attachment_size_rnd_mirror", base, 10000);
    CHECK_EQ(shmguard_shmdt(m), 0);
    size_case("attachment_size_after_mirror_shmdt", base, -1);

    /* one byte asked, one byte reported */
    int one = ck_fixture(1, 0600);
    char *q = shmat(one, NULL, 0);
    size_case("attachment_size_one_byte", q, 1);
    CHECK_EQ(shmdt(q), 0);
}

/* --------------------------------------------------------- copy_to/from */

static void
copy_case(const char *name, int ret, int want_err)
{
    struct ck_res r = ck_res_of(ret);
    WANT(name, r, want_err);
    trace(name, r);
}

#define COPY(name, expr, want_err) (errno = 0, copy_case(name, (expr), want_err))

static void
case_copy(void)
{
    int id = ck_fixture(10000, 0600);
    unsigned char *p = shmat(id, NULL, 0);
    unsigned char *r = shmat(id, NULL, SHM_RDONLY);
    CHECK(p != (void *)-1 && r != (void *)-1);
    unsigned char src[10000], dst[10000];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (unsigned char)(i * 13 + 1);

    COPY("copy_to_whole", shmguard_copy_to(p, 0, src, 10000), 0);
    CHECK_EQ(memcmp(p, src, 10000), 0);
    memset(dst, 0, sizeof dst);
    COPY("copy_from_whole", shmguard_copy_from(p, 0, dst, 10000), 0);
    CHECK_EQ(memcmp(dst, src, 10000), 0);
    COPY("copy_from_rdonly", shmguard_copy_from(r, 9990, dst, 10), 0);
    CHECK_EQ(memcmp(dst, src + 9990, 10), 0);
    COPY("copy_to_at_end", shmguard_copy_to(p, 9999, "z", 1), 0);
    CHECK_EQ(p[9999], 'z');
    COPY("copy_to_past_end", shmguard_copy_to(p, 9999, "zz", 2), ERANGE);
    CHECK_EQ(p[9999], 'z');
    /* within the rounded-up page, but past the segment's size */
    COPY("copy_to_in_page_tail", shmguard_copy_to(p, 10000, "z", 1), ERANGE);
    COPY("copy_from_past_end", shmguard_copy_from(p, 5000, dst, 5001), ERANGE);
    COPY("copy_to_overflow", shmguard_copy_to(p, SIZE_MAX, "zz", 2), ERANGE);
    COPY("copy_from_overflow", shmguard_copy_from(p, 2, dst, SIZE_MAX), ERANGE);
    COPY("copy_to_huge_len", shmguard_copy_to(p, 0, src, SIZE_MAX), ERANGE);
    COPY("copy_to_len0", shmguard_copy_to(p, 5, src, 0), 0);
    COPY("copy_to_len0_at_size", shmguard_copy_to(p, 10000, src, 0), 0);
    COPY("copy_to_len0_past_size", shmguard_copy_to(p, 10001, src, 0), ERANGE);
    COPY("copy_from_len0_null_dst", shmguard_copy_from(p, 0, NULL, 0), 0);
    COPY("copy_to_len0_null_src", shmguard_copy_to(p, 0, NULL, 0), 0);
    COPY("copy_to_null_src", shmguard_copy_to(p, 0, NULL, 1), EFAULT);
    COPY("copy_from_null_dst", shmguard_copy_from(p, 0, NULL, 1), EFAULT);
    COPY("copy_to_not_start", shmguard_copy_to(p + 1, 0, src, 1), EINVAL);
    COPY("copy_from_not_start", shmguard_copy_from(p + PAGE, 0, dst, 1), EINVAL);
    COPY("copy_to_null_shmaddr", shmguard_copy_to(NULL, 0, src, 1), EINVAL);
    COPY("copy_from_stack", shmguard_copy_from(dst, 0, src, 1), EINVAL);
    COPY("copy_to_rdonly", shmguard_copy_to(r, 0, src, 1), EACCES);
    CHECK_EQ(p[0], src[0]);

    CHECK_EQ(shmdt(r), 0);
    COPY("copy_from_after_shmdt", shmguard_copy_from(r, 0, dst, 1), EINVAL);
    CHECK_EQ(shmdt(p), 0);
    COPY("copy_to_after_shmdt", shmguard_copy_to(p, 0, src, 1), EINVAL);
}

/* -------------------------------------------------------------- mirrors */

static void
case_mirrors(void)
{
    struct ck_res lib = RES(shmguard_shmget(IPC_PRIVATE, 7000, IPC_CREAT | 0600));
    struct ck_res raw = RES(raw_shmget(IPC_PRIVATE, 7000, IPC_CREAT | 0600));
    ck_track((int)lib.ret);
    ck_track((int)raw.ret);
    SAME("mirror_shmget", lib, raw);
    WANT("mirror_shmget", lib, 0);
    trace("mirror_shmget", lib);
    int id = (int)lib.ret;

    lib = RES(shmguard_shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600));
    raw = RES(raw_shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600));
    SAME("mirror_shmget_size0", lib, raw);
    diag_case("mirror_shmget_size0", lib, EINVAL, "size 0");

    struct ck_res at = RES(shmguard_shmat(id, NULL, 0));
    WANT("mirror_shmat", at, 0);
    CHECK_EQ(ck_nattch(id), 1);
    CHECK_EQ(shmguard_attachment_size((void *)at.ret), 7000);
    trace("mirror_shmat", at);
    lib = RES(shmguard_shmat(-1, NULL, 0));
    raw = RES(raw_shmat(-1, NULL, 0));
    SAME("mirror_shmat_invalid", lib, raw);
    WANT("mirror_shmat_invalid", lib, EINVAL);
    trace("mirror_shmat_invalid", lib);

    struct shmid_ds a, b;
    memset(&a, 0, sizeof a);
    lib = RES(shmguard_shmctl(id, IPC_STAT, &a));
    CHECK_EQ(ck_stat(id, &b), 0);
    SAME_DS("mirror_shmctl_stat", &a, &b);
    WANT("mirror_shmctl_stat", lib, 0);
    trace_ok("mirror_shmctl_stat", lib, "segsz=%zu nattch=%lu", (size_t)a.shm_segsz,
             (unsigned long)a.shm_nattch);
    lib = RES(shmguard_shmctl(id, IPC_STAT, NULL));
    raw = RES(raw_shmctl(id, IPC_STAT, NULL));
    SAME("mirror_shmctl_efault", lib, raw);
    WANT("mirror_shmctl_efault", lib, EFAULT);
    trace("mirror_shmctl_efault", lib);

    lib = RES(shmguard_shmdt((void *)(at.ret + 1)));
    raw = RES(raw_shmdt((void *)(at.ret + 1)));
    SAME("mirror_shmdt_not_start", lib, raw);
    WANT("mirror_shmdt_not_start", lib, EINVAL);
    trace("mirror_shmdt_not_start", lib);
    lib = RES(shmguard_shmdt((void *)at.ret));
    WANT("mirror_shmdt", lib, 0);
    CHECK_EQ(ck_nattch(id), 0);
    trace("mirror_shmdt", lib);

    lib = RES(shmguard_shmctl(id, IPC_RMID, NULL));
    WANT("mirror_shmctl_rmid", lib, 0);
    CHECK_EQ(ck_nattch(id), -1);
    trace("mirror_shmctl_rmid", lib);

    const char *file = ck_tmpfile();
    key_t k1 = shmguard_ftok(file, 9), k2 = ftok(file, 9);
    CHECK_EQ(k1, k2);
    CHECK(k1 != -1);
    tracef("mirror_ftok", "ok same=%d", k1 == k2);
    lib = RES(shmguard_ftok("/nonexistent/shmguard", 9));
    WANT("mirror_ftok_missing", lib, ENOENT);
    trace("mirror_ftok_missing", lib);
}

/* ------------------------------------------------------------ verbosity */

/* Run this program again as "--fail-size0" with SHMGUARD_OPTIONS=OPTS;
 * return what it wrote on stderr in BUF, and its pid. */
static int
run_self(const char *opts, char *buf, size_t len, pid_t *child)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    char env_opts[128];
    snprintf(env_opts, sizeof env_opts, "SHMGUARD_OPTIONS=%s", opts);
    /* a copy of our environment, SHMGUARD_OPTIONS replaced */
    size_t n = 0;
    while (environ[n] != NULL)
        n++;
    char **envp = calloc(n + 2, sizeof *envp);
    if (envp == NULL)
        return -1;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "SHMGUARD_OPTIONS=", 17) != 0)
            envp[m++] = environ[i];
    envp[m++] = env_opts;
    envp[m] = NULL;
    pid_t pid = ck_fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        char *argv[] = {"x_api", "--fail-size0", NULL};
        execve("/proc/self/exe", argv, envp);
        _exit(99);
    }
    free(envp);
    close(fds[1]);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < len && (r = read(fds[0], buf + got, len - 1 - got)) > 0)
        got += (size_t)r;
    buf[got] = '\0';
    close(fds[0]);
    *child = pid;
    return ck_child_code(pid, 20000);
}

static void
case_verbosity(void)
{
    char err[4096], prefix[64];
    pid_t pid = 0;
    int code = run_self("verbosity=1", err, sizeof err, &pid);
    CHECK_EQ(code, 0);
    snprintf(prefix, sizeof prefix, "==%d== shmguard: ", (int)pid);
    int found = 0;
    for (char *line = strtok(err, "\n"); line != NULL; line = strtok(NULL, "\n"))
        if (strncmp(line, prefix, strlen(prefix)) == 0 && strstr(line, "size 0") != NULL)
            found = 1;
    if (!found)
        FAIL("verbosity=1: no line \"%s...size 0...\" on stderr; got:\n%s", prefix, err);
    tracef("verbosity_1_prints_diagnostic", "ok child=%d found=%d", code, found);

    code = run_self("verbosity=0", err, sizeof err, &pid);
    CHECK_EQ(code, 0);
    if (err[0] != '\0')
        FAIL("verbosity=0: stderr not empty: %s", err);
    tracef("verbosity_0_silent", "ok child=%d empty=%d", code, err[0] == '\0');
}

/* The re-executed program: one failure, nothing else, clean exit. */
static int
fail_size0_main(void)
{
    errno = 0;
    if (shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600) != -1 || errno != EINVAL)
        return 2;
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--fail-size0") == 0)
        return fail_size0_main();
    ck_init();
    case_last_error_initially_null();
    case_version();
    case_diagnostics();
    case_per_thread();
    case_eacces();
    case_attachment_size();
    case_copy();
    case_mirrors();
    case_verbosity();
    return ck_finish();
}
