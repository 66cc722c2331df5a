/* Syscall micro-benchmarks for bench/runtime.sh:
 *   runtime_loops getppid N | stat N PATH | openread N PATH
 * prints the mean nanoseconds per iteration (clock_gettime around the loop). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 3) { fprintf(stderr, "usage: runtime_loops getppid|stat|openread N [PATH]\n"); return 2; }
    long n = atol(argv[2]);
    const char *path = argc > 3 ? argv[3] : "/";
    static char buf[4096];
    double t0 = now();
    if (strcmp(argv[1], "getppid") == 0) {
        for (long i = 0; i < n; i++) getppid();
    } else if (strcmp(argv[1], "stat") == 0) {
        struct stat st;
        for (long i = 0; i < n; i++) if (stat(path, &st) < 0) { perror("stat"); return 1; }
    } else if (strcmp(argv[1], "openread") == 0) {
        for (long i = 0; i < n; i++) {
            int fd = open(path, O_RDONLY);
            if (fd < 0) { perror("open"); return 1; }
            if (read(fd, buf, sizeof buf) < 0) { perror("read"); return 1; }
            close(fd);
        }
    } else {
        return 2;
    }
    double t1 = now();
    printf("%.0f\n", (t1 - t0) / n);
    return 0;
}
