/* teardown_peer.c: a library (or, linked statically, an object) whose
 * destructor removes the segment the program handed it, as a library that
 * cleans up at unload does. Used by tests/teardown.rs. */
#include <sys/shm.h>
#include <unistd.h>

static int adopted = -1;

void peer_adopt(int shmid);

void
peer_adopt(int shmid)
{
    adopted = shmid;
}

__attribute__((destructor)) static void
peer_cleanup(void)
{
    if (adopted >= 0 && shmctl(adopted, IPC_RMID, NULL) != 0) {
        static const char msg[] = "FAIL: teardown_peer: IPC_RMID in the destructor failed\n";
        if (write(2, msg, sizeof msg - 1) < 0) {
            /* nothing more to do */
        }
    }
}
