/* lib_ctor.c: a shared library whose constructor makes the process's first
 * shm calls (before main, maybe before libshmguard's own constructor) and
 * whose destructor makes the last ones (after main returned). t_ctor.c
 * reads what the constructor recorded in the globals below. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int ctor_ran;
int ctor_id = -1;
int ctor_shmget_errno;
long ctor_segsz = -1;
int ctor_shmat_ok;
int ctor_nattch_attached = -1;
int ctor_data_ok;
int ctor_shmdt_ret = -2;
int ctor_nattch_detached = -1;
int ctor_size0_ret = -2;
int ctor_size0_errno;
int ctor_rmid_ret = -2;
int ctor_stat_after_ret = -2;
int ctor_stat_after_errno;
int ctor_ftok_ok;
char ctor_shmget_from[256];

static long
raw_nattch(int id)
{
    struct shmid_ds ds;
    if (syscall(SYS_shmctl, id, IPC_STAT, &ds) != 0)
        return -1;
    return (long)ds.shm_nattch;
}

__attribute__((constructor)) static void
lib_ctor_init(void)
{
    Dl_info info;
    ctor_ran = 1;
    if (dladdr((void *)&shmget, &info) != 0 && info.dli_fname != NULL)
        snprintf(ctor_shmget_from, sizeof ctor_shmget_from, "%s", info.dli_fname);

    errno = 0;
    ctor_id = shmget(IPC_PRIVATE, 10000, IPC_CREAT | 0600);
    ctor_shmget_errno = errno;
    if (ctor_id < 0)
        return;
    struct shmid_ds ds;
    if (syscall(SYS_shmctl, ctor_id, IPC_STAT, &ds) == 0)
        ctor_segsz = (long)ds.shm_segsz;

    char *p = shmat(ctor_id, NULL, 0);
    ctor_shmat_ok = p != (void *)-1;
    if (ctor_shmat_ok) {
        ctor_nattch_attached = (int)raw_nattch(ctor_id);
        strcpy(p, "from the constructor");
        ctor_data_ok = strcmp(p, "from the constructor") == 0;
        ctor_shmdt_ret = shmdt(p);
        ctor_nattch_detached = (int)raw_nattch(ctor_id);
    }

    errno = 0;
    ctor_size0_ret = shmget(IPC_PRIVATE, 0, IPC_CREAT | 0600);
    ctor_size0_errno = errno;

    ctor_rmid_ret = shmctl(ctor_id, IPC_RMID, NULL);
    errno = 0;
    ctor_stat_after_ret = shmctl(ctor_id, IPC_STAT, &ds);
    ctor_stat_after_errno = errno;

    struct stat st;
    if (stat("/", &st) == 0) {
        uint32_t k = ((uint32_t)st.st_ino & 0xffffu) | (((uint32_t)st.st_dev & 0xffu) << 16) |
                     (5u << 24);
        ctor_ftok_ok = ftok("/", 5) == (key_t)k;
    }
}

static void
dtor_fail(const char *what)
{
    char msg[160];
    int n = snprintf(msg, sizeof msg, "FAIL: lib_ctor.c: destructor: %s\n", what);
    if (write(2, msg, (size_t)n) < 0) {
        /* nothing more to do */
    }
    _exit(3);
}

/* The last shm calls of the process, after main returned and after the
 * atexit handlers: they must still work and match the kernel. */
__attribute__((destructor)) static void
lib_ctor_fini(void)
{
    int id = shmget(IPC_PRIVATE, 5000, IPC_CREAT | 0600);
    if (id < 0)
        dtor_fail("shmget failed");
    char *p = shmat(id, NULL, 0);
    if (p == (void *)-1) {
        syscall(SYS_shmctl, id, IPC_RMID, 0);
        dtor_fail("shmat failed");
    }
    p[4999] = 1;
    if (raw_nattch(id) != 1) {
        syscall(SYS_shmctl, id, IPC_RMID, 0);
        dtor_fail("nattch is not 1");
    }
    if (shmdt(p) != 0 || raw_nattch(id) != 0) {
        syscall(SYS_shmctl, id, IPC_RMID, 0);
        dtor_fail("shmdt");
    }
    errno = 0;
    if (shmdt(p) != -1 || errno != EINVAL) {
        syscall(SYS_shmctl, id, IPC_RMID, 0);
        dtor_fail("second shmdt did not fail with EINVAL");
    }
    if (shmctl(id, IPC_RMID, NULL) != 0) {
        syscall(SYS_shmctl, id, IPC_RMID, 0);
        dtor_fail("IPC_RMID");
    }
    if (raw_nattch(id) != -1)
        dtor_fail("segment still there after IPC_RMID");
}
