/*
Shared by the libFuzzer harnesses in dev/fuzz/ (built and run by dev/fuzz/run.sh). The parsers report bad
input with fatal(), which exits; a harness sets fatal_hook to fuzz_bail, which longjmps back into
LLVMFuzzerTestOneInput instead, so a refused input ends one run and the fuzzer goes on. Files the parser
had open when it bailed are closed (fopen/fclose are tracked below); memory it held is freed by each
harness where it can reach it (the rest is small: run.sh turns leak detection off).
Include this before any llmc/ header.
*/
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static FILE* fuzz_open_files[64];
static int fuzz_num_open;

static FILE* fuzz_track(FILE* f) {
    if (f != NULL && fuzz_num_open < 64) { fuzz_open_files[fuzz_num_open++] = f; }
    return f;
}

static int fuzz_untrack(FILE* f) {
    for (int i = 0; i < fuzz_num_open; i++) {
        if (fuzz_open_files[i] == f) { fuzz_open_files[i] = fuzz_open_files[--fuzz_num_open]; break; }
    }
    return fclose(f);
}

#define fopen(path, mode) fuzz_track(fopen(path, mode))
#define fclose(f) fuzz_untrack(f)

static jmp_buf fuzz_jmp;
static void fuzz_bail(void) { longjmp(fuzz_jmp, 1); }

// closes what a bailed-out parser left open
static void fuzz_close_all(void) {
    while (fuzz_num_open > 0) { fuzz_untrack(fuzz_open_files[0]); }
}

static char fuzz_path[256];
static void fuzz_remove_file(void) { unlink(fuzz_path); }

// writes the input to a per-process file (the parsers read paths) and returns its name; in /dev/shm when
// there is one: rewriting a file on ext4 waits for the disk (auto_da_alloc), 7x slower
static const char* fuzz_write_file(const uint8_t* data, size_t size, const char* suffix) {
    if (fuzz_path[0] == '\0') { atexit(fuzz_remove_file); }
    const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(fuzz_path, sizeof(fuzz_path), "%s/fuzz_%d%s", dir, (int)getpid(), suffix);
    const char* path = fuzz_path;
    FILE* f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0) { abort(); }
    return path;
}
