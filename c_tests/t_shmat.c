/* t_shmat.c: shmat through the libc name against the raw system call. */
#include "check.h"

#define PAGE 4096UL

/* Attach by both ways with the same arguments; require the same outcome
 * (and WANT_ERR unless -1); detach what succeeded with the raw call. */
static struct ck_res
diff_attach(const char *name, int id, const void *addr, int flg, int want_err)
{
    struct ck_res lib = RES(shmat(id, addr, flg));
    if (lib.ret != -1)
        CHECK_EQ(shmdt((void *)lib.ret), 0);
    struct ck_res raw = RES(raw_shmat(id, addr, flg));
    if (raw.ret != -1)
        CHECK_EQ(raw_shmdt((void *)raw.ret), 0);
    SAME(name, lib, raw);
    if (want_err >= 0)
        WANT(name, lib, want_err);
    trace(name, lib);
    return lib;
}

/* Fork a child that writes one byte at P; its exit status tells what
 * happened: 0 = the write went through, -SIGSEGV = it faulted. */
static int
child_write(volatile unsigned char *p)
{
    pid_t pid = ck_fork();
    if (pid == 0) {
        ck_child_defaults();
        p[0] = 0x77;
        _exit(0);
    }
    return ck_child_code(pid, 10000);
}

static const char *
code_name(int code)
{
    static char buf[32];
    if (code == -SIGSEGV)
        return "SIGSEGV";
    snprintf(buf, sizeof buf, "%d", code);
    return buf;
}

static void
case_null_addr(int id)
{
    struct ck_res lib = RES(shmat(id, NULL, 0));
    struct ck_res raw = RES(raw_shmat(id, NULL, 0));
    SAME("attach_null", lib, raw);
    WANT("attach_null", lib, 0);
    char perms[8] = "none";
    if (lib.ret != -1) {
        unsigned char *p = (unsigned char *)lib.ret;
        CHECK_EQ((uintptr_t)p % PAGE, 0);
        snprintf(perms, sizeof perms, "%s", ck_map_perms(p));
        struct shmid_ds ds;
        CHECK_EQ(ck_stat(id, &ds), 0);
        CHECK_EQ(ds.shm_lpid, getpid());
        CHECK_EQ(ds.shm_nattch, raw.ret != -1 ? 2 : 1);
        /* both mappings show the same memory */
        if (raw.ret != -1) {
            p[100] = 0xab;
            CHECK_EQ(((unsigned char *)raw.ret)[100], 0xab);
            p[100] = 0;
        }
        CHECK_EQ(shmdt(p), 0);
    }
    if (raw.ret != -1) {
        CHECK_EQ(strcmp(ck_map_perms((void *)raw.ret), perms), 0);
        CHECK_EQ(raw_shmdt((void *)raw.ret), 0);
    }
    trace_ok("attach_null", lib, "perms=%s", perms);
}

static void
case_invalid_ids(void)
{
    diff_attach("attach_id_minus1", -1, NULL, 0, EINVAL);
    diff_attach("attach_id_intmax", 0x7fffffff, NULL, 0, EINVAL);
    diff_attach("attach_id_intmin", INT_MIN, NULL, 0, EINVAL);
    int gone = ck_fixture(4096, 0600);
    CHECK_EQ(raw_shmctl(gone, IPC_RMID, NULL), 0);
    diff_attach("attach_id_removed", gone, NULL, 0, EINVAL);
}

static void
case_rdonly(int id)
{
    /* put a known byte in through a writable raw attachment */
    unsigned char *w = raw_shmat(id, NULL, 0);
    CHECK(w != (void *)-1);
    if (w == (void *)-1)
        return;
    w[0] = 0x5a;

    struct ck_res lib = RES(shmat(id, NULL, SHM_RDONLY));
    struct ck_res raw = RES(raw_shmat(id, NULL, SHM_RDONLY));
    SAME("attach_rdonly", lib, raw);
    WANT("attach_rdonly", lib, 0);
    int lib_code = 1, raw_code = 1, rw_code = 1;
    unsigned got = 0;
    char perms[8] = "none";
    if (lib.ret != -1) {
        volatile unsigned char *p = (unsigned char *)lib.ret;
        got = p[0];
        snprintf(perms, sizeof perms, "%s", ck_map_perms((void *)p));
        lib_code = child_write(p);
        CHECK_EQ(shmdt((void *)p), 0);
    }
    if (raw.ret != -1) {
        CHECK_EQ(strcmp(ck_map_perms((void *)raw.ret), "r--s"), 0);
        raw_code = child_write((unsigned char *)raw.ret);
        CHECK_EQ(raw_shmdt((void *)raw.ret), 0);
    }
    /* the control: a child's write through the writable mapping succeeds */
    rw_code = child_write(w);
    CHECK_EQ(w[0], 0x77);
    CHECK_EQ(got, 0x5a);
    CHECK_EQ(lib_code, -SIGSEGV);
    CHECK_EQ(raw_code, -SIGSEGV);
    CHECK_EQ(rw_code, 0);
    CHECK_EQ(strcmp(perms, "r--s"), 0);
    CHECK_EQ(raw_shmdt(w), 0);
    trace_ok("attach_rdonly", lib, "perms=%s read=0x%02x child_write=%s control=%s", perms,
             got, code_name(lib_code), code_name(rw_code));
}

static void
case_addresses(int id)
{
    char *base = ck_free_range(4 * PAGE);
    char *unaligned = base + PAGE + 123;

    diff_attach("attach_unaligned_no_rnd", id, unaligned, 0, EINVAL);
    diff_attach("attach_unaligned_remap_no_rnd", id, unaligned, SHM_REMAP, EINVAL);

    /* SHM_RND rounds down to SHMLBA */
    char *want = (char *)((uintptr_t)unaligned & ~((uintptr_t)SHMLBA - 1));
    CHECK(want == base + PAGE);
    struct ck_res lib = RES(shmat(id, unaligned, SHM_RND));
    if (lib.ret != -1)
        CHECK_EQ(shmdt((void *)lib.ret), 0);
    struct ck_res raw = RES(raw_shmat(id, unaligned, SHM_RND));
    if (raw.ret != -1)
        CHECK_EQ(raw_shmdt((void *)raw.ret), 0);
    SAME("attach_rnd", lib, raw);
    WANT("attach_rnd", lib, 0);
    if (lib.ret != -1)
        CHECK(lib.ret == (long)(uintptr_t)want);
    if (raw.ret != -1)
        CHECK(raw.ret == (long)(uintptr_t)want);
    trace_ok("attach_rnd", lib, "at_rounded=%d", lib.ret == (long)(uintptr_t)want);

    /* an aligned address is taken as is, with or without SHM_RND */
    lib = RES(shmat(id, base, 0));
    WANT("attach_fixed_aligned", lib, 0);
    if (lib.ret != -1) {
        CHECK(lib.ret == (long)(uintptr_t)base);
        CHECK_EQ(shmdt(base), 0);
    }
    raw = RES(raw_shmat(id, base, 0));
    SAME("attach_fixed_aligned", lib, raw);
    if (raw.ret != -1)
        CHECK_EQ(raw_shmdt((void *)raw.ret), 0);
    trace_ok("attach_fixed_aligned", lib, "at_addr=%d", lib.ret == (long)(uintptr_t)base);
    lib = RES(shmat(id, base, SHM_RND));
    if (lib.ret != -1) {
        CHECK(lib.ret == (long)(uintptr_t)base);
        CHECK_EQ(shmdt(base), 0);
    }
    WANT("attach_fixed_aligned_rnd", lib, 0);
    trace_ok("attach_fixed_aligned_rnd", lib, "at_addr=%d", lib.ret == (long)(uintptr_t)base);

    /* rounding down to page 0: root may map there (CAP_SYS_RAWIO) */
    lib = RES(shmat(id, (void *)0x100, SHM_RND));
    if (lib.ret != -1) {
        CHECK_EQ(lib.ret, 0);
        CHECK_EQ(raw_shmdt((void *)0), 0);
    }
    raw = RES(raw_shmat(id, (void *)0x100, SHM_RND));
    if (raw.ret != -1) {
        CHECK_EQ(raw.ret, 0);
        CHECK_EQ(raw_shmdt((void *)0), 0);
    }
    SAME("attach_rnd_to_zero", lib, raw);
    trace_ok("attach_rnd_to_zero", lib, "at_zero=%d", lib.ret == 0);
    diff_attach("attach_rnd_to_zero_remap", id, (void *)0x100, SHM_RND | SHM_REMAP, EINVAL);

    /* addr + size wraps around: refused before any mapping */
    diff_attach("attach_wrapping_addr", id, (void *)(uintptr_t)-PAGE, 0, EINVAL);
    /* beyond the user address space */
    diff_attach("attach_kernel_addr", id, (void *)(uintptr_t)0xffff800000000000ULL, 0, -1);
}

static void
case_remap(int id)
{
    /* the segment has 2 pages; reserve exactly that */
    size_t len = 2 * PAGE;
    char *r = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(r != MAP_FAILED);
    if (r == MAP_FAILED)
        return;

    diff_attach("attach_over_mapping_no_remap", id, r, 0, EINVAL);
    diff_attach("attach_over_mapping_rnd_no_remap", id, r + 5, SHM_RND, EINVAL);

    struct ck_res lib = RES(shmat(id, r, SHM_REMAP));
    WANT("attach_remap", lib, 0);
    char perms[8] = "none";
    if (lib.ret != -1) {
        CHECK(lib.ret == (long)(uintptr_t)r);
        snprintf(perms, sizeof perms, "%s", ck_map_perms(r));
        CHECK_EQ(shmdt(r), 0);
    }
    /* the same again with the raw call, over a fresh reservation */
    void *again = mmap(r, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    CHECK(again == r);
    struct ck_res raw = RES(raw_shmat(id, r, SHM_REMAP));
    SAME("attach_remap", lib, raw);
    if (raw.ret != -1) {
        CHECK(raw.ret == (long)(uintptr_t)r);
        CHECK_EQ(strcmp(ck_map_perms(r), perms), 0);
        CHECK_EQ(raw_shmdt(r), 0);
    }
    CHECK_EQ(strcmp(perms, "rw-s"), 0);
    trace_ok("attach_remap", lib, "at_addr=%d perms=%s", lib.ret == (long)(uintptr_t)r, perms);
    munmap(r, len);

    diff_attach("attach_remap_null", id, NULL, SHM_REMAP, EINVAL);
    diff_attach("attach_remap_rdonly_null", id, NULL, SHM_REMAP | SHM_RDONLY, EINVAL);
}

/* Attach with FLG by both ways and trace the mapping's permissions. */
static void
perms_case(const char *name, int id, int flg, const char *want_perms)
{
    struct ck_res lib = RES(shmat(id, NULL, flg));
    struct ck_res raw = RES(raw_shmat(id, NULL, flg));
    SAME(name, lib, raw);
    WANT(name, lib, 0);
    char perms[8] = "none";
    if (lib.ret != -1) {
        snprintf(perms, sizeof perms, "%s", ck_map_perms((void *)lib.ret));
        CHECK_EQ(shmdt((void *)lib.ret), 0);
    }
    if (raw.ret != -1) {
        CHECK_EQ(strcmp(ck_map_perms((void *)raw.ret), perms), 0);
        CHECK_EQ(raw_shmdt((void *)raw.ret), 0);
    }
    if (strcmp(perms, want_perms) != 0)
        FAIL("%s: perms %s, expected %s", name, perms, want_perms);
    trace_ok(name, lib, "perms=%s", perms);
}

static void
case_flags(int id)
{
    perms_case("attach_exec", id, SHM_EXEC, "rwxs");
    perms_case("attach_rdonly_exec", id, SHM_RDONLY | SHM_EXEC, "r-xs");
    perms_case("attach_junk_flags", id, 0x7fff0fff, "rw-s");
    perms_case("attach_junk_flags_rdonly", id, 0x7fff0fff | SHM_RDONLY, "r--s");
    /* SHM_RND with a NULL address means nothing */
    perms_case("attach_rnd_null", id, SHM_RND, "rw-s");

    /* root passes the permission check on a 0000 segment */
    int locked = ck_fixture(4096, 0);
    perms_case("attach_mode0000_as_root", locked, 0, "rw-s");
}

static void
case_marked(void)
{
    int id = ck_fixture(4096, 0600);
    void *a = raw_shmat(id, NULL, 0);
    CHECK(a != (void *)-1);
    CHECK_EQ(raw_shmctl(id, IPC_RMID, NULL), 0);
    struct ck_res lib = RES(shmat(id, NULL, 0));
    struct ck_res raw = RES(raw_shmat(id, NULL, 0));
    SAME("attach_marked_segment", lib, raw);
    WANT("attach_marked_segment", lib, 0);
    long n = ck_nattch(id);
    CHECK_EQ(n, 1 + (lib.ret != -1) + (raw.ret != -1));
    if (lib.ret != -1)
        CHECK_EQ(shmdt((void *)lib.ret), 0);
    if (raw.ret != -1)
        CHECK_EQ(raw_shmdt((void *)raw.ret), 0);
    CHECK_EQ(raw_shmdt(a), 0);
    /* the last detach destroyed it */
    CHECK_EQ(ck_nattch(id), -1);
    trace_ok("attach_marked_segment", lib, "nattch=%ld", n);
    diff_attach("attach_marked_destroyed", id, NULL, 0, EINVAL);
}

static void
case_twice(void)
{
    int id = ck_fixture(8192, 0600);
    struct ck_res a = RES(shmat(id, NULL, 0));
    struct ck_res b = RES(shmat(id, NULL, 0));
    WANT("attach_twice", a, 0);
    WANT("attach_twice", b, 0);
    struct shmid_ds ds, raw_ds;
    memset(&ds, 0, sizeof ds);
    CHECK_EQ(shmctl(id, IPC_STAT, &ds), 0);
    CHECK_EQ(ck_stat(id, &raw_ds), 0);
    SAME_DS("attach_twice", &ds, &raw_ds);
    CHECK(a.ret != b.ret);
    CHECK_EQ(ds.shm_nattch, 2);
    if (a.ret != -1 && b.ret != -1) {
        /* two views of one memory */
        ((char *)a.ret)[8191] = 'x';
        CHECK_EQ(((char *)b.ret)[8191], 'x');
    }
    if (a.ret != -1)
        CHECK_EQ(shmdt((void *)a.ret), 0);
    if (b.ret != -1)
        CHECK_EQ(raw_shmdt((void *)b.ret), 0);
    trace_ok("attach_twice", b, "distinct=%d nattch=%lu", a.ret != b.ret,
             (unsigned long)ds.shm_nattch);
}

static void
case_huge_segment(void)
{
    /* a sparse 2^62-byte segment cannot fit in the address space */
    int id = ck_raw_shmget(IPC_PRIVATE, (size_t)1 << 62, IPC_CREAT | SHM_NORESERVE | 0600);
    if (id < 0) {
        tracef("attach_huge_segment", "skipped");
        return;
    }
    diff_attach("attach_huge_segment", id, NULL, 0, ENOMEM);
}

static void
case_small_segment(void)
{
    /* one byte asked: a whole page is mapped */
    int id = ck_fixture(1, 0600);
    struct ck_res lib = RES(shmat(id, NULL, 0));
    WANT("attach_one_byte_segment", lib, 0);
    if (lib.ret != -1) {
        volatile char *p = (char *)lib.ret;
        p[PAGE - 1] = 1;
        CHECK_EQ(p[PAGE - 1], 1);
        CHECK_EQ(shmdt((void *)p), 0);
    }
    trace("attach_one_byte_segment", lib);
}

int
main(void)
{
    ck_init();
    int id = ck_fixture(2 * PAGE, 0600);
    case_null_addr(id);
    case_invalid_ids();
    case_rdonly(id);
    case_addresses(id);
    case_remap(id);
    case_flags(id);
    case_marked();
    case_twice();
    case_huge_segment();
    case_small_segment();
    CHECK_EQ(ck_nattch(id), 0);
    return ck_finish();
}
