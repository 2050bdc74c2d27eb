/* t_fork.c: attachments and segments across fork, exec and process exit.
 * Children report through their exit status: 0 = all checks passed, any
 * other number names the first check that failed. */
#include "check.h"

#define PAGE 4096UL

extern char **environ;

/* In a child: nattch by the libc name and by the raw call; both must be
 * equal, else -2. */
static long
child_nattch(int id)
{
    struct shmid_ds a, b;
    memset(&a, 0, sizeof a);
    if (shmctl(id, IPC_STAT, &a) != 0)
        return -1;
    if (ck_stat(id, &b) != 0 || a.shm_nattch != b.shm_nattch)
        return -2;
    return (long)a.shm_nattch;
}

/* The program re-executed by a forked child: the attachment it inherited
 * through fork is gone after exec, so only the parent's remains. */
static int
exec_child_main(const char *arg)
{
    int id = atoi(arg);
    long n = child_nattch(id);
    if (n == 1)
        return 0;
    return n == 2 ? 2 : 3;
}

static void
case_nattch_across_fork(void)
{
    int id = ck_fixture(2 * PAGE, 0600);
    char *p = shmat(id, NULL, 0);
    CHECK(p != (void *)-1);
    CHECK_EQ(ck_nattch(id), 1);
    pid_t pid = ck_fork();
    if (pid == 0) {
        ck_child_defaults();
        if (child_nattch(id) != 2)
            _exit(10);
        if (shmdt(p) != 0)
            _exit(11);
        if (child_nattch(id) != 1)
            _exit(12);
        if (shmdt(p) != -1 || errno != EINVAL)
            _exit(13);
        _exit(0);
    }
    int code = ck_child_code(pid, 10000);
    CHECK_EQ(code, 0);
    long after = ck_nattch(id);
    CHECK_EQ(after, 1);
    /* the child's detach left the parent's mapping alone */
    CHECK_EQ(strcmp(ck_map_perms(p), "rw-s"), 0);
    p[0] = 1;
    struct ck_res d = RES(shmdt(p));
    WANT("fork_nattch", d, 0);
    tracef("fork_nattch", "ok child=%d nattch_after=%ld", code, after);
}

static void
case_child_writes(void)
{
    int id = ck_fixture(10000, 0600);
    unsigned char *p = shmat(id, NULL, 0);
    CHECK(p != (void *)-1);
    pid_t pid = ck_fork();
    if (pid == 0) {
        ck_child_defaults();
        for (size_t i = 0; i < 10000; i++)
            p[i] = (unsigned char)(i * 7 + 3);
        _exit(0);
    }
    int code = ck_child_code(pid, 10000);
    size_t wrong = 0;
    for (size_t i = 0; i < 10000; i++)
        wrong += p[i] != (unsigned char)(i * 7 + 3);
    CHECK_EQ(code, 0);
    CHECK_EQ(wrong, 0);
    /* the child ended without detaching: exit dropped its attachment */
    long n = ck_nattch(id);
    CHECK_EQ(n, 1);
    CHECK_EQ(shmdt(p), 0);
    tracef("fork_child_writes_visible", "ok child=%d wrong_bytes=%zu nattch=%ld", code, wrong,
           n);
}

static void
case_exec_drops(const char *self)
{
    int id = ck_fixture(PAGE, 0600);
    void *p = shmat(id, NULL, 0);
    CHECK(p != (void *)-1);
    char arg[32];
    snprintf(arg, sizeof arg, "%d", id);
    pid_t pid = ck_fork();
    if (pid == 0) {
        ck_child_defaults();
        char *argv[] = {(char *)self, "--exec-child", arg, NULL};
        execve("/proc/self/exe", argv, environ);
        _exit(99);
    }
    int code = ck_child_code(pid, 20000);
    CHECK_EQ(code, 0);
    CHECK_EQ(ck_nattch(id), 1);
    CHECK_EQ(shmdt(p), 0);
    tracef("fork_exec_drops_attachments", "ok child=%d", code);
}

static void
case_persists_after_creator(void)
{
    key_t key = ck_key(20, 0);
    pid_t pid = ck_fork();
    if (pid == 0) {
        ck_child_defaults();
        int id = shmget(key, 3000, IPC_CREAT | IPC_EXCL | 0600);
        if (id < 0)
            _exit(10);
        char *p = shmat(id, NULL, 0);
        if (p == (void *)-1)
            _exit(11);
        strcpy(p, "written by the child");
        if (shmdt(p) != 0)
            _exit(12);
        _exit(0);
    }
    int code = ck_child_code(pid, 10000);
    CHECK_EQ(code, 0);
    struct ck_res lib = RES(shmget(key, 0, 0));
    struct ck_res raw = RES(raw_shmget(key, 0, 0));
    SAME("fork_segment_outlives_creator", lib, raw);
    WANT("fork_segment_outlives_creator", lib, 0);
    int data_ok = 0, cpid_ok = 0;
    if (lib.ret != -1) {
        int id = (int)lib.ret;
        ck_track(id);
        CHECK_EQ(lib.ret, raw.ret);
        struct shmid_ds ds;
        memset(&ds, 0, sizeof ds);
        CHECK_EQ(shmctl(id, IPC_STAT, &ds), 0);
        cpid_ok = ds.shm_cpid == pid;
        CHECK(cpid_ok);
        CHECK_EQ(ds.shm_nattch, 0);
        CHECK_EQ(ds.shm_segsz, 3000);
        char *p = shmat(id, NULL, SHM_RDONLY);
        CHECK(p != (void *)-1);
        if (p != (void *)-1) {
            data_ok = strcmp(p, "written by the child") == 0;
            CHECK(data_ok);
            CHECK_EQ(shmdt(p), 0);
        }
        CHECK_EQ(shmctl(id, IPC_RMID, NULL), 0);
        CHECK_EQ(ck_nattch(id), -1);
    }
    trace_ok("fork_segment_outlives_creator", lib, "cpid_is_child=%d data=%d", cpid_ok,
             data_ok);
}

static void
case_rmid_while_child_attached(void)
{
    int id = ck_fixture(PAGE, 0600);
    int up[2], down[2];
    CHECK_EQ(pipe(up), 0);
    CHECK_EQ(pipe(down), 0);
    pid_t pid = ck_fork();
    if (pid == 0) {
        ck_child_defaults();
        char c = 0;
        close(up[0]);
        close(down[1]);
        char *p = shmat(id, NULL, 0);
        if (p == (void *)-1)
            _exit(10);
        p[0] = 'c';
        if (write(up[1], "a", 1) != 1)
            _exit(11);
        if (read(down[0], &c, 1) != 1)
            _exit(12);
        /* the parent marked it: still ours until we detach */
        if (p[0] != 'c')
            _exit(13);
        if (shmdt(p) != 0)
            _exit(14);
        _exit(0);
    }
    close(up[1]);
    close(down[0]);
    char c = 0;
    CHECK_EQ(read(up[0], &c, 1), 1);
    struct ck_res m = RES(shmctl(id, IPC_RMID, NULL));
    WANT("fork_rmid_while_child_attached", m, 0);
    struct shmid_ds a, b;
    memset(&a, 0, sizeof a);
    int alive = shmctl(id, IPC_STAT, &a) == 0;
    CHECK(alive);
    CHECK_EQ(ck_stat(id, &b), 0);
    SAME_DS("fork_rmid_while_child_attached", &a, &b);
    CHECK_EQ(a.shm_nattch, 1);
    CHECK(a.shm_perm.mode & SHM_DEST);
    CHECK_EQ(write(down[1], "d", 1), 1);
    int code = ck_child_code(pid, 10000);
    CHECK_EQ(code, 0);
    struct ck_res after = RES(shmctl(id, IPC_STAT, &a));
    struct ck_res after_raw = RES(ck_stat(id, &b));
    SAME("fork_rmid_while_child_attached", after, after_raw);
    WANT("fork_rmid_while_child_attached", after, EINVAL);
    close(up[0]);
    close(down[1]);
    trace_ok("fork_rmid_while_child_attached", m, "alive_while_attached=%d child=%d after=%s",
             alive, code, ck_outcome(after));
}

/* A child marks the parent's segment; the parent's detach destroys it. */
static void
case_child_marks(void)
{
    int id = ck_fixture(PAGE, 0600);
    void *p = shmat(id, NULL, 0);
    CHECK(p != (void *)-1);
    pid_t pid = ck_fork();
    if (pid == 0) {
        ck_child_defaults();
        if (shmctl(id, IPC_RMID, NULL) != 0)
            _exit(10);
        _exit(child_nattch(id) == 2 ? 0 : 11);
    }
    int code = ck_child_code(pid, 10000);
    CHECK_EQ(code, 0);
    long n = ck_nattch(id);
    CHECK_EQ(n, 1);
    struct ck_res d = RES(shmdt(p));
    WANT("fork_child_marks", d, 0);
    CHECK_EQ(ck_nattch(id), -1);
    trace_ok("fork_child_marks", d, "child=%d nattch_before_detach=%ld gone=%d", code, n,
             ck_nattch(id) == -1);
}

/* Children of children: attachments are inherited at every level. */
static void
case_grandchild(void)
{
    int id = ck_fixture(PAGE, 0600);
    volatile int *p = shmat(id, NULL, 0);
    CHECK(p != (void *)-1);
    pid_t pid = ck_fork();
    if (pid == 0) {
        ck_child_defaults();
        fflush(NULL);
        pid_t g = fork();
        if (g < 0)
            _exit(10);
        if (g == 0) {
            p[0] = 42;
            _exit(child_nattch(id) == 3 ? 0 : 11);
        }
        int st = 0;
        if (waitpid(g, &st, 0) != g || !WIFEXITED(st))
            _exit(12);
        if (WEXITSTATUS(st) != 0)
            _exit(WEXITSTATUS(st));
        _exit(child_nattch(id) == 2 ? 0 : 13);
    }
    int code = ck_child_code(pid, 10000);
    CHECK_EQ(code, 0);
    int value = p[0];
    CHECK_EQ(value, 42);
    CHECK_EQ(ck_nattch(id), 1);
    CHECK_EQ(shmdt((void *)p), 0);
    tracef("fork_grandchild", "ok child=%d value=%d", code, value);
}

int
main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--exec-child") == 0) {
        ck_check_mode();
        return exec_child_main(argv[2]);
    }
    ck_init();
    case_nattch_across_fork();
    case_child_writes();
    case_exec_drops(argv[0]);
    case_persists_after_creator();
    case_rmid_while_child_attached();
    case_child_marks();
    case_grandchild();
    return ck_finish();
}
