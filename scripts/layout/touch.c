/* LD_PRELOAD helper of scripts/gen-layout.sh: makes a process's later text page faults show
 * exactly which pages of the binary it runs. Before main, for the executable's text mapping it
 * turns off read-ahead (MADV_RANDOM), drops the pages start-up mapped (MADV_DONTNEED: they are
 * faulted in again from the file as used) and evicts the file from the page cache
 * (POSIX_FADV_DONTNEED), so fault-around finds no cached neighbours to map. Afterwards the
 * present pages of the mapping (/proc/PID/pagemap) are the pages the process has executed.
 * With LAYOUT_TOUCH_OUT set, the process appends the file offsets of those pages to that file
 * when it exits (for short-lived processes such as the CLI). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

static unsigned long text_lo, text_hi, text_off;

__attribute__((constructor)) static void layout_touch_init(void) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return;
    exe[n] = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return;
    char line[4600];
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b;
        char perm[8];
        char *path = strchr(line, '/');
        if (sscanf(line, "%lx-%lx %7s", &a, &b, perm) == 3 && perm[2] == 'x' && path &&
            strncmp(path, exe, (size_t)n) == 0 && path[n] == '\n') {
            unsigned long x, y, off = 0;
            char q[8];
            sscanf(line, "%lx-%lx %7s %lx", &x, &y, q, &off);
            text_lo = a, text_hi = b, text_off = off;
            madvise((void *)a, b - a, MADV_RANDOM);
            madvise((void *)a, b - a, MADV_DONTNEED);
        }
    }
    fclose(f);
    int fd = open(exe, O_RDONLY);
    if (fd >= 0) {
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
}

__attribute__((destructor)) static void layout_touch_fini(void) {
    const char *out = getenv("LAYOUT_TOUCH_OUT");
    if (!out || !text_hi) return;
    int pm = open("/proc/self/pagemap", O_RDONLY);
    FILE *o = fopen(out, "a");
    if (pm < 0 || !o) return;
    for (unsigned long p = text_lo; p < text_hi; p += 4096) {
        uint64_t e;
        if (pread(pm, &e, sizeof e, (off_t)(p / 4096 * 8)) == sizeof e && (e >> 63))
            fprintf(o, "%lx\n", p - text_lo + text_off);
    }
    fclose(o);
    close(pm);
}
