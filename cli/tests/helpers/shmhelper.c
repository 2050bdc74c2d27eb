/* Test helper for the shmguard command's integration tests: makes System V
 * segments in known ways and prints their shmids on stdout, one per line.
 * It forks, which the Rust test binaries (threaded) must not do themselves.
 *
 *   shmhelper create SIZE [KEY]   create a segment and exit without removing it
 *   shmhelper hold SIZE [KEY]     create and attach, print, wait for EOF on stdin
 *   shmhelper fork-orphan SIZE    a forked child creates a segment and exits
 *   shmhelper double-fork SIZE MS the child exits at once; the grandchild,
 *                                 reparented, waits MS ms, creates, exits
 *   shmhelper mixed               leaks one segment (created, never removed)
 *                                 and one attachment (segment marked with
 *                                 IPC_RMID, never detached), and fails two
 *                                 calls with EINVAL; prints both shmids
 *   shmhelper tidy                creates, attaches, detaches, removes
 *   shmhelper keep SIZE [UID]     create a segment (as effective uid UID when
 *                                 given, then back to root), leave it
 *                                 unattached, print, wait for EOF on stdin
 *   shmhelper count-signals MS    count the SIGINT and SIGTERM received in MS
 *                                 ms after printing "ready", then print
 *                                 "INT=n TERM=n"
 *
 * Exit status: 0, or 1 with a message on stderr when a call fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int fail(const char *what) {
    fprintf(stderr, "shmhelper: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int create(size_t size, key_t key) {
    int id = shmget(key, size, IPC_CREAT | IPC_EXCL | 0600);
    if (id == -1)
        fail("shmget");
    printf("%d\n", id);
    fflush(stdout);
    return id;
}

static volatile sig_atomic_t got_int, got_term;

static void count(int sig) {
    if (sig == SIGINT)
        got_int++;
    else
        got_term++;
}

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: shmhelper create|hold|fork-orphan|double-fork|mixed|tidy ...\n");
        return 2;
    }
    const char *what = argv[1];
    size_t size = argc > 2 ? strtoul(argv[2], NULL, 0) : 4096;
    key_t key = argc > 3 ? (key_t)strtol(argv[3], NULL, 0) : IPC_PRIVATE;

    if (strcmp(what, "create") == 0) {
        create(size, key);
        return 0;
    }
    if (strcmp(what, "hold") == 0) {
        int id = create(size, key);
        void *p = shmat(id, NULL, 0);
        if (p == (void *)-1)
            fail("shmat");
        printf("attached\n");
        fflush(stdout);
        char buf[64];
        while (read(0, buf, sizeof buf) > 0) {
        }
        shmdt(p);
        return 0;
    }
    if (strcmp(what, "fork-orphan") == 0) {
        pid_t pid = fork();
        if (pid == -1)
            fail("fork");
        if (pid == 0) {
            create(size, key);
            exit(0);
        }
        int status;
        if (waitpid(pid, &status, 0) == -1)
            fail("waitpid");
        return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    }
    if (strcmp(what, "double-fork") == 0) {
        long ms = argc > 3 ? strtol(argv[3], NULL, 0) : 300;
        pid_t pid = fork();
        if (pid == -1)
            fail("fork");
        if (pid == 0) {
            pid_t grandchild = fork();
            if (grandchild == -1)
                fail("fork");
            if (grandchild == 0) {
                /* Outlive the parent and the grandparent. */
                sleep_ms(ms);
                create(size, IPC_PRIVATE);
                exit(0);
            }
            _exit(0);
        }
        int status;
        if (waitpid(pid, &status, 0) == -1)
            fail("waitpid");
        return 0;
    }
    if (strcmp(what, "mixed") == 0) {
        int leaked = create(4096, IPC_PRIVATE);
        int attached = create(8192, IPC_PRIVATE);
        void *p = shmat(attached, NULL, 0);
        if (p == (void *)-1)
            fail("shmat");
        if (shmctl(attached, IPC_RMID, NULL) == -1)
            fail("shmctl IPC_RMID");
        if (shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600) != -1 || errno != EINVAL)
            fail("shmget of size 0 should fail with EINVAL");
        struct shmid_ds ds;
        if (shmctl(-1, IPC_STAT, &ds) != -1 || errno != EINVAL)
            fail("shmctl(-1) should fail with EINVAL");
        (void)leaked;
        return 0; /* exit normally: the leak check runs */
    }
    if (strcmp(what, "tidy") == 0) {
        int id = create(size, IPC_PRIVATE);
        void *p = shmat(id, NULL, 0);
        if (p == (void *)-1)
            fail("shmat");
        if (shmdt(p) == -1)
            fail("shmdt");
        if (shmctl(id, IPC_RMID, NULL) == -1)
            fail("shmctl IPC_RMID");
        return 0;
    }
    if (strcmp(what, "keep") == 0) {
        uid_t uid = argc > 3 ? (uid_t)strtoul(argv[3], NULL, 0) : geteuid();
        uid_t was = geteuid();
        if (uid != was && seteuid(uid) == -1)
            fail("seteuid");
        create(size, IPC_PRIVATE);
        if (uid != was && seteuid(was) == -1)
            fail("seteuid back");
        char buf[64];
        while (read(0, buf, sizeof buf) > 0) {
        }
        return 0;
    }
    if (strcmp(what, "count-signals") == 0) {
        long ms = argc > 2 ? strtol(argv[2], NULL, 0) : 1000;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = count;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGINT, &sa, NULL) == -1 || sigaction(SIGTERM, &sa, NULL) == -1)
            fail("sigaction");
        printf("ready\n");
        fflush(stdout);
        long end = now_ms() + ms;
        for (long left; (left = end - now_ms()) > 0;)
            sleep_ms(left);
        printf("INT=%d TERM=%d\n", (int)got_int, (int)got_term);
        return 0;
    }
    fprintf(stderr, "shmhelper: unknown command %s\n", what);
    return 2;
}
