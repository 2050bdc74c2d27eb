/* x_priv.c SCENARIO: privilege, start-up and what shmguard prints.
 *
 *   secure          a set-user-ID-root copy and a file-capability copy
 *                   (cap_dac_override) of this program, run as nobody with
 *                   SHMGUARD_OPTIONS=log_path=ROOT_ONLY_DIR/x:fault=shmget@1=
 *                   ENOSPC:exitcode=9:verbosity=2:suppressions=FILE (FILE
 *                   suppresses every leak): no option applies (no log
 *                   file, the call succeeds, status 0, the leak is not
 *                   suppressed), one line says the
 *                   options were ignored, the leak report is still printed;
 *                   without SHMGUARD_OPTIONS, no such line. Preloaded, ld.so
 *                   does not load libshmguard into such a program at all
 *                   (LD_PRELOAD with a slash): nothing printed, nothing
 *                   applied; then the same libraries are preloaded through
 *                   /etc/ld.so.preload (which ld.so honours for privileged
 *                   programs too; a private /etc, bind-mounted in a mount
 *                   namespace of the child's own), as in the linked mode.
 *                   Needs root, a user nobody and setcap.
 *   preinit         the process's first shm call comes from this program's
 *                   .preinit_array, before libc set environ; run with
 *                   policy=strict, the call is refused (the options were
 *                   read); then the same in a mount namespace where /proc
 *                   is an empty tmpfs: the first call gets the defaults,
 *                   the calls after libshmguard's constructor the options.
 *   fork_startup    (SHMGUARD_OPTIONS with a bad option) a thread's first
 *                   call blocks while printing the option warning (stderr
 *                   is a full pipe); another thread forks: the child's
 *                   first call returns at once.
 *   signal_startup  the same, but a signal handler calls shmdt and shmat in
 *                   the blocked thread: they return at once.
 *   escape          with verbosity=2 and a log, ftok of paths holding a
 *                   newline, ESC and C1 controls: every stderr line has
 *                   shmguard's prefix and no control character, every log
 *                   line is JSON.
 *   seccomp         a seccomp filter makes stat fail with ENOENT without the
 *                   kernel reading the path: ftok of an unmapped address
 *                   returns -1 ENOENT (as glibc) instead of crashing.
 *
 * The other names are the children the scenarios run. */
#include "check.h"

#include <grp.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <stddef.h>
#include <sys/auxv.h>
#include <sys/mount.h>
#include <sys/statvfs.h>

#define PAGE 4096UL

/* --------------------------------------------------------------- preinit */

static int preinit_ran;
static int preinit_id = -2;
static int preinit_errno;

/* Runs before libc sets environ and before any constructor: the process's
 * first shm call, when asked for on the command line. */
static void
preinit(int argc, char **argv, char **envp)
{
    (void)envp;
    if (argc < 2 || (strcmp(argv[1], "preinit") != 0 && strcmp(argv[1], "preinit_child") != 0))
        return;
    preinit_ran = 1;
    errno = 0;
    /* mode 0644: refused by policy=strict (wide-mode) */
    preinit_id = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0644);
    preinit_errno = errno;
}

__attribute__((section(".preinit_array"), used)) static void (*const preinit_entry)(
    int, char **, char **) = preinit;

/* Checks the preinit call and one call from main, under policy=strict.
 * STRICT_EARLY: whether the preinit call must have been refused too. */
static void
check_preinit(const char *what, int strict_early)
{
    CHECK_EQ(preinit_ran, 1);
    if (preinit_id >= 0)
        ck_track(preinit_id);
    if (strict_early) {
        if (preinit_id != -1 || preinit_errno != EACCES)
            FAIL("%s: the .preinit_array call returned %d %s, expected -1 EACCES "
                 "(policy=strict not applied)",
                 what, preinit_id, ck_errname(preinit_errno));
    } else if (preinit_id < 0) {
        FAIL("%s: the .preinit_array call failed: %s", what, ck_errname(preinit_errno));
    }
    struct ck_res r = RES(shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0644));
    if (r.ret >= 0)
        ck_track((int)r.ret);
    WANT("main's call under policy=strict", r, EACCES);
}

/* preinit_child: no /proc (an empty tmpfs over it, set up by the parent). */
static int
scenario_preinit_child(void)
{
    /* LeakSanitizer (make asan) cannot work without /proc (nor read
     * ASAN_OPTIONS: it reads them from /proc/self/environ) */
    ck_child_of_threads();
    if (access("/proc/self/environ", F_OK) == 0) {
        FAIL("/proc is still there");
        return 1;
    }
    check_preinit("preinit without /proc", 0);
    return ck_failures == 0 ? 0 : 1;
}

static int
scenario_preinit(void)
{
    const char *opts = getenv("SHMGUARD_OPTIONS");
    if (opts == NULL || strcmp(opts, "policy=strict") != 0) {
        FAIL("preinit runs with SHMGUARD_OPTIONS=policy=strict");
        return ck_finish();
    }
    check_preinit("preinit", 1);
    tracef("preinit", "ok id=%d errno=%s", preinit_id, ck_errname(preinit_errno));

    /* Without /proc: a private mount namespace with an empty tmpfs on it. */
    const char *self = ck_self_exe();
    char exe[4096];
    snprintf(exe, sizeof exe, "%s", self);
    char err[512];
    ck_tmp_name(err, sizeof err, "noproc.err");
    pid_t pid = ck_fork();
    if (pid == 0) {
        /* its stderr apart: ASan complains without /proc (make asan) */
        int fd = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || dup2(fd, 2) < 0)
            _exit(98);
        if (unshare(CLONE_NEWNS) != 0 ||
            mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0 ||
            mount("none", "/proc", "tmpfs", 0, "size=16k") != 0)
            _exit(77);
        char *argv[] = {"x_priv", "preinit_child", NULL};
        extern char **environ;
        execve(exe, argv, environ);
        _exit(99);
    }
    int code = ck_child_code(pid, 20000);
    if (code == 77)
        FAIL("preinit: cannot mount a tmpfs over /proc in a mount namespace (needs root)");
    else if (code != 0) {
        char *text = ck_slurp(err);
        FAIL("preinit without /proc: the child ended with %d:\n%s", code,
             text == NULL ? "" : text);
        free(text);
    }
    unlink(err);
    tracef("preinit_noproc", "ok code=%d", code);
    return ck_finish();
}

/* ---------------------------------------------------------------- secure */

/* A directory for the privileged copies: on a file system that honours
 * set-user-ID bits, reachable by nobody. */
static int
secure_dir(char *out, size_t len)
{
    const char *bases[] = {"/tmp", "/var/tmp", NULL, NULL};
    char own[4096];
    snprintf(own, sizeof own, "%s", ck_self_exe());
    char *slash = strrchr(own, '/');
    if (slash != NULL) {
        *slash = '\0';
        bases[2] = own;
    }
    for (int i = 0; bases[i] != NULL; i++) {
        struct statvfs vfs;
        if (statvfs(bases[i], &vfs) != 0 || (vfs.f_flag & ST_NOSUID) != 0)
            continue;
        snprintf(out, len, "%s/shmguard-priv-XXXXXX", bases[i]);
        if (mkdtemp(out) != NULL && chmod(out, 0755) == 0)
            return 1;
    }
    return 0;
}

static int
copy_file(const char *from, const char *to)
{
    size_t len = 0;
    char *data = ck_slurp_len(from, &len);
    if (data == NULL)
        return 0;
    int fd = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
    int ok = fd >= 0 && write(fd, data, len) == (ssize_t)len;
    if (fd >= 0)
        close(fd);
    free(data);
    return ok;
}

/* Runs CMD... and returns its exit status (-1 if it could not run). */
static int
run_cmd(char *const argv[])
{
    pid_t pid = ck_fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, 1);
        setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin", 1);
        execvp(argv[0], argv);
        _exit(127);
    }
    return ck_child_code(pid, 20000);
}

static int
entries(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* The value after "KEY " in TEXT, or -1000. */
static long
field_long(const char *text, const char *key)
{
    size_t klen = strlen(key);
    for (const char *line = text; line != NULL && *line != '\0';) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ')
            return strtol(line + klen + 1, NULL, 10);
        line = strchr(line, '\n');
        if (line != NULL)
            line++;
    }
    return -1000;
}

/* secure_child: what a privileged run does and sees. */
static int
scenario_secure_child(void)
{
    Dl_info info;
    memset(&info, 0, sizeof info);
    int loaded = dladdr((void *)&shmget, &info) != 0 && info.dli_fname != NULL &&
                 strstr(info.dli_fname, "libshmguard") != NULL;
    errno = 0;
    int id = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
    printf("loaded %d\nsecure %lu\nuid %d\nshmid %d\nerrno %d\n", loaded, getauxval(AT_SECURE),
           (int)getuid(), id, errno);
    fflush(stdout);
    /* leaked on purpose: the leak report must still come */
    return 0;
}

/* Runs COPY as nobody with SHMGUARD_OPTIONS=OPTS (unset if NULL); checks
 * what it printed and did. */
static void
run_secure(const char *what, const char *copy, const char *opts, const char *root_only,
           const char *dir, const char *etc)
{
    struct passwd *pw = getpwnam("nobody");
    char out[4096], err[4096];
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(err, sizeof err, "%s/err", dir);
    extern char **environ;
    char *envp[8];
    int n = 0;
    char opt_env[1024];
    if (opts != NULL) {
        snprintf(opt_env, sizeof opt_env, "SHMGUARD_OPTIONS=%s", opts);
        envp[n++] = opt_env;
    }
    for (char **e = environ; *e != NULL && n < 6; e++)
        if ((etc == NULL && strncmp(*e, "LD_PRELOAD=", 11) == 0) || strncmp(*e, "PATH=", 5) == 0)
            envp[n++] = *e;
    envp[n] = NULL;
    pid_t pid = ck_fork();
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
            _exit(98);
        /* ETC: this process's own /etc, whose ld.so.preload names the
         * libraries of LD_PRELOAD (a private mount namespace) */
        if (etc != NULL && (unshare(CLONE_NEWNS) != 0 ||
                            mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0 ||
                            mount(etc, "/etc", "none", MS_BIND, NULL) != 0))
            _exit(96);
        if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)
            _exit(97);
        char *argv[] = {"x_priv", "secure_child", NULL};
        execve(copy, argv, envp);
        _exit(99);
    }
    int code = ck_child_code(pid, 20000);
    char *o = ck_slurp(out), *e = ck_slurp(err);
    if (o == NULL || e == NULL) {
        FAIL("%s: cannot read the child's output", what);
        free(o);
        free(e);
        return;
    }
    long id = field_long(o, "shmid");
    if (id >= 0)
        raw_shmctl((int)id, IPC_RMID, NULL);
    long loaded = field_long(o, "loaded"), secure = field_long(o, "secure");
    int want_loaded = ck_expect_shmguard() && (getenv("LD_PRELOAD") == NULL || etc != NULL);
    if (code != 0)
        FAIL("%s: status %d, expected 0 (exitcode= must not apply)\nstdout:\n%s\nstderr:\n%s", what,
             code, o, e);
    if (secure != 1 || field_long(o, "uid") != (long)pw->pw_uid)
        FAIL("%s: the child is not a privileged run as nobody:\n%s", what, o);
    if (loaded != want_loaded)
        FAIL("%s: libshmguard %s in the child, expected %s", what, loaded ? "loaded" : "not loaded",
             want_loaded ? "loaded" : "not");
    if (id < 0)
        FAIL("%s: shmget failed (%s): fault= must not apply", what,
             ck_errname((int)field_long(o, "errno")));
    if (entries(root_only) != 0)
        FAIL("%s: a file was created in the root-only directory %s (log_path applied)", what,
             root_only);
    int total = 0;
    for (const char *p = e; *p != '\0'; p++)
        total += *p == '\n';
    int ignored = ck_count_lines(e, "warning: SHMGUARD_OPTIONS ignored", NULL);
    int leak = ck_count_lines(e, "leak: segment", NULL);
    int summary = ck_count_lines(e, "SUMMARY:", NULL);
    if (want_loaded) {
        int want_ignored = opts != NULL;
        if (ignored != want_ignored || leak != 1 || summary != 1 ||
            total != want_ignored + leak + summary)
            FAIL("%s: expected %d line saying the options were ignored, one leak line and the "
                 "SUMMARY, nothing else; stderr:\n%s",
                 what, want_ignored, e);
    } else if (total != 0) {
        FAIL("%s: libshmguard is not loaded, yet stderr says:\n%s", what, e);
    }
    tracef(what, "ok code=%d loaded=%ld ignored=%d leak=%d", code, loaded, ignored, leak);
    free(o);
    free(e);
    unlink(out);
    unlink(err);
}

/* DIR/etc: ld.so.cache (a copy) and an ld.so.preload naming the
 * libraries of LD_PRELOAD, one per line; its path in OUT. */
static int
preload_etc(char *out, size_t len, const char *dir)
{
    snprintf(out, len, "%s/etc", dir);
    char cache[4300], preload[4300];
    snprintf(cache, sizeof cache, "%s/ld.so.cache", out);
    snprintf(preload, sizeof preload, "%s/ld.so.preload", out);
    if (mkdir(out, 0755) != 0 || !copy_file("/etc/ld.so.cache", cache) || chmod(cache, 0644) != 0) {
        FAIL("cannot make %s: %s", out, ck_errname(errno));
        return 0;
    }
    FILE *f = fopen(preload, "w");
    if (f == NULL) {
        FAIL("cannot write %s: %s", preload, ck_errname(errno));
        return 0;
    }
    char list[4096];
    snprintf(list, sizeof list, "%s", getenv("LD_PRELOAD"));
    for (char *save = NULL, *lib = strtok_r(list, ": ", &save); lib != NULL;
         lib = strtok_r(NULL, ": ", &save))
        fprintf(f, "%s\n", lib);
    fclose(f);
    chmod(preload, 0644);
    return 1;
}

/* The privileged copies, removed at exit and on a fatal signal too (never
 * leave a set-user-ID-root program behind). */
static char copy[4200], capcopy[4200];

static void
remove_copies(void)
{
    if (copy[0] != '\0')
        unlink(copy);
    if (capcopy[0] != '\0')
        unlink(capcopy);
}

static int
scenario_secure(void)
{
    if (geteuid() != 0 || getpwnam("nobody") == NULL) {
        FAIL("secure needs root and a user nobody");
        return ck_finish();
    }
    char dir[4096];
    if (!secure_dir(dir, sizeof dir)) {
        FAIL("no directory on a file system without nosuid (/tmp, /var/tmp, the build dir)");
        return ck_finish();
    }
    char root_only[4200], opts[8600], etc[4200] = "";
    snprintf(root_only, sizeof root_only, "%s/root-only", dir);
    snprintf(copy, sizeof copy, "%s/x_priv.setuid", dir);
    snprintf(capcopy, sizeof capcopy, "%s/x_priv.filecap", dir);
    ck_cleanup_hook = remove_copies;
    /* a suppression of every leak, readable by nobody: were it applied,
     * the leak line would be missing */
    char supp[4200];
    snprintf(supp, sizeof supp, "%s/all.supp", dir);
    FILE *sf = fopen(supp, "w");
    if (sf == NULL || fputs("leak:\n", sf) == EOF || fclose(sf) != 0 || chmod(supp, 0644) != 0)
        FAIL("cannot write %s: %s", supp, ck_errname(errno));
    snprintf(opts, sizeof opts,
             "log_path=%s/x:fault=shmget@1=ENOSPC:exitcode=9:verbosity=2:suppressions=%s",
             root_only, supp);
    int ready = mkdir(root_only, 0700) == 0 && copy_file(ck_self_exe(), copy) &&
                chown(copy, 0, 0) == 0 && chmod(copy, 04755) == 0 &&
                copy_file(ck_self_exe(), capcopy) && chown(capcopy, 0, 0) == 0 &&
                chmod(capcopy, 0755) == 0;
    if (!ready) {
        FAIL("cannot prepare the privileged copies in %s: %s", dir, ck_errname(errno));
    } else {
        char *setcap[] = {"setcap", "cap_dac_override+ep", capcopy, NULL};
        int rc = run_cmd(setcap);
        if (rc != 0) {
            FAIL("setcap cap_dac_override+ep failed (status %d): install libcap2-bin", rc);
        } else {
            run_secure("setuid", copy, opts, root_only, dir, NULL);
            run_secure("setuid_no_options", copy, NULL, root_only, dir, NULL);
            run_secure("filecap", capcopy, opts, root_only, dir, NULL);
            /* Preloaded: ld.so ignored LD_PRELOAD above; /etc/ld.so.preload
             * applies to privileged programs too, so preload that way. */
            if (getenv("LD_PRELOAD") != NULL && preload_etc(etc, sizeof etc, dir)) {
                run_secure("setuid_ld_so_preload", copy, opts, root_only, dir, etc);
                run_secure("filecap_ld_so_preload", capcopy, opts, root_only, dir, etc);
            }
        }
    }
    unlink(copy);
    unlink(capcopy);
    unlink(supp);
    if (etc[0] != '\0') {
        char path[4300];
        snprintf(path, sizeof path, "%s/ld.so.cache", etc);
        unlink(path);
        snprintf(path, sizeof path, "%s/ld.so.preload", etc);
        unlink(path);
        rmdir(etc);
    }
    /* whatever a failing run created there */
    DIR *d = opendir(root_only);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            char path[4500];
            snprintf(path, sizeof path, "%s/%s", root_only, e->d_name);
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                unlink(path);
        }
        closedir(d);
    }
    rmdir(root_only);
    if (rmdir(dir) != 0)
        FAIL("cannot remove %s: %s", dir, ck_errname(errno));
    return ck_finish();
}

/* ------------------------------------------------------ start-up races */

static volatile int first_done;
static int first_id = -1;

static void *
first_call(void *arg)
{
    (void)arg;
    first_id = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
    __atomic_store_n(&first_done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static int saved_stderr = -1;
static int pipe_r = -1;

/* Makes stderr a full pipe and starts the first call in a thread, which
 * blocks writing the option warning. */
static pthread_t
block_first_call(void)
{
    const char *opts = getenv("SHMGUARD_OPTIONS");
    if (opts == NULL || strstr(opts, "bogus") == NULL) {
        FAIL("run with a bad option in SHMGUARD_OPTIONS (a warning to print)");
        exit(ck_finish());
    }
    int fds[2];
    if (pipe(fds) != 0) {
        FAIL("pipe: %s", ck_errname(errno));
        exit(1);
    }
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    char block[4096];
    memset(block, 'x', sizeof block);
    while (write(fds[1], block, sizeof block) > 0) {
    }
    while (write(fds[1], block, 1) > 0) {
    }
    fcntl(fds[1], F_SETFL, 0);
    fflush(stderr);
    saved_stderr = dup(2);
    dup2(fds[1], 2);
    close(fds[1]);
    pipe_r = fds[0];
    pthread_t t;
    if (pthread_create(&t, NULL, first_call, NULL) != 0) {
        dup2(saved_stderr, 2);
        FAIL("pthread_create");
        exit(1);
    }
    /* let it reach the write */
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    if (__atomic_load_n(&first_done, __ATOMIC_SEQ_CST)) {
        dup2(saved_stderr, 2);
        FAIL("the first call did not block on the full stderr (no warning printed?)");
        exit(1);
    }
    return t;
}

/* Drains the pipe until the first call is done; restores stderr and checks
 * that the warning was printed. */
static void
unblock_first_call(pthread_t t)
{
    fcntl(pipe_r, F_SETFL, O_NONBLOCK);
    char buf[4096];
    size_t warned = 0;
    for (int i = 0; i < 5000 && !__atomic_load_n(&first_done, __ATOMIC_SEQ_CST); i++) {
        ssize_t n;
        while ((n = read(pipe_r, buf, sizeof buf - 1)) > 0) {
            buf[n] = '\0';
            warned += strstr(buf, "bogus") != NULL;
        }
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    pthread_join(t, NULL);
    ssize_t n;
    while ((n = read(pipe_r, buf, sizeof buf - 1)) > 0) {
        buf[n] = '\0';
        warned += strstr(buf, "bogus") != NULL;
    }
    dup2(saved_stderr, 2);
    close(saved_stderr);
    close(pipe_r);
    if (first_id >= 0)
        ck_track(first_id);
    CHECK(first_id >= 0);
    if (warned == 0)
        FAIL("the option warning never came");
}

static int
scenario_fork_startup(void)
{
    pthread_t t = block_first_call();
    pid_t pid = ck_fork();
    if (pid == 0) {
        dup2(saved_stderr, 2);
        signal(SIGALRM, SIG_DFL);
        alarm(5 * (unsigned)ck_scale());
        int id = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
        if (id < 0)
            _exit(2);
        _exit(raw_shmctl(id, IPC_RMID, NULL) == 0 ? 0 : 3);
    }
    int code = ck_child_code(pid, 15000);
    unblock_first_call(t);
    if (code != 0)
        FAIL("the child's first call %s (code %d)",
             code == -SIGALRM ? "hung: killed by its alarm" : "failed", code);
    tracef("fork_startup", "ok code=%d", code);
    return ck_finish();
}

static volatile int handler_done;
static long handler_dt = -2, handler_at = -2;
static int handler_dt_errno, handler_at_errno;

static void
on_usr1(int sig)
{
    (void)sig;
    int saved = errno;
    errno = 0;
    handler_dt = shmdt((void *)PAGE);
    handler_dt_errno = errno;
    errno = 0;
    handler_at = (long)shmat(-1, NULL, 0);
    handler_at_errno = errno;
    __atomic_store_n(&handler_done, 1, __ATOMIC_SEQ_CST);
    errno = saved;
}

static int
scenario_signal_startup(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    pthread_t t = block_first_call();
    pthread_kill(t, SIGUSR1);
    for (int i = 0; i < 2500 * ck_scale() && !__atomic_load_n(&handler_done, __ATOMIC_SEQ_CST);
         i++) {
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (!__atomic_load_n(&handler_done, __ATOMIC_SEQ_CST)) {
        dup2(saved_stderr, 2);
        FAIL("a signal handler's shmdt during the first call hung");
        ck_flush_all();
        _exit(1);
    }
    unblock_first_call(t);
    CHECK_EQ(handler_dt, -1);
    CHECK_EQ(handler_dt_errno, EINVAL);
    CHECK_EQ(handler_at, -1);
    CHECK_EQ(handler_at_errno, EINVAL);
    tracef("signal_startup", "ok dt=%ld %s at=%ld %s", handler_dt, ck_errname(handler_dt_errno),
           handler_at, ck_errname(handler_at_errno));
    return ck_finish();
}

/* ---------------------------------------------------------------- escape */

#define FORGED "\n==1== shmguard: SUMMARY: forged\x1b[2J\xc2\x9b" "31m\\"

static int
scenario_escape_child(const char *dir)
{
    char missing[512], present[512];
    snprintf(missing, sizeof missing, "%s/missing" FORGED, dir);
    snprintf(present, sizeof present, "%s/present" FORGED, dir);
    int fd = open(present, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        FAIL("cannot create the test file: %s", ck_errname(errno));
        return 1;
    }
    close(fd);
    struct ck_res a = RES(ftok(missing, 1));
    WANT("ftok(missing, with controls)", a, ENOENT);
    a = RES(ftok(present, 1));
    WANT("ftok(present, with controls)", a, 0);
    unlink(present);
    return ck_failures == 0 ? 0 : 1;
}

static int
scenario_escape(void)
{
    const char *dir = ck_tmpdir();
    char opts[512], out[512], err[512];
    snprintf(opts, sizeof opts, "verbosity=2:log_path=%s/l.%%p.jsonl", dir);
    ck_tmp_name(out, sizeof out, "child.out");
    ck_tmp_name(err, sizeof err, "child.err");
    char *argv[] = {"x_priv", "escape_child", (char *)dir, NULL};
    pid_t pid;
    int code = ck_run_self(argv, opts, out, err, &pid);
    CHECK_EQ(code, 0);
    size_t len = 0;
    char *e = ck_slurp_len(err, &len);
    if (e == NULL) {
        FAIL("cannot read the child's stderr");
        return ck_finish();
    }
    char prefix[64];
    snprintf(prefix, sizeof prefix, "==%d== shmguard: ", (int)pid);
    int lines = 0;
    for (const char *line = e; *line != '\0';) {
        const char *nl = strchr(line, '\n');
        size_t n = nl == NULL ? strlen(line) : (size_t)(nl - line);
        if (strncmp(line, prefix, strlen(prefix)) != 0)
            FAIL("a stderr line does not begin with '%s': %.*s", prefix, (int)n, line);
        lines++;
        line = nl == NULL ? line + n : nl + 1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)e[i];
        if ((c < 0x20 && c != '\n') || c == 0x7f ||
            (c == 0xc2 && i + 1 < len && (unsigned char)e[i + 1] >= 0x80 &&
             (unsigned char)e[i + 1] < 0xa0)) {
            FAIL("stderr holds control character 0x%02x at byte %zu:\n%s", c, i, e);
            break;
        }
    }
    /* the failed ftok (verbosity 1) and the successful one (verbosity 2) */
    if (lines != 2)
        FAIL("expected 2 lines on stderr, got %d:\n%s", lines, e);
    struct ck_log *logs;
    int n = ck_logs_read(dir, "l.", &logs);
    CHECK_EQ(n, 1);
    for (int i = 0; i < n; i++) {
        if (logs[i].bad != 0)
            FAIL("log %s: %d lines are not JSON, first: %s", logs[i].name, logs[i].bad,
                 logs[i].bad_line);
        CHECK_EQ(logs[i].calls[4], 2);
    }
    free(logs);
    free(e);
    unlink(out);
    unlink(err);
    tracef("escape", "ok lines=%d logs=%d", lines, n);
    return ck_finish();
}

/* --------------------------------------------------------------- seccomp */

static int
scenario_seccomp(void)
{
    char *gone = ck_free_range(PAGE);
    pid_t pid = ck_fork();
    if (pid == 0) {
        ck_child_defaults();
        struct sock_filter filter[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
#ifdef __NR_newfstatat
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_newfstatat, 4, 0),
#else
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_fstatat64, 4, 0),
#endif
#ifdef __NR_stat
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_stat, 3, 0),
#else
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_statx, 3, 0),
#endif
#ifdef __NR_lstat
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_lstat, 2, 0),
#else
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_statx, 2, 0),
#endif
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_statx, 1, 0),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOENT & SECCOMP_RET_DATA)),
        };
        struct sock_fprog prog;
        memset(&prog, 0, sizeof prog);
        prog.len = (unsigned short)(sizeof filter / sizeof filter[0]);
        prog.filter = filter;
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
            prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
            _exit(77);
        /* the filter answers without reading the path: glibc gets ENOENT */
        struct stat st;
        errno = 0;
        if (stat(gone, &st) != -1 || errno != ENOENT)
            _exit(78);
        errno = 0;
        key_t k = ftok(gone, 1);
        if (k != -1 || errno != ENOENT)
            _exit(2);
        errno = 0;
        k = ftok("/", 1);
        if (k != -1 || errno != ENOENT)
            _exit(3);
        _exit(0);
    }
    int code = ck_child_code(pid, 20000);
    if (code == 77)
        FAIL("cannot install a seccomp filter");
    else if (code == 78)
        FAIL("the seccomp filter does not make stat fail with ENOENT");
    else if (code != 0)
        FAIL("ftok of an unmapped path under a seccomp filter: %s (code %d)",
             code == -SIGSEGV ? "crashed with SIGSEGV" : "wrong result", code);
    tracef("seccomp", "ok code=%d", code);
    return ck_finish();
}

int
main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "secure_child") == 0)
        return scenario_secure_child();
    ck_init();
    if (argc < 2) {
        FAIL("usage: x_priv SCENARIO");
        return ck_finish();
    }
    const char *s = argv[1];
    if (strcmp(s, "preinit_child") == 0)
        return scenario_preinit_child();
    if (strcmp(s, "escape_child") == 0 && argc == 3)
        return scenario_escape_child(argv[2]);
    if (strcmp(s, "secure") == 0)
        return scenario_secure();
    if (strcmp(s, "preinit") == 0)
        return scenario_preinit();
    if (strcmp(s, "fork_startup") == 0)
        return scenario_fork_startup();
    if (strcmp(s, "signal_startup") == 0)
        return scenario_signal_startup();
    if (strcmp(s, "escape") == 0)
        return scenario_escape();
    if (strcmp(s, "seccomp") == 0)
        return scenario_seccomp();
    FAIL("unknown scenario %s", s);
    return ck_finish();
}
