/*
 * A small program with the classic System V mistakes: it attaches a
 * segment and never detaches it, creates two segments and never marks them
 * with IPC_RMID (they would stay in the kernel until reboot), and tests
 * shmat's result against NULL instead of (void *)-1.
 *
 * `make demo` runs it linked with -lshmguard and preloaded; shmguard
 * explains the failed call and reports the leaks at exit.
 */
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>

int main(void)
{
    int table = shmget(IPC_PRIVATE, 64 * 1024, IPC_CREAT | 0600);
    int scratch = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    if (table == -1 || scratch == -1) {
        perror("shmget");
        return 1;
    }

    char *p = shmat(table, NULL, 0);
    if (p == NULL) { /* wrong: shmat fails with (void *)-1 */
        perror("shmat");
        return 1;
    }
    strcpy(p, "hello from shared memory");
    printf("leaky: wrote \"%s\" into shmid %d\n", p, table);

    /* A new segment of size 0 is invalid (EINVAL); shmguard says why. */
    int id = shmget(IPC_PRIVATE, 0, 0600);
    if (id == -1)
        perror("leaky: shmget(size 0)");

    /* Forgot: shmdt(p); shmctl(table, IPC_RMID, NULL); shmctl(scratch, IPC_RMID, NULL); */
    return 0;
}
