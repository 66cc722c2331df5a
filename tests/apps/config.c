/* Prints what config.json settings change for a program: argv, the
 * environment, cwd, host name, CPU counts (sysconf, sched_getaffinity,
 * /proc/cpuinfo), whether brk grows, the main stack's size and
 * permissions (/proc/self/maps), RLIMIT_STACK and glibc's default thread
 * stack size. Optional probes, driven by the environment (argv may come
 * from the config): CONFIG_ALLOC_MB=N maps and touches N MiB and prints
 * whether that worked; CONFIG_STACK_KB=N touches N KiB of the main stack;
 * CONFIG_SYSCALL=N makes syscall N without arguments. */
#define _GNU_SOURCE
#include <pthread.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

static int cpuinfo_count(void)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    int n = 0;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "processor", 9) == 0)
            n++;
    fclose(f);
    return n;
}

static void stack_line(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    if (!f) {
        printf("stack=?\n");
        return;
    }
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "[stack]")) {
            unsigned long lo, hi;
            char perms[8];
            if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3)
                printf("stack perms=%s kb=%lu\n", perms, (hi - lo) / 1024);
        }
    }
    fclose(f);
}

static int touch_stack(int kb)
{
    volatile char buf[1024];
    buf[0] = (char)kb;
    buf[1023] = (char)kb;
    if (kb <= 1)
        return buf[0];
    return touch_stack(kb - 1) + buf[1023] - (char)kb;
}

int main(int argc, char **argv)
{
    char cwd[4096];
    char host[256];
    cpu_set_t set;
    struct rlimit rl;

    printf("argc=%d\n", argc);
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    for (char **e = environ; *e; e++)
        printf("env %s\n", *e);
    printf("cwd=%s\n", getcwd(cwd, sizeof cwd) ? cwd : "?");
    gethostname(host, sizeof host);
    printf("hostname=%s\n", host);
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof set, &set);
    printf("nproc=%ld affinity=%d cpuinfo=%d\n", sysconf(_SC_NPROCESSORS_ONLN),
           CPU_COUNT(&set), cpuinfo_count());
    {
        /* The raw call: musl's sbrk refuses any increment by design. */
        unsigned long cur = syscall(SYS_brk, 0);
        unsigned long now = syscall(SYS_brk, cur + (1 << 20));
        printf("brk=%s\n", now >= cur + (1 << 20) ? "grows" : "fixed");
    }
    stack_line();
    getrlimit(RLIMIT_STACK, &rl);
    if (rl.rlim_cur == RLIM_INFINITY)
        printf("rlimit_stack=unlimited\n");
    else
        printf("rlimit_stack=%llu\n", (unsigned long long)rl.rlim_cur);
#ifdef __GLIBC__
    {
        pthread_attr_t a;
        size_t sz = 0;
        pthread_getattr_default_np(&a);
        pthread_attr_getstacksize(&a, &sz);
        printf("thread_stack=%zu\n", sz);
    }
#endif
    if (getenv("CONFIG_ALLOC_MB")) {
        size_t len = (size_t)atol(getenv("CONFIG_ALLOC_MB")) << 20;
        char *p = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            printf("alloc=failed\n");
        } else {
            memset(p, 1, len);
            printf("alloc=ok\n");
        }
    }
    if (getenv("CONFIG_SYSCALL")) {
        long r = syscall(atol(getenv("CONFIG_SYSCALL")));
        printf("syscall=%ld errno=%d\n", r, r < 0 ? errno : 0);
    }
    if (getenv("CONFIG_STACK_KB")) {
        printf("stack_touch=%d\n", touch_stack(atoi(getenv("CONFIG_STACK_KB"))));
    }
    return 0;
}
