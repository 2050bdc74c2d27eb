/* teardown_dlopen.c LIBSHMGUARD: dlopen + dlclose of shmguard must not run
 * the exit check (nor exit) inside dlclose. It creates a segment through
 * the dlopen'ed shmget and leaks it, closes the library, then writes
 * "after dlclose" and exits normally. Prints "leaked N". */
#include <dlfcn.h>
#include <stdio.h>
#include <sys/shm.h>
#include <unistd.h>

int
main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    int (*get)(key_t, size_t, int);
    *(void **)&get = dlsym(h, "shmguard_shmget");
    if (get == NULL)
        return 2;
    int id = get(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    if (id < 0)
        return 2;
    printf("leaked %d\n", id);
    fflush(stdout);
    if (dlclose(h) != 0)
        return 2;
    static const char msg[] = "after dlclose\n";
    if (write(1, msg, sizeof msg - 1) != (ssize_t)(sizeof msg - 1))
        return 2;
    return 0;
}
