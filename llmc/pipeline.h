/*
The host bookkeeping of one pipeline rank, shared by both trainers (train_gpt2_pp.c on the CPU,
train_gpt2_pp.cu on GPUs), which then differ only in device work and transport:
  - which layers, or halves of layers, each stage holds (from -pl, -sc auto, or balanced by estimated compute);
  - the stash: which slot holds the activations of micro-batch m between its forward and backward;
  - which grad-norm slots a stage owns, so the global norm adds the same numbers in the same order at any P;
  - the step's tokens (every rank reads the same micro-batches: no tokens travel between stages);
  - the trace of the last step and the measured bubble;
  - what this rank is doing, formatted only when something fails;
  - the lines both trainers print: the plan at start-up, one line per step, the stash each stage used.
*/
#ifndef LLMC_PIPELINE_H
#define LLMC_PIPELINE_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
// defines: fatal, malloc_check, calloc_check, AtomicFile
#include "utils.h"
// defines: GPT2Config, StageLayout, stage_layout, tensor_unit_size, tensor_is_per_layer, WTE
#include "model.h"
// defines: Schedule, Action, schedule_action_str
#include "schedule.h"
// defines: schedule_load_file
#include "schedule_text.h"
// defines: schedule_print_ascii_timeline
#include "schedule_sim.h"
// defines: PartitionCosts, partition_balance, partition_parse, partition_stage_cost
#include "partition.h"
// defines: NextBatchFn
#include "dataloader.h"
// defines: ShardPiece, stage_shard_pieces
#include "data_parallel.h"
// defines: TrainArgs
#include "train_args.h"
// defines: checkpoint_find_latest
#include "train_state.h"

// monotonic wall-clock seconds, for timings
static inline double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

#ifdef __cplusplus
#define PP_THREAD_LOCAL thread_local
#else
#define PP_THREAD_LOCAL _Thread_local
#endif

// ----------------------------------------------------------------------------
// the split: layers per stage, and what stage s holds

// the cost model of the trainer that compiles this: the CUDA trainer's (on a GPU or under SIMT) or the CPU one's
#if defined(__CUDACC__) || defined(SIMT_CPU)
#define PIPELINE_MACHINE (&PARTITION_GPU)
#else
#define PIPELINE_MACHINE (&PARTITION_CPU)
#endif

static inline PartitionCosts pipeline_costs(const TrainArgs* args, const GPT2Config* c) {
    return partition_gpt2_costs(args->B, args->T, c->channels, c->num_heads, c->padded_vocab_size, PIPELINE_MACHINE);
}

// of a layer's cost, the attention half's share under that model (-sc auto weighs half-layer splits by it)
static inline double pipeline_attention_share(const TrainArgs* args, const GPT2Config* c) {
    PartitionCosts pc = pipeline_costs(args, c);
    return pc.attention / pc.layer;
}

// fills units[P] (half layers, llmc/partition.h) from -pl, or balances the estimated compute (the LM head
// counts) over whole layers when -pl is absent
static inline void pipeline_split(const TrainArgs* args, const GPT2Config* c, int P, int* units) {
    int* first = (int*)malloc_check(P * sizeof(int));
    char err[512];
    PartitionCosts costs = pipeline_costs(args, c);
    int rc = args->layers_arg ? partition_parse(args->layers_arg, c->num_layers, P, units, first, err, sizeof(err))
                              : partition_balance(c->num_layers, P, &costs, units, first, err, sizeof(err));
    if (rc != 0) {
        if (args->layers_arg) { fatal("flag -pl %s: %s", args->layers_arg, err); }
        fatal("flags -pp and -sc %s (%d stages): %s", args->schedule_name, P, err);
    }
    free(first);
}

static inline StageLayout pipeline_stage_layout(const GPT2Config* c, const int* units, int P, int s) {
    int begin = 0;
    for (int i = 0; i < s; i++) { begin += units[i]; }
    return stage_layout(c, begin, units[s], s == 0, s == P - 1);
}

// ----------------------------------------------------------------------------
// the stash: a stage keeps the activations of each micro-batch from its forward to its backward, in one of
// num_slots slots; num_slots is the schedule's peak for this rank, so a schedule needing more is a bug.
// The same table tracks the inbox: received inputs waiting for their forward (a schedule may post a
// receive before the previous micro-batch's backward has freed its stash slot).

typedef struct {
    int M, num_slots;
    int* slot_of;  // (M) slot of micro-batch m, -1 when not in flight
    int in_use, peak;
} StashSlots;

static inline void stash_init(StashSlots* st, int M, int num_slots) {
    st->M = M;
    st->num_slots = num_slots;
    st->slot_of = (int*)malloc_check(M * sizeof(int));
    for (int m = 0; m < M; m++) { st->slot_of[m] = -1; }
    st->in_use = st->peak = 0;
}

// the slot of micro-batch m, taking a free one if m has none yet
static inline int stash_acquire(StashSlots* st, int m) {
    if (st->slot_of[m] >= 0) { return st->slot_of[m]; }
    for (int k = 0; k < st->num_slots; k++) {
        int taken = 0;
        for (int j = 0; j < st->M; j++) { taken |= st->slot_of[j] == k; }
        if (!taken) {
            st->slot_of[m] = k;
            st->in_use++;
            if (st->in_use > st->peak) { st->peak = st->in_use; }
            return k;
        }
    }
    fatal("more micro-batches in flight than the %d stash slots the schedule needs (schedule bug)", st->num_slots);
    return -1;
}

static inline int stash_slot(const StashSlots* st, int m) {
    if (st->slot_of[m] < 0) { fatal("micro-batch %d has no stash slot (schedule bug)", m); }
    return st->slot_of[m];
}

static inline void stash_release(StashSlots* st, int m) {
    if (st->slot_of[m] >= 0) { st->in_use--; }
    st->slot_of[m] = -1;
}

static inline void stash_free(StashSlots* st) { free(st->slot_of); }

// the stash slots of a stage: the schedule's peak, and at least the one slot that forward-only passes use
static inline int schedule_stage_slots(const Schedule* sc, int stage) {
    int peak = schedule_peak_inflight(sc, stage);
    return peak > 0 ? peak : 1;
}

// The most inputs of a stage received but not yet run forward: its inbox buffers (0 on stage 0). An input
// arrives by RECV_F, or, when the previous stage runs on the same rank, when that stage's F finishes.
static inline int schedule_stage_inbox(const Schedule* sc, int stage) {
    if (stage == 0) { return 0; }
    int r = sc->stage_rank[stage], local_prev = sc->stage_rank[stage - 1] == r, waiting = 0, peak = 0;
    const ActionList* list = &sc->ranks[r];
    for (int i = 0; i < list->n; i++) {
        const Action* a = &list->a[i];
        int arrives = (a->type == PP_RECV_F && a->stage == stage) || (local_prev && a->type == PP_F && a->stage == stage - 1);
        waiting += arrives ? 1 : a->type == PP_F && a->stage == stage ? -1 : 0;
        if (waiting > peak) { peak = waiting; }
    }
    return peak;
}

// does any rank split a backward into I and W (the stash then also keeps what W needs)
static inline int schedule_has_split_backward(const Schedule* sc) {
    for (int r = 0; r < sc->P; r++) {
        for (int i = 0; i < sc->ranks[r].n; i++) { if (sc->ranks[r].a[i].type == PP_I) { return 1; } }
    }
    return 0;
}

// the schedule of -sf or -sc (a builder's name; -sc auto is the caller's), loaded or built, and proven before
// anything runs; one error line naming the file or the flag otherwise
static inline void pipeline_load_schedule(Schedule* sc, const TrainArgs* args, int P) {
    char err[512];
    if (args->schedule_file) {
        const char* path = args->schedule_file;
        check_regular_file(path);  // a FIFO would block the read forever
        if (schedule_load_file(path, sc, err, sizeof(err)) != 0) { fatal("%s", err); }
        if (sc->P != P) { fatal("%s: the schedule has %d ranks (rows), the job P=%d", path, sc->P, P); }
        if (sc->M != args->M) { fatal("%s: the schedule has M=%d micro-batches, -pm is %d", path, sc->M, args->M); }
        return;
    }
    int rc = schedule_build(args->schedule_name, P, args->M, sc);
    if (rc == SCHEDULE_ERR_NAME) { fatal("flag -sc expects %s|auto, got '%s'", SCHEDULE_NAMES, args->schedule_name); }
    if (rc != 0) {
        fatal("flag -sc %s cannot run P=%d, M=%d (-pm): it needs %s", args->schedule_name, P, args->M,
              schedule_requires(args->schedule_name));
    }
    if (schedule_validate(sc, err, sizeof(err)) != 0) {
        fatal("schedule %s for P=%d M=%d is invalid: %s", args->schedule_name, P, args->M, err);
    }
}

// What a rank built, as a 32-bit FNV-1a hash of its schedule (every rank's list) and layer split. Every rank
// builds its own from the flags, and a cost-aware builder's order and -sc auto's choice come from
// floating-point replays: machines whose arithmetic differs (another libm, other compiler flags) could build
// different programs, which would hang or compute wrong. Each rank compares its hash with rank 0's.
static inline uint32_t pipeline_fingerprint(const Schedule* sc, const int* units) {
    uint32_t h = 2166136261u;
#define PP_HASH(x) (h = (h ^ (uint32_t)(x)) * 16777619u)
    PP_HASH(sc->P); PP_HASH(sc->S); PP_HASH(sc->M);
    for (int s = 0; s < sc->S; s++) { PP_HASH(sc->stage_rank[s]); PP_HASH(units[s]); }
    for (int r = 0; r < sc->P; r++) {
        PP_HASH(sc->ranks[r].n);
        for (int i = 0; i < sc->ranks[r].n; i++) {
            const Action* a = &sc->ranks[r].a[i];
            PP_HASH(a->type); PP_HASH(a->stage); PP_HASH(a->mb); PP_HASH(a->peer);
        }
    }
#undef PP_HASH
    return h;
}

// the check after rank 0's hash came to this rank
static inline void pipeline_check_fingerprint(uint32_t mine, uint32_t rank0, int rank, const TrainArgs* args) {
    if (mine == rank0) { return; }
    fatal("rank %d built another schedule or layer split than rank 0 from %s %s (hash %08x, rank 0's %08x): the "
          "ranks were given different flags, or their machines' floating-point arithmetic differs; write rank 0's "
          "with -ps 1 > FILE and run it with -sf FILE -pl SPLIT", rank, args->schedule_file ? "-sf" : "-sc",
          args->schedule_file ? args->schedule_file : args->schedule_name, mine, rank0);
}

// -ps 1: the schedule as text, then its unit-time timeline and simulated bubble as comment lines, so that
// the output loads back with -sf as it is
static inline void print_schedule_loadable(const Schedule* sc, FILE* out) {
    schedule_fprint(sc, out);
    char* timeline = NULL;
    size_t len = 0;
    FILE* f = open_memstream(&timeline, &len);
    if (f == NULL) { fatal("out of memory printing the schedule"); }
    schedule_print_ascii_timeline(sc, f);
    fclose(f);
    for (char* line = strtok(timeline, "\n"); line; line = strtok(NULL, "\n")) { fprintf(out, "# %s\n", line); }
    free(timeline);
}

// ----------------------------------------------------------------------------
// the global grad norm: squared sums per "slot", one tensor of one layer (or a whole non-layer tensor),
// numbered in checkpoint order: wte, wpe, ln1w[0..L), ln1b[0..L), ..., lnfb. Each rank squares its pieces of
// the slots its stages own (llmc/data_parallel.h: the whole slot when D = 1), the slots are summed over the
// job in rank order and added in slot order: the same at any P.

static inline int num_norm_slots(const GPT2Config* c) { return 4 + 12 * c->num_layers; }

static inline float norm_from_slots(const double* slots, int n) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) { sum += slots[i]; }
    return (float)sqrt(sum);
}

// ----------------------------------------------------------------------------
// the trace of one step: what each rank did when, drawn by scripts/plot_pipeline.py or ui.perfetto.dev

// Events nest in time on each stage's track: step > action (F3, B3) > layer (L5) > op (matmul, attention,
// layernorm, gelu, classifier, adamw, ...); send/recv and the optimizer sit beside the actions.
typedef struct {
    double t0, dur;    // seconds since the step began
    int rank;          // the track: one per rank
    int stage, mb;     // -1 where none
    char name[12];     // "F3", "L5", "matmul", "send", "recv", "optim", "step"
    char cat[8];       // "step", "action", "layer", "op", "comm"
} TraceEvent;

typedef struct {
    TraceEvent* events;
    int len, cap;
    int on;            // recording
    int rank;
    int stage;         // the stage an op or layer event belongs to: the one whose action is running
    double origin;
} Trace;

static inline void trace_add_cat(Trace* tr, const char* cat, const char* name, int stage, int mb, double t0, double t1) {
    if (!tr->on) { return; }
    if (tr->len == tr->cap) {
        tr->cap = tr->cap ? 2 * tr->cap : 1024;
        tr->events = (TraceEvent*)realloc(tr->events, tr->cap * sizeof(TraceEvent));
        if (!tr->events) { fatal("out of memory for the trace"); }
    }
    TraceEvent* e = &tr->events[tr->len++];
    e->t0 = t0 - tr->origin;
    e->dur = t1 - t0;
    e->rank = tr->rank;
    e->stage = stage;
    e->mb = mb;
    snprintf(e->name, sizeof(e->name), "%s", name);
    snprintf(e->cat, sizeof(e->cat), "%s", cat);
}

static inline void trace_add(Trace* tr, const char* name, int stage, int mb, double t0, double t1) {
    int comm = strcmp(name, "send") == 0 || strcmp(name, "recv") == 0;
    trace_add_cat(tr, comm ? "comm" : "step", name, stage, mb, t0, t1);
}

// compute actions are named by type and micro-batch, e.g. "F3"
static inline void trace_action(Trace* tr, const Action* a, double t0, double t1) {
    if (!tr->on) { return; }
    char name[12];
    snprintf(name, sizeof(name), "%s%d", pp_type_token(a->type), a->mb);
    trace_add_cat(tr, "action", name, a->stage, a->mb, t0, t1);
}

// Op and layer timings: the kernels do not know their rank, so each rank thread points op_trace at its
// trace. Nothing is recorded, and no clock is read, unless the step is traced.
static PP_THREAD_LOCAL Trace* op_trace = NULL;

static inline double op_begin(void) { return op_trace && op_trace->on ? now_seconds() : 0.0; }

static inline void op_end(const char* cat, const char* name, double t0) {
    if (op_trace && op_trace->on) { trace_add_cat(op_trace, cat, name, op_trace->stage, -1, t0, now_seconds()); }
}

// a transformer block, named by its layer in the whole model ("L5")
static inline void op_end_layer(int layer, double t0) {
    if (!op_trace || !op_trace->on) { return; }
    char name[12];
    snprintf(name, sizeof(name), "L%d", layer);
    op_end("layer", name, t0);
}

#define OP(name, call) do { double op_t0_ = op_begin(); call; op_end("op", name, op_t0_); } while (0)

// Chrome/Perfetto trace of every rank's events (gathered on one rank): one track per rank
static inline void trace_write_json(const TraceEvent* events, int n, const char* path) {
    AtomicFile af;
    atomic_open(&af, path);
    fprintf(af.f, "{\"traceEvents\": [\n");
    for (int i = 0; i < n; i++) {
        const TraceEvent* e = &events[i];
        fprintf(af.f, "{\"name\": \"%s\", \"cat\": \"%s\", \"ph\": \"X\", \"pid\": %d, \"tid\": %d, \"ts\": %.3f, "
                "\"dur\": %.3f, \"args\": {\"stage\": %d, \"mb\": %d}}%s\n", e->name, e->cat, e->rank, e->rank,
                e->t0 * 1e6, e->dur * 1e6, e->stage, e->mb, i + 1 < n ? "," : "");
    }
    fprintf(af.f, "]}\n");
    atomic_commit(&af);
}

// ----------------------------------------------------------------------------
// what this rank is doing: kept as a pointer, formatted only when something fails

typedef struct {
    const char* phase;   // "start-up", "schedule", "optimizer", "checkpoint", ...
    const Action* action;
    int step;
} RankActivity;

static PP_THREAD_LOCAL RankActivity rank_activity = {"start-up", NULL, 0};

static inline void activity_set(const char* phase, const Action* a, int step) {
    rank_activity.phase = phase;
    rank_activity.action = a;
    rank_activity.step = step;
}

static inline const char* activity_describe(char* buf, size_t n) {
    if (rank_activity.action) {
        char tok[48];
        snprintf(buf, n, "%s (step %d)", schedule_action_str(rank_activity.action, tok, sizeof(tok)), rank_activity.step);
    } else {
        snprintf(buf, n, "%s (step %d)", rank_activity.phase, rank_activity.step);
    }
    return buf;
}

// ----------------------------------------------------------------------------
// what both trainers print

// the share of the schedule's wall time (forward and backward of every micro-batch: what the theory
// (P-1)/(M+P-1) describes) that the P ranks spend not computing
static inline double measured_bubble(double busy_all_ranks, int P, double schedule_wall) {
    return 1.0 - busy_all_ranks / (P * schedule_wall);
}

// the plan: each stage's layers, share of the estimated compute and stash; then the balance bound
static inline void print_pipeline_plan(const GPT2Config* c, const TrainArgs* args, const Schedule* sc,
                                       const int* units, const int* slots, const size_t* stash_bytes,
                                       double simulated_bubble) {
    int M = args->M, S = sc->S, P = sc->P;
    printf("pipeline: P=%d ranks, S=%d stages, schedule %s; simulated bubble %.3f, 1F1B theory (P-1)/(M+P-1) = %.3f\n",
           P, S, args->schedule_file ? args->schedule_file : args->schedule_name, simulated_bubble, (P - 1.0) / (M + P - 1.0));
    PartitionCosts costs = pipeline_costs(args, c);
    double total = 0.0, slowest = 0.0;
    double* rank_cost = (double*)calloc_check(P, sizeof(double));
    int* first = (int*)malloc_check(S * sizeof(int));
    partition_first_units(units, S, first);
    for (int s = 0; s < S; s++) {
        double cost = partition_stage_cost(&costs, S, s, first[s], units[s]);
        total += cost;
        rank_cost[sc->stage_rank[s]] += cost;
    }
    for (int r = 0; r < P; r++) { slowest = rank_cost[r] > slowest ? rank_cost[r] : slowest; }
    for (int s = 0; s < S; s++) {
        StageLayout lay = pipeline_stage_layout(c, units, S, s);
        char count[16], from[16];
        partition_format(&units[s], 1, count, sizeof(count));
        partition_format(&first[s], 1, from, sizeof(from));
        printf("stage %d: %s layers from %s%s%s, %zu parameters, %.0f%% of the compute, activation stash %d "
               "micro-batches x %.1f MiB", s, count, from, lay.has_embed ? " + embeddings" : "",
               lay.has_head ? " + lnf/LM head" : "", lay.num_parameters,
               100.0 * partition_stage_cost(&costs, S, s, first[s], units[s]) / total, slots[s], stash_bytes[s] / 1048576.0);
        if (S != P) { printf(", on rank %d", sc->stage_rank[s]); }
        printf("\n");
    }
    if (P > 1) {
        const char* unit = S == P ? "stage" : "rank";
        printf("balance: the slowest %s has %.0f%% of the compute, so P %ss can be at most %.2fx faster than one\n",
               unit, 100.0 * slowest / total, unit, total / slowest);
    }
    free(rank_cost);
    free(first);
}

typedef struct {
    int step, max_steps, P, M, tokens;  // P: ranks in the job (D*P with data parallelism)
    float loss, norm, lr;
    double wall, schedule_wall, busy_all_ranks;  // seconds; busy summed over ranks
    double theory;                                // the bubble the schedule was built for (schedule_simulate_planned)
    const char* extra;                            // e.g. the loss scale, or NULL
    double sim_schedule_wall, sim_bubble;         // the schedule that ran, simulated with the step's measured
                                                  // action times per stage; 0: not simulated
} StepReport;

static inline void print_step_line(const StepReport* r) {
    printf("step %4d/%d | train loss %.6f | norm %.4f | lr %.2e | %.1f ms | %.0f tok/s", r->step, r->max_steps,
           r->loss, r->norm, r->lr, r->wall * 1e3, r->tokens / r->wall);
    if (r->P > 1) {
        printf(" | bubble %.3f (theory %.3f", measured_bubble(r->busy_all_ranks, r->P, r->schedule_wall), r->theory);
        if (r->sim_schedule_wall > 0) {
            printf(", simulated %.3f) | schedule %.0f ms (simulated %.0f)", r->sim_bubble, r->schedule_wall * 1e3,
                   r->sim_schedule_wall * 1e3);
        } else {
            printf(")");
        }
        printf(" | optimizer %.0f ms", (r->wall - r->schedule_wall) * 1e3);
    }
    printf("%s\n", r->extra ? r->extra : "");
}

// What a stage's memory goes to. -plan computes it from the flags without allocating; a run counts what it
// allocates and prints the same lines, so the two can be compared.
typedef enum { MEM_PARAMETERS, MEM_GRADIENTS, MEM_OPTIMIZER, MEM_STASH, MEM_SCRATCH, MEM_COMMUNICATION, MEM_CATEGORIES } MemoryCategory;
static const char* const memory_category_names[MEM_CATEGORIES] = {"parameters", "gradients", "optimizer", "stash",
                                                                  "scratch", "communication"};

static inline void print_stage_memory(int stage, const char* how, const double* bytes) {
    double total = 0.0;
    printf("stage %d memory (%s):", stage, how);
    for (int i = 0; i < MEM_CATEGORIES; i++) {
        printf(" %s %.1f MiB |", memory_category_names[i], bytes[i] / 1048576.0);
        total += bytes[i];
    }
    printf(" total %.1f MiB (bytes:", total / 1048576.0);
    for (int i = 0; i < MEM_CATEGORIES; i++) { printf(" %.0f", bytes[i]); }
    printf(")\n");
}

// the stash each stage actually used, counted as slots were taken
static inline void print_peak_stash(int P, const double* peak_slots, const size_t* stash_bytes) {
    for (int s = 0; s < P; s++) {
        printf("stage %d: peak stash %.0f micro-batches (%.1f MiB)\n", s, peak_slots[s],
               peak_slots[s] * stash_bytes[s] / 1048576.0);
    }
}

// ----------------------------------------------------------------------------
// the model and where a run resumes

// -e: an llm.c checkpoint (.bin) or a descriptor such as d12; *from_file says which
static inline GPT2Config pipeline_model_config(const TrainArgs* args, int* from_file) {
    const char* arg = args->model_arg;
    size_t n = strlen(arg);
    *from_file = n > 4 && strcmp(arg + n - 4, ".bin") == 0;
    GPT2Config c = *from_file ? model_read_config(arg) : config_from_descriptor(arg);
    if (args->T > c.max_seq_len) {
        fatal("flag -t %d exceeds the model's maximum sequence length %d (%s)", args->T, c.max_seq_len, arg);
    }
    return c;
}

// -y 1: the model and state files of the newest complete checkpoint in -o, checked against the model
static inline void pipeline_resume_paths(const TrainArgs* args, const GPT2Config* c, char* model_path,
                                         char* state_path, size_t n) {
    int step = checkpoint_find_latest(args->out_dir);
    if (step < 0) { fatal("-y 1: no complete checkpoint (DONE_* file) in %s", args->out_dir); }
    if (snprintf(model_path, n, "%s/model_%08d.bin", args->out_dir, step) >= (int)n ||
        snprintf(state_path, n, "%s/state_%08d.bin", args->out_dir, step) >= (int)n) {
        fatal("flag -o: the path %s is too long", args->out_dir);
    }
    GPT2Config saved = model_read_config(model_path);
    if (memcmp(&saved, c, sizeof(*c)) != 0) {
        fatal("%s: the checkpoint's model (L=%d C=%d NH=%d V=%d maxT=%d) disagrees with -e %s", model_path,
              saved.num_layers, saved.channels, saved.num_heads, saved.vocab_size, saved.max_seq_len, args->model_arg);
    }
}

// What stage s of the job allocates on its rank, by category, from the flags alone: each trainer computes it
// with the size functions it allocates with (its stage_memory_plan), and prints what it allocated the same way.
typedef void (*StageMemoryFn)(const GPT2Config* c, const TrainArgs* args, const Schedule* sc, const int* units, int s,
                              double* bytes);

// -plan 1: every stage's memory for these flags, nothing allocated. types: the element types the bytes are of.
static inline void pipeline_print_memory_plan(const TrainArgs* args, int P, StageMemoryFn stage_memory,
                                              const char* types) {
    Schedule sc;
    TrainArgs shown = *args;
    if (strcmp(args->schedule_name, "auto") == 0) { shown.schedule_name = "1f1b"; }  // what auto starts with
    pipeline_load_schedule(&sc, &shown, P);
    int from_file;
    GPT2Config c = pipeline_model_config(args, &from_file);
    int* units = (int*)malloc_check(sc.S * sizeof(int));
    pipeline_split(args, &c, sc.S, units);
    Grid grid = grid_of(0, args->D, P);
    grid_print(&grid, stdout);
    printf("plan: %s, P=%d, M=%d, B=%d, T=%d, -rc %s%s; per rank, %s\n", shown.schedule_name, P, args->M, args->B,
           args->T, args->recompute == 2 ? "always" : args->recompute ? "except_last" : "never",
           args->zero ? ", ZeRO-1" : "", types);
    double* rank_total = (double*)calloc_check(P, sizeof(double));
    for (int s = 0; s < sc.S; s++) {
        double bytes[MEM_CATEGORIES];
        stage_memory(&c, &shown, &sc, units, s, bytes);
        print_stage_memory(s, "plan", bytes);
        for (int i = 0; i < MEM_CATEGORIES; i++) { rank_total[sc.stage_rank[s]] += bytes[i]; }
    }
    for (int r = 0; r < P; r++) { printf("rank %d memory (plan): total %.1f MiB\n", r, rank_total[r] / 1048576.0); }
    free(rank_total);
    free(units);
    schedule_free(&sc);
}

// -sc auto's -mem: the largest rank's bytes under a builder and a split (-pl text), from the trainer's plan
// (an AutoRankBytes of llmc/schedule_auto.h, ctx an AutoMemory)
typedef struct { const GPT2Config* config; const TrainArgs* args; int P; StageMemoryFn stage_memory; } AutoMemory;

static inline double pipeline_largest_rank_bytes(void* ctx, const char* schedule, const char* split) {
    const AutoMemory* m = (const AutoMemory*)ctx;
    TrainArgs a = *m->args;
    a.schedule_name = schedule;
    a.layers_arg = split;
    Schedule sc;
    if (schedule_build(schedule, m->P, a.M, &sc) != 0) { fatal("schedule %s: cannot build", schedule); }
    int* units = (int*)malloc_check(sc.S * sizeof(int));
    pipeline_split(&a, m->config, sc.S, units);
    double* rank_total = (double*)calloc_check(m->P, sizeof(double)), largest = 0.0;
    for (int s = 0; s < sc.S; s++) {
        double bytes[MEM_CATEGORIES];
        m->stage_memory(m->config, &a, &sc, units, s, bytes);
        for (int i = 0; i < MEM_CATEGORIES; i++) { rank_total[sc.stage_rank[s]] += bytes[i]; }
    }
    for (int r = 0; r < m->P; r++) { largest = rank_total[r] > largest ? rank_total[r] : largest; }
    free(rank_total);
    free(units);
    schedule_free(&sc);
    return largest;
}

// ----------------------------------------------------------------------------
// when a step validates, samples or checkpoints

static inline int due(int every, int step, int last) { return (every > 0 && step % every == 0) || last; }

#endif
