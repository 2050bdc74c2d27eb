/* x_guard.c: guard pages (run with SHMGUARD_OPTIONS=guard_pages=1).
 *
 * - An attachment whose address the kernel chooses has a no-access page
 *   before and after it: one byte past the last page, or one byte before
 *   the start, kills a forked child with SIGSEGV, and the child's stderr
 *   names the segment ("guard page hit", shmid=N, its size and the offset).
 *   A fault elsewhere (a write to a read-only attachment) is not reported
 *   as a guard page hit.
 * - No result changes: each call is compared with the raw system call
 *   (valid and invalid shmids, SHM_RDONLY, SHM_RND and SHM_REMAP at the
 *   caller's address, which get no guards, bad shmdt addresses, attachments
 *   the kernel refuses to a child running as nobody).
 * - shmdt leaves /proc/self/maps as it was (same number of lines, nothing
 *   left where the guards were), also over 100 cycles, with ten held at
 *   once, after SHM_REMAP replaced a guarded attachment, and in a forked
 *   child that detaches an inherited attachment.
 * - shmguard_attachment_size still works, and data written through one
 *   attachment is read through another. */
#include "check.h"

#include <grp.h>

#define PAGE 4096UL

static ssize_t (*api_attachment_size)(const void *);

/* /proc/self/maps into a static buffer with read(2): no allocation that
 * could add a mapping of its own. */
static const char *
maps_text(void)
{
    static char buf[1 << 20];
    size_t len = 0;
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        FAIL("cannot open /proc/self/maps");
        buf[0] = '\0';
        return buf;
    }
    ssize_t r;
    while (len + 1 < sizeof buf && (r = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)r;
    close(fd);
    buf[len] = '\0';
    return buf;
}

static int
maps_lines(void)
{
    int n = 0;
    for (const char *p = maps_text(); *p != '\0'; p++)
        n += *p == '\n';
    return n;
}

/* Permissions of the mapping that contains ADDR, "none" if none does. */
static const char *
perms_at(const void *addr)
{
    static char perms[8];
    unsigned long a = (unsigned long)(uintptr_t)addr;
    snprintf(perms, sizeof perms, "none");
    for (const char *line = maps_text(); *line != '\0';) {
        unsigned long start, end;
        char p[8];
        if (sscanf(line, "%lx-%lx %7s", &start, &end, p) == 3 && start <= a && a < end) {
            snprintf(perms, sizeof perms, "%s", p);
            break;
        }
        const char *nl = strchr(line, '\n');
        if (nl == NULL)
            break;
        line = nl + 1;
    }
    return perms;
}

static size_t
span_of(size_t size)
{
    return (size + PAGE - 1) / PAGE * PAGE;
}

/* The guards of an attachment at P of SIZE bytes are in place (WANT 1) or
 * gone (WANT 0). */
static int
guards(const char *name, const char *p, size_t size, int want)
{
    char before[8], after[8];
    snprintf(before, sizeof before, "%s", perms_at(p - 1));
    snprintf(after, sizeof after, "%s", perms_at(p + span_of(size)));
    const char *expect = want ? "---p" : "none";
    int ok = strcmp(before, expect) == 0 && strcmp(after, expect) == 0;
    if (!ok)
        FAIL("%s: the pages around the attachment are %s and %s, expected %s", name, before,
             after, expect);
    return ok;
}

/* TEXT has "shmid=ID" with no digit after it. */
static int
names_shmid(const char *text, int id)
{
    char want[32];
    snprintf(want, sizeof want, "shmid=%d", id);
    for (const char *p = strstr(text, want); p != NULL; p = strstr(p + 1, want))
        if (p[strlen(want)] < '0' || p[strlen(want)] > '9')
            return 1;
    return 0;
}

/* ------------------------------------------------------------- faults */

/* A forked child accesses byte OFFSET of an attachment of ID (SIZE bytes):
 * AT if the parent attached it (inherited), else its own attachment with
 * FLAGS. It must die of SIGSEGV after shmguard named the segment (if
 * GUARD; else without a word about guard pages). */
static void
fault_case_of(const char *name, int id, size_t size, char *at, int flags, long offset,
              int read_access, int guard)
{
    char errfile[256];
    ck_tmp_name(errfile, sizeof errfile, name);
    pid_t pid = ck_fork();
    if (pid == 0) {
        ck_child_start_signals();
        int fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 2) < 0)
            _exit(2);
        volatile char *p = at != NULL ? at : shmat(id, NULL, flags);
        if (p == (void *)-1)
            _exit(3);
        if (read_access) {
            volatile char c = p[offset];
            (void)c;
        } else {
            p[offset] = 1;
        }
        _exit(4); /* no fault */
    }
    int st = ck_wait(pid, 10000);
    int died = st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV;
    char *text = ck_slurp(errfile);
    if (text == NULL)
        text = strdup("");
    char size_s[48], offset_s[48];
    snprintf(size_s, sizeof size_s, "(size %zu)", size);
    snprintf(offset_s, sizeof offset_s, "(offset %ld)", offset);
    int hit = strstr(text, "guard page hit") != NULL;
    int named = names_shmid(text, id);
    int sized = strstr(text, size_s) != NULL;
    int placed = strstr(text, offset_s) != NULL;
    if (!died)
        FAIL("%s: the child was not killed by SIGSEGV (status 0x%x: %s)", name, (unsigned)st,
             st != -1 && WIFEXITED(st) ? "it exited" : "another end");
    if (!guard) {
        if (hit)
            FAIL("%s: a fault outside the guard pages reported as a guard page hit:\n%s",
                 name, text);
        tracef(name, "ok segv=%d hit=%d", died, hit);
        free(text);
        return;
    }
    if (!hit || !named || !sized || !placed)
        FAIL("%s: the child's stderr lacks \"guard page hit\"=%d \"shmid=%d\"=%d \"%s\"=%d "
             "\"%s\"=%d:\n%s",
             name, hit, id, named, size_s, sized, offset_s, placed, text);
    tracef(name, "ok segv=%d hit=%d shmid=%d size=%d offset=%d", died, hit, named, sized,
           placed);
    free(text);
}

static void
fault_case(const char *name, int id, size_t size, char *at, int flags, long offset,
           int read_access)
{
    fault_case_of(name, id, size, at, flags, offset, read_access, 1);
}

static void
case_faults(void)
{
    int id = ck_fixture(5000, 0600);
    fault_case("overrun_write", id, 5000, NULL, 0, 8192, 0);
    fault_case("underrun_write", id, 5000, NULL, 0, -1, 0);
    fault_case("underrun_far", id, 5000, NULL, 0, -(long)PAGE, 0);
    fault_case("overrun_read_rdonly", id, 5000, NULL, SHM_RDONLY, 8192, 1);
    fault_case("overrun_last_guard_byte", id, 5000, NULL, 0, 8192 + PAGE - 1, 0);

    int pages = ck_fixture(2 * PAGE, 0600);
    fault_case("overrun_page_multiple", pages, 2 * PAGE, NULL, 0, 2 * PAGE, 0);
    int tiny = ck_fixture(1, 0600);
    fault_case("overrun_one_byte_segment", tiny, 1, NULL, 0, PAGE, 0);

    /* an attachment inherited through fork keeps its guards and its name */
    char *p = shmat(id, NULL, 0);
    CHECK(p != (void *)-1);
    if (p != (void *)-1) {
        fault_case("overrun_inherited", id, 5000, p, 0, 8192, 0);
        CHECK_EQ(shmdt(p), 0);
    }

    /* a write to a read-only attachment faults, but not in a guard page */
    fault_case_of("rdonly_write_in_bounds", id, 5000, NULL, SHM_RDONLY, 100, 0, 0);

    /* within the segment nothing happens */
    char errfile[256];
    ck_tmp_name(errfile, sizeof errfile, "in_bounds");
    pid_t pid = ck_fork();
    if (pid == 0) {
        ck_child_start_signals();
        int fd = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 2) < 0)
            _exit(2);
        volatile char *q = shmat(id, NULL, 0);
        if (q == (void *)-1)
            _exit(3);
        q[0] = 1;
        q[4999] = 2;
        _exit(shmdt((void *)q) == 0 ? 0 : 5);
    }
    int code = ck_child_code(pid, 10000);
    char *text = ck_slurp(errfile);
    CHECK_EQ(code, 0);
    if (text != NULL && text[0] != '\0')
        FAIL("in_bounds: stderr not empty: %s", text);
    tracef("in_bounds", "ok code=%d", code);
    free(text);
}

/* ------------------------------------------------------------ results */

static void
size_is(const char *name, const void *addr, ssize_t want)
{
    errno = 0;
    ssize_t got = api_attachment_size(addr);
    if (got != want || (want == -1 && errno != EINVAL))
        FAIL("%s: attachment_size %zd (%s), expected %zd", name, got, ck_errname(errno), want);
}

static void
case_kernel_placed(void)
{
    int id = ck_fixture(5000, 0600);
    struct ck_res lib = RES(shmat(id, NULL, 0));
    struct ck_res raw = RES(raw_shmat(id, NULL, 0));
    SAME("attach_null", lib, raw);
    trace("attach_null", lib);
    if (lib.ret == -1 || raw.ret == -1)
        return;
    char *p = (char *)lib.ret, *r = (char *)raw.ret;
    CHECK_EQ(ck_nattch(id), 2);
    CHECK_EQ(strcmp(perms_at(p), "rw-s"), 0);
    int guarded = guards("attach_null", p, 5000, 1);
    size_is("attach_null_size", p, 5000);
    tracef("attach_null_guarded", "ok guarded=%d", guarded);

    /* zero-filled, and one memory: write through one, read through others */
    struct ck_res second = RES(shmat(id, NULL, 0));
    SAME("attach_second", second, raw);
    char *q = (char *)second.ret;
    int zero = 1;
    for (size_t i = 0; i < 5000; i++)
        zero &= p[i] == 0;
    CHECK(zero);
    for (size_t i = 0; i < 5000; i++)
        p[i] = (char)(i * 7 + 1);
    int same = 1;
    for (size_t i = 0; i < 5000 && q != (char *)-1; i++)
        same &= q[i] == (char)(i * 7 + 1) && r[i] == (char)(i * 7 + 1);
    CHECK(same);
    r[4999] = 'r';
    CHECK_EQ(p[4999], 'r');
    tracef("data_shared", "ok zero=%d same=%d", zero, same);
    if (q != (char *)-1) {
        guards("attach_second", q, 5000, 1);
        CHECK_EQ(shmdt(q), 0);
    }

    /* bad detach addresses: the kernel's answer, guards untouched */
    lib = RES(shmdt(p + 1));
    raw = RES(raw_shmdt(r + 1));
    SAME("detach_inside", lib, raw);
    trace("detach_inside", lib);
    lib = RES(shmdt(p - PAGE));
    raw = RES(raw_shmdt(p - PAGE));
    SAME("detach_guard_page", lib, raw);
    trace("detach_guard_page", lib);
    guards("after_bad_detach", p, 5000, 1);
    CHECK_EQ(ck_nattch(id), 2);

    lib = RES(shmdt(p));
    raw = RES(raw_shmdt(r));
    SAME("detach", lib, raw);
    trace("detach", lib);
    guards("detach", p, 5000, 0);
    size_is("detach_size_gone", p, -1);
    CHECK_EQ(ck_nattch(id), 0);
}

static void
case_results(void)
{
    int id = ck_fixture(3 * PAGE, 0600);
    int gone = ck_fixture(PAGE, 0600);
    CHECK_EQ(raw_shmctl(gone, IPC_RMID, NULL), 0);
    const int bad_ids[] = {-1, INT_MAX, gone};
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        char name[48];
        snprintf(name, sizeof name, "attach_bad_id_%zu", i);
        int before = maps_lines();
        struct ck_res lib = RES(shmat(bad_ids[i], NULL, 0));
        int after = maps_lines();
        struct ck_res raw = RES(raw_shmat(bad_ids[i], NULL, 0));
        SAME(name, lib, raw);
        CHECK_EQ(after, before);
        trace(name, lib);
    }

    /* SHM_RDONLY: read-only, guarded */
    struct ck_res lib = RES(shmat(id, NULL, SHM_RDONLY));
    struct ck_res raw = RES(raw_shmat(id, NULL, SHM_RDONLY));
    SAME("attach_rdonly", lib, raw);
    trace("attach_rdonly", lib);
    if (lib.ret != -1) {
        CHECK_EQ(strcmp(perms_at((void *)lib.ret), "r--s"), 0);
        guards("attach_rdonly", (char *)lib.ret, 3 * PAGE, 1);
        size_is("attach_rdonly_size", (void *)lib.ret, 3 * PAGE);
        CHECK_EQ(shmdt((void *)lib.ret), 0);
    }
    if (raw.ret != -1)
        CHECK_EQ(raw_shmdt((void *)raw.ret), 0);

    /* SHM_RND at the caller's address: rounded down, no guards */
    char *range = ck_free_range(8 * PAGE);
    char *want = range + 2 * PAGE;
    lib = RES(shmat(id, want + 123, SHM_RND));
    trace("attach_rnd", lib);
    CHECK_EQ(lib.ret, (long)want);
    if (lib.ret != -1) {
        guards("attach_rnd", want, 3 * PAGE, 0);
        size_is("attach_rnd_size", want, 3 * PAGE);
        CHECK_EQ(shmdt(want), 0);
    }
    raw = RES(raw_shmat(id, want + 123, SHM_RND));
    SAME("attach_rnd", lib, raw);
    CHECK_EQ(raw.ret, (long)want);
    if (raw.ret != -1)
        CHECK_EQ(raw_shmdt(want), 0);

    /* an unaligned address without SHM_RND */
    lib = RES(shmat(id, want + 123, 0));
    raw = RES(raw_shmat(id, want + 123, 0));
    SAME("attach_unaligned", lib, raw);
    trace("attach_unaligned", lib);

    /* an aligned caller address: exactly there, no guards */
    lib = RES(shmat(id, want, 0));
    trace("attach_at_address", lib);
    CHECK_EQ(lib.ret, (long)want);
    if (lib.ret != -1) {
        guards("attach_at_address", want, 3 * PAGE, 0);
        CHECK_EQ(shmdt(want), 0);
    }

    /* SHM_REMAP over the caller's own mapping: replaced, neighbours kept */
    char *own = mmap(NULL, 6 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(own != MAP_FAILED);
    if (own != MAP_FAILED) {
        lib = RES(shmat(id, own + PAGE, SHM_REMAP));
        trace("attach_remap", lib);
        CHECK_EQ(lib.ret, (long)(own + PAGE));
        CHECK_EQ(strcmp(perms_at(own), "rw-p"), 0);
        CHECK_EQ(strcmp(perms_at(own + 4 * PAGE), "rw-p"), 0);
        CHECK_EQ(strcmp(perms_at(own + PAGE), "rw-s"), 0);
        if (lib.ret != -1)
            CHECK_EQ(shmdt(own + PAGE), 0);
        raw = RES(raw_shmat(id, own + PAGE, SHM_REMAP));
        SAME("attach_remap", lib, raw);
        if (raw.ret != -1)
            CHECK_EQ(raw_shmdt(own + PAGE), 0);
        munmap(own, 6 * PAGE);
    }
    /* SHM_REMAP needs an address */
    lib = RES(shmat(id, NULL, SHM_REMAP));
    raw = RES(raw_shmat(id, NULL, SHM_REMAP));
    SAME("attach_remap_null", lib, raw);
    trace("attach_remap_null", lib);
    CHECK_EQ(ck_nattch(id), 0);

    /* a segment marked for removal while attached goes when detached */
    int marked = ck_fixture(5000, 0600);
    char *p = shmat(marked, NULL, 0);
    CHECK(p != (void *)-1);
    if (p != (void *)-1) {
        CHECK_EQ(shmctl(marked, IPC_RMID, NULL), 0);
        guards("attach_marked", p, 5000, 1);
        CHECK_EQ(shmdt(p), 0);
        guards("detach_marked", p, 5000, 0);
        struct shmid_ds ds;
        struct ck_res st = RES(ck_stat(marked, &ds));
        WANT("marked_destroyed", st, EINVAL);
    }
    tracef("marked", "ok");
}

/* In a child running as nobody: attachments the kernel refuses (the
 * guarded path must fall back and give the kernel's EACCES, leaving no
 * reservation behind) and one it allows, read-only. */
static int
nobody_main(int private_id, int shared_id)
{
    if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
        return 10;
    int before = maps_lines();
    struct ck_res lib = RES(shmat(private_id, NULL, 0));
    struct ck_res raw = RES(raw_shmat(private_id, NULL, 0));
    SAME("nobody_attach_0600", lib, raw);
    WANT("nobody_attach_0600", lib, EACCES);
    lib = RES(shmat(shared_id, NULL, 0));
    raw = RES(raw_shmat(shared_id, NULL, 0));
    SAME("nobody_attach_0644_rw", lib, raw);
    WANT("nobody_attach_0644_rw", lib, EACCES);
    CHECK_EQ(maps_lines(), before);
    lib = RES(shmat(shared_id, NULL, SHM_RDONLY));
    raw = RES(raw_shmat(shared_id, NULL, SHM_RDONLY));
    SAME("nobody_attach_0644_rdonly", lib, raw);
    if (lib.ret != -1) {
        guards("nobody_attach_0644_rdonly", (char *)lib.ret, 5000, 1);
        CHECK_EQ(shmdt((void *)lib.ret), 0);
    }
    if (raw.ret != -1)
        CHECK_EQ(raw_shmdt((void *)raw.ret), 0);
    CHECK_EQ(maps_lines(), before);
    return ck_failures == 0 ? 0 : 11;
}

static void
case_permissions(void)
{
    int private_id = ck_fixture(5000, 0600), shared_id = ck_fixture(5000, 0644);
    pid_t pid = ck_fork();
    if (pid == 0) {
        ck_child_defaults();
        _exit(nobody_main(private_id, shared_id));
    }
    int code = ck_child_code(pid, 10000);
    CHECK_EQ(code, 0);
    tracef("nobody_attach", "ok code=%d", code);
}

/* ------------------------------------------------------------ the maps */

static void
case_maps_restored(void)
{
    const size_t sizes[] = {1, PAGE, 5000, 3 * PAGE, 1 << 20};
    /* warm up: the first calls may set up shmguard's own tables */
    int warm = ck_fixture(PAGE, 0600);
    void *w = shmat(warm, NULL, 0);
    CHECK(w != (void *)-1);
    CHECK_EQ(shmdt(w), 0);

    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int id = ck_fixture(sizes[i], 0600);
        int before = maps_lines();
        char *p = shmat(id, NULL, 0);
        CHECK(p != (void *)-1);
        if (p == (void *)-1)
            continue;
        int during = maps_lines();
        int guarded = guards("maps", p, sizes[i], 1);
        CHECK_EQ(shmdt(p), 0);
        int after = maps_lines();
        CHECK_EQ(after, before);
        guards("maps_after", p, sizes[i], 0);
        CHECK(during > before);
        tracef("maps_restored", "ok size=%zu same=%d guarded=%d", sizes[i], after == before,
               guarded);
    }

    /* 100 cycles, and ten held at once, detached in another order */
    int id = ck_fixture(5000, 0600);
    int before = maps_lines();
    int bad = 0;
    for (int i = 0; i < 100; i++) {
        char *p = shmat(id, NULL, 0);
        if (p == (void *)-1) {
            bad++;
            continue;
        }
        p[i] = (char)i;
        bad += shmdt(p) != 0;
    }
    int after = maps_lines();
    CHECK_EQ(bad, 0);
    CHECK_EQ(after, before);
    tracef("maps_restored_100_cycles", "ok same=%d failures=%d", after == before, bad);

    char *held[10];
    for (int i = 0; i < 10; i++) {
        held[i] = shmat(id, NULL, 0);
        CHECK(held[i] != (char *)-1);
    }
    for (int i = 0; i < 10; i++)
        if (held[i] != (char *)-1)
            guards("held", held[i], 5000, 1);
    const int order[10] = {3, 7, 0, 9, 1, 5, 2, 8, 4, 6};
    for (int i = 0; i < 10; i++)
        if (held[order[i]] != (char *)-1)
            CHECK_EQ(shmdt(held[order[i]]), 0);
    after = maps_lines();
    CHECK_EQ(after, before);
    CHECK_EQ(ck_nattch(id), 0);
    tracef("maps_restored_ten_held", "ok same=%d", after == before);

    /* SHM_REMAP at the address of a guarded attachment replaces it; the
     * detach must leave the maps as the same calls do without shmguard */
    int other = ck_fixture(5000, 0600);
    before = maps_lines();
    char *r = raw_shmat(id, NULL, 0);
    CHECK(r != (void *)-1);
    CHECK(raw_shmat(other, r, SHM_REMAP) == r);
    CHECK_EQ(raw_shmdt(r), 0);
    int kernel_after = maps_lines();
    CHECK_EQ(kernel_after, before);
    char *g = shmat(id, NULL, 0);
    CHECK(g != (void *)-1);
    if (g != (void *)-1) {
        struct ck_res re = RES(shmat(other, g, SHM_REMAP));
        CHECK_EQ(re.ret, (long)g);
        size_is("remap_over_guarded_size", g, 5000);
        CHECK_EQ(shmdt(g), 0);
        after = maps_lines();
        if (after != before)
            FAIL("remap_over_guarded: /proc/self/maps has %d lines after shmdt, %d before the "
                 "attach (the raw calls leave %d): the replaced attachment's guard pages stay "
                 "(the pages around it are %s and %s)",
                 after, before, kernel_after, perms_at(g - 1), perms_at(g + 2 * PAGE));
        CHECK_EQ(ck_nattch(id), 0);
        CHECK_EQ(ck_nattch(other), 0);
        tracef("maps_restored_remap_over_guarded", "ok same=%d", after == before);
    }

    /* a child that detaches an inherited attachment drops its guards too */
    before = maps_lines();
    char *p = shmat(id, NULL, 0);
    CHECK(p != (void *)-1);
    if (p == (void *)-1)
        return;
    pid_t pid = ck_fork();
    if (pid == 0) {
        ck_child_defaults();
        if (shmdt(p) != 0)
            _exit(2);
        if (maps_lines() != before)
            _exit(3);
        if (strcmp(perms_at(p - 1), "none") != 0 || strcmp(perms_at(p + 2 * PAGE), "none") != 0)
            _exit(4);
        _exit(0);
    }
    int code = ck_child_code(pid, 10000);
    CHECK_EQ(code, 0);
    tracef("maps_restored_in_child", "ok code=%d", code);
    guards("parent_after_child_detach", p, 5000, 1);
    CHECK_EQ(shmdt(p), 0);
    CHECK_EQ(maps_lines(), before);
}

int
main(void)
{
    ck_init();
    *(void **)&api_attachment_size = ck_sym("shmguard_attachment_size");
    case_faults();
    case_kernel_placed();
    case_results();
    case_permissions();
    case_maps_restored();
    return ck_finish();
}
