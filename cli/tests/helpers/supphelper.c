/* Test helper for suppressions (cli/tests/suppressions.rs): leaks and
 * policy findings made in known functions, so that suppressions can name
 * them by key, by command and by a frame of their stack.
 *
 *   supphelper leaks      creates key 0x5eed0001 in make_table() and an
 *                         IPC_PRIVATE segment in make_scratch(), attaches
 *                         the second and never detaches it; removes
 *                         neither; prints both shmids
 *   supphelper wide KEY   shmget(KEY, IPC_CREAT|0666) (findings wide-mode
 *                         and key-without-excl), then removes the segment;
 *                         prints its shmid
 *
 * Exit status: 0, or 1 with a message on stderr when a call fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>

static int fail(const char *what) {
    fprintf(stderr, "supphelper: %s: %s\n", what, strerror(errno));
    exit(1);
}

__attribute__((noinline)) static int make_table(void) {
    int id = shmget((key_t)0x5eed0001, 4096, IPC_CREAT | IPC_EXCL | 0600);
    if (id == -1)
        fail("shmget make_table");
    return id;
}

__attribute__((noinline)) static int make_scratch(void) {
    int id = shmget(IPC_PRIVATE, 8192, IPC_CREAT | 0600);
    if (id == -1)
        fail("shmget make_scratch");
    if (shmat(id, NULL, 0) == (void *)-1)
        fail("shmat");
    return id;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "leaks") == 0) {
        int a = make_table();
        int b = make_scratch();
        printf("%d\n%d\n", a, b);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "wide") == 0) {
        key_t key = (key_t)strtoul(argv[2], NULL, 0);
        int id = shmget(key, 4096, IPC_CREAT | 0666);
        if (id == -1)
            fail("shmget");
        printf("%d\n", id);
        if (shmctl(id, IPC_RMID, NULL) == -1)
            fail("shmctl");
        return 0;
    }
    fprintf(stderr, "usage: supphelper leaks | wide KEY\n");
    return 2;
}
