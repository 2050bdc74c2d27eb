/* x_stress_signals.c SCENARIO: shmguard's calls from signal handlers
 * (stress.h: phases, deadlock detection, cleanup).
 *
 *   signals       SIGALRM (setitimer, every 200 us) and SIGUSR1 (pthread_kill
 *                 every 150 us) handlers that call shmat/shmdt, while the main thread
 *                 loops on shm calls: no deadlock, every result the kernel's,
 *                 the accounting intact.
 *   signals_log   signals with log_path: the main thread's calls all logged,
 *                 the handlers' ones too unless they interrupted a call.
 *   signals_fork  the same handlers while the main thread forks. */
#include "stress.h"

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

int
main(int argc, char **argv)
{
    static const struct stress_scenario scenarios[] = {
        {"signals", scenario_signals, 0},
        {"signals_log", scenario_signals_log, 0},
        {"signals_fork", scenario_signals_fork, 0},
        {NULL, NULL, 0},
    };
    return stress_main(argc, argv, "x_stress_signals", scenarios);
}
