/*
Pipeline schedules as data (header-only; C11 and C++).

A Schedule is, for each rank, the ordered list of actions that rank executes:
compute (F = forward, B = full backward, I/W = split backward, reserved for zero-bubble
schedules) and point-to-point communication (send/recv of activations and gradients).
The trainer just walks its rank's list; everything about *which* pipeline algorithm is
used lives in the builder (or in a hand-written text file).

Stages: S stages, stage s lives on rank s % P. Today S == P (one stage per rank); the
stage field is kept so interleaved virtual stages can be added without a format change.

Communication semantics assumed everywhere (the conservative model): a send and its
matching recv are a rendezvous. Neither side completes until both have reached the
matching action, and messages on a channel (src rank -> dst rank) match in order.
Anything that is deadlock-free under this model is also deadlock-free with buffered /
eager sends, so the validator checks this model.

Text form (one line per rank, rank 0 first; PyTorch's torch.distributed.pipelining
token grammar, so schedules can be exchanged with it):
    <stage><TYPE><microbatch>   TYPE in F B I W SEND_F RECV_F SEND_B RECV_B
    e.g. "0F3" forward of stage 0 on micro-batch 3; "1RECV_F3" stage 1 receives the input
    of micro-batch 3; "1SEND_B3" stage 1 sends d(input) of micro-batch 3 to stage 0.
    Comm tokens carry the *local* stage: SEND_F/RECV_B name the sending/receiving stage
    s whose peer is stage s+1; RECV_F/SEND_B name stage s whose peer is stage s-1.
Tokens are separated by spaces/tabs or commas (so a PyTorch CSV loads as is), '#' starts a
comment, blank lines are ignored, a line holding only "-" is a rank with no actions.
P = number of rows, S = max(P, largest stage + 1), M = largest micro-batch + 1.
A file may list compute actions only; schedule_insert_comms() (called by
schedule_load_file() when a file has no comm tokens) then adds the comm actions.

Example, GPipe P=2 M=2 (what schedule_format writes for schedule_build("gpipe", 2, 2)):
    0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1
    1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1
*/
#ifndef LLMC_SCHEDULE_H
#define LLMC_SCHEDULE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>

typedef enum {
    PP_F = 0,
    PP_B,        // full backward of (stage, mb): d(input) and d(weights)
    PP_SEND_F,        // send forward output of (stage, mb) to the rank of stage+1
    PP_RECV_F,        // receive the input of (stage, mb) from the rank of stage-1
    PP_SEND_B,       // send d(input) of (stage, mb) to the rank of stage-1
    PP_RECV_B,       // receive d(output) of (stage, mb) from the rank of stage+1
    PP_I,  // split backward, d(input) only (zero-bubble; reserved)
    PP_W, // split backward, d(weights) only (zero-bubble; reserved)
    PP_NUM_ACTION_TYPES
} ActionType;

typedef struct {
    ActionType type;
    int stage;  // the local stage this action belongs to
    int mb;     // micro-batch index, 0..M-1
    int peer;   // rank on the other end for comm actions, -1 for compute
} Action;

typedef struct {
    Action* a;
    int n, cap;
} ActionList;

typedef struct {
    int P;              // ranks
    int S;              // stages; stage s runs on rank s % P (S == P for now)
    int M;              // micro-batches per step
    ActionList* ranks;  // [P], the program of each rank
} Schedule;

// ----------------------------------------------------------------------------
// small helpers

static inline int pp_is_compute(ActionType t) {
    return t == PP_F || t == PP_B || t == PP_I || t == PP_W;
}
static inline int pp_is_send(ActionType t) { return t == PP_SEND_F || t == PP_SEND_B; }
static inline int pp_is_recv(ActionType t) { return t == PP_RECV_F || t == PP_RECV_B; }
// actions that produce d(input), i.e. what the previous stage waits for
static inline int pp_is_bwd_input(ActionType t) { return t == PP_B || t == PP_I; }
// actions that accumulate weight gradients (their per-stage order decides the float sum order)
static inline int pp_is_bwd_weight(ActionType t) { return t == PP_B || t == PP_W; }

// the token used in text form between the stage and micro-batch numbers
static inline const char* pp_type_token(ActionType t) {
    switch (t) {
        case PP_F: return "F";
        case PP_B: return "B";
        case PP_SEND_F: return "SEND_F";
        case PP_RECV_F: return "RECV_F";
        case PP_SEND_B: return "SEND_B";
        case PP_RECV_B: return "RECV_B";
        case PP_I: return "I";
        case PP_W: return "W";
        default: return "?";
    }
}

static inline int schedule_stage_rank(const Schedule* s, int stage) { return stage % s->P; }

// rank of the peer of a comm action of `stage`, or -1 (compute, or no such neighbour stage)
static inline int schedule_peer(const Schedule* s, ActionType t, int stage) {
    int other = -1;
    if (t == PP_SEND_F || t == PP_RECV_B) other = stage + 1;
    if (t == PP_RECV_F || t == PP_SEND_B) other = stage - 1;
    if (other < 0 || other >= s->S) return -1;
    return schedule_stage_rank(s, other);
}

// writes the decimal digits of v >= 0 at p, returns the end (no snprintf: formatting is hot)
static inline char* pp_utoa(char* p, int v) {
    char tmp[12];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v > 0 && n < 11);
    while (n > 0) *p++ = tmp[--n];
    return p;
}

// the text token of an action, e.g. "1SEND_F3"; buf should hold 48 chars
static inline const char* schedule_action_str(const Action* a, char* buf, size_t n) {
    if (a->stage < 0 || a->mb < 0 || n < 48) {
        snprintf(buf, n, "%d%s%d", a->stage, pp_type_token(a->type), a->mb);
        return buf;
    }
    char* p = pp_utoa(buf, a->stage);
    for (const char* t = pp_type_token(a->type); *t; t++) *p++ = *t;
    p = pp_utoa(p, a->mb);
    *p = 0;
    return buf;
}

static inline void schedule_init(Schedule* s, int P, int S, int M) {
    s->P = P; s->S = S; s->M = M;
    s->ranks = (ActionList*)calloc((size_t)(P > 0 ? P : 1), sizeof(ActionList));
}

static inline void schedule_free(Schedule* s) {
    if (s->ranks) {
        for (int r = 0; r < s->P; r++) free(s->ranks[r].a);
        free(s->ranks);
    }
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

// append an action to `rank`'s program; the peer is derived from the stage
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

// appends printf-style text to err (bounded), used to build precise error messages
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
        case PP_SEND_F:  return y->type == PP_RECV_F  && y->stage == x->stage + 1;
        case PP_RECV_F:  return y->type == PP_SEND_F  && y->stage == x->stage - 1;
        case PP_SEND_B: return y->type == PP_RECV_B && y->stage == x->stage - 1;
        case PP_RECV_B: return y->type == PP_SEND_B && y->stage == x->stage + 1;
        default: return 0;
    }
}

// ----------------------------------------------------------------------------
// comm insertion: compute-only schedule -> schedule with explicit send/recv

/*
schedule_insert_comms adds SEND/RECV actions to a schedule that has compute actions only.
Method (deterministic, provably deadlock-free under rendezvous semantics):
 1. Dry-run the compute lists with nominal costs F=1, B=2, I=W=1 and infinitely buffered
    messages: an action starts when its rank is free and its input has been produced.
    (Fixed nominal costs make the result depend on the compute order only.)
 2. Every cross-rank message gets the key (t, 0, parity of the lower rank of the edge,
    edge, kind, ...) where t is when its producer finished; a compute action gets the key
    (start, 1). Each rank's new program is its compute actions plus its sends and recvs,
    sorted by key. So a send directly follows its producer, and a recv is placed at the
    moment the data became available (after any compute the receiver started earlier,
    before the consumer, which cannot start earlier).
 Why no deadlock: both ends of a message share one key, and each rank's list is sorted by
 key. Take the unfinished action with the globally smallest key. A compute action can
 always run. A comm action's peer has not passed the matching action (they complete
 together) and is not before it either (that would be an unfinished action with a smaller
 key), so the peer sits exactly at the match and the pair completes. Repeat.
 Edges with an even lower rank exchange before those with an odd one at the same instant
 (Megatron's even/odd trick) so that with non-zero transfer time the neighbours exchange
 in two parallel waves instead of a chain running along the pipeline.
 For 1F1B's steady state this gives Megatron's fused pairs, serialized activation-first
 on every edge (both ends agree, so each pair meets):
   after F(m):  SEND_F(m) then RECV_B(m')   (Megatron's send_forward_recv_backward)
   after B(m'): RECV_F(m+1) then SEND_B(m') (Megatron's send_backward_recv_forward)
 At the end of warm-up a rank receives the next input as soon as it is produced, which
 can be before its first backward (e.g. rank 2 of P=4: ... RECV_F2 RECV_B0 B0 SEND_B0 F2).
 So the executor must have a receive buffer for a micro-batch from its RECV on: the
 simulator reports that count as SimResult.peak_inputs (1F1B: in-flight + 1 at most).
Returns 0, or -1 with a message (schedule already has comm actions, or the compute order
can never make progress, e.g. a backward whose gradient is never produced).
*/
typedef struct {
    double t;
    int phase;    // 0 comm, 1 compute: comm at time t before compute starting at t
    int parity, lo, hi, kind, stage, mb, seq;  // the ordering key (seq: compute order)
    int owner;                                 // rank whose program gets this item
    Action a;
} PPItem;

static inline int pp_item_cmp(const void* pa, const void* pb) {
    const PPItem* x = (const PPItem*)pa;
    const PPItem* y = (const PPItem*)pb;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    if (x->phase != y->phase) return x->phase - y->phase;
    if (x->parity != y->parity) return x->parity - y->parity;
    if (x->lo != y->lo) return x->lo - y->lo;
    if (x->hi != y->hi) return x->hi - y->hi;
    if (x->kind != y->kind) return x->kind - y->kind;
    if (x->stage != y->stage) return x->stage - y->stage;
    if (x->mb != y->mb) return x->mb - y->mb;
    return x->seq - y->seq;
}

static inline int schedule_insert_comms(Schedule* s, char* err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    if (schedule_has_comms(s)) { pp_errf(err, errlen, "schedule already has comm actions"); return -1; }
    int P = s->P, S = s->S, M = s->M, total = 0;
    for (int r = 0; r < P; r++) {
        total += s->ranks[r].n;
        for (int i = 0; i < s->ranks[r].n; i++) {
            const Action* a = &s->ranks[r].a[i];
            if (a->stage < 0 || a->stage >= S || a->mb < 0 || a->mb >= M) {
                char tok[48];
                pp_errf(err, errlen, "rank %d action #%d '%s': stage or micro-batch out of range", r, i,
                        schedule_action_str(a, tok, sizeof(tok)));
                return -1;
            }
        }
    }
    // completion times of F and of the d(input)-producing backward per (stage, mb); -1 = not yet
    double* fdone = (double*)malloc((size_t)S * M * sizeof(double));
    double* bdone = (double*)malloc((size_t)S * M * sizeof(double));
    double* start = (double*)malloc((size_t)(total + 1) * sizeof(double));
    int* base = (int*)calloc((size_t)P + 1, sizeof(int));
    int* cur = (int*)calloc((size_t)P, sizeof(int));
    double* clock = (double*)calloc((size_t)P, sizeof(double));
    for (int i = 0; i < S * M; i++) { fdone[i] = -1; bdone[i] = -1; }
    for (int r = 0; r < P; r++) base[r + 1] = base[r] + s->ranks[r].n;
    int progress = 1, done = 0, rc = 0;
    while (progress) {
        progress = 0;
        for (int r = 0; r < P; r++) {
            while (cur[r] < s->ranks[r].n) {
                const Action* a = &s->ranks[r].a[cur[r]];
                int k = a->stage * M + a->mb;
                double dep = 0, cost = 1;
                if (a->type == PP_F) {
                    if (a->stage > 0) dep = fdone[k - M];
                } else if (pp_is_bwd_input(a->type)) {
                    if (fdone[k] < 0) dep = -1;  // own forward first
                    else if (a->stage < S - 1) dep = bdone[k + M];
                    cost = a->type == PP_B ? 2 : 1;
                } else {  // W needs its I
                    dep = bdone[k];
                }
                if (dep < 0) break;  // input not produced yet
                double t0 = clock[r] > dep ? clock[r] : dep;
                start[base[r] + cur[r]] = t0;
                clock[r] = t0 + cost;
                if (a->type == PP_F) fdone[k] = clock[r];
                if (pp_is_bwd_input(a->type)) bdone[k] = clock[r];
                cur[r]++; done++; progress = 1;
            }
        }
    }
    if (done < total) {
        pp_errf(err, errlen, "cannot insert comms, the compute order never completes:");
        for (int r = 0; r < P; r++) {
            if (cur[r] >= s->ranks[r].n) continue;
            char tok[48];
            pp_errf(err, errlen, " rank %d stuck at #%d '%s' (its input is never produced before it);", r,
                    cur[r], schedule_action_str(&s->ranks[r].a[cur[r]], tok, sizeof(tok)));
        }
        rc = -1;
    } else {
        // each message appears twice (send on the producer's rank, recv on the consumer's)
        PPItem* items = (PPItem*)malloc((size_t)(3 * total + 1) * sizeof(PPItem));
        int n = 0;
        for (int r = 0; r < P; r++) {
            for (int i = 0; i < s->ranks[r].n; i++) {
                const Action* a = &s->ranks[r].a[i];
                PPItem it;
                memset(&it, 0, sizeof(it));
                it.t = start[base[r] + i]; it.phase = 1; it.lo = r; it.seq = i; it.owner = r; it.a = *a;
                items[n++] = it;
                int to = -1, kind = 0;
                ActionType ts = PP_SEND_F, tr = PP_RECV_F;
                int rstage = a->stage;
                if (a->type == PP_F && a->stage < S - 1) {
                    to = schedule_stage_rank(s, a->stage + 1); kind = 0; rstage = a->stage + 1;
                } else if (pp_is_bwd_input(a->type) && a->stage > 0) {
                    to = schedule_stage_rank(s, a->stage - 1); kind = 1; rstage = a->stage - 1;
                    ts = PP_SEND_B; tr = PP_RECV_B;
                }
                if (to < 0 || to == r) continue;  // no neighbour, or same rank: no message
                double tdone = it.t + (a->type == PP_B ? 2 : 1);
                PPItem m;
                memset(&m, 0, sizeof(m));
                m.t = tdone; m.phase = 0;
                m.lo = r < to ? r : to; m.hi = r < to ? to : r; m.parity = m.lo % 2;
                m.kind = kind; m.stage = a->stage; m.mb = a->mb;
                m.a.type = ts; m.a.stage = a->stage; m.a.mb = a->mb; m.a.peer = to;
                m.owner = r;
                items[n++] = m;  // the send, right after its producer
                m.a.type = tr; m.a.stage = rstage; m.a.peer = r;
                m.owner = to;
                items[n++] = m;  // the recv, same key on the consumer's rank
            }
        }
        // distribute items to their owner ranks, then sort each rank's items by key
        PPItem** per = (PPItem**)malloc((size_t)P * sizeof(PPItem*));
        int* pn = (int*)calloc((size_t)P, sizeof(int));
        for (int i = 0; i < n; i++) pn[items[i].owner]++;
        for (int r = 0; r < P; r++) { per[r] = (PPItem*)malloc((size_t)(pn[r] + 1) * sizeof(PPItem)); pn[r] = 0; }
        for (int i = 0; i < n; i++) per[items[i].owner][pn[items[i].owner]++] = items[i];
        for (int r = 0; r < P; r++) {
            qsort(per[r], (size_t)pn[r], sizeof(PPItem), pp_item_cmp);
            s->ranks[r].n = 0;
            for (int i = 0; i < pn[r]; i++) pp_list_push(&s->ranks[r], per[r][i].a);
            free(per[r]);
        }
        free(per); free(pn); free(items);
    }
    free(fdone); free(bdone); free(start); free(base); free(cur); free(clock);
    return rc;
}

// ----------------------------------------------------------------------------
// builders

// GPipe: all forwards in micro-batch order, then all backwards in micro-batch order.
// (Backwards in increasing order, not the paper's reverse order, so that every stage
// accumulates weight gradients in the same order under every schedule: bitwise identical.)
static inline int schedule_build_gpipe(int P, int M, Schedule* out) {
    if (P < 1 || M < 1) return -1;
    schedule_init(out, P, P, M);
    for (int r = 0; r < P; r++) {
        for (int m = 0; m < M; m++) schedule_push(out, r, PP_F, r, m);
        for (int m = 0; m < M; m++) schedule_push(out, r, PP_B, r, m);
    }
    return schedule_insert_comms(out, NULL, 0);
}

// 1F1B (PipeDream-Flush): rank r runs w = min(P-r-1, M) warm-up forwards, then M-w
// steady (forward, backward) pairs, then w cool-down backwards. At most min(P-r, M)
// micro-batches are in flight on rank r, against M for GPipe; same bubble.
static inline int schedule_build_1f1b(int P, int M, Schedule* out) {
    if (P < 1 || M < 1) return -1;
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
    return schedule_insert_comms(out, NULL, 0);
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

#define SCHEDULE_NAMES "gpipe|1f1b"
#define SCHEDULE_ERR_NAME 1   // unknown schedule name
#define SCHEDULE_ERR_ARGS 2   // P < 1 or M < 1

// build by name; returns 0, SCHEDULE_ERR_NAME or SCHEDULE_ERR_ARGS (out is then empty)
static inline int schedule_build(const char* name, int P, int M, Schedule* out) {
    memset(out, 0, sizeof(*out));
    int known = name && (strcmp(name, "gpipe") == 0 || strcmp(name, "1f1b") == 0);
    if (!known) return SCHEDULE_ERR_NAME;
    if (P < 1 || M < 1) return SCHEDULE_ERR_ARGS;
    int rc = strcmp(name, "gpipe") == 0 ? schedule_build_gpipe(P, M, out) : schedule_build_1f1b(P, M, out);
    return rc == 0 ? 0 : SCHEDULE_ERR_ARGS;  // builders cannot fail for valid P, M
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
 - shape: P, S, M >= 1, S a multiple of P; every action's stage/micro-batch in range, on the
   rank that owns its stage, comm actions have the right peer and a neighbour stage (stage 0
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
    if (s->S % s->P != 0) {
        pp_errf(err, errlen, "S=%d stages is not a multiple of P=%d ranks", s->S, s->P);
        return -1;
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
    // --- per action shape checks, counting (tokens are formatted on error only: this runs often)
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
    for (int r = 0; r < P; r++) {
        for (int st = r; st < S; st += P) {
            int last = -1, lastpos = -1;
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
    // --- rendezvous dry run: compute always proceeds, a comm pair only when both ends meet
    {
        int* cur = (int*)calloc((size_t)P, sizeof(int));
        int progress = 1, alldone = 0;
        while (progress) {
            progress = 0; alldone = 1;
            for (int r = 0; r < P; r++) {
                const ActionList* L = &s->ranks[r];
                while (cur[r] < L->n) {
                    const Action* a = &L->a[cur[r]];
                    if (pp_is_compute(a->type)) { cur[r]++; progress = 1; continue; }
                    int q = a->peer;
                    if (cur[q] < s->ranks[q].n && pp_comm_matches(a, r, &s->ranks[q].a[cur[q]], q)) {
                        cur[r]++; cur[q]++; progress = 1;
                        continue;
                    }
                    break;
                }
                if (cur[r] < L->n) alldone = 0;
            }
        }
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

// ----------------------------------------------------------------------------
// timing simulation (rendezvous send/recv, fixed costs per action)

typedef struct {
    int P;
    double makespan;      // time at which the last rank finishes
    double bubble;        // idle compute time / (P * makespan); comm and waiting count as idle
    double* busy;         // [P] compute time per rank
    int* peak_inflight;   // [P] max #micro-batches whose forward is done and backward (B or W) is not
    int* peak_inputs;     // [P] max #micro-batch inputs held: received (stage 0: forward started)
                          //     and backward (B or W) not done = receive buffers the rank needs
    double** t_ready;     // [P][n_r] when the rank reached the action (comm: starts waiting)
    double** t_start;     // [P][n_r] when it started (comm: both ends met)
    double** t_end;       // [P][n_r]
} SimResult;

static inline void sim_result_free(SimResult* res) {
    for (int r = 0; r < res->P; r++) {
        if (res->t_ready) free(res->t_ready[r]);
        if (res->t_start) free(res->t_start[r]);
        if (res->t_end) free(res->t_end[r]);
    }
    free(res->t_ready); free(res->t_start); free(res->t_end);
    free(res->busy); free(res->peak_inflight); free(res->peak_inputs);
    memset(res, 0, sizeof(*res));
}

/*
Simulates the schedule with per-stage costs t_fwd[stage], t_bwd[stage] (arrays of S; I and
W each cost t_bwd/2) and a transfer time t_comm that occupies both ends once they meet.
Every action's time follows from its predecessors on the rank and, for comm, from the
peer, so the result does not depend on the order ranks are advanced in.
Returns 0, or -1 if the schedule deadlocks (run schedule_validate for the details).
res must be freed with sim_result_free.
*/
static inline int schedule_simulate_stages(const Schedule* s, const double* t_fwd, const double* t_bwd,
                                           double t_comm, SimResult* res) {
    int P = s->P;
    memset(res, 0, sizeof(*res));
    res->P = P;
    res->busy = (double*)calloc((size_t)P, sizeof(double));
    res->peak_inflight = (int*)calloc((size_t)P, sizeof(int));
    res->peak_inputs = (int*)calloc((size_t)P, sizeof(int));
    res->t_ready = (double**)calloc((size_t)P, sizeof(double*));
    res->t_start = (double**)calloc((size_t)P, sizeof(double*));
    res->t_end = (double**)calloc((size_t)P, sizeof(double*));
    int* cur = (int*)calloc((size_t)P, sizeof(int));
    int* inflight = (int*)calloc((size_t)P, sizeof(int));
    int* inputs = (int*)calloc((size_t)P, sizeof(int));
    double* clock = (double*)calloc((size_t)P, sizeof(double));
    for (int r = 0; r < P; r++) {
        size_t n = (size_t)s->ranks[r].n + 1;
        res->t_ready[r] = (double*)calloc(n, sizeof(double));
        res->t_start[r] = (double*)calloc(n, sizeof(double));
        res->t_end[r] = (double*)calloc(n, sizeof(double));
    }
    int progress = 1, alldone = 0;
    while (progress) {
        progress = 0; alldone = 1;
        for (int r = 0; r < P; r++) {
            const ActionList* L = &s->ranks[r];
            while (cur[r] < L->n) {
                const Action* a = &L->a[cur[r]];
                int i = cur[r];
                if (pp_is_compute(a->type)) {
                    double c = a->type == PP_F ? t_fwd[a->stage]
                             : a->type == PP_B ? t_bwd[a->stage] : 0.5 * t_bwd[a->stage];
                    res->t_ready[r][i] = res->t_start[r][i] = clock[r];
                    clock[r] += c;
                    res->t_end[r][i] = clock[r];
                    res->busy[r] += c;
                    if (a->type == PP_F && ++inflight[r] > res->peak_inflight[r]) res->peak_inflight[r] = inflight[r];
                    int own_input = a->stage == 0 || schedule_stage_rank(s, a->stage - 1) == r;
                    if (a->type == PP_F && own_input && ++inputs[r] > res->peak_inputs[r]) res->peak_inputs[r] = inputs[r];
                    if (pp_is_bwd_weight(a->type)) { inflight[r]--; inputs[r]--; }
                    cur[r]++; progress = 1;
                    continue;
                }
                int q = a->peer;
                if (q < 0 || q >= P || cur[q] >= s->ranks[q].n) break;
                int j = cur[q];
                if (!pp_comm_matches(a, r, &s->ranks[q].a[j], q)) break;
                double t0 = clock[r] > clock[q] ? clock[r] : clock[q];
                res->t_ready[r][i] = clock[r]; res->t_ready[q][j] = clock[q];
                res->t_start[r][i] = res->t_start[q][j] = t0;
                clock[r] = clock[q] = t0 + t_comm;
                res->t_end[r][i] = res->t_end[q][j] = clock[r];
                int rv = a->type == PP_RECV_F ? r : s->ranks[q].a[j].type == PP_RECV_F ? q : -1;
                if (rv >= 0 && ++inputs[rv] > res->peak_inputs[rv]) res->peak_inputs[rv] = inputs[rv];
                cur[r]++; cur[q]++; progress = 1;
            }
            if (cur[r] < L->n) alldone = 0;
        }
    }
    int rc = alldone ? 0 : -1;
    double idle = 0;
    for (int r = 0; r < P; r++) if (clock[r] > res->makespan) res->makespan = clock[r];
    for (int r = 0; r < P; r++) idle += res->makespan - res->busy[r];
    res->bubble = res->makespan > 0 ? idle / (P * res->makespan) : 0;
    free(cur); free(inflight); free(inputs); free(clock);
    return rc;
}

// uniform stages: every forward costs t_fwd, every backward t_bwd
static inline int schedule_simulate(const Schedule* s, double t_fwd, double t_bwd, double t_comm, SimResult* res) {
    double* f = (double*)malloc((size_t)s->S * sizeof(double));
    double* b = (double*)malloc((size_t)s->S * sizeof(double));
    for (int i = 0; i < s->S; i++) { f[i] = t_fwd; b[i] = t_bwd; }
    int rc = schedule_simulate_stages(s, f, b, t_comm, res);
    free(f); free(b);
    return rc;
}

// ----------------------------------------------------------------------------
// text form

// writes the text form into buf (always NUL-terminated if cap > 0); returns the full
// length it needs, like snprintf, so call with cap 0 first to size the buffer
static inline void pp_append(char* buf, size_t cap, size_t* len, size_t* written, const char* t) {
    size_t tl = strlen(t);
    if (*written == *len && *len + tl < cap) { memcpy(buf + *len, t, tl); *written += tl; }
    *len += tl;
}

static inline size_t schedule_format(const Schedule* s, char* buf, size_t cap) {
    size_t len = 0, written = 0;  // written < len once the buffer is full
    char tok[48];
    for (int r = 0; r < s->P; r++) {
        const ActionList* L = &s->ranks[r];
        if (L->n == 0) pp_append(buf, cap, &len, &written, "-");
        for (int i = 0; i < L->n; i++) {
            if (i > 0) pp_append(buf, cap, &len, &written, " ");
            pp_append(buf, cap, &len, &written, schedule_action_str(&L->a[i], tok, sizeof(tok)));
        }
        pp_append(buf, cap, &len, &written, "\n");
    }
    if (cap > 0) buf[written] = 0;
    return len;
}

static inline void schedule_fprint(const Schedule* s, FILE* f) {
    size_t n = schedule_format(s, NULL, 0);
    char* buf = (char*)malloc(n + 1);
    schedule_format(s, buf, n + 1);
    fputs(buf, f);
    free(buf);
}

// parses one token "<stage><TYPE><mb>"; returns 0 or -1 with a reason in why
static inline int pp_parse_token(const char* tok, size_t len, Action* a, const char** why) {
    size_t i = 0;
    long stage = 0, mb = 0;
    if (i >= len || tok[i] < '0' || tok[i] > '9') { *why = "expected a stage number first"; return -1; }
    while (i < len && tok[i] >= '0' && tok[i] <= '9') {
        stage = stage * 10 + (tok[i++] - '0');
        if (stage > 1000000) { *why = "stage number too large"; return -1; }
    }
    size_t t0 = i;
    while (i < len && ((tok[i] >= 'A' && tok[i] <= 'Z') || tok[i] == '_')) i++;
    size_t tl = i - t0;
    if (tl == 0) { *why = "expected an action type (F B I W SEND_F RECV_F SEND_B RECV_B) after the stage"; return -1; }
    int type = -1;
    for (int t = 0; t < PP_NUM_ACTION_TYPES; t++) {
        const char* name = pp_type_token((ActionType)t);
        if (strlen(name) == tl && strncmp(name, tok + t0, tl) == 0) type = t;
    }
    if (type < 0) { *why = "unknown action type (expected F B I W SEND_F RECV_F SEND_B RECV_B)"; return -1; }
    if (i >= len || tok[i] < '0' || tok[i] > '9') {
        *why = i >= len ? "missing micro-batch number" : "unexpected character after the action type";
        return -1;
    }
    while (i < len && tok[i] >= '0' && tok[i] <= '9') {
        mb = mb * 10 + (tok[i++] - '0');
        if (mb > 1000000) { *why = "micro-batch number too large"; return -1; }
    }
    if (i < len) { *why = "unexpected characters after the micro-batch number"; return -1; }
    a->type = (ActionType)type; a->stage = (int)stage; a->mb = (int)mb; a->peer = -1;
    return 0;
}

/*
Parses the text form (see the top of this file) into out (a fresh Schedule; free it with
schedule_free). Peers are derived from stages. Returns 0, or -1 with "line L, token K
'TOK': reason" in err. Parsing does not validate: call schedule_validate (or use
schedule_load_file, which also inserts comm actions into a compute-only file).
*/
static inline int schedule_parse(const char* text, Schedule* out, char* err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    memset(out, 0, sizeof(*out));
    int nrows = 0, caprows = 0, maxstage = -1, maxmb = -1, line = 0;
    ActionList* rows = NULL;
    const char* p = text;
    while (*p) {
        line++;
        const char* eol = strchr(p, '\n');
        if (!eol) eol = p + strlen(p);
        const char* end = p;
        while (end < eol && *end != '#') end++;  // strip comment
        ActionList row;
        memset(&row, 0, sizeof(row));
        int ntok = 0, empty_marker = 0;
        const char* q = p;
        while (q < end) {
            while (q < end && (*q == ' ' || *q == '\t' || *q == ',' || *q == '\r')) q++;
            if (q >= end) break;
            const char* t = q;
            while (q < end && !(*q == ' ' || *q == '\t' || *q == ',' || *q == '\r')) q++;
            ntok++;
            size_t tl = (size_t)(q - t);
            if (tl == 1 && t[0] == '-') { empty_marker = 1; continue; }
            Action a;
            const char* why = "";
            if (pp_parse_token(t, tl, &a, &why) != 0 || empty_marker) {
                if (empty_marker) why = "'-' (empty rank) must be the only token on its line";
                pp_errf(err, errlen, "line %d, token %d '%.*s': %s", line, ntok, (int)(tl > 40 ? 40 : tl), t, why);
                free(row.a);
                for (int r = 0; r < nrows; r++) free(rows[r].a);
                free(rows);
                return -1;
            }
            if (a.stage > maxstage) maxstage = a.stage;
            if (a.mb > maxmb) maxmb = a.mb;
            pp_list_push(&row, a);
        }
        if (empty_marker && row.n > 0) {
            pp_errf(err, errlen, "line %d: '-' (empty rank) must be the only token on its line", line);
            free(row.a);
            for (int r = 0; r < nrows; r++) free(rows[r].a);
            free(rows);
            return -1;
        }
        if (ntok > 0) {
            if (nrows == caprows) {
                caprows = caprows ? 2 * caprows : 8;
                rows = (ActionList*)realloc(rows, (size_t)caprows * sizeof(ActionList));
            }
            rows[nrows++] = row;
        }
        p = *eol ? eol + 1 : eol;
    }
    if (nrows == 0) { pp_errf(err, errlen, "empty schedule: no rank rows"); free(rows); return -1; }
    out->P = nrows;
    out->S = maxstage + 1 > nrows ? maxstage + 1 : nrows;
    out->M = maxmb + 1 > 0 ? maxmb + 1 : 1;
    out->ranks = rows;
    for (int r = 0; r < nrows; r++)
        for (int i = 0; i < rows[r].n; i++) {
            Action* a = &rows[r].a[i];
            a->peer = pp_is_compute(a->type) ? -1 : schedule_peer(out, a->type, a->stage);
        }
    return 0;
}

// reads a schedule file, inserts comm actions if it has none, validates. 0 or -1 + err.
static inline int schedule_load_file(const char* path, Schedule* out, char* err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    memset(out, 0, sizeof(*out));
    FILE* f = fopen(path, "rb");
    if (!f) { pp_errf(err, errlen, "cannot open schedule file '%s'", path); return -1; }
    size_t cap = 4096, n = 0;
    char* text = (char*)malloc(cap);
    size_t got;
    while ((got = fread(text + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) { cap *= 2; text = (char*)realloc(text, cap); }
    }
    text[n] = 0;
    fclose(f);
    int rc = schedule_parse(text, out, err, errlen);
    free(text);
    if (rc == 0 && !schedule_has_comms(out)) rc = schedule_insert_comms(out, err, errlen);
    if (rc == 0) rc = schedule_validate(out, err, errlen);
    if (rc != 0) {
        if (out->ranks) schedule_free(out);
        pp_errf(err, errlen, " (in %s)", path);
    }
    return rc;
}

// ----------------------------------------------------------------------------
// pictures

/*
Prints the unit-time timeline (F = 1 unit, B = 2, I = W = 1, free comm), one row per rank,
like the GPipe paper's figure. Each time unit is a fixed-width cell; an action shows its
kind and micro-batch at its start, '=' fills the rest of a longer action, '.' is idle.
    rank 0 | F0 F1 F2 F3 .  .  .  .  .  .  B0 == B1 == B2 == B3 == |
*/
static inline void schedule_print_ascii_timeline(const Schedule* s, FILE* f) {
    SimResult res;
    if (schedule_simulate(s, 1.0, 2.0, 0.0, &res) != 0) {
        fprintf(f, "(schedule deadlocks; nothing to draw)\n");
        sim_result_free(&res);
        return;
    }
    int units = (int)(res.makespan + 0.5), digits = 1;
    for (int x = s->M - 1; x >= 10; x /= 10) digits++;
    int cw = digits + 2;  // letter + digits + space
    char* row = (char*)malloc((size_t)units * cw + 1);
    for (int r = 0; r < s->P; r++) {
        memset(row, ' ', (size_t)units * cw);
        row[units * cw] = 0;
        for (int u = 0; u < units; u++) row[u * cw] = '.';
        for (int i = 0; i < s->ranks[r].n; i++) {
            const Action* a = &s->ranks[r].a[i];
            if (!pp_is_compute(a->type)) continue;
            int u0 = (int)(res.t_start[r][i] + 0.5), u1 = (int)(res.t_end[r][i] + 0.5);
            for (int u = u0; u < u1 && u < units; u++) {
                memset(row + u * cw, ' ', (size_t)cw);
                if (u > u0) memset(row + u * cw, '=', (size_t)cw - 1);
            }
            char lab[32];
            int ll = snprintf(lab, sizeof(lab), "%s%d", pp_type_token(a->type), a->mb);
            if (u0 < units) memcpy(row + u0 * cw, lab, (size_t)ll);
        }
        // trim trailing blanks/dots so rows end where the rank finishes
        int e = units * cw;
        while (e > 0 && (row[e - 1] == ' ' || row[e - 1] == '.')) e--;
        row[e] = 0;
        fprintf(f, "rank %*d | %s\n", s->P > 10 ? 2 : 1, r, row);
    }
    fprintf(f, "P=%d M=%d, t_B = 2 t_F, free comm: makespan %.0f units, bubble %.4f (theory (P-1)/(M+P-1) = %.4f)\n",
            s->P, s->M, res.makespan, res.bubble, (double)(s->P - 1) / (s->M + s->P - 1));
    free(row);
    sim_result_free(&res);
}

/*
Writes a Chrome/Perfetto trace (the format scripts/plot_pipeline.py reads): one JSON
object {"traceEvents": [...]} with complete events
    {"name": "F3", "ph": "X", "pid": R, "tid": R, "ts": T, "dur": D, "args": {"mb": 3, "stage": S}}
names "F<mb>" "B<mb>" "I<mb>" "W<mb>" for compute, "wait" for time blocked at a send/recv
before the peer arrived, "send"/"recv" for the transfer itself (args also "peer" and
"kind": "act"|"grad"); ts/dur in microseconds (simulated time units * us_per_unit).
Zero-length events are skipped.
*/
static inline void schedule_write_trace(const Schedule* s, const SimResult* res, double us_per_unit, FILE* f) {
    fprintf(f, "{\"traceEvents\": [\n");
    int first = 1;
    for (int r = 0; r < s->P; r++) {
        fprintf(f, "%s{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": %d, \"args\": {\"name\": \"rank %d\"}}",
                first ? "" : ",\n", r, r, r);
        first = 0;
        for (int i = 0; i < s->ranks[r].n; i++) {
            const Action* a = &s->ranks[r].a[i];
            double tr = res->t_ready[r][i] * us_per_unit, ts = res->t_start[r][i] * us_per_unit;
            double te = res->t_end[r][i] * us_per_unit;
            if (pp_is_compute(a->type)) {
                if (te > ts)
                    fprintf(f, ",\n{\"name\": \"%s%d\", \"ph\": \"X\", \"pid\": %d, \"tid\": %d, \"ts\": %.3f, \"dur\": %.3f, "
                               "\"args\": {\"mb\": %d, \"stage\": %d}}",
                            pp_type_token(a->type), a->mb, r, r, ts, te - ts, a->mb, a->stage);
                continue;
            }
            const char* kind = (a->type == PP_SEND_F || a->type == PP_RECV_F) ? "act" : "grad";
            if (ts > tr)
                fprintf(f, ",\n{\"name\": \"wait\", \"ph\": \"X\", \"pid\": %d, \"tid\": %d, \"ts\": %.3f, \"dur\": %.3f, "
                           "\"args\": {\"mb\": %d, \"stage\": %d, \"peer\": %d, \"kind\": \"%s\"}}",
                        r, r, tr, ts - tr, a->mb, a->stage, a->peer, kind);
            if (te > ts)
                fprintf(f, ",\n{\"name\": \"%s\", \"ph\": \"X\", \"pid\": %d, \"tid\": %d, \"ts\": %.3f, \"dur\": %.3f, "
                           "\"args\": {\"mb\": %d, \"stage\": %d, \"peer\": %d, \"kind\": \"%s\"}}",
                        pp_is_send(a->type) ? "send" : "recv", r, r, ts, te - ts, a->mb, a->stage, a->peer, kind);
        }
    }
    fprintf(f, "\n], \"displayTimeUnit\": \"ms\"}\n");
}

#endif // LLMC_SCHEDULE_H
