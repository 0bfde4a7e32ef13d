/*
Checked wrappers around the C library: every failure prints one line naming the file (or what was being
done) and exits non-zero, so a bad input never turns into garbage numbers or a crash later on.
*/
#ifndef LLMC_UTILS_H
#define LLMC_UTILS_H

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

// A hook so the pipeline trainer can tear down MPI (or wake the other in-process stages) before exiting.
static void (*fatal_hook)(void) = NULL;

static void fatal(const char* fmt, ...) {
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

static FILE* fopen_check(const char* path, const char* mode) {
    FILE* f = fopen(path, mode);
    if (f == NULL) { fatal("cannot open %s (mode %s): %s", path, mode, strerror(errno)); }
    return f;
}

// reads exactly n items or exits naming the file: a short read means a truncated file
static void fread_check(void* ptr, size_t size, size_t n, FILE* f, const char* path) {
    size_t got = fread(ptr, size, n, f);
    if (got != n) {
        fatal("%s is truncated: expected %zu more bytes, got %zu", path, size * n, size * got);
    }
}

static void fwrite_check(const void* ptr, size_t size, size_t n, FILE* f, const char* path) {
    if (fwrite(ptr, size, n, f) != n) { fatal("cannot write %s: %s", path, strerror(errno)); }
}

static void fseek_check(FILE* f, long offset, int whence, const char* path) {
    if (fseek(f, offset, whence) != 0) { fatal("cannot seek in %s: %s", path, strerror(errno)); }
}

static long file_size(FILE* f, const char* path) {
    long here = ftell(f);
    fseek_check(f, 0, SEEK_END, path);
    long size = ftell(f);
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

// Checkpoints are written to "<path>.tmp", flushed to disk, then renamed over <path>: a crash mid-write
// leaves the previous file intact and never a half-written one under the real name.
typedef struct {
    FILE* f;
    char final_path[1024];
    char tmp_path[1040];
} AtomicFile;

static void atomic_open(AtomicFile* af, const char* path) {
    if (strlen(path) >= sizeof(af->final_path)) { fatal("path too long: %s", path); }
    strcpy(af->final_path, path);
    snprintf(af->tmp_path, sizeof(af->tmp_path), "%s.tmp", path);
    af->f = fopen_check(af->tmp_path, "wb");
}

static void atomic_write(AtomicFile* af, const void* ptr, size_t size, size_t n) {
    fwrite_check(ptr, size, n, af->f, af->tmp_path);
}

static void atomic_commit(AtomicFile* af) {
    if (fflush(af->f) != 0 || fsync(fileno(af->f)) != 0) {
        fatal("cannot flush %s: %s", af->tmp_path, strerror(errno));
    }
    fclose(af->f);
    if (rename(af->tmp_path, af->final_path) != 0) {
        fatal("cannot rename %s to %s: %s", af->tmp_path, af->final_path, strerror(errno));
    }
}

// mkdir -p: creates every missing directory on the way
static void mkdir_p(const char* path) {
    char buf[1024];
    if (strlen(path) >= sizeof(buf)) { fatal("path too long: %s", path); }
    strcpy(buf, path);
    for (char* p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) { fatal("cannot create directory %s: %s", buf, strerror(errno)); }
            *p = c;
            if (c == '\0') { break; }
        }
    }
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

static float parse_float_flag(const char* flag, const char* s) {
    char* end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno != 0 || end == s || *end != '\0') { fatal("flag %s expects a number, got '%s'", flag, s); }
    return v;
}

// monotonic wall-clock seconds, for timings and deadlines
static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

#endif
