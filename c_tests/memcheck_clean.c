/* memcheck_clean.c: a program that leaks nothing, neither memory nor
 * segments, for c_tests/memcheck.sh: under valgrind's memcheck it must be
 * as clean with shmguard (linked or preloaded, with any options) as
 * without it.
 *
 * It creates a private and a keyed segment (the keyed one with mode 0640
 * and without IPC_EXCL, so that the policy has findings to report),
 * attaches, writes, detaches and removes them, in the process and in a
 * forked child, and from two threads. Exit status 0 when every call did
 * what it should. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

static int
cycle(key_t key, int flags)
{
    int id = shmget(key, 4096, flags);
    if (id < 0)
        return 1;
    char *p = shmat(id, NULL, 0);
    if (p == (void *)-1) {
        shmctl(id, IPC_RMID, NULL);
        return 2;
    }
    p[0] = 1;
    p[4095] = 2;
    int bad = shmdt(p) != 0;
    bad |= shmctl(id, IPC_RMID, NULL) != 0;
    return bad ? 3 : 0;
}

static void *
thread(void *arg)
{
    (void)arg;
    int bad = 0;
    for (int i = 0; i < 20; i++)
        bad |= cycle(IPC_PRIVATE, IPC_CREAT | 0600);
    return bad ? (void *)1 : NULL;
}

int
main(void)
{
    /* a key of this process's own: pid in the low bits */
    key_t key = (key_t)(0x4d000000 | (getpid() & 0xffffff));
    int bad = cycle(IPC_PRIVATE, IPC_CREAT | 0600);
    bad |= cycle(key, IPC_CREAT | 0640);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, thread, NULL) != 0)
            return 10;
    for (int i = 0; i < 2; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad |= r != NULL;
    }
    pid_t pid = fork();
    if (pid < 0)
        return 11;
    if (pid == 0)
        _exit(cycle(IPC_PRIVATE, IPC_CREAT | 0600) == 0 ? 0 : 1);
    int st = 0;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        bad = 1;
    if (bad)
        fprintf(stderr, "memcheck_clean: a call failed\n");
    return bad;
}
