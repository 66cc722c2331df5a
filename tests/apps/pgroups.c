/* Process groups and sessions: setpgid(0, 0) gives the caller its own
 * group, kill(-pgid) reaches every member (grandchildren included),
 * setpgid(child, child) from the parent, waitpid(-pgid), setsid; and
 * rt_sigqueueinfo with a value. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t got_val = -1, got_code = 1;
static void on_usr1(int sig, siginfo_t *si, void *uc)
{
    (void)sig; (void)uc;
    got_val = si->si_value.sival_int;
    got_code = si->si_code;
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    alarm(20);
    int p[2];
    pipe(p);
    pid_t a = fork();
    if (a == 0) {
        /* A leader with two members that wait forever, holding the pipe. */
        alarm(30);
        int ok = setpgid(0, 0) == 0 && getpgrp() == getpid() && getpgid(0) == getpid();
        for (int i = 0; i < 2; i++)
            if (fork() == 0) {
                alarm(30); /* never left behind, even when kill(-pgid) fails */
                close(p[0]);
                for (;;)
                    pause();
            }
        close(p[0]);
        write(p[1], ok ? "y" : "n", 1);
        close(p[1]);
        for (;;)
            pause();
    }
    close(p[1]);
    char c = 0;
    read(p[0], &c, 1);
    printf("setpgid(0,0) own group: %d\n", c == 'y');
    printf("child's pgid is its pid: %d\n", getpgid(a) == a);
    printf("parent's group unchanged: %d\n", getpgrp() != a);
    printf("kill(-pgid, SIGKILL): %d\n", kill(-a, SIGKILL));
    int st;
    printf("leader killed: %d\n", waitpid(a, &st, 0) == a && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    /* EOF once both members are dead too (they held the write end). */
    printf("members killed (pipe EOF): %d\n", read(p[0], &c, 1) == 0);

    /* The shell's way: the parent puts the child in a new group. */
    pid_t b = fork();
    if (b == 0) {
        usleep(200000);
        _exit(getpgrp() == getpid() ? 5 : 6);
    }
    printf("setpgid(child, child): %d\n", setpgid(b, b));
    printf("waitpid(-pgid): %d\n", waitpid(-b, &st, 0) == b && WIFEXITED(st) && WEXITSTATUS(st) == 5);
    errno = 0;
    int r = waitpid(-b, &st, WNOHANG);
    printf("waitpid(-pgid) again: %d ECHILD=%d\n", r, errno == ECHILD);

    pid_t s = fork();
    if (s == 0) {
        pid_t sid = setsid();
        _exit(sid == getpid() && getsid(0) == getpid() && getpgrp() == getpid() ? 7 : 8);
    }
    waitpid(s, &st, 0);
    printf("setsid: %d\n", WIFEXITED(st) && WEXITSTATUS(st) == 7);
    errno = 0;
    r = setsid();
    printf("setsid as group leader again: %d\n", r == -1 ? errno == EPERM : getsid(0) == getpid());

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, NULL);
    union sigval v = {.sival_int = 42};
    r = sigqueue(getpid(), SIGUSR1, v);
    printf("sigqueue: %d value=%d si_code-is-SI_QUEUE=%d\n", r, got_val, got_code == SI_QUEUE);
    return 0;
}
