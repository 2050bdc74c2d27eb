/* teardown_prog.c [leak]: the exit check must see the program's whole
 * teardown. It creates a segment and hands it to teardown_peer, whose
 * destructor removes it; registers an atexit handler that prints; leaves
 * output in the stdio buffer; with "leak", also leaks a segment of its own.
 * Prints "shmid N" (the peer's) and "leaked N". tests/teardown.rs checks
 * the status, stderr, stdout and which segments are left. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/shm.h>

void peer_adopt(int shmid);

static void
in_atexit(void)
{
    printf("atexit ran\n");
}

int
main(int argc, char **argv)
{
    int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    if (id < 0) {
        perror("shmget");
        return 2;
    }
    peer_adopt(id);
    if (atexit(in_atexit) != 0)
        return 2;
    printf("shmid %d\n", id);
    if (argc > 1 && strcmp(argv[1], "leak") == 0) {
        int leaked = shmget(IPC_PRIVATE, 8192, IPC_CREAT | 0600);
        if (leaked < 0) {
            perror("shmget");
            return 2;
        }
        printf("leaked %d\n", leaked);
    }
    /* still in the buffer when exit begins */
    printf("buffered, no newline;");
    return 0;
}
