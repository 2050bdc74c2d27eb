/* t_shmget.c: shmget through the libc name against the raw system call. */
#include "check.h"

/* Call shmget by both ways with the same arguments; record what either
 * created; require the same outcome (and WANT_ERR unless -1). Trace it with
 * the new segment's size and mode. */
static void
diff_create(const char *name, key_t key, size_t size, int flg, int want_err)
{
    struct ck_res lib = RES(ck_shmget(key, size, flg));
    struct ck_res raw = RES(ck_raw_shmget(key, size, flg));
    SAME(name, lib, raw);
    if (want_err >= 0)
        WANT(name, lib, want_err);
    if (lib.ret != -1 && raw.ret != -1) {
        struct shmid_ds a, b;
        CHECK(lib.ret != raw.ret);
        CHECK_EQ(ck_stat((int)lib.ret, &a), 0);
        CHECK_EQ(ck_stat((int)raw.ret, &b), 0);
        CHECK_EQ(a.shm_segsz, b.shm_segsz);
        CHECK_EQ(a.shm_perm.mode, b.shm_perm.mode);
        CHECK_EQ(a.shm_segsz, size);
        trace_ok(name, lib, "segsz=%zu mode=%04o", (size_t)a.shm_segsz,
                 (unsigned)a.shm_perm.mode);
    } else {
        trace(name, lib);
    }
}

/* Call shmget on an existing key by both ways; both must give the same id. */
static void
diff_open(const char *name, key_t key, size_t size, int flg, int want_err, int want_id)
{
    struct ck_res lib = RES(ck_shmget(key, size, flg));
    struct ck_res raw = RES(ck_raw_shmget(key, size, flg));
    SAME(name, lib, raw);
    if (want_err >= 0)
        WANT(name, lib, want_err);
    if (lib.ret != -1 && raw.ret != -1) {
        CHECK_EQ(lib.ret, raw.ret);
        if (want_id >= 0)
            CHECK_EQ(lib.ret, want_id);
    }
    trace(name, lib);
}

static void
case_private_zero_filled(void)
{
    const char *name = "private_10000_zero_filled";
    struct ck_res lib = RES(ck_shmget(IPC_PRIVATE, 10000, IPC_CREAT | 0600));
    WANT(name, lib, 0);
    if (lib.ret == -1) {
        trace(name, lib);
        return;
    }
    int id = (int)lib.ret;
    unsigned char *p = raw_shmat(id, NULL, 0);
    size_t nonzero = 0;
    CHECK(p != (void *)-1);
    if (p != (void *)-1) {
        /* the whole rounded-up mapping is there and zero */
        for (size_t i = 0; i < 12288; i++)
            nonzero += p[i] != 0;
        CHECK_EQ(nonzero, 0);
        CHECK_EQ(raw_shmdt(p), 0);
    }
    struct shmid_ds ds;
    CHECK_EQ(ck_stat(id, &ds), 0);
    CHECK_EQ(ds.shm_segsz, 10000);
    CHECK_EQ(ds.shm_cpid, getpid());
    trace_ok(name, lib, "segsz=%zu nonzero=%zu", (size_t)ds.shm_segsz, nonzero);
}

static void
case_keyed(void)
{
    key_t k1 = ck_key(1, 0), k2 = ck_key(2, 0), k3 = ck_key(3, 0);

    /* created by the libc name, opened by both */
    struct ck_res c1 = RES(ck_shmget(k1, 5000, IPC_CREAT | IPC_EXCL | 0600));
    WANT("keyed_create_lib", c1, 0);
    trace("keyed_create_lib", c1);
    /* created by the raw call, opened by both */
    struct ck_res c2 = RES(ck_raw_shmget(k2, 5000, IPC_CREAT | IPC_EXCL | 0600));
    WANT("keyed_create_raw_fixture", c2, 0);

    diff_open("keyed_open_lib_created", k1, 5000, 0, 0, (int)c1.ret);
    diff_open("keyed_open_raw_created", k2, 5000, 0, 0, (int)c2.ret);
    diff_open("keyed_open_size0", k1, 0, 0, 0, (int)c1.ret);
    diff_open("keyed_open_smaller", k1, 4999, 0, 0, (int)c1.ret);
    diff_open("keyed_open_larger", k1, 5001, 0, EINVAL, -1);
    diff_open("keyed_open_larger_page", k1, 8192, 0, EINVAL, -1);
    diff_open("keyed_open_size_max", k1, SIZE_MAX, 0, EINVAL, -1);
    diff_open("keyed_excl_existing", k1, 5000, IPC_CREAT | IPC_EXCL | 0600, EEXIST, -1);
    diff_open("keyed_excl_existing_larger", k1, 9000, IPC_CREAT | IPC_EXCL | 0600,
              EEXIST, -1);
    diff_open("keyed_excl_without_creat", k1, 5000, IPC_EXCL, 0, (int)c1.ret);
    diff_open("keyed_creat_existing", k1, 5000, IPC_CREAT | 0600, 0, (int)c1.ret);
    diff_open("keyed_open_missing", k3, 4096, 0, ENOENT, -1);
    diff_open("keyed_open_missing_excl", k3, 4096, IPC_EXCL, ENOENT, -1);
    diff_open("keyed_open_missing_size0", k3, 0, 0, ENOENT, -1);
    diff_open("keyed_create_size0", k3, 0, IPC_CREAT | 0600, EINVAL, -1);
    diff_open("keyed_open_wider_mode", k1, 0, 0777, 0, (int)c1.ret);
    diff_open("keyed_open_junk_flags", k1, 0, 0x7fff0000 | 0600, 0, (int)c1.ret);
    diff_open("keyed_open_missing_junk", k3, 0, 0x7fff0000, ENOENT, -1);
    diff_open("keyed_open_rdonly_bits", k1, 0, 0400, 0, (int)c1.ret);

    /* IPC_CREAT without IPC_EXCL on a missing key creates it; the raw call
     * then opens the same segment */
    key_t k4 = ck_key(4, 0);
    struct ck_res lib = RES(ck_shmget(k4, 4096, IPC_CREAT | 0640));
    struct ck_res raw = RES(ck_raw_shmget(k4, 4096, IPC_CREAT | 0640));
    WANT("keyed_creat_missing", lib, 0);
    WANT("keyed_creat_missing", raw, 0);
    CHECK_EQ(lib.ret, raw.ret);
    trace("keyed_creat_missing", lib);

    /* a negative key is a key like any other */
    key_t kn = ck_key(5, 1);
    CHECK(kn < 0);
    lib = RES(ck_shmget(kn, 4096, IPC_CREAT | IPC_EXCL | 0600));
    WANT("negative_key_create", lib, 0);
    trace("negative_key_create", lib);
    diff_open("negative_key_open", kn, 4096, 0, 0, (int)lib.ret);
    if (lib.ret != -1) {
        struct shmid_ds ds;
        CHECK_EQ(ck_stat((int)lib.ret, &ds), 0);
        CHECK_EQ(ds.shm_perm.__key, kn);
    }
    diff_open("negative_key_missing", ck_key(6, 1), 4096, 0, ENOENT, -1);
}

static void
case_sizes(void)
{
    static const size_t sizes[] = {1, 4095, 4096, 4097, 10000, 65537};
    char name[64];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        snprintf(name, sizeof name, "private_size_%zu", sizes[i]);
        diff_create(name, IPC_PRIVATE, sizes[i], IPC_CREAT | 0600, 0);
    }
    diff_create("private_size0", IPC_PRIVATE, 0, IPC_CREAT | 0600, EINVAL);
    diff_create("private_size_max", IPC_PRIVATE, SIZE_MAX, IPC_CREAT | 0600, EINVAL);
    /* accepted by the shmmax check, refused by memory accounting (or not):
     * whatever the kernel says */
    diff_create("private_size_2p62", IPC_PRIVATE, (size_t)1 << 62, IPC_CREAT | 0600, -1);
    diff_create("private_size_2p62_noreserve", IPC_PRIVATE, (size_t)1 << 62,
                IPC_CREAT | SHM_NORESERVE | 0600, -1);
    size_t shmmax = (size_t)ck_proc_ull("/proc/sys/kernel/shmmax");
    if (shmmax < SIZE_MAX)
        diff_create("private_size_shmmax_plus1", IPC_PRIVATE, shmmax + 1, IPC_CREAT | 0600,
                    EINVAL);
    else
        tracef("private_size_shmmax_plus1", "skipped");
    diff_create("private_hugetlb_odd", IPC_PRIVATE, 10000, IPC_CREAT | SHM_HUGETLB | 0600, -1);
    diff_create("private_noreserve", IPC_PRIVATE, 10000, IPC_CREAT | SHM_NORESERVE | 0600, 0);
    /* IPC_PRIVATE always creates, even without IPC_CREAT */
    diff_create("private_without_creat", IPC_PRIVATE, 4096, 0600, 0);
    diff_create("private_excl", IPC_PRIVATE, 4096, IPC_CREAT | IPC_EXCL | 0600, 0);
}

static void
case_flags_and_modes(void)
{
    /* unknown flag bits are ignored; without SHM_HUGETLB the huge page size
     * bits (26-31) mean nothing */
    diff_create("private_junk_flags", IPC_PRIVATE, 4096, 0x7ffff000 | IPC_CREAT | 0600, 0);
    diff_create("private_junk_flags_mode0", IPC_PRIVATE, 4096, 0x7ffff000 | IPC_CREAT, 0);
    /* the mode is stored masked to 0777 */
    diff_create("private_mode_0777", IPC_PRIVATE, 4096, IPC_CREAT | 0777, 0);
    diff_create("private_mode_0000", IPC_PRIVATE, 4096, IPC_CREAT, 0);
    diff_create("private_mode_high_bits", IPC_PRIVATE, 4096, IPC_CREAT | 0x10000 | 0x40000 | 0644,
                0);

    /* mode of a keyed segment created with extra bits, compared in full */
    key_t k = ck_key(7, 0);
    struct ck_res lib = RES(ck_shmget(k, 4096, IPC_CREAT | IPC_EXCL | 0x100000 | 0751));
    WANT("keyed_mode_masked", lib, 0);
    if (lib.ret != -1) {
        struct shmid_ds a, b;
        memset(&a, 0, sizeof a);
        CHECK_EQ(shmctl((int)lib.ret, IPC_STAT, &a), 0);
        CHECK_EQ(ck_stat((int)lib.ret, &b), 0);
        SAME_DS("keyed_mode_masked", &a, &b);
        CHECK_EQ(a.shm_perm.mode, 0751);
        trace_ok("keyed_mode_masked", lib, "mode=%04o", (unsigned)a.shm_perm.mode);
    } else {
        trace("keyed_mode_masked", lib);
    }
}

/* shm_segsz is the size asked for while IPC_STAT works on it. */
static void
case_segsz_reported(void)
{
    int id = ck_shmget(IPC_PRIVATE, 12345, IPC_CREAT | 0600);
    struct shmid_ds a, b;
    memset(&a, 0, sizeof a);
    struct ck_res r = RES(shmctl(id, IPC_STAT, &a));
    WANT("segsz_not_rounded", r, 0);
    CHECK_EQ(ck_stat(id, &b), 0);
    SAME_DS("segsz_not_rounded", &a, &b);
    CHECK_EQ(a.shm_segsz, 12345);
    CHECK_EQ(a.shm_nattch, 0);
    CHECK_EQ(a.shm_perm.__key, IPC_PRIVATE);
    CHECK_EQ(a.shm_perm.uid, geteuid());
    trace_ok("segsz_not_rounded", r, "segsz=%zu nattch=%lu", (size_t)a.shm_segsz,
             (unsigned long)a.shm_nattch);
}

int
main(void)
{
    ck_init();
    case_private_zero_filled();
    case_keyed();
    case_sizes();
    case_flags_and_modes();
    case_segsz_reported();
    return ck_finish();
}
