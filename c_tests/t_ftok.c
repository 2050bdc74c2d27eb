/* t_ftok.c: ftok against the key computed by hand from the raw stat. */
#include "check.h"

/* The key from the raw newfstatat; -1 with errno as the kernel set it. */
static key_t
key_by_hand(const char *path, int id)
{
    struct stat st;
    if (syscall(SYS_newfstatat, AT_FDCWD, path, &st, 0) != 0)
        return (key_t)-1;
    uint32_t k = ((uint32_t)st.st_ino & 0xffffu) | (((uint32_t)st.st_dev & 0xffu) << 16) |
                 (((uint32_t)id & 0xffu) << 24);
    return (key_t)k;
}

/* ftok by the libc name against the computation; trace the id byte only
 * (the rest depends on the file). */
static key_t
ftok_case(const char *name, const char *path, int id, int want_err)
{
    struct ck_res lib = RES(ftok(path, id));
    struct ck_res raw = RES(key_by_hand(path, id));
    SAME(name, lib, raw);
    WANT(name, lib, want_err);
    if (lib.ret != -1 && lib.ret != raw.ret)
        FAIL("%s: ftok gave %#lx, computed %#lx", name, (unsigned long)(uint32_t)lib.ret,
             (unsigned long)(uint32_t)raw.ret);
    trace_ok(name, lib, "id_byte=0x%02x as_computed=%d", ((uint32_t)lib.ret >> 24) & 0xffu,
             lib.ret == raw.ret);
    return (key_t)lib.ret;
}

int
main(void)
{
    ck_init();
    const char *file = ck_tmpfile();

    static const int ids[] = {0, 1, 0x7f, 0x80, 0xff, 0x1ff, -1, 0x12345678, INT_MIN};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        char name[48];
        snprintf(name, sizeof name, "ftok_id_%#x", (unsigned)ids[i]);
        ftok_case(name, file, ids[i], 0);
    }
    /* only the low 8 bits of id count */
    key_t a = ftok(file, 0x1ff), b = ftok(file, 0xff), c = ftok(file, 0x100), d = ftok(file, 0);
    CHECK_EQ(a, b);
    CHECK_EQ(c, d);
    CHECK(a != d);
    tracef("ftok_low_8_bits_only", "ok same=%d", a == b && c == d);

    /* another file: its own key, as computed */
    char other[64];
    snprintf(other, sizeof other, "%s.other", file);
    int fd = open(other, O_CREAT | O_EXCL | O_WRONLY, 0600);
    CHECK(fd >= 0);
    close(fd);
    key_t ko = ftok_case("ftok_other_file", other, 1, 0);
    key_t kf = ftok(file, 1);
    struct stat s1, s2;
    CHECK_EQ(stat(file, &s1), 0);
    CHECK_EQ(stat(other, &s2), 0);
    int should_differ = (s1.st_ino & 0xffff) != (s2.st_ino & 0xffff) ||
                        (s1.st_dev & 0xff) != (s2.st_dev & 0xff);
    CHECK_EQ(ko != kf, should_differ);
    tracef("ftok_different_files", "ok as_computed=%d", (ko != kf) == should_differ);

    /* a symlink is followed */
    char link[64], dangling[64], loop[64];
    snprintf(link, sizeof link, "%s.link", file);
    snprintf(dangling, sizeof dangling, "%s.dangling", file);
    snprintf(loop, sizeof loop, "%s.loop", file);
    CHECK_EQ(symlink(file, link), 0);
    CHECK_EQ(symlink("/nonexistent/shmguard/target", dangling), 0);
    CHECK_EQ(symlink(loop, loop), 0);
    key_t kl = ftok_case("ftok_symlink", link, 1, 0);
    CHECK_EQ(kl, kf);
    ftok_case("ftok_dangling_symlink", dangling, 1, ENOENT);
    ftok_case("ftok_symlink_loop", loop, 1, ELOOP);

    ftok_case("ftok_directory", "/tmp", 7, 0);
    ftok_case("ftok_root_dir", "/", 7, 0);
    ftok_case("ftok_proc_self", "/proc/self", 7, 0);
    ftok_case("ftok_dev_null", "/dev/null", 7, 0);
    ftok_case("ftok_missing", "/nonexistent/shmguard/path", 1, ENOENT);
    ftok_case("ftok_null_path", NULL, 1, EFAULT);
    ftok_case("ftok_empty_path", "", 1, ENOENT);
    char notdir[80];
    snprintf(notdir, sizeof notdir, "%s/below", file);
    ftok_case("ftok_through_non_directory", notdir, 1, ENOTDIR);
    char *longpath = malloc(5000);
    CHECK(longpath != NULL);
    memset(longpath, 'a', 4999);
    longpath[0] = '/';
    longpath[4999] = '\0';
    ftok_case("ftok_path_too_long", longpath, 1, ENAMETOOLONG);
    free(longpath);
    ftok_case("ftok_bad_path_pointer", (const char *)1, 1, EFAULT);

    /* the mirror of errno-untouched: a failure sets it, a success keeps it */
    errno = 777;
    key_t ok = ftok(file, 3);
    CHECK(ok != -1);
    CHECK_EQ(errno, 777);
    tracef("ftok_errno_kept", "ok kept=%d", errno == 777);

    unlink(other);
    unlink(link);
    unlink(dangling);
    unlink(loop);
    return ck_finish();
}
