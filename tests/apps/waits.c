/* Waiting: select, pselect, ppoll on pipes; setitimer + sigsuspend and
 * pause; sigtimedwait and sigpending on a blocked signal. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/select.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t alarms;
static void on_alarm(int sig) { (void)sig; alarms++; }

static void arm(int ms)
{
    struct itimerval it = {{0, 0}, {0, ms * 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
}

int main(void)
{
    int p[2];
    pipe(p);
    fd_set rs;
    struct timeval tv = {0, 50000};
    FD_ZERO(&rs); FD_SET(p[0], &rs);
    printf("select empty: %d\n", select(p[0] + 1, &rs, NULL, NULL, &tv));
    write(p[1], "x", 1);
    FD_ZERO(&rs); FD_SET(p[0], &rs);
    tv.tv_sec = 1; tv.tv_usec = 0;
    int n = select(p[0] + 1, &rs, NULL, NULL, &tv);
    printf("select ready: %d isset=%d\n", n, FD_ISSET(p[0], &rs));
    struct timespec ts = {0, 20000000};
    FD_ZERO(&rs); FD_SET(p[0], &rs);
    fd_set ws; FD_ZERO(&ws); FD_SET(p[1], &ws);
    printf("pselect: %d r=%d w=%d\n", pselect(p[1] + 1, &rs, &ws, NULL, &ts, NULL), FD_ISSET(p[0], &rs), FD_ISSET(p[1], &ws));
    struct pollfd pf = {p[0], POLLIN, 0};
    printf("ppoll: %d revents=%d\n", ppoll(&pf, 1, &ts, NULL), pf.revents);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    sigset_t block, old, empty;
    sigemptyset(&block); sigaddset(&block, SIGALRM);
    sigemptyset(&empty);
    sigprocmask(SIG_BLOCK, &block, &old);
    arm(30);
    int r = sigsuspend(&empty);
    printf("sigsuspend: %d %s alarms=%d\n", r, r < 0 && errno == EINTR ? "EINTR" : "?", alarms);
    sigprocmask(SIG_SETMASK, &old, NULL);
    arm(30);
    r = pause();
    printf("pause: %d %s alarms=%d\n", r, r < 0 && errno == EINTR ? "EINTR" : "?", alarms);

    sigset_t u; sigemptyset(&u); sigaddset(&u, SIGUSR1);
    sigprocmask(SIG_BLOCK, &u, NULL);
    raise(SIGUSR1);
    sigset_t pend; sigpending(&pend);
    printf("pending usr1: %d\n", sigismember(&pend, SIGUSR1));
    siginfo_t info;
    printf("sigtimedwait: %d\n", sigtimedwait(&u, &info, &ts) == SIGUSR1);
    printf("timeout: %d %s\n", sigtimedwait(&u, &info, &ts), errno == EAGAIN ? "EAGAIN" : "?");
    return 0;
}
