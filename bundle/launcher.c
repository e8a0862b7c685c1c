/*
 * The bundle's front door: a tiny static executable that starts the bundled
 * program (_internal/sidecar-supervisor, PyInstaller's bootloader) and, when
 * that cannot start, says why in one line.
 *
 * Why not run the bootloader directly:
 *   - It is a dynamic glibc executable. On an image without glibc (Alpine/musl,
 *     distroless/static, scratch) the kernel cannot find its dynamic loader and
 *     the container runtime reports only "no such file or directory" for a file
 *     that is plainly there. This launcher is static, so it always runs and can
 *     name the missing loader.
 *   - It needs libz.so.1, which many slim images lack; the bundle carries one.
 *     Putting _internal/ first in LD_LIBRARY_PATH makes the bundled zlib,
 *     OpenSSL and libffi load on any glibc image. The Python side removes that
 *     entry again before it starts COMMAND (supervisor.bundle.restore_environment).
 *
 * It execs (no fork), so the supervisor keeps this process's PID (PID 1 in a
 * container) and receives every signal. Built by bundle/build.py with
 * -DLOADER (the bootloader's PT_INTERP) and -DMIN_GLIBC (the newest glibc
 * symbol version the bundle needs).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef LOADER
#define LOADER "/lib64/ld-linux-x86-64.so.2"
#endif
#ifndef MIN_GLIBC
#define MIN_GLIBC "2.17"
#endif

#define NAME "sidecar-supervisor"
#define CONTENTS "_internal"

/* Find PROGRAM in $PATH the way execvp would; 0 on success. */
static int search_path(const char *program, char *out, size_t size) {
    const char *path = getenv("PATH");
    if (path == NULL || *path == '\0') {
        path = "/usr/local/bin:/usr/bin:/bin";
    }
    while (*path != '\0') {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        int n = snprintf(out, size, "%.*s%s%s", (int)len, path, len ? "/" : "", program);
        if (n > 0 && (size_t)n < size && access(out, X_OK) == 0) {
            return 0;
        }
        if (end == NULL) {
            break;
        }
        path = end + 1;
    }
    return -1;
}

/* This launcher's own path: /proc/self/exe when /proc is mounted, else argv[0]. */
static int own_path(const char *argv0, char *out, size_t size, int *from_proc) {
    ssize_t n = readlink("/proc/self/exe", out, size - 1);
    if (n > 0) {
        out[n] = '\0';
        *from_proc = 1;
        return 0;
    }
    *from_proc = 0;
    if (argv0 == NULL || *argv0 == '\0') {
        return -1;
    }
    if (strchr(argv0, '/') != NULL) {
        if (strlen(argv0) >= size) {
            return -1;
        }
        strcpy(out, argv0);
        return 0;
    }
    return search_path(argv0, out, size);
}

int main(int argc, char **argv) {
    char self[PATH_MAX];
    char program[PATH_MAX];
    char contents[PATH_MAX];
    int from_proc = 0;
    (void)argc;

    if (own_path(argv[0], self, sizeof self, &from_proc) != 0) {
        dprintf(2, NAME ": cannot start: cannot find this executable's own path "
                        "(no /proc and argv[0] is not a path)\n");
        return 127;
    }
    char *slash = strrchr(self, '/');
    if (slash == NULL) {
        return 127; /* own_path always returns a path with a slash */
    }
    *slash = '\0';
    int n = snprintf(contents, sizeof contents, "%s/" CONTENTS, self);
    int m = snprintf(program, sizeof program, "%s/" CONTENTS "/" NAME, self);
    if (n <= 0 || (size_t)n >= sizeof contents || m <= 0 || (size_t)m >= sizeof program) {
        dprintf(2, NAME ": cannot start: path too long: %s\n", self);
        return 127;
    }

    const char *old = getenv("LD_LIBRARY_PATH");
    char *paths = NULL;
    if (old != NULL && *old != '\0') {
        if (asprintf(&paths, "%s:%s", contents, old) < 0) {
            paths = NULL;
        }
    }
    if (setenv("LD_LIBRARY_PATH", paths ? paths : contents, 1) != 0) {
        dprintf(2, NAME ": cannot start: %s\n", strerror(errno));
        return 127;
    }
    if (!from_proc) {
        argv[0] = program; /* without /proc the bootloader finds itself from argv[0] */
    }
    execv(program, argv);

    int err = errno;
    if (err == ENOENT && access(program, F_OK) != 0) {
        dprintf(2, NAME ": cannot start: %s is missing (an incomplete copy of the bundle?)\n",
                program);
        return 127;
    }
    if (err == ENOENT && access(LOADER, F_OK) != 0) {
        dprintf(2,
                NAME ": cannot start: this image has no glibc (the dynamic loader " LOADER
                     " is missing); the bundle needs a glibc-based image with glibc " MIN_GLIBC
                     " or later, not Alpine/musl, distroless/static or scratch\n");
        return 127;
    }
    if (err == EACCES) {
        dprintf(2, NAME ": cannot start %s: %s (is the volume mounted noexec?)\n", program,
                strerror(err));
        return 126;
    }
    dprintf(2, NAME ": cannot start %s: %s\n", program, strerror(err));
    return err == ENOENT ? 127 : 126;
}
