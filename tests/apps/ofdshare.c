/* Open file descriptions and file locks shared between processes, as on
 * Linux: the offset and status flags of an inherited or dup'ed descriptor,
 * concurrent writers through one description, POSIX record locks (F_SETLK,
 * F_SETLKW, F_GETLK, EDEADLK), open-file-description locks (F_OFD_*),
 * flock(2), their release on close and exit (also by SIGKILL), EINTR of a
 * blocked lock wait, an unlinked file that stays readable in every
 * process that has it open, and mutual exclusion of four processes
 * incrementing a counter under F_SETLKW and under flock.
 *
 * Usage: ofdshare DIR. Prints results that do not depend on pids or
 * timing; the output natively is the oracle for the same program under
 * myst. Children report through a pipe; only the parent prints. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *dir;
static int report_fd = -1;

static const char *p(const char *name) {
    static char b[8][600];
    static int i;
    i = (i + 1) % 8;
    snprintf(b[i], sizeof b[i], "%s/%s", dir, name);
    return b[i];
}

static void fail(const char *what) {
    printf("FAIL %s: %s\n", what, strerror(errno));
    fflush(stdout);
    exit(1);
}

/* A line of the report: the parent's stdout, or the child's pipe. */
static void say(const char *fmt, ...) {
    char b[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    if (report_fd >= 0) {
        char l[520];
        int m = snprintf(l, sizeof l, "  child: %s\n", b);
        if (write(report_fd, l, m) != m) _exit(90);
    } else {
        printf("%.*s\n", n, b);
    }
}

static const char *err(int r) {
    if (r == 0) return "ok";
    switch (errno) {
    case EAGAIN: return "EAGAIN";
    case EACCES: return "EACCES";
    case EDEADLK: return "EDEADLK";
    case EINTR: return "EINTR";
    case EINVAL: return "EINVAL";
    case EBADF: return "EBADF";
    default: return strerror(errno);
    }
}

static int open_rw(const char *path, int trunc) {
    int fd = open(path, O_RDWR | O_CREAT | (trunc ? O_TRUNC : 0), 0644);
    if (fd < 0) fail(path);
    return fd;
}

static void put(int fd, const char *s) {
    if (write(fd, s, strlen(s)) != (ssize_t)strlen(s)) fail("write");
}

static int status_of(pid_t pid) {
    int st;
    if (waitpid(pid, &st, 0) != pid) fail("waitpid");
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Forks; the child runs fn and exits 0; the parent waits and prints what
 * the child reported. */
static void in_child(void (*fn)(int), int arg) {
    int pp[2];
    if (pipe(pp)) fail("pipe");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) fail("fork");
    if (pid == 0) {
        close(pp[0]);
        report_fd = pp[1];
        fn(arg);
        _exit(0);
    }
    close(pp[1]);
    char buf[8192];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof buf - 1 && (r = read(pp[0], buf + n, sizeof buf - 1 - n)) > 0) n += r;
    close(pp[0]);
    int st = status_of(pid);
    fwrite(buf, 1, n, stdout);
    if (st) printf("  child exit status %d\n", st);
}

static int lk(int fd, int cmd, short type, off_t start, off_t len) {
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = start;
    fl.l_len = len;
    return fcntl(fd, cmd, &fl);
}

static const char *type_name(short t) {
    return t == F_RDLCK ? "F_RDLCK" : t == F_WRLCK ? "F_WRLCK" : t == F_UNLCK ? "F_UNLCK" : "?";
}

/* F_GETLK-style query, described without the pid itself. */
static void getlk(const char *what, int fd, int cmd, short type, off_t start, off_t len,
                  pid_t expect_pid) {
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = start;
    fl.l_len = len;
    if (fcntl(fd, cmd, &fl)) {
        say("%s: %s", what, err(-1));
        return;
    }
    if (fl.l_type == F_UNLCK) {
        say("%s: F_UNLCK", what);
        return;
    }
    say("%s: %s start %ld len %ld whence %d pid %s", what, type_name(fl.l_type), (long)fl.l_start,
        (long)fl.l_len, fl.l_whence,
        fl.l_pid == expect_pid ? "as expected" : fl.l_pid == -1 ? "-1" : "OTHER");
}

static long file_size(const char *path) {
    struct stat st;
    if (stat(path, &st)) return -1;
    return st.st_size;
}

static char *slurp(const char *path, char *buf, size_t cap) {
    int fd = open(path, O_RDONLY);
    size_t n = 0;
    if (fd >= 0) {
        ssize_t r;
        while (n < cap - 1 && (r = read(fd, buf + n, cap - 1 - n)) > 0) n += r;
        close(fd);
    }
    buf[n] = 0;
    return buf;
}

/* 1. A child writes through an inherited descriptor; the parent goes on
 * after the child's output instead of overwriting it. */
static void fork_offset(void) {
    int fd = open(p("offset"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) fail("open offset");
    pid_t pid = fork();
    if (pid == 0) {
        char l[32];
        for (int i = 0; i < 100; i++) {
            int n = snprintf(l, sizeof l, "child %03d\n", i);
            if (write(fd, l, n) != n) _exit(2);
        }
        _exit(0);
    }
    int st = status_of(pid);
    char l[32];
    for (int i = 0; i < 100; i++) {
        int n = snprintf(l, sizeof l, "parent %03d\n", i);
        if (write(fd, l, n) != n) fail("write parent");
    }
    long off = lseek(fd, 0, SEEK_CUR);
    close(fd);
    static char buf[8192];
    slurp(p("offset"), buf, sizeof buf);
    int lines = 0, childs = 0, parents = 0;
    for (char *s = buf; *s; s++) lines += *s == '\n';
    for (char *s = buf; (s = strstr(s, "child ")); s++) childs++;
    for (char *s = buf; (s = strstr(s, "parent ")); s++) parents++;
    say("fork offset: child status %d, %d lines (%d child, %d parent), child first: %s, "
        "offset %ld of %ld",
        st, lines, childs, parents, strncmp(buf, "child 000", 9) == 0 ? "yes" : "no", off,
        file_size(p("offset")));
}

/* 2. Three processes write fixed-size records through one description
 * without O_APPEND: the shared offset moves atomically with each write. */
#define NREC 300
#define RECSZ 32
static void writer(int fd, int who) {
    char r[RECSZ + 1];
    for (int i = 0; i < NREC; i++) {
        int n = snprintf(r, sizeof r, "w%d %05d ", who, i);
        memset(r + n, '.', RECSZ - 1 - n);
        r[RECSZ - 1] = '\n';
        if (write(fd, r, RECSZ) != RECSZ) _exit(3);
    }
}

static void concurrent_writers(void) {
    int fd = open(p("writers"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) fail("open writers");
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            writer(fd, k + 1);
            _exit(0);
        }
    }
    writer(fd, 0);
    int st = status_of(kids[0]) | status_of(kids[1]);
    close(fd);
    static char buf[3 * NREC * RECSZ + 1];
    int rfd = open(p("writers"), O_RDONLY);
    ssize_t n = 0, r;
    while ((r = read(rfd, buf + n, sizeof buf - 1 - n)) > 0) n += r;
    close(rfd);
    int seen[3][NREC];
    memset(seen, 0, sizeof seen);
    int damaged = 0, dup = 0;
    for (ssize_t o = 0; o + RECSZ <= n; o += RECSZ) {
        int who, i;
        if (sscanf(buf + o, "w%d %d ", &who, &i) != 2 || who < 0 || who > 2 || i < 0 ||
            i >= NREC || buf[o + RECSZ - 1] != '\n') {
            damaged++;
            continue;
        }
        if (seen[who][i]++) dup++;
    }
    int have[3] = {0, 0, 0};
    for (int w = 0; w < 3; w++)
        for (int i = 0; i < NREC; i++) have[w] += seen[w][i] != 0;
    say("concurrent writers: status %d, size %ld of %d, records %d/%d/%d of %d, damaged %d, "
        "repeated %d",
        st, (long)n, 3 * NREC * RECSZ, have[0], have[1], have[2], NREC, damaged, dup);
}

/* 3. dup and fork share one offset. */
static void dup_offset(void) {
    int fd = open_rw(p("dup"), 1);
    int d = dup(fd);
    put(fd, "hello");
    long a = lseek(d, 0, SEEK_CUR);
    pid_t pid = fork();
    if (pid == 0) {
        lseek(fd, 2, SEEK_SET);
        _exit(0);
    }
    status_of(pid);
    long b = lseek(d, 0, SEEK_CUR);
    lseek(fd, 0, SEEK_SET);
    pid = fork();
    if (pid == 0) {
        char c[3];
        _exit(read(fd, c, 3) == 3 && memcmp(c, "hel", 3) == 0 ? 0 : 4);
    }
    int st = status_of(pid);
    char rest[8] = {0};
    ssize_t n = read(d, rest, sizeof rest - 1);
    say("dup offset: %ld; after the child's lseek: %ld; child read status %d, then the "
        "parent read %ld bytes \"%s\"",
        a, b, st, (long)n, rest);
    close(fd);
    close(d);
}

/* 4. Status flags set by F_SETFL in one process are seen by the other. */
static void setfl_shared(void) {
    int fd = open(p("setfl"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    put(fd, "0123456789");
    pid_t pid = fork();
    if (pid == 0) _exit(fcntl(fd, F_SETFL, O_APPEND | O_NONBLOCK) ? 5 : 0);
    int st = status_of(pid);
    int fl = fcntl(fd, F_GETFL);
    lseek(fd, 0, SEEK_SET);
    put(fd, "X");
    char buf[64];
    slurp(p("setfl"), buf, sizeof buf);
    say("F_SETFL by the child: status %d, O_APPEND %s, O_NONBLOCK %s, file \"%s\"", st,
        fl & O_APPEND ? "set" : "clear", fl & O_NONBLOCK ? "set" : "clear", buf);
    pid = fork();
    if (pid == 0) _exit(fcntl(fd, F_SETFL, 0) ? 5 : 0);
    status_of(pid);
    fl = fcntl(fd, F_GETFL);
    say("F_SETFL 0 by a child: O_APPEND %s, O_NONBLOCK %s, access mode %s",
        fl & O_APPEND ? "set" : "clear", fl & O_NONBLOCK ? "set" : "clear",
        (fl & O_ACCMODE) == O_WRONLY ? "O_WRONLY" : "changed");
    close(fd);
}

/* 5. POSIX record locks between parent and child. */
static int lockfd;

static void posix_child(int phase) {
    pid_t parent = getppid();
    if (phase == 0) {
        say("F_SETLK write [50,60): %s", err(lk(lockfd, F_SETLK, F_WRLCK, 50, 10)));
        getlk("F_GETLK write [50,60)", lockfd, F_GETLK, F_WRLCK, 50, 10, parent);
        getlk("F_GETLK read [0,1)", lockfd, F_GETLK, F_RDLCK, 0, 1, parent);
        getlk("F_GETLK write [100,110)", lockfd, F_GETLK, F_WRLCK, 100, 10, parent);
        say("F_SETLK read [100,110): %s", err(lk(lockfd, F_SETLK, F_RDLCK, 100, 10)));
        say("F_SETLK bad type: %s", err(lk(lockfd, F_SETLK, 7, 0, 1)));
    } else if (phase == 1) {
        say("F_SETLK read [0,10) under the parent's read lock: %s",
            err(lk(lockfd, F_SETLK, F_RDLCK, 0, 10)));
        say("F_SETLK write [0,10): %s", err(lk(lockfd, F_SETLK, F_WRLCK, 0, 10)));
        getlk("F_GETLK write [0,200)", lockfd, F_GETLK, F_WRLCK, 0, 200, parent);
        say("F_SETLK write [45,50) in the unlocked hole: %s",
            err(lk(lockfd, F_SETLK, F_WRLCK, 45, 5)));
        getlk("F_GETLK write [60,0=EOF)", lockfd, F_GETLK, F_WRLCK, 60, 0, parent);
    } else {
        getlk("F_GETLK after the parent merged locks", lockfd, F_GETLK, F_WRLCK, 0, 0, parent);
    }
}

static void posix_locks(void) {
    lockfd = open_rw(p("posix"), 1);
    if (ftruncate(lockfd, 200)) fail("ftruncate");
    say("parent F_SETLK write [0,100): %s", err(lk(lockfd, F_SETLK, F_WRLCK, 0, 100)));
    in_child(posix_child, 0);
    getlk("parent's own F_GETLK", lockfd, F_GETLK, F_WRLCK, 0, 100, getpid());
    /* Turn it into a read lock with a hole at [40,60). */
    say("parent F_SETLK read [0,100): %s", err(lk(lockfd, F_SETLK, F_RDLCK, 0, 100)));
    say("parent F_UNLCK [40,60): %s", err(lk(lockfd, F_SETLK, F_UNLCK, 40, 20)));
    in_child(posix_child, 1);
    /* Adjacent read locks merge into one: [0,40) + [40,60) + [60,100). */
    say("parent F_SETLK read [40,60): %s", err(lk(lockfd, F_SETLK, F_RDLCK, 40, 20)));
    say("parent F_SETLK read [100,0=EOF): %s", err(lk(lockfd, F_SETLK, F_RDLCK, 100, 0)));
    in_child(posix_child, 2);
    close(lockfd);
}

/* 6. F_SETLKW waits until the holder unlocks. */
static void setlkw_waits(void) {
    int fd = open_rw(p("setlkw"), 1);
    int logfd = open(p("setlkw.log"), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    lk(fd, F_SETLK, F_WRLCK, 0, 10);
    int sync[2];
    if (pipe(sync)) fail("pipe");
    pid_t pid = fork();
    if (pid == 0) {
        if (write(sync[1], "r", 1) != 1) _exit(6);
        int r = lk(fd, F_SETLKW, F_WRLCK, 0, 10);
        put(logfd, r == 0 ? "child got the lock\n" : "child F_SETLKW failed\n");
        _exit(0);
    }
    char c;
    if (read(sync[0], &c, 1) != 1) fail("sync");
    usleep(100000);
    put(logfd, "parent unlocks\n");
    lk(fd, F_SETLK, F_UNLCK, 0, 10);
    int st = status_of(pid);
    char buf[256];
    slurp(p("setlkw.log"), buf, sizeof buf);
    say("F_SETLKW: child status %d, log: %s", st, buf);
    close(fd);
    close(logfd);
    close(sync[0]);
    close(sync[1]);
}

/* 7. Two processes each wait for the other's lock: one gets EDEADLK. */
static void deadlock(void) {
    int fd = open_rw(p("deadlock"), 1);
    if (ftruncate(fd, 10)) fail("ftruncate");
    int sync[2];
    if (pipe(sync)) fail("pipe");
    lk(fd, F_SETLK, F_WRLCK, 0, 1);
    pid_t pid = fork();
    if (pid == 0) {
        lk(fd, F_SETLK, F_WRLCK, 1, 1);
        if (write(sync[1], "r", 1) != 1) _exit(7);
        usleep(50000);
        int r = lk(fd, F_SETLKW, F_WRLCK, 0, 1);
        if (r && errno == EDEADLK) {
            lk(fd, F_SETLK, F_UNLCK, 1, 1);
            _exit(1);
        }
        _exit(r == 0 ? 0 : 2);
    }
    char c;
    if (read(sync[0], &c, 1) != 1) fail("sync");
    int r = lk(fd, F_SETLKW, F_WRLCK, 1, 1);
    int mine = r && errno == EDEADLK;
    if (mine) lk(fd, F_SETLK, F_UNLCK, 0, 1);
    int st = status_of(pid);
    say("deadlock: EDEADLK in exactly one process: %s (the other one got the lock: %s)",
        mine + (st == 1) == 1 ? "yes" : "no",
        (mine && st == 0) || (!mine && r == 0 && st == 1) ? "yes" : "no");
    close(fd);
    close(sync[0]);
    close(sync[1]);
}

/* 8. Open-file-description locks. */
static int ofdfd;

static void ofd_child(int phase) {
    int fresh = open_rw(p("ofd"), 0);
    if (phase == 0) {
        say("F_OFD_SETLK write [0,10) on a new description: %s",
            err(lk(fresh, F_OFD_SETLK, F_WRLCK, 0, 10)));
        getlk("F_OFD_GETLK", fresh, F_OFD_GETLK, F_WRLCK, 0, 10, -1);
        say("F_SETLK (POSIX) write [5,6): %s", err(lk(fresh, F_SETLK, F_WRLCK, 5, 1)));
        getlk("F_GETLK (POSIX)", fresh, F_GETLK, F_RDLCK, 0, 0, -1);
        say("F_OFD_SETLK read [0,10) on the inherited description: %s",
            err(lk(ofdfd, F_OFD_SETLK, F_RDLCK, 0, 10)));
        struct flock fl;
        memset(&fl, 0, sizeof fl);
        fl.l_type = F_WRLCK;
        fl.l_pid = 1;
        say("F_OFD_SETLK with l_pid 1: %s", err(fcntl(fresh, F_OFD_SETLK, &fl)));
        close(ofdfd);
        say("after closing the inherited descriptor: %s",
            err(lk(fresh, F_OFD_SETLK, F_WRLCK, 0, 10)));
    } else {
        say("F_OFD_SETLK write [0,10): %s", err(lk(fresh, F_OFD_SETLK, F_WRLCK, 0, 10)));
    }
    close(fresh);
}

static void ofd_locks(void) {
    ofdfd = open_rw(p("ofd"), 1);
    say("parent F_OFD_SETLK write [0,10): %s", err(lk(ofdfd, F_OFD_SETLK, F_WRLCK, 0, 10)));
    in_child(ofd_child, 0);
    getlk("parent's F_OFD_GETLK", ofdfd, F_OFD_GETLK, F_WRLCK, 0, 10, -1);
    /* Closing another descriptor of the file keeps an OFD lock. */
    int other = open_rw(p("ofd"), 0);
    close(other);
    in_child(ofd_child, 1);
    /* The last descriptor of the description closes: the lock goes. */
    int d = dup(ofdfd);
    close(ofdfd);
    in_child(ofd_child, 1);
    close(d);
    in_child(ofd_child, 1);
}

/* 9. flock(2). */
static int flockfd;

static void flock_child(int phase) {
    int fresh = open_rw(p("flock"), 0);
    if (phase == 0) {
        say("LOCK_EX|LOCK_NB on a new description: %s", err(flock(fresh, LOCK_EX | LOCK_NB)));
        say("LOCK_SH|LOCK_NB on a new description: %s", err(flock(fresh, LOCK_SH | LOCK_NB)));
        say("LOCK_EX|LOCK_NB on the inherited description: %s",
            err(flock(flockfd, LOCK_EX | LOCK_NB)));
        say("F_SETLK write (flock and POSIX locks are independent): %s",
            err(lk(fresh, F_SETLK, F_WRLCK, 0, 0)));
        say("flock bad operation: %s", err(flock(fresh, 3)));
    } else if (phase == 1) {
        say("LOCK_SH|LOCK_NB: %s", err(flock(fresh, LOCK_SH | LOCK_NB)));
        say("LOCK_EX|LOCK_NB: %s", err(flock(fresh, LOCK_EX | LOCK_NB)));
    } else {
        say("LOCK_EX|LOCK_NB: %s", err(flock(fresh, LOCK_EX | LOCK_NB)));
    }
    close(fresh);
}

static void flocks(void) {
    flockfd = open_rw(p("flock"), 1);
    say("parent LOCK_EX: %s", err(flock(flockfd, LOCK_EX)));
    in_child(flock_child, 0);
    say("parent LOCK_SH: %s", err(flock(flockfd, LOCK_SH)));
    in_child(flock_child, 1);
    /* A blocking LOCK_EX waits for the holder's LOCK_UN. */
    say("parent LOCK_EX again: %s", err(flock(flockfd, LOCK_EX)));
    int logfd = open(p("flock.log"), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    int sync[2];
    if (pipe(sync)) fail("pipe");
    pid_t pid = fork();
    if (pid == 0) {
        int fresh = open_rw(p("flock"), 0);
        if (write(sync[1], "r", 1) != 1) _exit(8);
        int r = flock(fresh, LOCK_EX);
        put(logfd, r == 0 ? "child flocked\n" : "child flock failed\n");
        _exit(0);
    }
    char c;
    if (read(sync[0], &c, 1) != 1) fail("sync");
    usleep(100000);
    put(logfd, "parent LOCK_UN\n");
    flock(flockfd, LOCK_UN);
    int st = status_of(pid);
    char buf[256];
    slurp(p("flock.log"), buf, sizeof buf);
    say("blocking flock: child status %d, log: %s", st, buf);
    /* Released when the description's last descriptor closes. */
    flock(flockfd, LOCK_EX);
    int d = dup(flockfd);
    close(flockfd);
    in_child(flock_child, 2);
    close(d);
    in_child(flock_child, 2);
    close(logfd);
    close(sync[0]);
    close(sync[1]);
}

/* 10. Locks of a process go when it exits or is killed. */
static void take_all(int sync_fd, int then_pause) {
    int a = open_rw(p("exit"), 0), b = open_rw(p("exit"), 0), c = open_rw(p("exit"), 0);
    int r = lk(a, F_SETLK, F_WRLCK, 0, 10) | flock(b, LOCK_EX) | lk(c, F_OFD_SETLK, F_WRLCK, 20, 10);
    if (write(sync_fd, r ? "f" : "r", 1) != 1) _exit(9);
    if (then_pause)
        for (;;) pause();
    exit(0);
}

static void probe_all(const char *when, int wait) {
    int a = open_rw(p("exit"), 0), b = open_rw(p("exit"), 0), c = open_rw(p("exit"), 0);
    int cmd = wait ? F_SETLKW : F_SETLK, ofd = wait ? F_OFD_SETLKW : F_OFD_SETLK;
    const char *r1 = err(lk(a, cmd, F_WRLCK, 0, 10));
    const char *r2 = err(flock(b, LOCK_EX | (wait ? 0 : LOCK_NB)));
    const char *r3 = err(lk(c, ofd, F_WRLCK, 20, 10));
    say("%s: POSIX %s, flock %s, OFD %s", when, r1, r2, r3);
    close(a);
    close(b);
    close(c);
}

static void released_at_exit(void) {
    close(open_rw(p("exit"), 1));
    int sync[2];
    if (pipe(sync)) fail("pipe");
    pid_t pid = fork();
    if (pid == 0) take_all(sync[1], 0);
    char c;
    if (read(sync[0], &c, 1) != 1 || c != 'r') fail("child locks");
    int st = status_of(pid);
    probe_all("after the holder exited", 0);
    pid = fork();
    if (pid == 0) take_all(sync[1], 1);
    if (read(sync[0], &c, 1) != 1 || c != 'r') fail("child locks");
    probe_all("while the holder lives", 0);
    kill(pid, SIGKILL);
    /* Not waited for yet: the waits end when the killed holder is gone. */
    probe_all("waiting after SIGKILL", 1);
    int st2 = status_of(pid);
    say("holder statuses: %d, %d", st, st2);
    close(sync[0]);
    close(sync[1]);
}

/* 11. Closing any descriptor of a file drops the process's POSIX locks;
 * a fork child does not inherit them. */
static void posix_close_rule(void) {
    int a = open_rw(p("close"), 1);
    lk(a, F_SETLK, F_WRLCK, 0, 0);
    pid_t pid = fork();
    if (pid == 0) {
        /* The child's lock attempts on an inherited fd see the parent's lock. */
        _exit(lk(a, F_SETLK, F_WRLCK, 0, 1) == 0 ? 0 : errno == EAGAIN ? 11 : 12);
    }
    int st = status_of(pid);
    int b = open_rw(p("close"), 0);
    close(b);
    pid = fork();
    if (pid == 0) _exit(lk(a, F_SETLK, F_WRLCK, 0, 1) == 0 ? 0 : 13);
    int st2 = status_of(pid);
    say("POSIX locks: child sees the parent's (status %d); after the parent closed another "
        "descriptor of the file the child locks it (status %d)",
        st, st2);
    close(a);
}

/* 12. A blocked lock wait ends with EINTR when a handled signal arrives. */
static volatile sig_atomic_t alarms;
static void on_alarm(int s) {
    (void)s;
    alarms++;
}

static void intr_child(int fd) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART */
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 0}, {0, 100000}};
    setitimer(ITIMER_REAL, &it, NULL);
    int fresh = open_rw(p("intr"), 0);
    const char *a = err(lk(fresh, F_SETLKW, F_WRLCK, 0, 1));
    int n1 = alarms;
    setitimer(ITIMER_REAL, &it, NULL);
    const char *b = err(flock(fresh, LOCK_EX));
    say("F_SETLKW: %s (handler ran: %s); flock: %s (handler ran: %s)", a, n1 == 1 ? "yes" : "no",
        b, alarms == 2 ? "yes" : "no");
    (void)fd;
}

static void interrupted(void) {
    int fd = open_rw(p("intr"), 1);
    lk(fd, F_SETLK, F_WRLCK, 0, 1);
    flock(fd, LOCK_EX);
    in_child(intr_child, fd);
    close(fd);
}

/* 13. An unlinked file stays readable in every process that has it open,
 * whichever process unlinked it and whichever closes last. */
static void unlinked_open(void) {
    int fd = open_rw(p("unlinked"), 1);
    put(fd, "still here");
    int sync[2], back[2];
    if (pipe(sync) || pipe(back)) fail("pipe");
    pid_t pid = fork();
    if (pid == 0) {
        char c, b[16] = {0};
        if (read(sync[0], &c, 1) != 1) _exit(14);
        /* The parent unlinked the file and closed its descriptor. */
        ssize_t n = pread(fd, b, sizeof b - 1, 0);
        _exit(n == 10 && strcmp(b, "still here") == 0 ? 0 : 15);
    }
    if (unlink(p("unlinked"))) fail("unlink");
    /* A new file may reuse nothing of the open one. */
    int other = open_rw(p("unlinked2"), 1);
    put(other, "another file with more bytes than the first");
    close(other);
    close(fd);
    if (write(sync[1], "g", 1) != 1) fail("sync");
    int st = status_of(pid);
    fd = open_rw(p("unlinked3"), 1);
    put(fd, "written");
    pid = fork();
    if (pid == 0) _exit(unlink(p("unlinked3")) ? 16 : 0);
    int st2 = status_of(pid);
    char b[16] = {0};
    ssize_t n = pread(fd, b, sizeof b - 1, 0);
    put(fd, " more");
    pid = fork();
    if (pid == 0) {
        char c[32] = {0};
        _exit(pread(fd, c, sizeof c - 1, 0) == 12 && strcmp(c, "written more") == 0 ? 0 : 17);
    }
    int st3 = status_of(pid);
    say("unlinked but open: read by the child after the parent closed it: status %d; the "
        "child unlinked (status %d), the parent reads \"%.*s\", a later child reads it all: "
        "status %d; name gone: %s",
        st, st2, (int)(n > 0 ? n : 0), b, st3, access(p("unlinked3"), F_OK) ? "yes" : "no");
    close(fd);
    close(sync[0]);
    close(sync[1]);
    close(back[0]);
    close(back[1]);
}

/* 14. Four processes increment a counter in a file under F_SETLKW (and
 * then under flock): mutual exclusion loses no increment. */
#define ROUNDS 150
static void bump_counter(const char *path, int use_flock) {
    int fd = open_rw(path, 0);
    for (int i = 0; i < ROUNDS; i++) {
        if (use_flock ? flock(fd, LOCK_EX) : lk(fd, F_SETLKW, F_WRLCK, 0, 0)) _exit(20);
        char b[32] = {0};
        if (pread(fd, b, sizeof b - 1, 0) < 0) _exit(21);
        int n = atoi(b) + 1;
        int m = snprintf(b, sizeof b, "%d\n", n);
        if (pwrite(fd, b, m, 0) != m) _exit(22);
        if (use_flock ? flock(fd, LOCK_UN) : lk(fd, F_SETLK, F_UNLCK, 0, 0)) _exit(23);
    }
    close(fd);
}

static void counters(void) {
    for (int use_flock = 0; use_flock < 2; use_flock++) {
        const char *path = p(use_flock ? "counter.flock" : "counter.posix");
        int fd = open_rw(path, 1);
        put(fd, "0\n");
        close(fd);
        pid_t kids[3];
        for (int k = 0; k < 3; k++) {
            kids[k] = fork();
            if (kids[k] == 0) {
                bump_counter(path, use_flock);
                _exit(0);
            }
        }
        bump_counter(path, use_flock);
        int st = 0;
        for (int k = 0; k < 3; k++) st |= status_of(kids[k]);
        char b[32];
        slurp(path, b, sizeof b);
        say("counter under %s: status %d, value %d of %d", use_flock ? "flock" : "F_SETLKW", st,
            atoi(b), 4 * ROUNDS);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: ofdshare DIR\n");
        return 2;
    }
    dir = argv[1];
    setvbuf(stdout, NULL, _IONBF, 0);
    fork_offset();
    concurrent_writers();
    dup_offset();
    setfl_shared();
    posix_locks();
    setlkw_waits();
    deadlock();
    ofd_locks();
    flocks();
    released_at_exit();
    posix_close_rule();
    interrupted();
    unlinked_open();
    counters();
    say("done");
    return 0;
}
