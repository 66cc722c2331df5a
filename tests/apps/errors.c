/* Error paths: each line names a call and the errno it got. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *name(int e)
{
    switch (e) {
    case 0: return "OK";
    case ENOENT: return "ENOENT";
    case EEXIST: return "EEXIST";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case ENOTEMPTY: return "ENOTEMPTY";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case EFAULT: return "EFAULT";
    case ELOOP: return "ELOOP";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ESPIPE: return "ESPIPE";
    default: return "other";
    }
}

#define T(label, call) do { errno = 0; long r_ = (long)(call); printf("%-28s %s\n", label, r_ < 0 ? name(errno) : "OK"); } while (0)

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    if (chdir(argv[1]) < 0) { perror("chdir"); return 1; }
    mkdir("e", 0755);
    close(open("e/file", O_CREAT | O_WRONLY, 0644));
    mkdir("e/dir", 0755);
    close(open("e/dir/inner", O_CREAT | O_WRONLY, 0644));
    symlink("loop2", "e/loop1");
    symlink("loop1", "e/loop2");
    char longname[400];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;

    T("open missing", open("e/missing", O_RDONLY));
    T("open missing/x", open("e/missing/x", O_RDONLY));
    T("stat missing", ({ struct stat s; stat("e/nope", &s); }));
    T("mkdir existing", mkdir("e/dir", 0755));
    T("open O_EXCL existing", open("e/file", O_CREAT | O_EXCL | O_WRONLY, 0644));
    T("open file/x", open("e/file/x", O_RDONLY));
    T("mkdir file/x", mkdir("e/file/x", 0755));
    T("open dir O_WRONLY", open("e/dir", O_WRONLY));
    T("open file O_DIRECTORY", open("e/file", O_RDONLY | O_DIRECTORY));
    T("rmdir nonempty", rmdir("e/dir"));
    T("rmdir file", rmdir("e/file"));
    T("unlink dir", unlink("e/dir"));
    T("unlink missing", unlink("e/missing"));
    T("rename dir into itself", rename("e/dir", "e/dir/sub"));
    T("rename file over dir", rename("e/file", "e/dir"));
    T("rename dir over file", rename("e/dir", "e/file"));
    T("read bad fd", read(99, longname, 1));
    T("close bad fd", close(-1));
    T("symlink loop", open("e/loop1", O_RDONLY));
    T("name too long", open(longname, O_RDONLY));
    T("read NULL buffer", ({ int fd = open("e/file", O_RDWR); write(fd, "abc", 3); lseek(fd, 0, SEEK_SET); long r = read(fd, NULL, 3); close(fd); r; }));
    T("chdir file", chdir("e/file"));
    T("readlink non-link", ({ char b[8]; readlink("e/file", b, sizeof b); }));
    T("lseek negative", ({ int fd = open("e/file", O_RDONLY); long r = lseek(fd, -5, SEEK_SET); close(fd); r; }));
    T("write on O_RDONLY", ({ int fd = open("e/file", O_RDONLY); long r = write(fd, "x", 1); close(fd); r; }));
    T("lseek pipe", ({ int p[2]; pipe(p); long r = lseek(p[0], 0, SEEK_SET); close(p[0]); close(p[1]); r; }));
    T("getcpu", ({ unsigned c = ~0u, n = ~0u; long r = syscall(SYS_getcpu, &c, &n, NULL); r == 0 && c < (unsigned)sysconf(_SC_NPROCESSORS_CONF) && n != ~0u ? 0 : -1; }));
    T("getcpu NULL pointers", syscall(SYS_getcpu, NULL, NULL, NULL));
    T("getcpu bad pointer", syscall(SYS_getcpu, (void *)8, NULL, NULL));
    unlink("e/dir/inner"); rmdir("e/dir"); unlink("e/file"); unlink("e/loop1"); unlink("e/loop2"); rmdir("e");
    T("cleaned up", access("e", F_OK) == 0 ? 0 : -1);
    return 0;
}
