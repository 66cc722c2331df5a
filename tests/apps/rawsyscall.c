/* Syscalls issued with the `syscall` instruction from inline assembly,
 * bypassing the C library entirely. */
#include <stdio.h>
#include <unistd.h>

static long raw3(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile ("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return ret;
}

int main(void)
{
    static const char msg[] = "raw write ok\n";
    long n = raw3(1, 1, (long)msg, sizeof msg - 1);
    long pid = raw3(39, 0, 0, 0);
    long bad = raw3(1, 1, 16, 4); /* write from an unmapped address: -EFAULT */
    long nosys = raw3(100000, 0, 0, 0);
    printf("wrote %ld, pid matches %d, bad pointer %ld, unknown %ld\n", n, pid == getpid(), bad, nosys);
    return 0;
}
