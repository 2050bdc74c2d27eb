/*
 * drive.c: the differential fuzzer's driver (see fuzz/README.md).
 *
 *   drive --prog SHMFUZZ --lib LIBSHMGUARD.so --out DIR [--jobs N]
 *         [--sets LIST] [--timeout SEC] [--python PY] [--logcheck PATH]
 *         [--repro CMD] [--no-ns] [--length N] [--no-huge-null] SEED...
 *
 * SEED is a number (0x... for hex) or START+COUNT for COUNT consecutive
 * seeds. For each seed it runs SHMFUZZ once with --raw (the reference: the
 * kernel through syscall(2)) and once per option set, each run a separate
 * process in its own IPC namespace, and compares the traces line by line:
 *
 *   glibc     the libc names, plain glibc (a sanity check: raw == glibc)
 *   default   LD_PRELOAD=libshmguard.so, no SHMGUARD_OPTIONS
 *   log       ... SHMGUARD_OPTIONS=log_path=DIR/f.%p.jsonl, and the log
 *             must be valid JSON with one call event per call (logcheck.py)
 *   guard     ... SHMGUARD_OPTIONS=guard_pages=1
 *   combo     (only when asked for) the log, guard pages and stacks at once
 *
 * A run fails if its trace differs from the reference, it does not exit 0,
 * or it writes anything on stderr (a warning or a leak report: the sequence
 * ends by detaching and removing everything). A failure prints the seed,
 * the first differing call (index, arguments, both results) and commands
 * that reproduce it. The last line is "N passed, N failed" (one per seed
 * and set); the exit status is 0 only if none failed.
 */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_SETS 8

struct set {
    const char *name;
    int preload;
    const char *options; /* SHMGUARD_OPTIONS, NULL: unset; "%L" = log dir */
};

static const struct set all_sets[] = {
    {"glibc", 0, NULL},
    {"default", 1, NULL},
    {"log", 1, "log_path=%L/f.%p.jsonl"},
    {"guard", 1, "guard_pages=1"},
    /* not run by default: everything at once */
    {"combo", 1, "log_path=%L/f.%p.jsonl:guard_pages=1:stacks=1:leak_check=1"},
};
#define NALL_SETS (int)(sizeof all_sets / sizeof all_sets[0])

static const struct set *sets[MAX_SETS];
static int nsets;

static const char *prog, *lib, *out, *python = "python3", *logcheck_py, *repro;
/* Where the log set's directories go (--logroot), if not under OUT. */
static const char *logroot;
static int timeout_s = 60;
static int no_ns; /* --no-ns: shmfuzz stays in the shared IPC namespace */
static const char *length; /* --length N: calls per sequence (shmfuzz's default) */
static int no_huge_null;   /* --no-huge-null: passed on to shmfuzz */
static int jobs = 2;

static uint64_t *seeds;
static size_t nseeds, cap_seeds;

static void
die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "drive: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

/* snprintf for paths and messages: a path that does not fit is an error,
 * a message is cut. */
static __attribute__((format(printf, 3, 4))) void
pathf(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len)
        die("path too long: %s...", buf);
}

static __attribute__((format(printf, 3, 4))) void
msgf(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

static void
add_seed(uint64_t s)
{
    if (nseeds == cap_seeds) {
        cap_seeds = cap_seeds ? cap_seeds * 2 : 256;
        seeds = realloc(seeds, cap_seeds * sizeof *seeds);
        if (seeds == NULL)
            die("out of memory");
    }
    seeds[nseeds++] = s;
}

static void
parse_seed(const char *arg)
{
    char *end;
    errno = 0;
    uint64_t start = strtoull(arg, &end, 0);
    if (errno != 0 || end == arg)
        die("bad seed '%s'", arg);
    if (*end == '\0') {
        add_seed(start);
        return;
    }
    if (*end != '+')
        die("bad seed '%s'", arg);
    const char *c = end + 1;
    uint64_t count = strtoull(c, &end, 0);
    if (errno != 0 || end == c || *end != '\0')
        die("bad seed range '%s'", arg);
    for (uint64_t i = 0; i < count; i++)
        add_seed(start + i);
}

/* ---------------------------------------------------------------- files */

static char *
slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (buf == NULL)
        die("out of memory");
    if (fd >= 0) {
        for (;;) {
            if (n + 1 >= cap) {
                cap *= 2;
                buf = realloc(buf, cap);
                if (buf == NULL)
                    die("out of memory");
            }
            ssize_t r = read(fd, buf + n, cap - 1 - n);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            n += (size_t)r;
        }
        close(fd);
    }
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        return rmdir(path);
    return unlink(path);
}

/* rm -rf DIR */
static void
rm_dir_files(const char *dir)
{
    if (nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
        die("cannot remove %s: %s", dir, strerror(errno));
}

static void
copy_file(const char *from, const char *to)
{
    size_t n;
    char *data = slurp(from, &n);
    int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        if (write(fd, data, n) != (ssize_t)n)
            fprintf(stderr, "drive: short write to %s\n", to);
        close(fd);
    }
    free(data);
}

/* Copies the files of directory FROM into a new directory TO. */
static void
copy_dir(const char *from, const char *to)
{
    DIR *d = opendir(from);
    if (d == NULL || mkdir(to, 0755) != 0) {
        if (d != NULL)
            closedir(d);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char a[4400], b[4600];
        if (e->d_name[0] == '.')
            continue;
        pathf(a, sizeof a, "%s/%s", from, e->d_name);
        pathf(b, sizeof b, "%s/%s", to, e->d_name);
        copy_file(a, b);
    }
    closedir(d);
}

/* Removes the segments a run left behind in our IPC namespace: only one
 * that shared it (--no-ns, or no unshare allowed) and was killed before
 * it could clean up (shmfuzz removes its segments itself otherwise, even
 * from its signal handlers, but a crash may leave it no working code to
 * do so). Returns how many. */
static int
reap_segments(pid_t pid)
{
    FILE *f = fopen("/proc/sysvipc/shm", "r");
    char line[512];
    int n = 0;
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f) != NULL) {
        long key, id, cpid;
        unsigned long size;
        int perms;
        if (sscanf(line, "%ld %ld %o %lu %ld", &key, &id, &perms, &size, &cpid) == 5 &&
            cpid == (long)pid) {
            syscall(SYS_shmctl, (int)id, IPC_RMID, NULL);
            n++;
        }
    }
    fclose(f);
    return n;
}

/* ----------------------------------------------------------------- runs */

/* A run past its time: SIGTERM, then SIGKILL, reaped with its segments. */
static int
timed_out(pid_t pid)
{
    int status;
    kill(pid, SIGTERM);
    usleep(200 * 1000);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    reap_segments(pid);
    return -1;
}

struct result {
    int status;   /* wait status, or -1: timed out */
    char trace[4096];
    char err[4096];
};

/* Runs PROG SEED [--raw] --dir DIR with the environment of SET (NULL: the
 * raw reference), stdout to TRACE, stderr to ERR. Returns the wait status,
 * -1 on timeout. */
static int
run_one(uint64_t seed, const struct set *set, const char *trace, const char *err,
        const char *calls, const char *logdir, const char *ftokdir)
{
    char seed_arg[32], opts[4400], preload[4200];
    snprintf(seed_arg, sizeof seed_arg, "0x%" PRIx64, seed);
    /* the environment: ours without LD_PRELOAD and SHMGUARD_OPTIONS */
    size_t n = 0;
    while (environ[n] != NULL)
        n++;
    char **envp = calloc(n + 3, sizeof *envp);
    if (envp == NULL)
        die("out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0 &&
            strncmp(environ[i], "SHMGUARD_OPTIONS=", 17) != 0)
            envp[k++] = environ[i];
    if (set != NULL && set->preload) {
        snprintf(preload, sizeof preload, "LD_PRELOAD=%s", lib);
        envp[k++] = preload;
    }
    if (set != NULL && set->options != NULL) {
        const char *o = set->options;
        char *w = opts + snprintf(opts, sizeof opts, "SHMGUARD_OPTIONS=");
        while (*o != '\0' && w < opts + sizeof opts - 1) {
            if (o[0] == '%' && o[1] == 'L') {
                w += snprintf(w, (size_t)(opts + sizeof opts - w), "%s", logdir);
                o += 2;
            } else {
                *w++ = *o++;
            }
        }
        *w = '\0';
        envp[k++] = opts;
    }
    envp[k] = NULL;

    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        int o = open(trace, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int i = open("/dev/null", O_RDONLY);
        if (o < 0 || e < 0 || i < 0)
            _exit(126);
        dup2(i, 0);
        dup2(o, 1);
        dup2(e, 2);
        char *argv[12];
        int a = 0;
        argv[a++] = (char *)prog;
        argv[a++] = seed_arg;
        if (set == NULL)
            argv[a++] = "--raw";
        argv[a++] = "--dir";
        argv[a++] = (char *)ftokdir;
        argv[a++] = "--calls";
        argv[a++] = (char *)calls;
        if (no_ns)
            argv[a++] = "--no-ns";
        if (length != NULL) {
            argv[a++] = "--length";
            argv[a++] = (char *)length;
        }
        if (no_huge_null)
            argv[a++] = "--no-huge-null";
        argv[a] = NULL;
        execve(prog, argv, envp);
        _exit(127);
    }
    free(envp);
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    int status = 0;
    if (pfd >= 0) {
        struct pollfd p = {pfd, POLLIN, 0};
        int r;
        do
            r = poll(&p, 1, timeout_s * 1000);
        while (r < 0 && errno == EINTR);
        close(pfd);
        if (r == 0)
            return timed_out(pid);
        waitpid(pid, &status, 0);
        if (reap_segments(pid) > 0 && status == 0)
            fprintf(stderr, "drive: seed 0x%" PRIx64 ": a run that exited 0 left segments\n",
                    seed);
        return status;
    }
    /* no pidfd: poll the status */
    for (long waited = 0;; waited += 1) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            reap_segments(pid);
            return status;
        }
        if (waited >= (long)timeout_s * 1000)
            return timed_out(pid);
        usleep(1000);
    }
}

static void
describe_status(char *buf, size_t len, int status)
{
    if (status == -1)
        snprintf(buf, len, "timed out after %d s", timeout_s);
    else if (WIFEXITED(status))
        snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, len, "wait status 0x%x", (unsigned)status);
}

/* The line starting at P, up to its newline, into BUF. */
static const char *
line_at(const char *p, char *buf, size_t len)
{
    if (p == NULL || *p == '\0')
        return "(end of trace)";
    size_t n = strcspn(p, "\n");
    if (n >= len)
        n = len - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return buf;
}

/* The first line where A and B differ; its start in each. */
static int
first_difference(const char *a, const char *b, const char **pa, const char **pb)
{
    int line = 1;
    const char *la = a, *lb = b;
    while (*a != '\0' && *b != '\0' && *a == *b) {
        if (*a == '\n') {
            line++;
            la = a + 1;
            lb = b + 1;
        }
        a++;
        b++;
    }
    if (*a == *b)
        return 0;
    *pa = la;
    *pb = lb;
    return line;
}

/* Splits "#12 shmat(...) = ok ..." into the call and the result. */
static void
split_call(const char *lineb, char *call, size_t clen, char *res, size_t rlen)
{
    const char *eq = strstr(lineb, ") = ");
    if (lineb[0] != '#' || eq == NULL) {
        snprintf(call, clen, "%s", lineb);
        snprintf(res, rlen, "%s", "");
        return;
    }
    size_t n = (size_t)(eq + 1 - lineb);
    if (n >= clen)
        n = clen - 1;
    memcpy(call, lineb, n);
    call[n] = '\0';
    snprintf(res, rlen, "%s", eq + 4);
}

/* ------------------------------------------------------------- log checks */

static FILE *lc_in, *lc_out;
static int lc_ok = -1;

static void
logcheck_start(void)
{
    int to[2], from[2];
    if (pipe(to) != 0 || pipe(from) != 0)
        die("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(to[0], 0);
        dup2(from[1], 1);
        close(to[0]);
        close(to[1]);
        close(from[0]);
        close(from[1]);
        execlp(python, python, "-u", logcheck_py, (char *)NULL);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    lc_in = fdopen(to[1], "w");
    lc_out = fdopen(from[0], "r");
    lc_ok = lc_in != NULL && lc_out != NULL;
}

/* "OK n" or "FAIL ..." into BUF. */
static void
logcheck(const char *logdir, const char *calls, char *buf, size_t len)
{
    if (lc_ok == -1)
        logcheck_start();
    if (lc_ok == 1 && fprintf(lc_in, "%s\t%s\n", logdir, calls) > 0 && fflush(lc_in) == 0 &&
        fgets(buf, (int)len, lc_out) != NULL) {
        buf[strcspn(buf, "\n")] = '\0';
        return;
    }
    lc_ok = 0;
    snprintf(buf, len, "FAIL cannot run %s %s", python, logcheck_py);
}

/* ---------------------------------------------------------------- workers */

struct outbuf {
    char *data;
    size_t len, cap;
};

static __attribute__((format(printf, 2, 3))) void
outf(struct outbuf *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (o->len + (size_t)n + 1 > o->cap) {
        o->cap = (o->len + (size_t)n + 1) * 2;
        o->data = realloc(o->data, o->cap);
        if (o->data == NULL)
            die("out of memory");
    }
    va_start(ap, fmt);
    vsnprintf(o->data + o->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    o->len += (size_t)n;
}

static void
write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("write: %s", strerror(errno));
        p += w;
        n -= (size_t)w;
    }
}

/* The environment of SET, as a shell prefix for a reproduction command. */
static void
set_env_words(const struct set *set, const char *logdir, char *buf, size_t len)
{
    int n = 0;
    buf[0] = '\0';
    if (set->preload)
        n += snprintf(buf + n, len - (size_t)n, "LD_PRELOAD=%s ", lib);
    if (set->options != NULL) {
        n += snprintf(buf + n, len - (size_t)n, "SHMGUARD_OPTIONS=");
        for (const char *o = set->options; *o != '\0' && (size_t)n < len - 1; o++) {
            if (o[0] == '%' && o[1] == 'L') {
                n += snprintf(buf + n, len - (size_t)n, "%s", logdir);
                o++;
            } else {
                buf[n++] = *o;
                buf[n] = '\0';
            }
        }
        n += snprintf(buf + n, len - (size_t)n, " ");
    }
}

/* One seed: the reference run and every set. Writes one record per set to
 * FD: "PASS seed set\n" or "FAIL seed set\n" + detail lines, then ".\n". */
static void
do_seed(int w, uint64_t seed, int fd)
{
    char dir[4096], ref_trace[4200], ref_err[4200], trace[4200], err[4200], logdir[4200],
        ftokdir[4200];
    pathf(dir, sizeof dir, "%s/w%d", out, w);
    pathf(ftokdir, sizeof ftokdir, "%s/ftok", out);
    pathf(ref_trace, sizeof ref_trace, "%s/raw.trace", dir);
    pathf(ref_err, sizeof ref_err, "%s/raw.err", dir);
    /* Sequences switch to nobody's effective uid and must reach the log
     * directory: OUT may sit where nobody cannot (a checkout in a 0700
     * directory), so run.sh gives a root others can traverse. */
    if (logroot != NULL)
        pathf(logdir, sizeof logdir, "%s/w%d", logroot, w);
    else
        pathf(logdir, sizeof logdir, "%s/log", dir);

    char calls[4200];
    pathf(calls, sizeof calls, "%s/calls", dir);
    int ref_status = run_one(seed, NULL, ref_trace, ref_err, calls, logdir, ftokdir);
    size_t ref_len;
    char *ref = slurp(ref_trace, &ref_len);
    char *ref_errs = slurp(ref_err, NULL);
    char ref_problem[256] = "";
    if (ref_status != 0) {
        describe_status(ref_problem, sizeof ref_problem, ref_status);
    } else if (ref_errs[0] != '\0') {
        msgf(ref_problem, sizeof ref_problem, "wrote on stderr");
    } else if (strstr(ref, "\nend calls=") == NULL) {
        msgf(ref_problem, sizeof ref_problem, "trace incomplete");
    }

    for (int s = 0; s < nsets; s++) {
        const struct set *set = sets[s];
        struct outbuf o = {0};
        pathf(trace, sizeof trace, "%s/%s.trace", dir, set->name);
        pathf(err, sizeof err, "%s/%s.err", dir, set->name);
        char problem[2048] = "";
        char detail[8192] = "";
        if (set->options != NULL && strstr(set->options, "%L") != NULL) {
            rm_dir_files(logdir);
            /* the sequence may make its first call as nobody */
            if (mkdir(logdir, 0755) != 0 || chmod(logdir, 01777) != 0)
                die("mkdir %s: %s", logdir, strerror(errno));
        }
        int status = run_one(seed, set, trace, err, calls, logdir, ftokdir);
        char *got = slurp(trace, NULL);
        char *errs = slurp(err, NULL);
        const char *pa = NULL, *pb = NULL;
        int diff_line = ref_problem[0] ? 0 : first_difference(ref, got, &pa, &pb);
        if (ref_problem[0]) {
            msgf(problem, sizeof problem, "the raw reference run failed: %s", ref_problem);
            char e[600];
            msgf(detail, sizeof detail, "  raw stderr: %s\n", line_at(ref_errs, e, sizeof e));
        } else if (diff_line != 0) {
            char la[1200], lb[1200], call[1200], ra[1200], rb[1200], ca[1200];
            line_at(pa, la, sizeof la);
            line_at(pb, lb, sizeof lb);
            split_call(la, call, sizeof call, ra, sizeof ra);
            split_call(lb, ca, sizeof ca, rb, sizeof rb);
            if (la[0] == '#' && (pb == NULL || *pb == '\0')) {
                /* the run ended before this call returned */
                char d[128] = "exit status 0";
                if (status != 0)
                    describe_status(d, sizeof d, status);
                msgf(problem, sizeof problem, "the run ended during trace line %d", diff_line);
                msgf(detail, sizeof detail,
                     "  call:     %s\n  kernel:   = %s\n  %-10s(no result: %s)\n", call, ra,
                     set->preload ? "shmguard:" : "glibc:", d);
            } else if (strcmp(call, ca) == 0 && la[0] == '#') {
                msgf(problem, sizeof problem, "first difference at trace line %d", diff_line);
                msgf(detail, sizeof detail,
                         "  call:     %s\n  kernel:   = %s\n  %-10s= %s\n", call, ra,
                         set->preload ? "shmguard:" : "glibc:", rb);
            } else {
                msgf(problem, sizeof problem, "traces differ at line %d", diff_line);
                msgf(detail, sizeof detail, "  kernel:   %s\n  %-10s%s\n", la,
                         set->preload ? "shmguard:" : "glibc:", lb);
            }
        }
        if (status != 0) {
            char d[128];
            describe_status(d, sizeof d, status);
            size_t l = strlen(problem);
            msgf(problem + l, sizeof problem - l, "%s%s", l ? "; " : "", d);
        }
        if (errs[0] != '\0' && !ref_problem[0]) {
            size_t l = strlen(problem);
            msgf(problem + l, sizeof problem - l, "%sunexpected output on stderr",
                     l ? "; " : "");
            char e[1200];
            size_t dl = strlen(detail);
            msgf(detail + dl, sizeof detail - dl, "  stderr:   %s\n",
                     line_at(errs, e, sizeof e));
        }
        if (!problem[0] && set->options != NULL && strstr(set->options, "%L") != NULL) {
            char answer[1024];
            logcheck(logdir, calls, answer, sizeof answer);
            if (strncmp(answer, "OK", 2) != 0) {
                msgf(problem, sizeof problem, "audit log: %s", answer + 5);
            }
        }
        if (!problem[0]) {
            outf(&o, "PASS 0x%016" PRIx64 " %s\n.\n", seed, set->name);
        } else {
            /* keep the evidence */
            char keep[4400], from[4400];
            pathf(keep, sizeof keep, "%s/failures/0x%016" PRIx64 ".%s", out, seed, set->name);
            mkdir(keep, 0755);
            pathf(from, sizeof from, "%s/kernel.trace", keep);
            copy_file(ref_trace, from);
            pathf(from, sizeof from, "%s/%s.trace", keep, set->name);
            copy_file(trace, from);
            pathf(from, sizeof from, "%s/%s.stderr", keep, set->name);
            copy_file(err, from);
            if (set->options != NULL && strstr(set->options, "%L") != NULL) {
                char to[4500];
                pathf(to, sizeof to, "%s/log", keep);
                copy_dir(logdir, to);
            }
            char env[4600];
            set_env_words(set, "/tmp", env, sizeof env);
            char extra[64];
            msgf(extra, sizeof extra, "%s%s%s%s", no_ns ? " --no-ns" : "",
                 length != NULL ? " --length " : "", length != NULL ? length : "",
                 no_huge_null ? " --no-huge-null" : "");
            outf(&o, "FAIL 0x%016" PRIx64 " %s\n", seed, set->name);
            outf(&o, "FAIL: seed 0x%016" PRIx64 ", option set %s: %s\n", seed, set->name,
                 problem);
            outf(&o, "%s", detail);
            outf(&o, "  traces:   %s/\n", keep);
            if (repro != NULL)
                outf(&o, "  rerun:    %s%s%s%s%sFUZZ_SETS=%s %s 0x%016" PRIx64 "\n",
                     no_ns ? "FUZZ_NO_NS=1 " : "", length != NULL ? "FUZZ_LENGTH=" : "",
                     length != NULL ? length : "", length != NULL ? " " : "",
                     no_huge_null ? "FUZZ_NO_HUGE_NULL=1 " : "", set->name, repro, seed);
            outf(&o,
                 "  diff:     diff <(%s 0x%016" PRIx64 " --raw --dir %s%s) <(%s%s 0x%016" PRIx64
                 " --dir %s%s)\n",
                 prog, seed, ftokdir, extra, env, prog, seed, ftokdir, extra);
            outf(&o, ".\n");
        }
        write_all(fd, o.data, o.len);
        free(o.data);
        free(got);
        free(errs);
    }
    free(ref);
    free(ref_errs);
}

static void
worker(int w, int fd)
{
    char dir[4200];
    pathf(dir, sizeof dir, "%s/w%d", out, w);
    rm_dir_files(dir);
    if (mkdir(dir, 0755) != 0)
        die("mkdir %s: %s", dir, strerror(errno));
    for (size_t i = (size_t)w; i < nseeds; i += (size_t)jobs)
        do_seed(w, seeds[i], fd);
    close(fd);
    exit(0);
}

/* ------------------------------------------------------------------ main */

static void
usage(void)
{
    fprintf(stderr, "usage: drive --prog SHMFUZZ --lib LIBSHMGUARD.so --out DIR [--jobs N]\n"
                    "             [--sets glibc,default,log,guard,combo] [--timeout SEC]\n"
                    "             [--python PY] [--logcheck PATH] [--repro CMD] [--no-ns]\n"
                    "             [--length N] [--no-huge-null] [--logroot DIR]\n"
                    "             SEED...\n");
    exit(2);
}

static void
parse_sets(const char *list)
{
    char *copy = strdup(list);
    nsets = 0;
    for (char *tok = strtok(copy, ","); tok != NULL; tok = strtok(NULL, ",")) {
        int found = 0;
        for (int i = 0; i < NALL_SETS; i++)
            if (strcmp(all_sets[i].name, tok) == 0 && nsets < MAX_SETS) {
                sets[nsets++] = &all_sets[i];
                found = 1;
            }
        if (!found)
            die("unknown option set '%s'", tok);
    }
    free(copy);
    if (nsets == 0)
        die("no option set");
}

struct wstate {
    int fd;
    char *buf;
    size_t len, cap;
};

int
main(int argc, char **argv)
{
    const char *set_list = "glibc,default,log,guard";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            parse_seed(a);
            continue;
        }
        if (strcmp(a, "--no-ns") == 0) {
            no_ns = 1;
            continue;
        }
        if (strcmp(a, "--no-huge-null") == 0) {
            no_huge_null = 1;
            continue;
        }
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (strcmp(a, "--prog") == 0)
            prog = v;
        else if (strcmp(a, "--lib") == 0)
            lib = v;
        else if (strcmp(a, "--out") == 0)
            out = v;
        else if (strcmp(a, "--jobs") == 0)
            jobs = atoi(v);
        else if (strcmp(a, "--sets") == 0)
            set_list = v;
        else if (strcmp(a, "--timeout") == 0)
            timeout_s = atoi(v);
        else if (strcmp(a, "--python") == 0)
            python = v;
        else if (strcmp(a, "--logcheck") == 0)
            logcheck_py = v;
        else if (strcmp(a, "--repro") == 0)
            repro = v;
        else if (strcmp(a, "--logroot") == 0)
            logroot = v;
        else if (strcmp(a, "--length") == 0)
            length = v;
        else
            usage();
    }
    if (prog == NULL || lib == NULL || out == NULL || nseeds == 0)
        usage();
    if (jobs < 1)
        jobs = 1;
    if ((size_t)jobs > nseeds)
        jobs = (int)nseeds;
    if (timeout_s < 1)
        timeout_s = 60;
    parse_sets(set_list);
    if (logcheck_py == NULL)
        logcheck_py = "fuzz/logcheck.py";
    if (access(prog, X_OK) != 0)
        die("%s: not executable", prog);
    if (access(lib, R_OK) != 0)
        die("%s: not found", lib);
    signal(SIGPIPE, SIG_IGN);

    /* ftok's files: one file and a symlink loop, shared by every run (the
     * same inode for both sides of a comparison). */
    char path[4200], failures[4200];
    pathf(path, sizeof path, "%s/ftok", out);
    mkdir(out, 0755);
    mkdir(path, 0755);
    pathf(path, sizeof path, "%s/ftok/file", out);
    close(open(path, O_WRONLY | O_CREAT, 0644));
    pathf(path, sizeof path, "%s/ftok/loop", out);
    if (symlink("loop", path) != 0 && errno != EEXIST)
        die("symlink %s: %s", path, strerror(errno));
    pathf(failures, sizeof failures, "%s/failures", out);
    rm_dir_files(failures);
    mkdir(failures, 0755);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct wstate ws[64];
    if (jobs > 64)
        jobs = 64;
    fflush(stdout);
    for (int w = 0; w < jobs; w++) {
        int p[2];
        if (pipe(p) != 0)
            die("pipe: %s", strerror(errno));
        pid_t pid = fork();
        if (pid < 0)
            die("fork: %s", strerror(errno));
        if (pid == 0) {
            close(p[0]);
            for (int j = 0; j < w; j++)
                close(ws[j].fd);
            worker(w, p[1]);
        }
        close(p[1]);
        ws[w].fd = p[0];
        ws[w].buf = NULL;
        ws[w].len = ws[w].cap = 0;
    }

    long passed[MAX_SETS] = {0}, failed[MAX_SETS] = {0};
    long total_failed = 0, total_passed = 0;
    int open_fds = jobs;
    while (open_fds > 0) {
        struct pollfd pf[64];
        int idx[64], n = 0;
        for (int w = 0; w < jobs; w++)
            if (ws[w].fd >= 0) {
                pf[n].fd = ws[w].fd;
                pf[n].events = POLLIN;
                idx[n++] = w;
            }
        if (poll(pf, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            die("poll: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            struct wstate *s = &ws[idx[i]];
            if (s->len + 65536 > s->cap) {
                s->cap = s->len + 65536 * 2;
                s->buf = realloc(s->buf, s->cap);
                if (s->buf == NULL)
                    die("out of memory");
            }
            ssize_t r = read(s->fd, s->buf + s->len, s->cap - s->len - 1);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                close(s->fd);
                s->fd = -1;
                open_fds--;
                continue;
            }
            s->len += (size_t)r;
            s->buf[s->len] = '\0';
            /* complete records end with a "." line */
            char *end;
            while ((end = strstr(s->buf, "\n.\n")) != NULL) {
                *end = '\0';
                char kind[8], setname[32];
                uint64_t sd;
                if (sscanf(s->buf, "%7s %" SCNx64 " %31s", kind, &sd, setname) == 3) {
                    int si = 0;
                    for (int j = 0; j < nsets; j++)
                        if (strcmp(sets[j]->name, setname) == 0)
                            si = j;
                    if (strcmp(kind, "PASS") == 0) {
                        passed[si]++;
                        total_passed++;
                    } else {
                        failed[si]++;
                        total_failed++;
                        char *body = strchr(s->buf, '\n');
                        printf("%s\n", body != NULL ? body + 1 : s->buf);
                        fflush(stdout);
                    }
                }
                size_t used = (size_t)(end + 3 - s->buf);
                memmove(s->buf, end + 3, s->len - used + 1);
                s->len -= used;
            }
        }
    }
    int st;
    int worker_trouble = 0;
    while (wait(&st) > 0)
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            worker_trouble = 1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%zu sequences x %d option sets in %.1f s (%.1f sequences/s, each run %d times):",
           nseeds, nsets, secs, (double)nseeds / secs, nsets + 1);
    for (int j = 0; j < nsets; j++)
        printf(" %s %ld/%ld", sets[j]->name, passed[j], passed[j] + failed[j]);
    printf("\n");
    long expected = (long)nseeds * nsets;
    if (total_passed + total_failed != expected) {
        printf("drive: %ld results missing (a worker died)\n",
               expected - total_passed - total_failed);
        total_failed += expected - total_passed - total_failed;
    }
    if (worker_trouble && total_failed == 0)
        total_failed = 1;
    printf("%ld passed, %ld failed\n", total_passed, total_failed);
    return total_failed == 0 ? 0 : 1;
}
