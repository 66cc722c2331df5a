/* Signals arriving while the program makes syscalls in a loop (through
 * rewritten sites and the SIGSYS path alike): a child process sends
 * SIGUSR1 to its parent many times; the parent's handler makes syscalls
 * too and uses floating point; the parent checks its state afterwards. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t got;
static volatile double acc;

static void on_usr1(int sig)
{
    (void)sig;
    got++;
    acc += 0.5;
    getpid();
}

static volatile sig_atomic_t ticks;

static void on_alarm(int sig)
{
    (void)sig;
    for (int i = 0; i < 10; i++)
        getppid(); /* syscalls from a handler, through rewritten sites */
    ticks++;
}

int main(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    pid_t parent = getpid();
    pid_t child = fork();
    if (child == 0) {
        for (int i = 0; i < 2000; i++) {
            kill(parent, SIGUSR1);
            if (i % 64 == 0)
                usleep(100);
        }
        _exit(0);
    }
    int fd = open("/dev/null", O_WRONLY);
    double x = 1.0;
    long calls = 0;
    struct stat st;
    for (int i = 0; i < 200000; i++) {
        x = x * 1.0000001 + 0.25;
        if (getppid() <= 0 || write(fd, "x", 1) != 1 || fstat(fd, &st) != 0) {
            printf("syscall failed at %d\n", i);
            return 1;
        }
        calls += 3;
        if (i % 10000 == 0) {
            int status;
            if (waitpid(child, &status, WNOHANG) == child)
                child = -1;
        }
    }
    if (child > 0)
        waitpid(child, NULL, 0);
    /* A fast interval timer whose handler makes syscalls, while the main
     * loop makes syscalls too. */
    struct sigaction ta;
    memset(&ta, 0, sizeof ta);
    ta.sa_handler = on_alarm;
    ta.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &ta, NULL);
    struct itimerval it = {{0, 200}, {0, 200}};
    setitimer(ITIMER_REAL, &it, NULL);
    for (int i = 0; i < 100000; i++) {
        if (getppid() <= 0 || fstat(fd, &st) != 0) {
            printf("syscall failed under the timer at %d\n", i);
            return 1;
        }
        x = x * 1.0000001 + 0.25;
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    printf("calls=%ld fp-ok=%d handler-ran=%d fp-in-handler-ok=%d timer-ran=%d\n", calls, x > 1.0, got > 0, acc == got * 0.5, ticks > 0);
    return 0;
}
