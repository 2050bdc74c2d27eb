/* x_leak.c SCENARIO: the leak report at exit. The runners check stderr and
 * the exit status; this program prints on stdout what they need:
 *   pid P              this process
 *   segment N          a segment leaked on purpose (the runner removes it)
 *   attachment N       the shmid of an attachment leaked on purpose
 *   child C            a child process (the runner waits for it to end)
 *   child_segment N    a segment a child leaked (the runner removes it)
 *   note_segment N     a segment that must be reported as a note
 * The extension functions are looked up with dlsym, so that the same binary
 * works linked with -lshmguard and plain with LD_PRELOAD. */
#include "check.h"

#define PAGE 4096UL

static size_t (*api_leak_count)(void);
static int (*api_leak_report)(int);
static ssize_t (*api_attachment_size)(const void *);

static void
load_api(void)
{
    *(void **)&api_leak_count = dlsym(RTLD_DEFAULT, "shmguard_leak_count");
    *(void **)&api_leak_report = dlsym(RTLD_DEFAULT, "shmguard_leak_report");
    *(void **)&api_attachment_size = dlsym(RTLD_DEFAULT, "shmguard_attachment_size");
    if (api_leak_count == NULL || api_leak_report == NULL || api_attachment_size == NULL) {
        FAIL("the shmguard extension functions are not there");
        exit(1);
    }
}

/* A segment made by the libc name, removed by the registry only if the
 * program dies on a signal (at a normal exit it must stay: it is a leak). */
static int
leaky_segment(size_t size)
{
    int id = shmget(IPC_PRIVATE, size, IPC_CREAT | 0600);
    if (id < 0) {
        FAIL("shmget: %s", ck_errname(errno));
        exit(1);
    }
    ck_track_crash_only(id);
    return id;
}

struct leaky {
    int seg_a, seg_b, att_id;
    void *att;
};

/* Exactly one attachment (of a marked segment, so that its shmid is not a
 * segment leak) and two segments. */
static struct leaky
make_leaky(void)
{
    struct leaky l;
    l.seg_a = leaky_segment(PAGE);
    l.seg_b = leaky_segment(3 * PAGE);
    l.att_id = leaky_segment(2 * PAGE);
    l.att = shmat(l.att_id, NULL, 0);
    if (l.att == (void *)-1) {
        FAIL("shmat: %s", ck_errname(errno));
        exit(1);
    }
    if (shmctl(l.att_id, IPC_RMID, NULL) != 0) {
        FAIL("IPC_RMID: %s", ck_errname(errno));
        exit(1);
    }
    /* a failure on the way must not count as anything */
    shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600);
    printf("segment %d\nsegment %d\nattachment %d\n", l.seg_a, l.seg_b, l.att_id);
    fflush(stdout);
    return l;
}

/* The life of a clean program: everything made is undone. */
static void
clean_work(void)
{
    int id = shmget(IPC_PRIVATE, 10000, IPC_CREAT | 0600);
    CHECK(id >= 0);
    ck_track(id);
    char *p = shmat(id, NULL, 0);
    CHECK(p != (void *)-1);
    p[9999] = 1;
    CHECK_EQ(shmdt(p), 0);
    CHECK_EQ(shmctl(id, IPC_RMID, NULL), 0);
    shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600); /* a failure: not a leak */
}

/* ------------------------------------------------------------ scenarios */

static int cleanup_id = -1;
static void *cleanup_addr;
static int dtor_active;

static void
cleanup_in_atexit(void)
{
    CHECK_EQ(shmdt(cleanup_addr), 0);
    CHECK_EQ(shmctl(cleanup_id, IPC_RMID, NULL), 0);
    if (ck_failures != 0)
        _exit(1);
}

__attribute__((destructor)) static void
cleanup_in_destructor(void)
{
    if (!dtor_active)
        return;
    if (shmdt(cleanup_addr) != 0 || shmctl(cleanup_id, IPC_RMID, NULL) != 0) {
        static const char msg[] = "FAIL: x_leak.c: destructor cleanup failed\n";
        if (write(2, msg, sizeof msg - 1) < 0) {
            /* nothing more to do */
        }
        _exit(1);
    }
}

static int
scenario_atexit_or_dtor(int in_dtor)
{
    cleanup_id = leaky_segment(PAGE);
    cleanup_addr = shmat(cleanup_id, NULL, 0);
    CHECK(cleanup_addr != (void *)-1);
    if (in_dtor)
        dtor_active = 1;
    else
        atexit(cleanup_in_atexit);
    return ck_finish();
}

static int
scenario_raw_removed(void)
{
    int a = leaky_segment(PAGE), b = leaky_segment(PAGE);
    void *p = shmat(a, NULL, 0);
    CHECK(p != (void *)-1);
    CHECK_EQ(raw_shmdt(p), 0);
    CHECK_EQ(raw_shmctl(a, IPC_RMID, NULL), 0);
    CHECK_EQ(raw_shmctl(b, IPC_RMID, NULL), 0);
    /* and an attachment of a raw-made segment, unmapped behind its back */
    int c = ck_fixture(PAGE, 0600);
    void *q = shmat(c, NULL, 0);
    CHECK(q != (void *)-1);
    CHECK_EQ(raw_shmdt(q), 0);
    return ck_finish();
}

static int
scenario_fork_inherit(void)
{
    int id = leaky_segment(PAGE);
    volatile char *p = shmat(id, NULL, 0);
    CHECK(p != (void *)-1);
    p[0] = 'i';
    pid_t pid = ck_fork();
    if (pid == 0) {
        ck_child_defaults();
        /* the child ends normally with an inherited attachment and its
         * parent's segment: neither is its leak */
        exit(p[0] == 'i' ? 0 : 2);
    }
    int code = ck_child_code(pid, 10000);
    CHECK_EQ(code, 0);
    CHECK_EQ(ck_nattch(id), 1);
    CHECK_EQ(shmdt((void *)p), 0);
    CHECK_EQ(shmctl(id, IPC_RMID, NULL), 0);
    return ck_finish();
}

static int
scenario_child_leak(void)
{
    pid_t pid = ck_fork();
    if (pid == 0) {
        ck_child_defaults();
        int id = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
        if (id < 0)
            exit(2);
        printf("child %d\nchild_segment %d\n", (int)getpid(), id);
        fflush(stdout);
        exit(0);
    }
    int code = ck_child_code(pid, 10000);
    CHECK_EQ(code, 0);
    return ck_finish();
}

static int
scenario_note(void)
{
    int id = leaky_segment(PAGE);
    int up[2], down[2];
    CHECK_EQ(pipe(up), 0);
    CHECK_EQ(pipe(down), 0);
    printf("note_segment %d\n", id);
    pid_t pid = ck_fork();
    if (pid == 0) {
        ck_child_defaults();
        char c;
        close(up[0]);
        close(down[1]);
        void *p = shmat(id, NULL, 0);
        if (p == (void *)-1)
            _exit(2);
        if (write(up[1], "a", 1) != 1)
            _exit(3);
        /* EOF: the parent has exited (after writing its report) */
        while (read(down[0], &c, 1) > 0) {
        }
        if (shmdt(p) != 0 || shmctl(id, IPC_RMID, NULL) != 0)
            _exit(4);
        exit(0);
    }
    close(up[1]);
    close(down[0]);
    printf("child %d\n", (int)pid);
    fflush(stdout);
    char c = 0;
    CHECK_EQ(read(up[0], &c, 1), 1);
    CHECK_EQ(ck_nattch(id), 1);
    /* down[1] stays open until this process is gone */
    return ck_finish();
}

static int
scenario_count(void)
{
    load_api();
    struct leaky l = make_leaky();
    size_t n = api_leak_count();
    CHECK_EQ(n, 3);
    tracef("leak_count_leaky", "ok count=%zu", n);

    int fds[2];
    CHECK_EQ(pipe(fds), 0);
    int r = api_leak_report(fds[1]);
    close(fds[1]);
    CHECK_EQ(r, 3);
    static char buf[65536];
    size_t got = 0;
    ssize_t k;
    while (got + 1 < sizeof buf && (k = read(fds[0], buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)k;
    buf[got] = '\0';
    close(fds[0]);

    char prefix[64], want_a[64], want_b[64], want_c[64];
    snprintf(prefix, sizeof prefix, "==%d== shmguard: ", (int)getpid());
    snprintf(want_a, sizeof want_a, "leak: segment shmid=%d", l.seg_a);
    snprintf(want_b, sizeof want_b, "leak: segment shmid=%d", l.seg_b);
    snprintf(want_c, sizeof want_c, "leak: attachment shmid=%d", l.att_id);
    int lines = 0, bad_prefix = 0, leak_lines = 0, seen_a = 0, seen_b = 0, seen_c = 0;
    int summary_last = 0;
    for (char *line = strtok(buf, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        lines++;
        summary_last = 0;
        if (strncmp(line, prefix, strlen(prefix)) != 0) {
            bad_prefix++;
            continue;
        }
        const char *rest = line + strlen(prefix);
        if (strncmp(rest, "leak: ", 6) == 0)
            leak_lines++;
        /* "shmid=N" must end there: shmid=12 is not shmid=123 */
        const char *wants[3] = {want_a, want_b, want_c};
        int *seen[3] = {&seen_a, &seen_b, &seen_c};
        for (int i = 0; i < 3; i++) {
            size_t wl = strlen(wants[i]);
            if (strncmp(rest, wants[i], wl) == 0 && (rest[wl] < '0' || rest[wl] > '9'))
                (*seen[i])++;
        }
        if (strncmp(rest, "SUMMARY: ", 9) == 0)
            summary_last = 1;
    }
    int format_ok = lines >= 4 && bad_prefix == 0 && leak_lines == 3 && seen_a == 1 &&
                    seen_b == 1 && seen_c == 1 && summary_last;
    if (!format_ok)
        FAIL("leak_report: lines=%d bad_prefix=%d leak_lines=%d a=%d b=%d c=%d summary_last=%d",
             lines, bad_prefix, leak_lines, seen_a, seen_b, seen_c, summary_last);
    tracef("leak_report_leaky", "ok returned=%d format=%d", r, format_ok);

    CHECK_EQ(shmdt(l.att), 0);
    CHECK_EQ(shmctl(l.seg_a, IPC_RMID, NULL), 0);
    CHECK_EQ(shmctl(l.seg_b, IPC_RMID, NULL), 0);
    n = api_leak_count();
    CHECK_EQ(n, 0);
    tracef("leak_count_after_cleanup", "ok count=%zu", n);
    int devnull = open("/dev/null", O_WRONLY);
    r = api_leak_report(devnull);
    close(devnull);
    CHECK_EQ(r, 0);
    tracef("leak_report_after_cleanup", "ok returned=%d", r);
    return ck_finish();
}

static double
ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static void
size_is(const char *name, const void *addr, ssize_t want)
{
    errno = 0;
    ssize_t got = api_attachment_size(addr);
    int e = errno;
    if (got != want || (want == -1 && e != EINVAL))
        FAIL("%s: attachment_size %zd (%s), expected %zd", name, got, ck_errname(e), want);
    tracef(name, "%s size=%zd", got == want ? "ok" : "fail", got);
}

static int
scenario_many(void)
{
    load_api();
    long max_map = (long)ck_proc_ull("/proc/sys/vm/max_map_count");
    long n = max_map - 2000 < 60000 ? max_map - 2000 : 60000;
    if (n < 1000)
        n = 1000;
    int id = ck_fixture(5000, 0600);
    char **at = calloc((size_t)n, sizeof *at);
    CHECK(at != NULL);
    if (at == NULL)
        return ck_finish();
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long made = 0;
    for (; made < n; made++) {
        at[made] = shmat(id, NULL, 0);
        if (at[made] == (void *)-1) {
            FAIL("shmat number %ld: %s", made, ck_errname(errno));
            break;
        }
    }
    double attach_ms = ms_since(&t0);
    CHECK_EQ(made, n);
    CHECK_EQ(ck_nattch(id), made);
    tracef("many_attached", "ok all=%d", made == n);
    if (made > 0) {
        size_is("many_size_first", at[0], 5000);
        size_is("many_size_middle", at[made / 2], 5000);
        size_is("many_size_last", at[made - 1], 5000);
        size_is("many_size_not_start", at[made / 2] + PAGE, -1);
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long bad = 0;
    for (long i = 0; i < made; i++)
        bad += shmdt(at[i]) != 0;
    double detach_ms = ms_since(&t0);
    CHECK_EQ(bad, 0);
    CHECK_EQ(ck_nattch(id), 0);
    if (made > 0)
        size_is("many_size_after_detach", at[0], -1);
    tracef("many_detached", "ok failures=%ld", bad);
    printf("info: %ld attachments: attach %.0f ms, detach %.0f ms\n", made, attach_ms,
           detach_ms);
    free(at);
    return ck_finish();
}

int
main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: x_leak SCENARIO\n");
        return 2;
    }
    const char *s = argv[1];
    ck_init();
    printf("pid %d\n", (int)getpid());
    tracef("scenario", "ok name=%s", s);
    if (strcmp(s, "leaky") == 0 || strcmp(s, "exitcode") == 0 ||
        strcmp(s, "leak_check_off") == 0) {
        make_leaky();
        return ck_finish();
    }
    if (strcmp(s, "underscore_exit") == 0) {
        make_leaky();
        ck_flush_all();
        _exit(0);
    }
    if (strcmp(s, "clean") == 0 || strcmp(s, "unknown_option") == 0) {
        clean_work();
        return ck_finish();
    }
    if (strcmp(s, "atexit_cleanup") == 0)
        return scenario_atexit_or_dtor(0);
    if (strcmp(s, "dtor_cleanup") == 0)
        return scenario_atexit_or_dtor(1);
    if (strcmp(s, "raw_removed") == 0)
        return scenario_raw_removed();
    if (strcmp(s, "fork_inherit") == 0)
        return scenario_fork_inherit();
    if (strcmp(s, "child_leak") == 0)
        return scenario_child_leak();
    if (strcmp(s, "note") == 0)
        return scenario_note();
    if (strcmp(s, "count") == 0)
        return scenario_count();
    if (strcmp(s, "many") == 0)
        return scenario_many();
    fprintf(stderr, "x_leak: unknown scenario %s\n", s);
    return 2;
}
