/* x_stress.c SCENARIO: shmguard under load. Each phase runs for
 * SHMGUARD_STRESS_SECONDS (default 1; `make stress` sets more).
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
 *   signals       SIGALRM (setitimer, every 200 us) and SIGUSR1 (pthread_kill
 *                 every 150 us) handlers that call shmat/shmdt, while the main thread
 *                 loops on shm calls: no deadlock, every result the kernel's,
 *                 the accounting intact.
 *   signals_log   signals with log_path: the main thread's calls all logged,
 *                 the handlers' ones too unless they interrupted a call.
 *   signals_fork  the same handlers while the main thread forks.
 *   exec_log      with log_path, a child makes calls and then execs this
 *                 program, which makes more: no call event may be lost.
 *   reuse         2 threads attach and detach same-size segments, so the
 *                 kernel reuses addresses between them: every live attachment
 *                 must stay known (shmguard_attachment_size, leak count).
 *   fork_busy     2 threads attach and detach without pause while the main
 *                 thread forks children that attach: no child may block.
 *   exec_child    (internal) the image a churn child execs.
 *
 * A run named SCENARIO+WORD (churn+guard) is SCENARIO: the runner gives it
 * other options. Deadlocks: a watchdog thread fails the run when a thread
 * stops making progress for 6 s, and a child that has not ended after 3 s
 * is killed, each naming the system call it is blocked in. Segments made by
 * the threads live in a table that the cleanup hook removes if the program
 * dies; the children report through their exit status. */
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
static int scale = 1; /* ck_scale() */

static double seconds = 1.0;
static int logging; /* log_path is set: the caller counts our events */

static ssize_t (*api_size)(const void *);
static size_t (*api_leak_count)(void);
static int (*api_leak_report)(int);

static void
load_api(void)
{
    *(void **)&api_size = ck_sym("shmguard_attachment_size");
    *(void **)&api_leak_count = ck_sym("shmguard_leak_count");
    *(void **)&api_leak_report = ck_sym("shmguard_leak_report");
}

static double
now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void
sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

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
static unsigned long progress[WATCHED];
static int active[WATCHED];
static pid_t thread_tid[WATCHED];
static const char *volatile main_phase = "start";
static volatile pid_t current_child;
static volatile int watchdog_stop;

static void
say(const char *text)
{
    if (write(2, text, strlen(text)) < 0) {
        /* nothing more to do */
    }
}

/* The system call thread TID is blocked in, from /proc (e.g. "202" futex). */
static void
describe_blocked(pid_t tid, char *buf, size_t len)
{
    char path[64], text[128] = "?";
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        ssize_t n = read(fd, text, sizeof text - 1);
        text[n > 0 ? n : 0] = '\0';
        close(fd);
    }
    if (strncmp(text, "running", 7) == 0) {
        snprintf(buf, len, "no system call (running: a livelock or a spin)");
        return;
    }
    long nr = strtol(text, NULL, 10);
    snprintf(buf, len, "system call %ld%s", nr,
             nr == SYS_futex ? " (futex: waiting for a lock)" : "");
}

static void *
watchdog(void *arg)
{
    (void)arg;
    unsigned long seen[WATCHED] = {0};
    int still[WATCHED] = {0};
    while (!watchdog_stop) {
        sleep_us(100000);
        for (int i = 0; i < WATCHED; i++) {
            unsigned long p = __atomic_load_n(&progress[i], __ATOMIC_RELAXED);
            if (!__atomic_load_n(&active[i], __ATOMIC_RELAXED) || p != seen[i]) {
                seen[i] = p;
                still[i] = 0;
                continue;
            }
            if (++still[i] * 100 < STALL_MS * scale)
                continue;
            char msg[512], blocked[96];
            describe_blocked(thread_tid[i], blocked, sizeof blocked);
            if (i == 0)
                snprintf(msg, sizeof msg,
                         "FAIL: x_stress.c: deadlock: the main thread made no progress for "
                         "%d s (phase %s), blocked in %s\n",
                         STALL_MS * scale / 1000, main_phase, blocked);
            else
                snprintf(msg, sizeof msg,
                         "FAIL: x_stress.c: deadlock: worker %d made no progress for %d s, "
                         "blocked in %s\n",
                         i, STALL_MS * scale / 1000, blocked);
            say(msg);
            pid_t child = current_child;
            if (child > 0) {
                kill(child, SIGKILL);
                waitpid(child, NULL, 0);
            }
            ck_remove_all(0);
            _exit(1);
        }
    }
    return NULL;
}

static void
watch(int i)
{
    thread_tid[i] = (pid_t)syscall(SYS_gettid);
    __atomic_store_n(&active[i], 1, __ATOMIC_RELAXED);
}

static void
unwatch(int i)
{
    __atomic_store_n(&active[i], 0, __ATOMIC_RELAXED);
}

static void
tick(int i)
{
    __atomic_add_fetch(&progress[i], 1, __ATOMIC_RELAXED);
}

static pthread_t watchdog_thread;

/* Starts the watchdog with every signal blocked in it. */
static void
start_watchdog(void)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    if (pthread_create(&watchdog_thread, NULL, watchdog, NULL) != 0) {
        FAIL("pthread_create(watchdog)");
        exit(1);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    watch(0);
}

static void
stop_watchdog(void)
{
    unwatch(0);
    watchdog_stop = 1;
    pthread_join(watchdog_thread, NULL);
}

/* ------------------------------------------------ segments of the threads */

/* Segments the workers created and have not marked yet: id + 1, 0 = free.
 * The cleanup hook removes them if the program ends early. */
static int live_ids[WORKERS * SLOTS + 8];

static void
remove_live(void)
{
    for (size_t i = 0; i < sizeof live_ids / sizeof live_ids[0]; i++) {
        int v = __atomic_exchange_n(&live_ids[i], 0, __ATOMIC_SEQ_CST);
        if (v != 0)
            syscall(SYS_shmctl, v - 1, IPC_RMID, 0);
    }
}

/* Call counters by kind, as the log counts them (ck_call_names order). */
enum { C_GET, C_AT, C_DT, C_CTL };

/* ------------------------------------------------------------------ churn */

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

/* Waits for child PID up to CHILD_MS (within the watchdog's limit). On a
 * timeout, says which system call the child is blocked in, then kills it.
 * Returns its exit code, -SIGNAL, or -1000 for a timeout. */
static int
wait_child(pid_t pid, const char *what)
{
    current_child = pid;
    int status = 0;
    for (int waited = 0;; waited += 2) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR) {
            FAIL("waitpid(%d): %s", (int)pid, ck_errname(errno));
            current_child = 0;
            return -999;
        }
        if (waited >= CHILD_MS * scale) {
            char path[64], text[128] = "?";
            snprintf(path, sizeof path, "/proc/%d/syscall", (int)pid);
            int fd = open(path, O_RDONLY);
            if (fd >= 0) {
                ssize_t n = read(fd, text, sizeof text - 1);
                text[n > 0 ? n : 0] = '\0';
                close(fd);
            }
            long nr = strtol(text, NULL, 10);
            FAIL("deadlock: child %d (%s) still runs after %d s, blocked in %s%ld%s; killed",
                 (int)pid, what, CHILD_MS * scale / 1000,
                 strncmp(text, "running", 7) == 0 ? "no system call, " : "system call ", nr,
                 nr == SYS_futex ? " (futex: a lock it inherited locked from a thread of its "
                                   "parent?)"
                                 : "");
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            current_child = 0;
            return -1000;
        }
        sleep_us(2000);
    }
    current_child = 0;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return WIFSIGNALED(status) ? -WTERMSIG(status) : -999;
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
            char *argv[] = {"x_stress", "exec_child", id_arg, size_arg, NULL};
            execv(ck_self_exe(), argv);
        } else {
            char *argv[] = {"true", NULL};
            execv("/bin/true", argv);
        }
        _exit(99);
    }
    main_phase = "wait for a child";
    const char *what = kind == 0   ? "forked, exits normally"
                       : kind == 1 ? "forked, execs x_stress"
                                   : "forked, execs /bin/true";
    int code = wait_child(pid, what);
    if (code != 0 && code != -1000)
        FAIL("child %d (%s) ended with %d", (int)pid, what, code);
    children_made[kind]++;
    if (logging)
        printf("child %d %d\n", kind, (int)pid);
    return code == 0;
}

/* SYSV mappings of SHMID in /proc/self/maps (-1: all of them). */
static int
maps_count(int shmid)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int n = 0;
    if (f == NULL) {
        FAIL("cannot read /proc/self/maps");
        return -1;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long ino;
        char path[64] = "";
        if (sscanf(line, "%*s %*s %*s %*s %lu %63s", &ino, path) == 2 &&
            strncmp(path, "/SYSV", 5) == 0 && (shmid < 0 || ino == (unsigned long)shmid))
            n++;
    }
    fclose(f);
    return n;
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
        FAIL("%ld times a worker's live attachment was unknown to shmguard (see x_stress "
             "reuse)",
             lost);
    stop_watchdog();
    printf("info: %ld worker iterations, children: %ld forked, %ld exec'd x_stress, %ld "
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
scenario_exec_child(int argc, char **argv)
{
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

/* ------------------------------------------------------------------ reuse */

/* Two threads attach and detach segments of one size: the kernel hands the
 * address one thread just detached to the other. Between its own shmdt and
 * forgetting the record, a thread must not forget the record the other
 * thread just made at that address. */
static long reuse_lost[2], reuse_rounds[2];
static int reuse_ids[2];
static char *reuse_kept[2]; /* the first attachment shmguard lost, kept */

static void *
reuse_main(void *arg)
{
    long t = (long)arg;
    double end = now_s() + seconds;
    watch(1 + (int)t);
    while (now_s() < end) {
        for (int i = 0; i < 200; i++) {
            char *p = shmat(reuse_ids[t], NULL, 0);
            if (p == (char *)-1) {
                FAIL("reuse shmat: %s", ck_errname(errno));
                return NULL;
            }
            if (api_size(p) != (ssize_t)PAGE && reuse_lost[t]++ == 0) {
                reuse_kept[t] = p;
                continue;
            }
            if (shmdt(p) != 0) {
                FAIL("reuse shmdt: %s", ck_errname(errno));
                return NULL;
            }
            reuse_rounds[t]++;
        }
        tick(1 + (int)t);
    }
    unwatch(1 + (int)t);
    return NULL;
}

static int
scenario_reuse(void)
{
    load_api();
    for (int t = 0; t < 2; t++)
        reuse_ids[t] = ck_fixture(PAGE, 0600);
    start_watchdog();
    unwatch(0); /* the main thread only waits */
    pthread_t th[2];
    for (long t = 0; t < 2; t++)
        if (pthread_create(&th[t], NULL, reuse_main, (void *)t) != 0) {
            FAIL("pthread_create");
            exit(1);
        }
    for (int t = 0; t < 2; t++)
        pthread_join(th[t], NULL);
    stop_watchdog();
    long lost = reuse_lost[0] + reuse_lost[1];
    if (lost != 0)
        FAIL("%ld of %ld live attachments unknown to shmguard right after shmat "
             "(shmguard_attachment_size = -1): a thread's shmdt of address A forgot the "
             "record another thread had just made for its new attachment at A, which "
             "shmguard_copy_to/from then refuse and the leak check never reports",
             lost, reuse_rounds[0] + reuse_rounds[1]);
    /* A kept attachment is a leak now; shmguard should count it. */
    long kept = (reuse_kept[0] != NULL) + (reuse_kept[1] != NULL);
    size_t counted = api_leak_count();
    if ((long)counted != kept)
        FAIL("the program holds %ld attachment(s) it never detached, shmguard_leak_count() "
             "says %zu: the leak check would not report them",
             kept, counted);
    for (int t = 0; t < 2; t++)
        if (reuse_kept[t] != NULL)
            CHECK_EQ(shmdt(reuse_kept[t]), 0);
    CHECK_EQ(maps_count(-1), 0);
    tracef("reuse", "%s lost=%ld", lost == 0 ? "ok" : "fail", lost);
    return ck_finish();
}

/* -------------------------------------------------------------- fork_busy */

/* Two threads attach and detach without pause while the main thread forks
 * children that attach: whatever a thread holds at the moment of fork, the
 * child's calls must not block (the contract: fork never deadlocks the child). */
static volatile int busy_stop;

static void *
busy_main(void *arg)
{
    long t = (long)arg;
    watch(1 + (int)t);
    while (!busy_stop) {
        char *p = shmat(reuse_ids[t], NULL, t ? SHM_RDONLY : 0);
        if (p == (char *)-1) {
            FAIL("busy shmat: %s", ck_errname(errno));
            break;
        }
        if (shmdt(p) != 0) {
            FAIL("busy shmdt: %s", ck_errname(errno));
            break;
        }
        tick(1 + (int)t);
    }
    unwatch(1 + (int)t);
    return NULL;
}

static int
scenario_fork_busy(void)
{
    load_api();
    if (!FORK_WITH_THREADS) {
        printf("skip: fork_busy with ASan (its allocator is not fork-safe)\n");
        tracef("fork_busy", "ok skipped=1");
        return ck_finish();
    }
    reuse_ids[0] = ck_fixture(PAGE, 0600);
    reuse_ids[1] = ck_fixture(3 * PAGE, 0600);
    start_watchdog();
    pthread_t th[2];
    for (long t = 0; t < 2; t++)
        if (pthread_create(&th[t], NULL, busy_main, (void *)t) != 0) {
            FAIL("pthread_create");
            exit(1);
        }
    double end = now_s() + seconds;
    long forks = 0;
    while (now_s() < end) {
        main_phase = "fork";
        pid_t pid = ck_fork();
        if (pid == 0) {
            ck_child_defaults();
            char *p = shmat(reuse_ids[0], NULL, 0);
            if (p == (char *)-1 || shmdt(p) != 0)
                _exit(2);
            exit(0);
        }
        main_phase = "wait for a child";
        int code = wait_child(pid, "forked while two threads attach");
        forks++;
        if (code != 0) {
            if (code != -1000)
                FAIL("child %d ended with %d", (int)pid, code);
            break;
        }
        tick(0);
    }
    busy_stop = 1;
    for (int t = 0; t < 2; t++)
        pthread_join(th[t], NULL);
    stop_watchdog();
    printf("info: %ld children\n", forks);
    CHECK_EQ(maps_count(-1), 0);
    CHECK_EQ(api_leak_count(), 0);
    tracef("fork_busy", "%s forks=%d", ck_failures == 0 ? "ok" : "fail", forks > 0);
    return ck_finish();
}

/* ------------------------------------------------------------ log checks */

/* Runs this program with ARG and log_path in the per-run directory; the
 * child's stdout in OUT (malloc'd), its pid in *PID. Returns its code. */
static int
run_logged(const char *arg, char **out, pid_t *pid)
{
    char opts[512], logpath[256], outp[256], errp[256];
    snprintf(logpath, sizeof logpath, "log_path=%s/l.%%p.jsonl", ck_tmpdir());
    ck_options_plus(opts, sizeof opts, logpath);
    ck_tmp_name(outp, sizeof outp, "child.out");
    ck_tmp_name(errp, sizeof errp, "child.err");
    char *argv[] = {"x_stress", (char *)arg, NULL};
    /* ck_wait scales the timeout */
    int code = ck_run_self_timeout(argv, opts, outp, errp, pid, (int)(seconds * 1000) + 60000);
    *out = ck_slurp(outp);
    char *err = ck_slurp(errp);
    if (code != 0 || err == NULL || err[0] != '\0')
        FAIL("x_stress %s with %s ended with %d; its stderr:\n%s", arg, opts, code,
             err == NULL ? "(unreadable)" : err);
    free(err);
    if (*out == NULL) {
        FAIL("cannot read the child's stdout");
        *out = calloc(1, 1);
    }
    return code;
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

/* ---------------------------------------------------------------- signals */

static int sig_seg = -1;      /* the handlers' segment */
static size_t sig_size = 2 * PAGE + 7;
static int main_seg = -1;     /* the main loop's segment */
static size_t main_size = PAGE + 1;
/* The main thread is in a call into shmguard (a handler that interrupts it
 * gets the kernel's answer without bookkeeping, and no log event). */
static __thread volatile int in_call;
static long h_runs, h_inside, h_bad, h_calls, h_calls_outside;
static volatile int signals_on;
static char *h_last_addr;

static void
on_signal(int sig)
{
    (void)sig;
    int saved = errno;
    if (!signals_on) {
        errno = saved;
        return;
    }
    int inside = in_call;
    long run = __atomic_add_fetch(&h_runs, 1, __ATOMIC_RELAXED);
    int bad = 0;
    char *p = shmat(sig_seg, NULL, (run & 1) ? SHM_RDONLY : 0);
    if (p == (char *)-1) {
        bad = 1;
    } else {
        h_last_addr = p;
        if (p[0] != MAGIC)
            bad = 1;
        if (shmdt(p) != 0)
            bad = 1;
    }
    /* failures: the kernel's errno */
    errno = 0;
    void *q = shmat(-1, NULL, 0);
    int e = errno;
    if (q != (void *)-1 || e != EINVAL || raw_shmat(-1, NULL, 0) != (void *)-1 || errno != e)
        bad = 1;
    errno = 0;
    int d = shmdt(&run);
    e = errno;
    if (d != -1 || e != EINVAL || raw_shmdt(&run) != -1 || errno != e)
        bad = 1;
    __atomic_add_fetch(&h_calls, 4, __ATOMIC_RELAXED);
    if (!inside)
        __atomic_add_fetch(&h_calls_outside, 4, __ATOMIC_RELAXED);
    if (inside)
        __atomic_add_fetch(&h_inside, 1, __ATOMIC_RELAXED);
    if (bad)
        __atomic_add_fetch(&h_bad, 1, __ATOMIC_RELAXED);
    errno = saved;
}

static pthread_t main_thread, signaller;
static volatile int stop_signaller;

static void *
signaller_main(void *arg)
{
    (void)arg;
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    while (!stop_signaller) {
        pthread_kill(main_thread, SIGUSR1);
        sleep_us(150);
    }
    return NULL;
}

/* Handlers, the timer and the signaller; the signals reach the main thread
 * only (the other threads block them). */
static void
start_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* one handler at a time: "inside" then means inside the main loop */
    sigaddset(&sa.sa_mask, SIGALRM);
    sigaddset(&sa.sa_mask, SIGUSR1);
    sa.sa_flags = 0; /* SIGALRM interrupts */
    sigaction(SIGALRM, &sa, NULL);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    alarm(0);
    main_thread = pthread_self();
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGALRM);
    sigaddset(&block, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    if (pthread_create(&signaller, NULL, signaller_main, NULL) != 0) {
        FAIL("pthread_create");
        exit(1);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    signals_on = 1;
    struct itimerval it = {{0, 200}, {0, 200}};
    setitimer(ITIMER_REAL, &it, NULL);
}

static void
stop_signals(void)
{
    struct itimerval off;
    memset(&off, 0, sizeof off);
    setitimer(ITIMER_REAL, &off, NULL);
    stop_signaller = 1;
    pthread_join(signaller, NULL);
    signals_on = 0;
}

/* Segments for the handlers and the main loop, made through shmguard (so
 * that both are created segments it accounts for). */
static void
signal_segments(void)
{
    sig_seg = ck_shmget(IPC_PRIVATE, sig_size, IPC_CREAT | 0600);
    main_seg = ck_shmget(IPC_PRIVATE, main_size, IPC_CREAT | 0600);
    if (sig_seg < 0 || main_seg < 0) {
        FAIL("shmget: %s", ck_errname(errno));
        exit(1);
    }
    char *p = shmat(sig_seg, NULL, 0);
    CHECK(p != (char *)-1);
    p[0] = MAGIC;
    CHECK_EQ(shmdt(p), 0);
}

/* The loop's one temporary segment, removed by the cleanup hook if the
 * program dies between its shmget and its IPC_RMID. */
#define TEMP_SLOT (WORKERS * SLOTS)

/* One round of the main loop: LOOP_CALLS calls, each checked. */
#define LOOP_CALLS 8
static long loop_bad;

static void
loop_once(void)
{
    struct shmid_ds ds;
    int bad = 0;
    errno = 0;
    in_call = 1;
    char *p = shmat(main_seg, NULL, 0);
    in_call = 0;
    int e = errno;
    if (p == (char *)-1) {
        FAIL("loop shmat: %s", ck_errname(e));
        loop_bad++;
        return;
    }
    if (e != 0)
        bad = 1; /* errno is left alone on success */
    p[0] = 1;
    /* shmguard's extensions enter it too: a handler then bypasses it */
    in_call = 1;
    ssize_t sz = api_size(p);
    in_call = 0;
    if (sz != (ssize_t)main_size)
        bad = 2;
    in_call = 1;
    int r = shmctl(main_seg, IPC_STAT, &ds);
    in_call = 0;
    if (r != 0 || ds.shm_nattch != 1 || ds.shm_segsz != main_size)
        bad = 3;
    in_call = 1;
    r = shmdt(p);
    in_call = 0;
    if (r != 0)
        bad = 4;
    in_call = 1;
    sz = api_size(p);
    in_call = 0;
    if (sz != -1)
        bad = 5;
    errno = 0;
    in_call = 1;
    r = shmdt(p);
    in_call = 0;
    e = errno;
    if (r != -1 || e != EINVAL || raw_shmdt(p) != -1 || errno != e)
        bad = 6;
    errno = 0;
    in_call = 1;
    r = shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600);
    in_call = 0;
    e = errno;
    if (r != -1 || e != EINVAL || raw_shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600) != -1 ||
        errno != e)
        bad = 7;
    in_call = 1;
    int id = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
    in_call = 0;
    if (id < 0) {
        bad = 8;
    } else {
        __atomic_store_n(&live_ids[TEMP_SLOT], id + 1, __ATOMIC_SEQ_CST);
        in_call = 1;
        r = shmctl(id, IPC_RMID, NULL);
        in_call = 0;
        if (r != 0)
            bad = 9;
        else
            __atomic_store_n(&live_ids[TEMP_SLOT], 0, __ATOMIC_SEQ_CST);
    }
    errno = 0;
    in_call = 1;
    void *q = shmat(-1, NULL, 0);
    in_call = 0;
    e = errno;
    if (q != (void *)-1 || e != EINVAL)
        bad = 10;
    if (bad != 0) {
        if (loop_bad++ < 5)
            FAIL("main loop: check %d failed", bad);
    }
}

/* After the signals: the books hold exactly the two created segments. */
static void
check_after_signals(void)
{
    CHECK_EQ(loop_bad, 0);
    CHECK_EQ(h_bad, 0);
    CHECK_EQ(ck_nattch(sig_seg), 0);
    CHECK_EQ(ck_nattch(main_seg), 0);
    CHECK_EQ(maps_count(-1), 0);
    if (h_last_addr != NULL)
        CHECK_EQ(api_size(h_last_addr), -1);
    size_t leaks = api_leak_count();
    CHECK_EQ(leaks, 2); /* sig_seg and main_seg, never marked yet */
    CHECK_EQ(shmctl(sig_seg, IPC_RMID, NULL), 0);
    CHECK_EQ(shmctl(main_seg, IPC_RMID, NULL), 0);
    CHECK_EQ(api_leak_count(), 0);
    tracef("accounting", "ok leaks_before_rmid=%zu", leaks);
}

static int
scenario_signals(void)
{
    load_api();
    signal_segments();
    start_watchdog();
    start_signals();
    double end = now_s() + seconds;
    long rounds = 0;
    main_phase = "shm calls under signals";
    while (now_s() < end) {
        loop_once();
        rounds++;
        tick(0);
    }
    stop_signals();
    stop_watchdog();
    printf("info: %ld rounds, %ld signals handled, %ld of them during a shm call\n", rounds,
           h_runs, h_inside);
    if (h_runs < 100 || h_inside < 1)
        FAIL("too few signals to test anything: %ld handled, %ld during a call", h_runs,
             h_inside);
    tracef("signals", "ok bad_rounds=%ld bad_handlers=%ld", loop_bad, h_bad);
    check_after_signals();
    /* the log counts: the main loop's calls and the handlers' */
    /* setup: 2 shmget, shmat, shmdt; the end: 2 IPC_RMID */
    printf("calls %d %ld %ld %ld\n", (int)getpid(), rounds * LOOP_CALLS + 6, h_calls,
           h_calls_outside);
    return ck_finish();
}

static int
scenario_signals_log(void)
{
    char *out;
    pid_t pid;
    run_logged("signals", &out, &pid);
    struct ck_log *logs;
    int n = ck_logs_read(ck_tmpdir(), "l.", &logs);
    int p = 0;
    long main_calls_made = -1, handler = 0, outside = 0;
    const char *at = strstr(out, "calls ");
    if (at == NULL ||
        sscanf(at, "calls %d %ld %ld %ld", &p, &main_calls_made, &handler, &outside) != 4) {
        FAIL("no 'calls' line from the child");
    } else {
        struct ck_log *log = ck_log_of(logs, n, p);
        CHECK_EQ(n, 1);
        if (log == NULL) {
            FAIL("no log for pid %d", p);
        } else {
            ck_log_whole("signals", log, 1);
            long logged = ck_log_calls(log);
            /* A handler's calls are logged unless they interrupted one of
             * shmguard's own calls. */
            if (logged < main_calls_made + outside || logged > main_calls_made + handler)
                FAIL("%ld call events; the main thread made %ld calls and the handlers %ld "
                     "(%ld of them outside any shm call)",
                     logged, main_calls_made, handler, outside);
        }
    }
    tracef("signals_log", "ok counted=%d", p != 0);
    free(logs);
    free(out);
    return ck_finish();
}

/* The handlers fire while the main thread forks: shmguard's fork handlers
 * hold its locks between prepare and parent, which a handler's shmat must
 * not wait for. */
static int
scenario_signals_fork(void)
{
    load_api();
    signal_segments();
    start_watchdog();
    start_signals();
    double end = now_s() + seconds;
    long forks = 0, bad_children = 0;
    while (now_s() < end) {
        main_phase = "fork";
        pid_t pid = fork();
        if (pid == 0) {
            ck_child_of_threads(); /* the signaller runs in the parent */
            signals_on = 0;
            /* an alarm that kills: no child outlives a stuck parent */
            signal(SIGALRM, SIG_DFL);
            ck_child_defaults();
            char *p = shmat(main_seg, NULL, 0);
            if (p == (char *)-1)
                _exit(2);
            if (shmdt(p) != 0)
                _exit(3);
            exit(0);
        }
        if (pid < 0) {
            FAIL("fork: %s", ck_errname(errno));
            break;
        }
        main_phase = "wait for a child";
        int code = wait_child(pid, "forked under signals");
        if (code != 0 && bad_children++ < 5)
            FAIL("child %d ended with %d", (int)pid, code);
        if (code == -1000)
            break;
        forks++;
        main_phase = "shm calls under signals";
        loop_once();
        tick(0);
    }
    stop_signals();
    stop_watchdog();
    printf("info: %ld forks, %ld signals handled, %ld of them during a shm call\n", forks,
           h_runs, h_inside);
    tracef("signals_fork", "ok forks=%d", forks > 0);
    check_after_signals();
    return ck_finish();
}

/* ---------------------------------------------------------------- exec_log */

/* With log_path: a child attaches and detaches (4 calls), then execs this
 * program ("exec_log_image"), which makes 2 more. The pid keeps one log
 * name across exec; all 6 events must be somewhere. */
static int
scenario_exec_log_child(void)
{
    int id = ck_shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
    CHECK(id >= 0);
    pid_t pid = ck_fork();
    if (pid == 0) {
        char *p = shmat(id, NULL, 0);
        if (p == (char *)-1 || shmdt(p) != 0)
            _exit(2);
        int own = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
        if (own < 0)
            _exit(3);
        if (shmctl(own, IPC_RMID, NULL) != 0) {
            raw_shmctl(own, IPC_RMID, NULL);
            _exit(4);
        }
        char *argv[] = {"x_stress", "exec_log_image", NULL};
        execv(ck_self_exe(), argv);
        _exit(5);
    }
    int code = wait_child(pid, "calls, then execs");
    CHECK_EQ(code, 0);
    printf("exec_child %d\n", (int)pid);
    CHECK_EQ(shmctl(id, IPC_RMID, NULL), 0);
    tracef("exec_log_child", "ok code=%d", code);
    return ck_finish();
}

static int
scenario_exec_log_image(void)
{
    int own = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
    if (own < 0)
        return 6;
    if (shmctl(own, IPC_RMID, NULL) != 0) {
        raw_shmctl(own, IPC_RMID, NULL);
        return 7;
    }
    return 0;
}

static int
scenario_exec_log(void)
{
    char *out;
    pid_t pid;
    run_logged("exec_log_child", &out, &pid);
    struct ck_log *logs;
    int n = ck_logs_read(ck_tmpdir(), "l.", &logs);
    int child = 0;
    const char *at = strstr(out, "exec_child ");
    if (at == NULL || sscanf(at, "exec_child %d", &child) != 1) {
        FAIL("no 'exec_child' line from the child");
    } else {
        long before[4] = {1, 1, 1, 1}, after[4] = {1, 0, 0, 1};
        long want = 0, got = 0;
        for (int c = 0; c < 4; c++)
            want += before[c] + after[c];
        for (int i = 0; i < n; i++) {
            if (logs[i].pid != child)
                continue;
            /* whatever form a log across exec takes, every line is JSON */
            if (logs[i].bad != 0)
                FAIL("log %s: %d lines are not JSON, first: %s", logs[i].name, logs[i].bad,
                     logs[i].bad_line);
            got += ck_log_calls(&logs[i]);
        }
        if (got != want)
            FAIL("pid %d made %ld calls (4 before exec, 2 after), its logs hold %ld call "
                 "events: the image after exec reopened the log with O_TRUNC and lost the "
                 "events of the image before it",
                 child, want, got);
        tracef("exec_log", "ok events=%ld of %ld", got, want);
    }
    free(logs);
    free(out);
    return ck_finish();
}

/* ------------------------------------------------------------------- main */

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: x_stress SCENARIO\n");
        return 2;
    }
    char scenario[64];
    snprintf(scenario, sizeof scenario, "%s", argv[1]);
    char *plus = strchr(scenario, '+');
    if (plus != NULL)
        *plus = '\0';
    if (strcmp(scenario, "exec_child") == 0) {
        ck_init();
        return scenario_exec_child(argc, argv);
    }
    if (strcmp(scenario, "exec_log_image") == 0) {
        ck_init();
        return scenario_exec_log_image();
    }
    const char *s = getenv("SHMGUARD_STRESS_SECONDS");
    if (s != NULL && atof(s) > 0)
        seconds = atof(s);
    scale = ck_scale();
    ck_init();
    ck_cleanup_hook = remove_live;
    /* the watchdog catches deadlocks; this is the last resort */
    alarm((unsigned)seconds + 50 * (unsigned)scale);
    tracef("scenario", "ok name=%s", argv[1]);
    if (strcmp(scenario, "churn") == 0)
        return scenario_churn();
    if (strcmp(scenario, "churn_log") == 0)
        return scenario_churn_log();
    if (strcmp(scenario, "signals") == 0)
        return scenario_signals();
    if (strcmp(scenario, "signals_log") == 0)
        return scenario_signals_log();
    if (strcmp(scenario, "signals_fork") == 0)
        return scenario_signals_fork();
    if (strcmp(scenario, "exec_log") == 0)
        return scenario_exec_log();
    if (strcmp(scenario, "reuse") == 0)
        return scenario_reuse();
    if (strcmp(scenario, "fork_busy") == 0)
        return scenario_fork_busy();
    if (strcmp(scenario, "exec_log_child") == 0)
        return scenario_exec_log_child();
    fprintf(stderr, "x_stress: unknown scenario %s\n", argv[1]);
    return 2;
}
