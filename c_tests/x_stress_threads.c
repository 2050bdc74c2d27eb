/* x_stress_threads.c SCENARIO: threads that attach and detach at full
 * speed (stress.h: phases, deadlock detection, cleanup).
 *
 *   reuse         2 threads attach and detach same-size segments, so the
 *                 kernel reuses addresses between them: every live attachment
 *                 must stay known (shmguard_attachment_size, leak count).
 *   fork_busy     2 threads attach and detach without pause while the main
 *                 thread forks children that attach: no child may block. */
#include "stress.h"

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

int
main(int argc, char **argv)
{
    static const struct stress_scenario scenarios[] = {
        {"reuse", scenario_reuse, 0},
        {"fork_busy", scenario_fork_busy, 0},
        {NULL, NULL, 0},
    };
    return stress_main(argc, argv, "x_stress_threads", scenarios);
}
