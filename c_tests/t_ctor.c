/* t_ctor.c: the first shm calls of the process come from another library's
 * constructor (lib_ctor.so, linked by this program); check what it recorded.
 * lib_ctor.so's destructor makes the last calls and exits 3 if they fail. */
#include "check.h"

extern int ctor_ran;
extern int ctor_id;
extern int ctor_shmget_errno;
extern long ctor_segsz;
extern int ctor_shmat_ok;
extern int ctor_nattch_attached;
extern int ctor_data_ok;
extern int ctor_shmdt_ret;
extern int ctor_nattch_detached;
extern int ctor_size0_ret;
extern int ctor_size0_errno;
extern int ctor_rmid_ret;
extern int ctor_stat_after_ret;
extern int ctor_stat_after_errno;
extern int ctor_ftok_ok;
extern char ctor_shmget_from[256];

int
main(void)
{
    ck_init();
    /* in case the constructor stopped halfway */
    ck_track(ctor_id);

    CHECK_EQ(ctor_ran, 1);
    tracef("ctor_ran", "ok ran=%d", ctor_ran);

    int from_lib = strstr(ctor_shmget_from, "libshmguard") != NULL;
    CHECK_EQ(from_lib, ck_expect_shmguard());
    tracef("ctor_resolution_as_main", "ok same=%d", from_lib == ck_expect_shmguard());

    CHECK(ctor_id >= 0);
    CHECK_EQ(ctor_segsz, 10000);
    if (ctor_id < 0)
        tracef("ctor_shmget", "fail %s", ck_errname(ctor_shmget_errno));
    else
        tracef("ctor_shmget", "ok segsz=%ld", ctor_segsz);

    CHECK(ctor_shmat_ok);
    CHECK_EQ(ctor_nattch_attached, 1);
    CHECK(ctor_data_ok);
    tracef("ctor_shmat", "ok attached=%d nattch=%d data=%d", ctor_shmat_ok,
           ctor_nattch_attached, ctor_data_ok);

    CHECK_EQ(ctor_shmdt_ret, 0);
    CHECK_EQ(ctor_nattch_detached, 0);
    tracef("ctor_shmdt", "ok ret=%d nattch=%d", ctor_shmdt_ret, ctor_nattch_detached);

    CHECK_EQ(ctor_size0_ret, -1);
    CHECK_EQ(ctor_size0_errno, EINVAL);
    if (ctor_size0_ret == -1)
        tracef("ctor_size0", "fail %s", ck_errname(ctor_size0_errno));
    else
        tracef("ctor_size0", "ok");

    CHECK_EQ(ctor_rmid_ret, 0);
    CHECK_EQ(ctor_stat_after_ret, -1);
    CHECK_EQ(ctor_stat_after_errno, EINVAL);
    /* gone for the kernel too */
    struct shmid_ds ds;
    struct ck_res raw = RES(ck_stat(ctor_id, &ds));
    WANT("ctor_removed", raw, EINVAL);
    tracef("ctor_removed", "ok rmid=%d stat_after=%d %s", ctor_rmid_ret, ctor_stat_after_ret,
           ck_errname(ctor_stat_after_errno));

    CHECK(ctor_ftok_ok);
    tracef("ctor_ftok", "ok as_computed=%d", ctor_ftok_ok);

    /* main's own calls after the constructor's */
    struct ck_res id = RES(ck_shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600));
    WANT("main_after_ctor", id, 0);
    void *p = shmat((int)id.ret, NULL, 0);
    CHECK(p != (void *)-1);
    CHECK_EQ(ck_nattch((int)id.ret), 1);
    CHECK_EQ(shmdt(p), 0);
    CHECK_EQ(shmctl((int)id.ret, IPC_RMID, NULL), 0);
    CHECK_EQ(ck_nattch((int)id.ret), -1);
    trace("main_after_ctor", id);
    return ck_finish();
}
