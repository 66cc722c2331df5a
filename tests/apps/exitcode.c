/* Exits with argv[1], or dies by the signal named by argv[2] ("kill N"). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "kill") == 0) {
        fflush(stdout);
        raise(atoi(argv[2]));
        return 99;
    }
    printf("exiting with %s\n", argc > 1 ? argv[1] : "0");
    fflush(stdout);
    if (argc > 2)
        _exit(atoi(argv[1]));
    return argc > 1 ? atoi(argv[1]) : 0;
}
