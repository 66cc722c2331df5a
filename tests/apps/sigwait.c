/* Signals and waits as on Linux: the temporary masks of pselect6, ppoll,
 * epoll_pwait and sigsuspend are applied atomically with the wait (a
 * signal pending before the call is delivered, one arriving during the wait
 * interrupts it) and the old mask is back after the handler; plain select,
 * poll and read are interrupted by a handled signal (SA_RESTART restarts
 * read); SA_RESETHAND runs a handler once; a SIGSYS sent with kill is a
 * signal (handled, ignored, or fatal by default). The pattern of make -j:
 * SIGCHLD blocked, children exit, pselect6 with a mask that unblocks it.
 * Every wait has a 20 s timeout: a hang shows up as a result of 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t chld, chld_code_ok, usr1, alrm, sys_count, once;
static pid_t kids[2];
static int wfd = -1;

static void on_chld(int sig, siginfo_t *si, void *uc)
{
    (void)sig; (void)uc;
    chld++;
    if (si->si_code == CLD_EXITED && (si->si_pid == kids[0] || si->si_pid == kids[1]))
        chld_code_ok = 1;
}
static void on_usr1(int sig) { (void)sig; usr1++; }
static void on_alrm(int sig) { (void)sig; alrm++; if (wfd >= 0) write(wfd, "z", 1); }
static void on_sys(int sig) { (void)sig; sys_count++; }
static void on_once(int sig) { (void)sig; once++; }

static const char *res(int r) { return r < 0 ? (errno == EINTR ? "-1 EINTR" : strerror(errno)) : r == 0 ? "0 (timeout)" : "ready"; }

static void arm_ms(int ms)
{
    struct itimerval it = {{0, 0}, {ms / 1000, (ms % 1000) * 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
}

static int blocked(int sig)
{
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    return sigismember(&cur, sig);
}

static void spawn_two(void)
{
    for (int i = 0; i < 2; i++) {
        kids[i] = fork();
        if (kids[i] == 0)
            _exit(i);
    }
}

static void reap(void)
{
    for (int i = 0; i < 2; i++)
        waitpid(kids[i], NULL, 0);
}

static void handler(int sig, void (*h)(int), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h;
    sa.sa_flags = flags;
    sigaction(sig, &sa, NULL);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_chld;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGCHLD, &sa, NULL);
    sigset_t chld_set, none;
    sigemptyset(&chld_set);
    sigaddset(&chld_set, SIGCHLD);
    sigemptyset(&none);

    /* make -j: SIGCHLD blocked, both children exit, pselect6 unblocks it. */
    sigprocmask(SIG_BLOCK, &chld_set, NULL);
    spawn_two();
    usleep(100000);
    int p[2];
    pipe(p);
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(p[0], &rs);
    struct timespec ts = {20, 0};
    int r = pselect(p[0] + 1, &rs, NULL, NULL, &ts, &none);
    printf("pselect (pending SIGCHLD): %s handled=%d siginfo-ok=%d blocked-after=%d\n", res(r), chld > 0,
           chld_code_ok, blocked(SIGCHLD));
    reap();

    /* The same with the children exiting during the wait. */
    chld = chld_code_ok = 0;
    spawn_two();
    FD_ZERO(&rs);
    FD_SET(p[0], &rs);
    r = pselect(p[0] + 1, &rs, NULL, NULL, &ts, &none);
    printf("pselect (SIGCHLD during): %s handled=%d blocked-after=%d\n", res(r), chld > 0, blocked(SIGCHLD));
    reap();

    chld = 0;
    spawn_two();
    usleep(100000);
    struct pollfd pf = {p[0], POLLIN, 0};
    r = ppoll(&pf, 1, &ts, &none);
    printf("ppoll (pending SIGCHLD): %s handled=%d blocked-after=%d\n", res(r), chld > 0, blocked(SIGCHLD));
    reap();

    chld = 0;
    spawn_two();
    r = ppoll(&pf, 1, &ts, &none);
    printf("ppoll (SIGCHLD during): %s handled=%d\n", res(r), chld > 0);
    reap();

    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 7};
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
    chld = 0;
    spawn_two();
    usleep(100000);
    struct epoll_event out[4];
    r = epoll_pwait(ep, out, 4, 20000, &none);
    printf("epoll_pwait (pending SIGCHLD): %s handled=%d blocked-after=%d\n", res(r), chld > 0, blocked(SIGCHLD));
    reap();
    chld = 0;
    spawn_two();
    r = epoll_pwait(ep, out, 4, 20000, &none);
    printf("epoll_pwait (SIGCHLD during): %s handled=%d\n", res(r), chld > 0);
    reap();
    /* A large maxevents is accepted (Linux: up to INT_MAX / 12). */
    static struct epoll_event many[10128];
    write(p[1], "x", 1);
    r = epoll_wait(ep, many, 10128, 0);
    printf("epoll_wait maxevents=10128: %d data=%llu\n", r, r > 0 ? (unsigned long long)many[0].data.u64 : 0ULL);
    char c;
    read(p[0], &c, 1);
    errno = 0;
    r = epoll_wait(ep, many, 0, 0);
    printf("epoll_wait maxevents=0: %d %s\n", r, strerror(errno));

    /* sigsuspend: the handler runs, and the old mask is back afterwards. */
    chld = 0;
    spawn_two();
    r = sigsuspend(&none);
    printf("sigsuspend: %s handled=%d blocked-after=%d\n", res(r), chld > 0, blocked(SIGCHLD));
    reap();
    sigprocmask(SIG_UNBLOCK, &chld_set, NULL);

    /* Plain select/poll with SIGALRM unblocked: interrupted by the handler. */
    handler(SIGALRM, on_alrm, 0);
    arm_ms(50);
    FD_ZERO(&rs);
    FD_SET(p[0], &rs);
    struct timeval tv = {20, 0};
    r = select(p[0] + 1, &rs, NULL, NULL, &tv);
    printf("select: %s alarms=%d\n", res(r), alrm);
    arm_ms(50);
    r = poll(&pf, 1, 20000);
    printf("poll: %s alarms=%d\n", res(r), alrm);
    arm_ms(50);
    r = select(0, NULL, NULL, NULL, &tv);
    printf("select no fds: %s alarms=%d\n", res(r), alrm);
    arm_ms(50);
    r = poll(NULL, 0, 20000);
    printf("poll no fds: %s alarms=%d\n", res(r), alrm);

    /* read() on an empty pipe: EINTR without SA_RESTART; restarted with it
     * (the handler writes the byte the restarted read gets). */
    wfd = p[1];
    arm_ms(50);
    r = read(p[0], &c, 1);
    printf("read without SA_RESTART: %s alarms=%d\n", r < 0 ? res(r) : "1 byte", alrm);
    read(p[0], &c, 1); /* the handler's byte */
    handler(SIGALRM, on_alrm, SA_RESTART);
    arm_ms(50);
    r = read(p[0], &c, 1);
    printf("read with SA_RESTART: %d byte=%c alarms=%d\n", r, r == 1 ? c : '?', alrm);
    wfd = -1;
    struct timespec ns = {20, 0}, rem = {0, 0};
    arm_ms(50);
    r = nanosleep(&ns, &rem);
    printf("nanosleep: %s rem>10s=%d alarms=%d\n", res(r), rem.tv_sec > 10, alrm);

    /* A handled signal pending before ppoll, unblocked only by its mask. */
    sigset_t usr1_set;
    sigemptyset(&usr1_set);
    sigaddset(&usr1_set, SIGUSR1);
    handler(SIGUSR1, on_usr1, 0);
    sigprocmask(SIG_BLOCK, &usr1_set, NULL);
    raise(SIGUSR1);
    r = ppoll(&pf, 1, &ts, &none);
    printf("ppoll (pending SIGUSR1): %s usr1=%d blocked-after=%d\n", res(r), usr1, blocked(SIGUSR1));
    sigprocmask(SIG_UNBLOCK, &usr1_set, NULL);

    /* SA_RESETHAND (LTP rt_sigaction01): flags 0 first, then one-shot. */
    handler(SIGUSR2, on_once, 0);
    raise(SIGUSR2);
    handler(SIGUSR2, on_once, SA_RESETHAND);
    raise(SIGUSR2);
    struct sigaction now;
    sigaction(SIGUSR2, NULL, &now);
    printf("SA_RESETHAND: ran=%d reset-to-default=%d\n", once, now.sa_handler == SIG_DFL);
    handler(SIGUSR2, on_once, SA_RESETHAND | SA_SIGINFO);
    raise(SIGUSR2);
    sigaction(SIGUSR2, NULL, &now);
    printf("SA_RESETHAND|SA_SIGINFO: ran=%d reset-to-default=%d\n", once, now.sa_handler == SIG_DFL);
    pid_t k = fork();
    if (k == 0) {
        raise(SIGUSR2); /* default now: ends the child */
        _exit(0);
    }
    int st;
    waitpid(k, &st, 0);
    printf("second SIGUSR2 after reset: signaled=%d sig=%d\n", WIFSIGNALED(st), WIFSIGNALED(st) ? WTERMSIG(st) : 0);

    /* SIGSYS sent with kill: a signal like any other. */
    handler(SIGSYS, on_sys, 0);
    r = kill(getpid(), SIGSYS);
    printf("kill SIGSYS handled: %d count=%d\n", r, sys_count);
    handler(SIGSYS, SIG_IGN, 0);
    r = kill(getpid(), SIGSYS);
    printf("kill SIGSYS ignored: %d count=%d\n", r, sys_count);
    handler(SIGSYS, SIG_DFL, 0);
    k = fork();
    if (k == 0) {
        kill(getpid(), SIGSYS);
        usleep(200000);
        _exit(0);
    }
    waitpid(k, &st, 0);
    printf("kill SIGSYS default: signaled=%d sig=%d\n", WIFSIGNALED(st), WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return 0;
}
