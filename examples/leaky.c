/*
 * leaky KEY: creates a segment under KEY (IPC_CREAT|IPC_EXCL, mode 0600),
 * writes to it, detaches, and exits without removing it: the segment
 * stays in the kernel, a leak shmguard reports. `make clean` removes it
 * (ipcrm -M KEY); while it is there, leaky fails with EEXIST.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: leaky KEY\n");
        return 2;
    }
    key_t key = (key_t)strtoul(argv[1], NULL, 0);
    int id = shmget(key, 8192, IPC_CREAT | IPC_EXCL | 0600);
    if (id < 0) {
        int e = errno;
        fprintf(stderr, "leaky: shmget(%s): %s%s\n", argv[1], strerror(e),
                e == EEXIST ? " (left by an earlier run: make -C examples clean removes it)" : "");
        return 1;
    }
    char *p = shmat(id, NULL, 0);
    if (p == (void *)-1) {
        perror("leaky: shmat");
        return 1;
    }
    strcpy(p, "this segment outlives its creator");
    shmdt(p);
    printf("leaky: left a segment behind\n");
    return 0;
}
