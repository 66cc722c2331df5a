/* Guest signal handlers: a handler that makes syscalls and returns, a
 * signal blocked with sigprocmask and delivered when unblocked, SIG_IGN. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t count;

static void handler(int sig)
{
    char msg[64];
    int n = snprintf(msg, sizeof msg, "in handler for %d, pid ok %d\n", sig, getpid() > 0);
    write(1, msg, n);
    count++;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL) < 0) { perror("sigaction"); return 1; }
    raise(SIGUSR1);
    printf("after raise: count=%d\n", count);
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, &old);
    raise(SIGUSR1);
    printf("while blocked: count=%d\n", count);
    fflush(stdout);
    sigprocmask(SIG_SETMASK, &old, NULL);
    printf("after unblock: count=%d\n", count);
    struct sigaction cur;
    sigaction(SIGUSR1, NULL, &cur);
    printf("handler readback ok: %d\n", cur.sa_handler == handler);
    signal(SIGUSR2, SIG_IGN);
    raise(SIGUSR2);
    printf("ignored SIGUSR2, still running\n");
    return 0;
}
