/* t_shmdt.c: shmdt through the libc name against the raw system call. */
#include "check.h"

#define PAGE 4096UL

/* Detach ADDR by both ways (where nothing is attached there, so neither
 * call changes anything) and require the same outcome. */
static void
diff_detach_nothing(const char *name, const void *addr, int want_err)
{
    struct ck_res lib = RES(shmdt(addr));
    struct ck_res raw = RES(raw_shmdt(addr));
    SAME(name, lib, raw);
    WANT(name, lib, want_err);
    trace(name, lib);
}

static void
case_not_attachments(int id)
{
    diff_detach_nothing("detach_null", NULL, EINVAL);
    diff_detach_nothing("detach_high_addr", (void *)(uintptr_t)-PAGE, EINVAL);

    void *anon = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(anon != MAP_FAILED);
    diff_detach_nothing("detach_anon_mapping", anon, EINVAL);
    munmap(anon, PAGE);

    char *heap = malloc(100);
    CHECK(heap != NULL);
    diff_detach_nothing("detach_heap_pointer", heap + 1, EINVAL);
    free(heap);

    int fd = open(ck_tmpfile(), O_RDWR);
    CHECK(fd >= 0);
    CHECK_EQ(ftruncate(fd, (off_t)PAGE), 0);
    void *fmap = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, 0);
    CHECK(fmap != MAP_FAILED);
    diff_detach_nothing("detach_file_mapping", fmap, EINVAL);
    munmap(fmap, PAGE);
    close(fd);

    /* addresses inside a live attachment */
    char *p = shmat(id, NULL, 0);
    CHECK(p != (void *)-1);
    diff_detach_nothing("detach_inside_attachment", p + PAGE, EINVAL);
    diff_detach_nothing("detach_last_page", p + 2 * PAGE, EINVAL);
    diff_detach_nothing("detach_unaligned", p + 1, EINVAL);
    diff_detach_nothing("detach_past_end", p + 3 * PAGE, EINVAL);
    CHECK_EQ(ck_nattch(id), 1);
    CHECK_EQ(shmdt(p), 0);
}

static void
case_detach_counts(int id)
{
    struct ck_res a = RES(shmat(id, NULL, 0));
    struct ck_res b = RES(shmat(id, NULL, 0));
    WANT("detach_ok", a, 0);
    WANT("detach_ok", b, 0);
    CHECK_EQ(ck_nattch(id), 2);
    errno = 0;
    struct ck_res d = RES(shmdt((void *)a.ret));
    WANT("detach_ok", d, 0);
    CHECK_EQ(d.ret, 0);
    struct shmid_ds ds, raw_ds;
    memset(&ds, 0, sizeof ds);
    CHECK_EQ(shmctl(id, IPC_STAT, &ds), 0);
    CHECK_EQ(ck_stat(id, &raw_ds), 0);
    SAME_DS("detach_ok", &ds, &raw_ds);
    CHECK_EQ(ds.shm_nattch, 1);
    CHECK_EQ(ds.shm_lpid, getpid());
    CHECK(ds.shm_dtime != 0);
    /* the mapping is gone, the other one still works */
    CHECK_EQ(strcmp(ck_map_perms((void *)a.ret), "none"), 0);
    ((char *)b.ret)[0] = 1;
    trace_ok("detach_ok", d, "ret=%ld nattch=%lu", d.ret, (unsigned long)ds.shm_nattch);

    /* a second detach of the same address */
    struct ck_res lib = RES(shmdt((void *)a.ret));
    struct ck_res raw = RES(raw_shmdt((void *)a.ret));
    SAME("detach_double", lib, raw);
    WANT("detach_double", lib, EINVAL);
    CHECK_EQ(ck_nattch(id), 1);
    trace("detach_double", lib);

    d = RES(shmdt((void *)b.ret));
    WANT("detach_second_attachment", d, 0);
    CHECK_EQ(ck_nattch(id), 0);
    trace_ok("detach_second_attachment", d, "nattch=%ld", ck_nattch(id));
}

/* Attach through one way, detach through the other. */
static void
case_mixed(int id)
{
    void *p = raw_shmat(id, NULL, 0);
    CHECK(p != (void *)-1);
    struct ck_res d = RES(shmdt(p));
    WANT("detach_raw_attachment", d, 0);
    CHECK_EQ(ck_nattch(id), 0);
    trace("detach_raw_attachment", d);

    p = shmat(id, NULL, 0);
    CHECK(p != (void *)-1);
    CHECK_EQ(raw_shmdt(p), 0);
    d = RES(shmdt(p));
    WANT("detach_after_raw_detach", d, EINVAL);
    trace("detach_after_raw_detach", d);
}

static void
case_zero_address(int id)
{
    struct ck_res a = RES(shmat(id, (void *)0x100, SHM_RND));
    struct ck_res lib = a;
    if (a.ret == 0) {
        CHECK_EQ(ck_nattch(id), 1);
        lib = RES(shmdt(NULL));
        CHECK_EQ(ck_nattch(id), 0);
    } else if (a.ret != -1) {
        FAIL("attach at 0x100 with SHM_RND gave %#lx", (unsigned long)a.ret);
        shmdt((void *)a.ret);
    }
    struct ck_res b = RES(raw_shmat(id, (void *)0x100, SHM_RND));
    struct ck_res raw = b;
    if (b.ret == 0)
        raw = RES(raw_shmdt(NULL));
    SAME("detach_zero_attachment", a, b);
    SAME("detach_zero_attachment", lib, raw);
    /* nothing at 0 any more */
    diff_detach_nothing("detach_zero_again", NULL, EINVAL);
    trace_ok("detach_zero_attachment", a, "detach=%s", ck_outcome(lib));
}

/* The kernel detaches the whole attachment even when its first page was
 * unmapped already: it finds the next piece by the page offset. */
static void
case_partly_unmapped(int id)
{
    static const struct {
        const char *name;
        size_t hole;
    } cases[] = {{"detach_after_unmap_head", 0}, {"detach_after_unmap_middle", PAGE}};
    for (size_t i = 0; i < 2; i++) {
        char *p = shmat(id, NULL, 0);
        CHECK(p != (void *)-1);
        CHECK_EQ(munmap(p + cases[i].hole, PAGE), 0);
        struct ck_res lib = RES(shmdt(p));
        long n_lib = ck_nattch(id);
        char left_lib[8];
        snprintf(left_lib, sizeof left_lib, "%s", ck_map_perms(p + 2 * PAGE));

        char *q = raw_shmat(id, NULL, 0);
        CHECK(q != (void *)-1);
        CHECK_EQ(munmap(q + cases[i].hole, PAGE), 0);
        struct ck_res raw = RES(raw_shmdt(q));
        long n_raw = ck_nattch(id);
        SAME(cases[i].name, lib, raw);
        CHECK_EQ(n_lib, n_raw);
        CHECK_EQ(strcmp(left_lib, ck_map_perms(q + 2 * PAGE)), 0);
        /* nothing may stay mapped; in case it did, clean up */
        if (n_raw != 0) {
            munmap(p, 3 * PAGE);
            munmap(q, 3 * PAGE);
        }
        trace_ok(cases[i].name, lib, "nattch=%ld tail=%s", n_lib, left_lib);
    }
}

static void
case_marked(void)
{
    int id = ck_fixture(4096, 0600);
    void *p = shmat(id, NULL, 0);
    CHECK(p != (void *)-1);
    CHECK_EQ(raw_shmctl(id, IPC_RMID, NULL), 0);
    CHECK_EQ(ck_nattch(id), 1);
    struct ck_res d = RES(shmdt(p));
    WANT("detach_last_of_marked", d, 0);
    struct shmid_ds ds;
    struct ck_res st = RES(shmctl(id, IPC_STAT, &ds));
    struct ck_res raw_st = RES(ck_stat(id, &ds));
    SAME("detach_last_of_marked", st, raw_st);
    WANT("detach_last_of_marked", st, EINVAL);
    trace_ok("detach_last_of_marked", d, "stat_after=%s", ck_outcome(st));
}

static void
case_remapped(int id)
{
    char *r = mmap(NULL, 3 * PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(r != MAP_FAILED);
    void *p = shmat(id, r, SHM_REMAP);
    CHECK(p == r);
    struct ck_res d = RES(shmdt(r));
    WANT("detach_remapped", d, 0);
    CHECK_EQ(strcmp(ck_map_perms(r), "none"), 0);
    trace_ok("detach_remapped", d, "left=%s", ck_map_perms(r));
}

int
main(void)
{
    ck_init();
    int id = ck_fixture(3 * PAGE, 0600);
    case_not_attachments(id);
    case_detach_counts(id);
    case_mixed(id);
    case_zero_address(id);
    case_partly_unmapped(id);
    case_marked();
    case_remapped(id);
    CHECK_EQ(ck_nattch(id), 0);
    return ck_finish();
}
