/* x_fault.c SCENARIO: fault injection (SHMGUARD_OPTIONS fault=).
 *
 *   nth      fault=shmget@2=ENOSPC: exactly the 2nd shmget of the process
 *            fails, with ENOSPC, without reaching the kernel (no segment
 *            appears), and shmguard_last_error() says it was injected.
 *   twice    fault=shmget@1=ENOSPC,shmget@3=ENOMEM: two rules for one call.
 *   fork     fault=shmget@2=ENOSPC: counting is per process, a forked
 *            child counts from 1 again while the parent goes on.
 *   multi    fault=shmat@1=ENOMEM,shmdt@2=EINVAL,shmctl@1=EIDRM,ftok@1=EACCES:
 *            every rule at once, each call left undone in the kernel.
 *   invalid  runs itself again ("noinject") with each invalid spec: exactly
 *            one warning line on stderr, naming fault, and nothing injected.
 *   panic    runs itself again ("panicked") with CALL@N=panic for every
 *            call: shmguard panics inside each of them, as a bug of its own
 *            would; every call still does what the kernel does, the
 *            program goes on and exits 0, and stderr holds exactly one
 *            "internal error" line per panic.
 *
 * Fixtures use the raw system calls, which are never counted. */
#include "check.h"

#define PAGE 4096UL

/* After an injected failure: ERR and a diagnostic that says so. */
static void
injected(const char *name, struct ck_res r, int err)
{
    WANT(name, r, err);
    const char *e = ck_last_error();
    int says = strstr(e, "injected") != NULL;
    if (!says)
        FAIL("%s: last_error \"%s\" does not mention \"injected\"", name, e);
    tracef(name, "%s injected=%d", ck_outcome(r), says);
}

/* A successful shmget through the libc name, compared with one more
 * segment in the kernel. */
static int
get_ok(const char *name)
{
    int before = ck_own_segments();
    struct ck_res r = RES(shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600));
    if (r.ret != -1)
        ck_track((int)r.ret);
    WANT(name, r, 0);
    CHECK_EQ(ck_own_segments(), before + (r.ret != -1));
    trace(name, r);
    return (int)r.ret;
}

/* The shmget that fault= fails: ENOSPC and no new segment. */
static void
get_injected(const char *name)
{
    int before = ck_own_segments();
    struct ck_res r = RES(shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600));
    if (r.ret != -1)
        ck_track((int)r.ret);
    int after = ck_own_segments();
    injected(name, r, ENOSPC);
    CHECK_EQ(after, before);
}

static int
scenario_nth(void)
{
    get_ok("shmget_1");
    get_injected("shmget_2");
    get_ok("shmget_3");
    get_ok("shmget_4");
    /* other calls are not touched by a shmget rule */
    int id = ck_fixture(PAGE, 0600);
    void *p = shmat(id, NULL, 0);
    CHECK(p != (void *)-1);
    CHECK_EQ(shmdt(p), 0);
    get_ok("shmget_5");
    return ck_finish();
}

static int
scenario_twice(void)
{
    int before = ck_own_segments();
    struct ck_res r = RES(shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600));
    if (r.ret != -1)
        ck_track((int)r.ret);
    injected("shmget_1", r, ENOSPC);
    CHECK_EQ(ck_own_segments(), before);
    get_ok("shmget_2");
    before = ck_own_segments();
    r = RES(shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600));
    if (r.ret != -1)
        ck_track((int)r.ret);
    injected("shmget_3", r, ENOMEM);
    CHECK_EQ(ck_own_segments(), before);
    get_ok("shmget_4");
    return ck_finish();
}

static int
scenario_fork(void)
{
    get_ok("parent_shmget_1");
    pid_t pid = ck_fork();
    if (pid == 0) {
        ck_child_defaults();
        /* in the child the count starts again: its 2nd call fails */
        get_ok("child_shmget_1");
        get_injected("child_shmget_2");
        get_ok("child_shmget_3");
        int failed = ck_failures;
        /* the child's segments: IPC_RMID by the raw call (not counted) */
        for (int i = 0; i < ck_nids && i < CK_MAX_IDS; i++)
            if (ck_ids[i] != 0)
                raw_shmctl(ck_ids[i] - 1, IPC_RMID, NULL);
        _exit(failed == 0 ? 0 : 1);
    }
    int code = ck_child_code(pid, 10000);
    CHECK_EQ(code, 0);
    tracef("child", "ok code=%d", code);
    /* the parent's count went on from 1 */
    get_injected("parent_shmget_2");
    get_ok("parent_shmget_3");
    return ck_finish();
}

static int
scenario_multi(void)
{
    int id = ck_fixture(5000, 0600);

    /* shmat@1=ENOMEM: nothing attached, the kernel never saw the call */
    struct shmid_ds ds;
    struct ck_res r = RES(shmat(id, NULL, 0));
    injected("shmat_1", r, ENOMEM);
    if (r.ret != -1)
        raw_shmdt((void *)r.ret);
    /* and shmguard did not count it as an attachment */
    size_t (*leak_count)(void);
    *(void **)&leak_count = ck_sym("shmguard_leak_count");
    CHECK_EQ(leak_count(), 0);
    CHECK_EQ(ck_stat(id, &ds), 0);
    CHECK_EQ(ds.shm_nattch, 0);
    CHECK_EQ(ds.shm_atime, 0);
    CHECK_EQ(ds.shm_lpid, 0);
    r = RES(shmat(id, NULL, 0));
    WANT("shmat_2", r, 0);
    trace("shmat_2", r);
    char *p = (char *)r.ret;
    if (r.ret == -1)
        return ck_finish();

    /* shmdt@2=EINVAL: the attachment stays until the 3rd call */
    r = RES(shmdt(p));
    WANT("shmdt_1", r, 0);
    trace("shmdt_1", r);
    p = shmat(id, NULL, 0);
    CHECK(p != (void *)-1);
    r = RES(shmdt(p));
    injected("shmdt_2", r, EINVAL);
    CHECK_EQ(ck_nattch(id), 1);
    CHECK_EQ(strcmp(ck_map_perms(p), "rw-s"), 0);
    ssize_t (*attachment_size)(const void *);
    *(void **)&attachment_size = ck_sym("shmguard_attachment_size");
    CHECK_EQ(attachment_size(p), 5000); /* still known */
    if (r.ret == -1)
        p[4999] = 1; /* still mapped */
    else
        p = shmat(id, NULL, 0); /* for the 3rd call */
    r = RES(shmdt(p));
    WANT("shmdt_3", r, 0);
    trace("shmdt_3", r);
    CHECK_EQ(ck_nattch(id), 0);

    /* shmctl@1=EIDRM: an IPC_RMID that does not remove the segment */
    struct shmid_ds buf;
    memset(&buf, 0x5a, sizeof buf);
    r = RES(shmctl(id, IPC_RMID, NULL));
    injected("shmctl_1", r, EIDRM);
    CHECK_EQ(ck_stat(id, &ds), 0);
    r = RES(shmctl(id, IPC_STAT, &buf));
    WANT("shmctl_2", r, 0);
    trace("shmctl_2", r);
    CHECK_EQ(buf.shm_segsz, 5000);
    r = RES(shmctl(id, IPC_RMID, NULL));
    WANT("shmctl_3", r, 0);
    trace("shmctl_3", r);
    struct ck_res gone = RES(ck_stat(id, &ds));
    WANT("shmctl_3_removed", gone, EINVAL);

    /* ftok@1=EACCES on a file that exists; the 2nd call computes the key */
    const char *path = ck_tmpfile();
    r = RES(ftok(path, 7));
    injected("ftok_1", r, EACCES);
    struct stat st;
    CHECK_EQ(stat(path, &st), 0);
    key_t want = (key_t)((st.st_ino & 0xffff) | ((st.st_dev & 0xff) << 16) | (7u << 24));
    r = RES(ftok(path, 7));
    WANT("ftok_2", r, 0);
    CHECK_EQ(r.ret, want);
    trace("ftok_2", r);

    /* shmget has no rule */
    get_ok("shmget_1");
    get_ok("shmget_2");
    return ck_finish();
}

/* The re-executed program under an invalid spec: nothing is injected. */
static int
scenario_noinject(void)
{
    for (int i = 1; i <= 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "shmget_%d", i);
        get_ok(name);
    }
    int id = ck_fixture(PAGE, 0600);
    for (int i = 1; i <= 2; i++) {
        void *p = shmat(id, NULL, 0);
        CHECK(p != (void *)-1);
        if (p != (void *)-1)
            CHECK_EQ(shmdt(p), 0);
        struct shmid_ds ds;
        CHECK_EQ(shmctl(id, IPC_STAT, &ds), 0);
        CHECK(ftok(ck_tmpfile(), i) != -1);
    }
    return ck_finish();
}

static int
scenario_invalid(char *self)
{
    static const char *const specs[] = {
        "fault=shmget@0=ENOSPC",
        "fault=nope@1=EINVAL",
        "fault=shmget@1=EBOGUS",
        "fault=shmget@2",
        "fault=shmget@x=ENOSPC",
        "fault=shmget@2=ENOSPC,shmget@1=EBOGUS",
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        char out[256], err[256], name[32];
        ck_tmp_name(out, sizeof out, "child.out");
        ck_tmp_name(err, sizeof err, "child.err");
        char *argv[] = {self, "noinject", NULL};
        int code = ck_run_self(argv, specs[i], out, err, NULL);
        char *text = ck_slurp(err);
        if (text == NULL)
            text = strdup("");
        int lines = 0;
        for (const char *c = text; *c != '\0'; c++)
            lines += *c == '\n';
        int names = strstr(text, "fault") != NULL;
        snprintf(name, sizeof name, "invalid_spec_%zu", i + 1);
        CHECK_EQ(code, 0);
        if (lines != 1 || !names)
            FAIL("%s: SHMGUARD_OPTIONS=%s: expected one warning line naming fault on stderr, "
                 "got %d lines:\n%s",
                 name, specs[i], lines, text);
        tracef(name, "ok child=%d lines=%d names_fault=%d", code, lines, names);
        free(text);
    }
    return ck_finish();
}

/* The re-executed program under PANIC_SPEC: each call panics inside
 * shmguard once, and each must still give the kernel's result. */
#define PANIC_SPEC "fault=shmget@2=panic,shmat@1=panic,shmdt@1=panic,shmctl@1=panic,ftok@1=panic"
#define PANIC_CALLS 5

static int
scenario_panicked(void)
{
    get_ok("shmget_1");
    int id = get_ok("shmget_2_panics");
    void *p = shmat(id, NULL, 0);
    CHECK(p != (void *)-1);
    if (p != (void *)-1) {
        memset(p, 7, PAGE); /* the attachment is real */
        CHECK_EQ(shmdt(p), 0);
    }
    struct shmid_ds ds;
    CHECK_EQ(shmctl(id, IPC_STAT, &ds), 0);
    CHECK_EQ((unsigned long)ds.shm_segsz, PAGE);
    CHECK_EQ((int)ds.shm_nattch, 0);
    key_t first = ftok(ck_tmpfile(), 'p');
    CHECK(first != -1);
    CHECK_EQ(ftok(ck_tmpfile(), 'p'), first);
    tracef("panicked", "%s", ck_failures == 0 ? "ok" : "fail");
    return ck_finish();
}

static int
scenario_panic(char *self)
{
    char out[256], err[256];
    ck_tmp_name(out, sizeof out, "child.out");
    ck_tmp_name(err, sizeof err, "child.err");
    char *argv[] = {self, "panicked", NULL};
    int code = ck_run_self(argv, PANIC_SPEC, out, err, NULL);
    char *text = ck_slurp(err);
    if (text == NULL)
        text = strdup("");
    int lines = 0, reports = 0;
    for (char *line = text; *line != '\0';) {
        char *end = strchr(line, '\n');
        if (end != NULL)
            *end = '\0';
        lines++;
        reports += strstr(line, "shmguard: internal error: a deliberate panic") != NULL &&
                   strstr(line, "=panic") != NULL;
        if (end == NULL)
            break;
        line = end + 1;
    }
    CHECK_EQ(code, 0);
    if (lines != PANIC_CALLS || reports != PANIC_CALLS)
        FAIL("SHMGUARD_OPTIONS=%s: expected %d \"internal error\" lines on stderr, got %d "
             "lines, %d of them such reports",
             PANIC_SPEC, PANIC_CALLS, lines, reports);
    tracef("panic", "%s child=%d lines=%d", ck_failures == 0 ? "ok" : "fail", code, lines);
    free(text);
    return ck_finish();
}

int
main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: x_fault nth|twice|fork|multi|invalid|panic\n");
        return 2;
    }
    ck_init();
    const char *s = argv[1];
    if (strcmp(s, "nth") == 0)
        return scenario_nth();
    if (strcmp(s, "twice") == 0)
        return scenario_twice();
    if (strcmp(s, "fork") == 0)
        return scenario_fork();
    if (strcmp(s, "multi") == 0)
        return scenario_multi();
    if (strcmp(s, "invalid") == 0)
        return scenario_invalid(argv[0]);
    if (strcmp(s, "noinject") == 0)
        return scenario_noinject();
    if (strcmp(s, "panic") == 0)
        return scenario_panic(argv[0]);
    if (strcmp(s, "panicked") == 0)
        return scenario_panicked();
    fprintf(stderr, "x_fault: unknown scenario %s\n", s);
    return 2;
}
