/* t_shmctl.c: shmctl (and errno on success of every call) through the libc
 * name against the raw system call. */
#include "check.h"

#define PAGE 4096UL

/* A command that only reads: call it by both ways on equal buffers and
 * require the same outcome, the same return value and the same bytes. The
 * table is global, so another process may change it between the two calls:
 * a difference counts only if it persists over a few tries. */
static struct ck_res
diff_read_cmd(const char *name, int id, int cmd, void *lib_buf, void *raw_buf, size_t len,
              int want_err)
{
    struct ck_res lib = {0, 0}, raw = {0, 0};
    for (int attempt = 0; attempt < 5; attempt++) {
        if (lib_buf != NULL && raw_buf != NULL && len > 0) {
            memset(lib_buf, 0, len);
            memset(raw_buf, 0, len);
        }
        lib = RES(shmctl(id, cmd, lib_buf));
        raw = RES(raw_shmctl(id, cmd, raw_buf));
        int same = (lib.ret == -1) == (raw.ret == -1) && lib.err == raw.err &&
                   (lib.ret == -1 || lib.ret == raw.ret) &&
                   (lib.ret == -1 || len == 0 || memcmp(lib_buf, raw_buf, len) == 0);
        if (same)
            break;
    }
    SAME(name, lib, raw);
    if (want_err >= 0)
        WANT(name, lib, want_err);
    if (lib.ret != -1 && raw.ret != -1)
        CHECK_EQ(lib.ret, raw.ret);
    if (lib.ret != -1 && raw.ret != -1 && len > 0 && memcmp(lib_buf, raw_buf, len) != 0)
        FAIL("%s: the buffers differ", name);
    return lib;
}

/* Call CMD with BUF where it must fail without effect; both ways. */
static void
diff_fail(const char *name, int id, int cmd, void *buf, int want_err)
{
    struct ck_res lib = RES(shmctl(id, cmd, buf));
    struct ck_res raw = RES(raw_shmctl(id, cmd, buf));
    SAME(name, lib, raw);
    WANT(name, lib, want_err);
    trace(name, lib);
}

static void
case_stat(int id)
{
    struct shmid_ds a, b;
    struct ck_res r = diff_read_cmd("stat_valid", id, IPC_STAT, &a, &b, sizeof a, 0);
    SAME_DS("stat_valid", &a, &b);
    CHECK_EQ(a.shm_segsz, 3 * PAGE - 100);
    CHECK_EQ(a.shm_perm.mode, 0600);
    CHECK_EQ(a.shm_perm.uid, geteuid());
    CHECK_EQ(a.shm_cpid, getpid());
    CHECK_EQ(r.ret, 0);
    trace_ok("stat_valid", r, "ret=%ld segsz=%zu mode=%04o nattch=%lu", r.ret,
             (size_t)a.shm_segsz, (unsigned)a.shm_perm.mode, (unsigned long)a.shm_nattch);

    int gone = ck_fixture(PAGE, 0600);
    CHECK_EQ(raw_shmctl(gone, IPC_RMID, NULL), 0);
    diff_fail("stat_id_minus1", -1, IPC_STAT, &a, EINVAL);
    diff_fail("stat_id_intmax", 0x7fffffff, IPC_STAT, &a, EINVAL);
    diff_fail("stat_id_removed", gone, IPC_STAT, &a, EINVAL);
    diff_fail("stat_null_buf", id, IPC_STAT, NULL, EFAULT);
    diff_fail("stat_buf_ptr_1", id, IPC_STAT, (void *)1, EFAULT);
    diff_fail("stat_invalid_id_null_buf", -1, IPC_STAT, NULL, EINVAL);

    char *none = mmap(NULL, PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *ro = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(none != MAP_FAILED && ro != MAP_FAILED);
    diff_fail("stat_buf_prot_none", id, IPC_STAT, none, EFAULT);
    diff_fail("stat_buf_read_only", id, IPC_STAT, ro, EFAULT);
    /* a buffer whose end runs into the PROT_NONE page */
    char *two = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(two != MAP_FAILED);
    CHECK_EQ(mprotect(two + PAGE, PAGE, PROT_NONE), 0);
    diff_fail("stat_buf_straddling", id, IPC_STAT, two + PAGE - 8, EFAULT);

    diff_fail("set_null_buf", id, IPC_SET, NULL, EFAULT);
    diff_fail("set_buf_ptr_1", id, IPC_SET, (void *)1, EFAULT);
    diff_fail("set_buf_prot_none", id, IPC_SET, none, EFAULT);
    diff_fail("set_id_minus1", -1, IPC_SET, &a, EINVAL);
    diff_fail("set_id_removed", gone, IPC_SET, &a, EINVAL);

    /* IPC_SET only reads the buffer: a read-only page holding a valid
     * shmid_ds is fine */
    CHECK_EQ(mprotect(ro, PAGE, PROT_READ | PROT_WRITE), 0);
    CHECK_EQ(ck_stat(id, (struct shmid_ds *)ro), 0);
    CHECK_EQ(mprotect(ro, PAGE, PROT_READ), 0);
    struct ck_res s = RES(shmctl(id, IPC_SET, (struct shmid_ds *)ro));
    struct ck_res rs = RES(raw_shmctl(id, IPC_SET, ro));
    SAME("set_buf_read_only", s, rs);
    WANT("set_buf_read_only", s, 0);
    trace("set_buf_read_only", s);
    munmap(none, PAGE);
    munmap(ro, PAGE);
    munmap(two, 2 * PAGE);
}

/* IPC_SET by the libc name on one segment and by the raw call on another;
 * IPC_STAT must then agree. */
static void
set_case(const char *name, unsigned mode, uid_t uid, gid_t gid, unsigned want_mode)
{
    int a = ck_fixture(PAGE, 0600), b = ck_fixture(PAGE, 0600);
    struct shmid_ds ds;
    CHECK_EQ(ck_stat(a, &ds), 0);
    ds.shm_perm.mode = (unsigned short)mode;
    ds.shm_perm.uid = uid;
    ds.shm_perm.gid = gid;
    struct ck_res lib = RES(shmctl(a, IPC_SET, &ds));
    struct ck_res raw = RES(raw_shmctl(b, IPC_SET, &ds));
    SAME(name, lib, raw);
    WANT(name, lib, 0);
    struct shmid_ds sa, sb;
    memset(&sa, 0, sizeof sa);
    CHECK_EQ(shmctl(a, IPC_STAT, &sa), 0);
    CHECK_EQ(ck_stat(b, &sb), 0);
    CHECK_EQ(sa.shm_perm.mode, sb.shm_perm.mode);
    CHECK_EQ(sa.shm_perm.uid, sb.shm_perm.uid);
    CHECK_EQ(sa.shm_perm.gid, sb.shm_perm.gid);
    CHECK_EQ(sa.shm_perm.cuid, geteuid());
    CHECK_EQ(sa.shm_perm.mode, want_mode);
    CHECK_EQ(sa.shm_perm.uid, uid);
    trace_ok(name, lib, "mode=%04o uid=%u gid=%u", (unsigned)sa.shm_perm.mode,
             (unsigned)sa.shm_perm.uid, (unsigned)sa.shm_perm.gid);
}

static void
case_set(void)
{
    set_case("set_mode_0640", 0640, geteuid(), getegid(), 0640);
    set_case("set_mode_high_bits_masked", 0xffff, geteuid(), getegid(), 0777);
    set_case("set_owner_nobody", 0604, 65534, 65534, 0604);
}

static void
case_rmid(void)
{
    int id = ck_fixture(PAGE, 0600);
    struct ck_res lib = RES(shmctl(id, IPC_RMID, (struct shmid_ds *)1));
    WANT("rmid_junk_buf", lib, 0);
    int id2 = ck_fixture(PAGE, 0600);
    struct ck_res raw = RES(raw_shmctl(id2, IPC_RMID, (void *)1));
    SAME("rmid_junk_buf", lib, raw);
    CHECK_EQ(ck_nattch(id), -1);
    trace("rmid_junk_buf", lib);
    diff_fail("rmid_id_minus1", -1, IPC_RMID, NULL, EINVAL);
    diff_fail("rmid_id_removed", id, IPC_RMID, NULL, EINVAL);
    diff_fail("rmid_id_intmax", 0x7fffffff, IPC_RMID, NULL, EINVAL);

    /* marking: the key becomes IPC_PRIVATE at once, SHM_DEST is set, the
     * segment lives on until the last detach */
    key_t key = ck_key(10, 0);
    int k = ck_raw_shmget(key, PAGE, IPC_CREAT | IPC_EXCL | 0600);
    CHECK(k >= 0);
    void *p = shmat(k, NULL, 0);
    CHECK(p != (void *)-1);
    struct ck_res m = RES(shmctl(k, IPC_RMID, NULL));
    WANT("rmid_marks", m, 0);
    struct shmid_ds a, b;
    memset(&a, 0, sizeof a);
    struct ck_res st = RES(shmctl(k, IPC_STAT, &a));
    WANT("rmid_marks", st, 0);
    CHECK_EQ(ck_stat(k, &b), 0);
    SAME_DS("rmid_marks", &a, &b);
    CHECK_EQ(a.shm_perm.__key, IPC_PRIVATE);
    CHECK(a.shm_perm.mode & SHM_DEST);
    CHECK_EQ(a.shm_nattch, 1);
    trace_ok("rmid_marks", m, "key=%d dest=%d nattch=%lu", (int)a.shm_perm.__key,
             (a.shm_perm.mode & SHM_DEST) != 0, (unsigned long)a.shm_nattch);

    struct ck_res gone_key = RES(shmget(key, 0, 0));
    struct ck_res gone_key_raw = RES(raw_shmget(key, 0, 0));
    SAME("rmid_key_released", gone_key, gone_key_raw);
    WANT("rmid_key_released", gone_key, ENOENT);
    trace("rmid_key_released", gone_key);

    struct ck_res twice = RES(shmctl(k, IPC_RMID, NULL));
    struct ck_res twice_raw = RES(raw_shmctl(k, IPC_RMID, NULL));
    SAME("rmid_twice", twice, twice_raw);
    WANT("rmid_twice", twice, 0);
    trace("rmid_twice", twice);

    /* IPC_SET still works on a marked segment and keeps SHM_DEST */
    a.shm_perm.mode = 0640;
    struct ck_res set = RES(shmctl(k, IPC_SET, &a));
    WANT("set_on_marked", set, 0);
    CHECK_EQ(ck_stat(k, &b), 0);
    CHECK_EQ(b.shm_perm.mode, 0640 | SHM_DEST);
    trace_ok("set_on_marked", set, "mode=%04o", (unsigned)b.shm_perm.mode);

    CHECK_EQ(shmdt(p), 0);
    diff_fail("rmid_destroyed_on_last_detach", k, IPC_STAT, &a, EINVAL);
}

static void
case_info(int id)
{
    struct shminfo a, b;
    struct ck_res r = diff_read_cmd("ipc_info", 0, IPC_INFO, &a, &b, sizeof a, 0);
    int fields = a.shmmax == (unsigned long)ck_proc_ull("/proc/sys/kernel/shmmax") &&
                 a.shmall == (unsigned long)ck_proc_ull("/proc/sys/kernel/shmall") &&
                 a.shmmni == (unsigned long)ck_proc_ull("/proc/sys/kernel/shmmni") &&
                 a.shmmin == 1;
    CHECK(fields);
    /* it returns the highest used index: at least ours */
    CHECK(r.ret >= 0);
    trace_ok("ipc_info", r, "shmmin=%lu fields_match_proc=%d", a.shmmin, fields);
    /* the id is ignored, as long as it is not negative */
    r = diff_read_cmd("ipc_info_any_id", 12345, IPC_INFO, &a, &b, sizeof a, 0);
    trace("ipc_info_any_id", r);
    diff_fail("ipc_info_negative_id", -12345, IPC_INFO, &a, EINVAL);
    diff_fail("ipc_info_null_buf", 0, IPC_INFO, NULL, EFAULT);

    struct shm_info c, d;
    r = diff_read_cmd("shm_info", 0, SHM_INFO, &c, &d, sizeof c, -1);
    if (r.ret == -1) {
        trace("shm_info", r);
    } else {
        CHECK(c.used_ids >= 1);
        CHECK(c.shm_tot >= 3);
        trace_ok("shm_info", r, "used_ids_at_least_1=%d", c.used_ids >= 1);
    }
    diff_fail("shm_info_null_buf", 0, SHM_INFO, NULL, EFAULT);

    /* SHM_STAT and SHM_STAT_ANY take an index and return the full id: scan
     * 0..max and find our segment exactly once */
    static const struct {
        const char *name;
        int cmd;
    } stats[] = {{"shm_stat_scan", SHM_STAT}, {"shm_stat_any_scan", SHM_STAT_ANY}};
    for (size_t s = 0; s < 2; s++) {
        struct shminfo info;
        int max = raw_shmctl(0, IPC_INFO, &info);
        int found = 0, mismatches = 0;
        for (int idx = 0; idx <= max; idx++) {
            struct shmid_ds x, y;
            struct ck_res l = {0, 0}, w = {0, 0};
            for (int attempt = 0; attempt < 5; attempt++) {
                memset(&x, 0, sizeof x);
                memset(&y, 0, sizeof y);
                l = RES(shmctl(idx, stats[s].cmd, &x));
                w = RES(raw_shmctl(idx, stats[s].cmd, &y));
                if (l.ret == w.ret && l.err == w.err &&
                    (l.ret == -1 || memcmp(&x, &y, sizeof x) == 0))
                    break;
            }
            if (!SAME(stats[s].name, l, w) || l.ret != w.ret)
                mismatches++;
            if (l.ret == id) {
                found++;
                SAME_DS(stats[s].name, &x, &y);
                CHECK_EQ(x.shm_segsz, 3 * PAGE - 100);
            }
        }
        CHECK_EQ(found, 1);
        CHECK_EQ(mismatches, 0);
        tracef(stats[s].name, "ok found=%d mismatches=%d", found, mismatches);
    }
    struct shmid_ds x;
    diff_fail("shm_stat_huge_index", 0x7fffffff, SHM_STAT, &x, EINVAL);
    diff_fail("shm_stat_negative_index", -1, SHM_STAT, &x, EINVAL);
    /* the kernel keeps only the low bits of the index (15, or 24 with
     * ipcmni_extend), so pick one whose low bits are beyond shmmni too */
    diff_fail("shm_stat_any_huge_index", 0x7ffffff0, SHM_STAT_ANY, &x, EINVAL);
}

/* An index with high bits set aliases the low one: the kernel masks it. */
static void
case_stat_index_aliased(int id)
{
    struct shminfo info;
    int max = raw_shmctl(0, IPC_INFO, &info);
    for (int idx = 0; idx <= max; idx++) {
        struct shmid_ds x, y;
        if (raw_shmctl(idx, SHM_STAT, &y) != id)
            continue;
        memset(&x, 0, sizeof x);
        memset(&y, 0, sizeof y);
        struct ck_res lib = RES(shmctl(idx + (1 << 24), SHM_STAT, &x));
        struct ck_res raw = RES(raw_shmctl(idx + (1 << 24), SHM_STAT, &y));
        SAME("shm_stat_index_aliased", lib, raw);
        WANT("shm_stat_index_aliased", lib, 0);
        CHECK_EQ(lib.ret, raw.ret);
        CHECK_EQ(lib.ret, id);
        SAME_DS("shm_stat_index_aliased", &x, &y);
        trace_ok("shm_stat_index_aliased", lib, "same_id=%d", lib.ret == id);
        return;
    }
    FAIL("our segment has no index");
}

/* SHM_STAT with a NULL buffer on a used index. */
static void
case_stat_index_null(int id)
{
    struct shminfo info;
    int max = raw_shmctl(0, IPC_INFO, &info);
    for (int idx = 0; idx <= max; idx++) {
        struct shmid_ds y;
        if (raw_shmctl(idx, SHM_STAT, &y) == id) {
            diff_fail("shm_stat_null_buf", idx, SHM_STAT, NULL, EFAULT);
            return;
        }
    }
    FAIL("our segment has no index");
}

static void
case_lock(int id)
{
    struct ck_res lib = RES(shmctl(id, SHM_LOCK, NULL));
    WANT("shm_lock", lib, 0);
    struct shmid_ds a;
    CHECK_EQ(ck_stat(id, &a), 0);
    int locked = (a.shm_perm.mode & SHM_LOCKED) != 0;
    CHECK(locked);
    int other = ck_fixture(PAGE, 0600);
    struct ck_res raw = RES(raw_shmctl(other, SHM_LOCK, NULL));
    SAME("shm_lock", lib, raw);
    trace_ok("shm_lock", lib, "locked=%d", locked);

    lib = RES(shmctl(id, SHM_UNLOCK, NULL));
    WANT("shm_unlock", lib, 0);
    CHECK_EQ(ck_stat(id, &a), 0);
    locked = (a.shm_perm.mode & SHM_LOCKED) != 0;
    CHECK(!locked);
    raw = RES(raw_shmctl(other, SHM_UNLOCK, NULL));
    SAME("shm_unlock", lib, raw);
    trace_ok("shm_unlock", lib, "locked=%d", locked);

    /* unlocking an unlocked segment succeeds too */
    lib = RES(shmctl(id, SHM_UNLOCK, (struct shmid_ds *)1));
    raw = RES(raw_shmctl(id, SHM_UNLOCK, (void *)1));
    SAME("shm_unlock_again_junk_buf", lib, raw);
    WANT("shm_unlock_again_junk_buf", lib, 0);
    trace("shm_unlock_again_junk_buf", lib);

    diff_fail("shm_lock_id_minus1", -1, SHM_LOCK, NULL, EINVAL);
    diff_fail("shm_unlock_id_intmax", 0x7fffffff, SHM_UNLOCK, NULL, EINVAL);
}

static void
case_unknown_commands(int id)
{
    static const struct {
        const char *name;
        int cmd;
    } cmds[] = {
        {"cmd_minus1", -1},        {"cmd_4", 4},          {"cmd_10", 10},
        {"cmd_16", 16},            {"cmd_99", 99},        {"cmd_ipc64_stat", 0x100 | IPC_STAT},
        {"cmd_intmin", INT_MIN},   {"cmd_ipc64_rmid", 0x100 | IPC_RMID},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        struct shmid_ds ds;
        diff_fail(cmds[i].name, id, cmds[i].cmd, &ds, EINVAL);
    }
    /* the segment is still there */
    CHECK(ck_nattch(id) >= 0);
}

/* errno is left alone by each successful call. */
static void
case_errno_kept(void)
{
    int keep = 12345;
    errno = keep;
    int id = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
    int e = errno;
    ck_track(id);
    CHECK(id >= 0);
    CHECK_EQ(e, keep);
    tracef("errno_kept_shmget", "ok kept=%d", e == keep);

    errno = keep;
    void *p = shmat(id, NULL, 0);
    e = errno;
    CHECK(p != (void *)-1);
    CHECK_EQ(e, keep);
    tracef("errno_kept_shmat", "ok kept=%d", e == keep);

    struct shmid_ds ds;
    errno = keep;
    int r = shmctl(id, IPC_STAT, &ds);
    e = errno;
    CHECK_EQ(r, 0);
    CHECK_EQ(e, keep);
    tracef("errno_kept_shmctl_stat", "ok kept=%d", e == keep);

    errno = keep;
    r = shmctl(id, IPC_SET, &ds);
    e = errno;
    CHECK_EQ(r, 0);
    CHECK_EQ(e, keep);
    tracef("errno_kept_shmctl_set", "ok kept=%d", e == keep);

    struct shminfo info;
    errno = keep;
    r = shmctl(0, IPC_INFO, (struct shmid_ds *)&info);
    e = errno;
    CHECK(r >= 0);
    CHECK_EQ(e, keep);
    tracef("errno_kept_shmctl_info", "ok kept=%d", e == keep);

    errno = keep;
    r = shmdt(p);
    e = errno;
    CHECK_EQ(r, 0);
    CHECK_EQ(e, keep);
    tracef("errno_kept_shmdt", "ok kept=%d", e == keep);

    errno = keep;
    r = shmctl(id, IPC_RMID, NULL);
    e = errno;
    CHECK_EQ(r, 0);
    CHECK_EQ(e, keep);
    tracef("errno_kept_shmctl_rmid", "ok kept=%d", e == keep);

    errno = keep;
    key_t k = ftok(ck_tmpfile(), 1);
    e = errno;
    CHECK(k != -1);
    CHECK_EQ(e, keep);
    tracef("errno_kept_ftok", "ok kept=%d", e == keep);

    /* and the same for a keyed open of an existing segment */
    key_t key = ck_key(11, 0);
    int kid = ck_raw_shmget(key, PAGE, IPC_CREAT | IPC_EXCL | 0600);
    errno = keep;
    int got = shmget(key, 0, 0);
    e = errno;
    CHECK_EQ(got, kid);
    CHECK_EQ(e, keep);
    tracef("errno_kept_shmget_open", "ok kept=%d", e == keep);
}

int
main(void)
{
    ck_init();
    int id = ck_fixture(3 * PAGE - 100, 0600);
    case_stat(id);
    case_set();
    case_rmid();
    case_info(id);
    case_stat_index_null(id);
    case_stat_index_aliased(id);
    case_lock(id);
    case_unknown_commands(id);
    case_errno_kept();
    return ck_finish();
}
