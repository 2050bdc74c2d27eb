/* x_stacks.c: call stacks (run with SHMGUARD_OPTIONS=stacks=1; the suite
 * compiles it with -g -O0).
 *
 * It runs itself again as "leaky" with log_path and verbosity=1 added to
 * its options. The child leaks a segment made in create_leaky_segment()
 * and an attachment made in attach_and_forget(), both called from main,
 * and creates a 0666 segment in make_wide_segment() (a wide-mode finding
 * of the audit policy). Checked here, from the child's stderr and log:
 * - right under each leak line, "==PID== shmguard:     at FUNCTION
 *   (...x_stacks.c:LINE:COL)" naming the function and the line of its
 *   call, then "at main (...)";
 * - under the "policy: wide-mode:" line, "at make_wide_segment (...)";
 * - in the log, the exit event's leak objects carry
 *   "stack":["create_leaky_segment (...x_stacks.c:LINE:...)","main (...)",...]
 *   (and attach_and_forget for the attachment), the finding carries
 *   "stack":["make_wide_segment (...)",...]. */
#include "check.h"

#define PAGE 4096UL

/* ------------------------------------------------------------ the child */

static int segment_line, attachment_line, wide_line;

static __attribute__((noinline)) int
create_leaky_segment(void)
{
    segment_line = __LINE__ + 1;
    int id = shmget(IPC_PRIVATE, 3 * PAGE, IPC_CREAT | 0600);
    return id;
}

static __attribute__((noinline)) void *
attach_and_forget(int id)
{
    attachment_line = __LINE__ + 1;
    void *p = shmat(id, NULL, 0);
    return p;
}

static __attribute__((noinline)) int
make_wide_segment(void)
{
    wide_line = __LINE__ + 1;
    int id = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0666);
    return id;
}

/* The rest of the child, after main made the leaks (main calls the two
 * functions itself, so that main is the frame right below them). Prints
 * what the parent needs as "KEY VALUE" lines. */
static int
leaky_rest(int id, int marked, void *p)
{
    if (id < 0) {
        FAIL("shmget: %s", ck_errname(errno));
        return 1;
    }
    /* removed by the parent; here only if this child dies on a signal */
    ck_track_crash_only(id);
    CHECK(p != (void *)-1);
    /* marked, so that only the attachment is a leak; the kernel destroys
     * the segment when this process is gone */
    CHECK_EQ(raw_shmctl(marked, IPC_RMID, NULL), 0);
    int wide = make_wide_segment();
    CHECK(wide >= 0);
    ck_track(wide);
    CHECK_EQ(shmctl(wide, IPC_RMID, NULL), 0);
    printf("pid %d\nsegment %d\nsegment_line %d\nattachment %d\nattachment_line %d\n"
           "wide_line %d\n",
           (int)getpid(), id, segment_line, marked, attachment_line, wide_line);
    tracef("leaky", "ok");
    return ck_finish();
}

/* ----------------------------------------------------------- the parent */

/* Line I of LINES, "" past the end. */
static const char *
line_at(char **lines, int n, int i)
{
    return i >= 0 && i < n ? lines[i] : "";
}

/* Splits TEXT (modified) into at most MAX lines. */
static int
split_lines(char *text, char **lines, int max)
{
    int n = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l != NULL && n < max;
         l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    return n;
}

/* LINE is "PREFIX    at FUNC (...x_stacks.c:LINENO:COL)" (LINENO 0: any). */
static int
is_frame(const char *line, const char *prefix, const char *func, int lineno)
{
    char want[128], where[48];
    snprintf(want, sizeof want, "%s    at %s (", prefix, func);
    if (strncmp(line, want, strlen(want)) != 0)
        return 0;
    size_t len = strlen(line);
    if (len == 0 || line[len - 1] != ')')
        return 0;
    if (lineno == 0)
        return strstr(line, "x_stacks.c:") != NULL;
    snprintf(where, sizeof where, "x_stacks.c:%d:", lineno);
    return strstr(line, where) != NULL;
}

/* The line index where "PREFIX" HEAD "shmid=ID" (ID then a non-digit)
 * begins, or -1. */
static int
find_leak(char **lines, int n, const char *prefix, const char *kind, long id)
{
    char want[160];
    snprintf(want, sizeof want, "%sleak: %s shmid=%ld", prefix, kind, id);
    size_t len = strlen(want);
    for (int i = 0; i < n; i++)
        if (strncmp(lines[i], want, len) == 0 && (lines[i][len] < '0' || lines[i][len] > '9'))
            return i;
    return -1;
}

/* In the exit event of LOG, the object of KIND with shmid ID has a stack
 * starting with FUNC at x_stacks.c:LINENO, then main. */
static int
logged_stack(const char *log, const char *kind, long id, const char *func, int lineno)
{
    const char *exit_ev = strstr(log, "\"event\":\"exit\"");
    if (exit_ev == NULL)
        return 0;
    char want[160];
    snprintf(want, sizeof want, "{\"kind\":\"%s\",\"shmid\":%ld,", kind, id);
    const char *obj = strstr(exit_ev, want);
    if (obj == NULL)
        return 0;
    const char *end = strchr(obj, '}');
    size_t len = end == NULL ? strlen(obj) : (size_t)(end - obj);
    char *copy = strndup(obj, len);
    char stack[128], where[48], then_main[32];
    snprintf(stack, sizeof stack, "\"stack\":[\"%s (", func);
    snprintf(where, sizeof where, "x_stacks.c:%d:", lineno);
    snprintf(then_main, sizeof then_main, "\",\"main (");
    const char *s = copy == NULL ? NULL : strstr(copy, stack);
    int ok = s != NULL && strstr(s, where) != NULL && strstr(s, then_main) != NULL;
    free(copy);
    return ok;
}

/* The log line of the wide-mode finding has a stack from make_wide_segment. */
static int
logged_finding_stack(const char *log, int lineno)
{
    char where[48];
    snprintf(where, sizeof where, "x_stacks.c:%d:", lineno);
    for (const char *line = log; line != NULL && *line != '\0';) {
        const char *nl = strchr(line, '\n');
        size_t len = nl == NULL ? strlen(line) : (size_t)(nl - line);
        char *copy = strndup(line, len);
        if (copy != NULL && strstr(copy, "\"event\":\"finding\"") != NULL &&
            strstr(copy, "\"rule\":\"wide-mode\"") != NULL) {
            const char *s = strstr(copy, "\"stack\":[\"make_wide_segment (");
            int ok = s != NULL && strstr(s, where) != NULL;
            free(copy);
            return ok;
        }
        free(copy);
        line = nl == NULL ? NULL : nl + 1;
    }
    return 0;
}

static int
parent_main(char *self)
{
    char opts[512], extra[300], out[256], err[256], logfile[300];
    snprintf(extra, sizeof extra, "log_path=%s/l.%%p.jsonl:verbosity=1", ck_tmpdir());
    ck_options_plus(opts, sizeof opts, extra);
    ck_tmp_name(out, sizeof out, "child.out");
    ck_tmp_name(err, sizeof err, "child.err");
    char *argv[] = {self, "leaky", NULL};
    pid_t pid = 0;
    int code = ck_run_self(argv, opts, out, err, &pid);
    char *outtext = ck_slurp(out), *errtext = ck_slurp(err);
    if (outtext == NULL || errtext == NULL) {
        FAIL("cannot read the child's output");
        return ck_finish();
    }
    long seg = ck_field(outtext, "segment");
    if (seg >= 0)
        ck_track((int)seg); /* leaked on purpose: ours to remove */
    long att = ck_field(outtext, "attachment");
    int seg_line = (int)ck_field(outtext, "segment_line");
    int att_line = (int)ck_field(outtext, "attachment_line");
    int w_line = (int)ck_field(outtext, "wide_line");
    CHECK_EQ(code, 0);
    CHECK_EQ(ck_field(outtext, "pid"), pid);
    CHECK(seg >= 0 && att >= 0 && seg_line > 0 && att_line > 0 && w_line > 0);

    char *copy = strdup(errtext);
    char *lines[256];
    int n = copy == NULL ? 0 : split_lines(copy, lines, 256);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "==%d== shmguard: ", (int)pid);

    int i = find_leak(lines, n, prefix, "segment", seg);
    int seg_frame = i >= 0 && is_frame(line_at(lines, n, i + 1), prefix, "create_leaky_segment",
                                       seg_line);
    int seg_main = i >= 0 && is_frame(line_at(lines, n, i + 2), prefix, "main", 0);
    if (!seg_frame || !seg_main)
        FAIL("no \"%s    at create_leaky_segment (...x_stacks.c:%d:...)\" then \"at main\" "
             "right under the leak line of segment %ld",
             prefix, seg_line, seg);
    tracef("report_segment_stack", "ok found=%d function=%d main=%d", i >= 0, seg_frame,
           seg_main);

    i = find_leak(lines, n, prefix, "attachment", att);
    int att_frame =
        i >= 0 && is_frame(line_at(lines, n, i + 1), prefix, "attach_and_forget", att_line);
    int att_main = i >= 0 && is_frame(line_at(lines, n, i + 2), prefix, "main", 0);
    if (!att_frame || !att_main)
        FAIL("no \"%s    at attach_and_forget (...x_stacks.c:%d:...)\" then \"at main\" right "
             "under the leak line of the attachment of shmid %ld",
             prefix, att_line, att);
    tracef("report_attachment_stack", "ok found=%d function=%d main=%d", i >= 0, att_frame,
           att_main);

    int finding = -1;
    char policy[96];
    snprintf(policy, sizeof policy, "%spolicy: wide-mode: ", prefix);
    for (int k = 0; k < n && finding < 0; k++)
        if (strncmp(lines[k], policy, strlen(policy)) == 0)
            finding = k;
    int w_frame = finding >= 0 &&
                  is_frame(line_at(lines, n, finding + 1), prefix, "make_wide_segment", w_line);
    if (!w_frame)
        FAIL("no \"%s    at make_wide_segment (...x_stacks.c:%d:...)\" under the policy line",
             prefix, w_line);
    tracef("finding_stack", "ok found=%d function=%d", finding >= 0, w_frame);

    snprintf(logfile, sizeof logfile, "%s/l.%d.jsonl", ck_tmpdir(), (int)pid);
    char *log = ck_slurp(logfile);
    if (log == NULL)
        log = strdup("");
    int log_seg = logged_stack(log, "segment", seg, "create_leaky_segment", seg_line);
    int log_att = logged_stack(log, "attachment", att, "attach_and_forget", att_line);
    int log_finding = logged_finding_stack(log, w_line);
    if (!log_seg || !log_att || !log_finding)
        FAIL("%s: stacks in the exit event: segment %d, attachment %d; in the finding %d",
             logfile, log_seg, log_att, log_finding);
    tracef("log_stacks", "ok segment=%d attachment=%d finding=%d", log_seg, log_att,
           log_finding);

    if (ck_failures != 0)
        fprintf(stderr, "--- the child's stderr:\n%s--- end\n", errtext);
    free(log);
    free(copy);
    free(outtext);
    free(errtext);
    return ck_finish();
}

int
main(int argc, char **argv)
{
    ck_init();
    if (argc == 2 && strcmp(argv[1], "leaky") == 0) {
        int id = create_leaky_segment();
        int marked = ck_fixture(PAGE, 0600);
        void *p = attach_and_forget(marked);
        return leaky_rest(id, marked, p);
    }
    if (argc != 1) {
        fprintf(stderr, "usage: x_stacks\n");
        return 2;
    }
    return parent_main(argv[0]);
}
