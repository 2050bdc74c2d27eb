/*
 * shm_vs_pipe: moves 1 GiB from a parent process to its child twice --
 * through a System V shared-memory ring and through a pipe -- and prints
 * both throughputs. Linked with shmguard (-lshmguard), which keeps the
 * books of the segment and would report it at exit had it leaked.
 *
 *   cc -std=c11 -O2 -pthread -Iinclude examples/shm_vs_pipe.c \
 *      -Ltarget/release -lshmguard -Wl,-rpath,$PWD/target/release -o shm_vs_pipe
 *   ./shm_vs_pipe [MiB]          (default 1024)
 *
 * Both ways copy every byte twice, as a real hand-over does: the producer
 * copies a 1 MiB chunk from its own buffer into the channel, the consumer
 * copies it out into its own buffer. The ring has 8 slots of 1 MiB; two
 * process-shared POSIX semaphores in the segment count the free and the
 * filled slots. The pipe is measured with its default capacity (64 KiB)
 * and grown to 1 MiB (F_SETPIPE_SZ). Each chunk carries its sequence
 * number at both ends and the consumer checks it, and compares the last
 * chunk with the expected bytes in full; a wrong byte fails the program.
 * The timer starts when the consumer is ready and stops when it has
 * checked the last chunk and exited.
 *
 * The segment is marked IPC_RMID as soon as it is attached, so it goes
 * away with the last detach even if a process dies; the program checks
 * that it is gone at the end. Exit status 0 on success.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shmguard.h>

enum { CHUNK = 1 << 20, SLOTS = 8 };

struct ring {
    sem_t ready; /* the consumer is set up */
    sem_t empty; /* free slots */
    sem_t full;  /* filled slots */
    _Alignas(4096) unsigned char slot[SLOTS][CHUNK];
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    const char *why = shmguard_last_error();
    fprintf(stderr, "shm_vs_pipe: %s: %s%s%s\n", what, strerror(errno), why ? " -- " : "",
            why ? why : "");
    exit(1);
}

/* The chunk the producer sends as number `seq`: a fixed pattern with the
 * sequence number in its first and last 8 bytes. */
static void fill_pattern(unsigned char *buf)
{
    for (size_t i = 0; i < CHUNK; i++)
        buf[i] = (unsigned char)(i * 131 + 7);
}

static void stamp(unsigned char *buf, uint64_t seq)
{
    memcpy(buf, &seq, sizeof seq);
    memcpy(buf + CHUNK - sizeof seq, &seq, sizeof seq);
}

/* 0 if buf carries sequence number seq at both ends. */
static int check_stamp(const unsigned char *buf, uint64_t seq)
{
    uint64_t head, tail;
    memcpy(&head, buf, sizeof head);
    memcpy(&tail, buf + CHUNK - sizeof tail, sizeof tail);
    return head == seq && tail == seq ? 0 : -1;
}

/* 0 if buf is exactly chunk number seq. */
static int check_full(const unsigned char *buf, uint64_t seq)
{
    static unsigned char want[CHUNK];
    fill_pattern(want);
    stamp(want, seq);
    return memcmp(buf, want, CHUNK) == 0 ? 0 : -1;
}

static unsigned char *buffer(void)
{
    unsigned char *b = aligned_alloc(4096, CHUNK);
    if (!b)
        die("aligned_alloc");
    memset(b, 0, CHUNK); /* fault the pages in before timing */
    return b;
}

/* Waits for the child; its status must be 0. */
static void reap(pid_t pid, const char *what)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            die("waitpid");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "shm_vs_pipe: %s: the consumer failed (status 0x%x)\n", what, st);
        exit(1);
    }
}

/* ----------------------------------------------------- shared memory */

static double through_shm(uint64_t chunks, int *shmid_out)
{
    int id = shmget(IPC_PRIVATE, sizeof(struct ring), IPC_CREAT | 0600);
    if (id < 0)
        die("shmget");
    *shmid_out = id;
    struct ring *ring = shmat(id, NULL, 0);
    if (ring == (void *)-1) {
        int e = errno;
        shmctl(id, IPC_RMID, NULL);
        errno = e;
        die("shmat");
    }
    /* From here the segment goes away with its last detach. */
    if (shmctl(id, IPC_RMID, NULL) != 0)
        die("shmctl(IPC_RMID)");
    memset(ring->slot, 0, sizeof ring->slot);
    if (sem_init(&ring->ready, 1, 0) || sem_init(&ring->empty, 1, SLOTS) ||
        sem_init(&ring->full, 1, 0))
        die("sem_init");

    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        /* consumer: it inherited the attachment */
        unsigned char *dst = buffer();
        int bad = 0;
        sem_post(&ring->ready);
        for (uint64_t seq = 0; seq < chunks; seq++) {
            while (sem_wait(&ring->full) != 0)
                if (errno != EINTR)
                    die("sem_wait");
            memcpy(dst, ring->slot[seq % SLOTS], CHUNK);
            sem_post(&ring->empty);
            if (check_stamp(dst, seq) != 0)
                bad = 1;
        }
        if (check_full(dst, chunks - 1) != 0)
            bad = 1;
        if (shmdt(ring) != 0)
            die("shmdt (consumer)");
        exit(bad);
    }
    unsigned char *src = buffer();
    fill_pattern(src);
    while (sem_wait(&ring->ready) != 0)
        if (errno != EINTR)
            die("sem_wait");
    uint64_t t0 = now_ns();
    for (uint64_t seq = 0; seq < chunks; seq++) {
        stamp(src, seq);
        while (sem_wait(&ring->empty) != 0)
            if (errno != EINTR)
                die("sem_wait");
        memcpy(ring->slot[seq % SLOTS], src, CHUNK);
        sem_post(&ring->full);
    }
    reap(pid, "shared memory");
    uint64_t t1 = now_ns();
    sem_destroy(&ring->ready);
    sem_destroy(&ring->empty);
    sem_destroy(&ring->full);
    if (shmdt(ring) != 0)
        die("shmdt");
    free(src);
    return (double)(t1 - t0) / 1e9;
}

/* --------------------------------------------------------------- pipe */

static void write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("write");
        p += w;
        n -= (size_t)w;
    }
}

static int read_all(int fd, unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* capacity 0: the pipe's default. Returns seconds; *capacity_out is what
 * the kernel granted. */
static double through_pipe(uint64_t chunks, int capacity, int *capacity_out)
{
    int data[2], ready[2];
    if (pipe(data) != 0 || pipe(ready) != 0)
        die("pipe");
    if (capacity > 0 && fcntl(data[1], F_SETPIPE_SZ, capacity) < 0)
        die("fcntl(F_SETPIPE_SZ)");
    *capacity_out = fcntl(data[1], F_GETPIPE_SZ);
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        close(data[1]);
        close(ready[0]);
        unsigned char *dst = buffer();
        int bad = 0;
        write_all(ready[1], (const unsigned char *)"r", 1);
        for (uint64_t seq = 0; seq < chunks; seq++) {
            if (read_all(data[0], dst, CHUNK) != 0) {
                bad = 1;
                break;
            }
            if (check_stamp(dst, seq) != 0)
                bad = 1;
        }
        if (!bad && check_full(dst, chunks - 1) != 0)
            bad = 1;
        exit(bad);
    }
    close(data[0]);
    close(ready[1]);
    unsigned char *src = buffer();
    fill_pattern(src);
    unsigned char c;
    if (read_all(ready[0], &c, 1) != 0)
        die("read (consumer not ready)");
    uint64_t t0 = now_ns();
    for (uint64_t seq = 0; seq < chunks; seq++) {
        stamp(src, seq);
        write_all(data[1], src, CHUNK);
    }
    close(data[1]);
    reap(pid, "pipe");
    uint64_t t1 = now_ns();
    close(ready[0]);
    free(src);
    return (double)(t1 - t0) / 1e9;
}

int main(int argc, char **argv)
{
    long mib = argc > 1 ? atol(argv[1]) : 1024;
    if (mib < 1) {
        fprintf(stderr, "usage: shm_vs_pipe [MiB]\n");
        return 2;
    }
    uint64_t chunks = (uint64_t)mib; /* one chunk is 1 MiB */
    double gib = (double)mib / 1024.0;
    printf("shm_vs_pipe: %ld MiB from parent to child, 1 MiB chunks, shmguard %s\n", mib,
           shmguard_version());
    fflush(stdout); /* before fork: the children must not print it again */

    int shmid = -1, cap_default, cap_big;
    double t_shm = through_shm(chunks, &shmid);
    double t_pipe = through_pipe(chunks, 0, &cap_default);
    double t_pipe_big = through_pipe(chunks, CHUNK, &cap_big);

    printf("  shared memory (8 x 1 MiB ring, pshared semaphores): %7.3f s  %6.2f GiB/s\n", t_shm,
           gib / t_shm);
    printf("  pipe (%4d KiB capacity)                           : %7.3f s  %6.2f GiB/s\n",
           cap_default / 1024, t_pipe, gib / t_pipe);
    printf("  pipe (%4d KiB capacity)                           : %7.3f s  %6.2f GiB/s\n",
           cap_big / 1024, t_pipe_big, gib / t_pipe_big);
    printf("  shared memory / pipe: %.2fx (default pipe), %.2fx (1 MiB pipe)\n", t_pipe / t_shm,
           t_pipe_big / t_shm);

    /* Both processes detached and the segment was marked: it must be gone. */
    struct shmid_ds ds;
    if (shmctl(shmid, IPC_STAT, &ds) == 0) {
        fprintf(stderr, "shm_vs_pipe: segment shmid=%d is still in the kernel\n", shmid);
        return 1;
    }
    printf("  segment shmid=%d removed; leaks shmguard would report: %zu\n", shmid,
           shmguard_leak_count());
    return 0;
}
