/*
-sc auto, shared by both trainers (header-only; C11 and C++). A calibration step times each stage's F and B,
and I and W (measured as such when the step ran a split backward, or B's weight-gradient ops timed inside B).
From those come the costs of a layer, the embedding and the LM head (ComponentCosts); for every builder the
layers are split over its stages by those costs (unless -pl fixes the split), in halves of layers where
that balances better (a layer's attention and MLP halves weighed by the trainer's cost model), the builder
is simulated with them, the table is printed, and the fastest schedule and split are chosen, or the fastest
whose largest rank fits -mem where the trainer has a memory plan. The trainer then moves its run there (same
bits).
*/
#ifndef LLMC_SCHEDULE_AUTO_H
#define LLMC_SCHEDULE_AUTO_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
// defines: Schedule, schedule_build, schedule_requires, schedule_free
#include "schedule.h"
// defines: StageCosts, SimResult, schedule_simulate_stages, sim_result_free, SCHEDULE_NUM_BUILDERS
#include "schedule_sim.h"
// defines: PartitionCosts, partition_balance, partition_format
#include "partition.h"

// What one kind of action (F, B, I or W) costs per micro-batch, in ms: a layer, and the extra work of the
// embedding stage and of the LM-head stage, taken from the measured stage times of a P-stage split. Middle
// stages are layers only; with two stages the embedding (a gather and a scatter-add) is taken as free, so
// stage 0 gives the layer cost. Of a layer, the attention half's share comes from the trainer's cost model.
typedef struct { double layer, embed, head, attention_share; } ComponentCosts;
enum { SPLIT_TEXT = 4096 };  // a split as -pl text, "8,4": room for TRAIN_MAX_P stages

static inline void* auto_alloc(size_t bytes) {
    void* p = malloc(bytes > 0 ? bytes : 1);
    if (!p) { fprintf(stderr, "-sc auto: out of memory\n"); exit(EXIT_FAILURE); }
    return p;
}

/*
Each stage's mean F, B, I and W (ms per micro-batch) from summed seconds and counts per stage and kind,
(S, 5): F, B, I, W and the weight-gradient part of B (0 where not timed). A fused B gives its weight part as
W and the rest as I, and split I and W give B = I + W, so either kind of step calibrates every builder.
*/
static inline void stage_costs_measured(const double* secs, const double* counts, int S, StageCosts* cost) {
    for (int s = 0; s < S; s++) {
        const double* t = secs + 5 * s;
        const double* k = counts + 5 * s;
        double f = k[0] ? t[0] / k[0] : 0.0, b = k[1] ? t[1] / k[1] : 0.0, i = k[2] ? t[2] / k[2] : 0.0;
        double w = k[3] ? t[3] / k[3] : 0.0, b_weights = k[1] ? t[4] / k[1] : 0.0;
        if (k[1] && !k[2]) { i = b - b_weights; w = b_weights; }
        if (k[2] && !k[1]) { b = i + w; }
        cost[s] = (StageCosts){f * 1e3, b * 1e3, i * 1e3, w * 1e3};
    }
}

// stage s's half-layer units of a split (llmc/partition.h) in layers of cost: its attention halves weigh
// attention_share of a layer, its MLP halves the rest
static inline double split_stage_layers(const int* units, int s, double attention_share) {
    int first = 0;
    for (int k = 0; k < s; k++) { first += units[k]; }
    int attn = partition_attention_units(first, units[s]);
    return attn * attention_share + (units[s] - attn) * (1.0 - attention_share);
}

static inline ComponentCosts component_costs(const double* stage_ms, const int* units, int P, double attention_share) {
    double sum = 0.0, n = 0.0;
    for (int s = 1; s < P - 1; s++) { sum += stage_ms[s]; n += split_stage_layers(units, s, attention_share); }
    if (n == 0.0) { sum = stage_ms[0]; n = split_stage_layers(units, 0, attention_share); }
    ComponentCosts cc = {n > 0.0 ? sum / n : 0.0, 0.0, 0.0, attention_share};
    cc.embed = fmax(0.0, stage_ms[0] - split_stage_layers(units, 0, attention_share) * cc.layer);
    cc.head = fmax(0.0, stage_ms[P - 1] - split_stage_layers(units, P - 1, attention_share) * cc.layer);
    return cc;
}

static inline double component_stage_cost(const ComponentCosts* cc, int S, int s, const int* units) {
    return split_stage_layers(units, s, cc->attention_share) * cc->layer + (s == 0 ? cc->embed : 0.0) +
           (s == S - 1 ? cc->head : 0.0);
}

// The step -sc auto times: the second when the run has one. The first pays for first touches of memory on a
// CPU, and on a GPU for cuBLASLt's plans (on an H200, d12 at B=8 T=1024: 433 ms, then 289 ms a step).
static inline int auto_calibration_step(int first_step, int max_steps) {
    return max_steps - first_step >= 2 ? first_step + 1 : first_step;
}

// The next split of L layers over S stages, one at least each, in lexicographic order; 0 after the last
static inline int next_split(int* n, int S, int L) {
    for (int i = S - 2; i >= 0; i--) {
        int used = 0;
        for (int k = 0; k <= i; k++) { used += n[k]; }
        if (used + 1 + (S - 1 - i) > L) { continue; }  // stage i cannot take a layer more
        n[i]++;
        for (int k = i + 1; k < S - 1; k++) { n[k] = 1; }
        n[S - 1] = L - (used + 1) - (S - 2 - i);
        return 1;
    }
    return 0;
}

// The stage costs of a split (half-layer units) under the measured component costs cc[4] (f, b, i, w)
static inline void split_stage_costs(const ComponentCosts* cc, const int* units, int S, StageCosts* cost) {
    for (int s = 0; s < S; s++) {
        cost[s] = (StageCosts){component_stage_cost(&cc[0], S, s, units), component_stage_cost(&cc[1], S, s, units),
                               component_stage_cost(&cc[2], S, s, units), component_stage_cost(&cc[3], S, s, units)};
    }
}

// The schedule of builder `name` for a split with these component costs: the cost-aware builders (zbc, zbcv)
// are built from the split's stage costs, which their full name then carries (what -sc takes); cost[S] gets
// the stage costs; improve as in schedule_build_opt. Returns schedule_build's code, or SCHEDULE_ERR_ARGS when
// the name does not fit in n bytes.
static inline int auto_build(const char* name, int P, int M, const ComponentCosts* cc, const int* units, int S,
                             StageCosts* cost, Schedule* sc, char* full, size_t n, int improve) {
    StageCosts* unit = NULL;
    split_stage_costs(cc, units, S, cost);
    if (pp_parse_costed(name, P, &unit) > 0) {
        if (schedule_costed_name(name, cost, S, full, n) != 0) { return SCHEDULE_ERR_ARGS; }
    } else {
        snprintf(full, n, "%s", name);
    }
    return schedule_build_opt(full, P, M, improve, sc);
}

// With several stages per rank neither the stages' costs nor the ranks' loads alone decide (ZB-V puts the
// embedding and the LM head on rank 0), and a cost-aware builder's order depends on the split: every split of
// L whole layers over the builder's S stages, one layer at least each, is simulated and the fastest kept.
// `units` comes in with partition_balance's split, which stays unless a split is faster, and is the only
// whole-layer split tried when there are more than 20,000 (S = 4 up to 50 layers), or 500 for a cost-aware
// builder. From each of the first splits, one boundary at a time then moves by half a layer (a layer's
// attention or MLP half changes stage) while that ranks the split higher: whole layers beside an LM head of
// 4.4-4.8 layers leave the ranks up to half a layer apart. A cost-aware builder's splits are built
// without their local search and ranked by the bound below (ties: by the greedy's step), and the
// AUTO_SEARCHED_SPLITS first get the local search: the greedy's own step ranks them badly (with a calibration
// of this machine it ranks zbcv 3,5,3,1 first, 3817.0 ms for 2,4,4,2; the search takes 2,4,4,2 to its bound,
// 3660.2 ms, and 3,5,3,1 only to 3707.2: test_schedule).
static inline double auto_simulate(const Schedule* sc, const StageCosts* cost) {
    SimResult res;
    schedule_simulate_stages(sc, cost, 0.0, &res);
    double t = res.makespan;
    sim_result_free(&res);
    return t;
}

enum { AUTO_SEARCHED_SPLITS = 8 };  // a cost-aware builder's first splits that get the local search

// A step time no order of these stage costs beats: each rank's work, after the forwards of micro-batch 0
// through the stages before its first (it can start nothing sooner).
static inline double schedule_lower_bound(const Schedule* sc, const StageCosts* cost) {
    double bound = 0.0;
    for (int r = 0; r < sc->P; r++) {
        double work = 0.0, wait = 0.0;
        int started = 0;
        for (int s = 0; s < sc->S; s++) {
            started |= sc->stage_rank[s] == r;
            if (sc->stage_rank[s] == r) { work += sc->M * (cost[s].f + cost[s].b); }
            else if (!started) { wait += cost[s].f; }
        }
        bound = fmax(bound, work + wait);
    }
    return bound;
}

// (split, key) into the list of the `keep` first splits so far by key[0], then key[1] (a tie keeps the earlier)
static inline int key_before(const double* a, const double* b) { return a[0] < b[0] || (a[0] == b[0] && a[1] < b[1]); }
static inline void top_splits_insert(int* top, double* top_key, int* ntop, int keep, const int* split,
                                     const double* key, int S) {
    if (*ntop == keep && !key_before(key, top_key + 2 * (keep - 1))) { return; }
    int k = *ntop < keep ? (*ntop)++ : keep - 1;  // its slot, moved up past every later one
    for (; k > 0 && key_before(key, top_key + 2 * (k - 1)); k--) {
        memcpy(top_key + 2 * k, top_key + 2 * (k - 1), 2 * sizeof(double));
        memcpy(top + k * S, top + (k - 1) * S, S * sizeof(int));
    }
    memcpy(top_key + 2 * k, key, 2 * sizeof(double));
    memcpy(top + k * S, split, S * sizeof(int));
}
// a split's rank: a cost-aware builder's by its bound, then its greedy step; the others' by their step
static inline const double* split_key(const Schedule* sc, const StageCosts* cost, int costed, double* key) {
    key[1] = auto_simulate(sc, cost);
    key[0] = costed ? schedule_lower_bound(sc, cost) : key[1];
    return key;
}

// The rank of one split (split_key), its schedule rebuilt first when the builder is cost-aware (a builder
// that is not keeps the one schedule sc); -1 when it cannot be built
static inline int split_evaluate(const char* name, int P, int M, const ComponentCosts* cc, const int* units, int S,
                                 int costed, Schedule* sc, StageCosts* cost, char* full, double* key) {
    if (costed) {
        schedule_free(sc);
        if (auto_build(name, P, M, cc, units, S, cost, sc, full, SCHEDULE_NAME_MAX, 0) != 0) { return -1; }
    } else {
        split_stage_costs(cc, units, S, cost);
    }
    split_key(sc, cost, costed, key);
    return 0;
}

static inline int split_listed(const int* top, int ntop, const int* units, int S) {
    for (int k = 0; k < ntop; k++) { if (memcmp(top + k * S, units, S * sizeof(int)) == 0) { return 1; } }
    return 0;
}

static inline void fastest_split(const ComponentCosts* cc, const char* name, int P, int M, int L, int S, int* units) {
    StageCosts* unit = NULL;
    int costed = pp_parse_costed(name, P, &unit) > 0;
    double count = 1.0;  // C(L-1, S-1) splits of whole layers
    for (int k = 1; k < S; k++) { count = count * (L - k) / k; }
    int keep = costed ? AUTO_SEARCHED_SPLITS : 1, ntop = 0;
    int* n = (int*)auto_alloc(S * sizeof(int));
    int* layers = (int*)auto_alloc(S * sizeof(int));
    int* top = (int*)auto_alloc((size_t)keep * S * sizeof(int));
    int* starts = (int*)auto_alloc((size_t)keep * S * sizeof(int));
    double* top_key = (double*)auto_alloc(2 * keep * sizeof(double));
    StageCosts* cost = (StageCosts*)auto_alloc(S * sizeof(StageCosts));
    char* full = (char*)auto_alloc(SCHEDULE_NAME_MAX);
    double key[2], here[2];
    Schedule sc;
    if (auto_build(name, P, M, cc, units, S, cost, &sc, full, SCHEDULE_NAME_MAX, 0) == 0) {
        top_splits_insert(top, top_key, &ntop, keep, units, split_key(&sc, cost, costed, key), S);
        for (int s = 0; s < S; s++) { layers[s] = 1; }
        layers[S - 1] = L - (S - 1);
        do {
            if (count > (costed ? 500 : 2e4)) { break; }
            for (int s = 0; s < S; s++) { n[s] = 2 * layers[s]; }
            if (memcmp(n, units, S * sizeof(int)) == 0) { continue; }  // in already
            if (split_evaluate(name, P, M, cc, n, S, costed, &sc, cost, full, key) != 0) { break; }
            top_splits_insert(top, top_key, &ntop, keep, n, key, S);
        } while (next_split(layers, S, L));
        int nstarts = ntop;
        memcpy(starts, top, (size_t)ntop * S * sizeof(int));
        for (int k = 0; k < nstarts; k++) {  // half-layer moves, first improvement, from each of the first splits
            memcpy(n, starts + k * S, S * sizeof(int));
            if (split_evaluate(name, P, M, cc, n, S, costed, &sc, cost, full, here) != 0) { continue; }
            for (int moved = 1; moved;) {
                moved = 0;
                for (int b = 0; b + 1 < S && !moved; b++) {
                    for (int d = -1; d <= 1 && !moved; d += 2) {
                        if (n[b] + d < 1 || n[b + 1] - d < 1) { continue; }
                        n[b] += d;
                        n[b + 1] -= d;
                        int ok = split_evaluate(name, P, M, cc, n, S, costed, &sc, cost, full, key) == 0;
                        if (ok && !split_listed(top, ntop, n, S)) { top_splits_insert(top, top_key, &ntop, keep, n, key, S); }
                        if (ok && key_before(key, here)) {
                            memcpy(here, key, sizeof(here));
                            moved = 1;
                        } else {
                            n[b] -= d;
                            n[b + 1] += d;
                        }
                    }
                }
            }
        }
    }
    schedule_free(&sc);
    double best = -1.0;  // the local search can reorder a cost-aware builder's first few
    for (int k = 0; k < ntop; k++) {
        double t = top_key[2 * k];
        if (costed) {
            if (auto_build(name, P, M, cc, top + k * S, S, cost, &sc, full, SCHEDULE_NAME_MAX, 1) != 0) { continue; }
            t = auto_simulate(&sc, cost);
            schedule_free(&sc);
        }
        if (best < 0 || t < best) {
            best = t;
            memcpy(units, top + k * S, S * sizeof(int));
        }
    }
    free(full);
    free(cost);
    free(top_key);
    free(starts);
    free(top);
    free(layers);
    free(n);
}

// the largest rank's bytes under a builder and a split (-pl text), from the trainer's memory plan: what -mem limits
typedef double (*AutoRankBytes)(void* ctx, const char* schedule, const char* split);

typedef struct {
    const char* ran;           // the schedule that was timed, at the split `units` of schedule_auto_choose
    int step;                  // the step that was timed
    int fixed;                 // -pl given: builders with P stages keep the running split, the others cannot run
    int max_mib;               // -mem, 0: any (needs rank_bytes)
    AutoRankBytes rank_bytes;  // NULL: no memory plan, no column
    void* ctx;
    FILE* out;                 // where the table goes; NULL prints nothing (the ranks but the first)
    double attention_share;    // of a layer's cost, the attention half's: the trainer's cost model (llmc/partition.h)
} AutoQuery;

typedef struct {
    char name[SCHEDULE_NAME_MAX];  // the builder the run goes on with (a cost-aware one with its costs)
    char split[SPLIT_TEXT];  // and its split of the layers, as -pl text (halves as .5)
    int moves;               // 0: exactly the schedule and split that ran
} AutoChoice;

/*
The choice of -sc auto from measured[P], the costs per stage of the P-stage schedule q->ran at split
units[P] (half layers; every rank passes the same numbers, so every rank chooses alike). L layers, M
micro-batches.
*/
static inline void schedule_auto_choose(const StageCosts* measured, const int* units, int P, int M, int L,
                                        const AutoQuery* q, AutoChoice* choice) {
    FILE* out = q->out;
    double* ms = (double*)auto_alloc(P * sizeof(double));
    ComponentCosts cc[4];  // f, b, i, w
    for (int kind = 0; kind < 4; kind++) {
        for (int s = 0; s < P; s++) {
            const StageCosts* m = &measured[s];
            ms[s] = kind == 0 ? m->f : kind == 1 ? m->b : kind == 2 ? m->i : m->w;
        }
        cc[kind] = component_costs(ms, units, P, q->attention_share);
    }
    double layer = cc[0].layer + cc[1].layer;
    PartitionCosts split_costs = {layer, layer * q->attention_share, cc[0].embed + cc[1].embed, cc[0].head + cc[1].head};
    if (out) {
        fprintf(out, "-sc auto: measured on step %d (%s), ms per micro-batch, F+B: a layer %.1f, the embedding %.1f, "
                "the LM head %.1f (W: %.0f%% of a layer's B; the attention half %.0f%% of a layer, by the cost model)\n",
                q->step, q->ran, split_costs.layer, split_costs.encoder, split_costs.head,
                cc[1].layer > 0 ? 100.0 * cc[3].layer / cc[1].layer : 0.0, 100.0 * q->attention_share);
        fprintf(out, "-sc auto: %-12s %-24s %12s %8s%s\n", "schedule", "split", "predicted ms", "bubble",
                q->rank_bytes ? "   largest rank" : "");
    }
    static const char* const names[SCHEDULE_NUM_BUILDERS] = {"gpipe", "1f1b", "interleaved", "zbh1", "zbh2", "zbv",
                                                             "zbc", "zbcv"};
    char* full = (char*)auto_alloc(SCHEDULE_NAME_MAX);  // a cost-aware builder's name with its costs
    double best_ms = 0.0;
    int best = -1;
    for (int k = 0; k < SCHEDULE_NUM_BUILDERS; k++) {
        Schedule sc;
        StageCosts* unit = NULL;
        int v = pp_parse_costed(names[k], P, &unit);  // stages per rank of a cost-aware builder, else 0
        if (schedule_build(names[k], P, M, &sc) != 0) {
            if (out) { fprintf(out, "-sc auto: %-12s needs %s\n", names[k], schedule_requires(names[k])); }
            continue;
        }
        int S = sc.S;
        schedule_free(&sc);
        int* n = (int*)auto_alloc(S * sizeof(int));
        int* first = (int*)auto_alloc(S * sizeof(int));
        char err[256];
        int ok = q->fixed ? S == P : partition_balance(L, S, &split_costs, n, first, err, sizeof(err)) == 0;
        if (q->fixed && ok) { memcpy(n, units, P * sizeof(int)); }
        if (!q->fixed && ok) { fastest_split(cc, names[k], P, M, L, S, n); }
        StageCosts* cost = (StageCosts*)auto_alloc(S * sizeof(StageCosts));
        if (ok && auto_build(names[k], P, M, cc, n, S, cost, &sc, full, SCHEDULE_NAME_MAX, 1) == 0) {
            SimResult res;
            schedule_simulate_stages(&sc, cost, 0.0, &res);
            char split[SPLIT_TEXT];
            partition_format(n, S, split, sizeof(split));
            double mib = q->rank_bytes ? q->rank_bytes(q->ctx, full, split) / 1048576.0 : 0.0;
            int fits = q->max_mib <= 0 || mib <= q->max_mib;
            if (out) {
                fprintf(out, "-sc auto: %-12s %-24s %12.1f %8.3f", names[k], split, res.makespan, res.bubble);
                if (q->rank_bytes) { fprintf(out, " %9.1f MiB%s", mib, fits ? "" : " (over -mem)"); }
                fprintf(out, v ? "   -sc %s\n" : "\n", full);  // the costs the cost-aware builder was given
            }
            if (fits && (best < 0 || res.makespan < best_ms)) {
                best = k;
                best_ms = res.makespan;
                snprintf(choice->name, sizeof(choice->name), "%s", full);
                snprintf(choice->split, sizeof(choice->split), "%s", split);
            }
            sim_result_free(&res);
            schedule_free(&sc);
        } else if (out) {
            fprintf(out, "-sc auto: %-12s needs a layer per stage: %d stages, %s\n", names[k], S,
                    q->fixed ? "-pl names P" : "more than the layers");
        }
        free(cost);
        free(n);
        free(first);
    }
    free(full);
    int none_fits = best < 0;
    char current[SPLIT_TEXT];
    partition_format(units, P, current, sizeof(current));
    if (none_fits) {  // what ran, as it ran: -mem allows nothing
        snprintf(choice->name, sizeof(choice->name), "%s", q->ran);
        snprintf(choice->split, sizeof(choice->split), "%s", current);
    }
    choice->moves = strcmp(choice->name, q->ran) != 0 || strcmp(choice->split, current) != 0;
    if (out) {
        fprintf(out, "-sc auto: %s %s split %s", choice->moves ? "moving to" : "staying with", choice->name, choice->split);
        if (q->max_mib > 0) {
            fprintf(out, none_fits ? " (no schedule fits -mem %d MiB per rank)" : " (the fastest within -mem %d MiB per rank)",
                    q->max_mib);
        }
        fprintf(out, "\n");
    }
    free(ms);
}

#endif  // LLMC_SCHEDULE_AUTO_H
