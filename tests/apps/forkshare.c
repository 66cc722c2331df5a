/* File-system changes cross fork: a child's creates, writes, renames and
 * unlinks are seen by its parent, the parent's by a child, and two
 * children writing at once lose nothing. Usage: forkshare DIR. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[512];

static char *p(const char *name) {
    static char buf[4][1024];
    static int n;
    char *b = buf[n++ & 3];
    snprintf(b, 1024, "%s/%s", dir, name);
    return b;
}

static void put(const char *name, const char *text, int flags) {
    int fd = open(p(name), O_WRONLY | O_CREAT | flags, 0644);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        perror(name);
        _exit(9);
    }
    close(fd);
}

static void show(const char *name) {
    char buf[256] = {0};
    int fd = open(p(name), O_RDONLY);
    if (fd < 0) {
        printf("%s: missing\n", name);
        return;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    printf("%s: %zd [%s]\n", name, n, n > 0 ? buf : "");
}

static void wait_ok(pid_t pid) {
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) {
        printf("child %d failed (status %x)\n", (int)pid, st);
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    snprintf(dir, sizeof dir, "%s/forkshare", argv[1]);
    mkdir(dir, 0755);
    put("pre", "made by parent before fork", O_TRUNC);
    fflush(stdout);

    /* 1. The child changes things; the parent looks after wait. */
    pid_t pid = fork();
    if (pid == 0) {
        mkdir(p("sub"), 0755);
        put("sub/f", "from child", O_TRUNC);
        put("r1", "renamed", O_TRUNC);
        rename(p("r1"), p("r2"));
        unlink(p("pre"));
        put("big", "", O_TRUNC);
        int fd = open(p("big"), O_WRONLY);
        static char blk[65536];
        memset(blk, 'b', sizeof blk);
        for (int i = 0; i < 4; i++) write(fd, blk, sizeof blk);
        close(fd);
        _exit(0);
    }
    wait_ok(pid);
    show("sub/f");
    show("r1");
    show("r2");
    show("pre");
    struct stat st;
    printf("big: %lld\n", stat(p("big"), &st) == 0 ? (long long)st.st_size : -1LL);

    /* 2. The parent changes things after fork; the child looks. */
    int pp[2];
    if (pipe(pp)) return 3;
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        char c;
        close(pp[1]);
        if (read(pp[0], &c, 1) != 1) _exit(4);
        show("late");
        show("sub/f");
        fflush(stdout);
        _exit(0);
    }
    close(pp[0]);
    put("late", "parent after fork", O_TRUNC);
    put("sub/f", "parent rewrote", O_TRUNC);
    if (write(pp[1], "x", 1) != 1) return 5;
    close(pp[1]);
    wait_ok(pid);

    /* 3. Two children create files at the same time. */
    fflush(stdout);
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            char name[64], text[64];
            for (int i = 0; i < 40; i++) {
                snprintf(name, sizeof name, "c%d_%02d", k, i);
                snprintf(text, sizeof text, "kid %d file %d", k, i);
                put(name, text, O_TRUNC);
            }
            _exit(0);
        }
    }
    wait_ok(kids[0]);
    wait_ok(kids[1]);
    int files = 0, good = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        int k, i;
        if (sscanf(e->d_name, "c%d_%d", &k, &i) == 2) {
            char want[64], got[64] = {0};
            snprintf(want, sizeof want, "kid %d file %d", k, i);
            files++;
            int fd = open(p(e->d_name), O_RDONLY);
            if (fd >= 0 && read(fd, got, sizeof got - 1) > 0 && !strcmp(got, want)) good++;
            if (fd >= 0) close(fd);
        }
    }
    if (d) closedir(d);
    printf("concurrent files: %d, correct: %d\n", files, good);

    /* 4. Only with a second argument "append": two children open one file
       with O_CREAT and append to it at the same time (O_APPEND); no record
       may be lost or overwritten. */
    if (argc < 3 || strcmp(argv[2], "append"))
        return 0;
    fflush(stdout);
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            int fd = open(p("log"), O_WRONLY | O_CREAT | O_APPEND, 0644);
            char rec[17];
            for (int i = 0; i < 200; i++) {
                snprintf(rec, sizeof rec, "kid %d rec %05d\n", k, i);
                if (write(fd, rec, 16) != 16) _exit(6);
            }
            close(fd);
            _exit(0);
        }
    }
    wait_ok(kids[0]);
    wait_ok(kids[1]);
    int recs[2] = {0, 0}, bad = 0;
    FILE *lf = fopen(p("log"), "r");
    char line[64];
    while (lf && fgets(line, sizeof line, lf)) {
        int k, i;
        if (strlen(line) == 16 && sscanf(line, "kid %d rec %d", &k, &i) == 2 && (k == 0 || k == 1))
            recs[k]++;
        else
            bad++;
    }
    if (lf) fclose(lf);
    printf("appended records: %d + %d, damaged: %d\n", recs[0], recs[1], bad);
    return 0;
}
