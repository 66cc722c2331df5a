/* Shared file mappings (mmap MAP_SHARED of files) between processes, and
 * their coherence with read()/write(), msync, munmap, ftruncate, mprotect
 * and mremap. Run as `mapshared DIR`: files are made in DIR. The output is
 * compared with the same program run natively. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[512];
static long pg;

static void die(const char *what) {
    printf("FAIL %s: %s\n", what, strerror(errno));
    fflush(stdout);
    exit(1);
}

static char *path(const char *name) {
    static char buf[4][600];
    static int n;
    char *b = buf[n++ % 4];
    snprintf(b, 600, "%s/%s", dir, name);
    return b;
}

static int make(const char *name, size_t size) {
    unlink(path(name));
    int fd = open(path(name), O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0) die("open");
    if (ftruncate(fd, size)) die("ftruncate");
    return fd;
}

static void *map(int fd, size_t len, int prot, off_t off) {
    void *p = mmap(NULL, len, prot, MAP_SHARED, fd, off);
    if (p == MAP_FAILED) die("mmap");
    return p;
}

static int wait_child(pid_t pid) {
    int st;
    if (waitpid(pid, &st, 0) != pid) die("waitpid");
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The start-up of LTP's test library (tst_test.c setup_ipc): a page in
 * /dev/shm, mapped shared, unlinked and closed, then fork; children write
 * their results into it. */
static void ltp_ipc(void) {
    char name[64];
    snprintf(name, sizeof name, "ltp_mapshared_%d", getpid());
    unlink(path(name));
    int fd = open(path(name), O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0) die("ltp open");
    if (chmod(path(name), 0666)) die("ltp chmod");
    if (ftruncate(fd, pg)) die("ltp ftruncate");
    struct results {
        int pass, fail, broken, warn;
        unsigned lib_pid;
        char msg[64];
    } *r = map(fd, pg, PROT_READ | PROT_WRITE, 0);
    if (unlink(path(name))) die("ltp unlink");
    if (close(fd)) die("ltp close");
    for (int i = 0; i < 3; i++) {
        pid_t pid = fork();
        if (pid < 0) die("fork");
        if (pid == 0) {
            __atomic_fetch_add(&r->pass, i + 1, __ATOMIC_SEQ_CST);
            if (i == 2) {
                r->fail = 7;
                strcpy(r->msg, "written by the third child");
            }
            _exit(0);
        }
        wait_child(pid);
    }
    printf("ltp ipc: pass=%d fail=%d broken=%d msg=%s\n", r->pass, r->fail, r->broken, r->msg);
    munmap(r, pg);
}

/* Parent and child share a mapping; the parent also reads with read(). */
static void parent_child(void) {
    int fd = make("pc", 2 * pg);
    char *m = map(fd, 2 * pg, PROT_READ | PROT_WRITE, 0);
    strcpy(m, "parent was here");
    pid_t pid = fork();
    if (pid == 0) {
        char got[32] = {0};
        memcpy(got, m, 15);
        strcpy(m + pg + 10, "child wrote page 2");
        strcpy(m, got[0] == 'p' ? "child saw parent" : "child saw nothing");
        _exit(0);
    }
    wait_child(pid);
    char buf[32] = {0};
    if (pread(fd, buf, 18, pg + 10) != 18) die("pread");
    printf("parent/child: map=\"%s\" map2=\"%s\" read=\"%s\"\n", m, m + pg + 10, buf);
    munmap(m, 2 * pg);
    close(fd);
}

/* Two children open and map the file on their own; they take turns
 * through pipes. */
static void unrelated(void) {
    int fd = make("un", pg);
    close(fd);
    int ab[2], ba[2];
    if (pipe(ab) || pipe(ba)) die("pipe");
    pid_t a = fork();
    if (a == 0) {
        int f = open(path("un"), O_RDWR);
        if (f < 0) _exit(2);
        char *m = map(f, pg, PROT_READ | PROT_WRITE, 0);
        close(f);
        strcpy(m + 100, "from A");
        char c = 'x';
        write(ab[1], &c, 1);
        read(ba[0], &c, 1);
        printf("A sees: \"%s\"\n", m + 200);
        fflush(stdout);
        _exit(0);
    }
    pid_t b = fork();
    if (b == 0) {
        char c;
        read(ab[0], &c, 1);
        int f = open(path("un"), O_RDWR);
        if (f < 0) _exit(2);
        char *m = map(f, pg, PROT_READ | PROT_WRITE, 0);
        printf("B sees: \"%s\"\n", m + 100);
        fflush(stdout);
        strcpy(m + 200, "from B");
        write(ba[1], &c, 1);
        _exit(0);
    }
    int sa = wait_child(a), sb = wait_child(b);
    fd = open(path("un"), O_RDONLY);
    char buf[8] = {0};
    pread(fd, buf, 6, 200);
    printf("unrelated: status %d %d, file at 200: \"%s\"\n", sa, sb, buf);
    close(fd);
    close(ab[0]);
    close(ab[1]);
    close(ba[0]);
    close(ba[1]);
}

/* write() is seen through existing mappings, here and in a child. */
static void write_then_map(void) {
    int fd = make("wr", pg);
    char *m = map(fd, pg, PROT_READ, 0);
    pid_t pid = fork();
    if (pid == 0) {
        usleep(1000);
        /* The parent's pwrite happens before the pipe-free handshake below:
         * the child waits for the byte at 0 to change. */
        for (int i = 0; i < 100000 && m[0] != 'W'; i++) usleep(100);
        printf("child sees write(): \"%.9s\"\n", m);
        fflush(stdout);
        _exit(0);
    }
    if (pwrite(fd, "Written!!", 9, 0) != 9) die("pwrite");
    wait_child(pid);
    printf("parent sees write(): \"%.9s\"\n", m);
    /* Extending write() after the mapped page: file grows, mapping stays. */
    lseek(fd, 0, SEEK_END);
    if (write(fd, "tail", 4) != 4) die("write");
    struct stat st;
    fstat(fd, &st);
    printf("size after append: %lld\n", (long long)st.st_size);
    munmap(m, pg);
    close(fd);
}

/* msync and munmap, then read(); and a child that exits without munmap. */
static void sync_unmap(void) {
    int fd = make("sy", 3 * pg);
    char *m = map(fd, 3 * pg, PROT_READ | PROT_WRITE, 0);
    strcpy(m + 5, "synced");
    if (msync(m, 3 * pg, MS_SYNC)) die("msync");
    char buf[16] = {0};
    pread(fd, buf, 6, 5);
    printf("after msync: \"%s\"\n", buf);
    strcpy(m + 2 * pg, "unmapped");
    if (munmap(m, 3 * pg)) die("munmap");
    memset(buf, 0, sizeof buf);
    pread(fd, buf, 8, 2 * pg);
    printf("after munmap: \"%s\"\n", buf);
    int r = msync(m, pg, MS_SYNC | MS_ASYNC);
    printf("msync bad flags: %d %s\n", r, strerror(errno));
    r = msync(m, pg, MS_SYNC);
    printf("msync unmapped: %d %s\n", r, strerror(errno));
    pid_t pid = fork();
    if (pid == 0) {
        char *c = map(fd, pg, PROT_READ | PROT_WRITE, 0);
        strcpy(c + 50, "child exited");
        _exit(0);
    }
    wait_child(pid);
    memset(buf, 0, sizeof buf);
    pread(fd, buf, 12, 50);
    printf("after child exit: \"%s\"\n", buf);
    close(fd);
}

/* ftruncate with an existing mapping: growing makes the mapped pages
 * part of the file, shrinking discards what was past the new end. */
static void truncation(void) {
    int fd = make("tr", pg);
    char *m = map(fd, 3 * pg, PROT_READ | PROT_WRITE, 0);
    if (ftruncate(fd, 3 * pg)) die("ftruncate grow");
    strcpy(m + 2 * pg + 1, "third page");
    char buf[16] = {0};
    pread(fd, buf, 10, 2 * pg + 1);
    printf("grown: \"%s\" zero=%d\n", buf, m[pg + 5]);
    strcpy(m + 100, "cut me");
    if (ftruncate(fd, 102)) die("ftruncate shrink");
    if (ftruncate(fd, 3 * pg)) die("ftruncate regrow");
    printf("regrown: m[100..]=\"%s\" m[102]=%d page3=%d\n", m + 100, m[102], m[2 * pg + 1]);
    memset(buf, 1, sizeof buf);
    pread(fd, buf, 4, 100);
    printf("regrown read: %d %d %d %d\n", buf[0], buf[1], buf[2], buf[3]);
    munmap(m, 3 * pg);
    close(fd);
}

/* mprotect and mremap on shared file mappings; read-only files. */
static void protect_remap(void) {
    int fd = make("pr", pg);
    char *m = map(fd, pg, PROT_READ | PROT_WRITE, 0);
    if (mprotect(m, pg, PROT_READ)) die("mprotect ro");
    if (mprotect(m, pg, PROT_READ | PROT_WRITE)) die("mprotect rw");
    strcpy(m, "after mprotect");
    /* Grow the file with write() and the mapping with mremap. */
    char big[8192];
    memset(big, 'z', sizeof big);
    memcpy(big + 4096 + 7, "remapped", 8);
    pwrite(fd, big + 4096, 8192 - 4096, pg);
    pwrite(fd, big, 4096, 2 * pg);
    char *n = mremap(m, pg, 3 * pg, MREMAP_MAYMOVE);
    if (n == MAP_FAILED) die("mremap");
    printf("mremap: \"%s\" \"%.8s\" %c\n", n, n + pg + 7, n[2 * pg + 9]);
    strcpy(n + 2 * pg, "store after mremap");
    char buf[32] = {0};
    pread(fd, buf, 18, 2 * pg);
    printf("read after mremap: \"%s\"\n", buf);
    /* Two mappings of one file in one process. */
    char *o = map(fd, pg, PROT_READ, 2 * pg);
    n[2 * pg] = 'S';
    printf("second mapping: \"%.18s\"\n", o);
    munmap(o, pg);
    munmap(n, 3 * pg);
    close(fd);
    int ro = open(path("pr"), O_RDONLY);
    void *p = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0);
    printf("rw map of O_RDONLY: %s\n", p == MAP_FAILED && errno == EACCES ? "EACCES" : "mapped");
    p = mmap(NULL, pg, PROT_READ, MAP_SHARED, ro, 0);
    if (p == MAP_FAILED) die("ro map");
    printf("mprotect rw of O_RDONLY map: %s\n",
           mprotect(p, pg, PROT_READ | PROT_WRITE) && errno == EACCES ? "EACCES" : "allowed");
    printf("ro map: \"%.14s\"\n", (char *)p);
    munmap(p, pg);
    /* MAP_PRIVATE stays private. */
    char *q = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE, ro, 0);
    if (q == MAP_FAILED) die("private map");
    q[0] = 'P';
    memset(buf, 0, sizeof buf);
    pread(ro, buf, 5, 0);
    printf("private store: map \"%.5s\" file \"%s\"\n", q, buf);
    munmap(q, pg);
    close(ro);
}

/* An offset mapping, and a mapping kept across an exec-less fork chain. */
static void offsets(void) {
    int fd = make("of", 4 * pg);
    char *whole = map(fd, 4 * pg, PROT_READ | PROT_WRITE, 0);
    char *part = map(fd, pg, PROT_READ | PROT_WRITE, 3 * pg);
    strcpy(part + 3, "via offset");
    printf("offset mapping: \"%s\"\n", whole + 3 * pg + 3);
    pid_t pid = fork();
    if (pid == 0) {
        pid_t g = fork();
        if (g == 0) {
            strcpy(whole + 3 * pg + 20, "grandchild");
            _exit(0);
        }
        wait_child(g);
        _exit(0);
    }
    wait_child(pid);
    printf("grandchild via offset mapping: \"%s\"\n", part + 20);
    munmap(whole, 4 * pg);
    munmap(part, pg);
    close(fd);
}

/* LTP's checkpoint set-up: a child execs a new program that finds the
 * file by name (tst_reinit), maps it and writes into it. */
static void reinit(void) {
    int fd = make("ri", pg);
    char *m = map(fd, pg, PROT_READ | PROT_WRITE, 0);
    strcpy(m, "before exec");
    pid_t pid = fork();
    if (pid == 0) {
        char *args[] = {"mapshared", dir, "reinit", path("ri"), NULL};
        execv("/proc/self/exe", args);
        _exit(3);
    }
    int st = wait_child(pid);
    printf("exec'd child (status %d) wrote: \"%s\"\n", st, m + 64);
    munmap(m, pg);
    close(fd);
}

static int reinit_child(const char *file) {
    int fd = open(file, O_RDWR);
    if (fd < 0) return 4;
    char *m = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return 5;
    snprintf(m + 64, 64, "after exec, saw \"%s\"", m);
    return 0;
}

/* POSIX named semaphores: sem_open maps /dev/shm/sem.NAME shared. */
static void semaphores(void) {
    sem_unlink("/mapshared_sem");
    sem_t *s = sem_open("/mapshared_sem", O_CREAT | O_EXCL, 0600, 0);
    if (s == SEM_FAILED) die("sem_open");
    int fd = make("semdata", pg);
    int *counter = map(fd, pg, PROT_READ | PROT_WRITE, 0);
    pid_t kids[3];
    for (int i = 0; i < 3; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            /* A child opens the semaphore by name, like an unrelated process. */
            sem_t *t = sem_open("/mapshared_sem", 0);
            if (t == SEM_FAILED) _exit(2);
            if (sem_wait(t)) _exit(3);
            (*counter)++; /* one at a time: the semaphore is a mutex */
            sem_post(t);
            _exit(0);
        }
    }
    *counter = 100;
    sem_post(s);
    int sum = 0;
    for (int i = 0; i < 3; i++) sum += wait_child(kids[i]);
    int v = -1;
    sem_getvalue(s, &v);
    printf("semaphores: statuses %d, counter %d, value %d\n", sum, *counter, v);
    sem_close(s);
    sem_unlink("/mapshared_sem");
    munmap(counter, pg);
    close(fd);
}

/* Budget: a shared mapping of MIB mebibytes, every page written. */
static int big(const char *mib) {
    size_t len = (size_t)atol(mib) << 20;
    int fd = make("big", len);
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        printf("big: %s\n", errno == ENOMEM ? "ENOMEM" : strerror(errno));
        return 0;
    }
    for (size_t i = 0; i < len; i += pg) m[i] = 1;
    printf("big: mapped\n");
    return 0;
}

static const char *err(void *p) {
    return p == MAP_FAILED ? strerror(errno) : "mapped";
}

/* Argument checks in Linux's order, and /dev/zero. */
static void errors(void) {
    int fd = make("er", pg);
    int closed = dup(fd);
    close(closed);
    printf("closed fd, len 0: %s\n", err(mmap(NULL, 0, PROT_READ, MAP_SHARED, closed, 0)));
    printf("odd offset, closed fd: %s\n", err(mmap(NULL, pg, PROT_READ, MAP_SHARED, closed, 1)));
    printf("len 0: %s\n", err(mmap(NULL, 0, PROT_READ, MAP_SHARED, fd, 0)));
    printf("no type: %s\n", err(mmap(NULL, pg, PROT_READ, 0, fd, 0)));
    printf("validate, unknown flag: %s\n",
           err(mmap(NULL, pg, PROT_READ, MAP_SHARED_VALIDATE | 0x200000, fd, 0)));
    void *v = mmap(NULL, pg, PROT_READ, MAP_SHARED_VALIDATE, fd, 0);
    printf("validate: %s\n", err(v));
    if (v != MAP_FAILED) munmap(v, pg);
    close(fd);
    int z = open("/dev/zero", O_RDONLY);
    if (z < 0) die("open /dev/zero");
    printf("/dev/zero ro, shared rw: %s\n",
           err(mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_SHARED, z, 0)));
    char *zm = mmap(NULL, pg, PROT_READ, MAP_SHARED, z, 0);
    if (zm == MAP_FAILED) die("mmap /dev/zero");
    int r = mprotect(zm, pg, PROT_READ | PROT_WRITE);
    printf("/dev/zero ro shared, mprotect rw: %s, byte %d\n", r ? strerror(errno) : "ok", zm[9]);
    munmap(zm, pg);
    char *zp = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE, z, 0);
    if (zp == MAP_FAILED) die("mmap /dev/zero private");
    zp[0] = 1;
    printf("/dev/zero private: %d %d\n", zp[0], zp[1]);
    munmap(zp, pg);
    close(z);
}

/* A thread blocked in read() on a pipe must not stop another thread's
 * mmap and munmap (no runtime lock held across the blocking read). */
static int blk_pipe[2];
static char blk_buf[16];
static void *blocked_reader(void *arg) {
    (void)arg;
    ssize_t n = read(blk_pipe[0], blk_buf, sizeof blk_buf - 1);
    return (void *)(long)n;
}

static void blocked_read(void) {
    if (pipe(blk_pipe)) die("pipe");
    pthread_t t;
    if (pthread_create(&t, NULL, blocked_reader, NULL)) die("pthread_create");
    usleep(20000);
    int fd = make("bl", pg);
    for (int i = 0; i < 50; i++) {
        char *m = map(fd, pg, PROT_READ | PROT_WRITE, 0);
        m[i] = 'x';
        if (munmap(m, pg)) die("munmap");
        void *a = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (a == MAP_FAILED) die("mmap anon");
        munmap(a, 4 * pg);
    }
    close(fd);
    write(blk_pipe[1], "wake up", 7);
    void *ret;
    pthread_join(t, &ret);
    printf("blocked reader: %ld bytes \"%s\" after 100 maps\n", (long)ret, blk_buf);
    close(blk_pipe[0]);
    close(blk_pipe[1]);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: mapshared DIR [reinit FILE | big MIB]\n");
        return 2;
    }
    snprintf(dir, sizeof dir, "%s", argv[1]);
    pg = sysconf(_SC_PAGESIZE);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 3 && !strcmp(argv[2], "reinit")) return reinit_child(argv[3]);
    if (argc > 3 && !strcmp(argv[2], "big")) return big(argv[3]);
    ltp_ipc();
    parent_child();
    unrelated();
    write_then_map();
    sync_unmap();
    truncation();
    protect_remap();
    offsets();
    reinit();
    semaphores();
    errors();
    blocked_read();
    printf("done\n");
    return 0;
}
