/* stress.c: the watchdog, the live-segment table, child waits and the main
 * of the x_stress_*.c programs (stress.h). */
#include "stress.h"

static int scale = 1; /* ck_scale() */

double seconds = 1.0;
const char *stress_program = "x_stress";
int stress_argc;
char **stress_argv;

ssize_t (*api_size)(const void *);
size_t (*api_leak_count)(void);
int (*api_leak_report)(int);

void
load_api(void)
{
    *(void **)&api_size = ck_sym("shmguard_attachment_size");
    *(void **)&api_leak_count = ck_sym("shmguard_leak_count");
    *(void **)&api_leak_report = ck_sym("shmguard_leak_report");
}

double
now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

void
sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ------------------------------------------------------------ the watchdog */

static unsigned long progress[WATCHED];
static int active[WATCHED];
static pid_t thread_tid[WATCHED];
const char *volatile main_phase = "start";
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
                         "FAIL: %s.c: deadlock: the main thread made no progress for "
                         "%d s (phase %s), blocked in %s\n",
                         stress_program, STALL_MS * scale / 1000, main_phase, blocked);
            else
                snprintf(msg, sizeof msg,
                         "FAIL: %s.c: deadlock: worker %d made no progress for %d s, "
                         "blocked in %s\n",
                         stress_program, i, STALL_MS * scale / 1000, blocked);
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

void
watch(int i)
{
    thread_tid[i] = (pid_t)syscall(SYS_gettid);
    __atomic_store_n(&active[i], 1, __ATOMIC_RELAXED);
}

void
unwatch(int i)
{
    __atomic_store_n(&active[i], 0, __ATOMIC_RELAXED);
}

void
tick(int i)
{
    __atomic_add_fetch(&progress[i], 1, __ATOMIC_RELAXED);
}

static pthread_t watchdog_thread;

/* Starts the watchdog with every signal blocked in it. */
void
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

void
stop_watchdog(void)
{
    unwatch(0);
    watchdog_stop = 1;
    pthread_join(watchdog_thread, NULL);
}

/* ------------------------------------------------ segments of the threads */

int live_ids[WORKERS * SLOTS + 8];

void
remove_live(void)
{
    for (size_t i = 0; i < sizeof live_ids / sizeof live_ids[0]; i++) {
        int v = __atomic_exchange_n(&live_ids[i], 0, __ATOMIC_SEQ_CST);
        if (v != 0)
            syscall(SYS_shmctl, v - 1, IPC_RMID, 0);
    }
}


/* ------------------------------------------------------------- children */

int
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


int
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


int
run_logged(const char *arg, char **out, pid_t *pid)
{
    char opts[512], logpath[256], outp[256], errp[256];
    snprintf(logpath, sizeof logpath, "log_path=%s/l.%%p.jsonl", ck_tmpdir());
    ck_options_plus(opts, sizeof opts, logpath);
    ck_tmp_name(outp, sizeof outp, "child.out");
    ck_tmp_name(errp, sizeof errp, "child.err");
    char *argv[] = {(char *)stress_program, (char *)arg, NULL};
    /* ck_wait scales the timeout */
    int code = ck_run_self_timeout(argv, opts, outp, errp, pid, (int)(seconds * 1000) + 60000);
    *out = ck_slurp(outp);
    char *err = ck_slurp(errp);
    if (code != 0 || err == NULL || err[0] != '\0')
        FAIL("%s %s with %s ended with %d; its stderr:\n%s", stress_program, arg, opts, code,
             err == NULL ? "(unreadable)" : err);
    free(err);
    if (*out == NULL) {
        FAIL("cannot read the child's stdout");
        *out = calloc(1, 1);
    }
    return code;
}

/* ------------------------------------------------------------------- main */

int
stress_main(int argc, char **argv, const char *program,
            const struct stress_scenario *scenarios)
{
    stress_program = program;
    stress_argc = argc;
    stress_argv = argv;
    if (argc < 2) {
        fprintf(stderr, "usage: %s SCENARIO\n", program);
        return 2;
    }
    char scenario[64];
    snprintf(scenario, sizeof scenario, "%s", argv[1]);
    char *plus = strchr(scenario, '+');
    if (plus != NULL)
        *plus = '\0';
    for (const struct stress_scenario *sc = scenarios; sc->name != NULL; sc++)
        if (sc->bare && strcmp(scenario, sc->name) == 0) {
            ck_init();
            return sc->run();
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
    for (const struct stress_scenario *sc = scenarios; sc->name != NULL; sc++)
        if (!sc->bare && strcmp(scenario, sc->name) == 0)
            return sc->run();
    fprintf(stderr, "%s: unknown scenario %s\n", program, argv[1]);
    return 2;
}
