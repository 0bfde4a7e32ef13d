/*
Learning-rate schedules, all as a pure function of the step so a resumed run needs no extra state.
  constant : lr
  cosine   : linear warmup over `warmup` steps to lr, then cosine decay to lr * final_frac at `total`
  noam     : Vaswani et al. (2017): ~ min(s^-1/2, s * warmup^-3/2), normalised so the peak (at s = warmup) is lr
*/
#ifndef LLMC_SCHEDULERS_H
#define LLMC_SCHEDULERS_H

#include <math.h>
#include <string.h>
#include "utils.h"

typedef enum { LR_CONSTANT, LR_COSINE, LR_NOAM } LRScheduleType;

typedef struct {
    LRScheduleType type;
    float lr;
    int warmup;
    int total;
    float final_frac;
} LRSchedule;

static LRScheduleType lr_schedule_parse(const char* name) {
    if (strcmp(name, "constant") == 0) { return LR_CONSTANT; }
    if (strcmp(name, "cosine") == 0) { return LR_COSINE; }
    if (strcmp(name, "noam") == 0) { return LR_NOAM; }
    fatal("flag -k expects constant, cosine or noam, got '%s'", name);
    return LR_CONSTANT;
}

static float lr_at(const LRSchedule* s, int step) {
    float lr = s->lr;
    switch (s->type) {
    case LR_CONSTANT:
        return lr;
    case LR_COSINE: {
        if (step < s->warmup) { return lr * (step + 1) / s->warmup; }
        if (step >= s->total || s->total <= s->warmup) { return lr * s->final_frac; }
        float progress = (float)(step - s->warmup) / (float)(s->total - s->warmup);
        float coeff = 0.5f * (1.0f + cosf((float)M_PI * progress));
        float min_lr = lr * s->final_frac;
        return min_lr + coeff * (lr - min_lr);
    }
    case LR_NOAM: {
        float t = (float)(step + 1);
        float w = (float)(s->warmup > 0 ? s->warmup : 1);
        return lr * fminf(sqrtf(w / t), t / w);
    }
    }
    return lr;
}

#endif
