/* No runtime lock is held across a blocking call: for each blocking family
 * a thread waits (read and write on a pipe, accept, recv, poll, select,
 * epoll_wait, a futex through pthread_cond_wait, waitpid, nanosleep) while
 * the main thread maps and unmaps memory, opens files, forks and reaps a
 * child; then the main thread releases the waiter. A lock held across the
 * wait stops the main thread forever (the watchdog alarm then kills the
 * program and the output differs from the native run). */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int p[2], sv[2], lsock, ep;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int flag;
static volatile int result;
static pid_t waited_child;

static void *t_read(void *a) { char c = 0; result = read(p[0], &c, 1) == 1 && c == 'r'; return a; }
static void *t_write(void *a)
{
    /* The pipe is full: this write waits until the main thread drains it. */
    char c = 'w';
    result = write(p[1], &c, 1) == 1;
    return a;
}
static void *t_accept(void *a) { int c = accept(lsock, NULL, NULL); result = c >= 0; if (c >= 0) close(c); return a; }
static void *t_recv(void *a) { char c = 0; result = recv(sv[0], &c, 1, 0) == 1 && c == 's'; return a; }
static void *t_poll(void *a)
{
    struct pollfd pf = {p[0], POLLIN, 0};
    int r;
    while ((r = poll(&pf, 1, 30000)) < 0 && errno == EINTR)
        ;
    result = r == 1;
    return a;
}
static void *t_select(void *a)
{
    fd_set rs; FD_ZERO(&rs); FD_SET(p[0], &rs);
    struct timeval tv = {30, 0};
    result = select(p[0] + 1, &rs, NULL, NULL, &tv) == 1;
    return a;
}
static void *t_epoll(void *a)
{
    /* Linux may end epoll_wait with EINTR while another thread forks
     * (seen natively with musl): wait again then. */
    struct epoll_event e;
    int r;
    while ((r = epoll_wait(ep, &e, 1, 30000)) < 0 && errno == EINTR)
        ;
    result = r == 1;
    return a;
}
static void *t_futex(void *a)
{
    pthread_mutex_lock(&mu);
    while (!flag)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    result = 1;
    return a;
}
static void *t_wait(void *a) { int st; result = waitpid(waited_child, &st, 0) == waited_child && WIFEXITED(st) && WEXITSTATUS(st) == 3; return a; }
static void *t_sleep(void *a) { struct timespec ts = {0, 300000000}; result = nanosleep(&ts, NULL) == 0; return a; }

/* What the main thread does while the other one waits. */
static int busy(void)
{
    for (int i = 0; i < 300; i++) {
        void *m = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return 0;
        memset(m, i, 65536);
        munmap(m, 65536);
        if (i % 30 == 0) {
            int fd = open("/bin", O_RDONLY | O_DIRECTORY);
            if (fd < 0)
                return 0;
            close(fd);
            pid_t c = fork();
            if (c == 0)
                _exit(0);
            if (waitpid(c, NULL, 0) != c)
                return 0;
        }
    }
    return 1;
}

static void run(const char *name, void *(*fn)(void *), void (*release)(void))
{
    pthread_t t;
    result = 0;
    pthread_create(&t, NULL, fn, NULL);
    struct timespec ts = {0, 50000000};
    nanosleep(&ts, NULL);
    int ok = busy();
    release();
    pthread_join(t, NULL);
    printf("%s: main-thread-ok=%d waiter-ok=%d\n", name, ok, result);
}

static void rel_pipe(void) { write(p[1], "r", 1); }
static void rel_drain(void)
{
    char buf[4096];
    while (read(p[0], buf, sizeof buf) == sizeof buf)
        ;
}
/* An abstract socket address (no file), unique to this process. */
static struct sockaddr_un addr;
static socklen_t addr_len;
static void set_addr(void)
{
    addr.sun_family = AF_UNIX;
    int n = snprintf(addr.sun_path + 1, sizeof addr.sun_path - 1, "myst-blocklock-%d", (int)getpid());
    addr_len = offsetof(struct sockaddr_un, sun_path) + 1 + n;
}
static void rel_connect(void)
{
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    connect(c, (struct sockaddr *)&addr, addr_len);
    close(c);
}
static void rel_sock(void) { send(sv[1], "s", 1, 0); }
static void rel_futex(void) { pthread_mutex_lock(&mu); flag = 1; pthread_cond_signal(&cv); pthread_mutex_unlock(&mu); }
static void rel_child(void) { }
static void rel_none(void) { }

static void empty_pipe(void)
{
    char buf[4096];
    int fl = fcntl(p[0], F_GETFL);
    fcntl(p[0], F_SETFL, fl | O_NONBLOCK);
    while (read(p[0], buf, sizeof buf) > 0)
        ;
    fcntl(p[0], F_SETFL, fl);
}

/* Threads busy in the runtime (open, stat, mmap, getdents) while the main
 * thread forks: each child must find the runtime usable (no lock held by
 * a thread it does not have). */
static volatile int stop_busy;
static void *t_churn(void *a)
{
    char buf[4096];
    while (!stop_busy) {
        int fd = open("/bin", O_RDONLY | O_DIRECTORY);
        if (fd >= 0) {
            syscall(SYS_getdents64, fd, buf, sizeof buf);
            close(fd);
        }
        void *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m != MAP_FAILED)
            munmap(m, 8192);
    }
    return a;
}

static void fork_while_busy(void)
{
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, t_churn, NULL);
    int ok = 0;
    for (int i = 0; i < 100; i++) {
        pid_t c = fork();
        if (c == 0) {
            alarm(30); /* a child that hangs is never left behind */
            void *m = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            int fd = open("/bin", O_RDONLY | O_DIRECTORY);
            _exit(m != MAP_FAILED && fd >= 0 ? 0 : 1);
        }
        int st;
        if (waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0)
            ok++;
    }
    stop_busy = 1;
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    printf("fork while threads run syscalls: children-ok=%d\n", ok);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    alarm(60);
    pipe(p);
    run("read", t_read, rel_pipe);
    run("poll", t_poll, rel_pipe);
    empty_pipe();
    run("select", t_select, rel_pipe);
    empty_pipe();
    ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN};
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
    run("epoll_wait", t_epoll, rel_pipe);
    empty_pipe();
    /* Fill the pipe so the next write blocks. */
    int fl = fcntl(p[1], F_GETFL);
    fcntl(p[1], F_SETFL, fl | O_NONBLOCK);
    char buf[4096];
    memset(buf, 'f', sizeof buf);
    while (write(p[1], buf, sizeof buf) > 0)
        ;
    while (write(p[1], buf, 1) > 0)
        ;
    fcntl(p[1], F_SETFL, fl);
    run("write", t_write, rel_drain);
    empty_pipe();

    set_addr();
    lsock = socket(AF_UNIX, SOCK_STREAM, 0);
    bind(lsock, (struct sockaddr *)&addr, addr_len);
    listen(lsock, 4);
    run("accept", t_accept, rel_connect);
    close(lsock);
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    run("recv", t_recv, rel_sock);
    run("futex", t_futex, rel_futex);
    waited_child = fork();
    if (waited_child == 0) {
        struct timespec ts = {0, 400000000};
        nanosleep(&ts, NULL);
        _exit(3);
    }
    run("waitpid", t_wait, rel_child);
    run("nanosleep", t_sleep, rel_none);
    fork_while_busy();
    return 0;
}
