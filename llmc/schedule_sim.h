/*
Simulating a pipeline schedule (header-only; C11 and C++): step time and bubble from costs
per action, an ASCII timeline, a Chrome/Perfetto trace, and the table that compares every
builder for a P, M and set of costs.
*/
#ifndef LLMC_SCHEDULE_SIM_H
#define LLMC_SCHEDULE_SIM_H

#include "schedule.h"


typedef struct {
    int P, S;
    double makespan;      // time at which the last rank finishes
    double bubble;        // idle compute time / (P * makespan); messages and waiting count as idle
    double* busy;         // [P] compute time per rank
    int* peak_inflight;   // [S] schedule_peak_inflight of each stage: its stash slots
    int* peak_inputs;     // [P] max #micro-batch inputs a rank holds: received (first stage: forward
                          //     started) and weight gradient not done = receive buffers it needs
    double** t_ready;     // [P][n_r] when the rank reached the action (messages: started waiting)
    double** t_start;     // [P][n_r] when it started (messages: both ends met)
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

typedef struct {
    const Schedule* s;
    const StageCosts* cost;
    double t_comm;
    double* clock;  // [P] when each rank is free
    int* inputs;    // [P] inputs held now
    SimResult* res;
} PPSim;

static inline void pp_sim_step(void* ctx, int r, int i, int q, int j) {
    PPSim* sim = (PPSim*)ctx;
    SimResult* res = sim->res;
    const Schedule* s = sim->s;
    const Action* a = &s->ranks[r].a[i];
    double* clock = sim->clock;
    int* inputs = sim->inputs;
    if (q < 0) {  // compute
        const StageCosts* c = &sim->cost[a->stage];
        double t = a->type == PP_F ? c->f : a->type == PP_B ? c->b : a->type == PP_I ? c->i : c->w;
        res->t_ready[r][i] = res->t_start[r][i] = clock[r];
        clock[r] += t;
        res->t_end[r][i] = clock[r];
        res->busy[r] += t;
        int own_input = a->stage == 0 || schedule_stage_rank(s, a->stage - 1) == r;
        if (a->type == PP_F && own_input && ++inputs[r] > res->peak_inputs[r]) res->peak_inputs[r] = inputs[r];
        if (pp_is_bwd_weight(a->type)) inputs[r]--;
        return;
    }
    double t0 = clock[r] > clock[q] ? clock[r] : clock[q];
    res->t_ready[r][i] = clock[r]; res->t_ready[q][j] = clock[q];
    res->t_start[r][i] = res->t_start[q][j] = t0;
    clock[r] = clock[q] = t0 + sim->t_comm;
    res->t_end[r][i] = res->t_end[q][j] = clock[r];
    int rv = a->type == PP_RECV_F ? r : s->ranks[q].a[j].type == PP_RECV_F ? q : -1;
    if (rv >= 0 && ++inputs[rv] > res->peak_inputs[rv]) res->peak_inputs[rv] = inputs[rv];
}

/*
Simulates the schedule with the costs of each stage (cost[S]) and a transfer time t_comm
that occupies both ends once they meet. Every action's time follows from its predecessors
on the rank and, for messages, from the peer, so the result does not depend on the order
ranks are advanced in. Returns 0, or -1 if the schedule deadlocks (schedule_validate says
where). Free res with sim_result_free.
*/
static inline int schedule_simulate_stages(const Schedule* s, const StageCosts* cost, double t_comm, SimResult* res) {
    int P = s->P;
    memset(res, 0, sizeof(*res));
    res->P = P; res->S = s->S;
    res->busy = (double*)calloc((size_t)P, sizeof(double));
    res->peak_inflight = (int*)calloc((size_t)s->S, sizeof(int));
    res->peak_inputs = (int*)calloc((size_t)P, sizeof(int));
    res->t_ready = (double**)calloc((size_t)P, sizeof(double*));
    res->t_start = (double**)calloc((size_t)P, sizeof(double*));
    res->t_end = (double**)calloc((size_t)P, sizeof(double*));
    for (int st = 0; st < s->S; st++) res->peak_inflight[st] = schedule_peak_inflight(s, st);
    for (int r = 0; r < P; r++) {
        size_t n = (size_t)s->ranks[r].n + 1;
        res->t_ready[r] = (double*)calloc(n, sizeof(double));
        res->t_start[r] = (double*)calloc(n, sizeof(double));
        res->t_end[r] = (double*)calloc(n, sizeof(double));
    }
    int* cur = (int*)calloc((size_t)P, sizeof(int));
    PPSim sim = {s, cost, t_comm, (double*)calloc((size_t)P, sizeof(double)), (int*)calloc((size_t)P, sizeof(int)), res};
    int rc = schedule_walk(s, cur, pp_sim_step, &sim) ? 0 : -1;
    double idle = 0;
    for (int r = 0; r < P; r++) if (sim.clock[r] > res->makespan) res->makespan = sim.clock[r];
    for (int r = 0; r < P; r++) idle += res->makespan - res->busy[r];
    res->bubble = res->makespan > 0 ? idle / (P * res->makespan) : 0;
    free(cur); free(sim.clock); free(sim.inputs);
    return rc;
}

// uniform stages: every forward costs t_fwd, every backward t_bwd, its halves I and W t_bwd / 2
static inline int schedule_simulate(const Schedule* s, double t_fwd, double t_bwd, double t_comm, SimResult* res) {
    StageCosts* c = (StageCosts*)malloc((size_t)s->S * sizeof(StageCosts));
    for (int i = 0; i < s->S; i++) { c[i].f = t_fwd; c[i].b = t_bwd; c[i].i = c[i].w = 0.5 * t_bwd; }
    int rc = schedule_simulate_stages(s, c, t_comm, res);
    free(c);
    return rc;
}

// The bubble a schedule was built for, what each step's measured one is set against: a cost-aware builder's
// name (zbc:..., zbcv:...) carries the costs its order was made for; any other schedule, or a file (name
// NULL), is taken in unit time (F = 1, B = 2).
static inline int schedule_simulate_planned(const Schedule* s, const char* name, SimResult* res) {
    StageCosts* cost = NULL;
    if (name && pp_parse_costed(name, s->P, &cost) > 0 && cost) {
        int rc = schedule_simulate_stages(s, cost, 0.0, res);
        free(cost);
        return rc;
    }
    return schedule_simulate(s, 1.0, 2.0, 0.0, res);
}

// ----------------------------------------------------------------------------
// every builder side by side

#define SCHEDULE_NUM_BUILDERS 8

typedef struct {
    const char* name;
    int ok;         // 0: the builder cannot handle this P and M (see schedule_requires)
    double step;    // simulated step time (makespan)
    double bubble;
    double stash;   // largest stash of a rank, in micro-batches of a P-stage split's stage
} ScheduleEstimate;

/*
Simulates every builder for P ranks and M micro-batches. cost[P] holds the times of one
micro-batch on each stage of a P-stage split (what 1F1B measures); a builder with S = kP
stages gives stage s 1/k of the cost of the P-stage at the same depth, s P / S (messages
keep their size, t_comm); the cost-aware builders are built with those costs. out[SCHEDULE_NUM_BUILDERS]
receives the estimates in the order of SCHEDULE_NAMES; returns the index of the fastest one.
*/
static inline int schedule_compare(int P, int M, const StageCosts* cost, double t_comm, ScheduleEstimate* out) {
    static const char* const names[SCHEDULE_NUM_BUILDERS] = {"gpipe", "1f1b", "interleaved", "zbh1", "zbh2", "zbv",
                                                             "zbc", "zbcv"};
    int best = -1;
    for (int k = 0; k < SCHEDULE_NUM_BUILDERS; k++) {
        ScheduleEstimate* e = &out[k];
        memset(e, 0, sizeof(*e));
        e->name = names[k];
        Schedule s;
        StageCosts* unit = NULL;
        int v = pp_parse_costed(names[k], P, &unit);  // stages per rank of a cost-aware builder, else 0
        if (v == 0 && schedule_build(names[k], P, M, &s) != 0) continue;
        int S = v ? v * P : s.S;
        double per = (double)S / P;
        StageCosts* c = (StageCosts*)malloc((size_t)S * sizeof(StageCosts));
        for (int st = 0; st < S; st++) {
            const StageCosts* d = &cost[st * P / S];
            c[st].f = d->f / per; c[st].b = d->b / per; c[st].i = d->i / per; c[st].w = d->w / per;
        }
        if (v) {
            int* place = (int*)malloc((size_t)S * sizeof(int));
            pp_costed_placement(P, v, place);
            int rc = P <= SCHEDULE_MAX_STAGES / v && M <= SCHEDULE_MAX_MICROBATCHES ?
                     schedule_build_costed(P, S, place, M, c, 2 * S - 1, 1, &s) : -1;
            free(place);
            if (rc != 0) { free(c); continue; }
        }
        SimResult res;
        e->ok = schedule_simulate_stages(&s, c, t_comm, &res) == 0;
        e->step = res.makespan; e->bubble = res.bubble;
        for (int r = 0; r < P; r++) {
            double held = 0;
            for (int st = 0; st < S; st++) held += s.stage_rank[st] == r ? res.peak_inflight[st] / per : 0;
            if (held > e->stash) e->stash = held;
        }
        if (e->ok && (best < 0 || e->step < out[best].step)) best = k;
        sim_result_free(&res);
        free(c);
        schedule_free(&s);
    }
    return best;
}

static inline void schedule_compare_print(int P, int M, const StageCosts* cost, double t_comm, FILE* f) {
    ScheduleEstimate e[SCHEDULE_NUM_BUILDERS];
    int best = schedule_compare(P, M, cost, t_comm, e);
    fprintf(f, "simulated schedules, P=%d M=%d, message %g, per micro-batch and stage F B I W:", P, M, t_comm);
    for (int r = 0; r < P; r++) fprintf(f, "%s%g %g %g %g", r ? ", " : " ", cost[r].f, cost[r].b, cost[r].i, cost[r].w);
    fprintf(f, "\n  %-12s %10s %8s %6s   (stash: most micro-batches a rank holds, in P-stage units)\n", "schedule",
            "step", "bubble", "stash");
    for (int k = 0; k < SCHEDULE_NUM_BUILDERS; k++) {
        if (!e[k].ok) { fprintf(f, "  %-12s needs %s\n", e[k].name, schedule_requires(e[k].name)); continue; }
        fprintf(f, "  %-12s %10.4g %8.4f %6.2f%s\n", e[k].name, e[k].step, e[k].bubble, e[k].stash,
                k == best ? "  <- fastest" : "");
    }
}

// ----------------------------------------------------------------------------
// pictures

/*
Prints the unit-time timeline (F = 1 unit, B = 2, I = W = 1, free messages), one row per rank,
like the GPipe paper's figure. Each time unit is a fixed-width cell; an action shows its
kind and micro-batch at its start (in lower case for a rank's later stages: interleaved,
ZB-V), '=' fills the rest of a longer action, '.' is idle.
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
        int first = 0;  // the rank's first stage
        while (first < s->S && s->stage_rank[first] != r) first++;
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
            if (a->stage != first) lab[0] = (char)(lab[0] - 'A' + 'a');
            if (u0 < units) memcpy(row + u0 * cw, lab, (size_t)ll);
        }
        // trim trailing blanks/dots so rows end where the rank finishes
        int e = units * cw;
        while (e > 0 && (row[e - 1] == ' ' || row[e - 1] == '.')) e--;
        row[e] = 0;
        fprintf(f, "rank %*d | %s\n", s->P > 10 ? 2 : 1, r, row);
    }
    fprintf(f, "P=%d S=%d M=%d, t_B = 2 t_F, free comm: makespan %.0f units, bubble %.4f (1F1B theory (P-1)/(M+P-1) = %.4f)\n",
            s->P, s->S, s->M, res.makespan, res.bubble, (double)(s->P - 1) / (s->M + s->P - 1));
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

#endif // LLMC_SCHEDULE_SIM_H
