/*
 * driver: runs shmguard's benchmark (called by bench/run.sh) and prints the
 * results table with a PASS/MISS per target (docs/benchmarks.md).
 *
 *   driver KEY=VALUE...
 *     bin=DIR        shmbench.plain, shmbench.linked and tiny (required)
 *     lib=PATH       libshmguard.so to preload (required)
 *     out=DIR        raw results: samples.tsv (every sample of every phase),
 *                    results.md (the tables as printed), exit-report.txt,
 *                    tree-report.txt, report-1m.txt; the workers' stderr
 *                    in stderr/ (required)
 *     tmp=DIR        scratch: audit logs of the log variant, tree logs
 *                    (required; emptied of what the driver puts there)
 *     rounds=N       rounds of the per-call and live measures (default 15)
 *     budget=MS      ms of timed calls per measure and sample (default 20)
 *     strace=PATH    strace, or empty: no strace variant
 *     shmguard=PATH  the shmguard command, or empty: no run/report measures
 *     logs=DIR       the synthetic log set for `shmguard report` (or empty)
 *     log_events=N   how many events it holds (for the table)
 *     held=N         the largest count of live attachments (default 60000)
 *     exit_rounds=N  rounds of the exit-check measure (default 9)
 *     tree=N         processes in the `shmguard run` tree (default 1000)
 *     tree_rounds=N  rounds of the tree measure (default 3)
 *     report_rounds=N  runs of `shmguard report` (default 5; fewer when
 *                    they take over 20 s in all)
 *
 * Exit status: 0 all targets met, 1 a target missed, 3 a measure failed.
 *
 * Method. Every sample is a fresh process. The variants are interleaved:
 * each round runs every variant once (in an order rotated by one each
 * round), so a slow minute of the machine hits all variants alike. Per
 * measure and variant the driver keeps one sample per round and reports
 *   ns/op    the median ns/op over the rounds;
 *   x-proc   the median over rounds of the paired ratio
 *            ns/op(variant, round r) / ns/op(glibc, round r);
 *   in-proc  the median over rounds of the worker's own ratio, from short
 *            batches alternating the variant's calls with glibc's own
 *            functions in the same process (see shmbench.c);
 *   +ns      the median over rounds of the ns/op the variant adds to
 *            glibc in process;
 *   of-med   the ratio of the medians, median(variant) / median(glibc).
 * `glibc-again` is the plain program once more: its ratios are the noise
 * floor of the method (an A/A test). Targets are judged on in-proc where
 * it exists -- it is by far the steadiest, see docs/benchmarks.md -- and
 * on plain times otherwise; the table shows every estimate.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Measures that could not be taken (a worker failed, a command failed). */
static int failures;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Progress lines ("round 3/15") only on a terminal. */
static int progress_tty;

static void progress(const char *what, int done, long total)
{
    if (progress_tty)
        fprintf(stderr, "\rbench: %s %d/%ld", what, done, total);
}

static void progress_end(void)
{
    if (progress_tty)
        fprintf(stderr, "\n");
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "driver: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static char *xstrdup_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s;
    if (vasprintf(&s, fmt, ap) < 0)
        die("out of memory");
    va_end(ap);
    return s;
}

/* ------------------------------------------------------------ options */

static const char *opt_bin, *opt_lib, *opt_out, *opt_tmp;
static const char *opt_strace = "", *opt_shmguard = "", *opt_logs = "";
static long opt_rounds = 15, opt_budget = 20, opt_held = 60000, opt_exit_rounds = 9;
static long opt_tree = 1000, opt_tree_rounds = 3, opt_report_rounds = 5, opt_log_events = 0;

static void parse_options(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq)
            die("argument '%s' is not KEY=VALUE", argv[i]);
        *eq = 0;
        const char *k = argv[i], *v = eq + 1;
        if (!strcmp(k, "bin")) opt_bin = v;
        else if (!strcmp(k, "lib")) opt_lib = v;
        else if (!strcmp(k, "out")) opt_out = v;
        else if (!strcmp(k, "tmp")) opt_tmp = v;
        else if (!strcmp(k, "strace")) opt_strace = v;
        else if (!strcmp(k, "shmguard")) opt_shmguard = v;
        else if (!strcmp(k, "logs")) opt_logs = v;
        else if (!strcmp(k, "log_events")) opt_log_events = atol(v);
        else if (!strcmp(k, "rounds")) opt_rounds = atol(v);
        else if (!strcmp(k, "budget")) opt_budget = atol(v);
        else if (!strcmp(k, "held")) opt_held = atol(v);
        else if (!strcmp(k, "exit_rounds")) opt_exit_rounds = atol(v);
        else if (!strcmp(k, "tree")) opt_tree = atol(v);
        else if (!strcmp(k, "tree_rounds")) opt_tree_rounds = atol(v);
        else if (!strcmp(k, "report_rounds")) opt_report_rounds = atol(v);
        else die("unknown option %s", k);
    }
    if (!opt_bin || !opt_lib || !opt_out || !opt_tmp)
        die("bin=, lib=, out= and tmp= are required");
    if (opt_rounds < 1 || opt_budget < 1 || opt_exit_rounds < 1 || opt_tree_rounds < 1 ||
        opt_report_rounds < 1)
        die("counts must be positive");
}

/* --------------------------------------------------------- statistics */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Quantile q (0..1) of n values, by linear interpolation; NAN if none. */
static double quantile(const double *v, int n, double q)
{
    double tmp[1024];
    int m = 0;
    for (int i = 0; i < n && m < 1024; i++)
        if (!isnan(v[i]))
            tmp[m++] = v[i];
    if (m == 0)
        return NAN;
    qsort(tmp, (size_t)m, sizeof tmp[0], cmp_double);
    double pos = q * (m - 1);
    int lo = (int)pos;
    int hi = lo + 1 < m ? lo + 1 : lo;
    return tmp[lo] + (tmp[hi] - tmp[lo]) * (pos - lo);
}

static double median(const double *v, int n) { return quantile(v, n, 0.5); }

/* ------------------------------------------------------------ spawning */

/* The environment of a child: ours without LD_PRELOAD and SHMGUARD_*,
 * plus `extra` (NULL-terminated). */
static char **child_env(char *const *extra)
{
    size_t n = 0, k = 0;
    while (environ[n])
        n++;
    while (extra && extra[k])
        k++;
    char **env = calloc(n + k + 1, sizeof *env);
    if (!env)
        die("out of memory");
    size_t j = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "LD_PRELOAD=", 11) && strncmp(environ[i], "SHMGUARD_", 9))
            env[j++] = environ[i];
    for (size_t i = 0; i < k; i++)
        env[j++] = extra[i];
    env[j] = NULL;
    return env;
}

struct run {
    int status;       /* wait status, or -1 if it could not run */
    int timed_out;
    uint64_t t_start; /* before fork */
    uint64_t t_end;   /* after waitpid */
    char out[8192];   /* stdout (truncated) */
};

/* Runs argv (argv[0] a path) with environment env; stdout is captured,
 * stderr goes to errfd. Kills it after timeout_s seconds. */
static void run_cmd(char *const *argv, char *const *env, int errfd, int timeout_s, struct run *r)
{
    int pipefd[2];
    memset(r, 0, sizeof *r);
    r->status = -1;
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        die("pipe: %s", strerror(errno));
    r->t_start = now_ns();
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(pipefd[1], 1);
        if (errfd != 2)
            dup2(errfd, 2);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        execve(argv[0], argv, env);
        fprintf(stderr, "driver: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(pipefd[1]);
    size_t len = 0;
    uint64_t deadline = r->t_start + (uint64_t)timeout_s * 1000000000ULL;
    for (;;) {
        uint64_t t = now_ns();
        if (t >= deadline) {
            kill(pid, SIGKILL);
            r->timed_out = 1;
            break;
        }
        struct pollfd p = {pipefd[0], POLLIN, 0};
        int ms = (int)((deadline - t) / 1000000ULL) + 1;
        int rc = poll(&p, 1, ms);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            continue;
        char buf[4096];
        ssize_t got = read(pipefd[0], buf, sizeof buf);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        size_t room = sizeof r->out - 1 - len;
        size_t take = (size_t)got < room ? (size_t)got : room;
        memcpy(r->out + len, buf, take);
        len += take;
    }
    r->out[len] = 0;
    close(pipefd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            die("waitpid: %s", strerror(errno));
    r->t_end = now_ns();
    r->status = st;
}

static int ok_status(const struct run *r)
{
    return !r->timed_out && r->status >= 0 && WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0;
}

static const char *describe(const struct run *r)
{
    static char buf[64];
    if (r->timed_out)
        return "timed out";
    if (WIFSIGNALED(r->status))
        snprintf(buf, sizeof buf, "killed by signal %d", WTERMSIG(r->status));
    else
        snprintf(buf, sizeof buf, "exit status %d", WEXITSTATUS(r->status));
    return buf;
}

/* Removes the files of `dir` whose names begin with `prefix`. */
static void remove_files(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) {
            char *p = xstrdup_printf("%s/%s", dir, e->d_name);
            unlink(p);
            free(p);
        }
    closedir(d);
}

/* rm -rf of a directory we created, one level deep (the tree logs). */
static void remove_dir(const char *dir)
{
    remove_files(dir, "");
    rmdir(dir);
}

/* Bytes and files under dir whose names begin with prefix. */
static void count_files(const char *dir, const char *prefix, long *files, long long *bytes)
{
    *files = 0;
    *bytes = 0;
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) {
            char *p = xstrdup_printf("%s/%s", dir, e->d_name);
            struct stat st;
            if (stat(p, &st) == 0) {
                (*files)++;
                *bytes += st.st_size;
            }
            free(p);
        }
    closedir(d);
}

/* ------------------------------------------------------------ variants */

enum { BIN_PLAIN, BIN_LINKED };

struct variant {
    const char *name;
    const char *what;
    int bin;
    int preload;
    const char *options; /* SHMGUARD_OPTIONS, or NULL */
    int strace;
    int shmguard; /* expect libshmguard to serve the calls */
    int available;
    int errfd;
};

static struct variant variants[] = {
    {"glibc", "plain program, glibc's calls", BIN_PLAIN, 0, NULL, 0, 0, 1, -1},
    {"glibc-again", "the same once more (A/A control: noise floor)", BIN_PLAIN, 0, NULL, 0, 0, 1,
     -1},
    {"linked", "-lshmguard, default options", BIN_LINKED, 0, NULL, 0, 1, 1, -1},
    {"preload", "LD_PRELOAD, default options", BIN_PLAIN, 1, NULL, 0, 1, 1, -1},
    {"log", "LD_PRELOAD, log_path=TMP/b.%p.jsonl", BIN_PLAIN, 1, "log_path=%s/b.%%p.jsonl", 0, 1,
     1, -1},
    {"guard", "LD_PRELOAD, guard_pages=1", BIN_PLAIN, 1, "guard_pages=1", 0, 1, 1, -1},
    {"stacks", "LD_PRELOAD, stacks=1", BIN_PLAIN, 1, "stacks=1", 0, 1, 1, -1},
    {"strace", "strace -f -qq -e trace=%ipc -o /dev/null", BIN_PLAIN, 0, NULL, 1, 0, 1, -1},
};
enum { N_VARIANTS = sizeof variants / sizeof variants[0], V_GLIBC = 0, V_AGAIN = 1, V_LINKED = 2,
       V_LOG = 4, V_STRACE = 7 };

static const char *measure_names[] = {"attach_4k", "attach_1g", "ipc_stat", "get_rmid", "ftok",
                                      "threads4"};
static const char *measure_what[] = {
    "shmat+shmdt, 4 KiB segment", "shmat+shmdt, 1 GiB segment (SHM_NORESERVE)",
    "shmctl(IPC_STAT)",           "shmget(IPC_PRIVATE, 4 KiB)+shmctl(IPC_RMID)",
    "ftok(path, 'b')",            "4 threads, shmat+shmdt of own segments (wall ns/op)"};
enum { N_MEASURES = 6, M_THREADS = 5 };

enum { MAX_ROUNDS = 200 };

struct sample {
    double a_ns, b_ns, ab, added;
    long long ops;
};

/* micro[variant][measure][round] */
static struct sample micro[N_VARIANTS][N_MEASURES][MAX_ROUNDS];

static char *bin_path(int bin)
{
    return xstrdup_printf("%s/shmbench.%s", opt_bin, bin == BIN_LINKED ? "linked" : "plain");
}

/* The argv and env of a worker run for variant v with worker arguments
 * args (NULL-terminated); extra_options are appended to SHMGUARD_OPTIONS. */
static void worker_cmd(const struct variant *v, char *const *args, const char *extra_options,
                       char ***argv_out, char ***env_out)
{
    char **argv = calloc(32, sizeof *argv);
    char *extra[4] = {0};
    int n = 0, e = 0;
    if (!argv)
        die("out of memory");
    if (v->strace) {
        argv[n++] = (char *)opt_strace;
        argv[n++] = "-f";
        argv[n++] = "-qq";
        argv[n++] = "-e";
        argv[n++] = "trace=%ipc";
        argv[n++] = "-o";
        argv[n++] = "/dev/null";
    }
    argv[n++] = bin_path(v->bin);
    for (int i = 0; args[i]; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    if (v->preload)
        extra[e++] = xstrdup_printf("LD_PRELOAD=%s", opt_lib);
    char *opts = NULL;
    if (v->options)
        opts = xstrdup_printf(v->options, opt_tmp);
    if (extra_options)
        opts = opts ? xstrdup_printf("%s:%s", opts, extra_options) : xstrdup_printf("%s", extra_options);
    if (opts)
        extra[e++] = xstrdup_printf("SHMGUARD_OPTIONS=%s", opts);
    extra[e] = NULL;
    *argv_out = argv;
    *env_out = child_env(extra);
}

/* Checks the worker's "impl" line against what the variant expects. */
static int impl_ok(const struct variant *v, const char *out)
{
    const char *want = v->shmguard ? "impl libshmguard\n" : "impl libc\n";
    return strncmp(out, want, strlen(want)) == 0;
}

static FILE *samples_tsv;

/* One worker run in `phase` for variant v; parses "NAME A_NS OPS B_NS AB"
 * lines into the callback. Returns 0 on failure (reported). */
static int run_worker(const char *phase, int vi, char *const *args, const char *extra_options,
                      int errfd, struct run *r)
{
    struct variant *v = &variants[vi];
    char **argv, **env;
    worker_cmd(v, args, extra_options, &argv, &env);
    run_cmd(argv, env, errfd >= 0 ? errfd : v->errfd, 120, r);
    free(env);
    if (!ok_status(r)) {
        fprintf(stderr, "driver: %s: variant %s: worker %s (see %s/stderr/)\n", phase, v->name,
                describe(r), opt_out);
        failures++;
        return 0;
    }
    if (!impl_ok(v, r->out)) {
        fprintf(stderr, "driver: %s: variant %s: the calls were not served by %s: %.40s\n", phase,
                v->name, v->shmguard ? "libshmguard" : "glibc", r->out);
        failures++;
        return 0;
    }
    return 1;
}

static int parse_sample(const char *out, const char *name, struct sample *s)
{
    const char *p = out;
    size_t len = strlen(name);
    while (p && *p) {
        if (!strncmp(p, name, len) && p[len] == ' ') {
            if (sscanf(p + len, "%lf %lld %lf %lf %lf", &s->a_ns, &s->ops, &s->b_ns, &s->ab,
                       &s->added) == 5)
                return 1;
            return 0;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return 0;
}

/* ----------------------------------------------------- phase 1: micro */

static long log_files_seen, log_files_expected;
static long long log_bytes_seen;

static void phase_micro(void)
{
    char budget[32];
    snprintf(budget, sizeof budget, "%ld", opt_budget);
    char *args[] = {"micro", budget, (char *)opt_bin, NULL};
    for (int vi = 0; vi < N_VARIANTS; vi++)
        for (int m = 0; m < N_MEASURES; m++)
            for (int r = 0; r < MAX_ROUNDS; r++)
                micro[vi][m][r] = (struct sample){NAN, NAN, NAN, NAN, 0};
    fprintf(stderr, "bench: per-call measures, %ld rounds x %d variants\n", opt_rounds, N_VARIANTS);
    for (int r = 0; r < opt_rounds; r++) {
        for (int k = 0; k < N_VARIANTS; k++) {
            int vi = (k + r) % N_VARIANTS;
            if (!variants[vi].available)
                continue;
            struct run run;
            if (!run_worker("micro", vi, args, NULL, -1, &run))
                continue;
            for (int m = 0; m < N_MEASURES; m++) {
                struct sample s;
                if (!parse_sample(run.out, measure_names[m], &s)) {
                    fprintf(stderr, "driver: micro: variant %s: no %s line\n", variants[vi].name,
                            measure_names[m]);
                    failures++;
                    continue;
                }
                micro[vi][m][r] = s;
                fprintf(samples_tsv, "micro\t%d\t%s\t%s\t%.2f\t%lld\t%.2f\t%.4f\t%.2f\n", r,
                        variants[vi].name, measure_names[m], s.a_ns, s.ops, s.b_ns, s.ab,
                        s.added);
            }
            if (vi == V_LOG) {
                /* the log must have been written: one file per process */
                long files;
                long long bytes;
                count_files(opt_tmp, "b.", &files, &bytes);
                if (files == 0 || bytes == 0) {
                    /* a log variant that logs nothing would look cheap */
                    fprintf(stderr, "driver: micro: variant log wrote no log in %s\n", opt_tmp);
                    failures++;
                }
                log_files_expected++;
                log_files_seen += files;
                log_bytes_seen += bytes;
                remove_files(opt_tmp, "b.");
            }
        }
        progress("round", r + 1, opt_rounds);
    }
    progress_end();
    fflush(samples_tsv);
}

/* ------------------------------------------------------ phase 2: live */

enum { N_HELD = 3 };
static long held_counts[N_HELD] = {1, 1000, 60000};
/* live[held][0 = glibc, 1 = linked][round] */
static struct sample live[N_HELD][2][MAX_ROUNDS];

static void phase_live(void)
{
    char budget[32];
    snprintf(budget, sizeof budget, "%ld", opt_budget);
    held_counts[2] = opt_held;
    int vis[2] = {V_GLIBC, V_LINKED};
    fprintf(stderr, "bench: attach+detach with 1, 1000, %ld live attachments, %ld rounds\n",
            opt_held, opt_rounds);
    for (int h = 0; h < N_HELD; h++)
        for (int k = 0; k < 2; k++)
            for (int r = 0; r < MAX_ROUNDS; r++)
                live[h][k][r] = (struct sample){NAN, NAN, NAN, NAN, 0};
    for (int r = 0; r < opt_rounds; r++) {
        for (int h = 0; h < N_HELD; h++) {
            for (int j = 0; j < 2; j++) {
                int k = (j + r) % 2;
                char held[32];
                snprintf(held, sizeof held, "%ld", held_counts[h]);
                char *args[] = {"live", held, budget, NULL};
                struct run run;
                if (!run_worker("live", vis[k], args, NULL, -1, &run))
                    continue;
                struct sample s;
                if (!parse_sample(run.out, "live", &s))
                    continue;
                live[h][k][r] = s;
                fprintf(samples_tsv, "live%ld\t%d\t%s\tattach_4k\t%.2f\t%lld\t%.2f\t%.4f\t%.2f\n",
                        held_counts[h], r, variants[vis[k]].name, s.a_ns, s.ops, s.b_ns, s.ab,
                        s.added);
            }
        }
        progress("round", r + 1, opt_rounds);
    }
    progress_end();
    fflush(samples_tsv);
}

/* ------------------------------------------------------ phase 3: exit */

enum { EX_GLIBC, EX_OFF, EX_ON, N_EXIT };
static const char *exit_names[N_EXIT] = {"glibc", "linked leak_check=0", "linked leak_check=1"};
static double exit_ms[N_EXIT][MAX_ROUNDS];
static double count_ms[MAX_ROUNDS];
static long exit_reported = -1; /* leak lines of the checked run */
static long count_value = -1;

/* Runs `shmbench hold-exit N` and returns its exit time in ms: from its
 * last clock reading before returning from main to waitpid in the parent. */
static double exit_time(int which, int errfd)
{
    char n[32];
    snprintf(n, sizeof n, "%ld", opt_held);
    char *args[] = {"hold-exit", n, NULL};
    int vi = which == EX_GLIBC ? V_GLIBC : V_LINKED;
    const char *opts = which == EX_OFF ? "leak_check=0" : which == EX_ON ? "leak_check=1" : NULL;
    struct run run;
    if (!run_worker("exit", vi, args, opts, errfd, &run))
        return NAN;
    unsigned long long t0;
    const char *p = strstr(run.out, "t0 ");
    if (!p || sscanf(p, "t0 %llu", &t0) != 1)
        return NAN;
    return (double)(run.t_end - t0) / 1e6;
}

static void phase_exit(void)
{
    fprintf(stderr, "bench: exit with %ld live attachments, %ld rounds\n", opt_held,
            opt_exit_rounds);
    /* One unmeasured run whose report goes to a file: the check must find
     * every attachment (the measured runs send it to /dev/null). */
    char *path = xstrdup_printf("%s/exit-report.txt", opt_out);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        exit_time(EX_ON, fd);
        close(fd);
        FILE *f = fopen(path, "r");
        char line[512];
        exit_reported = 0;
        while (f && fgets(line, sizeof line, f))
            if (strstr(line, "shmguard: leak: attachment"))
                exit_reported++;
        if (f)
            fclose(f);
    }
    int devnull = open("/dev/null", O_WRONLY);
    for (int r = 0; r < opt_exit_rounds && r < MAX_ROUNDS; r++) {
        for (int k = 0; k < N_EXIT; k++) {
            int which = (k + r) % N_EXIT;
            exit_ms[which][r] = exit_time(which, devnull);
            fprintf(samples_tsv, "exit\t%d\t%s\t-\t%.3f\t-\t-\t-\t-\n", r, exit_names[which],
                    exit_ms[which][r]);
        }
        /* shmguard_leak_count() with the same records, in process */
        char n[32];
        snprintf(n, sizeof n, "%ld", opt_held);
        char *args[] = {"hold-count", n, NULL};
        struct run run;
        count_ms[r] = NAN;
        if (run_worker("exit", V_LINKED, args, NULL, -1, &run)) {
            unsigned long long ns;
            long c;
            const char *p = strstr(run.out, "leak_count ");
            if (p && sscanf(p, "leak_count %llu %ld", &ns, &c) == 2) {
                count_ms[r] = (double)ns / 1e6;
                count_value = c;
                fprintf(samples_tsv, "leak_count\t%d\tlinked\t-\t%.3f\t%ld\t-\t-\t-\n", r,
                        count_ms[r], c);
            }
        }
        progress("round", r + 1, opt_exit_rounds);
    }
    progress_end();
    close(devnull);
    fflush(samples_tsv);
}

/* ------------------------------------------- phase 4: shmguard run tree */

enum { TR_PLAIN, TR_PRELOAD, TR_RUN, N_TREE };
static const char *tree_names[N_TREE] = {"sh loop, no shmguard", "sh loop, LD_PRELOAD (no log)",
                                         "shmguard run -- sh loop"};
static double tree_s[N_TREE][MAX_ROUNDS];
static int have_shmguard;
static const char *shmguard_problem = "";

static void phase_tree(void)
{
    static const char *loop =
        "i=0; while [ \"$i\" -lt \"$1\" ]; do \"$0\" || exit 1; i=$((i+1)); done";
    char *tiny = xstrdup_printf("%s/tiny", opt_bin);
    char n[32];
    snprintf(n, sizeof n, "%ld", opt_tree);
    fprintf(stderr, "bench: a tree of %ld processes, %ld rounds\n", opt_tree, opt_tree_rounds);
    int devnull = open("/dev/null", O_WRONLY);
    for (int r = 0; r < opt_tree_rounds && r < MAX_ROUNDS; r++) {
        for (int k = 0; k < N_TREE; k++) {
            int which = (k + r) % N_TREE;
            tree_s[which][r] = NAN;
            if (which == TR_RUN && !have_shmguard)
                continue;
            char *logdir = xstrdup_printf("%s/tree.%d", opt_tmp, r);
            char *report = xstrdup_printf("%s/tree-report.txt", opt_out);
            char *argv[24];
            int a = 0;
            char *extra[2] = {NULL, NULL};
            if (which == TR_RUN) {
                argv[a++] = (char *)opt_shmguard;
                argv[a++] = "run";
                argv[a++] = "--lib";
                argv[a++] = (char *)opt_lib;
                argv[a++] = "--log-dir";
                argv[a++] = logdir;
                argv[a++] = "-o";
                argv[a++] = report;
                argv[a++] = "--";
            }
            if (which == TR_PRELOAD)
                extra[0] = xstrdup_printf("LD_PRELOAD=%s", opt_lib);
            argv[a++] = "/bin/sh";
            argv[a++] = "-c";
            argv[a++] = (char *)loop;
            argv[a++] = tiny;
            argv[a++] = n;
            argv[a] = NULL;
            char **env = child_env(extra);
            struct run run;
            run_cmd(argv, env, devnull, 120, &run);
            free(env);
            if (ok_status(&run)) {
                tree_s[which][r] = (double)(run.t_end - run.t_start) / 1e9;
            } else {
                fprintf(stderr, "\ndriver: tree: %s: %s\n", tree_names[which], describe(&run));
                failures++;
                if (which == TR_RUN) {
                    have_shmguard = 0;
                    shmguard_problem = "`shmguard run` failed on the tree";
                }
            }
            fprintf(samples_tsv, "tree\t%d\t%s\t-\t%.4f\t%ld\t-\t-\t-\n", r, tree_names[which],
                    tree_s[which][r], opt_tree);
            if (which == TR_RUN)
                remove_dir(logdir);
            free(logdir);
            free(report);
        }
        progress("round", r + 1, opt_tree_rounds);
    }
    progress_end();
    close(devnull);
    fflush(samples_tsv);
}

/* --------------------------------------------- phase 5: shmguard report */

static double report_s[MAX_ROUNDS];
static int report_runs;     /* runs that finished (or timed out) */
static int report_timed_out;

/* Runs `shmguard report` on the synthetic log set up to report_rounds
 * times, but stops once the runs took REPORT_TOTAL_S in all (a slow report
 * must not push `make bench` past its five minutes); a run killed after
 * REPORT_TIMEOUT_S counts as that long. */
enum { REPORT_TIMEOUT_S = 60, REPORT_TOTAL_S = 20 };

static void phase_report(void)
{
    if (!have_shmguard || !*opt_logs)
        return;
    fprintf(stderr, "bench: shmguard report on %ld events, up to %ld runs\n", opt_log_events,
            opt_report_rounds);
    char *path = xstrdup_printf("%s/report-1m.txt", opt_out);
    int devnull = open("/dev/null", O_WRONLY);
    double total = 0;
    for (int r = 0; r < opt_report_rounds && r < MAX_ROUNDS && total < REPORT_TOTAL_S; r++) {
        char *argv[] = {(char *)opt_shmguard, "report", (char *)opt_logs, NULL};
        char **env = child_env(NULL);
        struct run run;
        /* stdout is captured (its first 8 KiB): the first run's is kept */
        run_cmd(argv, env, devnull, REPORT_TIMEOUT_S, &run);
        free(env);
        double t = (double)(run.t_end - run.t_start) / 1e9;
        if (run.timed_out) {
            report_timed_out = 1;
            t = REPORT_TIMEOUT_S;
        } else if (!ok_status(&run)) {
            fprintf(stderr, "driver: shmguard report: %s\n", describe(&run));
            failures++;
            break;
        }
        report_s[report_runs++] = t;
        total += t;
        if (r == 0) {
            FILE *f = fopen(path, "w");
            if (f) {
                fputs(run.out, f);
                fclose(f);
            }
        }
        fprintf(samples_tsv, "report\t%d\tshmguard report\t-\t%.4f\t%ld\t-\t-\t-\n", r, t,
                opt_log_events);
        if (run.timed_out)
            break;
    }
    close(devnull);
    fflush(samples_tsv);
}

/* ------------------------------------------------------------- tables */

static FILE *md; /* results.md: the same tables */

static void both(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    va_start(ap, fmt);
    vfprintf(md, fmt, ap);
    va_end(ap);
}

/* X with SMALL decimals, or with one fewer from BIG on; "-" for NaN. */
static const char *fmt_num(double x, double big, int small, char *buf, size_t n)
{
    if (isnan(x))
        snprintf(buf, n, "-");
    else
        snprintf(buf, n, "%.*f", x >= big ? small - 1 : small, x);
    return buf;
}

static const char *fmt_ns(double ns, char *buf, size_t n)
{
    return fmt_num(ns, 100000, 1, buf, n);
}

static const char *fmt_ratio(double x, char *buf, size_t n)
{
    return fmt_num(x, 10, 3, buf, n);
}

struct stats {
    double med_ns, ref_med_ns;
    double of_medians; /* median(v) / median(glibc) */
    double xproc, xq1, xq3; /* paired per-round ratio: median, quartiles */
    double inproc, iq1, iq3; /* the workers' in-process ratio: median, quartiles */
    double added_ns;         /* in process: median of ns/op(variant) - ns/op(glibc) */
};

static struct stats stats_of(const struct sample *v, const struct sample *ref, int rounds,
                             int has_inproc)
{
    double a[MAX_ROUNDS], b[MAX_ROUNDS], x[MAX_ROUNDS], in[MAX_ROUNDS], add[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) {
        a[r] = v[r].a_ns;
        b[r] = ref[r].a_ns;
        x[r] = v[r].a_ns / ref[r].a_ns;
        in[r] = has_inproc ? v[r].ab : NAN;
        add[r] = has_inproc ? v[r].added : NAN;
    }
    struct stats s;
    s.med_ns = median(a, rounds);
    s.ref_med_ns = median(b, rounds);
    s.of_medians = s.med_ns / s.ref_med_ns;
    s.xproc = median(x, rounds);
    s.xq1 = quantile(x, rounds, 0.25);
    s.xq3 = quantile(x, rounds, 0.75);
    s.inproc = median(in, rounds);
    s.iq1 = quantile(in, rounds, 0.25);
    s.iq3 = quantile(in, rounds, 0.75);
    s.added_ns = median(add, rounds);
    return s;
}

/* The ratio the targets are judged on: in-process when measured. */
static double judged(const struct stats *s)
{
    return isnan(s->inproc) ? s->xproc : s->inproc;
}

static struct stats micro_stats(int vi, int m)
{
    /* strace traces both halves of the in-process comparison: not a ratio
     * against glibc, so only the cross-process one is shown. */
    int inproc = !variants[vi].strace;
    return stats_of(micro[vi][m], micro[V_GLIBC][m], (int)opt_rounds, inproc);
}

static void print_micro_table(void)
{
    both("\n### Per-call cost: median ns/op over %ld rounds, ratios against glibc\n\n", opt_rounds);
    both("x-proc: median of per-round paired ratios (IQR); in-proc: median of in-process "
         "alternating-batch ratios (IQR); +ns: in process, median ns/op added to glibc's; "
         "of-med: ratio of the medians.\n\n");
    for (int m = 0; m < N_MEASURES; m++)
        both("- `%s`: %s\n", measure_names[m], measure_what[m]);
    both("\n| measure | variant | ns/op | x-proc | x-proc IQR | in-proc | in-proc IQR | +ns | "
         "of-med |\n");
    both("| --- | --- | ---: | ---: | --- | ---: | --- | ---: | ---: |\n");
    for (int m = 0; m < N_MEASURES; m++) {
        for (int vi = 0; vi < N_VARIANTS; vi++) {
            if (!variants[vi].available)
                continue;
            struct stats s = micro_stats(vi, m);
            char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32], b7[32], b8[32], b9[32];
            if (vi == V_GLIBC) /* its in-proc ratio compares glibc with itself */
                both("| %s | %s | %s | 1 | | %s | %s-%s | %s | 1 |\n", measure_names[m],
                     variants[vi].name, fmt_ns(s.med_ns, b1, sizeof b1),
                     fmt_ratio(s.inproc, b5, sizeof b5), fmt_ratio(s.iq1, b6, sizeof b6),
                     fmt_ratio(s.iq3, b7, sizeof b7), fmt_ns(s.added_ns, b9, sizeof b9));
            else
                both("| %s | %s | %s | %s | %s-%s | %s | %s%s%s | %s | %s |\n", measure_names[m],
                     variants[vi].name, fmt_ns(s.med_ns, b1, sizeof b1),
                     fmt_ratio(s.xproc, b2, sizeof b2), fmt_ratio(s.xq1, b3, sizeof b3),
                     fmt_ratio(s.xq3, b4, sizeof b4), fmt_ratio(s.inproc, b5, sizeof b5),
                     isnan(s.inproc) ? "" : fmt_ratio(s.iq1, b6, sizeof b6),
                     isnan(s.inproc) ? "" : "-",
                     isnan(s.inproc) ? "" : fmt_ratio(s.iq3, b7, sizeof b7),
                     fmt_ns(s.added_ns, b9, sizeof b9), fmt_ratio(s.of_medians, b8, sizeof b8));
        }
    }
}

/* One line per measure, one column per variant: the judged ratio. */
static void print_summary_table(void)
{
    both("\n### Summary: cost ratio against glibc (in-proc; strace: x-proc; threads4: wall time "
         "per op, 1/throughput)\n\n| measure |");
    for (int vi = 1; vi < N_VARIANTS; vi++)
        if (variants[vi].available)
            both(" %s |", variants[vi].name);
    both("\n| --- |");
    for (int vi = 1; vi < N_VARIANTS; vi++)
        if (variants[vi].available)
            both(" ---: |");
    both("\n");
    for (int m = 0; m < N_MEASURES; m++) {
        both("| %s |", measure_names[m]);
        for (int vi = 1; vi < N_VARIANTS; vi++) {
            if (!variants[vi].available)
                continue;
            struct stats s = micro_stats(vi, m);
            char b[32];
            both(" %s |", fmt_ratio(judged(&s), b, sizeof b));
        }
        both("\n");
    }
}

static void print_live_table(void)
{
    both("\n### attach+detach (4 KiB) with live attachments held: linked against glibc, %ld "
         "rounds\n\n",
         opt_rounds);
    both("| live attachments | glibc ns/op | linked ns/op | x-proc | in-proc | in-proc IQR | +ns "
         "|\n");
    both("| ---: | ---: | ---: | ---: | ---: | --- | ---: |\n");
    for (int h = 0; h < N_HELD; h++) {
        struct stats s = stats_of(live[h][1], live[h][0], (int)opt_rounds, 1);
        char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32], b7[32];
        both("| %ld | %s | %s | %s | %s | %s-%s | %s |\n", held_counts[h],
             fmt_ns(s.ref_med_ns, b1, sizeof b1), fmt_ns(s.med_ns, b2, sizeof b2),
             fmt_ratio(s.xproc, b3, sizeof b3), fmt_ratio(s.inproc, b4, sizeof b4),
             fmt_ratio(s.iq1, b5, sizeof b5), fmt_ratio(s.iq3, b6, sizeof b6),
             fmt_ns(s.added_ns, b7, sizeof b7));
    }
}

static double exit_check_ms(double *paired_out)
{
    int n = (int)(opt_exit_rounds < MAX_ROUNDS ? opt_exit_rounds : MAX_ROUNDS);
    double d[MAX_ROUNDS];
    for (int r = 0; r < n; r++)
        d[r] = exit_ms[EX_ON][r] - exit_ms[EX_OFF][r];
    *paired_out = median(d, n);
    return median(exit_ms[EX_ON], n) - median(exit_ms[EX_OFF], n);
}

static void print_scale_table(void)
{
    int n = (int)(opt_exit_rounds < MAX_ROUNDS ? opt_exit_rounds : MAX_ROUNDS);
    both("\n### Exit with %ld live attachments (one segment, marked IPC_RMID), %d rounds\n\n",
         opt_held, n);
    both("Time from the program's last instruction in main to waitpid in the parent "
         "(median ms); the report goes to /dev/null.\n\n");
    both("| variant | exit ms |\n| --- | ---: |\n");
    for (int k = 0; k < N_EXIT; k++)
        both("| %s | %.1f |\n", exit_names[k], median(exit_ms[k], n));
    double paired, diff = exit_check_ms(&paired);
    both("| the leak check (leak_check=1 minus 0; median of paired differences) | %.1f (%.1f) "
         "|\n",
         diff, paired);
    both("| shmguard_leak_count() in process (median) | %.1f |\n", median(count_ms, n));
    both("\nThe checked run reported %ld attachment leaks and shmguard_leak_count() returned "
         "%ld (both should be %ld).\n",
         exit_reported, count_value, opt_held);

    int t = (int)(opt_tree_rounds < MAX_ROUNDS ? opt_tree_rounds : MAX_ROUNDS);
    both("\n### A tree of %ld short processes (each one shmget + IPC_RMID), %d rounds\n\n",
         opt_tree, t);
    both("| variant | total s (median) | ratio |\n| --- | ---: | ---: |\n");
    double base = median(tree_s[TR_PLAIN], t);
    for (int k = 0; k < N_TREE; k++) {
        double v = median(tree_s[k], t);
        if (isnan(v)) {
            both("| %s | skipped%s%s | |\n", tree_names[k], *shmguard_problem ? ": " : "",
                 shmguard_problem);
            continue;
        }
        both("| %s | %.3f | %.2f |\n", tree_names[k], v, v / base);
    }

    both("\n### `shmguard report` on %ld events (%s)\n\n", opt_log_events,
         *opt_logs ? opt_logs : "no log set");
    if (report_runs) {
        int rr = report_runs;
        both("median %.3f s over %d run(s) (min %.3f, max %.3f)%s\n", median(report_s, rr), rr,
             quantile(report_s, rr, 0), quantile(report_s, rr, 1),
             report_timed_out ? "; killed after the time limit, counted as that" : "");
    } else {
        both("skipped: %s\n", have_shmguard ? "the report failed" : shmguard_problem);
    }
}

static int misses;

static void verdict(const char *what, const char *target, double value, int pass_if_below,
                    double limit, const char *how)
{
    char buf[32];
    if (isnan(value)) {
        both("| %s | %s | - | SKIP |\n", what, target);
        return;
    }
    int pass = pass_if_below ? value <= limit : value >= limit;
    if (!pass)
        misses++;
    if (how) /* a time */
        both("| %s | %s | %s %s | %s |\n", what, target, fmt_ratio(value, buf, sizeof buf), how,
             pass ? "PASS" : "MISS");
    else /* a ratio: four decimals, so that 1.0304 does not read as 1.030 */
        both("| %s | %s | %.4f | %s |\n", what, target, value, pass ? "PASS" : "MISS");
}

static void print_targets(void)
{
    both("\n### Targets\n\n");
    both("Ratios are in-proc medians (see the method in docs/benchmarks.md); times are "
         "medians.\n\n");
    both("| measure | target | measured | verdict |\n| --- | --- | ---: | --- |\n");
    static const int m_default_103[] = {0, 1, 3};
    for (size_t i = 0; i < 3; i++) {
        struct stats s = micro_stats(V_LINKED, m_default_103[i]);
        char what[96];
        snprintf(what, sizeof what, "default options (linked), %s", measure_names[m_default_103[i]]);
        verdict(what, "ratio <= 1.03", judged(&s), 1, 1.03, NULL);
    }
    static const int m_default_110[] = {2, 4};
    for (size_t i = 0; i < 2; i++) {
        struct stats s = micro_stats(V_LINKED, m_default_110[i]);
        char what[96];
        snprintf(what, sizeof what, "default options (linked), %s", measure_names[m_default_110[i]]);
        verdict(what, "ratio <= 1.10", judged(&s), 1, 1.10, NULL);
    }
    static const int m_log_115[] = {0, 1, 3};
    for (size_t i = 0; i < 3; i++) {
        struct stats s = micro_stats(V_LOG, m_log_115[i]);
        char what[96];
        snprintf(what, sizeof what, "log on, %s", measure_names[m_log_115[i]]);
        verdict(what, "ratio <= 1.15", judged(&s), 1, 1.15, NULL);
    }
    {
        struct stats s = micro_stats(V_LOG, 2);
        verdict("log on, ipc_stat", "ratio <= 1.50", judged(&s), 1, 1.50, NULL);
    }
    {
        struct stats s = stats_of(live[N_HELD - 1][1], live[N_HELD - 1][0], (int)opt_rounds, 1);
        char what[96];
        snprintf(what, sizeof what, "%ld live attachments, attach_4k", opt_held);
        verdict(what, "ratio <= 1.05", judged(&s), 1, 1.05, NULL);
    }
    {
        struct stats s = micro_stats(V_LINKED, M_THREADS);
        verdict("4 threads, attach+detach throughput (linked/glibc)", ">= 0.95", 1.0 / judged(&s),
                0, 0.95, NULL);
    }
    {
        double paired, diff = exit_check_ms(&paired);
        char what[96];
        snprintf(what, sizeof what, "exit check with %ld records", opt_held);
        if (exit_reported != opt_held) {
            both("| %s | < 50 ms | the check reported %ld of %ld | MISS |\n", what,
                 exit_reported, opt_held);
            misses++;
        } else {
            verdict(what, "< 50 ms", diff, 1, 50.0, "ms");
        }
    }
    {
        char what[96];
        snprintf(what, sizeof what, "`shmguard report`, %ld events", opt_log_events);
        if (report_runs)
            verdict(what, "< 2 s", median(report_s, report_runs), 1, 2.0, "s");
        else
            both("| %s | < 2 s | - | SKIP (%s) |\n", what,
                 have_shmguard ? "the report failed" : shmguard_problem);
    }
    both("\n%d target(s) missed.\n", misses);
}

static void print_header(void)
{
    char host[256] = "?";
    gethostname(host, sizeof host);
    both("## shmguard benchmark\n\n");
    both("- rounds %ld, %ld ms of timed calls per measure and sample, 4x that for threads4\n",
         opt_rounds, opt_budget);
    both("- variants: ");
    for (int vi = 0; vi < N_VARIANTS; vi++)
        both("%s`%s` (%s%s)", vi ? ", " : "", variants[vi].name, variants[vi].what,
             variants[vi].available ? "" : ": not available");
    both("\n");
    if (log_files_expected)
        both("- log variant: %ld log files written for %ld runs, %.1f MB on average\n",
             log_files_seen, log_files_expected,
             (double)log_bytes_seen / (double)log_files_expected / 1e6);
}

int main(int argc, char **argv)
{
    parse_options(argc, argv);
    progress_tty = isatty(2);
    if (opt_rounds > MAX_ROUNDS)
        opt_rounds = MAX_ROUNDS;
    char *errdir = xstrdup_printf("%s/stderr", opt_out);
    mkdir(errdir, 0755);
    for (int vi = 0; vi < N_VARIANTS; vi++) {
        char *p = xstrdup_printf("%s/%s.log", errdir, variants[vi].name);
        variants[vi].errfd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (variants[vi].errfd < 0)
            die("%s: %s", p, strerror(errno));
    }
    if (!*opt_strace)
        variants[V_STRACE].available = 0;
    have_shmguard = *opt_shmguard != 0;
    if (!have_shmguard)
        shmguard_problem = "the shmguard command is missing or does not work";

    char *p = xstrdup_printf("%s/samples.tsv", opt_out);
    samples_tsv = fopen(p, "w");
    p = xstrdup_printf("%s/results.md", opt_out);
    md = fopen(p, "w");
    if (!samples_tsv || !md)
        die("cannot write to %s", opt_out);
    fprintf(samples_tsv, "phase\tround\tvariant\tmeasure\tns_per_op\tops\tglibc_ns_in_proc\t"
                         "in_proc_ratio\tin_proc_added_ns\n");

    phase_micro();
    phase_live();
    phase_exit();
    phase_tree();
    phase_report();

    print_header();
    print_summary_table();
    print_micro_table();
    print_live_table();
    print_scale_table();
    print_targets();
    if (failures)
        both("\n%d measurement(s) failed: see the messages above and %s/stderr/.\n", failures,
             opt_out);
    fclose(md);
    fclose(samples_tsv);
    return failures ? 3 : misses ? 1 : 0;
}
