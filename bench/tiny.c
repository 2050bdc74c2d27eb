/*
 * tiny: one shmget(IPC_PRIVATE) and its IPC_RMID, then exit: the process a
 * `shmguard run` tree of the benchmark is made of. Exit status 1 if a call
 * fails.
 */
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/shm.h>

int main(void)
{
    int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    if (id < 0) {
        perror("tiny: shmget");
        return 1;
    }
    if (shmctl(id, IPC_RMID, NULL) != 0) {
        perror("tiny: shmctl(IPC_RMID)");
        return 1;
    }
    return 0;
}
