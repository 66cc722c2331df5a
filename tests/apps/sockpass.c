/* What an nginx master does with its workers: a socketpair channel with
 * FIOASYNC and F_SETOWN (SIGIO when the peer writes), descriptors passed
 * between processes with SCM_RIGHTS (recvmsg ancillary data), credentials
 * with SCM_CREDENTIALS, MSG_CMSG_CLOEXEC. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdarg.h>

static volatile sig_atomic_t sigio;
/* Each process collects its lines and prints them at a fixed point, so the
 * output order does not depend on scheduling. */
static char out[8192];
static size_t outlen;
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + outlen, sizeof out - outlen, fmt, ap);
    va_end(ap);
    if (n > 0 && outlen + n < sizeof out)
        outlen += n;
}
static void flush(void)
{
    fwrite(out, 1, outlen, stdout);
    outlen = 0;
}
static void on_io(int sig) { (void)sig; sigio++; }

static int send_fd(int sock, int fd, const char *tag)
{
    struct msghdr m;
    memset(&m, 0, sizeof m);
    struct iovec iov = {(void *)tag, strlen(tag)};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    union { struct cmsghdr h; char b[CMSG_SPACE(2 * sizeof(int))]; } u;
    memset(&u, 0, sizeof u);
    m.msg_control = u.b;
    m.msg_controllen = CMSG_SPACE(2 * sizeof(int));
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(2 * sizeof(int));
    int fds[2] = {fd, fd};
    memcpy(CMSG_DATA(c), fds, sizeof fds);
    return sendmsg(sock, &m, 0);
}

static int recv_fds(int sock, int *out, int flags, char *tag, size_t taglen)
{
    struct msghdr m;
    memset(&m, 0, sizeof m);
    struct iovec iov = {tag, taglen - 1};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    union { struct cmsghdr h; char b[CMSG_SPACE(4 * sizeof(int))]; } u;
    m.msg_control = u.b;
    m.msg_controllen = sizeof u.b;
    int n = recvmsg(sock, &m, flags);
    if (n < 0)
        return -1;
    tag[n] = 0;
    int got = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            memcpy(out + got, CMSG_DATA(c), k * sizeof(int));
            got += k;
        }
    }
    say("recvmsg: bytes=%d tag=%s fds=%d ctrunc=%d\n", n, tag, got, (m.msg_flags & MSG_CTRUNC) != 0);
    return got;
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    alarm(20);
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);

    /* FIOASYNC + F_SETOWN: SIGIO when the peer writes. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_io;
    sigaction(SIGIO, &sa, NULL);
    int on = 1;
    printf("ioctl FIOASYNC: %d\n", ioctl(sv[0], FIOASYNC, &on));
    printf("fcntl F_SETOWN: %d\n", fcntl(sv[0], F_SETOWN, getpid()));
    printf("F_GETOWN is me: %d\n", fcntl(sv[0], F_GETOWN) == getpid());
    printf("O_ASYNC set: %d\n", (fcntl(sv[0], F_GETFL) & O_ASYNC) != 0);
    write(sv[1], "x", 1);
    for (int i = 0; i < 200 && !sigio; i++)
        usleep(10000);
    printf("SIGIO: %d\n", sigio > 0);
    char c;
    read(sv[0], &c, 1);
    on = 0;
    ioctl(sv[0], FIOASYNC, &on);
    printf("O_ASYNC after off: %d\n", (fcntl(sv[0], F_GETFL) & O_ASYNC) != 0);
    fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_ASYNC);
    printf("F_SETFL O_ASYNC: %d\n", (fcntl(sv[1], F_GETFL) & O_ASYNC) != 0);
    fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) & ~O_ASYNC);

    /* SCM_RIGHTS from parent to a forked worker and back. */
    int p[2];
    pipe(p);
    fflush(stdout);
    pid_t kid = fork();
    if (kid == 0) {
        close(sv[0]);
        int fds[4] = {-1, -1, -1, -1};
        char tag[32];
        int got = recv_fds(sv[1], fds, MSG_CMSG_CLOEXEC, tag, sizeof tag);
        say("child: cloexec=%d distinct=%d\n", got > 0 && (fcntl(fds[0], F_GETFD) & FD_CLOEXEC) != 0,
               got == 2 && fds[0] != fds[1]);
        char buf[64] = {0};
        int n = read(fds[0], buf, sizeof buf - 1);
        say("child read through passed fd: %d '%s'\n", n, n > 0 ? buf : "");
        /* Pass a new pipe's write end back to the parent. */
        int q[2];
        pipe(q);
        send_fd(sv[1], q[1], "back");
        write(q[1], "from the child", 14);
        /* Credentials. */
        int one = 1;
        setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
        struct msghdr m;
        memset(&m, 0, sizeof m);
        char d[8];
        struct iovec iov = {d, sizeof d};
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(struct ucred))]; } u;
        m.msg_control = u.b;
        m.msg_controllen = sizeof u.b;
        n = recvmsg(sv[1], &m, 0);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
        struct ucred cr = {0, 0, 0};
        if (cm && cm->cmsg_type == SCM_CREDENTIALS)
            memcpy(&cr, CMSG_DATA(cm), sizeof cr);
        say("child: credentials bytes=%d pid-is-parent=%d uid-ok=%d\n", n, cr.pid == getppid(), cr.uid == getuid());
        flush();
        _exit(0);
    }
    close(sv[1]);
    say("sendmsg SCM_RIGHTS: %d\n", send_fd(sv[0], p[0], "pipe"));
    write(p[1], "hello through a passed fd", 25);
    close(p[0]);
    close(p[1]);
    int back[4] = {-1, -1, -1, -1};
    char tag[32];
    int got = recv_fds(sv[0], back, 0, tag, sizeof tag);
    say("parent: cloexec=%d\n", got > 0 && (fcntl(back[0], F_GETFD) & FD_CLOEXEC) != 0);
    /* The child's write end: write through it, nothing to read here, but it
     * is a working descriptor. */
    say("parent: write through passed fd: %zd\n", write(back[0], "!", 1));
    struct ucred cr = {getpid(), getuid(), getgid()};
    struct msghdr m;
    memset(&m, 0, sizeof m);
    struct iovec iov = {"cred", 4};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    union { struct cmsghdr h; char b[CMSG_SPACE(sizeof cr)]; } u;
    memset(&u, 0, sizeof u);
    m.msg_control = u.b;
    m.msg_controllen = sizeof u.b;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_CREDENTIALS;
    cm->cmsg_len = CMSG_LEN(sizeof cr);
    memcpy(CMSG_DATA(cm), &cr, sizeof cr);
    usleep(100000);
    say("sendmsg SCM_CREDENTIALS: %zd\n", sendmsg(sv[0], &m, 0));
    int st;
    waitpid(kid, &st, 0);
    flush();
    printf("child exit: %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    /* A descriptor number that is not open. */
    errno = 0;
    int r = send_fd(sv[0], 999, "bad");
    printf("sendmsg bad fd: %d %s\n", r, strerror(errno));
    /* The pipe size is the host pipe's. */
    int q[2];
    pipe(q);
    printf("F_GETPIPE_SZ: %d\n", fcntl(q[0], F_GETPIPE_SZ));
    printf("F_SETPIPE_SZ 256 KiB: %d\n", fcntl(q[1], F_SETPIPE_SZ, 256 * 1024));
    printf("F_GETPIPE_SZ after: %d\n", fcntl(q[0], F_GETPIPE_SZ));
    errno = 0;
    r = fcntl(sv[0], F_GETPIPE_SZ);
    printf("F_GETPIPE_SZ on a socket: %d EBADF=%d\n", r, errno == EBADF);
    return 0;
}
