/* x_stress_churn.c SCENARIO: shmguard under load from threads and
 * children (stress.h: phases, deadlock detection, cleanup).
 *
 *   churn         4 threads create, attach, detach, stat and remove segments
 *                 and make failing calls, while the main thread forks
 *                 children that use an inherited attachment and one of their
 *                 own and exit normally, children that exec this program,
 *                 and children that exec /bin/true. Then shmguard's accounting
 *                 (shmguard_leak_count, shmguard_leak_report,
 *                 shmguard_attachment_size) must equal what the threads hold,
 *                 and each segment's shm_nattch the attachments that
 *                 /proc/self/maps shows.
 *   churn_log     churn again with log_path: every process's log whole, with
 *                 exactly as many call events of each kind as it made calls.
 *   exec_child    (internal) the image a churn child execs. */
#include "stress.h"

static int logging; /* log_path is set: the caller counts our events */

struct slot {
    int id; /* -1: free */
    size_t size;
    int marked;
    char *addr[2];
    int readonly[2];
};

struct worker {
    int index;
    pthread_t thread;
    uint64_t rng;
    struct slot slot[SLOTS];
    long calls[4];
    long iterations;
    long lost; /* attachments held that shmguard_attachment_size denied */
};

static struct worker workers[WORKERS];
static volatile int stop_workers;
static int s0_id = -1;      /* the main thread's segment that children use */
static size_t s0_size = 3 * PAGE + 100;
static char *s0_addr;       /* the main thread's attachment of it */
static long main_calls[4];
static long children_made[3]; /* forked exit, exec self, exec /bin/true */
static long log_cap = 40000;  /* per worker, with a log: keeps the file small */

static uint64_t
next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* The two results must agree, as ck_same does, without printing a trace. */
#define SAME_QUIET(name, lib, raw) ck_same(__FILE__, __LINE__, name, lib, raw)

/* An attachment the worker holds must be known to shmguard. */
static void
check_known(struct worker *w, const char *when, const char *p, size_t size)
{
    ssize_t sz = api_size(p);
    if (sz == (ssize_t)size)
        return;
    if (w->lost++ < 3)
        FAIL("worker %d: shmguard_attachment_size(%p) = %zd %s, segment size %zu", w->index,
             (const void *)p, sz, when, size);
}

static void
slot_forget(struct worker *w, int k)
{
    struct slot *s = &w->slot[k];
    s->id = -1;
    s->marked = 0;
    s->addr[0] = s->addr[1] = NULL;
}

static void
op_create(struct worker *w, int k)
{
    struct slot *s = &w->slot[k];
    size_t size = 1 + next_rand(&w->rng) % (3 * PAGE);
    w->calls[C_GET]++;
    struct ck_res r = RES(shmget(IPC_PRIVATE, size, IPC_CREAT | 0600));
    if (!WANT("worker shmget", r, 0))
        return;
    __atomic_store_n(&live_ids[w->index * SLOTS + k], (int)r.ret + 1, __ATOMIC_SEQ_CST);
    s->id = (int)r.ret;
    s->size = size;
    s->marked = 0;
}

static void
op_attach(struct worker *w, int k, int j)
{
    struct slot *s = &w->slot[k];
    int ro = (int)(next_rand(&w->rng) & 1);
    w->calls[C_AT]++;
    struct ck_res r = RES(shmat(s->id, NULL, ro ? SHM_RDONLY : 0));
    if (!WANT("worker shmat", r, 0))
        return;
    char *p = (char *)r.ret;
    if (((uintptr_t)p & (PAGE - 1)) != 0)
        FAIL("worker shmat: %p is not page-aligned", (void *)p);
    if (!ro)
        p[s->size - 1] = MAGIC;
    check_known(w, "right after shmat", p, s->size);
    s->addr[j] = p;
    s->readonly[j] = ro;
}

static void
op_detach(struct worker *w, int k, int j)
{
    struct slot *s = &w->slot[k];
    w->calls[C_DT]++;
    struct ck_res r = RES(shmdt(s->addr[j]));
    WANT("worker shmdt", r, 0);
    s->addr[j] = NULL;
    if (s->marked && s->addr[1 - j] == NULL)
        slot_forget(w, k);
}

static void
op_mark(struct worker *w, int k)
{
    struct slot *s = &w->slot[k];
    w->calls[C_CTL]++;
    struct ck_res r = RES(shmctl(s->id, IPC_RMID, NULL));
    if (!WANT("worker IPC_RMID", r, 0))
        return;
    __atomic_store_n(&live_ids[w->index * SLOTS + k], 0, __ATOMIC_SEQ_CST);
    s->marked = 1;
    if (s->addr[0] == NULL && s->addr[1] == NULL)
        slot_forget(w, k);
}

static void
op_stat(struct worker *w, int k)
{
    struct slot *s = &w->slot[k];
    struct shmid_ds lib, raw;
    memset(&lib, 0, sizeof lib);
    w->calls[C_CTL]++;
    struct ck_res a = RES(shmctl(s->id, IPC_STAT, &lib));
    struct ck_res b = RES(ck_stat(s->id, &raw));
    if (!SAME_QUIET("worker IPC_STAT", a, b) || a.ret == -1)
        return;
    /* nattch and the times move with the other threads and the children */
    if (lib.shm_segsz != s->size || raw.shm_segsz != s->size || lib.shm_cpid != getpid() ||
        lib.shm_perm.uid != raw.shm_perm.uid || lib.shm_perm.mode != raw.shm_perm.mode ||
        lib.shm_perm.__key != raw.shm_perm.__key)
        FAIL("worker IPC_STAT of %d: segsz %zu/%zu (want %zu), cpid %d, mode %o/%o", s->id,
             (size_t)lib.shm_segsz, (size_t)raw.shm_segsz, s->size, (int)lib.shm_cpid,
             (unsigned)lib.shm_perm.mode, (unsigned)raw.shm_perm.mode);
}

/* Calls that fail, each compared with the raw system call. */
static void
op_errors(struct worker *w, char *somewhere)
{
    w->calls[C_AT]++;
    struct ck_res lib = RES(shmat(-1, NULL, 0));
    SAME_QUIET("worker shmat(-1)", lib, RES(raw_shmat(-1, NULL, 0)));
    w->calls[C_GET]++;
    lib = RES(shmget(IPC_PRIVATE, 0, 0600));
    SAME_QUIET("worker shmget(size 0)", lib, RES(raw_shmget(IPC_PRIVATE, 0, 0600)));
    if (somewhere != NULL) {
        w->calls[C_DT]++;
        struct ck_res a = RES(shmdt(somewhere + 1));
        WANT("worker shmdt(unaligned)", a, EINVAL);
        SAME_QUIET("worker shmdt(unaligned)", a, RES(raw_shmdt(somewhere + 1)));
    }
}

/* A read-only look at the main thread's segment. */
static void
op_peek_s0(struct worker *w)
{
    w->calls[C_AT]++;
    struct ck_res r = RES(shmat(s0_id, NULL, SHM_RDONLY));
    if (!WANT("worker shmat(s0)", r, 0))
        return;
    const char *p = (const char *)r.ret;
    if (p[0] != MAGIC)
        FAIL("worker: s0 reads %d, expected %d", p[0], MAGIC);
    w->calls[C_DT]++;
    WANT("worker shmdt(s0)", RES(shmdt(p)), 0);
}

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    watch(1 + w->index);
    while (!__atomic_load_n(&stop_workers, __ATOMIC_RELAXED)) {
        if (logging && w->iterations >= log_cap)
            break;
        int k = (int)(next_rand(&w->rng) % SLOTS);
        int j = (int)(next_rand(&w->rng) & 1);
        struct slot *s = &w->slot[k];
        unsigned op = (unsigned)(next_rand(&w->rng) % 100);
        if (s->id < 0)
            op_create(w, k);
        else if (op < 30)
            s->addr[j] == NULL ? op_attach(w, k, j) : op_detach(w, k, j);
        else if (op < 40 && !s->marked)
            op_mark(w, k);
        else if (op < 55)
            op_stat(w, k);
        else if (op < 65)
            op_errors(w, s->addr[j]);
        else if (op < 75)
            op_peek_s0(w);
        else if (op < 80 && s->addr[j] != NULL)
            check_known(w, "while attached", s->addr[j], s->size);
        w->iterations++;
        tick(1 + w->index);
    }
    unwatch(1 + w->index);
    return NULL;
}

/* Child exit codes: 0 fine, else the first check that failed. */
static int
forked_child(void)
{
    ck_child_defaults();
    /* the inherited attachment works and is known, as inherited */
    if (s0_addr[0] != MAGIC)
        return 10;
    if (api_size(s0_addr) != (ssize_t)s0_size)
        return 11;
    char *p = shmat(s0_id, NULL, 0);
    if (p == (char *)-1)
        return 12;
    if (p[0] != MAGIC || api_size(p) != (ssize_t)s0_size)
        return 13;
    p[1] = 1;
    if (shmdt(p) != 0)
        return 14;
    int id = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
    if (id < 0)
        return 15;
    if (shmctl(id, IPC_RMID, NULL) != 0) {
        raw_shmctl(id, IPC_RMID, NULL);
        return 16;
    }
    /* neither the inherited attachments nor the parent's segments are ours */
    if (api_leak_count() != 0)
        return 17;
    return 0;
}

/* What a forked child's and an exec'd child's log must hold. */
static const long forked_child_calls[4] = {1, 1, 1, 1};
static const long exec_child_calls[4] = {1, 1, 1, 1};

/* Forks child number N (its kind by N); 0 if it failed. */
static int
fork_one(long n)
{
    int kind = (int)(n % 4 == 3 ? 2 : n % 4 == 1 ? 1 : 0);
    if (!FORK_WITH_THREADS && kind == 0)
        kind = 1 + (int)(n / 2 % 2);
    char id_arg[16], size_arg[24];
    snprintf(id_arg, sizeof id_arg, "%d", s0_id);
    snprintf(size_arg, sizeof size_arg, "%zu", s0_size);
    main_phase = "fork";
    pid_t pid = ck_fork();
    if (pid == 0) {
        if (kind == 0)
            exit(forked_child());
        if (kind == 1) {
            char *argv[] = {(char *)stress_program, "exec_child", id_arg, size_arg, NULL};
            execv(ck_self_exe(), argv);
        } else {
            char *argv[] = {"true", NULL};
            execv("/bin/true", argv);
        }
        _exit(99);
    }
    main_phase = "wait for a child";
    const char *what = kind == 0   ? "forked, exits normally"
                       : kind == 1 ? "forked, execs x_stress_churn"
                                   : "forked, execs /bin/true";
    int code = wait_child(pid, what);
    if (code != 0 && code != -1000)
        FAIL("child %d (%s) ended with %d", (int)pid, what, code);
    children_made[kind]++;
    if (logging)
        printf("child %d %d\n", kind, (int)pid);
    return code == 0;
}

/* After the run: shmguard's books against what the threads hold. */
static void
check_accounting(const char *when)
{
    long held = 1, unmarked = 1; /* s0_addr, s0 */
    for (int i = 0; i < WORKERS; i++) {
        for (int k = 0; k < SLOTS; k++) {
            struct slot *s = &workers[i].slot[k];
            if (s->id < 0)
                continue;
            int mine = (s->addr[0] != NULL) + (s->addr[1] != NULL);
            held += mine;
            unmarked += !s->marked;
            long nattch = ck_nattch(s->id);
            int mapped = maps_count(s->id);
            if (nattch != mine || mapped != mine)
                FAIL("%s: segment %d: shm_nattch %ld, %d SYSV mappings, the program holds %d",
                     when, s->id, nattch, mapped, mine);
            for (int j = 0; j < 2; j++) {
                if (s->addr[j] == NULL)
                    continue;
                ssize_t sz = api_size(s->addr[j]);
                if (sz != (ssize_t)s->size)
                    FAIL("%s: shmguard_attachment_size(%p) = %zd, segment %d has %zu bytes",
                         when, (void *)s->addr[j], sz, s->id, s->size);
            }
        }
    }
    CHECK_EQ(ck_nattch(s0_id), 1);
    CHECK_EQ(maps_count(-1), held);
    size_t leaks = api_leak_count();
    if ((long)leaks != held + unmarked)
        FAIL("%s: shmguard_leak_count() = %zu; the program holds %ld attachments and %ld "
             "unmarked segments",
             when, leaks, held, unmarked);
    /* the report names the same */
    char path[256];
    ck_tmp_name(path, sizeof path, "report");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    int r = fd < 0 ? -1 : api_leak_report(fd);
    if (fd >= 0)
        close(fd);
    char *text = ck_slurp(path);
    int att = text == NULL ? -1 : ck_count_lines(text, "leak: attachment ", NULL);
    int seg = text == NULL ? -1 : ck_count_lines(text, "leak: segment ", NULL);
    if (r != (int)(held + unmarked) || att != held || seg != unmarked)
        FAIL("%s: shmguard_leak_report returned %d and names %d attachments and %d segments; "
             "the program holds %ld and %ld",
             when, r, att, seg, held, unmarked);
    free(text);
    unlink(path);
    tracef("accounting", "ok held=%ld unmarked=%ld leak_count=%zu", held, unmarked, leaks);
}

/* Detach and mark everything: then nothing is left to report. */
static void
release_all(void)
{
    for (int i = 0; i < WORKERS; i++) {
        for (int k = 0; k < SLOTS; k++) {
            struct slot *s = &workers[i].slot[k];
            if (s->id < 0)
                continue;
            for (int j = 0; j < 2; j++)
                if (s->addr[j] != NULL) {
                    main_calls[C_DT]++;
                    CHECK_EQ(shmdt(s->addr[j]), 0);
                    s->addr[j] = NULL;
                }
            if (!s->marked) {
                main_calls[C_CTL]++;
                CHECK_EQ(shmctl(s->id, IPC_RMID, NULL), 0);
                __atomic_store_n(&live_ids[i * SLOTS + k], 0, __ATOMIC_SEQ_CST);
            }
            CHECK_EQ(ck_nattch(s->id), -1);
            slot_forget(&workers[i], k);
        }
    }
    main_calls[C_DT]++;
    CHECK_EQ(shmdt(s0_addr), 0);
    main_calls[C_CTL]++;
    CHECK_EQ(shmctl(s0_id, IPC_RMID, NULL), 0);
    CHECK_EQ(api_leak_count(), 0);
    CHECK_EQ(maps_count(-1), 0);
    tracef("released", "ok leak_count=%zu", api_leak_count());
}

static int
scenario_churn(void)
{
    load_api();
    logging = getenv("SHMGUARD_OPTIONS") != NULL &&
              strstr(getenv("SHMGUARD_OPTIONS"), "log_path=") != NULL;
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    const char *fixed = getenv("SHMGUARD_STRESS_SEED");
    if (fixed != NULL)
        seed = strtoull(fixed, NULL, 0);
    printf("info: seed %llu (SHMGUARD_STRESS_SEED), %.1f s\n", (unsigned long long)seed,
           seconds);

    main_calls[C_GET]++;
    s0_id = ck_shmget(IPC_PRIVATE, s0_size, IPC_CREAT | 0600);
    CHECK(s0_id >= 0);
    main_calls[C_AT]++;
    s0_addr = shmat(s0_id, NULL, 0);
    if (s0_id < 0 || s0_addr == (char *)-1)
        return ck_finish();
    s0_addr[0] = MAGIC;

    start_watchdog();
    for (int i = 0; i < WORKERS; i++) {
        workers[i].index = i;
        workers[i].rng = seed + 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1);
        for (int k = 0; k < SLOTS; k++)
            slot_forget(&workers[i], k);
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
            FAIL("pthread_create");
            exit(1);
        }
    }
    double end = now_s() + seconds;
    long n = 0;
    while (now_s() < end) {
        /* after a child that failed, the threads go on alone */
        if (n >= 0 && !fork_one(n++))
            n = -1;
        main_phase = "shm calls";
        main_calls[C_AT]++;
        char *p = shmat(s0_id, NULL, SHM_RDONLY);
        if (p == (char *)-1) {
            FAIL("main shmat(s0): %s", ck_errname(errno));
        } else {
            CHECK_EQ(p[0], MAGIC);
            main_calls[C_DT]++;
            CHECK_EQ(shmdt(p), 0);
        }
        tick(0);
    }
    main_phase = "join the workers";
    __atomic_store_n(&stop_workers, 1, __ATOMIC_RELAXED);
    long iterations = 0, lost = 0;
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(workers[i].thread, NULL);
        iterations += workers[i].iterations;
        lost += workers[i].lost;
    }
    if (lost != 0)
        FAIL("%ld times a worker's live attachment was unknown to shmguard (see x_stress_threads "
             "reuse)",
             lost);
    stop_watchdog();
    printf("info: %ld worker iterations, children: %ld forked, %ld exec'd x_stress_churn, %ld "
           "exec'd /bin/true\n",
           iterations, children_made[0], children_made[1], children_made[2]);
    tracef("churn", "ok workers=%d children=%d", WORKERS, n != 0);

    check_accounting("after the run");
    release_all();
    if (logging) {
        long total[4];
        for (int c = 0; c < 4; c++) {
            total[c] = main_calls[c];
            for (int i = 0; i < WORKERS; i++)
                total[c] += workers[i].calls[c];
        }
        printf("calls %d %ld %ld %ld %ld\n", (int)getpid(), total[0], total[1], total[2],
               total[3]);
    }
    return ck_finish();
}

/* The image a churn child execs: it starts clean, without the attachments
 * of the process it replaced. */
static int
scenario_exec_child(void)
{
    int argc = stress_argc;
    char **argv = stress_argv;
    if (argc != 4)
        return 2;
    load_api();
    int id = atoi(argv[2]);
    size_t size = strtoul(argv[3], NULL, 10);
    if (api_leak_count() != 0 || maps_count(-1) != 0)
        return 20;
    char *p = shmat(id, NULL, SHM_RDONLY);
    if (p == (char *)-1)
        return 21;
    if (p[0] != MAGIC || api_size(p) != (ssize_t)size)
        return 22;
    if (shmdt(p) != 0)
        return 23;
    int own = shmget(IPC_PRIVATE, 100, IPC_CREAT | 0600);
    if (own < 0)
        return 24;
    if (shmctl(own, IPC_RMID, NULL) != 0) {
        raw_shmctl(own, IPC_RMID, NULL);
        return 25;
    }
    return ck_failures == 0 && api_leak_count() == 0 ? 0 : 26;
}

static int
same_calls(const char *what, const struct ck_log *log, const long want[4])
{
    int ok = log->calls[4] == 0;
    for (int c = 0; c < 4; c++)
        ok = ok && log->calls[c] == want[c];
    if (!ok)
        FAIL("%s: log %s has %ld shmget, %ld shmat, %ld shmdt, %ld shmctl, %ld ftok events; "
             "the process made %ld, %ld, %ld, %ld, 0",
             what, log->name, log->calls[0], log->calls[1], log->calls[2], log->calls[3],
             log->calls[4], want[0], want[1], want[2], want[3]);
    return ok;
}

static int
scenario_churn_log(void)
{
    char *out;
    pid_t pid;
    run_logged("churn", &out, &pid);
    struct ck_log *logs;
    int n = ck_logs_read(ck_tmpdir(), "l.", &logs);
    int used = 0, bad = 0;
    long parent[4] = {0};
    int have_totals = 0;
    for (char *line = strtok(out, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        int kind, child;
        long t[4];
        int p;
        if (sscanf(line, "calls %d %ld %ld %ld %ld", &p, &t[0], &t[1], &t[2], &t[3]) == 5) {
            memcpy(parent, t, sizeof t);
            have_totals = 1;
            struct ck_log *log = ck_log_of(logs, n, p);
            if (log == NULL) {
                FAIL("no log for the churn process %d", p);
                bad++;
                continue;
            }
            used++;
            bad += !ck_log_whole("churn process", log, 1);
            bad += !same_calls("churn process", log, t);
            bad += log->forked != 0;
        } else if (sscanf(line, "child %d %d", &kind, &child) == 2) {
            struct ck_log *log = ck_log_of(logs, n, child);
            if (kind == 2) {
                /* /bin/true makes no shm call: no log */
                if (log != NULL) {
                    FAIL("/bin/true (pid %d) has a log: %s", child, log->name);
                    bad++;
                }
                continue;
            }
            if (log == NULL) {
                FAIL("no log for child %d (kind %d)", child, kind);
                bad++;
                continue;
            }
            used++;
            const char *what = kind == 0 ? "forked child" : "exec'd child";
            bad += !ck_log_whole(what, log, 1);
            bad += !same_calls(what, log, kind == 0 ? forked_child_calls : exec_child_calls);
            if (log->forked != (kind == 0)) {
                FAIL("%s %d: start event says forked=%d", what, child, log->forked);
                bad++;
            }
        }
    }
    CHECK(have_totals);
    if (used != n) {
        FAIL("%d log files, %d of them accounted for", n, used);
        bad++;
    }
    tracef("churn_log", "ok logs=%d whole_and_counted=%d", n > 0, bad == 0);
    free(logs);
    free(out);
    return ck_finish();
}

int
main(int argc, char **argv)
{
    static const struct stress_scenario scenarios[] = {
        {"exec_child", scenario_exec_child, 1},
        {"churn", scenario_churn, 0},
        {"churn_log", scenario_churn_log, 0},
        {NULL, NULL, 0},
    };
    return stress_main(argc, argv, "x_stress_churn", scenarios);
}
