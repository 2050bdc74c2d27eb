/* Test program for `shmguard run` on sanitizer-instrumented programs
 * (cli/tests/sanitizers.rs builds it plain and with -fsanitize=address,
 * undefined, thread and leak).
 *
 *   sanitized [BUG]   create a segment and exit without removing it: print
 *                     its shmid, then "runtimes:" and the sanitizer
 *                     runtimes mapped into this process (from
 *                     /proc/self/maps), then "preloaded" when the shmguard
 *                     library is mapped too; then do BUG, if given:
 *                     overflow   write one byte past a 16-byte heap block
 *                     signed     overflow a signed int (undefined behaviour)
 *
 * Exit status: 0, or 1 with a message on stderr when a call fails (the
 * sanitizers choose their own status when they find something).
 */
#define _GNU_SOURCE
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>

static int mapped(const char *maps, const char *name) {
    return strstr(maps, name) != NULL;
}

int main(int argc, char **argv) {
    int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    if (id < 0) {
        perror("sanitized: shmget");
        return 1;
    }
    printf("%d\n", id);

    static char maps[1 << 20];
    FILE *f = fopen("/proc/self/maps", "r");
    if (f == NULL) {
        perror("sanitized: /proc/self/maps");
        return 1;
    }
    size_t n = fread(maps, 1, sizeof maps - 1, f);
    maps[n] = '\0';
    fclose(f);
    printf("runtimes:");
    const char *names[] = {"libasan", "libubsan", "libtsan", "liblsan"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (mapped(maps, names[i])) {
            printf(" %s", names[i] + 3);
        }
    }
    printf("\n%s\n", mapped(maps, "libshmguard") ? "preloaded" : "not preloaded");
    fflush(stdout);

    if (argc > 1 && strcmp(argv[1], "overflow") == 0) {
        volatile char *p = malloc(16);
        p[16] = 1;
        free((void *)p);
    } else if (argc > 1 && strcmp(argv[1], "signed") == 0) {
        volatile int big = INT_MAX;
        big = big + 1;
        printf("%d\n", big);
    }
    return 0;
}
