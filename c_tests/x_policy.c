/* x_policy.c SCENARIO: the security policy (SHMGUARD_OPTIONS policy=).
 *
 *   strict  run with policy=strict: each call that breaks a rule fails with
 *           EACCES, shmguard_last_error() names the rule and the kernel is
 *           left as it was; the safe forms give what the raw system call
 *           gives.
 *   audit   run with the default policy: every one of those calls gives
 *           what the raw system call gives.
 *
 * Key squatting is played for real with the user nobody: a forked child
 * that dropped to nobody plants keyed segments (with the raw calls: an
 * attacker does not use shmguard) that root then opens, and the reverse,
 * a nobody child opening root's keys, reporting through its exit status.
 *
 * Then the program runs itself again ("SCENARIO child") with verbosity=1 and
 * log_path added to its options and checks what the policy reported: under
 * audit one "==PID== shmguard: policy: RULE: " line on stderr and one
 * finding with "refused":false in the log per rule-breaking call; under
 * strict one EACCES line naming the rule and one "refused":true finding.
 * The counts are exact: a safe form must not be reported. */
#include "check.h"

#include <grp.h>

#define PAGE 4096UL
#define NOBODY 65534

enum rule { WIDE_MODE, KEY_WITHOUT_EXCL, KEY_SQUATTING, WIDENING_SET, SHM_EXEC_RULE, NRULES };

static const char *const rule_names[NRULES] = {
    "wide-mode", "key-without-excl", "key-squatting", "widening-ipc-set", "shm-exec",
};

/* Rule-breaking calls made, per rule, by this process and its forked
 * children (a shared mapping, so that the children's count too). */
static int *made;
static int strict;

static int
track(int id)
{
    ck_track(id);
    return id;
}

/* A call that breaks RULE: under strict it must fail with EACCES and name
 * the rule; under audit it must give what the raw call gave. */
static void
violation(const char *name, enum rule rule, struct ck_res lib, struct ck_res raw)
{
    __atomic_add_fetch(&made[rule], 1, __ATOMIC_SEQ_CST);
    if (strict) {
        if (WANT(name, lib, EACCES)) {
            const char *e = ck_last_error();
            if (strstr(e, rule_names[rule]) == NULL)
                FAIL("%s: last_error \"%s\" does not name the rule %s", name, e,
                     rule_names[rule]);
        }
    } else {
        SAME(name, lib, raw);
    }
    trace(name, lib);
}

/* An open of an existing segment that breaks RULE: as violation(), and
 * under audit the same shmid as the raw call. */
static void
open_violation(const char *name, enum rule rule, struct ck_res lib, struct ck_res raw)
{
    violation(name, rule, lib, raw);
    if (!strict && lib.ret != -1 && lib.ret != raw.ret)
        FAIL("%s: opened shmid %ld, the raw call %ld", name, lib.ret, raw.ret);
}

/* A safe form: in both modes what the raw call gives. */
static void
safe(const char *name, struct ck_res lib, struct ck_res raw)
{
    SAME(name, lib, raw);
    trace(name, lib);
}

static int
mode_of(int id)
{
    struct shmid_ds ds;
    if (ck_stat(id, &ds) != 0)
        return -1;
    return ds.shm_perm.mode & 0777;
}

/* ------------------------------------------------------------ creating */

static void
case_wide_mode(void)
{
    static const int modes[] = {0640, 0666, 0777, 0604, 0620, 0602, 0660};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "wide_mode_private_0%o", (unsigned)modes[i]);
        int before = ck_own_segments();
        struct ck_res lib = RES(track(shmget(IPC_PRIVATE, PAGE, IPC_CREAT | modes[i])));
        int grew = ck_own_segments() - before;
        struct ck_res raw = RES(track(raw_shmget(IPC_PRIVATE, PAGE, IPC_CREAT | modes[i])));
        violation(name, WIDE_MODE, lib, raw);
        CHECK_EQ(grew, strict ? 0 : 1);
        if (!strict && lib.ret != -1)
            CHECK_EQ(mode_of((int)lib.ret), modes[i]);
    }

    /* IPC_PRIVATE creates even without IPC_CREAT */
    int before = ck_own_segments();
    struct ck_res lib = RES(track(shmget(IPC_PRIVATE, PAGE, 0666)));
    int grew = ck_own_segments() - before;
    struct ck_res raw = RES(track(raw_shmget(IPC_PRIVATE, PAGE, 0666)));
    violation("wide_mode_private_no_creat_0666", WIDE_MODE, lib, raw);
    CHECK_EQ(grew, strict ? 0 : 1);

    /* keyed, with IPC_EXCL, but wide */
    key_t k = ck_key(1, 0), k_raw = ck_key(2, 0);
    lib = RES(track(shmget(k, PAGE, IPC_CREAT | IPC_EXCL | 0640)));
    raw = RES(track(raw_shmget(k_raw, PAGE, IPC_CREAT | IPC_EXCL | 0640)));
    violation("wide_mode_keyed_excl_0640", WIDE_MODE, lib, raw);
    /* under strict the key stays free */
    struct ck_res probe = RES(raw_shmget(k, 0, 0));
    if (strict)
        WANT("wide_mode_keyed_excl_0640_not_created", probe, ENOENT);
    else
        WANT("wide_mode_keyed_excl_0640_created", probe, 0);
}

static void
case_key_without_excl(void)
{
    /* a new key */
    key_t k = ck_key(3, 0), k_raw = ck_key(4, 0);
    int before = ck_own_segments();
    struct ck_res lib = RES(track(shmget(k, PAGE, IPC_CREAT | 0600)));
    int grew = ck_own_segments() - before;
    struct ck_res raw = RES(track(raw_shmget(k_raw, PAGE, IPC_CREAT | 0600)));
    violation("key_without_excl_new_key", KEY_WITHOUT_EXCL, lib, raw);
    CHECK_EQ(grew, strict ? 0 : 1);
    struct ck_res probe = RES(raw_shmget(k, 0, 0));
    WANT("key_without_excl_new_key_probe", probe, strict ? ENOENT : 0);

    /* a key of our own that exists: same segment under audit */
    key_t own = ck_key(5, 0);
    int id = ck_raw_shmget(own, PAGE, IPC_CREAT | IPC_EXCL | 0600);
    CHECK(id >= 0);
    lib = RES(shmget(own, PAGE, IPC_CREAT | 0600));
    raw = RES(raw_shmget(own, PAGE, IPC_CREAT | 0600));
    open_violation("key_without_excl_existing", KEY_WITHOUT_EXCL, lib, raw);
    if (!strict)
        CHECK_EQ(lib.ret, id);

    /* asking that segment for more than its size: EINVAL (audit) */
    lib = RES(shmget(own, 4 * PAGE, IPC_CREAT | 0600));
    raw = RES(raw_shmget(own, 4 * PAGE, IPC_CREAT | 0600));
    violation("key_without_excl_existing_too_big", KEY_WITHOUT_EXCL, lib, raw);
    if (!strict)
        WANT("key_without_excl_existing_too_big_einval", lib, EINVAL);
}

/* ------------------------------------------------------- key squatting */

/* In a forked child: become nobody for good. */
static int
become_nobody(void)
{
    if (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0 || setuid(NOBODY) != 0)
        return -1;
    return geteuid() == NOBODY && getegid() == NOBODY ? 0 : -1;
}

/* The attacker, a child running as nobody: plants the keys with the raw
 * calls. KEYS[0] mode 0666, KEYS[1] mode 0600, KEYS[2] mode 0600 handed to
 * root (IPC_SET uid 0: created by nobody, owned by root). */
static int
attacker_main(const key_t keys[3])
{
    if (become_nobody() != 0)
        return 10;
    if (raw_shmget(keys[0], PAGE, IPC_CREAT | IPC_EXCL | 0666) < 0)
        return 11;
    if (raw_shmget(keys[1], PAGE, IPC_CREAT | IPC_EXCL | 0600) < 0)
        return 12;
    int id = raw_shmget(keys[2], PAGE, IPC_CREAT | IPC_EXCL | 0600);
    if (id < 0)
        return 13;
    struct shmid_ds ds;
    if (ck_stat(id, &ds) != 0)
        return 14;
    ds.shm_perm.uid = 0;
    if (raw_shmctl(id, IPC_SET, &ds) != 0)
        return 15;
    return 0;
}

/* The segment under KEY (made by a child), tracked for removal. */
static int
adopt_key(key_t key)
{
    int id = raw_shmget(key, 0, 0);
    if (id < 0)
        FAIL("no segment under key 0x%08x: %s", (unsigned)key, ck_errname(errno));
    return track(id);
}

static void
case_squatting_root_victim(void)
{
    const key_t keys[3] = {ck_key(10, 0), ck_key(11, 0), ck_key(12, 1)};
    pid_t pid = ck_fork();
    if (pid == 0) {
        ck_child_defaults();
        _exit(attacker_main(keys));
    }
    int code = ck_child_code(pid, 10000);
    int ids[3];
    for (int i = 0; i < 3; i++)
        ids[i] = adopt_key(keys[i]);
    CHECK_EQ(code, 0);
    struct shmid_ds ds;
    CHECK_EQ(ck_stat(ids[2], &ds), 0);
    CHECK_EQ(ds.shm_perm.cuid, NOBODY);
    CHECK_EQ(ds.shm_perm.uid, 0);

    /* root, the victim, opens the planted keys */
    struct ck_res lib = RES(shmget(keys[0], 0, 0));
    struct ck_res raw = RES(raw_shmget(keys[0], 0, 0));
    open_violation("squat_open_others_0666", KEY_SQUATTING, lib, raw);
    lib = RES(shmget(keys[0], PAGE, 0600));
    raw = RES(raw_shmget(keys[0], PAGE, 0600));
    open_violation("squat_open_others_0666_sized", KEY_SQUATTING, lib, raw);
    lib = RES(shmget(keys[1], PAGE, 0600));
    raw = RES(raw_shmget(keys[1], PAGE, 0600));
    open_violation("squat_open_others_0600", KEY_SQUATTING, lib, raw);
    lib = RES(shmget(keys[2], 0, 0));
    raw = RES(raw_shmget(keys[2], 0, 0));
    open_violation("squat_open_created_by_other", KEY_SQUATTING, lib, raw);

    /* the safe form detects the squatter: EEXIST, as the kernel says */
    lib = RES(shmget(keys[0], PAGE, IPC_CREAT | IPC_EXCL | 0600));
    raw = RES(raw_shmget(keys[0], PAGE, IPC_CREAT | IPC_EXCL | 0600));
    safe("safe_excl_detects_squatter", lib, raw);
    WANT("safe_excl_detects_squatter_eexist", lib, EEXIST);

    /* our own keyed segment, but open to every user */
    key_t wide = ck_key(13, 0);
    int id = ck_raw_shmget(wide, PAGE, IPC_CREAT | IPC_EXCL | 0604);
    CHECK(id >= 0);
    lib = RES(shmget(wide, 0, 0));
    raw = RES(raw_shmget(wide, 0, 0));
    open_violation("squat_open_own_but_0604", KEY_SQUATTING, lib, raw);
}

/* The victim, a child running as nobody: opens root's keys KEYS[0] (0600)
 * and KEYS[1] (0666), then makes and reopens its own KEYS[2] safely. */
static int
nobody_victim_main(const key_t keys[3])
{
    if (become_nobody() != 0)
        return 20;
    /* flags 0 ask for no access: the kernel opens even root's 0600 */
    struct ck_res lib = RES(shmget(keys[0], 0, 0));
    struct ck_res raw = RES(raw_shmget(keys[0], 0, 0));
    WANT("nobody_raw_opens_root_0600", raw, 0);
    open_violation("squat_nobody_opens_root_0600", KEY_SQUATTING, lib, raw);
    lib = RES(shmget(keys[1], PAGE, 0666));
    raw = RES(raw_shmget(keys[1], PAGE, 0666));
    open_violation("squat_nobody_opens_root_0666", KEY_SQUATTING, lib, raw);

    /* its own segment, made and opened the safe way, passes */
    lib = RES(shmget(keys[2], PAGE, IPC_CREAT | IPC_EXCL | 0600));
    WANT("safe_nobody_creates_own", lib, 0);
    trace("safe_nobody_creates_own", lib);
    struct ck_res again = RES(shmget(keys[2], 0, 0));
    raw = RES(raw_shmget(keys[2], 0, 0));
    safe("safe_nobody_reopens_own", again, raw);
    CHECK_EQ(again.ret, lib.ret);
    again = RES(shmget(keys[2], PAGE, 0600));
    raw = RES(raw_shmget(keys[2], PAGE, 0600));
    safe("safe_nobody_reopens_own_sized", again, raw);
    if (lib.ret != -1)
        CHECK_EQ(shmctl((int)lib.ret, IPC_RMID, NULL), 0);
    return ck_failures == 0 ? 0 : 21;
}

static void
case_squatting_nobody_victim(void)
{
    const key_t keys[3] = {ck_key(14, 0), ck_key(15, 1), ck_key(16, 0)};
    CHECK(ck_raw_shmget(keys[0], PAGE, IPC_CREAT | IPC_EXCL | 0600) >= 0);
    CHECK(ck_raw_shmget(keys[1], PAGE, IPC_CREAT | IPC_EXCL | 0666) >= 0);
    pid_t pid = ck_fork();
    if (pid == 0) {
        ck_child_defaults();
        exit(nobody_victim_main(keys));
    }
    int code = ck_child_code(pid, 10000);
    CHECK_EQ(code, 0);
    tracef("squat_nobody_victim_child", "ok code=%d", code);
    /* the child's own segment, if it failed to remove it */
    int left = raw_shmget(keys[2], 0, 0);
    if (left >= 0) {
        FAIL("the nobody child left its segment %d", left);
        track(left);
    }
}

/* ------------------------------------------------------------- IPC_SET */

/* IPC_SET through the libc name on ID and through the raw call on TWIN,
 * with the same change applied by CHANGE to each one's current state. */
static void
ipc_set_pair(int id, int twin, void (*change)(struct shmid_ds *), struct ck_res *lib,
             struct ck_res *raw)
{
    struct shmid_ds a, b;
    CHECK_EQ(ck_stat(id, &a), 0);
    CHECK_EQ(ck_stat(twin, &b), 0);
    change(&a);
    change(&b);
    *lib = RES(shmctl(id, IPC_SET, &a));
    *raw = RES(raw_shmctl(twin, IPC_SET, &b));
}

static void to_0644(struct shmid_ds *ds) { ds->shm_perm.mode = 0644; }
static void to_0600(struct shmid_ds *ds) { ds->shm_perm.mode = 0600; }
static void to_0400(struct shmid_ds *ds) { ds->shm_perm.mode = 0400; }
static void to_nobody_uid(struct shmid_ds *ds) { ds->shm_perm.uid = NOBODY; }
static void to_nobody_gid(struct shmid_ds *ds) { ds->shm_perm.gid = NOBODY; }
static void unchanged(struct shmid_ds *ds) { (void)ds; }

/* Owner, group and mode of ID and TWIN agree (audit, or a safe form). */
static void
same_perm(const char *name, int id, int twin)
{
    struct shmid_ds a, b;
    CHECK_EQ(ck_stat(id, &a), 0);
    CHECK_EQ(ck_stat(twin, &b), 0);
    if (a.shm_perm.uid != b.shm_perm.uid || a.shm_perm.gid != b.shm_perm.gid ||
        (a.shm_perm.mode & 0777) != (b.shm_perm.mode & 0777))
        FAIL("%s: uid/gid/mode %u/%u/0%o, the raw call gave %u/%u/0%o", name,
             (unsigned)a.shm_perm.uid, (unsigned)a.shm_perm.gid, a.shm_perm.mode & 0777,
             (unsigned)b.shm_perm.uid, (unsigned)b.shm_perm.gid, b.shm_perm.mode & 0777);
}

/* Under strict: ID's owner, group and mode are still BEFORE's. */
static void
perm_kept(const char *name, int id, const struct shmid_ds *before)
{
    struct shmid_ds now;
    CHECK_EQ(ck_stat(id, &now), 0);
    if (now.shm_perm.uid != before->shm_perm.uid || now.shm_perm.gid != before->shm_perm.gid ||
        now.shm_perm.mode != before->shm_perm.mode)
        FAIL("%s: refused, yet the segment changed", name);
}

static void
set_case(const char *name, int mode, void (*change)(struct shmid_ds *), int breaks)
{
    int id = ck_fixture(PAGE, mode), twin = ck_fixture(PAGE, mode);
    struct shmid_ds before;
    CHECK_EQ(ck_stat(id, &before), 0);
    struct ck_res lib, raw;
    ipc_set_pair(id, twin, change, &lib, &raw);
    if (breaks) {
        violation(name, WIDENING_SET, lib, raw);
        if (strict)
            perm_kept(name, id, &before);
        else
            same_perm(name, id, twin);
    } else {
        safe(name, lib, raw);
        same_perm(name, id, twin);
    }
}

static void
case_ipc_set(void)
{
    set_case("widening_set_0600_to_0644", 0600, to_0644, 1);
    set_case("widening_set_uid_to_nobody", 0600, to_nobody_uid, 1);
    set_case("widening_set_gid_with_group_bits", 0640, to_nobody_gid, 1);

    set_case("safe_set_narrow_0640_to_0600", 0640, to_0600, 0);
    set_case("safe_set_narrow_0600_to_0400", 0600, to_0400, 0);
    set_case("safe_set_unchanged", 0600, unchanged, 0);
    set_case("safe_set_gid_without_group_bits", 0600, to_nobody_gid, 0);

    /* a bad buffer: the kernel's EFAULT */
    int id = ck_fixture(PAGE, 0600);
    struct ck_res lib = RES(shmctl(id, IPC_SET, (struct shmid_ds *)16));
    struct ck_res raw = RES(raw_shmctl(id, IPC_SET, (void *)16));
    safe("safe_set_bad_pointer", lib, raw);
    WANT("safe_set_bad_pointer_efault", lib, EFAULT);
    lib = RES(shmctl(id, IPC_SET, NULL));
    raw = RES(raw_shmctl(id, IPC_SET, NULL));
    safe("safe_set_null", lib, raw);
    CHECK_EQ(mode_of(id), 0600);
}

/* ----------------------------------------------------------------- shmat */

static void
case_shmat(void)
{
    int id = ck_fixture(PAGE, 0600);
    struct ck_res lib = RES(shmat(id, NULL, SHM_EXEC));
    long nattch = ck_nattch(id);
    struct ck_res raw = RES(raw_shmat(id, NULL, SHM_EXEC));
    violation("shm_exec", SHM_EXEC_RULE, lib, raw);
    CHECK_EQ(nattch, strict ? 0 : 1);
    if (lib.ret != -1 && raw.ret != -1) {
        char a[8];
        snprintf(a, sizeof a, "%s", ck_map_perms((void *)lib.ret));
        CHECK_EQ(strcmp(a, ck_map_perms((void *)raw.ret)), 0);
    }
    if (lib.ret != -1)
        CHECK_EQ(shmdt((void *)lib.ret), 0);
    if (raw.ret != -1)
        CHECK_EQ(raw_shmdt((void *)raw.ret), 0);

    lib = RES(shmat(id, NULL, SHM_RDONLY));
    raw = RES(raw_shmat(id, NULL, SHM_RDONLY));
    safe("safe_shmat_rdonly", lib, raw);
    if (lib.ret != -1) {
        CHECK_EQ(strcmp(ck_map_perms((void *)lib.ret), "r--s"), 0);
        CHECK_EQ(shmdt((void *)lib.ret), 0);
    }
    if (raw.ret != -1)
        CHECK_EQ(raw_shmdt((void *)raw.ret), 0);

    lib = RES(shmat(id, NULL, 0));
    safe("safe_shmat_plain", lib, RES(0));
    if (lib.ret != -1)
        CHECK_EQ(shmdt((void *)lib.ret), 0);
    CHECK_EQ(ck_nattch(id), 0);
}

/* ------------------------------------------------------------ safe forms */

static void
case_safe_creation(void)
{
    struct ck_res lib = RES(track(shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600)));
    struct ck_res raw = RES(track(raw_shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600)));
    safe("safe_private_0600", lib, raw);
    if (lib.ret != -1)
        CHECK_EQ(mode_of((int)lib.ret), 0600);
    lib = RES(track(shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0400)));
    raw = RES(track(raw_shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0400)));
    safe("safe_private_0400", lib, raw);

    key_t k = ck_key(20, 0), k_raw = ck_key(21, 1);
    lib = RES(track(shmget(k, PAGE, IPC_CREAT | IPC_EXCL | 0600)));
    raw = RES(track(raw_shmget(k_raw, PAGE, IPC_CREAT | IPC_EXCL | 0600)));
    safe("safe_keyed_excl_0600", lib, raw);
    int id = (int)lib.ret;

    /* reopening one's own 0600 keyed segment */
    lib = RES(shmget(k, 0, 0));
    raw = RES(raw_shmget(k, 0, 0));
    safe("safe_reopen_own", lib, raw);
    CHECK_EQ(lib.ret, id);
    lib = RES(shmget(k, PAGE, 0600));
    raw = RES(raw_shmget(k, PAGE, 0600));
    safe("safe_reopen_own_sized", lib, raw);
    CHECK_EQ(lib.ret, id);
    lib = RES(shmget(k, PAGE, IPC_CREAT | IPC_EXCL | 0600));
    raw = RES(raw_shmget(k, PAGE, IPC_CREAT | IPC_EXCL | 0600));
    safe("safe_excl_again_eexist", lib, raw);
    lib = RES(shmget(k, 2 * PAGE, 0600));
    raw = RES(raw_shmget(k, 2 * PAGE, 0600));
    safe("safe_reopen_too_big", lib, raw);
    lib = RES(shmget(ck_key(22, 0), PAGE, 0600));
    raw = RES(raw_shmget(ck_key(22, 0), PAGE, 0600));
    safe("safe_open_missing_key", lib, raw);
    WANT("safe_open_missing_key_enoent", lib, ENOENT);

    struct shmid_ds a, b;
    memset(&a, 0, sizeof a);
    lib = RES(shmctl(id, IPC_STAT, &a));
    raw = RES(ck_stat(id, &b));
    safe("safe_ipc_stat", lib, raw);
    SAME_DS("safe_ipc_stat", &a, &b);
    lib = RES(shmctl(id, IPC_RMID, NULL));
    safe("safe_ipc_rmid", lib, RES(0));
}

/* ------------------------------------------------------ what was reported */

/* Every log file (l.PID.jsonl) in DIR, concatenated. */
static char *
all_logs(const char *dir, int *files)
{
    size_t len = 0;
    char *all = calloc(1, 1);
    DIR *d = opendir(dir);
    struct dirent *e;
    *files = 0;
    while (all != NULL && d != NULL && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "l.", 2) != 0)
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        char *text = ck_slurp(path);
        if (text == NULL)
            continue;
        size_t n = strlen(text);
        char *bigger = realloc(all, len + n + 2);
        if (bigger != NULL) {
            all = bigger;
            memcpy(all + len, text, n);
            len += n;
            all[len++] = '\n';
            all[len] = '\0';
            (*files)++;
        }
        free(text);
    }
    if (d != NULL)
        closedir(d);
    return all;
}

static void
case_reports(const char *scenario)
{
    char opts[512], logpath[256], out[256], err[256];
    snprintf(logpath, sizeof logpath, "log_path=%s/l.%%p.jsonl:verbosity=1", ck_tmpdir());
    ck_options_plus(opts, sizeof opts, logpath);
    ck_tmp_name(out, sizeof out, "child.out");
    ck_tmp_name(err, sizeof err, "child.err");
    char *argv[] = {"x_policy", (char *)scenario, "child", NULL};
    pid_t pid = 0;
    int code = ck_run_self(argv, opts, out, err, &pid);
    char *errtext = ck_slurp(err);
    int files = 0;
    char *logs = all_logs(ck_tmpdir(), &files);
    if (errtext == NULL || logs == NULL) {
        FAIL("cannot read the child's stderr or logs");
        return;
    }
    int ok = code == 0;
    if (code != 0)
        FAIL("the child with %s ended with %d", opts, code);
    /* the child and the nobody child it forks write logs */
    if (files < 2) {
        FAIL("%d log files in %s, expected at least 2", files, ck_tmpdir());
        ok = 0;
    }
    int total = 0;
    for (int r = 0; r < NRULES; r++) {
        char rule_field[64], prefix[64];
        snprintf(rule_field, sizeof rule_field, "\"rule\":\"%s\"", rule_names[r]);
        const char *in_log[] = {"\"event\":\"finding\"", rule_field,
                                strict ? "\"refused\":true" : "\"refused\":false"};
        int logged = ck_lines_with(logs, in_log, 3);
        int printed;
        if (strict) {
            /* verbosity=1 prints each failure: EACCES and the rule */
            const char *on_stderr[] = {" shmguard: ", " EACCES", rule_names[r]};
            printed = ck_lines_with(errtext, on_stderr, 3);
        } else {
            snprintf(prefix, sizeof prefix, "policy: %s: ", rule_names[r]);
            printed = ck_count_lines(errtext, prefix, NULL);
        }
        if (logged != made[r] || printed != made[r]) {
            FAIL("rule %s: %d calls broke it; %d findings in the logs, %d lines on stderr",
                 rule_names[r], made[r], logged, printed);
            ok = 0;
        }
        total += made[r];
        tracef("reported", "ok rule=%s calls=%d logged=%d printed=%d", rule_names[r], made[r],
               logged, printed);
    }
    const char *any_finding[] = {"\"event\":\"finding\""};
    int findings = ck_lines_with(logs, any_finding, 1);
    if (findings != total) {
        FAIL("%d findings in the logs, %d rule-breaking calls", findings, total);
        ok = 0;
    }
    if (!ok)
        fprintf(stderr, "--- the child's stderr:\n%s--- end\n", errtext);
    free(errtext);
    free(logs);
}

int
main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "strict") != 0 && strcmp(argv[1], "audit") != 0)) {
        fprintf(stderr, "usage: x_policy strict|audit [child]\n");
        return 2;
    }
    ck_init();
    strict = strcmp(argv[1], "strict") == 0;
    int child = argc > 2 && strcmp(argv[2], "child") == 0;
    made = mmap(NULL, sizeof(int) * NRULES, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                -1, 0);
    if (made == MAP_FAILED) {
        FAIL("mmap: %s", ck_errname(errno));
        return 1;
    }
    tracef("scenario", "ok name=%s child=%d", argv[1], child);
    case_wide_mode();
    case_key_without_excl();
    case_squatting_root_victim();
    case_squatting_nobody_victim();
    case_ipc_set();
    case_shmat();
    case_safe_creation();
    if (!child)
        case_reports(argv[1]);
    return ck_finish();
}
