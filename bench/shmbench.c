/*
 * shmbench: the worker of shmguard's benchmark (bench/run.sh runs
 * bench/driver.c, which runs this program once per sample).
 *
 * The same source is built twice: shmbench.plain (glibc's shm calls) and
 * shmbench.linked (-lshmguard). The driver runs one of them per sample, with
 * or without LD_PRELOAD, SHMGUARD_OPTIONS or strace, and reads its stdout.
 *
 * Every timed measure alternates short batches of two implementations of the
 * same calls, in ABBA order:
 *   A, "the variant": the names the program links to (shmat, ...), i.e.
 *      glibc in shmbench.plain, shmguard when linked or preloaded;
 *   B, "the reference": glibc's own functions, found with dlsym in
 *      libc.so.6 (in shmbench.plain, A and B are both glibc: a control).
 * A's ns/op is the variant's sample for the driver's cross-process
 * comparison; the median over pairs of t(A batch) / t(B batch) is an
 * in-process ratio against glibc, immune to noise slower than a batch.
 *
 *   shmbench micro BUDGET_MS FTOK_PATH [MEASURE]
 *       each per-call measure (attach_4k, attach_1g, ipc_stat, get_rmid,
 *       ftok, threads4), about BUDGET_MS of A and as much of B:
 *       "MEASURE A_NS_PER_OP A_OPS B_NS_PER_OP AB_RATIO AB_ADDED_NS" lines
 *       (the last two: medians over pairs of t(A)/t(B) and of the ns/op
 *       A adds to B)
 *   shmbench live HELD BUDGET_MS
 *       attach+detach of a 4 KiB segment while HELD (>= 1) other
 *       attachments (of one segment, made through A) are live: a
 *       "live ..." line as above
 *   shmbench hold-exit N
 *       attach one segment N times, mark it IPC_RMID, print "t0 NS" (the
 *       CLOCK_MONOTONIC time just before returning from main) and return
 *       with the N attachments live: the parent times the exit
 *   shmbench hold-count N
 *       the same N attachments (segment marked IPC_RMID), then time
 *       shmguard_leak_count() (dlsym; absent in plain glibc):
 *       "leak_count NS COUNT"; then detach them all
 *   shmbench loop MEASURE N
 *       N operations of A, untimed: for profilers (callgrind, perf)
 *   shmbench impl
 *       just the "impl" line
 *
 * The first line is always "impl libshmguard" or "impl libc": which library
 * A's shmget resolved to, so that a variant that silently fell back to
 * glibc is caught. Every segment is marked IPC_RMID before the program
 * returns (also after a failure).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <time.h>
#include <unistd.h>

#ifndef SHM_NORESERVE
#define SHM_NORESERVE 010000
#endif

#define KIB 1024UL
#define GIB (1024UL * 1024UL * 1024UL)

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "shmbench: %s: %s\n", what, strerror(errno));
    exit(2);
}

/* ------------------------------------------------- the two implementations */

struct api {
    int (*get)(key_t, size_t, int);
    void *(*at)(int, const void *, int);
    int (*dt)(const void *);
    int (*ctl)(int, int, struct shmid_ds *);
    key_t (*tok)(const char *, int);
};

/* A: whatever the program's own names resolve to. */
static const struct api variant_api = {shmget, shmat, shmdt, shmctl, ftok};
/* B: glibc's functions, looked up in libc.so.6 itself. */
static struct api glibc_api;

static void *libc_sym(void *libc, const char *name)
{
    void *p = dlsym(libc, name);
    if (!p) {
        fprintf(stderr, "shmbench: dlsym(libc.so.6, %s): %s\n", name, dlerror());
        exit(2);
    }
    return p;
}

static void load_glibc_api(void)
{
    void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    if (!libc) {
        fprintf(stderr, "shmbench: dlopen(libc.so.6): %s\n", dlerror());
        exit(2);
    }
    *(void **)&glibc_api.get = libc_sym(libc, "shmget");
    *(void **)&glibc_api.at = libc_sym(libc, "shmat");
    *(void **)&glibc_api.dt = libc_sym(libc, "shmdt");
    *(void **)&glibc_api.ctl = libc_sym(libc, "shmctl");
    *(void **)&glibc_api.tok = libc_sym(libc, "ftok");
}

static const char *impl_of(void *fn)
{
    Dl_info info;
    if (fn && dladdr(fn, &info) && info.dli_fname)
        return strstr(info.dli_fname, "libshmguard") ? "libshmguard" : "libc";
    return "unknown";
}

/* ------------------------------------------------------------- segments */

/* Segments to mark IPC_RMID at exit, even after die(). */
static int owned[64];
static int n_owned;

static void remove_owned(void)
{
    for (int i = 0; i < n_owned; i++)
        shmctl(owned[i], IPC_RMID, NULL);
    n_owned = 0;
}

static int new_segment(size_t size, int extra_flags)
{
    int id = shmget(IPC_PRIVATE, size, IPC_CREAT | 0600 | extra_flags);
    if (id < 0)
        die("shmget");
    if (n_owned < (int)(sizeof owned / sizeof owned[0]))
        owned[n_owned++] = id;
    return id;
}

static void attach_detach(const struct api *api, int id)
{
    void *p = api->at(id, NULL, 0);
    if (p == (void *)-1)
        die("shmat");
    if (api->dt(p) != 0)
        die("shmdt");
}

/* ------------------------------------------------------------- measures */

static int seg_4k = -1, seg_1g = -1;
static const char *ftok_path = ".";
static volatile long sink;

static void op_attach_4k(const struct api *api) { attach_detach(api, seg_4k); }
static void op_attach_1g(const struct api *api) { attach_detach(api, seg_1g); }

static void op_ipc_stat(const struct api *api)
{
    struct shmid_ds ds;
    if (api->ctl(seg_4k, IPC_STAT, &ds) != 0)
        die("shmctl(IPC_STAT)");
    sink = (long)ds.shm_segsz;
}

static void op_get_rmid(const struct api *api)
{
    int id = api->get(IPC_PRIVATE, 4 * KIB, IPC_CREAT | 0600);
    if (id < 0)
        die("shmget");
    if (api->ctl(id, IPC_RMID, NULL) != 0)
        die("shmctl(IPC_RMID)");
}

static void op_ftok(const struct api *api)
{
    key_t k = api->tok(ftok_path, 'b');
    if (k == (key_t)-1)
        die("ftok");
    sink = k;
}

typedef void (*op_fn)(const struct api *);

static const struct measure {
    const char *name;
    op_fn op;
} measures[] = {
    {"attach_4k", op_attach_4k}, {"attach_1g", op_attach_1g}, {"ipc_stat", op_ipc_stat},
    {"get_rmid", op_get_rmid},   {"ftok", op_ftok},
};
enum { N_MEASURES = sizeof measures / sizeof measures[0] };

/* ------------------------------------------------------------ timing */

static uint64_t run_batch(op_fn op, const struct api *api, uint64_t n)
{
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++)
        op(api);
    return now_ns() - t0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    if (n == 0)
        return 0.0;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

struct result {
    double a_ns, b_ns, ab_ratio, added_ns;
    uint64_t a_ops;
};

enum { MAX_PAIRS = 4096 };
static double pair_ratio[MAX_PAIRS], pair_added[MAX_PAIRS];

/* Alternates batches of A and B (ABBA), each about budget/PAIRS long, until
 * A alone has run for `budget_ns`; a warm-up of both comes first. */
static struct result time_ab(op_fn op, uint64_t budget_ns)
{
    enum { TARGET_PAIRS = 24 };
    /* Calibrate: ops per batch so that a batch takes budget/TARGET_PAIRS. */
    uint64_t probe = 4, t;
    for (;;) {
        t = run_batch(op, &variant_api, probe);
        run_batch(op, &glibc_api, probe);
        if (t >= budget_ns / TARGET_PAIRS / 4 || probe >= (1u << 20))
            break;
        probe *= 2;
    }
    uint64_t batch = probe * (budget_ns / TARGET_PAIRS) / (t ? t : 1);
    if (batch < 1)
        batch = 1;
    uint64_t a_total = 0, b_total = 0, pairs = 0;
    while (a_total < budget_ns && pairs < MAX_PAIRS) {
        uint64_t ta, tb;
        if (pairs % 2 == 0) {
            ta = run_batch(op, &variant_api, batch);
            tb = run_batch(op, &glibc_api, batch);
        } else {
            tb = run_batch(op, &glibc_api, batch);
            ta = run_batch(op, &variant_api, batch);
        }
        a_total += ta;
        b_total += tb;
        pair_added[pairs] = ((double)ta - (double)tb) / (double)batch;
        pair_ratio[pairs++] = (double)ta / (double)(tb ? tb : 1);
    }
    struct result r;
    r.a_ops = batch * pairs;
    r.a_ns = (double)a_total / (double)r.a_ops;
    r.b_ns = (double)b_total / (double)r.a_ops;
    r.ab_ratio = median(pair_ratio, pairs);
    r.added_ns = median(pair_added, pairs);
    return r;
}

static void print_result(const char *name, struct result r)
{
    printf("%s %.2f %llu %.2f %.4f %.2f\n", name, r.a_ns, (unsigned long long)r.a_ops, r.b_ns,
           r.ab_ratio, r.added_ns);
    fflush(stdout);
}

/* --------------------------------------------------- threads hammering */

enum { THREADS = 4 };

/* The phase the hammering threads are in: which api they call, or stop. */
enum { PHASE_WAIT, PHASE_A, PHASE_B, PHASE_STOP };
static atomic_int phase;

struct hammer {
    pthread_t thread;
    int shmid;
    _Alignas(64) atomic_ullong ops;
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    for (;;) {
        int p = atomic_load_explicit(&phase, memory_order_relaxed);
        if (p == PHASE_STOP)
            break;
        if (p == PHASE_WAIT) {
            sched_yield();
            continue;
        }
        attach_detach(p == PHASE_A ? &variant_api : &glibc_api, h->shmid);
        atomic_fetch_add_explicit(&h->ops, 1, memory_order_relaxed);
    }
    return NULL;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec pause = {(time_t)(ns / 1000000000ULL), (long)(ns % 1000000000ULL)};
    while (nanosleep(&pause, &pause) != 0 && errno == EINTR)
        ;
}

/* THREADS threads attach and detach their own 4 KiB segments; phases of A
 * and B alternate (ABBA), each budget/8 long, until A has had `budget_ns`.
 * ns/op is wall time over the ops of all threads (1/throughput). */
static struct result hammer_threads(uint64_t budget_ns)
{
    enum { PHASES = 16 }; /* 8 of A, 8 of B */
    static struct hammer h[THREADS];
    atomic_store(&phase, PHASE_WAIT);
    for (int i = 0; i < THREADS; i++) {
        h[i].shmid = new_segment(4 * KIB, 0);
        atomic_store(&h[i].ops, 0);
        if (pthread_create(&h[i].thread, NULL, hammer_main, &h[i]) != 0)
            die("pthread_create");
    }
    uint64_t phase_ns = budget_ns / (PHASES / 2);
    /* warm-up, unrecorded */
    atomic_store(&phase, PHASE_A);
    sleep_ns(phase_ns / 4);
    atomic_store(&phase, PHASE_B);
    sleep_ns(phase_ns / 4);
    uint64_t a_ns = 0, b_ns = 0, a_ops = 0, b_ops = 0;
    double ratio[PHASES / 2], added[PHASES / 2];
    double last_a = 0, last_b = 0;
    for (int k = 0; k < PHASES; k++) {
        int which = (k % 4 == 0 || k % 4 == 3) ? PHASE_A : PHASE_B;
        uint64_t before = 0, after = 0;
        for (int i = 0; i < THREADS; i++)
            before += atomic_load(&h[i].ops);
        uint64_t t0 = now_ns();
        atomic_store(&phase, which);
        sleep_ns(phase_ns);
        uint64_t t1 = now_ns();
        for (int i = 0; i < THREADS; i++)
            after += atomic_load(&h[i].ops);
        uint64_t n = after - before;
        double per_op = n ? (double)(t1 - t0) / (double)n : 0.0;
        if (which == PHASE_A) {
            a_ns += t1 - t0;
            a_ops += n;
            last_a = per_op;
        } else {
            b_ns += t1 - t0;
            b_ops += n;
            last_b = per_op;
        }
        if (k % 2 == 1) {
            ratio[k / 2] = last_b > 0 ? last_a / last_b : 0.0;
            added[k / 2] = last_a - last_b;
        }
    }
    atomic_store(&phase, PHASE_STOP);
    for (int i = 0; i < THREADS; i++)
        pthread_join(h[i].thread, NULL);
    struct result r;
    r.a_ops = a_ops;
    r.a_ns = a_ops ? (double)a_ns / (double)a_ops : 0.0;
    r.b_ns = b_ops ? (double)b_ns / (double)b_ops : 0.0;
    r.ab_ratio = median(ratio, PHASES / 2);
    r.added_ns = median(added, PHASES / 2);
    return r;
}

/* ---------------------------------------------------------------- modes */

static const struct measure *find_measure(const char *name)
{
    for (int m = 0; m < N_MEASURES; m++)
        if (strcmp(measures[m].name, name) == 0)
            return &measures[m];
    return NULL;
}

static int mode_micro(uint64_t budget_ns, const char *only)
{
    seg_4k = new_segment(4 * KIB, 0);
    seg_1g = new_segment(GIB, SHM_NORESERVE);
    for (int m = 0; m < N_MEASURES; m++)
        if (!only || strcmp(only, measures[m].name) == 0)
            print_result(measures[m].name, time_ab(measures[m].op, budget_ns));
    if (!only || strcmp(only, "threads4") == 0)
        print_result("threads4", hammer_threads(4 * budget_ns));
    return 0;
}

/* Attaches `shmid` n times through A; the addresses go to `out` (or
 * nowhere when NULL). */
static void attach_many(int shmid, long n, void **out)
{
    for (long i = 0; i < n; i++) {
        void *p = shmat(shmid, NULL, 0);
        if (p == (void *)-1)
            die("shmat (holding attachments: see vm.max_map_count)");
        if (out)
            out[i] = p;
    }
}

/* n >= 1 attachments of one new 4 KiB segment, which is marked IPC_RMID
 * right after the first (Linux attaches a marked segment while it lives):
 * it goes with its last attachment, even if this process dies. Returns the
 * addresses (n + 1 slots), or NULL when keep is 0. */
static void **hold(long n, int keep)
{
    int id = shmget(IPC_PRIVATE, 4 * KIB, IPC_CREAT | 0600);
    if (id < 0)
        die("shmget");
    void **addrs = keep ? calloc((size_t)n + 1, sizeof *addrs) : NULL;
    if (keep && !addrs) {
        shmctl(id, IPC_RMID, NULL);
        die("calloc");
    }
    void *first = shmat(id, NULL, 0);
    int e = errno;
    if (shmctl(id, IPC_RMID, NULL) != 0)
        die("shmctl(IPC_RMID)");
    if (first == (void *)-1) {
        errno = e;
        die("shmat");
    }
    if (addrs)
        addrs[0] = first;
    attach_many(id, n - 1, addrs ? addrs + 1 : NULL);
    return addrs;
}

static void release(void **addrs, long n)
{
    for (long i = 0; i < n; i++)
        if (shmdt(addrs[i]) != 0)
            die("shmdt");
    free(addrs);
}

static int mode_live(long held, uint64_t budget_ns)
{
    void **addrs = hold(held, 1);
    seg_4k = new_segment(4 * KIB, 0);
    print_result("live", time_ab(op_attach_4k, budget_ns));
    release(addrs, held);
    return 0;
}

static int mode_hold_exit(long n)
{
    hold(n, 0);
    printf("t0 %llu\n", (unsigned long long)now_ns());
    fflush(stdout);
    return 0; /* exits with n live attachments: the leak check finds them */
}

static int mode_hold_count(long n)
{
    size_t (*leak_count)(void);
    *(void **)&leak_count = dlsym(RTLD_DEFAULT, "shmguard_leak_count");
    void **addrs = hold(n, 1); /* the leaks are the n attachments, as in hold-exit */
    if (leak_count) {
        uint64_t t0 = now_ns();
        size_t count = leak_count();
        uint64_t t1 = now_ns();
        printf("leak_count %llu %zu\n", (unsigned long long)(t1 - t0), count);
    } else {
        printf("leak_count - -\n");
    }
    release(addrs, n);
    return 0;
}

static int mode_loop(const char *name, long n)
{
    seg_4k = new_segment(4 * KIB, 0);
    if (strcmp(name, "attach_1g") == 0)
        seg_1g = new_segment(GIB, SHM_NORESERVE);
    const struct measure *m = find_measure(name);
    if (!m) {
        fprintf(stderr, "shmbench: unknown measure %s\n", name);
        return 2;
    }
    run_batch(m->op, &variant_api, (uint64_t)n);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: shmbench micro BUDGET_MS FTOK_PATH [MEASURE] | live HELD BUDGET_MS |"
                    " hold-exit N | hold-count N | loop MEASURE N | impl\n");
    exit(2);
}

static long number(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0)
        usage();
    return v;
}

int main(int argc, char **argv)
{
    atexit(remove_owned);
    if (argc < 2)
        usage();
    load_glibc_api();
    void *a_get;
    *(void **)&a_get = (void *)variant_api.get;
    printf("impl %s\n", impl_of(a_get));
    const char *mode = argv[1];
    if (strcmp(mode, "micro") == 0 && (argc == 4 || argc == 5)) {
        ftok_path = argv[3];
        return mode_micro((uint64_t)number(argv[2]) * 1000000ULL, argc == 5 ? argv[4] : NULL);
    }
    if (strcmp(mode, "live") == 0 && argc == 4 && number(argv[2]) >= 1)
        return mode_live(number(argv[2]), (uint64_t)number(argv[3]) * 1000000ULL);
    if (strcmp(mode, "hold-exit") == 0 && argc == 3 && number(argv[2]) >= 1)
        return mode_hold_exit(number(argv[2]));
    if (strcmp(mode, "hold-count") == 0 && argc == 3 && number(argv[2]) >= 1)
        return mode_hold_count(number(argv[2]));
    if (strcmp(mode, "loop") == 0 && argc == 4)
        return mode_loop(argv[2], number(argv[3]));
    if (strcmp(mode, "impl") == 0 && argc == 2)
        return 0;
    usage();
    return 2;
}
