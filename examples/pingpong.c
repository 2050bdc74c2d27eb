/*
 * pingpong: a parent creates a private segment, a forked child attaches it
 * and writes a message, the parent reads it; both detach and the parent
 * removes the segment. Nothing leaks: shmguard reports both processes
 * clean.
 */
#define _DEFAULT_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

static int fail(const char *what) {
    perror(what);
    return 1;
}

int main(void) {
    int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | IPC_EXCL | 0600);
    if (id < 0)
        return fail("pingpong: shmget");
    pid_t child = fork();
    if (child < 0) {
        shmctl(id, IPC_RMID, NULL);
        return fail("pingpong: fork");
    }
    if (child == 0) {
        char *p = shmat(id, NULL, 0);
        if (p == (void *)-1)
            _exit(1);
        strcpy(p, "hello from the child");
        _exit(shmdt(p) == 0 ? 0 : 1);
    }
    int status = 0;
    int ok = waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    char *p = shmat(id, NULL, SHM_RDONLY);
    if (p != (void *)-1) {
        if (ok)
            printf("pingpong: the child said \"%s\"\n", p);
        shmdt(p);
    }
    shmctl(id, IPC_RMID, NULL);
    return ok && p != (void *)-1 ? 0 : 1;
}
