/* x_suppress.c SCENARIO: suppressions=FILE (LSan's format) in the library
 * (the suite compiles it with -g -O0: frames are matched by name).
 *
 * The program runs itself again ("SCENARIO child KEY1 KEY2 KEY3") with
 * suppressions=FILE, log_path, verbosity=1 and stacks=1 added to its
 * options. The child leaks three segments, made in make_table() (key
 * KEY1), make_keyed() (key KEY2) and make_kept() (IPC_PRIVATE), and makes
 * two policy findings, wide-mode in make_wide() and key-without-excl in
 * make_unexcl() (key KEY3), whose segments it removes; it prints the
 * shmids and shmguard_leak_count(). Scenarios:
 *   match    FILE = "# comment", "leak:^make_table$" (a frame),
 *            "leak:0xKEY2" (the key), "finding:wide-mode:^make_wide$",
 *            "finding:key-without-excl:no_such_function", a blank line:
 *            stderr has the leak line of make_kept only, its SUMMARY says
 *            "2 suppressed", one "policy: key-without-excl" line and no
 *            wide-mode line; shmguard_leak_count() is 1; the log keeps
 *            every item, with "suppressed":true on the two suppressed
 *            leaks and the wide-mode finding, and on nothing else;
 *   command  FILE = "leak:x_suppress" (the command) and
 *            "finding:key-without-excl" (every finding of the rule):
 *            nothing is printed for the three leaks (all suppressed) nor
 *            for key-without-excl; leak_count is 0;
 *   badline  FILE = "leak:^make_table$", "bogus", "finding:no-such-rule":
 *            one warning per bad line, naming FILE:LINE, and the good
 *            line applies (2 leaks reported, 1 suppressed);
 *   fifo     FILE is a FIFO nobody writes: one warning ("not a regular
 *            file"), nothing suppressed, and no hang. */
#include "check.h"

#include <sys/stat.h>

#define PAGE 4096UL

/* ------------------------------------------------------------ the child */

static __attribute__((noinline)) int
make_table(key_t k)
{
    return shmget(k, PAGE, IPC_CREAT | IPC_EXCL | 0600);
}

static __attribute__((noinline)) int
make_keyed(key_t k)
{
    return shmget(k, 2 * PAGE, IPC_CREAT | IPC_EXCL | 0600);
}

static __attribute__((noinline)) int
make_kept(void)
{
    return shmget(IPC_PRIVATE, 3 * PAGE, IPC_CREAT | 0600);
}

static __attribute__((noinline)) int
make_wide(void)
{
    return shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0666);
}

static __attribute__((noinline)) int
make_unexcl(key_t k)
{
    return shmget(k, PAGE, IPC_CREAT | 0600);
}

static int
child(char **keys)
{
    key_t k1 = (key_t)strtoul(keys[0], NULL, 0);
    key_t k2 = (key_t)strtoul(keys[1], NULL, 0);
    key_t k3 = (key_t)strtoul(keys[2], NULL, 0);
    int table = make_table(k1);
    int keyed = make_keyed(k2);
    int kept = make_kept();
    /* removed by the parent; here only if this child dies on a signal */
    ck_track_crash_only(table);
    ck_track_crash_only(keyed);
    ck_track_crash_only(kept);
    CHECK(table >= 0 && keyed >= 0 && kept >= 0);
    int wide = make_wide();
    ck_track(wide);
    CHECK(wide >= 0 && shmctl(wide, IPC_RMID, NULL) == 0);
    int unexcl = make_unexcl(k3);
    ck_track(unexcl);
    CHECK(unexcl >= 0 && shmctl(unexcl, IPC_RMID, NULL) == 0);
    size_t (*leak_count)(void) = (size_t (*)(void))ck_sym("shmguard_leak_count");
    printf("pid %d\ntable %d\nkeyed %d\nkept %d\nleak_count %zu\n", (int)getpid(), table, keyed,
           kept, leak_count());
    tracef("child", "ok");
    return ck_finish();
}

/* ----------------------------------------------------------- the parent */

/* Lines of LOG with the exit event's object of a segment ID that holds
 * "suppressed":true (1), lacks it (0), or is not there (-1). */
static int
exit_item_suppressed(const char *log, long id)
{
    const char *exit_ev = strstr(log, "\"event\":\"exit\"");
    if (exit_ev == NULL)
        return -1;
    char want[96];
    snprintf(want, sizeof want, "{\"kind\":\"segment\",\"shmid\":%ld,", id);
    const char *obj = strstr(exit_ev, want);
    if (obj == NULL)
        return -1;
    /* the object ends at its first '}' after the stack's ']' */
    const char *end = strstr(obj, "]}");
    const char *close = strchr(obj, '}');
    if (end == NULL || (close != NULL && close < end))
        end = close;
    size_t len = end == NULL ? strlen(obj) : (size_t)(end - obj);
    char *copy = strndup(obj, len);
    int s = copy != NULL && strstr(copy, "\"suppressed\":true") != NULL;
    free(copy);
    return s;
}

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs(text, f) == EOF || fclose(f) != 0)
        FAIL("cannot write %s: %s", path, ck_errname(errno));
}

static int
parent(char *self, const char *scenario)
{
    char supp[256], keys[3][32], text[1024];
    key_t k[3];
    for (int i = 0; i < 3; i++) {
        k[i] = ck_key((unsigned)i + 1, 0);
        snprintf(keys[i], sizeof keys[i], "0x%08x", (unsigned)k[i]);
    }
    ck_tmp_name(supp, sizeof supp, "s.supp");
    if (strcmp(scenario, "match") == 0) {
        snprintf(text, sizeof text,
                 "# known leaks\n"
                 "leak:^make_table$\n"
                 "  leak:%s\n"
                 "\n"
                 "finding:wide-mode:^make_wide$\n"
                 "finding:key-without-excl:no_such_function\n",
                 keys[1]);
        write_file(supp, text);
    } else if (strcmp(scenario, "command") == 0) {
        write_file(supp, "leak:x_suppress\nfinding:key-without-excl\n");
    } else if (strcmp(scenario, "badline") == 0) {
        write_file(supp, "leak:^make_table$\nbogus\nfinding:no-such-rule\n");
    } else if (strcmp(scenario, "fifo") == 0) {
        if (mkfifo(supp, 0600) != 0)
            FAIL("mkfifo: %s", ck_errname(errno));
    } else {
        fprintf(stderr, "x_suppress: unknown scenario %s\n", scenario);
        return 2;
    }

    char opts[1024], extra[600], logfile[300];
    snprintf(extra, sizeof extra, "suppressions=%s:log_path=%s/l.%%p.jsonl:verbosity=1:stacks=1",
             supp, ck_tmpdir());
    ck_options_plus(opts, sizeof opts, extra);
    char *argv[] = {self, (char *)scenario, "child", keys[0], keys[1], keys[2], NULL};
    struct ck_child c = ck_run_child(argv, opts);
    long table = ck_field(c.out, "table"), keyed = ck_field(c.out, "keyed");
    long kept = ck_field(c.out, "kept");
    long count = ck_field(c.out, "leak_count");
    ck_track((int)table);
    ck_track((int)keyed);
    ck_track((int)kept);
    char *log = ck_slurp(ck_log_file(logfile, sizeof logfile, ck_tmpdir(), c.pid));
    int ok = c.code == 0 && log != NULL && table >= 0 && keyed >= 0 && kept >= 0;
    if (!ok)
        FAIL("%s: the child ended with %d, printed table %ld keyed %ld kept %ld, log %s", scenario,
             c.code, table, keyed, kept, log == NULL ? "unreadable" : "read");
    char want[400];
    int lines[3];
    const long ids[3] = {table, keyed, kept};
    for (int i = 0; i < 3; i++) {
        snprintf(want, sizeof want, "leak: segment shmid=%ld ", ids[i]);
        lines[i] = ck_count_lines(c.err, want, NULL);
    }
    int wide_lines = ck_count_lines(c.err, "policy: wide-mode: ", NULL);
    int unexcl_lines = ck_count_lines(c.err, "policy: key-without-excl: ", NULL);
    int warnings = ck_count_lines(c.err, "warning: suppressions: ", NULL);
    const char *wide_f[] = {"\"event\":\"finding\"", "\"rule\":\"wide-mode\"",
                            "\"suppressed\":true"};
    const char *unexcl_f[] = {"\"event\":\"finding\"", "\"rule\":\"key-without-excl\"",
                              "\"suppressed\":true"};
    const char *unexcl_key[] = {"\"event\":\"finding\"", "\"rule\":\"key-without-excl\"",
                                keys[2]};
    int wide_s = log == NULL ? -1 : ck_lines_with(log, wide_f, 3);
    int unexcl_s = log == NULL ? -1 : ck_lines_with(log, unexcl_f, 3);
    int unexcl_k = log == NULL ? -1 : ck_lines_with(log, unexcl_key, 3);
    int s[3];
    for (int i = 0; i < 3; i++)
        s[i] = log == NULL ? -1 : exit_item_suppressed(log, ids[i]);

    if (strcmp(scenario, "match") == 0) {
        ok &= lines[0] == 0 && lines[1] == 0 && lines[2] == 1;
        ok &= ck_count_lines(c.err, "SUMMARY: 1 leak (1 segment holding 12288 bytes, 0 "
                                    "attachments); 2 suppressed",
                             NULL) == 1;
        ok &= wide_lines == 0 && unexcl_lines == 1 && warnings == 0;
        ok &= count == 1;
        ok &= s[0] == 1 && s[1] == 1 && s[2] == 0;
        ok &= wide_s == 1 && unexcl_s == 0 && unexcl_k == 1;
    } else if (strcmp(scenario, "command") == 0) {
        ok &= lines[0] == 0 && lines[1] == 0 && lines[2] == 0;
        ok &= ck_count_lines(c.err, "SUMMARY", NULL) == 0;
        ok &= wide_lines == 1 && unexcl_lines == 0 && warnings == 0;
        ok &= count == 0;
        ok &= s[0] == 1 && s[1] == 1 && s[2] == 1;
        ok &= wide_s == 0 && unexcl_s == 1;
    } else if (strcmp(scenario, "badline") == 0) {
        snprintf(want, sizeof want, "warning: suppressions: %s:2: 'bogus' is not", supp);
        ok &= ck_count_lines(c.err, want, NULL) == 1;
        snprintf(want, sizeof want, "warning: suppressions: %s:3: unknown rule", supp);
        ok &= ck_count_lines(c.err, want, NULL) == 1;
        ok &= warnings == 2;
        ok &= lines[0] == 0 && lines[1] == 1 && lines[2] == 1;
        ok &= ck_count_lines(c.err, NULL, "; 1 suppressed") == 1;
        ok &= count == 2 && s[0] == 1 && s[1] == 0;
    } else {
        ok &= ck_count_lines(c.err, NULL, "not a regular file (nothing suppressed)") == 1;
        ok &= warnings == 1;
        ok &= lines[0] == 1 && lines[1] == 1 && lines[2] == 1;
        ok &= count == 3 && s[0] == 0 && s[1] == 0 && s[2] == 0;
        ok &= wide_lines == 1 && unexcl_lines == 1 && wide_s == 0 && unexcl_s == 0;
    }
    if (ck_shmguard_lines(scenario, c.err) < 0)
        ok = 0;
    if (!ok)
        fprintf(stderr,
                "x_suppress %s: lines %d/%d/%d wide %d unexcl %d warnings %d count %ld "
                "marked %d/%d/%d wide %d unexcl %d key %d\n"
                "--- the child's stdout:\n%s--- its stderr:\n%s--- the log:\n%s--- end\n",
                scenario, lines[0], lines[1], lines[2], wide_lines, unexcl_lines, warnings, count,
                s[0], s[1], s[2], wide_s, unexcl_s, unexcl_k, c.out, c.err,
                log == NULL ? "" : log);
    if (!ok)
        FAIL("%s: what was reported does not match the suppressions", scenario);
    tracef(scenario, "%s", ok ? "ok" : "fail");
    free(log);
    ck_child_free(&c);
    unlink(supp);
    return ck_finish();
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: x_suppress match|command|badline|fifo\n");
        return 2;
    }
    ck_init();
    if (argc == 6 && strcmp(argv[2], "child") == 0)
        return child(argv + 3);
    return parent(argv[0], argv[1]);
}
