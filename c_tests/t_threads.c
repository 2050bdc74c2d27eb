/* t_threads.c: concurrent calls from several threads, and fork while other
 * threads are inside shm calls. */
#include "check.h"

#include <pthread.h>

#define PAGE 4096UL
#define WORKERS 4
#define ITERATIONS 150
#define FORKS 50

static int shared_id;

struct worker {
    int index;
    int iterations;
    int mismatches;
};

/* One worker: create, attach, write, compare with the raw view, fail on
 * purpose, detach, remove; plus attach/detach of the shared segment. */
static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < ITERATIONS; i++) {
        size_t size = PAGE + (size_t)(w->index * 1000 + i);
        int bad = 0;
        int id = ck_shmget(IPC_PRIVATE, size, IPC_CREAT | 0600);
        if (id < 0) {
            FAIL("worker %d: shmget: %s", w->index, ck_errname(errno));
            w->mismatches++;
            continue;
        }
        unsigned char *p = shmat(id, NULL, 0);
        unsigned char *q = raw_shmat(id, NULL, SHM_RDONLY);
        if (p == (void *)-1 || q == (void *)-1) {
            bad = 1;
        } else {
            p[size - 1] = (unsigned char)i;
            bad |= q[size - 1] != (unsigned char)i;
        }
        struct shmid_ds a, b;
        memset(&a, 0, sizeof a);
        bad |= shmctl(id, IPC_STAT, &a) != 0;
        bad |= ck_stat(id, &b) != 0;
        bad |= a.shm_segsz != size || a.shm_nattch != 2 || b.shm_nattch != 2;

        /* failures must carry the kernel's errno in every thread */
        struct ck_res e1 = RES(shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600));
        struct ck_res e2 = RES(raw_shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600));
        bad |= e1.ret != -1 || e1.err != EINVAL || e2.err != EINVAL;
        if (p != (void *)-1) {
            struct ck_res e3 = RES(shmdt(p + 1));
            bad |= e3.ret != -1 || e3.err != EINVAL;
            bad |= shmdt(p) != 0;
        }
        if (q != (void *)-1)
            bad |= raw_shmdt(q) != 0;

        void *s = shmat(shared_id, NULL, 0);
        bad |= s == (void *)-1;
        if (s != (void *)-1)
            bad |= shmdt(s) != 0;

        bad |= shmctl(id, IPC_RMID, NULL) != 0;
        bad |= ck_nattch(id) != -1;
        if (bad) {
            FAIL("worker %d: iteration %d differs from the kernel", w->index, i);
            w->mismatches++;
        }
        w->iterations++;
    }
    return NULL;
}

static void
case_workers(void)
{
    pthread_t t[WORKERS];
    struct worker w[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        w[i] = (struct worker){i, 0, 0};
        CHECK_EQ(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < WORKERS; i++)
        CHECK_EQ(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < WORKERS; i++) {
        char name[32];
        snprintf(name, sizeof name, "threads_worker_%d", i);
        CHECK_EQ(w[i].iterations, ITERATIONS);
        tracef(name, "ok iterations=%d mismatches=%d", w[i].iterations, w[i].mismatches);
    }
    CHECK_EQ(ck_nattch(shared_id), 0);
    tracef("threads_shared_nattch_after", "ok nattch=%ld", ck_nattch(shared_id));
}

static volatile int stop_busy;

/* Keep the library busy: a tight loop of calls until told to stop. */
static void *
busy_main(void *arg)
{
    long *calls = arg;
    while (!__atomic_load_n(&stop_busy, __ATOMIC_SEQ_CST)) {
        void *p = shmat(shared_id, NULL, 0);
        if (p == (void *)-1) {
            FAIL("busy thread: shmat: %s", ck_errname(errno));
            break;
        }
        struct shmid_ds ds;
        shmctl(shared_id, IPC_STAT, &ds);
        shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600); /* a failure, EINVAL */
        shmdt(p);
        (*calls)++;
    }
    return NULL;
}

static void
case_fork_while_busy(void)
{
    /* the children record their ids here so that the parent can clean up
     * after a child that died halfway */
    int *ids = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(ids != MAP_FAILED);
    if (ids == MAP_FAILED)
        return;
    for (int i = 0; i < FORKS; i++)
        ids[i] = -1;

    pthread_t t[3];
    long calls[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++)
        CHECK_EQ(pthread_create(&t[i], NULL, busy_main, &calls[i]), 0);

    int failed = 0, done = 0;
    for (int i = 0; i < FORKS; i++) {
        pid_t pid = ck_fork();
        if (pid == 0) {
            ck_child_defaults();
            int id = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
            if (id < 0)
                _exit(10);
            ids[i] = id;
            char *p = shmat(id, NULL, 0);
            if (p == (void *)-1)
                _exit(11);
            p[0] = 'x';
            struct ck_res e = RES(shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600));
            if (e.ret != -1 || e.err != EINVAL)
                _exit(12);
            if (shmdt(p) != 0)
                _exit(13);
            if (shmctl(id, IPC_RMID, NULL) != 0)
                _exit(14);
            if (ck_nattch(id) != -1)
                _exit(15);
            _exit(0);
        }
        int code = ck_child_code(pid, 5000);
        if (ids[i] >= 0)
            ck_track(ids[i]);
        if (code != 0) {
            FAIL("fork %d while busy: child ended with %d", i, code);
            failed++;
        }
        done++;
    }
    __atomic_store_n(&stop_busy, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(pthread_join(t[i], NULL), 0);
    CHECK(calls[0] + calls[1] + calls[2] > 0);
    CHECK_EQ(ck_nattch(shared_id), 0);
    munmap(ids, PAGE);
    tracef("threads_fork_while_busy", "ok forks=%d failed=%d", done, failed);
}

int
main(void)
{
    ck_init();
    shared_id = ck_fixture(PAGE, 0600);
    case_workers();
    case_fork_while_busy();
    return ck_finish();
}
