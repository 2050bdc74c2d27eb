/*
 * genlog DIR FILES EVENTS: writes FILES synthetic audit logs of EVENTS events
 * each into DIR (shmguard.PID.jsonl), valid per docs/log-schema.md (schema
 * version 1), for timing `shmguard report` on a large log set.
 *
 * Each file is one process: a start event, then repeated cycles of the
 * calls of a program that uses shared memory well -- shmget (created),
 * shmat, shmctl(IPC_STAT), shmdt, shmctl(IPC_RMID), ftok -- with one failed
 * shmget (EINVAL with its detail) every 100 cycles and, in every tenth
 * file, a policy finding (wide-mode, for a segment it then removes); then
 * an exit event. Every tenth file also leaks
 * one segment (never IPC_RMID, listed in its exit event) with an shmid far
 * above what the kernel hands out, so that the report names a leak without
 * matching a live segment. Half the processes are children of another
 * one. The event count per file is exact: EVENTS >= 3.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what)
{
    fprintf(stderr, "genlog: %s: %s\n", what, strerror(errno));
    exit(2);
}

struct proc {
    FILE *f;
    unsigned pid, ppid;
    uint64_t ts;
    long left; /* events still to write before the exit event */
};

static void head(struct proc *p, const char *event)
{
    p->ts += 1500;
    fprintf(p->f, "{\"v\":1,\"event\":\"%s\",\"pid\":%u,\"ppid\":%u,\"tid\":%u,\"ts_ns\":%" PRIu64,
            event, p->pid, p->ppid, p->pid, p->ts);
    p->left--;
}

static void call_int(struct proc *p, const char *call, const char *args, long ret, const char *extra)
{
    head(p, "call");
    fprintf(p->f, ",\"call\":\"%s\",\"args\":{%s},\"ret\":%ld,\"errno\":null%s}\n", call, args, ret,
            extra);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: genlog DIR FILES EVENTS\n");
        return 2;
    }
    const char *dir = argv[1];
    long files = atol(argv[2]), events = atol(argv[3]);
    if (files < 1 || events < 3) {
        fprintf(stderr, "genlog: FILES >= 1 and EVENTS >= 3\n");
        return 2;
    }
    static char buf[1 << 20];
    for (long i = 0; i < files; i++) {
        struct proc p = {0};
        p.pid = 3000000 + (unsigned)i;
        p.ppid = (i % 2 && i > 0) ? p.pid - 1 : 2999999;
        p.ts = 1795851315000000000ULL + (uint64_t)i * 1000000000ULL;
        p.left = events;
        char path[4096];
        snprintf(path, sizeof path, "%s/shmguard.%u.jsonl", dir, p.pid);
        p.f = fopen(path, "w");
        if (!p.f)
            die(path);
        setvbuf(p.f, buf, _IOFBF, sizeof buf);
        int leaks = i % 10 == 0;
        int leaked_shmid = 2000000000 + (int)i;
        uint64_t addr = 0x7f12a4c00000ULL + ((uint64_t)i << 24);

        head(&p, "start");
        fprintf(p.f,
                ",\"argv\":[\"./bench-app\",\"--worker\",\"%ld\"],\"exe\":\"/usr/local/bin/bench-app\","
                "\"uid\":1000,\"euid\":1000,\"ipc_ns\":4026531839,\"forked\":%s}\n",
                i, (i % 2 && i > 0) ? "true" : "false");
        if (leaks && p.left > 1) {
            char args[128];
            snprintf(args, sizeof args, "\"key\":\"0x00000000\",\"size\":65536,\"shmflg\":\"IPC_CREAT|0600\"");
            call_int(&p, "shmget", args, leaked_shmid, ",\"created\":true");
        }
        if (i % 10 == 5 && p.left > 3) {
            head(&p, "finding");
            fprintf(p.f, ",\"rule\":\"wide-mode\",\"call\":\"shmget\",\"refused\":false,"
                         "\"detail\":\"mode 0666 gives group and others access to the segment\"}\n");
            char args[128];
            snprintf(args, sizeof args, "\"key\":\"0x00000000\",\"size\":4096,\"shmflg\":\"IPC_CREAT|0666\"");
            call_int(&p, "shmget", args, 1000000 + (int)i, ",\"created\":true");
            snprintf(args, sizeof args, "\"shmid\":%d,\"cmd\":\"IPC_RMID\",\"buf\":null", 1000000 + (int)i);
            call_int(&p, "shmctl", args, 0, "");
        }
        long cycle = 0;
        int shmid = 32768 * (int)(i % 1000);
        /* Whole cycles of 6 events while they fit before the exit event,
         * then ftok calls for the remainder: every segment created in a
         * cycle is removed and every attachment detached. */
        while (p.left > 1) {
            char args[256], extra[64];
            if (p.left - 1 < 6) {
                snprintf(args, sizeof args, "\"path\":\"/var/lib/bench-app\",\"id\":%ld", cycle % 256);
                call_int(&p, "ftok", args, 0x4101abcd, ",\"key\":\"0x4101abcd\"");
                cycle++;
                continue;
            }
            shmid++;
            snprintf(args, sizeof args, "\"key\":\"0x00000000\",\"size\":4096,\"shmflg\":\"IPC_CREAT|0600\"");
            call_int(&p, "shmget", args, shmid, ",\"created\":true");
            head(&p, "call");
            fprintf(p.f,
                    ",\"call\":\"shmat\",\"args\":{\"shmid\":%d,\"shmaddr\":null,\"shmflg\":\"0\"},"
                    "\"ret\":\"0x%" PRIx64 "\",\"errno\":null,\"size\":4096}\n",
                    shmid, addr);
            snprintf(args, sizeof args, "\"shmid\":%d,\"cmd\":\"IPC_STAT\",\"buf\":\"0x7ffd5c3a1e40\"", shmid);
            call_int(&p, "shmctl", args, 0, "");
            snprintf(args, sizeof args, "\"shmaddr\":\"0x%" PRIx64 "\"", addr);
            snprintf(extra, sizeof extra, ",\"shmid\":%d", shmid);
            call_int(&p, "shmdt", args, 0, extra);
            snprintf(args, sizeof args, "\"shmid\":%d,\"cmd\":\"IPC_RMID\",\"buf\":null", shmid);
            call_int(&p, "shmctl", args, 0, "");
            if (cycle % 100 == 99) {
                head(&p, "call");
                fprintf(p.f,
                        ",\"call\":\"shmget\",\"args\":{\"key\":\"0x00000000\",\"size\":0,"
                        "\"shmflg\":\"0600\"},\"ret\":-1,\"errno\":\"EINVAL\",\"detail\":\"size 0 is "
                        "below SHMMIN (1 byte): a new segment needs at least one byte (size 0 "
                        "only opens an existing one)\"}\n");
            } else {
                snprintf(args, sizeof args, "\"path\":\"/var/lib/bench-app\",\"id\":%ld", cycle % 256);
                call_int(&p, "ftok", args, 0x4101abcd, ",\"key\":\"0x4101abcd\"");
            }
            cycle++;
        }
        head(&p, "exit");
        fprintf(p.f, ",\"leaks\":[");
        if (leaks)
            fprintf(p.f, "{\"kind\":\"segment\",\"shmid\":%d,\"key\":\"0x00000000\",\"size\":65536,"
                         "\"mode\":\"0600\"}", leaked_shmid);
        fprintf(p.f, "],\"notes\":[]}\n");
        if (fclose(p.f) != 0)
            die(path);
    }
    return 0;
}
