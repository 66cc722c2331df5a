/* File I/O in the directory given as argv[1]: create, write, read back,
 * lseek/pread/pwrite, append, truncate, rename, link, symlink, readdir,
 * stat, unlink, mkdir/rmdir, chdir/getcwd-relative work. Prints only
 * deterministic facts so the output can be compared with a native run. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define CHECK(x) do { if ((x) < 0) { printf("FAIL %s: %s\n", #x, strerror(errno)); exit(1); } } while (0)

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) { printf("opendir %s: %s\n", dir, strerror(errno)); return; }
    char *names[256]; int n = 0; struct dirent *e;
    while ((e = readdir(d)) && n < 256) {
        char t = e->d_type == DT_DIR ? 'd' : e->d_type == DT_LNK ? 'l' : e->d_type == DT_REG ? 'f' : '?';
        char *s = malloc(strlen(e->d_name) + 3);
        sprintf(s, "%s:%c", e->d_name, t);
        names[n++] = s;
    }
    closedir(d);
    qsort(names, n, sizeof names[0], cmp);
    printf("list %s:", dir);
    for (int i = 0; i < n; i++) { printf(" %s", names[i]); free(names[i]); }
    printf("\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) { printf("usage: fileio DIR\n"); return 2; }
    CHECK(chdir(argv[1]));
    CHECK(mkdir("work", 0755));
    CHECK(chdir("work"));
    int fd = open("a.txt", O_CREAT | O_EXCL | O_RDWR, 0640);
    CHECK(fd);
    const char *msg = "hello, file system\n";
    printf("write %zd\n", write(fd, msg, strlen(msg)));
    CHECK(lseek(fd, 0, SEEK_SET));
    char buf[256] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    printf("read %zd: %s", n, buf);
    printf("pwrite %zd\n", pwrite(fd, "HELLO", 5, 0));
    memset(buf, 0, sizeof buf);
    printf("pread %zd: %s", pread(fd, buf, sizeof buf - 1, 0), buf);
    printf("seek end %ld\n", (long)lseek(fd, 0, SEEK_END));
    struct stat st;
    CHECK(fstat(fd, &st));
    printf("fstat size=%ld reg=%d mode=%o\n", (long)st.st_size, S_ISREG(st.st_mode), st.st_mode & 0777);
    CHECK(ftruncate(fd, 5));
    CHECK(fstat(fd, &st));
    printf("truncated size=%ld\n", (long)st.st_size);
    CHECK(close(fd));

    fd = open("a.txt", O_WRONLY | O_APPEND);
    CHECK(fd);
    CHECK(write(fd, " world\n", 7));
    CHECK(close(fd));
    FILE *f = fopen("a.txt", "r");
    memset(buf, 0, sizeof buf);
    fgets(buf, sizeof buf, f);
    fclose(f);
    printf("appended: %s", buf);

    CHECK(rename("a.txt", "b.txt"));
    printf("old after rename: %s\n", access("a.txt", F_OK) == 0 ? "exists" : strerror(errno));
    CHECK(stat("b.txt", &st));
    printf("stat b.txt size=%ld nlink=%ld\n", (long)st.st_size, (long)st.st_nlink);
    CHECK(link("b.txt", "c.txt"));
    CHECK(stat("b.txt", &st));
    printf("after link nlink=%ld\n", (long)st.st_nlink);
    CHECK(symlink("b.txt", "s.lnk"));
    char target[64] = {0};
    printf("readlink %zd %s\n", readlink("s.lnk", target, sizeof target - 1), target);
    CHECK(lstat("s.lnk", &st));
    printf("lstat link=%d\n", S_ISLNK(st.st_mode));
    CHECK(stat("s.lnk", &st));
    printf("stat through link reg=%d size=%ld\n", S_ISREG(st.st_mode), (long)st.st_size);
    CHECK(mkdir("sub", 0700));
    CHECK(stat("sub", &st));
    printf("sub dir=%d mode=%o\n", S_ISDIR(st.st_mode), st.st_mode & 0777);
    fd = open("sub/deep.txt", O_CREAT | O_WRONLY | O_TRUNC, 0600);
    CHECK(fd);
    CHECK(write(fd, "x", 1));
    CHECK(close(fd));
    CHECK(chmod("sub/deep.txt", 0644));
    CHECK(stat("sub/deep.txt", &st));
    printf("chmod mode=%o\n", st.st_mode & 0777);
    list(".");
    list("sub");
    CHECK(chdir("sub"));
    CHECK(stat("../b.txt", &st));
    printf("dotdot stat size=%ld\n", (long)st.st_size);
    int dfd = open("..", O_RDONLY | O_DIRECTORY);
    CHECK(dfd);
    CHECK(fstatat(dfd, "c.txt", &st, 0));
    printf("fstatat size=%ld\n", (long)st.st_size);
    CHECK(renameat(dfd, "c.txt", dfd, "d.txt"));
    CHECK(unlinkat(dfd, "d.txt", 0));
    CHECK(close(dfd));
    CHECK(chdir(".."));
    CHECK(unlink("sub/deep.txt"));
    CHECK(rmdir("sub"));
    CHECK(unlink("s.lnk"));
    CHECK(unlink("b.txt"));
    list(".");
    CHECK(chdir(".."));
    CHECK(rmdir("work"));
    printf("cleanup ok: %s\n", access("work", F_OK) == 0 ? "still there" : strerror(errno));
    return 0;
}
