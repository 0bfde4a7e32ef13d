/*
Pipeline schedules as data (header-only; C11 and C++).

A Schedule is, for each rank, the ordered list of actions that rank executes: compute
(F forward, B full backward, or B split into I = d(input) and W = d(weights)) and
point-to-point messages (SEND_F/RECV_F activations, SEND_B/RECV_B their gradients).
The trainer walks its rank's list; which pipeline algorithm it is lives in the builder
(or in a hand-written file, llmc/schedule_text.h; the simulator is llmc/schedule_sim.h).

Builders, by name through schedule_build (SCHEDULE_NAMES): gpipe, 1f1b, interleaved[:v]
(M a multiple of P), zbh1, zbh2, zbv, and the cost-aware zbc and zbcv (from each stage's F, I and
W times); schedule_build_forward for evaluation. Each lists the compute order and
schedule_add_comms places the messages (zbc/zbcv place them as they go). schedule_validate proves a
schedule before it runs (including a dry run for deadlocks); schedule_peak_inflight is
the number of stash slots a stage needs.

Stages: S stages, stage s runs on rank stage_rank[s]. One stage per rank (S = P) for GPipe,
1F1B, ZB-H1/H2 and zbc; v stages per rank for interleaved 1F1B (stage s on rank s % P); two for
ZB-V and zbcv (rank r holds stages r and 2P-1-r, so rank 0 holds the first and the last stage).

Messages are a rendezvous: neither side completes until both reached the matching action,
and messages on a channel (src rank -> dst rank) match in order. A schedule deadlock-free
under this model is also deadlock-free with buffered sends, so the validator checks it.
*/
#ifndef LLMC_SCHEDULE_H
#define LLMC_SCHEDULE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <stdarg.h>

typedef enum {
    PP_F = 0,   // forward of (stage, mb)
    PP_B,       // full backward of (stage, mb): d(input) and d(weights)
    PP_SEND_F,  // send the output of (stage, mb) to the rank of stage+1
    PP_RECV_F,  // receive the input of (stage, mb) from the rank of stage-1
    PP_SEND_B,  // send d(input) of (stage, mb) to the rank of stage-1
    PP_RECV_B,  // receive d(output) of (stage, mb) from the rank of stage+1
    PP_I,       // split backward: d(input) only
    PP_W,       // split backward: d(weights) only, any time after its I
    PP_NUM_ACTION_TYPES
} ActionType;

typedef struct {
    ActionType type;
    int stage;  // the local stage this action belongs to
    int mb;     // micro-batch index, 0..M-1
    int peer;   // rank on the other end for messages, -1 for compute
} Action;

typedef struct {
    Action* a;
    int n, cap;
} ActionList;

typedef struct {
    int P;              // ranks
    int S;              // stages
    int M;              // micro-batches per step
    int* stage_rank;    // [S] rank running each stage, -1 for none (a malformed file)
    ActionList* ranks;  // [P] the program of each rank
} Schedule;

// the time of each compute action of one micro-batch on one stage (the simulator, the cost-aware builder)
typedef struct {
    double f, b, i, w;  // forward, full backward, and its split halves d(input) and d(weights)
} StageCosts;

// bounds on what a flag or a file may ask for: the validator indexes 8 S M entries
#define SCHEDULE_MAX_STAGES 256
#define SCHEDULE_MAX_MICROBATCHES 1024
#define PP_STR(x) PP_STR_(x)
#define PP_STR_(x) #x

// ----------------------------------------------------------------------------
// small helpers

static inline int pp_is_compute(ActionType t) { return t == PP_F || t == PP_B || t == PP_I || t == PP_W; }
static inline int pp_is_send(ActionType t) { return t == PP_SEND_F || t == PP_SEND_B; }
static inline int pp_is_recv(ActionType t) { return t == PP_RECV_F || t == PP_RECV_B; }
// actions that produce d(input), i.e. what the previous stage waits for
static inline int pp_is_bwd_input(ActionType t) { return t == PP_B || t == PP_I; }
// actions that accumulate weight gradients (their per-stage order decides the float sum order)
static inline int pp_is_bwd_weight(ActionType t) { return t == PP_B || t == PP_W; }

// the token of the text form between the stage and micro-batch numbers
static inline const char* pp_type_token(ActionType t) {
    static const char* names[PP_NUM_ACTION_TYPES] = {"F", "B", "SEND_F", "RECV_F", "SEND_B", "RECV_B", "I", "W"};
    return (int)t >= 0 && t < PP_NUM_ACTION_TYPES ? names[t] : "?";
}

static inline int schedule_stage_rank(const Schedule* s, int stage) { return s->stage_rank[stage]; }

// rank of the peer of a message of `stage`, or -1 (compute, or no such neighbour stage)
static inline int schedule_peer(const Schedule* s, ActionType t, int stage) {
    int other = -1;
    if (t == PP_SEND_F || t == PP_RECV_B) other = stage + 1;
    if (t == PP_RECV_F || t == PP_SEND_B) other = stage - 1;
    if (other < 0 || other >= s->S) return -1;
    return schedule_stage_rank(s, other);
}

// the text token of an action, e.g. "1SEND_F3" (for messages: call it when something failed)
static inline const char* schedule_action_str(const Action* a, char* buf, size_t n) {
    snprintf(buf, n, "%d%s%d", a->stage, pp_type_token(a->type), a->mb);
    return buf;
}

// an empty schedule with stage s on rank s % P (builders with another placement overwrite it)
static inline void schedule_init(Schedule* s, int P, int S, int M) {
    s->P = P; s->S = S; s->M = M;
    s->ranks = (ActionList*)calloc((size_t)(P > 0 ? P : 1), sizeof(ActionList));
    s->stage_rank = (int*)malloc((size_t)(S > 0 ? S : 1) * sizeof(int));
    for (int st = 0; st < S; st++) s->stage_rank[st] = st % P;
}

static inline void schedule_free(Schedule* s) {
    if (s->ranks)
        for (int r = 0; r < s->P; r++) free(s->ranks[r].a);
    free(s->ranks);
    free(s->stage_rank);
    memset(s, 0, sizeof(*s));
}

static inline void pp_list_push(ActionList* l, Action a) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->a = (Action*)realloc(l->a, (size_t)l->cap * sizeof(Action));
        if (!l->a) { fprintf(stderr, "schedule: out of memory\n"); exit(EXIT_FAILURE); }
    }
    l->a[l->n++] = a;
}

// append an action to `rank`'s program; the peer follows from the stage
static inline void schedule_push(Schedule* s, int rank, ActionType t, int stage, int mb) {
    Action a;
    a.type = t; a.stage = stage; a.mb = mb;
    a.peer = pp_is_compute(t) ? -1 : schedule_peer(s, t, stage);
    pp_list_push(&s->ranks[rank], a);
}

static inline int schedule_has_comms(const Schedule* s) {
    for (int r = 0; r < s->P; r++)
        for (int i = 0; i < s->ranks[r].n; i++)
            if (!pp_is_compute(s->ranks[r].a[i].type)) return 1;
    return 0;
}

// appends printf-style text to err (bounded), to build precise error messages
static inline void pp_errf(char* err, size_t errlen, const char* fmt, ...) {
    if (!err || errlen == 0) return;
    size_t used = strlen(err);
    if (used + 1 >= errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + used, errlen - used, fmt, ap);
    va_end(ap);
}

// does action y on rank ry complete the rendezvous of action x on rank rx?
static inline int pp_comm_matches(const Action* x, int rx, const Action* y, int ry) {
    if (x->peer != ry || y->peer != rx || x->mb != y->mb) return 0;
    switch (x->type) {
        case PP_SEND_F: return y->type == PP_RECV_F && y->stage == x->stage + 1;
        case PP_RECV_F: return y->type == PP_SEND_F && y->stage == x->stage - 1;
        case PP_SEND_B: return y->type == PP_RECV_B && y->stage == x->stage - 1;
        case PP_RECV_B: return y->type == PP_SEND_B && y->stage == x->stage + 1;
        default: return 0;
    }
}

/*
Runs the schedule under rendezvous semantics from positions cur[P] (zeros: the start):
compute always proceeds, a send/recv pair only once both ends reached it. Calls
step(ctx, r, i, q, j) for each compute action i of rank r (q = j = -1) and each matched
pair (action i of rank r, action j of rank q), in an order consistent with every rank's
program. Returns 1 if every rank finished, 0 on a deadlock (cur says where each waits).
*/
typedef void (*ScheduleStep)(void* ctx, int r, int i, int q, int j);

static inline int schedule_walk(const Schedule* s, int* cur, ScheduleStep step, void* ctx) {
    int progress = 1, alldone = 0;
    while (progress) {
        progress = 0; alldone = 1;
        for (int r = 0; r < s->P; r++) {
            const ActionList* L = &s->ranks[r];
            while (cur[r] < L->n) {
                const Action* a = &L->a[cur[r]];
                int q = a->peer, j = -1;
                if (!pp_is_compute(a->type)) {
                    if (q < 0 || q >= s->P || cur[q] >= s->ranks[q].n) break;
                    j = cur[q];
                    if (!pp_comm_matches(a, r, &s->ranks[q].a[j], q)) break;
                    cur[q]++;
                } else {
                    q = -1;
                }
                if (step) step(ctx, r, cur[r], q, j);
                cur[r]++; progress = 1;
            }
            if (cur[r] < L->n) alldone = 0;
        }
    }
    return alldone;
}

/*
The tied wte's two gradient halves (the embedding's on stage 0, the LM head's on the last stage) are summed on
both end ranks. The head's half travels while the schedule still runs: the head's rank sends it once the
LM head's last weight gradient is done, the embedding's rank posts its receive; each after the last message
of its own list, so the pair follows every message the validator ordered and cannot deadlock. Returns the
index in `rank`'s list after which it posts, or -1 when the rank holds neither end or both (no message).
*/
static inline int schedule_tied_wte_post(const Schedule* s, int rank) {
    int head = s->S - 1, embed_rank = s->stage_rank[0], head_rank = s->stage_rank[head], at = -1;
    if (embed_rank == head_rank || (rank != embed_rank && rank != head_rank)) return -1;
    const ActionList* L = &s->ranks[rank];
    for (int i = 0; i < L->n; i++) {
        const Action* a = &L->a[i];
        if (!pp_is_compute(a->type) || (rank == head_rank && a->stage == head && pp_is_bwd_weight(a->type))) at = i;
    }
    return at;
}

/*
The micro-batches whose activations `stage` keeps at once: one from its F until its
weight gradient is done (B, or W; after I only what W needs is left, counted whole here).
The trainers size each stage's stash with it and the simulator reports it.
*/
static inline int schedule_peak_inflight(const Schedule* s, int stage) {
    int r = s->stage_rank[stage], held = 0, peak = 0;
    if (r < 0) return 0;
    for (int i = 0; i < s->ranks[r].n; i++) {
        const Action* a = &s->ranks[r].a[i];
        if (a->stage != stage) continue;
        if (a->type == PP_F && ++held > peak) peak = held;
        if (pp_is_bwd_weight(a->type)) held--;
    }
    return peak;
}

// ----------------------------------------------------------------------------
// messages: builders and compute-only files list compute actions; this adds the messages

// messages due at the same time go edge by edge, edges whose lower rank is even first (Megatron's
// even/odd exchange: with a transfer time, neighbours then trade in two parallel waves rather
// than a chain along the pipeline), activation before gradient on an edge
static inline int pp_message_order(const Action* a, int sender, int P) {
    int lo = sender < a->peer ? sender : a->peer, hi = sender ^ a->peer ^ lo;
    return ((((lo & 1) * P + lo) * P + hi) * 2 + (a->type == PP_SEND_B)) * P + sender;
}

/*
The replay that places messages, and builds the cost-aware schedules: in time (unit time F = I = W = 1, B = 2,
or each stage's costs), an action starts once its rank is free and its input is there; a message goes once
its sender has finished the action that produced it and the receiver is not computing, and is written down
then, a SEND on the sender and a RECV on the receiver, so the programs are one complete execution under
rendezvous semantics: deadlock-free by construction (the validator proves it again), and the simulator
(free messages) gives the replay's own times. What a free rank computes next comes from `pick`: the next
action of its list (schedule_add_comms: a rank with a message to send waits), or a choice (zbc, zbcv: a
rank with a message may run an action that ends before the receiver is free, which costs nobody anything).
*/
typedef struct PPReplay PPReplay;
typedef int (*PPPick)(PPReplay* R, int r, double t, Action* a);  // 1: rank r starts *a at t

struct PPReplay {
    const Schedule* s;       // the placement (and for schedule_add_comms the compute lists)
    const StageCosts* cost;  // [S] or NULL: unit time
    double *in_f, *in_b, *f_done, *i_done;  // [S*M] when (stage, mb)'s input, d(output), F and I are there; -1 not yet
    double* busy;            // [P] rank r computes until busy[r]
    Action* out;             // [P][out_cap] the messages each rank produced and has not sent yet, in order
    size_t out_cap;
    int *head, *tail;        // [P] rank r's are out[r][head[r] .. tail[r])
    double limit;            // the picked action must end by then (a rank with a message: the receiver's end)
    int* cur;                // [P] the replay's position in each list
    void* ctx;               // the picker's own state
    double end;              // when the last rank finished
};

static inline double pp_duration(const StageCosts* c, const Action* a) {
    if (!c) return a->type == PP_B ? 2.0 : 1.0;
    return a->type == PP_F ? c[a->stage].f : a->type == PP_B ? c[a->stage].b : a->type == PP_I ? c[a->stage].i : c[a->stage].w;
}

// can rank-free action a (compute) start at t: its input, d(output), F or I there
static inline int pp_ready(const PPReplay* R, const Action* a, double t) {
    size_t k = (size_t)a->stage * R->s->M + a->mb;
    double need1 = a->type == PP_F ? R->in_f[k] : a->type == PP_W ? R->i_done[k] : R->f_done[k];
    double need2 = pp_is_bwd_input(a->type) ? R->in_b[k] : 0.0;
    return need1 >= 0 && need1 <= t && need2 >= 0 && need2 <= t;
}

static inline int pp_pick_listed(PPReplay* R, int r, double t, Action* a) {
    const ActionList* L = &R->s->ranks[r];
    if (R->head[r] < R->tail[r] || R->cur[r] >= L->n || !pp_ready(R, &L->a[R->cur[r]], t)) return 0;
    *a = L->a[R->cur[r]++];
    return 1;
}

// Runs the replay into res (an empty schedule with s's placement) until no rank picks anything. Returns 0, or -1
// when every unfinished rank waits for an input never produced (the caller names them).
static inline int pp_replay(PPReplay* R, PPPick pick, Schedule* res) {
    const Schedule* s = R->s;
    int P = s->P, S = s->S, M = s->M;
    size_t SM = (size_t)S * M;
    double* when = (double*)malloc(4 * SM * sizeof(double));
    R->in_f = when; R->in_b = when + SM; R->f_done = when + 2 * SM; R->i_done = when + 3 * SM;
    for (size_t i = 0; i < 4 * SM; i++) when[i] = i < (size_t)M ? 0.0 : -1.0;
    R->busy = (double*)calloc((size_t)P, sizeof(double));
    // each F or backward-input action queues at most one send: 2*S*M per rank, or more in a file not yet
    // validated that lists an action twice (the validator refuses it after this)
    size_t cap = 2 * SM;
    for (int r = 0; r < P; r++) if ((size_t)s->ranks[r].n > cap) cap = (size_t)s->ranks[r].n;
    R->out = (Action*)malloc((size_t)P * cap * sizeof(Action));
    R->out_cap = cap;
    R->head = (int*)calloc((size_t)2 * P, sizeof(int));
    R->tail = R->head + P;
#define PP_OUT(q) (&R->out[(size_t)(q) * cap + R->head[q]])  // the first message rank q has to send
    int rc = 0;
    for (double t = 0.0;;) {
        for (;;) {  // the messages due now, in order of pp_message_order
            int r = -1;
            for (int q = 0; q < P; q++) {
                if (R->head[q] == R->tail[q] || R->busy[q] > t || R->busy[PP_OUT(q)->peer] > t) continue;
                if (r < 0 || pp_message_order(PP_OUT(q), q, P) < pp_message_order(PP_OUT(r), r, P)) r = q;
            }
            if (r < 0) break;
            const Action* a = PP_OUT(r);
            R->head[r]++;
            int fwd = a->type == PP_SEND_F, stage = fwd ? a->stage + 1 : a->stage - 1;
            pp_list_push(&res->ranks[r], *a);
            schedule_push(res, a->peer, fwd ? PP_RECV_F : PP_RECV_B, stage, a->mb);
            (fwd ? R->in_f : R->in_b)[(size_t)stage * M + a->mb] = t;
        }
        for (int r = 0; r < P; r++) {
            Action a;
            if (R->busy[r] > t) continue;
            R->limit = R->head[r] < R->tail[r] ? R->busy[PP_OUT(r)->peer] : 1e300;
            if (!pick(R, r, t, &a)) continue;
            pp_list_push(&res->ranks[r], a);
            size_t k = (size_t)a.stage * M + a.mb;
            R->busy[r] = t + pp_duration(R->cost, &a);
            int next = a.type == PP_F ? a.stage + 1 : a.stage - 1;  // the stage that waits for the output
            if (a.type == PP_F) R->f_done[k] = R->busy[r];
            if (pp_is_bwd_input(a.type)) R->i_done[k] = R->busy[r];
            if (a.type == PP_F && a.stage == S - 1) R->in_b[k] = R->busy[r];
            if (a.type != PP_W && next >= 0 && next < S) {
                if (schedule_stage_rank(s, next) == r) {
                    (a.type == PP_F ? R->in_f : R->in_b)[(a.type == PP_F ? k + M : k - M)] = R->busy[r];
                } else {
                    a.type = a.type == PP_F ? PP_SEND_F : PP_SEND_B;
                    a.peer = schedule_peer(s, a.type, a.stage);
                    R->out[(size_t)r * cap + R->tail[r]++] = a;
                }
            }
        }
#undef PP_OUT
        double next_t = -1.0;  // the next time a rank becomes free
        for (int q = 0; q < P; q++)
            if (R->busy[q] > t && (next_t < 0 || R->busy[q] < next_t)) next_t = R->busy[q];
        if (next_t < 0) {  // every rank free and no message left: finished, or stuck
            for (int q = 0; q < P; q++) rc |= R->head[q] < R->tail[q];
            R->end = t;
            break;
        }
        t = next_t;
    }
    free(when); free(R->busy); free(R->out); free(R->head);
    return rc ? -1 : 0;
}

// messages: builders and compute-only files list compute actions; this adds them by replaying the lists in
// unit time. In 1F1B's steady state this gives Megatron's send_forward_recv_backward and
// send_backward_recv_forward pairs, activation first on both ends. Returns 0, or -1 naming the ranks that are
// stuck when the compute order can never complete (e.g. a backward whose gradient is never produced).
static inline int schedule_add_comms(Schedule* s, char* err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    int P = s->P, S = s->S, M = s->M;
    for (int st = 0; st < S; st++)
        if (s->stage_rank[st] < 0 || s->stage_rank[st] >= P) {
            pp_errf(err, errlen, "stage %d has no rank (no rank runs any of its actions)", st);
            return -1;
        }
    Schedule res;
    schedule_init(&res, P, S, M);
    memcpy(res.stage_rank, s->stage_rank, (size_t)S * sizeof(int));
    PPReplay R;
    memset(&R, 0, sizeof(R));
    R.s = s;
    R.cur = (int*)calloc((size_t)P, sizeof(int));
    int rc = pp_replay(&R, pp_pick_listed, &res);
    for (int r = 0; r < P; r++) rc |= R.cur[r] < s->ranks[r].n ? -1 : 0;
    if (rc) {
        char tok[48];
        pp_errf(err, errlen, "cannot place messages, the compute order never completes:");
        for (int r = 0; r < P; r++)
            if (R.cur[r] < s->ranks[r].n)
                pp_errf(err, errlen, " rank %d stuck at #%d '%s' (its input is never produced before it);", r,
                        R.cur[r], schedule_action_str(&s->ranks[r].a[R.cur[r]], tok, sizeof(tok)));
        schedule_free(&res);
    } else {
        schedule_free(s);
        *s = res;
    }
    free(R.cur);
    return rc;
}

// ----------------------------------------------------------------------------
// builders: each lists every rank's compute in order, then schedule_add_comms.
// Every stage runs its weight-gradient work (B or W) in increasing micro-batch order, so all
// schedules sum the gradients of a step in the same order: the same bits as 1F1B.

// GPipe: all forwards, then all backwards (in increasing order, not the paper's reverse order)
static inline int schedule_build_gpipe(int P, int M, Schedule* out) {
    schedule_init(out, P, P, M);
    for (int r = 0; r < P; r++) {
        for (int m = 0; m < M; m++) schedule_push(out, r, PP_F, r, m);
        for (int m = 0; m < M; m++) schedule_push(out, r, PP_B, r, m);
    }
    return schedule_add_comms(out, NULL, 0);
}

// 1F1B (PipeDream-Flush): rank r runs w = min(P-r-1, M) warm-up forwards, then M-w
// (forward, backward) pairs, then w backwards. Rank r holds min(P-r, M) micro-batches,
// against M for GPipe; same bubble (P-1)/(M+P-1).
static inline int schedule_build_1f1b(int P, int M, Schedule* out) {
    schedule_init(out, P, P, M);
    for (int r = 0; r < P; r++) {
        int w = P - r - 1 < M ? P - r - 1 : M;
        for (int m = 0; m < w; m++) schedule_push(out, r, PP_F, r, m);
        for (int j = 0; j < M - w; j++) {
            schedule_push(out, r, PP_F, r, w + j);
            schedule_push(out, r, PP_B, r, j);
        }
        for (int m = M - w; m < M; m++) schedule_push(out, r, PP_B, r, m);
    }
    return schedule_add_comms(out, NULL, 0);
}

/*
Interleaved 1F1B (Narayanan et al. 2021, Megatron's depth-first order): S = v P stages,
stage s on rank s % P, so rank r holds v chunks of L/(vP) layers and the bubble shrinks by
v. Micro-batches go through the chunks in groups of P: the k-th forward of a rank is chunk
(k / P) % v of micro-batch (k / vP) P + k % P; the k-th backward the same with the chunks
reversed. Rank r runs 2(P-r-1) + (v-1)P warm-up forwards, then pairs, then backwards.
Requires M to be a multiple of P (the groups of P); returns -1 otherwise.
*/
static inline int schedule_build_interleaved(int P, int M, int v, Schedule* out) {
    memset(out, 0, sizeof(*out));
    if (v < 2 || M % P != 0) return -1;
    schedule_init(out, P, v * P, M);
    int n = v * M;  // compute actions of each kind per rank
    for (int r = 0; r < P; r++) {
        int w = 2 * (P - r - 1) + (v - 1) * P;
        if (w > n) w = n;
        for (int k = 0; k < n + w; k++) {
            int f = k < n ? k : -1, b = k - w;  // the k-th step: forward f (warm-up, pairs), backward b
            if (f >= 0) schedule_push(out, r, PP_F, ((f / P) % v) * P + r, (f / (v * P)) * P + f % P);
            if (b >= 0) schedule_push(out, r, PP_B, (v - 1 - (b / P) % v) * P + r, (b / (v * P)) * P + b % P);
        }
    }
    return schedule_add_comms(out, NULL, 0);
}

/*
Zero-bubble schedules (Qi et al., ICLR 2024) by list scheduling in unit time (F = I = W = 1):
whenever a rank is free it runs, in this order,
 1. a ready I, latest stage first: the upstream stage waits for its d(input);
 2. a ready F, latest stage first, if the rank's stash has room for it;
 3. the oldest pending W, which only fills time and frees the stash.
`cap` bounds the stash of a rank in stage-micro-batches (F to W). An F of the rank's first
stage reserves a slot in each of its stages, so a full rank can still run its later
stages' forwards and never blocks the pipeline. Stages take micro-batches in order, so
every stage runs its I and W in increasing micro-batch order.
*/
static inline int pp_done_by(int end, int t) { return end >= 0 && end <= t; }

static inline int pp_build_zero_bubble(int P, int S, const int* stage_rank, int M, int cap, Schedule* out) {
    schedule_init(out, P, S, M);
    memcpy(out->stage_rank, stage_rank, (size_t)S * sizeof(int));
    // per stage: the next F, I and W micro-batch; per (stage, mb): when F and I finished (-1 not yet)
    int* next = (int*)calloc((size_t)3 * S, sizeof(int));
    int *nf = next, *ni = next + S, *nw = next + 2 * S;
    int* done = (int*)malloc((size_t)2 * S * M * sizeof(int));
    int *f_end = done, *i_end = done + (size_t)S * M;
    int* used = (int*)calloc((size_t)P, sizeof(int));
    int* first = (int*)malloc((size_t)P * sizeof(int));  // first stage of each rank
    int* nstages = (int*)calloc((size_t)P, sizeof(int));
    for (int i = 0; i < 2 * S * M; i++) done[i] = -1;
    for (int st = S - 1; st >= 0; st--) { first[stage_rank[st]] = st; nstages[stage_rank[st]]++; }
    int left = 3 * S * M, rc = 0;
    for (int t = 0; left > 0; t++) {
        int ran = 0;
        for (int r = 0; r < P; r++) {
            int pick = -1;
            ActionType type = PP_F;
            for (int st = S - 1; st >= 0 && pick < 0; st--) {  // 1. I
                int m = ni[st];
                if (stage_rank[st] != r || m >= M || !pp_done_by(f_end[st * M + m], t)) continue;
                if (st == S - 1 || pp_done_by(i_end[(st + 1) * M + m], t)) { pick = st; type = PP_I; }
            }
            for (int st = S - 1; st >= 0 && pick < 0; st--) {  // 2. F
                int m = nf[st];
                if (stage_rank[st] != r || m >= M || (st > 0 && !pp_done_by(f_end[(st - 1) * M + m], t))) continue;
                if (st == first[r] && used[r] + nstages[r] > cap) continue;
                pick = st; type = PP_F;
            }
            for (int st = 0; st < S && pick < 0; st++)  // 3. W
                if (stage_rank[st] == r && nw[st] < ni[st] && pp_done_by(i_end[st * M + nw[st]], t)) { pick = st; type = PP_W; }
            if (pick < 0) continue;
            int* n = type == PP_F ? &nf[pick] : type == PP_I ? &ni[pick] : &nw[pick];
            schedule_push(out, r, type, pick, *n);
            if (type == PP_F) f_end[pick * M + *n] = t + 1;
            if (type == PP_I) i_end[pick * M + *n] = t + 1;
            if (type == PP_F && pick == first[r]) used[r] += nstages[r];
            if (type == PP_W) used[r]--;
            (*n)++; left--; ran = 1;
        }
        if (!ran) { rc = -1; break; }  // nothing can ever run again: cap < stages per rank
    }
    free(next); free(done); free(used); free(first); free(nstages);
    return rc ? rc : schedule_add_comms(out, NULL, 0);
}

// ZB-H1: stash capped at P micro-batches per rank, 1F1B's peak (its stage 0); the W's fill
// 1F1B's bubbles. ZB-H2: cap 2P-1, enough warm-up forwards to fill the start as well.
static inline int schedule_build_zbh(int P, int M, int cap, Schedule* out) {
    int* place = (int*)malloc((size_t)P * sizeof(int));
    for (int st = 0; st < P; st++) place[st] = st;
    int rc = pp_build_zero_bubble(P, P, place, M, cap, out);
    free(place);
    return rc;
}

// ZB-V: 2P stages in a V, rank r holds stages r and 2P-1-r (each half a 1F1B stage), so rank 0
// holds the first and the last stage; stash capped at 2P half-stages, 1F1B's peak memory.
static inline int schedule_build_zbv(int P, int M, Schedule* out) {
    int* place = (int*)malloc((size_t)2 * P * sizeof(int));
    for (int r = 0; r < P; r++) { place[r] = r; place[2 * P - 1 - r] = r; }
    int rc = pp_build_zero_bubble(P, 2 * P, place, M, 2 * P, out);
    free(place);
    return rc;
}

/*
A cost-aware zero-bubble schedule (`-sc zbc`, `zbcv`): the list scheduling of ZB-H1/H2 run in the measured
time of each stage's F, I and W (Qi et al. 2024 build theirs from profiled costs too), with the messages
placed as it goes, so the order accounts for what a W of 0.5 s does to a gradient that arrives meanwhile.
A free rank runs a ready I (latest stage first), else a ready F (latest stage first) if its stash has room
(`cap` stage-micro-batches; an F of its first stage reserves a slot in each of its stages), else its oldest
ready W, unless an input this rank waits for arrives within `wait` times that W's length (then it idles).
Stages take micro-batches in order, so W runs in micro-batch order on every stage: the bits of 1F1B.
*/
typedef struct {
    int *nf, *ni, *nw;           // [S] the next F, I and W micro-batch of each stage
    int *used, *first, *nstages; // [P] stash slots held, first stage, stages of each rank
    int cap, f_first;
    double wait;
} PPGreedy;

static inline int pp_pick_greedy(PPReplay* R, int r, double t, Action* a) {
    PPGreedy* g = (PPGreedy*)R->ctx;
    const Schedule* s = R->s;
    int S = s->S, M = s->M;
    a->peer = -1;
    for (int k = 0; k < 2; k++)  // I, then F (or F first)
        for (int st = S - 1; st >= 0; st--) {
            int pass = k ^ g->f_first;
            a->type = pass ? PP_F : PP_I; a->stage = st; a->mb = pass ? g->nf[st] : g->ni[st];
            if (s->stage_rank[st] != r || a->mb >= M || !pp_ready(R, a, t)) continue;
            if (t + pp_duration(R->cost, a) > R->limit) continue;
            if (pass && st == g->first[r] && g->used[r] + g->nstages[r] > g->cap) continue;
            if (pass) { g->nf[st]++; if (st == g->first[r]) g->used[r] += g->nstages[r]; }
            else g->ni[st]++;
            return 1;
        }
    for (int st = 0; st < S; st++) {
        a->type = PP_W; a->stage = st; a->mb = g->nw[st];
        if (s->stage_rank[st] != r || a->mb >= g->ni[st] || !pp_ready(R, a, t)) continue;
        if (t + pp_duration(R->cost, a) > R->limit) continue;
        double until = t + g->wait * pp_duration(R->cost, a);  // an input due before this: wait for it
        for (int q = 0; q < s->P; q++)
            for (int h = R->head[q]; h < R->tail[q]; h++)
                if (R->out[(size_t)q * R->out_cap + h].peer == r && R->busy[q] < until) return 0;
        g->nw[st]++; g->used[r]--;
        return 1;
    }
    return 0;
}

// One candidate: the greedy list with this stash cap and wait; returns its makespan (the simulator's with
// these costs and free messages), or -1 when nothing can run (cap below the rank's stages)
static inline double pp_build_greedy(int P, int S, const int* stage_rank, int M, const StageCosts* cost, int cap,
                                     double wait, int f_first, Schedule* out) {
    schedule_init(out, P, S, M);
    memcpy(out->stage_rank, stage_rank, (size_t)S * sizeof(int));
    PPGreedy g;
    int* mem = (int*)calloc((size_t)3 * S + 3 * P, sizeof(int));
    g.nf = mem; g.ni = mem + S; g.nw = mem + 2 * S;
    g.used = mem + 3 * S; g.first = g.used + P; g.nstages = g.first + P;
    g.cap = cap; g.wait = wait; g.f_first = f_first;
    for (int st = S - 1; st >= 0; st--) { g.first[stage_rank[st]] = st; g.nstages[stage_rank[st]]++; }
    PPReplay R;
    memset(&R, 0, sizeof(R));
    R.s = out; R.cost = cost; R.ctx = &g;
    int rc = pp_replay(&R, pp_pick_greedy, out);
    for (int st = 0; st < S; st++) rc |= g.nw[st] < M ? -1 : 0;
    free(mem);
    return rc ? -1.0 : R.end;
}

/*
The greedy's order is then improved by a local search (Qi et al. solve an ILP for the same purpose), threshold
accepting (Dueck and Scheuer 1990): one compute action of a rank moves to another place in its list, the
lists are replayed in the costs (the messages placed again), and the move stays when the step gets no longer
than the current one plus a threshold that falls linearly from PP_THRESHOLD of the step to 0; the shortest
lists seen are kept. Taking slightly worse moves early lets it leave the first local optimum: with the d12
costs of issue 10's test (zbcv 3,3,5,1 on 2 ranks) it reaches a bubble of 0.0275 from the greedy's 0.0486,
where moving only to shorter steps (up to 16 places) stopped at 0.0386. A move never passes an action of
its own stage and micro-batch, nor one of its stage and type (micro-batch order: the bits of 1F1B), never
lets a rank hold more than the builder's largest cap of stage-micro-batches at once, and a replay that gets
stuck is refused. The moves come from a fixed seed and the budget of replays from the schedule's size, and
the arithmetic is + - * / only: a name builds the same schedule wherever doubles round alike, which the
trainers check across ranks before the first step (pipeline_fingerprint, llmc/pipeline.h).
*/
#define PP_THRESHOLD 0.005   // of the starting step time
#define PP_IMPROVE_WORK 4e6   // replays x actions per replay (zbcv P=2 M=8: 0.3 s)

// a listed order replayed as the greedy runs: a rank with a message to send may run its next action when
// that ends before the receiver is free
static inline int pp_pick_listed_costed(PPReplay* R, int r, double t, Action* a) {
    const ActionList* L = &R->s->ranks[r];
    if (R->cur[r] >= L->n || !pp_ready(R, &L->a[R->cur[r]], t)) return 0;
    if (t + pp_duration(R->cost, &L->a[R->cur[r]]) > R->limit) return 0;
    *a = L->a[R->cur[r]++];
    return 1;
}

// the step time of compute lists L replayed in these costs, their schedule with messages in *res (to free
// either way); -1 when a rank gets stuck
static inline double pp_replay_lists(const Schedule* L, const StageCosts* cost, Schedule* res) {
    PPReplay R;
    memset(&R, 0, sizeof(R));
    int* cur = (int*)calloc((size_t)L->P, sizeof(int));
    R.s = L; R.cost = cost; R.cur = cur;
    schedule_init(res, L->P, L->S, L->M);
    memcpy(res->stage_rank, L->stage_rank, (size_t)L->S * sizeof(int));
    int rc = pp_replay(&R, pp_pick_listed_costed, res);
    for (int r = 0; r < L->P; r++) rc |= cur[r] < L->ranks[r].n ? -1 : 0;
    free(cur);
    return rc ? -1.0 : R.end;
}

// A[i] to position j, the actions between shifting by one
static inline void pp_move(Action* A, int i, int j) {
    Action x = A[i];
    if (i < j) memmove(A + i, A + i + 1, (size_t)(j - i) * sizeof(Action));
    else memmove(A + j + 1, A + j, (size_t)(i - j) * sizeof(Action));
    A[j] = x;
}

// xorshift64 (Marsaglia 2003): the local search's moves, from a fixed seed
static inline uint64_t pp_rand(uint64_t* x) {
    *x ^= *x << 13; *x ^= *x >> 7; *x ^= *x << 17;
    return *x;
}

// the most stage-micro-batches a rank's list holds at once: an F takes one, its W (or B) gives it back
static inline int pp_held_peak(const ActionList* L) {
    int held = 0, peak = 0;
    for (int i = 0; i < L->n; i++) {
        if (L->a[i].type == PP_F && ++held > peak) peak = held;
        if (pp_is_bwd_weight(L->a[i].type)) held--;
    }
    return peak;
}

// improves *out (step time *end in cost) in place within `budget` replays, no rank holding more than `cap`
static inline void pp_improve(Schedule* out, const StageCosts* cost, int cap, double* end, long budget) {
    int P = out->P, S = out->S, M = out->M;
    Schedule L;  // the compute lists
    schedule_init(&L, P, S, M);
    memcpy(L.stage_rank, out->stage_rank, (size_t)S * sizeof(int));
    for (int r = 0; r < P; r++)
        for (int i = 0; i < out->ranks[r].n; i++)
            if (pp_is_compute(out->ranks[r].a[i].type)) pp_list_push(&L.ranks[r], out->ranks[r].a[i]);
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    double cur = *end, threshold = PP_THRESHOLD * *end;
    // a draw that passes an action it may not is refused before any replay: cap the draws as well
    for (long left = budget, draws = 0; left > 0 && draws < 64 * budget; draws++) {
        int r = (int)(pp_rand(&seed) % (uint64_t)P), n = L.ranks[r].n;
        if (n < 2) continue;
        Action* A = L.ranks[r].a;
        int i = (int)(pp_rand(&seed) % (uint64_t)n), j = (int)(pp_rand(&seed) % (uint64_t)n), passes = 0;
        for (int k = (i < j ? i + 1 : j); k <= (i < j ? j : i - 1); k++)
            passes |= A[k].stage == A[i].stage && (A[k].type == A[i].type || A[k].mb == A[i].mb);
        if (i == j || passes) continue;
        pp_move(A, i, j);
        if (pp_held_peak(&L.ranks[r]) > cap) { pp_move(A, j, i); continue; }
        Schedule res;
        double t = pp_replay_lists(&L, cost, &res);
        double allowed = cur + threshold * (double)left / (double)budget;
        left--;
        if (t < 0 || t > allowed) {
            pp_move(A, j, i);
            schedule_free(&res);
            continue;
        }
        cur = t;
        if (t < *end * (1.0 - 1e-9)) { schedule_free(out); *out = res; *end = t; }
        else schedule_free(&res);
    }
    schedule_free(&L);
}

/*
The cost-aware builder: S stages placed by stage_rank, each with its costs (NULL: unit time, F = I = W = 1).
Tries every stash cap from the rank's stages to max_cap and waits of 0, 1/2 and 1 W, and keeps the fastest
(ties: the smaller cap); with `improve`, that one improved by the local search, whose order may hold up to
max_cap (the stash the simulator counts is what the final order holds). Returns 0, or -1 when no cap can
run (max_cap below a rank's stages).
*/
static inline int schedule_build_costed(int P, int S, const int* stage_rank, int M, const StageCosts* cost,
                                        int max_cap, int improve, Schedule* out) {
    static const double waits[3] = {0.0, 0.5, 1.0};
    int best = -1;
    double best_end = 0.0;
    for (int c = 0; c < 6 * max_cap; c++) {  // candidate c: cap 1 + c / 6, wait c % 3, F first when c % 6 >= 3
        Schedule s;
        double end = pp_build_greedy(P, S, stage_rank, M, cost, 1 + c / 6, waits[c % 3], c % 6 / 3, &s);
        schedule_free(&s);
        if (end >= 0 && (best < 0 || end < best_end)) { best = c; best_end = end; }  // end < 0: cap below a rank's stages
    }
    memset(out, 0, sizeof(*out));
    if (best < 0) return -1;
    pp_build_greedy(P, S, stage_rank, M, cost, 1 + best / 6, waits[best % 3], best % 6 / 3, out);
    if (improve) pp_improve(out, cost, max_cap, &best_end, (long)(PP_IMPROVE_WORK / (3.0 * S * M)));
    return 0;
}

// The cost-aware builder by name: "zbc" one stage per rank (stage s on rank s), "zbcv" two in a V as ZB-V.
// After a ':' come the costs, F/I/W per stage, stages separated by ',' (what -sc auto writes with the
// measured ones); without them every stage costs F = I = W = 1. Returns the stages per rank (1 or 2) with
// *cost malloc'd (NULL without costs), 0 for another builder's name, -1 for malformed costs.
static inline int pp_parse_costed(const char* name, int P, StageCosts** cost) {
    int v = strncmp(name, "zbcv", 4) == 0 ? 2 : strncmp(name, "zbc", 3) == 0 ? 1 : 0;
    const char* p = name + 2 + v;
    *cost = NULL;
    if (!v || (*p != 0 && *p != ':')) return 0;
    if (*p == 0) return v;
    int S = v * P;
    if (P < 1 || S > SCHEDULE_MAX_STAGES) return -1;
    StageCosts* c = (StageCosts*)malloc((size_t)S * sizeof(StageCosts));
    p++;
    for (int st = 0; st < S; st++) {
        double x[3];
        for (int k = 0; k < 3; k++) {
            char* end = NULL;
            char sep = k < 2 ? '/' : st < S - 1 ? ',' : 0;
            x[k] = (*p >= '0' && *p <= '9') || *p == '.' ? strtod(p, &end) : -1.0;
            if (!(x[k] > 0 && x[k] < 1e30) || *end != sep) { free(c); return -1; }
            p = end + (sep != 0);
        }
        c[st].f = x[0]; c[st].i = x[1]; c[st].w = x[2]; c[st].b = x[1] + x[2];
    }
    *cost = c;
    return v;
}

// the stages of the cost-aware builder with v stages per rank: in order, or in a V (rank r: r and 2P-1-r)
static inline void pp_costed_placement(int P, int v, int* stage_rank) {
    for (int r = 0; r < P; r++) {
        stage_rank[r] = r;
        if (v == 2) stage_rank[2 * P - 1 - r] = r;
    }
}

#define SCHEDULE_NAME_MAX 4096  // room for a cost-aware builder's name with its costs

// The name that builds base ("zbc" or "zbcv") with these S stage costs, as -sc takes it; 0, or -1 if it
// does not fit in n bytes. Four significant digits: what matters is how the stages compare.
static inline int schedule_costed_name(const char* base, const StageCosts* cost, int S, char* buf, size_t n) {
    size_t len = (size_t)snprintf(buf, n, "%s:", base);
    for (int st = 0; st < S && len < n; st++)
        len += (size_t)snprintf(buf + len, n - len, "%s%.4g/%.4g/%.4g", st ? "," : "", cost[st].f, cost[st].i, cost[st].w);
    return len < n ? 0 : -1;
}

// Forward only (validation, sampling): each stage receives, runs and sends each micro-batch in turn.
static inline void schedule_build_forward(int P, int M, Schedule* out) {
    schedule_init(out, P, P, M);
    for (int s = 0; s < P; s++) {
        for (int m = 0; m < M; m++) {
            if (s > 0) schedule_push(out, s, PP_RECV_F, s, m);
            schedule_push(out, s, PP_F, s, m);
            if (s < P - 1) schedule_push(out, s, PP_SEND_F, s, m);
        }
    }
}

// Forward only on the stages of `placed` (validation, sampling with several stages per rank): each rank
// runs micro-batch by micro-batch, its stages in order; schedule_add_comms places the messages.
static inline int schedule_build_forward_placed(const Schedule* placed, int M, Schedule* out) {
    schedule_init(out, placed->P, placed->S, M);
    memcpy(out->stage_rank, placed->stage_rank, (size_t)placed->S * sizeof(int));
    for (int m = 0; m < M; m++)
        for (int st = 0; st < placed->S; st++) schedule_push(out, placed->stage_rank[st], PP_F, st, m);
    return schedule_add_comms(out, NULL, 0);
}

// `-sc` names; interleaved takes its stages per rank as "interleaved:v" (default v = 2)
#define SCHEDULE_NAMES "gpipe|1f1b|interleaved[:v]|zbh1|zbh2|zbv|zbc[:costs]|zbcv[:costs]"
#define SCHEDULE_ERR_NAME 1  // unknown schedule name
#define SCHEDULE_ERR_ARGS 2  // P or M the builder cannot handle: see schedule_requires

// what a builder needs of P and M, for the error message of SCHEDULE_ERR_ARGS
static inline const char* schedule_requires(const char* name) {
    if (name && strncmp(name, "interleaved", 11) == 0)
        return "M a multiple of P, v >= 2, v P <= " PP_STR(SCHEDULE_MAX_STAGES) " stages, M <= " PP_STR(SCHEDULE_MAX_MICROBATCHES);
    if (name && strncmp(name, "zbc", 3) == 0)
        return "P >= 1 (zbcv: 2P stages) up to " PP_STR(SCHEDULE_MAX_STAGES) " stages, 1 <= M <= "
               PP_STR(SCHEDULE_MAX_MICROBATCHES) ", costs as F/I/W per stage (P of them, zbcv 2P), each > 0, "
               "stages separated by ','";
    return "P >= 1 (ZB-V: 2P stages) up to " PP_STR(SCHEDULE_MAX_STAGES) " stages, 1 <= M <= " PP_STR(SCHEDULE_MAX_MICROBATCHES);
}

// build by name; returns 0, SCHEDULE_ERR_NAME or SCHEDULE_ERR_ARGS (out is then empty). improve = 0 skips the
// cost-aware builders' local search (-sc auto's search of splits, which builds hundreds to compare them).
static inline int schedule_build_opt(const char* name, int P, int M, int improve, Schedule* out) {
    memset(out, 0, sizeof(*out));
    if (!name) return SCHEDULE_ERR_NAME;
    int v = 0, rc = -1;
    StageCosts* cost = NULL;
    int cv = pp_parse_costed(name, P, &cost);
    if (cv != 0) {
        if (cv < 0 || P < 1 || M < 1 || cv * P > SCHEDULE_MAX_STAGES || M > SCHEDULE_MAX_MICROBATCHES) {
            free(cost);
            return SCHEDULE_ERR_ARGS;
        }
        int* place = (int*)malloc((size_t)cv * P * sizeof(int));
        pp_costed_placement(P, cv, place);
        rc = schedule_build_costed(P, cv * P, place, M, cost, 2 * cv * P - 1, improve, out);
        free(place);
        free(cost);
        return rc == 0 ? 0 : SCHEDULE_ERR_ARGS;
    }
    if (strncmp(name, "interleaved", 11) == 0) {
        const char* p = name + 11;
        char* end = NULL;
        v = *p == 0 ? 2 : *p == ':' && p[1] >= '1' && p[1] <= '9' && strlen(p) <= 4 ? (int)strtol(p + 1, &end, 10) : -1;
        if (v < 0 || (end && *end)) return SCHEDULE_ERR_NAME;
    } else if (strcmp(name, "gpipe") && strcmp(name, "1f1b") && strcmp(name, "zbh1") && strcmp(name, "zbh2") &&
               strcmp(name, "zbv")) {
        return SCHEDULE_ERR_NAME;
    }
    if (P < 1 || M < 1 || P > SCHEDULE_MAX_STAGES || M > SCHEDULE_MAX_MICROBATCHES) return SCHEDULE_ERR_ARGS;
    if ((v ? v : strcmp(name, "zbv") == 0 ? 2 : 1) * P > SCHEDULE_MAX_STAGES) return SCHEDULE_ERR_ARGS;
    if (v) rc = schedule_build_interleaved(P, M, v, out);
    else if (strcmp(name, "gpipe") == 0) rc = schedule_build_gpipe(P, M, out);
    else if (strcmp(name, "1f1b") == 0) rc = schedule_build_1f1b(P, M, out);
    else if (strcmp(name, "zbh1") == 0) rc = schedule_build_zbh(P, M, P, out);
    else if (strcmp(name, "zbh2") == 0) rc = schedule_build_zbh(P, M, 2 * P - 1, out);
    else rc = schedule_build_zbv(P, M, out);
    if (rc != 0) schedule_free(out);
    return rc == 0 ? 0 : SCHEDULE_ERR_ARGS;
}

static inline int schedule_build(const char* name, int P, int M, Schedule* out) {
    return schedule_build_opt(name, P, M, 1, out);
}

// ----------------------------------------------------------------------------
// validation

// position of the first occurrence of each (type, stage, mb) on its rank
typedef struct {
    int* pos;   // [PP_NUM_ACTION_TYPES][S*M], -1 if absent
    int* cnt;
    int S, M;
} PPIndex;

static inline int* pp_at(int* arr, const PPIndex* ix, int t, int stage, int mb) {
    return &arr[((size_t)t * ix->S + stage) * ix->M + mb];
}

/*
Returns 0 if the schedule is valid, else -1 with the first problem described in err.
Checks, in order:
 - shape: P, S, M >= 1 and within the bounds; every stage on a rank; every action's
   stage/micro-batch in range, on the rank that owns its stage, comm actions have the right peer and a neighbour stage (stage 0
   has no RECV_F/SEND_B, the last stage no SEND_F/RECV_B);
 - every (stage, mb) forward exactly once; backward exactly once, as B or as an I+W pair;
   every needed message sent and received exactly once; nothing duplicated;
 - per rank data order: RECV_F(m) < F(m) < SEND_F(m); F(m) < B(m); RECV_B(m) < B(m) <
   SEND_B(m); I(m) < W(m);
 - per stage, weight-gradient backwards (B or W) in increasing micro-batch order. The
   gradient of a step is a float sum over micro-batches; a fixed order makes it bitwise
   identical across schedules (and to the non-pipelined run);
 - per channel (src rank -> dst rank) the sends and recvs match one to one in order;
 - a dry run with blocking rendezvous send/recv finishes (no deadlock); otherwise the
   message says where every unfinished rank waits.
*/
static inline int schedule_validate(const Schedule* s, char* err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    char t1[48], t2[48];
    if (s->P < 1 || s->S < 1 || s->M < 1) {
        pp_errf(err, errlen, "bad shape: P=%d S=%d M=%d (all must be >= 1)", s->P, s->S, s->M);
        return -1;
    }
    if (s->S > SCHEDULE_MAX_STAGES || s->P > s->S || s->M > SCHEDULE_MAX_MICROBATCHES) {
        pp_errf(err, errlen, "too large: P=%d S=%d M=%d (need P <= S <= %d, M <= %d)", s->P, s->S, s->M,
                SCHEDULE_MAX_STAGES, SCHEDULE_MAX_MICROBATCHES);
        return -1;
    }
    for (int st = 0; st < s->S; st++) {
        if (s->stage_rank[st] < 0 || s->stage_rank[st] >= s->P) {
            pp_errf(err, errlen, "stage %d has no rank (no rank runs any of its actions)", st);
            return -1;
        }
    }
    int P = s->P, S = s->S, M = s->M;
    PPIndex ix;
    ix.S = S; ix.M = M;
    size_t nidx = (size_t)PP_NUM_ACTION_TYPES * S * M;
    ix.pos = (int*)malloc(nidx * sizeof(int));
    ix.cnt = (int*)calloc(nidx, sizeof(int));
    for (size_t i = 0; i < nidx; i++) ix.pos[i] = -1;
    int rc = -1;
    unsigned char* used = NULL;
    // --- per action shape checks, counting
#define PP_TOK(a) schedule_action_str((a), t1, sizeof(t1))
    for (int r = 0; r < P; r++) {
        for (int i = 0; i < s->ranks[r].n; i++) {
            const Action* a = &s->ranks[r].a[i];
            if ((int)a->type < 0 || (int)a->type >= PP_NUM_ACTION_TYPES) {
                pp_errf(err, errlen, "rank %d action #%d: invalid action type %d", r, i, (int)a->type);
                goto out;
            }
            if (a->stage < 0 || a->stage >= S) {
                pp_errf(err, errlen, "rank %d action #%d '%s': stage %d out of range 0..%d", r, i, PP_TOK(a), a->stage, S - 1);
                goto out;
            }
            if (a->mb < 0 || a->mb >= M) {
                pp_errf(err, errlen, "rank %d action #%d '%s': micro-batch %d out of range 0..%d", r, i, PP_TOK(a), a->mb, M - 1);
                goto out;
            }
            if (schedule_stage_rank(s, a->stage) != r) {
                pp_errf(err, errlen, "rank %d action #%d '%s': stage %d runs on rank %d, not rank %d", r, i, PP_TOK(a),
                        a->stage, schedule_stage_rank(s, a->stage), r);
                goto out;
            }
            if (!pp_is_compute(a->type)) {
                int pr = schedule_peer(s, a->type, a->stage);
                if (pr < 0) {
                    pp_errf(err, errlen, "rank %d action #%d '%s': %s stage %d has no %s stage to %s", r, i, PP_TOK(a),
                            a->stage == 0 ? "first" : "last", a->stage,
                            (a->type == PP_RECV_F || a->type == PP_SEND_B) ? "previous" : "next",
                            pp_is_send(a->type) ? "send to" : "receive from");
                    goto out;
                }
                if (pr == r) {
                    pp_errf(err, errlen, "rank %d action #%d '%s': neighbour stage is on the same rank, no message needed", r, i, PP_TOK(a));
                    goto out;
                }
                if (a->peer != pr) {
                    pp_errf(err, errlen, "rank %d action #%d '%s': peer is rank %d, expected rank %d", r, i, PP_TOK(a), a->peer, pr);
                    goto out;
                }
            }
            int* c = pp_at(ix.cnt, &ix, a->type, a->stage, a->mb);
            int* p = pp_at(ix.pos, &ix, a->type, a->stage, a->mb);
            if (*c > 0) {
                pp_errf(err, errlen, "duplicate action: rank %d has '%s' twice (actions #%d and #%d)", r, PP_TOK(a), *p, i);
                goto out;
            }
            (*c)++; *p = i;
        }
    }
#undef PP_TOK
    // --- completeness
    for (int st = 0; st < S; st++) {
        int r = schedule_stage_rank(s, st);
        int has_prev = st > 0 && schedule_stage_rank(s, st - 1) != r;
        int has_next = st < S - 1 && schedule_stage_rank(s, st + 1) != r;
        for (int m = 0; m < M; m++) {
            int f = *pp_at(ix.cnt, &ix, PP_F, st, m), b = *pp_at(ix.cnt, &ix, PP_B, st, m);
            int bi = *pp_at(ix.cnt, &ix, PP_I, st, m), bw = *pp_at(ix.cnt, &ix, PP_W, st, m);
            if (!f) { pp_errf(err, errlen, "missing forward '%dF%d' (stage %d on rank %d)", st, m, st, r); goto out; }
            if (b && (bi || bw)) {
                pp_errf(err, errlen, "rank %d: stage %d micro-batch %d has both a full backward B and a split I/W backward", r, st, m);
                goto out;
            }
            if (!b && !bi && !bw) { pp_errf(err, errlen, "missing backward '%dB%d' (stage %d on rank %d)", st, m, st, r); goto out; }
            if (!b && bi != bw) {
                pp_errf(err, errlen, "rank %d: '%d%s%d' without its '%d%s%d'", r, st, bi ? "I" : "W", m, st, bi ? "W" : "I", m);
                goto out;
            }
            const ActionType need[4] = {PP_RECV_F, PP_SEND_B, PP_SEND_F, PP_RECV_B};
            const char* why[4] = {"the input of", "d(input) of", "the output of", "d(output) of"};
            for (int q = 0; q < 4; q++) {
                if ((q < 2 && !has_prev) || (q >= 2 && !has_next)) continue;
                if (*pp_at(ix.cnt, &ix, need[q], st, m)) continue;
                int peer = schedule_peer(s, need[q], st);
                pp_errf(err, errlen, "missing '%d%s%d' on rank %d: %s micro-batch %d must be %s rank %d", st,
                        pp_type_token(need[q]), m, r, why[q], m, pp_is_send(need[q]) ? "sent to" : "received from", peer);
                goto out;
            }
        }
    }
    // --- per rank data order (positions are indices within the owning rank's list)
    for (int st = 0; st < S; st++) {
        int r = schedule_stage_rank(s, st);
        for (int m = 0; m < M; m++) {
            int pf = *pp_at(ix.pos, &ix, PP_F, st, m);
            int pb = *pp_at(ix.pos, &ix, PP_B, st, m);
            int pi = *pp_at(ix.pos, &ix, PP_I, st, m);
            int pw = *pp_at(ix.pos, &ix, PP_W, st, m);
            int pbin = pb >= 0 ? pb : pi;  // the action producing d(input)
            struct { int before, after; const char* what; } rule[6] = {
                {*pp_at(ix.pos, &ix, PP_RECV_F, st, m), pf, "its input must be received before the forward"},
                {pf, *pp_at(ix.pos, &ix, PP_SEND_F, st, m), "the output can only be sent after the forward"},
                {pf, pbin, "backward before its forward"},
                {*pp_at(ix.pos, &ix, PP_RECV_B, st, m), pbin, "d(output) must be received before the backward"},
                {pbin, *pp_at(ix.pos, &ix, PP_SEND_B, st, m), "d(input) can only be sent after the backward"},
                {pi, pw, "weight backward W before its input backward I"},
            };
            for (int q = 0; q < 6; q++) {
                if (rule[q].before < 0 || rule[q].after < 0 || rule[q].before < rule[q].after) continue;
                schedule_action_str(&s->ranks[r].a[rule[q].before], t1, sizeof(t1));
                schedule_action_str(&s->ranks[r].a[rule[q].after], t2, sizeof(t2));
                pp_errf(err, errlen, "rank %d: '%s' (#%d) comes after '%s' (#%d): %s", r, t1, rule[q].before, t2,
                        rule[q].after, rule[q].what);
                goto out;
            }
            // a neighbour stage on the same rank (only possible with P < S) is a local dependency
            if (st > 0 && schedule_stage_rank(s, st - 1) == r && *pp_at(ix.pos, &ix, PP_F, st - 1, m) > pf) {
                pp_errf(err, errlen, "rank %d: forward '%dF%d' needs '%dF%d' first", r, st, m, st - 1, m);
                goto out;
            }
            if (st < S - 1 && schedule_stage_rank(s, st + 1) == r) {
                int pn = *pp_at(ix.pos, &ix, PP_B, st + 1, m);
                if (pn < 0) pn = *pp_at(ix.pos, &ix, PP_I, st + 1, m);
                if (pn > pbin) { pp_errf(err, errlen, "rank %d: backward of stage %d mb %d needs stage %d's first", r, st, m, st + 1); goto out; }
            }
        }
    }
    // --- per stage, weight-gradient backwards in increasing micro-batch order
    for (int st = 0; st < S; st++) {
        int r = schedule_stage_rank(s, st), last = -1, lastpos = -1;
        for (int i = 0; i < s->ranks[r].n; i++) {
            const Action* a = &s->ranks[r].a[i];
            if (a->stage != st || !pp_is_bwd_weight(a->type)) continue;
            if (a->mb < last) {
                pp_errf(err, errlen,
                        "rank %d: '%s' (#%d) comes after '%s' (#%d): backwards of a stage must run in increasing "
                        "micro-batch order, so that weight gradients are accumulated in the same order by every "
                        "schedule (bitwise determinism)",
                        r, schedule_action_str(a, t1, sizeof(t1)), i,
                        schedule_action_str(&s->ranks[r].a[lastpos], t2, sizeof(t2)), lastpos);
                goto out;
            }
            last = a->mb; lastpos = i;
        }
    }
    // --- channels: the k-th send src->dst must match the k-th recv on dst from src
    used = (unsigned char*)calloc((size_t)P * P, 1);  // channels that carry anything
    for (int r = 0; r < P; r++)
        for (int i = 0; i < s->ranks[r].n; i++) {
            const Action* a = &s->ranks[r].a[i];
            if (pp_is_send(a->type)) used[r * P + a->peer] = 1;
            if (pp_is_recv(a->type)) used[a->peer * P + r] = 1;
        }
    for (int src = 0; src < P; src++) {
        for (int dst = 0; dst < P; dst++) {
            if (src == dst || !used[src * P + dst]) continue;
            const ActionList* A = &s->ranks[src];
            const ActionList* B = &s->ranks[dst];
            int i = 0, j = 0, k = 0;
            for (;;) {
                while (i < A->n && !(pp_is_send(A->a[i].type) && A->a[i].peer == dst)) i++;
                while (j < B->n && !(pp_is_recv(B->a[j].type) && B->a[j].peer == src)) j++;
                if (i >= A->n && j >= B->n) break;
                if (i >= A->n || j >= B->n) {
                    pp_errf(err, errlen, "channel rank %d -> rank %d: %s #%d ('%s', rank %d action #%d) has no matching %s",
                            src, dst, i < A->n ? "send" : "recv", k,
                            schedule_action_str(i < A->n ? &A->a[i] : &B->a[j], t1, sizeof(t1)),
                            i < A->n ? src : dst, i < A->n ? i : j, i < A->n ? "recv" : "send");
                    goto out;
                }
                if (!pp_comm_matches(&A->a[i], src, &B->a[j], dst)) {
                    pp_errf(err, errlen,
                            "channel rank %d -> rank %d, message #%d: rank %d sends '%s' (#%d) but rank %d receives '%s' "
                            "(#%d); sends and recvs must match one to one in the same order",
                            src, dst, k, src, schedule_action_str(&A->a[i], t1, sizeof(t1)), i, dst,
                            schedule_action_str(&B->a[j], t2, sizeof(t2)), j);
                    goto out;
                }
                i++; j++; k++;
            }
        }
    }
    // --- rendezvous dry run: compute always proceeds, a message only when both ends meet
    {
        int* cur = (int*)calloc((size_t)P, sizeof(int));
        int alldone = schedule_walk(s, cur, NULL, NULL);
        if (!alldone) {
            pp_errf(err, errlen, "deadlock with blocking send/recv:");
            for (int r = 0; r < P; r++) {
                if (cur[r] >= s->ranks[r].n) continue;
                const Action* a = &s->ranks[r].a[cur[r]];
                int q = a->peer;
                pp_errf(err, errlen, " rank %d waits at #%d '%s' for rank %d", r, cur[r],
                        schedule_action_str(a, t1, sizeof(t1)), q);
                if (cur[q] < s->ranks[q].n)
                    pp_errf(err, errlen, " (which waits at #%d '%s');", cur[q],
                            schedule_action_str(&s->ranks[q].a[cur[q]], t2, sizeof(t2)));
                else
                    pp_errf(err, errlen, " (which has finished);");
            }
            free(cur);
            goto out;
        }
        free(cur);
    }
    rc = 0;
out:
    free(ix.pos); free(ix.cnt); free(used);
    return rc;
}


#endif // LLMC_SCHEDULE_H
