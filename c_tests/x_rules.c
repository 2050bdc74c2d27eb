/* x_rules.c strict|audit: a call that breaks several policy rules is
 * reported for every one of them, not only the first.
 *
 * shmget(KEY, size, IPC_CREAT|0666) breaks key-without-excl (a fixed key
 * without IPC_EXCL) and wide-mode (mode 0666). The program runs itself
 * again ("SCENARIO child") with verbosity=1 and log_path added to its
 * options; the child makes that call (under strict it must fail with EACCES
 * and shmguard_last_error() must name both rules; under audit it gives what
 * the raw call gives), and the parent checks what was reported:
 *   audit   one "==PID== shmguard: policy: RULE: " line on stderr and one
 *           finding with "refused":false in the log, per rule;
 *   strict  one EACCES line on stderr that names both rules, and one
 *           finding with "refused":true in the log per rule. */
#include "check.h"

#define PAGE 4096UL

static int strict;

static const char *const rules[] = {"key-without-excl", "wide-mode"};
#define NRULES (int)(sizeof rules / sizeof rules[0])

/* The call that breaks both rules, and what it must give. */
static void
child(void)
{
    key_t k = ck_key(1, 0), k_raw = ck_key(2, 0);
    struct ck_res lib = RES(ck_shmget(k, PAGE, IPC_CREAT | 0666));
    struct ck_res raw = RES(ck_raw_shmget(k_raw, PAGE, IPC_CREAT | 0666));
    if (strict) {
        if (WANT("two_rules_refused", lib, EACCES)) {
            const char *e = ck_last_error();
            for (int r = 0; r < NRULES; r++)
                if (strstr(e, rules[r]) == NULL)
                    FAIL("last_error \"%s\" does not name the rule %s", e, rules[r]);
        }
        /* refused before the kernel: the key stays free */
        WANT("two_rules_key_free", RES(raw_shmget(k, 0, 0)), ENOENT);
    } else {
        SAME("two_rules_audit", lib, raw);
    }
    trace("two_rules", lib);
}

static void
reports(const char *scenario)
{
    char opts[512], extra[256], out[256], err[256];
    snprintf(extra, sizeof extra, "log_path=%s/l.%%p.jsonl:verbosity=1", ck_tmpdir());
    ck_options_plus(opts, sizeof opts, extra);
    ck_tmp_name(out, sizeof out, "child.out");
    ck_tmp_name(err, sizeof err, "child.err");
    char *argv[] = {"x_rules", (char *)scenario, "child", NULL};
    pid_t pid = 0;
    int code = ck_run_self(argv, opts, out, err, &pid);
    char *errtext = ck_slurp(err);
    char logfile[300];
    snprintf(logfile, sizeof logfile, "%s/l.%d.jsonl", ck_tmpdir(), (int)pid);
    char *log = ck_slurp(logfile);
    if (errtext == NULL || log == NULL) {
        FAIL("cannot read the child's stderr or its log %s", logfile);
        free(errtext);
        free(log);
        return;
    }
    int ok = code == 0;
    if (code != 0)
        FAIL("the child with %s ended with %d", opts, code);
    for (int r = 0; r < NRULES; r++) {
        char field[64], prefix[64];
        snprintf(field, sizeof field, "\"rule\":\"%s\"", rules[r]);
        const char *in_log[] = {"\"event\":\"finding\"", field,
                                strict ? "\"refused\":true" : "\"refused\":false"};
        int logged = ck_lines_with(log, in_log, 3);
        int printed;
        if (strict) {
            const char *on_stderr[] = {" shmguard: ", " EACCES", rules[0], rules[1]};
            printed = ck_lines_with(errtext, on_stderr, 4);
        } else {
            snprintf(prefix, sizeof prefix, "policy: %s: ", rules[r]);
            printed = ck_count_lines(errtext, prefix, NULL);
        }
        if (logged != 1 || printed != 1) {
            FAIL("rule %s: %d findings in the log, %d lines on stderr; expected 1 and 1",
                 rules[r], logged, printed);
            ok = 0;
        }
        tracef("reported", "ok rule=%s logged=%d printed=%d", rules[r], logged, printed);
    }
    const char *any[] = {"\"event\":\"finding\""};
    if (ck_lines_with(log, any, 1) != NRULES) {
        FAIL("%d findings in the log, expected %d", ck_lines_with(log, any, 1), NRULES);
        ok = 0;
    }
    if (!ok)
        fprintf(stderr, "--- the child's stderr:\n%s--- the log:\n%s--- end\n", errtext, log);
    free(errtext);
    free(log);
}

int
main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "strict") != 0 && strcmp(argv[1], "audit") != 0)) {
        fprintf(stderr, "usage: x_rules strict|audit [child]\n");
        return 2;
    }
    ck_init();
    strict = strcmp(argv[1], "strict") == 0;
    if (argc > 2 && strcmp(argv[2], "child") == 0)
        child();
    else
        reports(argv[1]);
    return ck_finish();
}
