/*
 * wide: creates a segment that every user may read and write (mode 0666),
 * uses it and removes it. No leak, but shmguard's policy rule wide-mode
 * finds it (policy=strict would refuse the call).
 */
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>

int main(void) {
    int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0666);
    if (id < 0) {
        perror("wide: shmget");
        return 1;
    }
    char *p = shmat(id, NULL, 0);
    if (p != (void *)-1) {
        strcpy(p, "anyone may read this");
        shmdt(p);
    }
    shmctl(id, IPC_RMID, NULL);
    printf("wide: used a segment of mode 0666\n");
    return p != (void *)-1 ? 0 : 1;
}
