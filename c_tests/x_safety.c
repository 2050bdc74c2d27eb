/* x_safety.c SCENARIO: shmguard never changes how a program dies, never
 * deadlocks its own signal handlers, and its guard pages never cost the
 * program a mapping it could have had.
 *
 *   segv_raise    (guard_pages=1) raise(SIGSEGV) in a child kills it with
 *                 SIGSEGV, as without shmguard.
 *   segv_kill     (guard_pages=1) kill(child, SIGSEGV) kills a child that
 *                 made shm calls, and (preloaded) a preloaded sleep(1).
 *   segv_siginfo  (guard_pages=1) a program whose SA_SIGINFO handler was
 *                 installed before shmguard's (from .preinit_array) sees it
 *                 called with the right siginfo: for sigqueue (SI_QUEUE, its
 *                 value) and for a real fault (SEGV_ACCERR, the address),
 *                 from which it recovers.
 *   segv_ign      (guard_pages=1) SIGSEGV ignored when the program starts
 *                 (inherited SIG_IGN): raise(SIGSEGV) is ignored, a real
 *                 fault still kills with SIGSEGV.
 *   ext_in_handler  a signal handler calls every extension function while
 *                 the interrupted thread loops on shmat/shmdt: each returns
 *                 a valid answer or -1 ((size_t)-1) with EAGAIN, and never
 *                 deadlocks (an alarm kills a child that hangs).
 *   guard_unmapped  (guard_pages=1) attachments removed behind shmguard's
 *                 back (munmap, raw shmdt) in a loop: their guard pages are
 *                 released, /proc/self/maps does not grow.
 *   guard_map_count (guard_pages=1) with few free mapping slots, as many
 *                 attachments succeed as with the raw system call (guards
 *                 are given up, one warning); with many, guards never take
 *                 more than a quarter of vm.max_map_count.
 *   raw_fork      a child made by _Fork() and one made by a raw
 *                 clone(SIGCHLD) (no fork handlers ran) report none of the
 *                 parent's leaks at exit and count none.
 *
 * The other names are the children the scenarios run (ck_run_self). */
#include "check.h"

#include <sched.h>
#include <time.h>

#define PAGE 4096UL

/* ----------------------------------------------------------------- helpers */

/* Lines of /proc/self/maps, read with read(2) into a static buffer. */
static long
maps_lines(void)
{
    static char buf[1 << 16];
    long n = 0;
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        FAIL("cannot open /proc/self/maps");
        return -1;
    }
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < r; i++)
            n += buf[i] == '\n';
    close(fd);
    return n;
}

/* A SIGSEGV handler of shmguard's is installed (in the linked and preloaded
 * modes; the runners only run this program there). */
static int
shmguard_handler_installed(void)
{
    struct sigaction sa;
    sigaction(SIGSEGV, NULL, &sa);
    Dl_info info;
    memset(&info, 0, sizeof info);
    void *h = (sa.sa_flags & SA_SIGINFO) ? (void *)sa.sa_sigaction : (void *)sa.sa_handler;
    return h != NULL && dladdr(h, &info) != 0 && info.dli_fname != NULL &&
           strstr(info.dli_fname, "libshmguard") != NULL;
}

/* One create, attach, detach and remove: shmguard is active. */
static void
touch_shm(void)
{
    int id = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
    if (id < 0) {
        FAIL("shmget: %s", ck_errname(errno));
        return;
    }
    ck_track(id);
    void *p = shmat(id, NULL, 0);
    if (p != (void *)-1)
        shmdt(p);
    shmctl(id, IPC_RMID, NULL);
}

static const char *
describe(int code)
{
    static char buf[64];
    if (code == -1000)
        snprintf(buf, sizeof buf, "timed out");
    else if (code < 0)
        snprintf(buf, sizeof buf, "killed by signal %d", -code);
    else
        snprintf(buf, sizeof buf, "exit status %d", code);
    return buf;
}

/* -------------------------------------------------------------- SIGSEGV */

static int
scenario_segv_raise(void)
{
    pid_t pid = ck_fork();
    if (pid == 0) {
        ck_child_start_signals();
        touch_shm();
        raise(SIGSEGV);
        _exit(0); /* swallowed */
    }
    int code = ck_child_code(pid, 10000);
    if (code != -SIGSEGV)
        FAIL("raise(SIGSEGV): the child ended with %s, not killed by SIGSEGV", describe(code));
    tracef("segv_raise", "ok");
    return ck_finish();
}

/* Kills PID with SIGSEGV once it wrote a byte to FD (or at once if FD < 0)
 * and checks that it died of it. */
static void
kill_segv(const char *what, pid_t pid, int fd)
{
    char c;
    if (fd >= 0 && read(fd, &c, 1) != 1)
        FAIL("%s: no ready byte", what);
    kill(pid, SIGSEGV);
    int code = ck_child_code(pid, 10000);
    if (code != -SIGSEGV)
        FAIL("%s: kill -SEGV: %s, not killed by SIGSEGV", what, describe(code));
}

static int
scenario_segv_kill(void)
{
    int p[2];
    CHECK_EQ(pipe(p), 0);
    pid_t pid = ck_fork();
    if (pid == 0) {
        ck_child_start_signals();
        touch_shm();
        if (write(p[1], "r", 1) != 1)
            _exit(3);
        for (;;)
            pause();
    }
    kill_segv("a child that made shm calls", pid, p[0]);
    close(p[0]);
    close(p[1]);
    const char *preload = getenv("LD_PRELOAD");
    if (preload != NULL && strstr(preload, "libshmguard") != NULL) {
        /* a preloaded sleep: shmguard's constructor installed its handler */
        pid = ck_fork();
        if (pid == 0) {
            signal(SIGSEGV, SIG_DFL);
            prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
            /* libshmguard alone: not a sanitizer's runtime preloaded first
             * (sleep is not built for it) */
            char only[4096];
            snprintf(only, sizeof only, "%s", preload);
            char *lib = strstr(only, "libshmguard");
            if (lib != NULL) {
                char *end = strchr(lib, ':');
                if (end != NULL)
                    *end = '\0';
                char *start = lib;
                while (start > only && start[-1] != ':')
                    start--;
                setenv("LD_PRELOAD", start, 1);
            }
            execlp("sleep", "sleep", "20", (char *)NULL);
            _exit(99);
        }
        /* until the loader has run shmguard's constructor */
        char path[64], *maps = NULL;
        snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
        for (int i = 0; i < 500; i++) {
            free(maps);
            maps = ck_slurp(path);
            if (maps != NULL && strstr(maps, "libshmguard") != NULL && strstr(maps, "sleep"))
                break;
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        free(maps);
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        kill_segv("a preloaded sleep", pid, -1);
    }
    tracef("segv_kill", "ok");
    return ck_finish();
}

/* The child of segv_siginfo: its handler was installed from .preinit_array,
 * before any constructor (shmguard's included). */
static volatile sig_atomic_t seen_code, seen_value, seen_sig, seen_calls;
static void *volatile seen_addr;
static char *volatile fault_page;

static void
preinit_handler(int sig, siginfo_t *info, void *ctx)
{
    (void)ctx;
    seen_calls++;
    seen_sig = sig;
    seen_code = info->si_code;
    seen_value = info->si_value.sival_int;
    seen_addr = info->si_addr;
    if (info->si_code > 0 && fault_page != NULL &&
        (char *)info->si_addr >= fault_page && (char *)info->si_addr < fault_page + PAGE)
        mprotect(fault_page, PAGE, PROT_READ | PROT_WRITE); /* the write then succeeds */
}

static int preinit_armed;

static void
preinit(int argc, char **argv, char **envp)
{
    (void)envp;
    if (argc >= 2 && strcmp(argv[1], "siginfo_child") == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = preinit_handler;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        preinit_armed = sigaction(SIGSEGV, &sa, NULL) == 0;
    }
}

__attribute__((used, section(".preinit_array"))) static void (*const preinit_entry)(
    int, char **, char **) = preinit;

static int
scenario_siginfo_child(void)
{
    if (!preinit_armed) {
        fprintf(stderr, "the .preinit_array handler was not installed\n");
        return 3;
    }
    touch_shm();
    if (!shmguard_handler_installed()) {
        fprintf(stderr, "shmguard's SIGSEGV handler is not installed over ours\n");
        return 4;
    }
    union sigval v = {.sival_int = 4242};
    if (sigqueue(getpid(), SIGSEGV, v) != 0)
        return 5;
    if (seen_calls != 1 || seen_sig != SIGSEGV || seen_code != SI_QUEUE || seen_value != 4242) {
        fprintf(stderr, "sigqueue: handler calls %d, sig %d, si_code %d, value %d\n",
                (int)seen_calls, (int)seen_sig, (int)seen_code, (int)seen_value);
        return 6;
    }
    fault_page = mmap(NULL, PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (fault_page == MAP_FAILED)
        return 7;
    fault_page[10] = 1; /* faults once; the handler makes it writable */
    if (seen_calls != 2 || seen_code != SEGV_ACCERR || seen_addr != fault_page + 10 ||
        fault_page[10] != 1) {
        fprintf(stderr, "fault: handler calls %d, si_code %d, si_addr %p (want %p)\n",
                (int)seen_calls, (int)seen_code, seen_addr, (void *)(fault_page + 10));
        return 8;
    }
    return 0;
}

/* Runs this program again as CHILD with argument ARG (or none if NULL);
 * its exit code, its stderr in ERR. */
static int
run_child(const char *child, const char *arg, char *err, size_t errlen)
{
    char out[256], errpath[256];
    ck_tmp_name(out, sizeof out, "child.out");
    ck_tmp_name(errpath, sizeof errpath, "child.err");
    char *argv[] = {(char *)"x_safety", (char *)child, (char *)arg, NULL};
    int code = ck_run_self(argv, getenv("SHMGUARD_OPTIONS"), out, errpath, NULL);
    char *text = ck_slurp(errpath);
    snprintf(err, errlen, "%s", text == NULL ? "" : text);
    free(text);
    return code;
}

static int
scenario_segv_siginfo(void)
{
    char err[4096];
    int code = run_child("siginfo_child", NULL, err, sizeof err);
    if (code != 0)
        FAIL("the program's own SA_SIGINFO handler: %s\n%s", describe(code), err);
    tracef("segv_siginfo", "ok");
    return ck_finish();
}

static int
scenario_ign_child(int fault)
{
    touch_shm();
    if (!shmguard_handler_installed()) {
        fprintf(stderr, "shmguard's SIGSEGV handler is not installed\n");
        return 4;
    }
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (fault) {
        char *p = mmap(NULL, PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return 7;
        *(volatile char *)p = 1;
        return 5; /* survived a fault */
    }
    raise(SIGSEGV);
    kill(getpid(), SIGSEGV);
    return 0;
}

static int
scenario_segv_ign(void)
{
    char err[4096];
    struct sigaction old, ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigaction(SIGSEGV, &ign, &old);
    int sent = run_child("ign_child", NULL, err, sizeof err);
    int fault = run_child("ign_fault_child", NULL, err + strlen(err), sizeof err - strlen(err));
    sigaction(SIGSEGV, &old, NULL);
    if (sent != 0)
        FAIL("SIG_IGN, raise(SIGSEGV): %s\n%s", describe(sent), err);
    if (fault != -SIGSEGV)
        FAIL("SIG_IGN, a real fault: %s, not killed by SIGSEGV\n%s", describe(fault), err);
    tracef("segv_ign", "ok");
    return ck_finish();
}

/* ----------------------------------------------- extension functions */

static size_t (*api_leak_count)(void);
static int (*api_leak_report)(int);
static ssize_t (*api_attachment_size)(const void *);
static int (*api_copy_to)(void *, size_t, const void *, size_t);
static int (*api_copy_from)(const void *, size_t, void *, size_t);
static const char *(*api_version)(void);
static const char *(*api_last_error)(void);

static void *volatile handler_addr;
static int devnull = -1;
static volatile sig_atomic_t calls, busy, wrong;

static void
on_tick(int sig)
{
    (void)sig;
    int saved = errno;
    void *addr = handler_addr;
    char byte = 0;
    calls++;
    errno = 0;
    size_t n = api_leak_count();
    if (n == (size_t)-1) {
        busy++;
        if (errno != EAGAIN)
            wrong++;
    } else if (n > 1) {
        wrong++; /* at most the one attachment the loop holds */
    }
    errno = 0;
    int r = api_leak_report(devnull);
    if (r == -1 ? errno != EAGAIN : (r != 0 && r != 1))
        wrong++;
    if (addr != NULL) {
        errno = 0;
        ssize_t s = api_attachment_size(addr);
        if (s == -1 ? (errno != EAGAIN && errno != EINVAL) : s != (ssize_t)PAGE)
            wrong++;
        errno = 0;
        r = api_copy_from(addr, 0, &byte, 1);
        if (r == -1 ? (errno != EAGAIN && errno != EINVAL) : r != 0)
            wrong++;
        errno = 0;
        r = api_copy_to(addr, 1, &byte, 1);
        if (r == -1 ? (errno != EAGAIN && errno != EINVAL) : r != 0)
            wrong++;
    }
    if (api_version() == NULL)
        wrong++;
    (void)api_last_error();
    errno = saved;
}

static int
scenario_ext_in_handler(void)
{
    *(void **)&api_leak_count = ck_sym("shmguard_leak_count");
    *(void **)&api_leak_report = ck_sym("shmguard_leak_report");
    *(void **)&api_attachment_size = ck_sym("shmguard_attachment_size");
    *(void **)&api_copy_to = ck_sym("shmguard_copy_to");
    *(void **)&api_copy_from = ck_sym("shmguard_copy_from");
    *(void **)&api_version = ck_sym("shmguard_version");
    *(void **)&api_last_error = ck_sym("shmguard_last_error");
    int id = ck_fixture(PAGE, 0600);
    pid_t pid = ck_fork();
    if (pid == 0) {
        ck_child_defaults();
        signal(SIGALRM, SIG_DFL);
        alarm(20 * (unsigned)ck_scale()); /* a deadlock ends here */
        devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_tick;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGUSR1, &sa, NULL);
        struct sigevent sev;
        memset(&sev, 0, sizeof sev);
        sev.sigev_notify = SIGEV_SIGNAL;
        sev.sigev_signo = SIGUSR1;
        timer_t timer;
        if (timer_create(CLOCK_MONOTONIC, &sev, &timer) != 0)
            _exit(3);
        struct itimerspec its = {{0, 200 * 1000}, {0, 200 * 1000}};
        if (timer_settime(timer, 0, &its, NULL) != 0)
            _exit(3);
        struct timespec start, now;
        clock_gettime(CLOCK_MONOTONIC, &start);
        long rounds = 0;
        for (;;) {
            void *p = shmat(id, NULL, 0);
            if (p == (void *)-1)
                _exit(4);
            handler_addr = p;
            if (shmdt(p) != 0)
                _exit(5);
            handler_addr = NULL;
            rounds++;
            clock_gettime(CLOCK_MONOTONIC, &now);
            double t = (double)(now.tv_sec - start.tv_sec) +
                       (double)(now.tv_nsec - start.tv_nsec) / 1e9;
            if (t > 4.0 || (t > 0.5 && busy >= 200))
                break;
        }
        timer_delete(timer);
        printf("info: %ld rounds, %d handler calls, %d found shmguard busy\n", rounds,
               (int)calls, (int)busy);
        fflush(stdout);
        _exit(wrong != 0 ? 6 : calls == 0 ? 7 : 0);
    }
    int code = ck_child_code(pid, 40000);
    if (code != 0)
        FAIL("extension functions in a signal handler: %s (6: a wrong answer, "
             "SIGALRM: a deadlock)",
             describe(code));
    tracef("ext_in_handler", "ok");
    return ck_finish();
}

/* ---------------------------------------------------------- guard pages */

static int
scenario_guard_unmapped(void)
{
    int id = ck_fixture(3 * PAGE, 0600);
    /* warm up, then the baseline */
    void *w = shmat(id, NULL, 0);
    CHECK(w != (void *)-1);
    CHECK_EQ(shmdt(w), 0);
    long before = maps_lines();
    for (int i = 0; i < 4000; i++) {
        char *p = shmat(id, NULL, 0);
        if (p == (void *)-1) {
            FAIL("shmat %d: %s", i, ck_errname(errno));
            break;
        }
        p[0] = 1;
        if (i & 1)
            CHECK_EQ(munmap(p, 3 * PAGE), 0);
        else
            CHECK_EQ(raw_shmdt(p), 0);
    }
    long after = maps_lines();
    if (after - before > 200)
        FAIL("/proc/self/maps grew from %ld to %ld lines over 4000 attachments removed "
             "behind shmguard's back: their guard pages stay",
             before, after);
    size_t (*leak_count)(void);
    *(void **)&leak_count = ck_sym("shmguard_leak_count");
    CHECK_EQ(leak_count(), 0);
    tracef("guard_unmapped", "ok");
    return ck_finish();
}

static char **fill;
static long nfill;

/* One-page mappings that never merge, until the kernel refuses or CAP. */
static long
exhaust(long cap)
{
    fill = malloc((size_t)cap * sizeof *fill);
    if (fill == NULL)
        return 0;
    nfill = 0;
    while (nfill < cap) {
        void *p = mmap(NULL, PAGE, (nfill & 1) ? PROT_READ : PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            break;
        fill[nfill++] = p;
    }
    return nfill;
}

static void
release_fill(long keep)
{
    while (nfill > keep)
        munmap(fill[--nfill], PAGE);
}

#define MAX_ATT 100000

/* Attaches ID until ENOMEM (at most MAX_ATT times), raw or through
 * shmguard; returns the count and detaches them all. */
static long
attach_all(int id, int raw)
{
    static void *at[MAX_ATT];
    long n = 0;
    while (n < MAX_ATT) {
        void *p = raw ? (void *)raw_shmat(id, NULL, 0) : shmat(id, NULL, 0);
        if (p == (void *)-1) {
            if (errno != ENOMEM)
                FAIL("shmat %ld (%s): %s", n, raw ? "raw" : "shmguard", ck_errname(errno));
            break;
        }
        at[n++] = p;
    }
    for (long i = 0; i < n; i++) {
        if (raw)
            raw_shmdt(at[i]);
        else
            shmdt(at[i]);
    }
    return n;
}

static int
scenario_map_count_child(int id)
{
    int rc = 0;
    /* warm up shmguard's first call */
    void *w = shmat(id, NULL, 0);
    if (w == (void *)-1 || shmdt(w) != 0)
        rc = 4;
    long max = (long)ck_proc_ull("/proc/sys/vm/max_map_count");
    /* 1. few free slots: as many attachments as the raw call gets */
    long got = exhaust(max + 16);
    release_fill(got - 600);
    long raw = attach_all(id, 1);
    long lib = attach_all(id, 0);
    long raw_again = attach_all(id, 1);
    release_fill(0);
    free(fill);
    printf("info: %ld free slots: raw %ld, shmguard %ld attachments, raw again %ld\n", 600L,
           raw, lib, raw_again);
    if (raw < 500 || lib < raw || raw_again != raw) {
        fprintf(stderr, "with 600 free slots: %ld attachments raw, %ld through shmguard, %ld raw "
                        "again\n",
                raw, lib, raw_again);
        rc = 5;
    }
    /* 2. many free slots: guards take at most a quarter of the map count */
    long n = max / 2;
    if (n > MAX_ATT)
        n = MAX_ATT;
    static void *at[MAX_ATT];
    long base = maps_lines(), made = 0;
    for (; made < n; made++) {
        at[made] = shmat(id, NULL, 0);
        if (at[made] == (void *)-1)
            break;
    }
    long lines = maps_lines();
    for (long i = 0; i < made; i++)
        shmdt(at[i]);
    printf("info: %ld attachments: %ld more mappings (vm.max_map_count %ld)\n", made,
           lines - base, max);
    if (made != n || lines - base > made + max / 4 + 64) {
        fprintf(stderr, "%ld of %ld attachments; they took %ld mappings, more than %ld + "
                        "max_map_count/4 (%ld)\n",
                made, n, lines - base, made, max / 4);
        rc = 6;
    }
    return rc;
}

static int
scenario_guard_map_count(void)
{
    char err[8192], arg[16];
    snprintf(arg, sizeof arg, "%d", ck_fixture(PAGE, 0600));
    int code = run_child("map_count_child", arg, err, sizeof err);
    if (code != 0)
        FAIL("map count: %s\n%s", describe(code), err);
    /* one warning when the guards are given up, nothing else */
    int lines = 0;
    for (const char *c = err; *c != '\0'; c++)
        lines += *c == '\n';
    int warnings = ck_count_lines(err, "warning: ", NULL);
    if (lines > 1 || warnings != lines || (lines == 1 && strstr(err, "guard") == NULL))
        FAIL("expected at most one warning about guard pages on stderr, got:\n%s", err);
    tracef("guard_map_count", "ok");
    return ck_finish();
}

/* ------------------------------------------------------------- raw fork */

static int
raw_fork_child(int leaks_expected)
{
    size_t (*leak_count)(void);
    *(void **)&leak_count = ck_sym("shmguard_leak_count");
    return leak_count() == (size_t)leaks_expected ? 0 : 3;
}

static int
scenario_raw_fork(void)
{
    /* leaks of the parent's own, removed before it exits */
    int id = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
    CHECK(id >= 0);
    ck_track(id);
    void *p = shmat(id, NULL, 0);
    CHECK(p != (void *)-1);
    ck_flush_all();
    for (int how = 0; how < 2; how++) {
        pid_t pid = how == 0 ? _Fork() : (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
        if (pid < 0) {
            FAIL("%s: %s", how == 0 ? "_Fork" : "clone", ck_errname(errno));
            continue;
        }
        if (pid == 0)
            exit(raw_fork_child(0)); /* exit: the check runs; stderr must stay empty */
        int code = ck_child_code(pid, 20000);
        if (code != 0)
            FAIL("a child made by %s: %s", how == 0 ? "_Fork()" : "clone(SIGCHLD)",
                 describe(code));
    }
    CHECK_EQ(shmdt(p), 0);
    CHECK_EQ(shmctl(id, IPC_RMID, NULL), 0);
    tracef("raw_fork", "ok");
    return ck_finish();
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: x_safety SCENARIO\n");
        return 2;
    }
    const char *s = argv[1];
    /* children first: no ck_init (its handlers would replace shmguard's) */
    if (strcmp(s, "siginfo_child") == 0)
        return scenario_siginfo_child();
    if (strcmp(s, "ign_child") == 0)
        return scenario_ign_child(0);
    if (strcmp(s, "ign_fault_child") == 0)
        return scenario_ign_child(1);
    if (strcmp(s, "map_count_child") == 0 && argc == 3)
        return scenario_map_count_child(atoi(argv[2]));
    ck_init();
    if (strcmp(s, "segv_raise") == 0)
        return scenario_segv_raise();
    if (strcmp(s, "segv_kill") == 0)
        return scenario_segv_kill();
    if (strcmp(s, "segv_siginfo") == 0)
        return scenario_segv_siginfo();
    if (strcmp(s, "segv_ign") == 0)
        return scenario_segv_ign();
    if (strcmp(s, "ext_in_handler") == 0)
        return scenario_ext_in_handler();
    if (strcmp(s, "guard_unmapped") == 0)
        return scenario_guard_unmapped();
    if (strcmp(s, "guard_map_count") == 0)
        return scenario_guard_map_count();
    if (strcmp(s, "raw_fork") == 0)
        return scenario_raw_fork();
    fprintf(stderr, "unknown scenario %s\n", s);
    return 2;
}
