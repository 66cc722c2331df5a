/* Runs mount operations given as arguments and prints one line per
 * operation:
 *   m SRC TGT TYPE RO DATA  mount(2); SRC "-" = NULL, RO 0/1 (MS_RDONLY),
 *                           DATA "-" = NULL, "arr:HEX" = Mystikos's
 *                           {"key", HEX, NULL} array, else the string
 *   u TGT FLAGS             umount2(2) with FLAGS (a number)
 *   c PATH                  print the file's contents
 *   w PATH TEXT             write TEXT + newline to PATH (create/truncate)
 *   o PATH                  open PATH and keep it open (prints the fd)
 *   x FD                    close FD
 *   d PATH                  chdir
 *   F PATH                  fork; the child prints PATH's contents
 *   A PATH PROCS LINES      PROCS forked processes each append LINES lines
 *                           to PATH (O_APPEND, one write per line)
 *   D PATH                  open directory PATH and keep it open (prints the fd)
 *   C FD NAME               print the contents of NAME opened with openat(FD)
 *   R OLD NEW TARGET        a forked child renames OLD to NEW and leaves a
 *                           symlink to TARGET at OLD
 *   k PATH                  mkdir PATH
 *   S PATH                  print PATH's owner (lstat)
 *   O PATH UID GID          lchown
 *   l                       print /proc/self/mounts lines below /mnt
 *   L                       print /proc/self/mountinfo fields 5, 9, 10 below /mnt
 * Results are "ok" or the errno's name. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *ename(int e)
{
    switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EIO: return "EIO";
    case EBADF: return "EBADF";
    case EACCES: return "EACCES";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENODEV: return "ENODEV";
    case ENOTDIR: return "ENOTDIR";
    case ELOOP: return "ELOOP";
    case ESTALE: return "ESTALE";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case EROFS: return "EROFS";
    case ENOSYS: return "ENOSYS";
    case ENOKEY: return "ENOKEY";
    case EKEYREJECTED: return "EKEYREJECTED";
    default: return "E?";
    }
}

static void result(const char *op, int r)
{
    if (r < 0)
        printf("%s: %s\n", op, ename(errno));
    else
        printf("%s: ok\n", op);
}

static void cat(const char *path)
{
    int fd = open(path, O_RDONLY);
    char buf[4096];
    ssize_t n;
    if (fd < 0) {
        printf("cat %s: %s\n", path, ename(errno));
        return;
    }
    printf("cat %s:\n", path);
    fflush(stdout);
    while ((n = read(fd, buf, sizeof buf)) > 0)
        fwrite(buf, 1, n, stdout);
    if (n < 0)
        printf("[read: %s]\n", ename(errno));
    close(fd);
}

static void mounts(int info)
{
    FILE *f = fopen(info ? "/proc/self/mountinfo" : "/proc/self/mounts", "r");
    char line[1024];
    if (!f) {
        printf("mounts: %s\n", ename(errno));
        return;
    }
    while (fgets(line, sizeof line, f)) {
        if (!info) {
            char src[512], tgt[512], type[64], opts[128];
            if (sscanf(line, "%511s %511s %63s %127s", src, tgt, type, opts) == 4 &&
                strncmp(tgt, "/mnt", 4) == 0)
                printf("mount %s %s %s\n", tgt, type, strncmp(opts, "ro", 2) == 0 ? "ro" : "rw");
        } else {
            char f1[64], f2[64], f3[64], f4[512], tgt[512], opts[128], sep[8], type[64];
            if (sscanf(line, "%63s %63s %63s %511s %511s %127s %7s %63s", f1, f2, f3, f4, tgt,
                       opts, sep, type) == 8 &&
                strncmp(tgt, "/mnt", 4) == 0)
                printf("mountinfo %s %s %s %s\n", f4, tgt, sep, type);
        }
    }
    fclose(f);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        char op[600];
        const char *o = argv[i];
        if (!strcmp(o, "m") && i + 5 < argc) {
            const char *src = argv[i + 1], *tgt = argv[i + 2], *type = argv[i + 3];
            unsigned long flags = atoi(argv[i + 4]) ? MS_RDONLY : 0;
            const char *data = argv[i + 5];
            const char *arr[3] = {"key", NULL, NULL};
            const void *d = NULL;
            if (strncmp(data, "arr:", 4) == 0) {
                arr[1] = data + 4;
                d = arr;
            } else if (strcmp(data, "-") != 0) {
                d = data;
            }
            snprintf(op, sizeof op, "mount %s %s", type, tgt);
            result(op, mount(strcmp(src, "-") ? src : NULL, tgt, type, flags, d));
            i += 5;
        } else if (!strcmp(o, "u") && i + 2 < argc) {
            snprintf(op, sizeof op, "umount %s %s", argv[i + 1], argv[i + 2]);
            result(op, umount2(argv[i + 1], atoi(argv[i + 2])));
            i += 2;
        } else if (!strcmp(o, "c") && i + 1 < argc) {
            cat(argv[++i]);
        } else if (!strcmp(o, "w") && i + 2 < argc) {
            int fd = open(argv[i + 1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
            snprintf(op, sizeof op, "write %s", argv[i + 1]);
            if (fd < 0) {
                result(op, -1);
            } else {
                char buf[4096];
                int n = snprintf(buf, sizeof buf, "%s\n", argv[i + 2]);
                int r = write(fd, buf, n);
                int e = errno;
                close(fd);
                errno = e;
                result(op, r == n ? 0 : -1);
            }
            i += 2;
        } else if (!strcmp(o, "o") && i + 1 < argc) {
            int fd = open(argv[++i], O_RDONLY);
            if (fd < 0)
                printf("open %s: %s\n", argv[i], ename(errno));
            else
                printf("open %s: fd %d\n", argv[i], fd);
        } else if (!strcmp(o, "x") && i + 1 < argc) {
            snprintf(op, sizeof op, "close %s", argv[i + 1]);
            result(op, close(atoi(argv[++i])));
        } else if (!strcmp(o, "d") && i + 1 < argc) {
            snprintf(op, sizeof op, "chdir %s", argv[i + 1]);
            result(op, chdir(argv[++i]));
        } else if (!strcmp(o, "F") && i + 1 < argc) {
            const char *path = argv[++i];
            fflush(stdout);
            pid_t pid = fork();
            if (pid == 0) {
                printf("child ");
                cat(path);
                fflush(stdout);
                _exit(0);
            }
            int st = 0;
            waitpid(pid, &st, 0);
            printf("child exited %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        } else if (!strcmp(o, "A") && i + 3 < argc) {
            const char *path = argv[i + 1];
            int procs = atoi(argv[i + 2]), lines = atoi(argv[i + 3]), failed = 0;
            fflush(stdout);
            for (int p = 0; p < procs; p++) {
                if (fork() == 0) {
                    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
                    char buf[64];
                    for (int l = 0; fd >= 0 && l < lines; l++) {
                        int n = snprintf(buf, sizeof buf, "process %d line %d\n", p, l);
                        if (write(fd, buf, n) != n)
                            _exit(1);
                    }
                    _exit(fd < 0);
                }
            }
            for (int p = 0; p < procs; p++) {
                int st = 0;
                wait(&st);
                failed += !WIFEXITED(st) || WEXITSTATUS(st);
            }
            printf("append %s: %d processes failed\n", path, failed);
            i += 3;
        } else if (!strcmp(o, "D") && i + 1 < argc) {
            int fd = open(argv[++i], O_RDONLY | O_DIRECTORY);
            if (fd < 0)
                printf("opendir %s: %s\n", argv[i], ename(errno));
            else
                printf("opendir %s: fd %d\n", argv[i], fd);
        } else if (!strcmp(o, "C") && i + 2 < argc) {
            int fd = openat(atoi(argv[i + 1]), argv[i + 2], O_RDONLY);
            char buf[4096];
            ssize_t n;
            if (fd < 0) {
                printf("catat %s %s: %s\n", argv[i + 1], argv[i + 2], ename(errno));
            } else {
                printf("catat %s %s:\n", argv[i + 1], argv[i + 2]);
                fflush(stdout);
                while ((n = read(fd, buf, sizeof buf)) > 0)
                    fwrite(buf, 1, n, stdout);
                close(fd);
            }
            i += 2;
        } else if (!strcmp(o, "R") && i + 3 < argc) {
            const char *old = argv[i + 1], *new = argv[i + 2], *target = argv[i + 3];
            fflush(stdout);
            pid_t pid = fork();
            if (pid == 0)
                _exit(rename(old, new) != 0 || symlink(target, old) != 0);
            int st = 0;
            waitpid(pid, &st, 0);
            printf("child renamed %s: %s\n", old,
                   WIFEXITED(st) && WEXITSTATUS(st) == 0 ? "ok" : "failed");
            i += 3;
        } else if (!strcmp(o, "k") && i + 1 < argc) {
            snprintf(op, sizeof op, "mkdir %s", argv[i + 1]);
            result(op, mkdir(argv[++i], 0755));
        } else if (!strcmp(o, "S") && i + 1 < argc) {
            struct stat st;
            if (lstat(argv[++i], &st) < 0)
                printf("stat %s: %s\n", argv[i], ename(errno));
            else
                printf("stat %s: uid %u gid %u\n", argv[i], st.st_uid, st.st_gid);
        } else if (!strcmp(o, "O") && i + 3 < argc) {
            snprintf(op, sizeof op, "chown %s %s %s", argv[i + 1], argv[i + 2], argv[i + 3]);
            result(op, lchown(argv[i + 1], atoi(argv[i + 2]), atoi(argv[i + 3])));
            i += 3;
        } else if (!strcmp(o, "l")) {
            mounts(0);
        } else if (!strcmp(o, "L")) {
            mounts(1);
        } else {
            printf("bad operation %s\n", o);
            return 2;
        }
        fflush(stdout);
    }
    return 0;
}
