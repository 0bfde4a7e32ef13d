/*
Appends training metrics to <out>/main.log in llm.c's format, one line per event:
  s:<step> trl:<train loss>   and   s:<step> tel:<val loss>
scripts/plot_loss.py reads these. A fresh run truncates the log; a resumed run appends to it.
*/
#ifndef LLMC_LOGGER_H
#define LLMC_LOGGER_H

#include <stdio.h>
#include "utils.h"

typedef struct {
    FILE* f;
} Logger;

static void logger_init(Logger* lg, const char* out_dir, int resuming) {
    lg->f = NULL;
    if (out_dir == NULL) { return; }
    char path[1024];
    snprintf(path, sizeof(path), "%s/main.log", out_dir);
    lg->f = fopen_check(path, resuming ? "a" : "w");
}

static void logger_log_train(Logger* lg, int step, float loss, float lr, float norm) {
    if (lg->f == NULL) { return; }
    fprintf(lg->f, "s:%d trl:%.4f lr:%.6f norm:%.2f\n", step, loss, lr, norm);
    fflush(lg->f);
}

static void logger_log_val(Logger* lg, int step, float loss) {
    if (lg->f == NULL) { return; }
    fprintf(lg->f, "s:%d tel:%.4f\n", step, loss);
    fflush(lg->f);
}

static void logger_free(Logger* lg) {
    if (lg->f) { fclose(lg->f); }
}

#endif
