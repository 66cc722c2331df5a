/* Robustness: thousands of syscalls with random numbers and random
 * arguments (garbage pointers, huge lengths, bad descriptors). Calls that
 * would end, block or unmap the program are left out. Whatever the
 * results, the runtime must answer each call and the program must finish. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long state = 88172645463325252ull;
static unsigned long long rnd(void)
{
    state ^= state << 13; state ^= state >> 7; state ^= state << 17;
    return state;
}

static long raw6(long n, long a, long b, long c, long d, long e, long f)
{
    long ret;
    register long r10 __asm__("r10") = d, r8 __asm__("r8") = e, r9 __asm__("r9") = f;
    __asm__ volatile ("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9) : "rcx", "r11", "memory");
    return ret;
}

/* Left out: calls that end, block, stop or unmap the program, change its
 * signal handling, write to its stdout/stderr, or replace its descriptors
 * 0-2. File-system calls stay in: the test runs this from an in-memory
 * (CPIO) root. */
static const int skip[] = {
    0, 1, 3, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23, 25, 28, 32, 33, 34, 35, 37, 38,
    40, 41, 42, 43, 44, 45, 46, 47, 53, 56, 57, 58, 59, 60, 61, 62, 72, 101, 105, 106, 109, 112, 113,
    114, 117, 119, 122, 123, 128, 130, 131, 132, 141, 157, 158, 160, 165, 166, 169, 200, 202, 203, 213,
    218, 230, 231, 232, 234, 235, 247, 261, 270, 271, 281, 284, 288, 290, 291, 292, 293, 295, 296, 302,
    326, 327, 328, 334, 435, 436, 437
};

static int skipped(long n)
{
    for (unsigned i = 0; i < sizeof skip / sizeof skip[0]; i++)
        if (skip[i] == n) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    int count = argc > 1 ? atoi(argv[1]) : 20000;
    if (argc > 2)
        state ^= strtoull(argv[2], NULL, 10) * 0x9E3779B97F4A7C15ull;
    static char buf[65536];
    long done = 0, errors = 0;
    for (int i = 0; i < count; i++) {
        long n = rnd() % 460;
        if (skipped(n)) continue;
        long a[6];
        for (int j = 0; j < 6; j++) {
            switch (rnd() % 6) {
            case 0: a[j] = rnd(); break;                          /* garbage */
            case 1: a[j] = (long)(buf + rnd() % sizeof buf); break; /* valid buffer */
            case 2: a[j] = rnd() % 64; break;                      /* small numbers / fds */
            case 3: a[j] = -(long)(rnd() % 200); break;            /* negatives, AT_FDCWD */
            case 4: a[j] = (long)"/tmp"; break;                    /* a path */
            default: a[j] = 1L << (rnd() % 64); break;             /* big */
            }
        }
        long r = raw6(n, a[0], a[1], a[2], a[3], a[4], a[5]);
        done++;
        if (r < 0 && r > -4096) errors++;
    }
    printf("sysfuzz finished: %ld calls\n", done);
    return 0;
}
