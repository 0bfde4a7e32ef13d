/*
Appends training metrics to <out>/main.log in llm.c's format, one line per event:
  s:<step> trl:<train loss>   and   s:<step> tel:<val loss>
scripts/plot_loss.py reads these. A fresh run truncates the log. A resumed run keeps the old log up to where
it resumed: the lines of steps it redoes (written by the first run after its last checkpoint) are dropped, so
no step appears twice. A failed write (a full disk) is an error, not a silently shorter log.
*/
#ifndef LLMC_LOGGER_H
#define LLMC_LOGGER_H

#include <stdio.h>
#include "utils.h"

typedef struct {
    FILE* f;
    char* path;
    char* old;  // a resumed run's previous log, held until its first line says which step it resumed at
} Logger;

static void logger_init(Logger* lg, const char* out_dir, int resuming) {
    lg->f = NULL;
    lg->path = NULL;
    lg->old = NULL;
    if (out_dir == NULL) { return; }
    lg->path = str_printf("%s/main.log", out_dir);
    FILE* f = resuming ? fopen(lg->path, "rb") : NULL;  // no log yet: nothing to keep
    if (f != NULL) {
        long size = file_size(f, lg->path);
        lg->old = (char*)malloc_check((size_t)size + 1);
        fread_check(lg->old, 1, (size_t)size, f, lg->path);
        lg->old[size] = '\0';
        fclose(f);
        return;
    }
    lg->f = fopen_check(lg->path, "w");
}

// The first line after a resume: rewrite the old log without the lines this run is about to redo. A run
// resumed at step k first logs "s:k tel" (if it validates at k) or else "s:k+1 trl"; lines from there on
// were written after the checkpoint and are dropped (the old "s:k trl", the step that led to k, stays).
static void logger_resume(Logger* lg, int step, int is_val) {
    AtomicFile af;
    atomic_open(&af, lg->path);
    for (char* line = lg->old; *line;) {
        char* eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) + 1 : strlen(line);
        int s;
        char kind;
        int parsed = sscanf(line, "s:%d t%cl:", &s, &kind) == 2;
        int redone = parsed && (kind == 'e' ? s >= step : s >= step + is_val);
        if (!redone) { atomic_write(&af, line, 1, len); }
        line += len;
    }
    atomic_commit(&af);
    free(lg->old);
    lg->old = NULL;
    lg->f = fopen_check(lg->path, "a");
}

static void logger_check(Logger* lg, int written) {
    if (written < 0 || fflush(lg->f) != 0) { fatal("cannot write %s: %s", lg->path, strerror(errno)); }
}

static void logger_log_train(Logger* lg, int step, float loss, float lr, float norm) {
    if (lg->path == NULL) { return; }
    if (lg->old) { logger_resume(lg, step, 0); }
    logger_check(lg, fprintf(lg->f, "s:%d trl:%.4f lr:%.6f norm:%.2f\n", step, loss, lr, norm));
}

static void logger_log_val(Logger* lg, int step, float loss) {
    if (lg->path == NULL) { return; }
    if (lg->old) { logger_resume(lg, step, 1); }
    logger_check(lg, fprintf(lg->f, "s:%d tel:%.4f\n", step, loss));
}

static void logger_free(Logger* lg) {
    if (lg->f && fclose(lg->f) != 0) { fatal("cannot write %s: %s", lg->path, strerror(errno)); }
    free(lg->path);
    free(lg->old);
}

#endif
