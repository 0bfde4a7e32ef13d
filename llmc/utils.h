/*
Checked wrappers around the C library: every failure prints one line naming the file (or what was being
done) and exits non-zero, so a bad input never turns into garbage numbers or a crash later on.
*/
#ifndef LLMC_UTILS_H
#define LLMC_UTILS_H

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>

// Runs before fatal() exits: the pipeline trainer tears down MPI (or wakes the other in-process stages);
// the fuzzers (dev/fuzz/) longjmp out of it, so a refused input ends one run and not the process.
static void (*fatal_hook)(void) = NULL;

// Set when several threads run ranks of one job: the first error is the one reported, and the threads that
// fail after it (peers of the failed rank, or the same bad input seen by every rank) wait for the exit.
static int fatal_first_only = 0;
static int fatal_taken = 0;

static void fatal(const char* fmt, ...) {
    if (fatal_first_only && __atomic_exchange_n(&fatal_taken, 1, __ATOMIC_SEQ_CST)) {
        for (;;) { pause(); }
    }
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stderr);
    if (fatal_hook) { fatal_hook(); }
    exit(EXIT_FAILURE);
}

// a printf into a fresh malloc'd string: paths have no fixed length limit, so nothing is silently cut short
static char* str_printf(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) { fatal("cannot format '%s'", fmt); }
    char* s = (char*)malloc((size_t)n + 1);
    if (s == NULL) { fatal("out of memory allocating %d bytes", n + 1); }
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

// Inputs must be regular files: opening a FIFO blocks until a writer appears (a hang), and a directory
// opens fine on Linux and then reads as a zero-byte "truncated" file.
static void check_regular_file(const char* path) {
    struct stat st;
    if (stat(path, &st) != 0) { fatal("cannot open %s: %s", path, strerror(errno)); }
    if (!S_ISREG(st.st_mode)) {
        fatal("%s is not a regular file (it is a %s)", path, S_ISDIR(st.st_mode) ? "directory" :
              S_ISFIFO(st.st_mode) ? "FIFO" : S_ISCHR(st.st_mode) ? "character device" :
              S_ISSOCK(st.st_mode) ? "socket" : "special file");
    }
}

static FILE* fopen_check(const char* path, const char* mode) {
    if (mode[0] == 'r') { check_regular_file(path); }
    FILE* f = fopen(path, mode);
    if (f == NULL) { fatal("cannot open %s (mode %s): %s", path, mode, strerror(errno)); }
    return f;
}

// reads exactly n items or exits naming the file: a short read means a truncated file
static void fread_check(void* ptr, size_t size, size_t n, FILE* f, const char* path) {
    size_t got = fread(ptr, size, n, f);
    if (got != n) {
        if (ferror(f)) { fatal("cannot read %s: %s", path, strerror(errno)); }
        fatal("%s is truncated: expected %zu more bytes, got %zu", path, size * n, size * got);
    }
}

static void fseek_check(FILE* f, long offset, int whence, const char* path) {
    if (fseek(f, offset, whence) != 0) { fatal("cannot seek in %s: %s", path, strerror(errno)); }
}

static long file_size(FILE* f, const char* path) {
    long here = ftell(f);
    fseek_check(f, 0, SEEK_END, path);
    long size = ftell(f);
    if (here < 0 || size < 0) { fatal("cannot tell the size of %s: %s", path, strerror(errno)); }
    fseek_check(f, here, SEEK_SET, path);
    return size;
}

static void* malloc_check(size_t size) {
    void* p = malloc(size == 0 ? 1 : size);
    if (p == NULL) { fatal("out of memory allocating %zu bytes", size); }
    return p;
}

static void* calloc_check(size_t n, size_t size) {
    void* p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);
    if (p == NULL) { fatal("out of memory allocating %zu x %zu bytes", n, size); }
    return p;
}

// index of the first NaN, inf (or, with nonneg, negative) value in x[0..n), or n when all are fine
static size_t first_nonfinite(const float* x, size_t n, int nonneg) {
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || (nonneg && x[i] < 0.0f)) { return i; }
    }
    return n;
}

// A 64-bit checksum over 32-bit words (every file here is int32 headers and fp32 bodies): FNV-1a's prime
// on whole words, so it runs at memory speed, and any change to one word always changes the sum.
#define CHECKSUM_INIT 0xcbf29ce484222325ull
static uint64_t checksum_update(uint64_t h, const void* data, size_t bytes) {
    const unsigned char* p = (const unsigned char*)data;
    for (size_t i = 0; i + 4 <= bytes; i += 4) {
        uint32_t w;
        memcpy(&w, p + i, 4);
        h = (h ^ w) * 0x100000001b3ull;
    }
    for (size_t i = bytes & ~(size_t)3; i < bytes; i++) { h = (h ^ p[i]) * 0x100000001b3ull; }
    return h;
}

// makes a rename durable: the directory entry itself must reach the disk, not only the file's data
static void fsync_dir_of(const char* path) {
    const char* slash = strrchr(path, '/');
    char* dir = slash == NULL ? str_printf(".") : slash == path ? str_printf("/")
                                                : str_printf("%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    // EINVAL: a file system without directory sync, where the rename is as durable as it gets
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL)) { fatal("cannot sync directory %s: %s", dir, strerror(errno)); }
    close(fd);
    free(dir);
}

// Checkpoints are written to "<path>.tmp", flushed to disk, then renamed over <path>: a crash mid-write
// leaves the previous file intact and never a half-written one under the real name. A failed write (a full
// disk) removes the .tmp before exiting, so it does not keep the disk full for the next attempt.
typedef struct {
    FILE* f;
    char* final_path;
    char* tmp_path;
    uint64_t checksum;  // of everything written
    size_t bytes;
} AtomicFile;

// gives up on the file: the .tmp goes, the previous file under the real name stays
static void atomic_abort(AtomicFile* af) {
    fclose(af->f);
    unlink(af->tmp_path);
    free(af->final_path);
    free(af->tmp_path);
}

static void atomic_fail(AtomicFile* af, const char* what) {
    int err = errno;
    char* tmp = str_printf("%s", af->tmp_path);
    atomic_abort(af);
    fatal("cannot %s %s: %s", what, tmp, strerror(err));
}

static void atomic_open(AtomicFile* af, const char* path) {
    af->final_path = str_printf("%s", path);
    af->tmp_path = str_printf("%s.tmp", path);
    af->checksum = CHECKSUM_INIT;
    af->bytes = 0;
    unlink(af->tmp_path);  // a stale one from a crash: "wb" would truncate it, but it may be read-only
    af->f = fopen_check(af->tmp_path, "wb");
}

static void atomic_write(AtomicFile* af, const void* ptr, size_t size, size_t n) {
    if (fwrite(ptr, size, n, af->f) != n) { atomic_fail(af, "write"); }
    af->checksum = checksum_update(af->checksum, ptr, size * n);
    af->bytes += size * n;
}

static void atomic_commit(AtomicFile* af) {
    // ferror: callers may also fprintf to af->f directly (the trace writer); a failed write shows up here
    if (ferror(af->f) || fflush(af->f) != 0 || fsync(fileno(af->f)) != 0) { atomic_fail(af, "write"); }
    if (fclose(af->f) != 0) {
        int err = errno;
        unlink(af->tmp_path);
        fatal("cannot write %s: %s", af->tmp_path, strerror(err));
    }
    if (rename(af->tmp_path, af->final_path) != 0) {
        int err = errno;
        unlink(af->tmp_path);
        fatal("cannot rename %s to %s: %s", af->tmp_path, af->final_path, strerror(err));
    }
    fsync_dir_of(af->final_path);
    free(af->final_path);
    free(af->tmp_path);
}

// mkdir -p: creates every missing directory on the way
static void mkdir_p(const char* path) {
    if (path[0] == '\0') { fatal("empty directory name"); }
    char* buf = str_printf("%s", path);
    for (char* p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) { fatal("cannot create directory %s: %s", buf, strerror(errno)); }
            *p = c;
            if (c == '\0') { break; }
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) { fatal("%s exists and is not a directory", path); }
    free(buf);
}

// strict integer / float parsing for command-line flags: "12abc" or "" is an error, not 12 or 0
static int parse_int_flag(const char* flag, const char* s) {
    char* end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < INT32_MIN || v > INT32_MAX) {
        fatal("flag %s expects an integer, got '%s'", flag, s);
    }
    return (int)v;
}

// a finite decimal number: strtof would also take "nan", "inf" and hex floats ("0x1p3"), none of which
// a learning rate or a clip threshold should ever be
static float parse_float_flag(const char* flag, const char* s) {
    char* end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || strpbrk(s, "xXnNiI") != NULL) {
        fatal("flag %s expects a finite decimal number, got '%s'", flag, s);
    }
    return v;
}

#endif
