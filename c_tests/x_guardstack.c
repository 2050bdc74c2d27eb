/* x_guardstack.c: a guard-page hit names where the attachment was made
 * (run with SHMGUARD_OPTIONS=guard_pages=1:stacks=1; the suite compiles it
 * with -g -O0).
 *
 * - attached: a forked child attaches a segment in attach_guarded() and
 *   writes one byte past its end: it dies of SIGSEGV, and right under the
 *   "guard page hit" line of its stderr come "==PID== shmguard:     at
 *   attach_guarded (...x_guardstack.c:LINE:COL)" (the line of the shmat
 *   call), then more "    at" frames. The frames were resolved when the
 *   segment was attached: the SIGSEGV handler neither allocates nor waits.
 * - busy: the same while another thread attaches and detaches in a loop
 *   (taking the stacks' table, capturing and resolving stacks): the child
 *   still dies of SIGSEGV, within the timeout (no deadlock in the handler),
 *   with the "guard page hit" line; its frames may be missing if the table
 *   was busy at that moment, never anything else. */
#include "check.h"

#include <pthread.h>

#define PAGE 4096UL

static int attach_line;

static __attribute__((noinline)) char *
attach_guarded(int id)
{
    attach_line = __LINE__ + 1;
    char *p = shmat(id, NULL, 0);
    return p;
}

static volatile int churn_stop;

static void *
churn(void *arg)
{
    int id = *(int *)arg;
    while (!churn_stop) {
        void *q = shmat(id, NULL, 0);
        if (q != (void *)-1)
            shmdt(q);
    }
    return NULL;
}

/* The child: attaches ID in attach_guarded() (with a thread churning
 * attachments of CHURN_ID if BUSY), writes past the end; reaching the end
 * is a failure (exit 4). */
static void
guardstack_child(const char *errfile, int id, int churn_id, int busy)
{
    ck_child_start_signals();
    int fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || dup2(fd, 2) < 0)
        _exit(2);
    volatile char *p = attach_guarded(id);
    if (p == (void *)-1)
        _exit(3);
    pthread_t t;
    if (busy) {
        if (pthread_create(&t, NULL, churn, &churn_id) != 0)
            _exit(5);
        usleep(20000);
    }
    p[PAGE] = 1; /* one page: the first byte of the guard after it */
    _exit(4);
}

/* Splits TEXT (modified) into at most MAX lines. */
static int
split_lines(char *text, char **lines, int max)
{
    int n = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l != NULL && n < max;
         l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    return n;
}

static void
fault_case(const char *name, int busy)
{
    int id = ck_fixture(PAGE, 0600);
    int churn_id = ck_fixture(PAGE, 0600);
    char errfile[256];
    ck_tmp_name(errfile, sizeof errfile, name);
    pid_t pid = ck_fork();
    if (pid == 0)
        guardstack_child(errfile, id, churn_id, busy);
    int st = ck_wait(pid, 15000);
    int died = st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV;
    char *text = ck_slurp(errfile);
    unlink(errfile);
    if (text == NULL)
        text = strdup("");
    if (!died)
        FAIL("%s: the child was not killed by SIGSEGV (status 0x%x)", name, (unsigned)st);
    char *copy = strdup(text);
    char *lines[64];
    int n = copy != NULL ? split_lines(copy, lines, 64) : 0;
    int hit = -1;
    for (int i = 0; i < n; i++)
        if (strstr(lines[i], "shmguard: guard page hit:") != NULL) {
            hit = i;
            break;
        }
    char prefix[48], first[64], where[48];
    snprintf(prefix, sizeof prefix, "==%d== shmguard:     at ", (int)pid);
    snprintf(first, sizeof first, "%sattach_guarded (", prefix);
    snprintf(where, sizeof where, "x_guardstack.c:%d:", attach_line);
    if (hit < 0) {
        FAIL("%s: no \"guard page hit\" line in the child's stderr:\n%s", name, text);
    } else if (!busy) {
        const char *f0 = hit + 1 < n ? lines[hit + 1] : "";
        const char *f1 = hit + 2 < n ? lines[hit + 2] : "";
        if (strncmp(f0, first, strlen(first)) != 0 || strstr(f0, where) == NULL)
            FAIL("%s: the line under the guard page hit is not \"%s...%s...\":\n%s", name,
                 first, where, text);
        if (strncmp(f1, prefix, strlen(prefix)) != 0)
            FAIL("%s: no second frame under the guard page hit:\n%s", name, text);
    } else {
        /* frames may be missing (the table was busy), but any line after
         * the hit is a frame, and the first one is attach_guarded */
        for (int i = hit + 1; i < n; i++)
            if (strncmp(lines[i], prefix, strlen(prefix)) != 0)
                FAIL("%s: a line after the guard page hit is not a frame: %s", name, lines[i]);
        if (hit + 1 < n && strncmp(lines[hit + 1], first, strlen(first)) != 0)
            FAIL("%s: the first frame is not attach_guarded: %s", name, lines[hit + 1]);
    }
    tracef(name, "ok segv=%d hit_line=%d frames=%d", died, hit, hit < 0 ? 0 : n - hit - 1);
    free(copy);
    free(text);
}

int
main(int argc, char **argv)
{
    ck_init();
    /* the line of the shmat call, as the child will know it (a failed
     * shmat: EINVAL, nothing recorded) */
    (void)attach_guarded(-1);
    const char *which = argc > 1 ? argv[1] : "";
    if (strcmp(which, "") == 0 || strcmp(which, "attached") == 0)
        fault_case("attached", 0);
    if (strcmp(which, "") == 0 || strcmp(which, "busy") == 0)
        fault_case("busy", 1);
    return ck_finish();
}
