/*
 * shmfuzz.c: one sequence of the differential fuzzer (see fuzz/README.md).
 *
 *   shmfuzz SEED [--raw] [--length N] [--dir DIR] [--calls FILE] [--no-ns]
 *           [--no-huge-null]
 *
 * Generates a random sequence of System V shared-memory calls from SEED and
 * runs it, printing a normalised trace on stdout, one line per call:
 *
 *   #12 shmat(id=32769, addr=arena+0x200000, flg=SHM_REMAP) = ok at request
 *
 * --raw makes the calls through syscall(2) (and ftok by hand from stat);
 * without it they go through the libc names, which are shmguard's when it
 * is preloaded. The driver (drive.c) runs both and compares the traces.
 * --length sets the number of random calls (default 50-200, from SEED);
 * --dir names a directory with ftok's test files (a file "file" and a
 * symlink loop "loop"); --calls writes every call made, "NAME ERRNO" a
 * line, for the audit-log check (logcheck.py); --no-huge-null leaves out
 * kernel-chosen attaches of hugetlb segments (a known shmguard bug).
 *
 * Besides result and errno, a trace shows what is deterministic of each
 * success: the mapping an attach made (permissions, length, the segment's
 * first 8 bytes, stamped per segment), the IPC_STAT fields but times and
 * pids, the IPC_INFO/SHM_INFO figures. The sequence runs as root and now
 * and then with the effective ids of nobody, for the permission checks.
 *
 * The generator is online: call N is chosen from the trace of calls 0..N-1
 * (and from raw-syscall queries of the kernel, which shmguard never sees),
 * so both runs generate the same calls for as long as their traces agree.
 * Nothing in a trace depends on where the kernel placed a mapping:
 * attachments whose address the kernel chose are named k0, k1, ... and
 * every address the generator picks is relative to one of them, or lies in
 * ranges no one else maps (see the address map below).
 *
 * The run unshares its IPC namespace first (root): shmids and table indexes
 * are then deterministic and printed raw, and every segment dies with the
 * namespace. Without a private namespace (--no-ns, or unshare refused) keys
 * are made unique per process, shmids are printed as s0, s1, ..., the
 * index-based commands are skipped, and every segment the run created is
 * removed at the end and from the fatal-signal handlers.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

/* ------------------------------------------------------------ address map
 *
 *   [0, LOW_END)               the low region: nothing maps there unless
 *                              asked to with a fixed address (root may map
 *                              page 0: SHM_RND rounding down to 0 does)
 *   ARENA_BASE + ARENA_SIZE    the arena: reserved PROT_NONE at start, with
 *                              holes punched from the seed; its first and
 *                              last ARENA_MARGIN bytes are never unmapped
 *   FAR_BASE + 1 TiB           the far zone, below every mmap the kernel
 *                              places top-down: fixed attaches without
 *                              SHM_REMAP
 *   kernel-chosen (k0, k1...)  attachments at addresses the kernel chose;
 *                              only offsets inside their own span are used
 *
 * SHM_REMAP (which replaces whatever is mapped) is only ever aimed at the
 * low region, the arena's interior, or inside a live kernel-chosen
 * attachment with a segment that fits: never at memory this program does
 * not own.
 */
#define PAGE 4096UL
#define HUGEPAGE (2UL << 20)
#define LOW_END 0x400000UL
#define ARENA_BASE 0x100000000000UL
#define ARENA_SIZE (64UL << 20)
#define ARENA_MARGIN (4UL << 20)
#define FAR_BASE 0x200000000000UL
#define USER_END 0x800000000000UL
/* Kernel-chosen attaches only of segments up to this size, or beyond the
 * address space (ENOMEM everywhere): in between, success would depend on
 * the gaps of this process's layout. */
#define NULL_ATTACH_MAX (4UL << 30)
#define MAX_LIVE_KERNEL 48

#define MAX_SEGS 1024
#define MAX_ATTS 2048
#define ERRNO_SENTINEL 4242

/* --------------------------------------------------------------- the PRNG */

static uint64_t rng_state[4];

static uint64_t
splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t
rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** */
static uint64_t
next64(void)
{
    uint64_t *s = rng_state;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static void
seed_rng(uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        rng_state[i] = splitmix64(&x);
}

/* Uniform in [0, n), n > 0. */
static uint64_t
rnd(uint64_t n)
{
    return next64() % n;
}

/* True with probability pct/100. */
static int
chance(unsigned pct)
{
    return rnd(100) < pct;
}

/* ------------------------------------------------------------ errno names */

static const char *
errname(int e)
{
    static char buf[24];
    if (e == ERRNO_SENTINEL)
        return "(unchanged)";
    const char *name = strerrorname_np(e); /* glibc 2.32: "EPERM", "0" */
    if (name != NULL)
        return name;
    snprintf(buf, sizeof buf, "E%d", e);
    return buf;
}

/* ----------------------------------------------------------------- calls */

static int use_raw;  /* --raw: system calls; else the libc names */
static int private_ns; /* in a private IPC namespace of our own */
static int ncalls;   /* calls made through the tested interface */
/* --no-huge-null: no kernel-chosen attach of a hugetlb segment (to look
 * past a known shmguard bug there; see fuzz/README.md) */
static int no_huge_null;

/* --calls FILE: every call made through the tested interface, one line
 * "NAME ERRNO" ("-" on success), for the audit-log check. */
static FILE *calls_out;

static long
made(const char *name, long ret)
{
    int saved = errno;
    ncalls++;
    if (calls_out != NULL)
        fprintf(calls_out, "%s %s\n", name, ret == -1 ? errname(saved) : "-");
    errno = saved;
    return ret;
}

static int
call_shmget(key_t key, size_t size, int flg)
{
    if (use_raw)
        return (int)made("shmget", syscall(SYS_shmget, key, size, flg));
    return (int)made("shmget", shmget(key, size, flg));
}

static void *
call_shmat(int id, const void *addr, int flg)
{
    if (use_raw)
        return (void *)made("shmat", syscall(SYS_shmat, id, addr, flg));
    return (void *)made("shmat", (long)shmat(id, addr, flg));
}

static int
call_shmdt(const void *addr)
{
    if (use_raw)
        return (int)made("shmdt", syscall(SYS_shmdt, addr));
    return (int)made("shmdt", shmdt(addr));
}

static int
call_shmctl(int id, int cmd, void *buf)
{
    if (use_raw)
        return (int)made("shmctl", syscall(SYS_shmctl, id, cmd, buf));
    return (int)made("shmctl", shmctl(id, cmd, (struct shmid_ds *)buf));
}

/* glibc's ftok, by hand: the low 16 bits of the inode, the low 8 of the
 * device and of the id, from fstatat(AT_FDCWD, path, 0) as glibc calls it. */
static key_t
raw_ftok(const char *path, int id)
{
    struct stat st;
    if (syscall(SYS_newfstatat, AT_FDCWD, path, &st, 0) == -1)
        return (key_t)-1;
    uint32_t key = ((uint32_t)st.st_ino & 0xffffu) | (((uint32_t)st.st_dev & 0xffu) << 16) |
                   (((uint32_t)id & 0xffu) << 24);
    return (key_t)key;
}

static key_t
call_ftok(const char *path, int id)
{
    if (use_raw)
        return (key_t)made("ftok", raw_ftok(path, id));
    return (key_t)made("ftok", ftok(path, id));
}

/* The sequence runs as root or, from time to time, with the effective
 * ids of nobody (the saved ids stay root's, so it can come back): then
 * permissions matter (EACCES, EPERM, SHM_STAT against SHM_STAT_ANY). */
#define NOBODY 65534
static int as_nobody;

static void
become(int nobody)
{
    int ok;
    if (nobody)
        ok = setresgid((gid_t)-1, NOBODY, (gid_t)-1) == 0 &&
             setresuid((uid_t)-1, NOBODY, (uid_t)-1) == 0;
    else
        ok = setresuid((uid_t)-1, 0, (uid_t)-1) == 0 && setresgid((gid_t)-1, 0, (gid_t)-1) == 0;
    if (!ok) {
        perror("shmfuzz: setresuid");
        exit(2);
    }
    as_nobody = nobody;
}

/* Queries for the generator and the cleanup: never through shmguard, and
 * as root (whoever the sequence is at the moment). */
static int
raw_stat(int id, struct shmid_ds *ds)
{
    int was = as_nobody, saved = errno;
    if (was)
        become(0);
    memset(ds, 0, sizeof *ds);
    int ret = (int)syscall(SYS_shmctl, id, IPC_STAT, ds);
    if (was)
        become(1);
    errno = saved;
    return ret;
}

/* ----------------------------------------------------------------- trace */

static char line[2048];
static size_t line_len;

static __attribute__((format(printf, 1, 2))) void
add(const char *fmt, ...)
{
    va_list ap;
    if (line_len >= sizeof line - 1)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(line + line_len, sizeof line - line_len, fmt, ap);
    va_end(ap);
    if (n > 0)
        line_len += (size_t)n;
    if (line_len > sizeof line - 1)
        line_len = sizeof line - 1;
}

static void
emit(void)
{
    line[line_len] = '\0';
    printf("%s\n", line);
    line_len = 0;
}

/* "= -1 EXXX" for a failed call (ret -1); for a successful one "= ok",
 * and a note if errno was changed (the contract: left as it was). */
static int
add_outcome(long ret, int err)
{
    if (ret == -1) {
        add(" = -1 %s", errname(err));
        return 0;
    }
    add(" = ok");
    if (err != ERRNO_SENTINEL)
        add(" errno-changed(%s)", errname(err));
    return 1;
}

/* ------------------------------------------------------------------ model */

struct seg {
    int id;
    int huge; /* created with SHM_HUGETLB: mapped in 2 MiB units */
};

static struct seg segs[MAX_SEGS];
static int nsegs;

static int
seg_find(int id)
{
    for (int i = 0; i < nsegs; i++)
        if (segs[i].id == id)
            return i;
    return -1;
}

/* A shmid as the trace shows it: raw in a private namespace (where it is
 * deterministic), else by order of first appearance. */
static const char *
id_str(int id)
{
    static char bufs[4][24];
    static unsigned next;
    char *b = bufs[next++ % 4];
    int i = seg_find(id);
    if (private_ns || i < 0)
        snprintf(b, sizeof bufs[0], "%d", id);
    else
        snprintf(b, sizeof bufs[0], "s%d", i);
    return b;
}

/* An attachment made by the sequence. Where it is, is named logically:
 * inside kernel-chosen attachment k<k> at offset pos, or (k = -1) at the
 * fixed address pos. The model only ever compares positions within one
 * such group: physical addresses of different kernel-chosen attachments
 * relate differently in each run. */
struct att {
    uintptr_t start; /* the address in this run */
    int k;           /* the kernel-chosen root it lies in, -1: a fixed address */
    uintptr_t pos;   /* offset in root k, or the address */
    size_t len;      /* bytes from start known to be mapped by us (0: dead) */
    size_t own_len;  /* the mapping's length when it was made */
    int live;
    int root;        /* kernel-chosen: the root k<k> itself */
    int seg;         /* index in segs, -1 if unknown */
    int fragmented;  /* a later SHM_REMAP replaced part of it */
    unsigned epoch;  /* null_attaches when it died */
};

static struct att atts[MAX_ATTS];
static int natts;
static int nkernel;           /* kernel-chosen attachments so far */
static int roots[MAX_ATTS];   /* k -> its index in atts */
static unsigned null_attaches; /* successful kernel-chosen attaches */
/* A kernel-region attachment that SHM_REMAP had replaced in part has been
 * detached: pieces of it may survive, and shmdt at an address the kernel
 * may give again (a dead attachment's, or inside a live one) could match
 * them in one run and not in another, whose layout differs. */
static int kernel_fragments;

static uintptr_t arena_base;
static int low_ok;   /* nothing of ours in the low region: usable */
static int far_ok;

struct hole {
    uintptr_t off, len;
};
static struct hole holes[8];
static int nholes;

static size_t
round_len(size_t size, int huge)
{
    size_t unit = huge ? HUGEPAGE : PAGE;
    if (size > SIZE_MAX - unit)
        return SIZE_MAX;
    return (size + unit - 1) / unit * unit;
}

/* A fixed address as the trace shows it. */
static const char *
fixed_str(uintptr_t a)
{
    static char bufs[4][40];
    static unsigned next;
    char *b = bufs[next++ % 4];
    if (a == 0)
        snprintf(b, sizeof bufs[0], "NULL");
    else if (a >= arena_base && a < arena_base + ARENA_SIZE)
        snprintf(b, sizeof bufs[0], "arena+0x%" PRIxPTR, a - arena_base);
    else
        snprintf(b, sizeof bufs[0], "0x%" PRIxPTR, a);
    return b;
}

/* The name of address START + OFF, where START is attachment I's. */
static const char *
att_str(int i, intptr_t off)
{
    static char bufs[4][48];
    static unsigned next;
    char *b = bufs[next++ % 4];
    const struct att *a = &atts[i];
    if (a->k < 0)
        return fixed_str(a->start + (uintptr_t)off);
    intptr_t o = (intptr_t)a->pos + off;
    if (o == 0)
        snprintf(b, sizeof bufs[0], "k%d", a->k);
    else if (o > 0)
        snprintf(b, sizeof bufs[0], "k%d+0x%" PRIxPTR, a->k, (uintptr_t)o);
    else
        snprintf(b, sizeof bufs[0], "k%d-0x%" PRIxPTR, a->k, (uintptr_t)-o);
    return b;
}

/* Is [pos, pos+len) inside live root k's known-mapped span? */
static int
in_root(int k, uintptr_t pos, size_t len)
{
    const struct att *r = &atts[roots[k]];
    return r->live && r->len > 0 && len <= r->len && pos <= r->len - len;
}

/* May SHM_REMAP replace LEN bytes at position POS of group K? Only memory
 * we own. */
static int
remap_ok(int k, uintptr_t pos, size_t len, int huge)
{
    if (len == 0)
        return 0;
    /* Inside a kernel-chosen attachment: whether a 2 MiB-aligned address
     * is there depends on the layout, so no hugetlb segment there. */
    if (k >= 0)
        return !huge && in_root(k, pos, len);
    if (pos == 0 || len > SIZE_MAX - pos)
        return 0;
    if (low_ok && pos + len <= LOW_END)
        return 1;
    return pos >= arena_base + ARENA_MARGIN && pos + len <= arena_base + ARENA_SIZE - ARENA_MARGIN;
}

static void
mark_dead(struct att *a)
{
    if (a->k >= 0 && a->fragmented)
        kernel_fragments = 1;
    a->live = 0;
    a->len = 0;
    a->epoch = null_attaches;
}

/* A successful shmdt at position POS of group K: what the kernel unmapped.
 * Every mapping whose first byte was attached there goes, for the length
 * of its segment; whatever overlapped that is no longer trusted. */
static void
model_detached(int k, uintptr_t pos)
{
    size_t gone = 0;
    for (int i = 0; i < natts; i++) {
        struct att *a = &atts[i];
        if (a->k == k && a->pos == pos) {
            if (a->own_len > gone)
                gone = a->own_len;
            mark_dead(a);
        }
    }
    if (gone == 0)
        gone = PAGE;
    uintptr_t end = pos + gone < pos ? UINTPTR_MAX : pos + gone;
    for (int i = 0; i < natts; i++) {
        struct att *a = &atts[i];
        if (!a->live || a->k != k)
            continue;
        if (a->pos < pos && a->pos + a->len > pos)
            a->len = pos - a->pos;
        else if (a->pos > pos && a->pos < end)
            mark_dead(a);
    }
}

/* ------------------------------------------------------------- keys, ids */

#define NKEYS 6
static key_t keys[NKEYS];
static key_t ftok_keys[8];
static int nftok_keys;

static void
init_keys(void)
{
    if (private_ns) {
        const key_t fixed[NKEYS] = {0x1234, 0x5678abcd, 0x7fffffff, INT_MIN, -1, 1};
        memcpy(keys, fixed, sizeof keys);
        return;
    }
    /* Shared namespace: keys no one else uses, some negative. */
    uint32_t base = 0x40000000u | (((uint32_t)getpid() & 0xffffu) << 8);
    for (int i = 0; i < NKEYS; i++) {
        uint32_t k = base | (uint32_t)(i * 7 + 1);
        if (i % 3 == 2)
            k |= 0x80000000u;
        keys[i] = (key_t)k;
    }
}

static const char *
key_str(key_t k)
{
    static char bufs[4][24];
    static unsigned next;
    char *b = bufs[next++ % 4];
    if (k == IPC_PRIVATE) {
        snprintf(b, sizeof bufs[0], "IPC_PRIVATE");
        return b;
    }
    if (!private_ns) {
        /* per-process keys: named, not shown */
        for (int i = 0; i < NKEYS; i++)
            if (keys[i] == k) {
                snprintf(b, sizeof bufs[0], "K%d", i);
                return b;
            }
        if (((uint32_t)k & ~0xffu) == ((uint32_t)keys[0] & ~0xffu)) {
            snprintf(b, sizeof bufs[0], "K~%02x", (uint32_t)k & 0xffu);
            return b;
        }
    }
    snprintf(b, sizeof bufs[0], "0x%08x", (uint32_t)k);
    return b;
}

static key_t
gen_key(void)
{
    unsigned r = (unsigned)rnd(100);
    if (r < 30)
        return IPC_PRIVATE;
    if (r < 75)
        return keys[rnd(NKEYS)];
    if (r < 85 && private_ns && nftok_keys > 0)
        return ftok_keys[rnd((uint64_t)nftok_keys)];
    if (!private_ns)
        return (key_t)(((uint32_t)keys[0] & ~0xffu) | (uint32_t)(0x80 + rnd(0x80)));
    if (r < 95)
        return (key_t)(uint32_t)next64();
    return (key_t)-(int)(2 + rnd(1000));
}

/* A shmid to pass: mostly one the sequence knows, else odd ones. */
static int
gen_id(void)
{
    unsigned r = (unsigned)rnd(100);
    if (nsegs > 0 && r < 75) {
        /* favour recent segments */
        int n = nsegs;
        int i = chance(60) ? n - 1 - (int)rnd((uint64_t)(n < 4 ? n : 4)) : (int)rnd((uint64_t)n);
        return segs[i].id;
    }
    if (!private_ns) {
        /* ids that cannot be another process's segment */
        static const int bad[] = {-1, INT_MIN, -32768};
        return bad[rnd(3)];
    }
    switch (rnd(10)) {
    case 0: return -1;
    case 1: return INT_MIN;
    case 2: return 0;
    case 3: return 1;
    case 4: return 32768;
    case 5: return 32769;
    case 6: return INT_MAX;
    case 7: return (int)rnd(8) + ((int)rnd(4) << 15);
    case 8: return (int)(next64() & 0x7fffffff);
    default: return (int)rnd(64);
    }
}

/* The segment's size and hugetlb-ness, by the raw IPC_STAT. */
static int
seg_len(int id, size_t *len)
{
    struct shmid_ds ds;
    if (raw_stat(id, &ds) != 0)
        return -1;
    int i = seg_find(id);
    int huge = i >= 0 && segs[i].huge;
    *len = round_len(ds.shm_segsz, huge);
    return huge;
}

/* ------------------------------------------------------------ the buffers */

/* page 0 RW | page 1 NONE | page 2 RO (a valid shmid_ds) | page 3 NONE */
static unsigned char *bufs;
/* page 0 RW, "/etc/passwd" ending at its end | page 1 NONE |
 * page 2 RW, 'a' without a NUL | page 3 NONE */
static unsigned char *strs;
static char *long_path;
static const char *work_dir;

static void
setup_buffers(void)
{
    bufs = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    strs = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (bufs == MAP_FAILED || strs == MAP_FAILED) {
        perror("shmfuzz: mmap");
        exit(2);
    }
    struct shmid_ds ds;
    memset(&ds, 0, sizeof ds);
    ds.shm_perm.mode = 0600;
    memcpy(bufs + 2 * PAGE, &ds, sizeof ds);
    mprotect(bufs + PAGE, PAGE, PROT_NONE);
    mprotect(bufs + 2 * PAGE, PAGE, PROT_READ);
    mprotect(bufs + 3 * PAGE, PAGE, PROT_NONE);
    /* "/etc/passwd" whose NUL is the page's last byte; a run of 'a' with
     * no NUL before the PROT_NONE page. */
    memset(strs, 'a', 4 * PAGE);
    memcpy(strs + PAGE - 12, "/etc/passwd", 12);
    mprotect(strs + PAGE, PAGE, PROT_NONE);
    mprotect(strs + 3 * PAGE, PAGE, PROT_NONE);
    long_path = malloc(5000);
    if (long_path == NULL)
        exit(2);
    for (int i = 0; i < 4999; i++)
        long_path[i] = i % 2 ? 'x' : '/';
    long_path[4999] = '\0';
}

static unsigned char *
straddle(size_t size_before_fault)
{
    return bufs + PAGE - size_before_fault;
}

/* ------------------------------------------------------------- the arena */

static void
setup_regions(void)
{
    void *p = mmap((void *)ARENA_BASE, ARENA_SIZE, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (p != (void *)ARENA_BASE) {
        if (p != MAP_FAILED)
            munmap(p, ARENA_SIZE);
        /* Elsewhere, 2 MiB aligned: addresses are printed arena-relative,
         * so traces still agree. */
        p = mmap(NULL, ARENA_SIZE + HUGEPAGE, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            perror("shmfuzz: arena");
            exit(2);
        }
        uintptr_t a = ((uintptr_t)p + HUGEPAGE - 1) & ~(HUGEPAGE - 1);
        if (a > (uintptr_t)p)
            munmap(p, a - (uintptr_t)p);
        munmap((void *)(a + ARENA_SIZE), (uintptr_t)p + HUGEPAGE - a);
        p = (void *)a;
    }
    arena_base = (uintptr_t)p;
    /* The low region and the far zone must be empty of anything else. */
    low_ok = 1;
    far_ok = arena_base == ARENA_BASE;
    FILE *f = fopen("/proc/self/maps", "r");
    char buf[512];
    while (f != NULL && fgets(buf, sizeof buf, f) != NULL) {
        unsigned long s, e;
        if (sscanf(buf, "%lx-%lx", &s, &e) != 2)
            continue;
        if (s < LOW_END + (1UL << 30))
            low_ok = 0;
        if (s < FAR_BASE + (2UL << 40) && e > FAR_BASE)
            far_ok = 0;
    }
    if (f != NULL)
        fclose(f);
    /* Holes inside the margins. */
    static const uintptr_t sizes[] = {PAGE, 2 * PAGE, 16 * PAGE, HUGEPAGE, 2 * HUGEPAGE};
    nholes = 3 + (int)rnd(4);
    uintptr_t room = (ARENA_SIZE - 2 * ARENA_MARGIN) / (uintptr_t)nholes & ~(HUGEPAGE - 1);
    for (int i = 0; i < nholes; i++) {
        /* each in its own slot, at least 2 MiB after the slot's start */
        uintptr_t len = sizes[rnd(5)];
        uintptr_t lo = ARENA_MARGIN + room * (uintptr_t)i + HUGEPAGE;
        uintptr_t off = lo + rnd((room - HUGEPAGE - len) / PAGE + 1) * PAGE;
        if (chance(30))
            off = lo;
        holes[i].off = off;
        holes[i].len = len;
        munmap((void *)(arena_base + off), len);
    }
}

/* A page-aligned address inside the arena's interior. */
static uintptr_t
arena_page(void)
{
    if (chance(40) && nholes > 0) {
        const struct hole *h = &holes[rnd((uint64_t)nholes)];
        return arena_base + h->off + (chance(70) ? 0 : rnd(h->len / PAGE) * PAGE);
    }
    uintptr_t interior = ARENA_SIZE - 2 * ARENA_MARGIN;
    uintptr_t off = ARENA_MARGIN + rnd(interior / PAGE) * PAGE;
    if (chance(30))
        off &= ~(HUGEPAGE - 1);
    if (off < ARENA_MARGIN)
        off = ARENA_MARGIN;
    return arena_base + off;
}

/* Pads the top of the address space so that the next mapping of LEN bytes
 * the kernel places lands at an address A with A + PAGE 2 MiB aligned:
 * where guard_pages=1 would put the segment (its reservation begins with
 * a guard page), which makes the hugetlb case deterministic instead of one
 * layout in 512. The padding is address space no one uses: no result of
 * the kernel's depends on it, and it is not in the trace. */
static void
align_next_mapping(size_t len)
{
    for (int tries = 0; tries < 8; tries++) {
        void *probe = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (probe == MAP_FAILED)
            return;
        munmap(probe, len);
        uintptr_t d = ((uintptr_t)probe + PAGE) % HUGEPAGE;
        if (d == 0)
            return;
        /* top-down: the padding takes the top of the same gap (or fills a
         * smaller one above it, and the next try goes on) */
        if (mmap(NULL, d, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0) ==
            MAP_FAILED)
            return;
    }
}

/* ------------------------------------------------------------- cleanup */

/* Shared namespace only: the shmids this process created. */
static volatile sig_atomic_t created_n;
static int created_ids[MAX_SEGS];

static void
remove_created(void)
{
    for (int i = 0; i < created_n; i++)
        syscall(SYS_shmctl, created_ids[i], IPC_RMID, NULL);
}

/* The dispositions on_fatal replaced (shmguard's SIGSEGV handler, with
 * guard_pages=1, among them). */
static struct sigaction previous[NSIG];

/* Shared namespace: remove our segments, as root, then let the signal do
 * what it would have done: a fault returns to fault again into the
 * previous handler; anything else is raised again. */
static void
on_fatal(int sig, siginfo_t *info, void *ctx)
{
    (void)ctx;
    syscall(SYS_setresuid, -1, 0, -1);
    remove_created();
    sigaction(sig, &previous[sig], NULL);
    int fault = sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE;
    if (fault && info != NULL && info->si_code > 0 && previous[sig].sa_handler != SIG_DFL)
        return;
    raise(sig);
}

static void
note_segment(int id, int huge)
{
    if (seg_find(id) >= 0 || nsegs >= MAX_SEGS)
        return;
    segs[nsegs].id = id;
    segs[nsegs].huge = huge;
    nsegs++;
    if (!private_ns && created_n < MAX_SEGS) {
        created_ids[created_n] = id;
        created_n = created_n + 1;
    }
}

/* ------------------------------------------------------------- formatting */

static void
add_shmget_flags(int f)
{
    const char *sep = "";
    if (f & IPC_CREAT) {
        add("IPC_CREAT");
        sep = "|";
    }
    if (f & IPC_EXCL) {
        add("%sIPC_EXCL", sep);
        sep = "|";
    }
    if (f & SHM_HUGETLB) {
        add("%sSHM_HUGETLB", sep);
        sep = "|";
    }
    if (f & SHM_NORESERVE) {
        add("%sSHM_NORESERVE", sep);
        sep = "|";
    }
    int rest = f & ~(IPC_CREAT | IPC_EXCL | SHM_HUGETLB | SHM_NORESERVE | 0777);
    if (rest != 0) {
        add("%s0x%x", sep, (unsigned)rest);
        sep = "|";
    }
    add("%s0%o", sep, (unsigned)(f & 0777));
}

static void
add_shmat_flags(int f)
{
    const char *sep = "";
    static const struct {
        int bit;
        const char *name;
    } names[] = {{SHM_RDONLY, "SHM_RDONLY"}, {SHM_RND, "SHM_RND"}, {SHM_REMAP, "SHM_REMAP"},
                 {SHM_EXEC, "SHM_EXEC"}};
    int rest = f;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (f & names[i].bit) {
            add("%s%s", sep, names[i].name);
            sep = "|";
            rest &= ~names[i].bit;
        }
    if (rest != 0 || f == 0)
        add("%s0x%x", sep, (unsigned)rest);
}

static const char *
cmd_str(int cmd)
{
    static char buf[24];
    switch (cmd) {
    case IPC_RMID: return "IPC_RMID";
    case IPC_SET: return "IPC_SET";
    case IPC_STAT: return "IPC_STAT";
    case IPC_INFO: return "IPC_INFO";
    case SHM_LOCK: return "SHM_LOCK";
    case SHM_UNLOCK: return "SHM_UNLOCK";
    case SHM_STAT: return "SHM_STAT";
    case SHM_INFO: return "SHM_INFO";
    case SHM_STAT_ANY: return "SHM_STAT_ANY";
    default:
        snprintf(buf, sizeof buf, "%d", cmd);
        return buf;
    }
}

/* The deterministic fields of a shmid_ds. */
static void
add_ds(const struct shmid_ds *ds)
{
    pid_t me = getpid();
    add(" key=%s size=%zu mode=0%o nattch=%lu uid=%u gid=%u cuid=%u cgid=%u cpid=%s lpid=%s"
        " atime=%s dtime=%s ctime=%s",
        key_str(ds->shm_perm.__key), (size_t)ds->shm_segsz, (unsigned)ds->shm_perm.mode,
        (unsigned long)ds->shm_nattch, (unsigned)ds->shm_perm.uid, (unsigned)ds->shm_perm.gid,
        (unsigned)ds->shm_perm.cuid, (unsigned)ds->shm_perm.cgid,
        ds->shm_cpid == me ? "self" : "other",
        ds->shm_lpid == me ? "self" : ds->shm_lpid == 0 ? "0" : "other",
        ds->shm_atime ? "set" : "0", ds->shm_dtime ? "set" : "0", ds->shm_ctime ? "set" : "0");
}

/* The mapping that starts at ADDR, from /proc/self/maps: " map=rw-s+LEN"
 * (its permissions and length), or " map=none". Its permissions go to
 * PERMS ("" if none). */
static void
add_mapping(uintptr_t addr, char perms[8])
{
    FILE *f = fopen("/proc/self/maps", "r");
    char buf[512];
    perms[0] = '\0';
    while (f != NULL && fgets(buf, sizeof buf, f) != NULL) {
        unsigned long s, e;
        if (sscanf(buf, "%lx-%lx %7s", &s, &e, perms) == 3 && s == addr) {
            add(" map=%s+0x%lx", perms, e - s);
            fclose(f);
            return;
        }
    }
    perms[0] = '\0';
    if (f != NULL)
        fclose(f);
    add(" map=none");
}

/* The first 8 bytes of the segment attached at ADDR, and, if they are
 * still 0 and the mapping is writable, a mark naming segment SEG written
 * there: later attachments show which segment they map. Not for hugetlb
 * segments (no huge pages: touching one is SIGBUS) nor page 0. */
static void
add_contents(uintptr_t addr, const char *perms, int seg)
{
    if (addr == 0 || perms[0] != 'r' || seg < 0 || segs[seg].huge)
        return;
    uint64_t v;
    memcpy(&v, (const void *)addr, sizeof v);
    add(" data=%" PRIx64, v);
    if (v == 0 && perms[1] == 'w') {
        v = 0x5eed000000000000ULL | (uint64_t)(seg + 1);
        memcpy((void *)addr, &v, sizeof v);
    }
}

/* ------------------------------------------------------------ the calls */

static int seq_no;

static void
begin(void)
{
    line_len = 0;
    add("#%d ", seq_no++);
}

static size_t
gen_size(void)
{
    const size_t shmmax_default = SIZE_MAX - (1UL << 24);
    if (chance(60)) {
        switch (rnd(10)) {
        case 0: return 0;
        case 1: return 1;
        case 2: return PAGE - 1;
        case 3: return PAGE;
        case 4: return PAGE + 1;
        case 5: return rnd(100000) | 1;
        case 6: return 2 * PAGE;
        case 7: return 3 * PAGE + 17;
        case 8: return 65536;
        default: return 1 + rnd(4 * PAGE);
        }
    }
    switch (rnd(14)) {
    case 0: return 1UL << 20;
    case 1: return HUGEPAGE;
    case 2: return HUGEPAGE + 1;
    case 3: return 1UL << 30;
    case 4: return (4UL << 30) + 1;
    case 5: return 1UL << 40;
    case 6: return shmmax_default;
    case 7: return shmmax_default + 1;
    case 8: return SIZE_MAX;
    case 9: return SIZE_MAX / 2;
    case 10: return 1UL << 62;
    case 11: return 1UL << 47;
    default: {
        /* near an existing segment's size */
        if (nsegs > 0) {
            struct shmid_ds ds;
            if (raw_stat(segs[rnd((uint64_t)nsegs)].id, &ds) == 0)
                return ds.shm_segsz + (size_t)rnd(3) - 1;
        }
        return 8 * PAGE;
    }
    }
}

static void
do_shmget(void)
{
    key_t key = gen_key();
    size_t size = gen_size();
    static const int modes[] = {0600, 0666, 0400, 0, 0777, 0644, 0660};
    int flg = chance(85) ? modes[rnd(7)] : (int)rnd(01000);
    if (chance(75))
        flg |= IPC_CREAT;
    if (chance(25))
        flg |= IPC_EXCL;
    if (chance(6))
        flg |= SHM_HUGETLB;
    /* without it, no huge pages: ENOMEM */
    if (chance(size >= (1UL << 30) || (flg & SHM_HUGETLB) ? 80 : 20))
        flg |= SHM_NORESERVE;
    if (chance(5)) {
        static const int junk[] = {0x40000000, 0x20000, 0x100000, 21 << 26, 30 << 26, 0x4000};
        flg |= junk[rnd(6)];
    }
    begin();
    add("shmget(key=%s, size=%zu, flg=", key_str(key), size);
    add_shmget_flags(flg);
    add(")");
    errno = ERRNO_SENTINEL;
    int id = call_shmget(key, size, flg);
    int err = errno;
    if (add_outcome(id, err)) {
        int known = seg_find(id) >= 0;
        note_segment(id, (flg & SHM_HUGETLB) != 0);
        add(" %s%s", id_str(id), known ? "" : " new");
    }
    emit();
}

/* Where an shmat aims, and how to print it. */
struct target {
    uintptr_t addr;
    const char *desc;
    int k;          /* inside kernel-chosen root k<k> at offset pos; -1: fixed */
    uintptr_t pos;
    int wild;       /* anywhere: never rounded (it could land on anything) */
};

static int
live_pick(int want_root)
{
    int cand[MAX_ATTS], n = 0;
    for (int i = 0; i < natts; i++)
        if (atts[i].live && atts[i].len > 0 && (!want_root || atts[i].root))
            cand[n++] = i;
    if (n == 0)
        return -1;
    /* favour recent ones */
    if (chance(50))
        return cand[n - 1 - (int)rnd((uint64_t)(n < 3 ? n : 3))];
    return cand[rnd((uint64_t)n)];
}

static int
live_kernel_count(void)
{
    int n = 0;
    for (int i = 0; i < natts; i++)
        if (atts[i].live && atts[i].root)
            n++;
    return n;
}

static struct target
gen_shmat_target(void)
{
    struct target t = {0, "NULL", -1, 0, 0};
    static char desc[64];
    unsigned r = (unsigned)rnd(100);
    if (r < 35)
        return t;
    if (r < 60) {
        t.addr = arena_page();
        t.desc = fixed_str(t.addr);
        return t;
    }
    if (r < 65) {
        t.addr = arena_page() + 1 + rnd(PAGE - 1);
        t.desc = fixed_str(t.addr);
        return t;
    }
    if (r < 80) {
        int i = live_pick(chance(70));
        if (i >= 0) {
            uintptr_t off = 0;
            if (chance(40))
                off = rnd(atts[i].len / PAGE) * PAGE;
            if (chance(10))
                off += 1 + rnd(PAGE - 1);
            if (off >= atts[i].len)
                off = 0;
            t.addr = atts[i].start + off;
            snprintf(desc, sizeof desc, "%s", att_str(i, (intptr_t)off));
            t.desc = desc;
            t.k = atts[i].k;
            t.pos = atts[i].pos + off;
            return t;
        }
        t.addr = arena_page();
        t.desc = fixed_str(t.addr);
        return t;
    }
    if (r < 86 && low_ok) {
        static const uintptr_t low[] = {PAGE, 0x10000, 0x200000, 0x3ff000, 2 * PAGE, 0x100000};
        t.addr = low[rnd(6)];
        t.desc = fixed_str(t.addr);
        return t;
    }
    if (r < 90) {
        /* rounds down to 0 with SHM_RND */
        t.addr = 1 + rnd(PAGE - 1);
        t.desc = fixed_str(t.addr);
        return t;
    }
    if (r < 94 && far_ok) {
        t.addr = FAR_BASE + rnd(1UL << 28) * PAGE;
        t.desc = fixed_str(t.addr);
        return t;
    }
    static const uintptr_t wild[] = {USER_END, USER_END - PAGE, 0xffff800000000000UL,
                                     0xfffffffffffff000UL, 0xffffffffffffffffUL, 0x123};
    t.addr = wild[rnd(6)];
    if (chance(30))
        t.addr = (uintptr_t)next64() | 1;
    t.desc = fixed_str(t.addr);
    t.wild = 1;
    return t;
}

static void
do_shmat(void)
{
    int id = gen_id();
    struct target t = gen_shmat_target();
    int flg = 0;
    if (chance(25))
        flg |= SHM_RDONLY;
    if (chance(t.addr % PAGE ? 60 : 15))
        flg |= SHM_RND;
    if (chance(t.addr >= arena_base && t.addr < arena_base + ARENA_SIZE ? 45 : 20))
        flg |= SHM_REMAP;
    if (chance(8))
        flg |= SHM_EXEC;
    if (chance(4)) {
        static const int junk[] = {01, 0400, 0200000, 0x1000000, 0x40000000};
        flg |= junk[rnd(5)];
    }

    /* Over a kernel-chosen attachment, often SHM_REMAP with a segment
     * that fits: the case guard pages must get right. */
    if (t.k >= 0 && chance(50)) {
        uintptr_t pos = t.pos & ~(PAGE - 1);
        for (int tries = 0; tries < 6 && nsegs > 0; tries++) {
            size_t l;
            int cand = segs[rnd((uint64_t)nsegs)].id;
            int h = seg_len(cand, &l);
            if (h == 0 && in_root(t.k, pos, l)) {
                id = cand;
                flg |= SHM_REMAP;
                break;
            }
        }
    }

    /* A kernel-chosen attach of a hugetlb segment: often where guard pages
     * would meet a 2 MiB boundary. */
    if (t.addr == 0 && chance(50)) {
        struct shmid_ds ds;
        int si = seg_find(id);
        if (si >= 0 && segs[si].huge && raw_stat(id, &ds) == 0 && ds.shm_segsz < NULL_ATTACH_MAX)
            align_next_mapping(round_len(ds.shm_segsz, 0) + 2 * PAGE);
    }

    /* Make the call safe and its outcome independent of the layout. */
    if (t.wild)
        flg &= ~SHM_RND;
    size_t len = 0;
    int huge = seg_len(id, &len); /* -1: the id is invalid, shmat fails first */
    if (t.addr == 0 && huge >= 0 &&
        ((len > NULL_ATTACH_MAX && len < USER_END) || live_kernel_count() >= MAX_LIVE_KERNEL ||
         (huge > 0 && no_huge_null))) {
        t.addr = arena_page();
        t.desc = fixed_str(t.addr);
    }
    uintptr_t eff = t.addr;
    if (t.addr != 0 && (flg & SHM_RND))
        eff = t.addr & ~(PAGE - 1);
    if (t.addr != 0 && eff == 0 && !(flg & SHM_REMAP)) {
        /* MAP_FIXED at 0, replacing what is there: the low region only */
        if (huge >= 0 && (!low_ok || len > LOW_END))
            flg &= ~SHM_RND; /* unaligned: EINVAL */
    }
    uintptr_t eff_pos = t.k >= 0 ? t.pos - (t.addr - eff) : eff;
    if (eff != 0 && eff % PAGE == 0 && (flg & SHM_REMAP) && huge >= 0 &&
        !remap_ok(t.k, eff_pos, len, huge))
        flg &= ~SHM_REMAP;

    begin();
    add("shmat(id=%s, addr=%s, flg=", id_str(id), t.desc);
    add_shmat_flags(flg);
    add(")");
    errno = ERRNO_SENTINEL;
    void *p = call_shmat(id, (void *)t.addr, flg);
    int err = errno;
    if (p == (void *)-1) {
        add_outcome(-1, err);
        emit();
        return;
    }
    add_outcome(0, err);
    uintptr_t at = (uintptr_t)p;
    if (natts >= MAX_ATTS) {
        add(" (model full)");
        emit();
        return;
    }
    struct att *a = &atts[natts];
    memset(a, 0, sizeof *a);
    a->start = at;
    a->seg = seg_find(id);
    a->live = 1;
    size_t own = len;
    if (huge < 0) {
        /* the id was invalid when we asked, yet it worked */
        add(" (id was invalid before the call)");
        own = PAGE;
    }
    a->own_len = own;
    a->len = own;
    char perms[8];
    add_mapping(at, perms);
    add_contents(at, perms, a->seg);
    if (t.addr == 0) {
        a->root = 1;
        a->k = nkernel++;
        a->pos = 0;
        roots[a->k] = natts;
        null_attaches++;
        add(" new k%d", a->k);
        if (at % PAGE != 0 || at >= USER_END)
            add(" BAD-ADDRESS");
    } else {
        if (at == eff) {
            add(" at request");
        } else {
            add(" UNEXPECTED at %s", fixed_str(at));
            a->live = 0; /* not where we can name it: forget it */
            a->len = 0;
        }
        a->k = t.k;
        a->pos = eff_pos;
        /* what it replaced in part */
        for (int j = 0; j < natts && a->k >= 0; j++)
            if (atts[j].live && atts[j].k == a->k && atts[j].pos < eff_pos + own &&
                eff_pos < atts[j].pos + atts[j].own_len)
                atts[j].fragmented = 1;
    }
    natts++;
    emit();
}

static void
do_shmdt(void)
{
    uintptr_t addr = 0;
    int k = -1;        /* where, logically: see struct att */
    uintptr_t pos = 0;
    char desc[64];
    unsigned r = (unsigned)rnd(100);
    int i;
    snprintf(desc, sizeof desc, "NULL");
    if (r < 45 && (i = live_pick(0)) >= 0) {
        intptr_t off = 0;
        if (chance(15))
            off = (intptr_t)(rnd(atts[i].len / PAGE) * PAGE);
        if (chance(8))
            off += (intptr_t)(1 + rnd(PAGE - 1));
        if ((uintptr_t)off >= atts[i].len || (atts[i].k >= 0 && kernel_fragments))
            off = 0;
        if (atts[i].k < 0 && chance(15))
            off = chance(50) ? -(intptr_t)PAGE : (intptr_t)atts[i].own_len;
        addr = atts[i].start + (uintptr_t)off;
        k = atts[i].k;
        pos = atts[i].pos + (uintptr_t)off;
        snprintf(desc, sizeof desc, "%s", att_str(i, off));
    } else if (r < 55) {
        /* an attachment already detached: while the kernel has placed
         * nothing since (it could reuse the address) */
        int cand = -1;
        for (int j = natts - 1; j >= 0; j--)
            if (!atts[j].live &&
                (atts[j].k < 0 || (atts[j].epoch == null_attaches && !kernel_fragments))) {
                cand = j;
                break;
            }
        if (cand >= 0) {
            addr = atts[cand].start;
            k = atts[cand].k;
            pos = atts[cand].pos;
            snprintf(desc, sizeof desc, "%s", att_str(cand, 0));
        } else {
            addr = arena_page();
            snprintf(desc, sizeof desc, "%s", fixed_str(addr));
        }
    } else if (r < 70) {
        addr = arena_page();
        if (chance(15))
            addr += 1 + rnd(PAGE - 1);
        snprintf(desc, sizeof desc, "%s", fixed_str(addr));
    } else if (r < 76) {
        addr = 0;
    } else if (r < 82 && low_ok) {
        static const uintptr_t low[] = {PAGE, 0x10000, 0x200000, 2 * PAGE};
        addr = low[rnd(4)];
        snprintf(desc, sizeof desc, "%s", fixed_str(addr));
    } else if (r < 88 && far_ok) {
        addr = FAR_BASE + rnd(1UL << 28) * PAGE;
        snprintf(desc, sizeof desc, "%s", fixed_str(addr));
    } else {
        static const uintptr_t wild[] = {USER_END, 0xffff800000000000UL, 0xfffffffffffff000UL,
                                         0x123, 0xffffffffffffffffUL};
        addr = wild[rnd(5)];
        if (chance(40))
            addr = (uintptr_t)next64() | 1;
        snprintf(desc, sizeof desc, "%s", fixed_str(addr));
    }
    begin();
    add("shmdt(addr=%s)", desc);
    errno = ERRNO_SENTINEL;
    int ret = call_shmdt((void *)addr);
    int err = errno;
    if (add_outcome(ret, err)) {
        if (ret != 0)
            add(" ret=%d", ret);
        model_detached(k, k >= 0 ? pos : addr);
    }
    emit();
}

/* The last shmid_ds an IPC_STAT-like call filled (for IPC_SET). */
static struct shmid_ds last_ds;
static int have_last_ds;

static void *
gen_buf(int cmd, const char **desc)
{
    if ((cmd == IPC_RMID || cmd == SHM_LOCK || cmd == SHM_UNLOCK) && chance(60)) {
        /* the kernel ignores the buffer of these: usually NULL */
        *desc = "NULL";
        return NULL;
    }
    unsigned r = (unsigned)rnd(100);
    if (r < 12) {
        *desc = "NULL";
        return NULL;
    }
    if (r < 16) {
        *desc = "(void*)1";
        return (void *)1;
    }
    if (r < 20) {
        *desc = "PROT_NONE";
        return bufs + PAGE;
    }
    if (r < 24) {
        *desc = "read-only";
        return bufs + 2 * PAGE;
    }
    if (r < 28) {
        *desc = "straddling";
        return straddle(16 + rnd(48));
    }
    if (r < 30) {
        *desc = "kernel";
        return (void *)0xffff800000001000UL;
    }
    *desc = "valid";
    return bufs + (chance(10) ? 8 : 0);
}

static void
do_shmctl(void)
{
    static const int cmds[] = {IPC_RMID, IPC_RMID, IPC_STAT, IPC_STAT, IPC_STAT, IPC_SET,
                               IPC_SET, IPC_INFO, SHM_INFO, SHM_STAT, SHM_STAT, SHM_STAT_ANY,
                               SHM_LOCK, SHM_UNLOCK};
    int cmd;
    if (chance(8)) {
        static const int odd[] = {4, 5, 10, 16, 100, -1, INT_MIN, IPC_STAT | 0x100,
                                  IPC_RMID | 0x100, SHM_STAT | 0x10000, 0x7fffffff};
        cmd = odd[rnd(11)];
    } else {
        cmd = cmds[rnd(sizeof cmds / sizeof cmds[0])];
    }
    int by_index = cmd == SHM_STAT || cmd == SHM_STAT_ANY;
    if (!private_ns && (by_index || cmd == IPC_INFO || cmd == SHM_INFO))
        cmd = IPC_STAT; /* they see other processes' segments */
    int id;
    if (by_index && private_ns && chance(75))
        id = chance(85) ? (int)rnd((uint64_t)nsegs + 2) : (chance(50) ? -1 : 4096);
    else
        id = gen_id();

    const char *bdesc = "valid";
    unsigned char *buf = gen_buf(cmd, &bdesc);
    if (buf == bufs || buf == bufs + 8) {
        memset(bufs, 0xa5, PAGE);
        if (cmd == IPC_SET) {
            struct shmid_ds ds;
            memset(&ds, 0, sizeof ds);
            if (have_last_ds && chance(80))
                ds = last_ds;
            if (chance(60))
                ds.shm_perm.mode = (unsigned short)(chance(80) ? rnd(01000) : rnd(0x10000));
            if (chance(25)) {
                static const uid_t ids[] = {0, 1, 65534, (uid_t)-1, 12345};
                ds.shm_perm.uid = ids[rnd(5)];
            }
            if (chance(25)) {
                static const gid_t ids[] = {0, 1, 65534, (gid_t)-1, 12345};
                ds.shm_perm.gid = ids[rnd(5)];
            }
            memcpy(buf, &ds, sizeof ds);
            bdesc = "set";
        }
    }
    begin();
    if (by_index && private_ns)
        add("shmctl(index=%d", id);
    else
        add("shmctl(id=%s", id_str(id));
    add(", cmd=%s, buf=%s", cmd_str(cmd), bdesc);
    if (cmd == IPC_SET && strcmp(bdesc, "set") == 0) {
        struct shmid_ds ds;
        memcpy(&ds, buf, sizeof ds);
        add("{uid=%u gid=%u mode=0%o}", (unsigned)ds.shm_perm.uid, (unsigned)ds.shm_perm.gid,
            (unsigned)ds.shm_perm.mode);
    }
    add(")");
    errno = ERRNO_SENTINEL;
    int ret = call_shmctl(id, cmd, buf);
    int err = errno;
    if (!add_outcome(ret, err)) {
        emit();
        return;
    }
    int valid = buf == bufs || buf == bufs + 8;
    switch (cmd) {
    case IPC_STAT:
    case SHM_STAT:
    case SHM_STAT_ANY:
        if (cmd == IPC_STAT)
            add(" ret=%d", ret);
        else
            add(" ret=%s", id_str(ret));
        if (valid) {
            memcpy(&last_ds, buf, sizeof last_ds);
            have_last_ds = 1;
            add_ds(&last_ds);
        }
        if (cmd != IPC_STAT)
            note_segment(ret, 0);
        break;
    case IPC_INFO:
        add(" ret=%d", ret);
        if (valid) {
            struct shminfo si;
            memcpy(&si, buf, sizeof si);
            add(" shmmax=%lu shmmin=%lu shmmni=%lu shmseg=%lu shmall=%lu", si.shmmax, si.shmmin,
                si.shmmni, si.shmseg, si.shmall);
        }
        break;
    case SHM_INFO:
        add(" ret=%d", ret);
        if (valid) {
            /* not shm_rss nor shm_swp: resident pages, which twice in
             * thousands of runs under load differed by one from run to
             * run with nothing else different */
            struct shm_info si;
            memcpy(&si, buf, sizeof si);
            add(" used_ids=%d shm_tot=%lu", si.used_ids, si.shm_tot);
        }
        break;
    default:
        add(" ret=%d", ret);
        break;
    }
    emit();
}

static void
do_ftok(void)
{
    const char *path;
    const char *desc;
    char wd_path[3][PATH_MAX];
    unsigned r = (unsigned)rnd(17);
    switch (r) {
    case 0: path = "/"; break;
    case 1: path = "/etc/passwd"; break;
    case 2: path = "/dev/null"; break;
    case 3: path = "/proc/self/exe"; break; /* a symlink to this program */
    case 4: path = "/tmp"; break;
    case 5: path = "/nonexistent/x"; break;
    case 6: path = ""; break;
    case 7: path = "/etc/passwd/x"; break;
    case 8: path = long_path; break;
    case 9: path = NULL; break;
    case 10: path = (const char *)1; break;
    case 11: path = (const char *)(bufs + PAGE); break;
    case 12: path = (const char *)(strs + PAGE - 12); break;
    case 13: path = (const char *)(strs + 3 * PAGE - 40); break; /* no NUL before PROT_NONE */
    default:
        if (work_dir == NULL) {
            path = "/";
            r = 0;
            break;
        }
        snprintf(wd_path[0], sizeof wd_path[0], "%s/file", work_dir);
        snprintf(wd_path[1], sizeof wd_path[1], "%s/loop", work_dir);
        snprintf(wd_path[2], sizeof wd_path[2], "%s/file/", work_dir);
        path = wd_path[r - 14];
        break;
    }
    static const char *names[] = {"/", "/etc/passwd", "/dev/null", "/proc/self/exe", "/tmp",
                                  "/nonexistent/x", "\"\"", "/etc/passwd/x", "long(4999)",
                                  "NULL", "(char*)1", "PROT_NONE", "/etc/passwd@page-end",
                                  "unterminated@page-end", "DIR/file", "DIR/loop", "DIR/file/"};
    desc = names[r];
    int id;
    switch (rnd(8)) {
    case 0: id = 0; break;
    case 1: id = 1; break;
    case 2: id = 'A'; break;
    case 3: id = 0x7f; break;
    case 4: id = 0x80 + (int)rnd(0x80); break;
    case 5: id = 0x100 | (int)rnd(0x100); break;
    case 6: id = chance(50) ? -1 : INT_MIN; break;
    default: id = (int)next64(); break;
    }
    begin();
    add("ftok(path=%s, id=0x%x)", desc, (unsigned)id);
    errno = ERRNO_SENTINEL;
    key_t k = call_ftok(path, id);
    int err = errno;
    if (add_outcome(k, err)) {
        add(" 0x%08x", (uint32_t)k);
        if (nftok_keys < 8)
            ftok_keys[nftok_keys++] = k;
    }
    emit();
}

/* --------------------------------------------------------------- epilogue */

/* Detach everything and remove every segment, through the tested interface
 * (so shmguard's accounting sees a clean exit): first the attachments the
 * model knows, then whatever System V mappings remain (fragments left by
 * SHM_REMAP), then IPC_RMID on every known segment. */
static void
epilogue(void)
{
    printf("epilogue\n");
    if (as_nobody)
        become(0);
    for (int i = 0; i < natts; i++) {
        if (!atts[i].live)
            continue;
        begin();
        add("shmdt(addr=%s)", att_str(i, 0));
        errno = ERRNO_SENTINEL;
        int ret = call_shmdt((void *)atts[i].start);
        int err = errno;
        if (add_outcome(ret, err))
            model_detached(atts[i].k, atts[i].pos);
        emit();
    }
    /* What SHM_REMAP left of the attachments it replaced in part: detached
     * through the tested interface too, but in an order that depends on
     * the layout, so the trace shows only which segments they belonged
     * to and what remains (nothing, or shmguard failed a detach). */
    int seen[MAX_SEGS], nseen = 0, remaining = 0;
    for (int round = 0; round < 5; round++) {
        uintptr_t starts[256];
        int n = 0;
        FILE *f = fopen("/proc/self/maps", "r");
        char buf[512];
        while (f != NULL && fgets(buf, sizeof buf, f) != NULL && n < 256) {
            unsigned long s, e, pgoff, inode;
            char perms[8], dev[16];
            if (sscanf(buf, "%lx-%lx %7s %lx %15s %lu", &s, &e, perms, &pgoff, dev, &inode) == 6 &&
                strstr(buf, "/SYSV") != NULL) {
                starts[n++] = s - pgoff;
                int id = (int)inode, dup = 0;
                for (int j = 0; j < nseen; j++)
                    dup |= seen[j] == id;
                if (!dup && nseen < MAX_SEGS && round == 0)
                    seen[nseen++] = id;
            }
        }
        if (f != NULL)
            fclose(f);
        remaining = n;
        if (n == 0 || round == 4)
            break;
        for (int j = 0; j < n; j++)
            call_shmdt((void *)starts[j]);
    }
    for (int i = 1; i < nseen; i++)
        for (int j = i; j > 0 && seen[j - 1] > seen[j]; j--) {
            int t = seen[j];
            seen[j] = seen[j - 1];
            seen[j - 1] = t;
        }
    line_len = 0;
    add("leftovers of [");
    for (int i = 0; i < nseen; i++)
        add("%s%s", i ? " " : "", id_str(seen[i]));
    add("]: %d remaining", remaining);
    emit();
    for (int i = 0; i < nsegs; i++) {
        begin();
        add("shmctl(id=%s, cmd=IPC_RMID, buf=NULL)", id_str(segs[i].id));
        errno = ERRNO_SENTINEL;
        int ret = call_shmctl(segs[i].id, IPC_RMID, NULL);
        add_outcome(ret, errno);
        emit();
    }
    if (private_ns) {
        struct shm_info si;
        int ret = (int)syscall(SYS_shmctl, 0, SHM_INFO, &si);
        printf("final used_ids=%d shm_tot=%lu\n", ret == -1 ? -1 : si.used_ids,
               ret == -1 ? 0UL : si.shm_tot);
    }
}

/* ------------------------------------------------------------------ main */

static void
usage(void)
{
    fprintf(stderr, "usage: shmfuzz SEED [--raw] [--length N] [--dir DIR] [--calls FILE] [--no-ns]\n"
                    "               [--no-huge-null]\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    char *end;
    errno = 0;
    uint64_t seed = strtoull(argv[1], &end, 0);
    if (errno != 0 || *end != '\0' || end == argv[1])
        usage();
    int want_calls = -1, no_ns = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--raw") == 0)
            use_raw = 1;
        else if (strcmp(argv[i], "--no-ns") == 0)
            no_ns = 1;
        else if (strcmp(argv[i], "--no-huge-null") == 0)
            no_huge_null = 1;
        else if (strcmp(argv[i], "--length") == 0 && i + 1 < argc)
            want_calls = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            work_dir = argv[++i];
        else if (strcmp(argv[i], "--calls") == 0 && i + 1 < argc) {
            calls_out = fopen(argv[++i], "w");
            if (calls_out == NULL) {
                perror(argv[i]);
                return 2;
            }
        }
        else
            usage();
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    seed_rng(seed);

    private_ns = !no_ns && unshare(CLONE_NEWIPC) == 0;
    if (!private_ns) {
        /* Remove our segments on the way out, before any handler already
         * there (shmguard's, with guard_pages=1) runs. */
        static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGSEGV, SIGBUS,
                                   SIGABRT, SIGILL, SIGFPE, SIGPIPE, SIGALRM};
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_sigaction = on_fatal;
            sa.sa_flags = SA_SIGINFO | SA_NODEFER;
            sigemptyset(&sa.sa_mask);
            if (sigaction(sigs[i], NULL, &previous[sigs[i]]) == 0 &&
                previous[sigs[i]].sa_handler != SIG_IGN)
                sigaction(sigs[i], &sa, NULL);
        }
    }
    init_keys();
    setup_buffers();
    setup_regions();
    int n = want_calls >= 0 ? want_calls : 50 + (int)rnd(151);
    /* RLIMIT_MEMLOCK 0: SHM_LOCK by nobody must not depend on what other
     * processes of that user have locked (the count is per user). */
    struct rlimit memlock = {0, 0};
    int memlock_ok = setrlimit(RLIMIT_MEMLOCK, &memlock) == 0;
    /* root with its saved ids root: it may become nobody and come back */
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    int can_switch = getresuid(&ru, &eu, &su) == 0 && getresgid(&rg, &eg, &sg) == 0 &&
                     eu == 0 && su == 0 && eg == 0 && sg == 0 && memlock_ok;
    printf("shmfuzz seed=0x%016" PRIx64 " calls=%d ns=%s switch-uid=%d low=%d far=%d"
           " arena=%s holes=",
           seed, n, private_ns ? "private" : "shared", can_switch, low_ok, far_ok,
           arena_base == ARENA_BASE ? "fixed" : "floating");
    for (int i = 0; i < nholes; i++)
        printf("%s0x%" PRIxPTR "+0x%" PRIxPTR, i ? "," : "", holes[i].off, holes[i].len);
    printf("\n");

    for (int i = 0; i < n; i++) {
        if (nsegs >= MAX_SEGS - 1 || natts >= MAX_ATTS - 1) {
            /* the model is full: what follows could not be cleaned up */
            printf("model full after %d calls\n", i);
            break;
        }
        if (can_switch && chance(3)) {
            become(!as_nobody);
            printf("-- euid=%d egid=%d\n", as_nobody ? NOBODY : 0, as_nobody ? NOBODY : 0);
        }
        unsigned r = (unsigned)rnd(100);
        if (r < 24)
            do_shmget();
        else if (r < 48)
            do_shmat();
        else if (r < 62)
            do_shmdt();
        else if (r < 93)
            do_shmctl();
        else
            do_ftok();
    }
    epilogue();
    printf("end calls=%d\n", ncalls);
    fflush(stdout);
    if (!private_ns)
        remove_created();
    return 0;
}
