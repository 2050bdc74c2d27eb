/* x_help.c help|comma: how SHMGUARD_OPTIONS talks to its user.
 *
 *   help   the program runs itself again ("help child") with help=1 in its
 *          options: the child's shm calls work as usual and it exits 0
 *          (the program goes on), and its stderr lists every option with
 *          its default, once.
 *   comma  the program runs itself again with "verbosity=1,exitcode=3" (the
 *          ASAN_OPTIONS habit): that is not taken as something else (the
 *          child, which leaks one segment on purpose, exits 0, not 3, and
 *          prints no verbosity line), and the one warning says that pairs
 *          are separated by ':' and ',' separates the entries of fault=. */
#include "check.h"

#define PAGE 4096UL

static const char *const options[][2] = {
    {"leak_check=", "default 1"}, {"leak_report=", "default 1"},
    {"exitcode=", "default 0"},
    {"verbosity=", "default 0"},  {"log_path=", "default unset"},
    {"policy=", "default audit"}, {"guard_pages=", "default 0"},
    {"stacks=", "default 0"},     {"fault=", "default unset"},
    {"help=", "default 0"},       {"suppressions=", "default unset"},
};

/* The child: one segment made, attached, detached and removed; under
 * "leak" one more segment left behind on purpose (removed by the parent). */
static int
child(int leak)
{
    int id = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
    if (id < 0)
        return 10;
    char *p = shmat(id, NULL, 0);
    if (p == (void *)-1)
        return 11;
    p[0] = 1;
    if (shmdt(p) != 0 || shmctl(id, IPC_RMID, NULL) != 0)
        return 12;
    if (leak) {
        int left = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
        if (left < 0)
            return 13;
        printf("leaked %d\n", left);
    }
    return 0;
}

static void
run(const char *scenario, const char *extra, int *code, char **out, char **err)
{
    char opts[512], outpath[256], errpath[256];
    ck_options_plus(opts, sizeof opts, extra);
    ck_tmp_name(outpath, sizeof outpath, "child.out");
    ck_tmp_name(errpath, sizeof errpath, "child.err");
    char *argv[] = {"x_help", (char *)scenario, "child", NULL};
    *code = ck_run_self(argv, opts, outpath, errpath, NULL);
    *out = ck_slurp(outpath);
    *err = ck_slurp(errpath);
    if (*out == NULL || *err == NULL) {
        FAIL("cannot read the child's output");
        exit(ck_finish());
    }
    const char *leaked = strstr(*out, "leaked ");
    if (leaked != NULL)
        ck_track(atoi(leaked + 7));
}

static void
help(void)
{
    int code;
    char *out, *err;
    run("help", "help=1", &code, &out, &err);
    int ok = 1;
    if (code != 0) {
        FAIL("with help=1 the child ended with %d, not 0: the program must go on", code);
        ok = 0;
    }
    if (ck_count_lines(err, "SHMGUARD_OPTIONS: key=value pairs separated by ':'", NULL) != 1) {
        FAIL("no (or more than one) heading line of help=1");
        ok = 0;
    }
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++) {
        int n = ck_lines_with(err, options[i], 2);
        if (n != 1) {
            FAIL("help=1: %d lines with \"%s\" and \"%s\", expected 1", n, options[i][0],
                 options[i][1]);
            ok = 0;
        }
    }
    if (ck_count_lines(err, NULL, "warning") != 0) {
        FAIL("help=1 gave a warning");
        ok = 0;
    }
    tracef("help", "ok code=%d", code);
    if (!ok)
        fprintf(stderr, "--- the child's stderr:\n%s--- end\n", err);
    free(out);
    free(err);
}

static void
comma(void)
{
    int code;
    char *out, *err;
    run("comma", "verbosity=1,exitcode=3", &code, &out, &err);
    int ok = 1;
    /* the leak is reported, but exitcode=3 was not applied */
    if (code != 0) {
        FAIL("with \"verbosity=1,exitcode=3\" the child ended with %d, expected 0", code);
        ok = 0;
    }
    if (ck_count_lines(err, "warning: SHMGUARD_OPTIONS: ", NULL) != 1 ||
        ck_count_lines(err, NULL,
                       "pairs are separated by ':' (',' separates the entries of fault=)") != 1) {
        FAIL("no single warning that says pairs are separated by ':'");
        ok = 0;
    }
    /* verbosity=1 was not applied either: no line about a call */
    if (ck_count_lines(err, NULL, "shmget(") != 0) {
        FAIL("a verbosity line was printed");
        ok = 0;
    }
    tracef("comma", "ok code=%d", code);
    if (!ok)
        fprintf(stderr, "--- the child's stderr:\n%s--- end\n", err);
    free(out);
    free(err);
}

int
main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "help") != 0 && strcmp(argv[1], "comma") != 0)) {
        fprintf(stderr, "usage: x_help help|comma [child]\n");
        return 2;
    }
    if (argc > 2 && strcmp(argv[2], "child") == 0)
        return child(strcmp(argv[1], "comma") == 0);
    ck_init();
    if (strcmp(argv[1], "help") == 0)
        help();
    else
        comma();
    return ck_finish();
}
