/* x_stress_exec.c SCENARIO: the audit log across exec (stress.h).
 *
 *   exec_log        with log_path, a child makes calls and then execs this
 *                   program, which makes more: no call event may be lost.
 *   exec_log_child  (internal) the process exec_log runs with log_path.
 *   exec_log_image  (internal) the image that child execs. */
#include "stress.h"

/* With log_path: a child attaches and detaches (4 calls), then execs this
 * program ("exec_log_image"), which makes 2 more. The pid keeps one log
 * name across exec; all 6 events must be somewhere. */
static int
scenario_exec_log_child(void)
{
    int id = ck_shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
    CHECK(id >= 0);
    pid_t pid = ck_fork();
    if (pid == 0) {
        char *p = shmat(id, NULL, 0);
        if (p == (char *)-1 || shmdt(p) != 0)
            _exit(2);
        int own = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
        if (own < 0)
            _exit(3);
        if (shmctl(own, IPC_RMID, NULL) != 0) {
            raw_shmctl(own, IPC_RMID, NULL);
            _exit(4);
        }
        char *argv[] = {(char *)stress_program, "exec_log_image", NULL};
        execv(ck_self_exe(), argv);
        _exit(5);
    }
    int code = wait_child(pid, "calls, then execs");
    CHECK_EQ(code, 0);
    printf("exec_child %d\n", (int)pid);
    CHECK_EQ(shmctl(id, IPC_RMID, NULL), 0);
    tracef("exec_log_child", "ok code=%d", code);
    return ck_finish();
}

static int
scenario_exec_log_image(void)
{
    int own = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
    if (own < 0)
        return 6;
    if (shmctl(own, IPC_RMID, NULL) != 0) {
        raw_shmctl(own, IPC_RMID, NULL);
        return 7;
    }
    return 0;
}

static int
scenario_exec_log(void)
{
    char *out;
    pid_t pid;
    run_logged("exec_log_child", &out, &pid);
    struct ck_log *logs;
    int n = ck_logs_read(ck_tmpdir(), "l.", &logs);
    int child = 0;
    const char *at = strstr(out, "exec_child ");
    if (at == NULL || sscanf(at, "exec_child %d", &child) != 1) {
        FAIL("no 'exec_child' line from the child");
    } else {
        long before[4] = {1, 1, 1, 1}, after[4] = {1, 0, 0, 1};
        long want = 0, got = 0;
        for (int c = 0; c < 4; c++)
            want += before[c] + after[c];
        for (int i = 0; i < n; i++) {
            if (logs[i].pid != child)
                continue;
            /* whatever form a log across exec takes, every line is JSON */
            if (logs[i].bad != 0)
                FAIL("log %s: %d lines are not JSON, first: %s", logs[i].name, logs[i].bad,
                     logs[i].bad_line);
            got += ck_log_calls(&logs[i]);
        }
        if (got != want)
            FAIL("pid %d made %ld calls (4 before exec, 2 after), its logs hold %ld call "
                 "events: the image after exec reopened the log with O_TRUNC and lost the "
                 "events of the image before it",
                 child, want, got);
        tracef("exec_log", "ok events=%ld of %ld", got, want);
    }
    free(logs);
    free(out);
    return ck_finish();
}

int
main(int argc, char **argv)
{
    static const struct stress_scenario scenarios[] = {
        {"exec_log_image", scenario_exec_log_image, 1},
        {"exec_log", scenario_exec_log, 0},
        {"exec_log_child", scenario_exec_log_child, 0},
        {NULL, NULL, 0},
    };
    return stress_main(argc, argv, "x_stress_exec", scenarios);
}
