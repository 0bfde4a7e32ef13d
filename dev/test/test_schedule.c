/*
Unit tests for llmc/schedule.h, schedule_text.h, schedule_sim.h, schedule_auto.h and partition.h (pure C, no GPU).
Build and run from the repo root: make test_schedule   (see dev/test/schedule.mk)
Prints every failure and ends with "N passed, N failed"; exit status 1 on any failure.
*/
#include <math.h>
#include "llmc/schedule.h"
#include "llmc/schedule_text.h"
#include "llmc/schedule_sim.h"
#include "llmc/schedule_auto.h"
#include "llmc/partition.h"

static int n_pass = 0, n_fail = 0;

#define CHECK(cond, ...)                                           \
    do {                                                           \
        if (cond) { n_pass++; }                                    \
        else {                                                     \
            n_fail++;                                              \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);            \
            printf(__VA_ARGS__);                                   \
            printf("\n");                                          \
        }                                                          \
    } while (0)

static int same_actions(const Schedule* a, const Schedule* b) {
    if (a->P != b->P || a->S != b->S || a->M != b->M) return 0;
    if (memcmp(a->stage_rank, b->stage_rank, (size_t)a->S * sizeof(int)) != 0) return 0;
    for (int r = 0; r < a->P; r++) {
        if (a->ranks[r].n != b->ranks[r].n) return 0;
        for (int i = 0; i < a->ranks[r].n; i++) {
            const Action* x = &a->ranks[r].a[i];
            const Action* y = &b->ranks[r].a[i];
            if (x->type != y->type || x->stage != y->stage || x->mb != y->mb || x->peer != y->peer) return 0;
        }
    }
    return 1;
}

static char* format_alloc(const Schedule* s) {
    size_t n = schedule_format(s, NULL, 0);
    char* buf = (char*)malloc(n + 1);
    schedule_format(s, buf, n + 1);
    return buf;
}

// format -> parse gives the same schedule and the same text; the compute actions alone, through
// schedule_add_comms (what loading a compute-only file does), give the same messages
static void check_round_trips(const Schedule* s, const char* name, int* bad_trip, int* bad_comms) {
    char err[4096];
    char* text = format_alloc(s);
    Schedule t;
    int ok = schedule_parse(text, &t, err, sizeof(err)) == 0 && same_actions(s, &t);
    if (ok) {
        char* text2 = format_alloc(&t);
        ok = strcmp(text, text2) == 0;
        free(text2);
    }
    if (t.ranks) schedule_free(&t);
    if (!ok && (*bad_trip)++ < 5) printf("  %s P=%d M=%d: text round trip differs\n", name, s->P, s->M);
    free(text);
    Schedule c;
    schedule_init(&c, s->P, s->S, s->M);
    memcpy(c.stage_rank, s->stage_rank, (size_t)s->S * sizeof(int));
    for (int r = 0; r < s->P; r++)
        for (int i = 0; i < s->ranks[r].n; i++)
            if (pp_is_compute(s->ranks[r].a[i].type))
                schedule_push(&c, r, s->ranks[r].a[i].type, s->ranks[r].a[i].stage, s->ranks[r].a[i].mb);
    if (schedule_add_comms(&c, err, sizeof(err)) != 0 || !same_actions(s, &c)) {
        if ((*bad_comms)++ < 5) printf("  %s P=%d M=%d: add_comms differs from builder\n", name, s->P, s->M);
    }
    schedule_free(&c);
}

// the builder outputs: valid, ideal bubble, in-flight formulas, exact text round trip
static void test_builders(void) {
    const char* names[2] = {"gpipe", "1f1b"};
    int bad_valid = 0, bad_bubble = 0, bad_peak = 0, bad_trip = 0, bad_comms = 0, bad_inputs = 0, count = 0;
    char err[4096];
    for (int k = 0; k < 2; k++) {
        for (int P = 1; P <= 16; P++) {
            for (int M = 1; M <= 64; M++) {
                count++;
                Schedule s;
                int rc = schedule_build(names[k], P, M, &s);
                if (rc != 0 || schedule_validate(&s, err, sizeof(err)) != 0) {
                    if (bad_valid++ < 5) printf("  %s P=%d M=%d invalid: rc=%d %s\n", names[k], P, M, rc, err);
                    schedule_free(&s);
                    continue;
                }
                // bubble (P-1)/(M+P-1) for uniform stages, free comm, t_B = t_F and t_B = 2 t_F
                double want = (double)(P - 1) / (M + P - 1);
                for (int q = 1; q <= 2; q++) {
                    SimResult res;
                    int src = schedule_simulate(&s, 1.0, (double)q, 0.0, &res);
                    if (src != 0 || fabs(res.bubble - want) > 1e-12) {
                        if (bad_bubble++ < 5)
                            printf("  %s P=%d M=%d t_B=%d: bubble %.15f want %.15f (rc %d)\n", names[k], P, M, q,
                                   res.bubble, want, src);
                    }
                    for (int r = 0; r < P && src == 0; r++) {
                        int pk = k == 0 ? M : (P - r < M ? P - r : M);
                        if (res.peak_inflight[r] != pk) {
                            if (bad_peak++ < 5)
                                printf("  %s P=%d M=%d rank %d: peak in-flight %d want %d\n", names[k], P, M, r,
                                       res.peak_inflight[r], pk);
                        }
                        // receive buffers: at most one more than in flight
                        if (res.peak_inputs[r] < pk || res.peak_inputs[r] > pk + 1) {
                            if (bad_inputs++ < 5)
                                printf("  %s P=%d M=%d rank %d: peak inputs %d (in flight %d)\n", names[k], P, M, r,
                                       res.peak_inputs[r], pk);
                        }
                    }
                    sim_result_free(&res);
                }
                check_round_trips(&s, names[k], &bad_trip, &bad_comms);
                schedule_free(&s);
            }
        }
    }
    CHECK(bad_valid == 0, "validator rejected %d of %d builder outputs", bad_valid, count);
    CHECK(bad_bubble == 0, "bubble != (P-1)/(M+P-1) in %d cases", bad_bubble);
    CHECK(bad_peak == 0, "peak in-flight differs from M (gpipe) / min(P-r, M) (1f1b) in %d cases", bad_peak);
    CHECK(bad_inputs == 0, "peak receive buffers outside [in-flight, in-flight+1] in %d cases", bad_inputs);
    CHECK(bad_trip == 0, "text round trip failed in %d cases", bad_trip);
    CHECK(bad_comms == 0, "add_comms(compute-only) != builder in %d cases", bad_comms);
}

static void test_build_errors(void) {
    Schedule s;
    CHECK(schedule_build("interleaved", 2, 3, &s) == SCHEDULE_ERR_ARGS, "interleaved with M not a multiple of P accepted");
    CHECK(strstr(schedule_requires("interleaved:3"), "M a multiple of P"), "interleaved requirement: %s",
          schedule_requires("interleaved:3"));
    CHECK(schedule_build("interleaved:1", 2, 4, &s) == SCHEDULE_ERR_ARGS, "interleaved:1 accepted");
    CHECK(schedule_build("interleaved:x", 2, 4, &s) == SCHEDULE_ERR_NAME, "interleaved:x accepted");
    CHECK(schedule_build("interleaved:", 2, 4, &s) == SCHEDULE_ERR_NAME, "interleaved: accepted");
    CHECK(schedule_build("interleaved:200", 2, 4, &s) == SCHEDULE_ERR_ARGS, "400 stages accepted");
    CHECK(schedule_build("zbv", 200, 4, &s) == SCHEDULE_ERR_ARGS, "zbv with 400 stages accepted");
    CHECK(schedule_build("zbh1", 2, 1025, &s) == SCHEDULE_ERR_ARGS, "M > 1024 accepted");
    CHECK(schedule_build("1f1b", 2147483647, 4, &s) == SCHEDULE_ERR_ARGS, "huge P accepted");
    CHECK(schedule_build("zb", 4, 8, &s) == SCHEDULE_ERR_NAME, "unknown name accepted");
    CHECK(schedule_build(NULL, 4, 8, &s) == SCHEDULE_ERR_NAME, "NULL name accepted");
    CHECK(schedule_build("1f1b", 0, 8, &s) == SCHEDULE_ERR_ARGS, "P=0 accepted");
    CHECK(schedule_build("gpipe", 4, 0, &s) == SCHEDULE_ERR_ARGS, "M=0 accepted");
    CHECK(schedule_build("gpipe", -1, 3, &s) == SCHEDULE_ERR_ARGS, "P<0 accepted");
}

// the exact text of a small schedule pins the chosen comm order
static void test_known_text(void) {
    Schedule s;
    schedule_build("gpipe", 2, 2, &s);
    char* t = format_alloc(&s);
    const char* want =
        "0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n"
        "1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n";
    CHECK(strcmp(t, want) == 0, "gpipe P=2 M=2 text:\n%s", t);
    free(t);
    schedule_free(&s);
    // 1F1B steady state on a middle rank: F SEND_F RECV_B B RECV_F SEND_B (activation first)
    schedule_build("1f1b", 4, 8, &s);
    t = format_alloc(&s);
    CHECK(strstr(t, "1F4 1SEND_F4 1RECV_B2 1B2 1RECV_F5 1SEND_B2 1F5") != NULL, "1f1b P=4 M=8 steady order:\n%s", t);
    free(t);
    schedule_free(&s);
}

// parse text, expect validation to fail with a message containing `want`
static void expect_invalid(const char* what, const char* text, const char* want) {
    Schedule s;
    char err[2048];
    if (schedule_parse(text, &s, err, sizeof(err)) != 0) {
        CHECK(0, "%s: parse failed: %s", what, err);
        return;
    }
    int rc = schedule_validate(&s, err, sizeof(err));
    CHECK(rc != 0 && strstr(err, want) != NULL, "%s: want error containing \"%s\", got rc=%d \"%s\"", what, want, rc, err);
    schedule_free(&s);
}

static void test_broken(void) {
    // the base is valid
    const char* ok =
        "0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n"
        "1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n";
    Schedule s;
    char err[2048];
    int rc = schedule_parse(ok, &s, err, sizeof(err));
    CHECK(rc == 0 && schedule_validate(&s, err, sizeof(err)) == 0, "base schedule invalid: %s", err);
    if (rc == 0) schedule_free(&s);

    expect_invalid("missing recv",
                   "0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n"
                   "1RECV_F0 1F0 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n",
                   "missing '1RECV_F1' on rank 1");
    // the classic 1F1B hang: rank 0 sends F1 while rank 1 sends B0, both block
    expect_invalid("both neighbours send first",
                   "0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n"
                   "1RECV_F0 1F0 1B0 1SEND_B0 1RECV_F1 1F1 1B1 1SEND_B1\n",
                   "deadlock with blocking send/recv: rank 0 waits at #3 '0SEND_F1' for rank 1 (which waits at #3 '1SEND_B0')");
    expect_invalid("duplicate forward", "0F0 0F0 0B0\n", "duplicate action: rank 0 has '0F0' twice");
    expect_invalid("backward before forward", "0B0 0F0\n", "'0F0' (#1) comes after '0B0' (#0): backward before its forward");
    expect_invalid("out-of-order backwards", "0F0 0F1 0B1 0B0\n", "increasing micro-batch order");
    expect_invalid("send with no matching recv (last stage sends)",
                   "0F0 0SEND_F0 0RECV_B0 0B0\n"
                   "1RECV_F0 1F0 1SEND_F0 1B0 1SEND_B0\n",
                   "last stage 1 has no next stage to send to");
    expect_invalid("send with no matching recv",
                   "0F0 0SEND_F0 0RECV_B0 0B0\n"
                   "1F0 1B0 1SEND_B0\n",
                   "missing '1RECV_F0' on rank 1");
    expect_invalid("recv with no matching send",
                   "0F0 0RECV_B0 0B0\n"
                   "1RECV_F0 1F0 1B0 1SEND_B0\n",
                   "missing '0SEND_F0' on rank 0");
    expect_invalid("messages received out of order",
                   "0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n"
                   "1RECV_F1 1RECV_F0 1F0 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n",
                   "channel rank 0 -> rank 1, message #0: rank 0 sends '0SEND_F0' (#1) but rank 1 receives '1RECV_F1'");
    expect_invalid("stage 0 receives", "0RECV_F0 0F0 0B0\n", "first stage 0 has no previous stage to receive from");
    expect_invalid("forward before its recv",
                   "0F0 0SEND_F0 0RECV_B0 0B0\n"
                   "1F0 1RECV_F0 1B0 1SEND_B0\n",
                   "'1RECV_F0' (#1) comes after '1F0' (#0): its input must be received before the forward");
    expect_invalid("grad sent before backward",
                   "0F0 0SEND_F0 0RECV_B0 0B0\n"
                   "1RECV_F0 1F0 1SEND_B0 1B0\n",
                   "d(input) can only be sent after the backward");
    // a file places each stage on the rank whose row holds it, so build this one by hand
    Schedule w;
    schedule_init(&w, 2, 2, 1);
    schedule_push(&w, 0, PP_F, 1, 0);
    schedule_push(&w, 0, PP_B, 1, 0);
    rc = schedule_validate(&w, err, sizeof(err));
    CHECK(rc != 0 && strstr(err, "stage 1 runs on rank 1, not rank 0"), "stage on the wrong rank: rc=%d %s", rc, err);
    schedule_free(&w);
    expect_invalid("missing backward", "0F0 0F1 0B0\n", "missing backward '0B1'");
    expect_invalid("missing forward", "0F1 0B0 0B1\n", "missing forward '0F0'");
    expect_invalid("I without W", "0F0 0I0\n", "'0I0' without its '0W0'");
    expect_invalid("W before I", "0F0 0W0 0I0\n", "W before its input backward I");
    // two stages on one rank (V placement, P=2 S=4): their order is a local dependency, no message
    expect_invalid("local forward order",
                   "0F0 0SEND_F0 3RECV_F0 3F0 3B0 3SEND_B0 0RECV_B0 0B0\n"
                   "1RECV_F0 2F0 1F0 2SEND_F0 2RECV_B0 2B0 1B0 1SEND_B0\n",
                   "rank 1: forward '2F0' needs '1F0' first");
    expect_invalid("local backward order",
                   "0F0 0SEND_F0 3RECV_F0 3F0 3B0 3SEND_B0 0RECV_B0 0B0\n"
                   "1RECV_F0 1F0 2F0 2SEND_F0 2RECV_B0 1B0 2B0 1SEND_B0\n",
                   "rank 1: backward of stage 1 mb 0 needs stage 2's first");
    expect_invalid("message to a stage on the same rank",
                   "0F0 0SEND_F0 3RECV_F0 3F0 3B0 3SEND_B0 0RECV_B0 0B0\n"
                   "1RECV_F0 1F0 1SEND_F0 2F0 2SEND_F0 2RECV_B0 2B0 1B0 1SEND_B0\n",
                   "'1SEND_F0': neighbour stage is on the same rank, no message needed");
    rc = schedule_parse("0F0 0SEND_F0 3RECV_F0 3F0 3B0 3SEND_B0 0RECV_B0 0B0\n"
                        "1RECV_F0 1F0 2F0 2SEND_F0 2RECV_B0 2B0 1B0 1SEND_B0\n", &s, err, sizeof(err));
    CHECK(rc == 0 && schedule_validate(&s, err, sizeof(err)) == 0, "V placement by hand rejected: %s", err);
    if (rc == 0) schedule_free(&s);
    // a valid split-backward (zero-bubble style) schedule on one rank passes
    rc = schedule_parse("0F0 0F1 0I0 0I1 0W0 0W1\n", &s, err, sizeof(err));
    CHECK(rc == 0 && schedule_validate(&s, err, sizeof(err)) == 0, "split backward rejected: %s", err);
    if (rc == 0) schedule_free(&s);
}

static void expect_parse_error(const char* text, const char* want) {
    Schedule s;
    char err[512];
    int rc = schedule_parse(text, &s, err, sizeof(err));
    CHECK(rc != 0 && strstr(err, want) != NULL, "parse of \"%s\": want error containing \"%s\", got rc=%d \"%s\"", text,
          want, rc, err);
    if (rc == 0) schedule_free(&s);
}

static void test_parse(void) {
    expect_parse_error("0F0 0X1 0B0\n", "line 1, token 2 '0X1': unknown action type");
    expect_parse_error("# comment\n\n0F0 F1\n", "line 3, token 2 'F1': expected a stage number");
    expect_parse_error("0F0 0F\n", "token 2 '0F': missing micro-batch number");
    expect_parse_error("0F0 0F1x\n", "token 2 '0F1x': unexpected characters after the micro-batch number");
    expect_parse_error("0f0\n", "token 1 '0f0': expected an action type");
    expect_parse_error("0F0 - 0B0\n", "'-' (empty rank) must be the only token");
    expect_parse_error("# nothing\n\n", "empty schedule");
    // comments, commas (PyTorch CSV), CRLF, blank lines, the empty-rank marker
    Schedule s;
    char err[512];
    int rc = schedule_parse("# hand written\r\n0F0, 0F1,0B0 0B1  # trailing comment\r\n\n-\n", &s, err, sizeof(err));
    CHECK(rc == 0 && s.P == 2 && s.S == 2 && s.M == 2 && s.ranks[0].n == 4 && s.ranks[1].n == 0,
          "lenient parse: rc=%d %s", rc, err);
    if (rc == 0) {
        char* t = format_alloc(&s);
        CHECK(strcmp(t, "0F0 0F1 0B0 0B1\n-\n") == 0, "format of parsed text: %s", t);
        free(t);
        schedule_free(&s);
    }
    // format into a small buffer truncates cleanly and still reports the full length
    schedule_build("gpipe", 2, 2, &s);
    char small[10];
    size_t need = schedule_format(&s, small, sizeof(small));
    CHECK(need == strlen("0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n") &&
          strncmp(small, "0F0", 3) == 0 && strlen(small) < sizeof(small), "truncated format: need %zu, got '%s'", need, small);
    schedule_free(&s);
}

// a user hand-writes compute-only rows in a file; load = parse + insert comms + validate
static void test_load_file(void) {
    const char* path = "/tmp/test_schedule_handwritten.txt";
    FILE* f = fopen(path, "w");
    if (!f) { CHECK(0, "cannot write %s", path); return; }
    fprintf(f, "# 1F1B, P=3, M=4, compute only\n0F0 0F1 0F2 0B0 0F3 0B1 0B2 0B3\n1F0 1F1 1B0 1F2 1B1 1F3 1B2 1B3\n"
               "2F0 2B0 2F1 2B1 2F2 2B2 2F3 2B3\n");
    fclose(f);
    Schedule s, ref;
    char err[1024];
    int rc = schedule_load_file(path, &s, err, sizeof(err));
    CHECK(rc == 0, "load_file: %s", err);
    if (rc == 0) {
        schedule_build("1f1b", 3, 4, &ref);
        CHECK(same_actions(&s, &ref), "hand-written 1F1B + inserted comms differs from the builder");
        schedule_free(&ref);
        schedule_free(&s);
    }
    f = fopen(path, "w");
    fprintf(f, "0F0 0B0\n1B0 1F0\n");  // backward before forward: cannot insert comms
    fclose(f);
    rc = schedule_load_file(path, &s, err, sizeof(err));
    CHECK(rc != 0 && strstr(err, "rank 1 stuck at #0 '1B0'") && strstr(err, path), "bad file: rc=%d %s", rc, err);
    remove(path);
    rc = schedule_load_file("/nonexistent/dir/x.txt", &s, err, sizeof(err));
    CHECK(rc != 0 && strstr(err, "cannot open"), "missing file: %s", err);
}

static void test_simulator(void) {
    Schedule s;
    SimResult res;
    // comm cost: GPipe with t_comm c per hop: makespan grows, still no deadlock
    schedule_build("gpipe", 4, 8, &s);
    int rc = schedule_simulate(&s, 1.0, 2.0, 0.25, &res);
    CHECK(rc == 0 && res.makespan > 33.0 && res.bubble > 3.0 / 11, "gpipe with comm: rc %d makespan %g", rc,
          res.makespan);
    sim_result_free(&res);
    // a slow stage sets the pace: GPipe P=2 M=4 with stage 1 twice as slow
    schedule_free(&s);
    StageCosts cost[2] = {{1, 2, 1, 1}, {2, 4, 2, 2}};
    schedule_build("gpipe", 2, 4, &s);
    rc = schedule_simulate_stages(&s, cost, 0.0, &res);
    // forward: stage 1 finishes F3 at 1 + 4*2 = 9; backward: stage 1 B0..B3 9..25, stage 0 B3 at 25..27
    CHECK(rc == 0 && fabs(res.makespan - 27.0) < 1e-12, "heterogeneous gpipe makespan %g want 27", res.makespan);
    CHECK(fabs(res.busy[0] - 12.0) < 1e-12 && fabs(res.busy[1] - 24.0) < 1e-12, "busy %g %g", res.busy[0], res.busy[1]);
    sim_result_free(&res);
    schedule_free(&s);
    // deadlock reported by the simulator too
    Schedule d;
    char err[256];
    schedule_parse("0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n"
                   "1RECV_F0 1F0 1B0 1SEND_B0 1RECV_F1 1F1 1B1 1SEND_B1\n", &d, err, sizeof(err));
    CHECK(schedule_simulate(&d, 1, 2, 0, &res) != 0, "simulator missed a deadlock");
    sim_result_free(&res);
    schedule_free(&d);
    // ascii timeline and trace writer produce the expected shapes
    schedule_build("gpipe", 2, 2, &s);
    FILE* f = tmpfile();
    if (f) {
        schedule_print_ascii_timeline(&s, f);
        schedule_simulate(&s, 1, 2, 0, &res);
        schedule_write_trace(&s, &res, 1000.0, f);
        sim_result_free(&res);
        rewind(f);
        char buf[4096];
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = 0;
        fclose(f);
        CHECK(strstr(buf, "rank 0 | F0 F1 .  .  .  B0 == B1 ==\nrank 1 | .  F0 F1 B0 == B1 ==\n") != NULL,
              "ascii timeline:\n%s", buf);
        CHECK(strstr(buf, "{\"name\": \"B1\", \"ph\": \"X\", \"pid\": 0, \"tid\": 0, \"ts\": 7000.000, \"dur\": 2000.000, "
                          "\"args\": {\"mb\": 1, \"stage\": 0}}") != NULL, "trace:\n%s", buf);
        CHECK(strstr(buf, "\"name\": \"wait\"") != NULL, "trace has no wait events:\n%s", buf);
    }
    schedule_free(&s);
}

// every builder x P x M: valid, weight gradients in micro-batch order, stash, text round trip,
// compute-only + add_comms = builder, bubble below 1F1B's
static const char* all_names[7] = {"gpipe", "1f1b", "interleaved", "interleaved:3", "zbh1", "zbh2", "zbv"};

// the simulation with the costs of one micro-batch on a rank's 1/P of the model: F 1, B 2 = I 1 + W 1
static int simulate_share(const Schedule* s, SimResult* res) {
    StageCosts* c = (StageCosts*)malloc((size_t)s->S * sizeof(StageCosts));
    double k = (double)s->S / s->P;
    for (int st = 0; st < s->S; st++) { c[st].f = 1 / k; c[st].b = 2 / k; c[st].i = 1 / k; c[st].w = 1 / k; }
    int rc = schedule_simulate_stages(s, c, 0.0, res);
    free(c);
    return rc;
}

static void test_all_builders(void) {
    const int Ms[5] = {1, 2, 3, 4, 8};
    int count = 0, refused = 0, bad_valid = 0, bad_order = 0, bad_peak = 0, bad_trip = 0, bad_comms = 0, bad_bubble = 0;
    int bad_h1 = 0, bad_v = 0;
    char err[4096];
    for (int k = 0; k < 7; k++) {
        for (int P = 1; P <= 4; P++) {
            for (int mi = 0; mi < 5; mi++) {
                int M = Ms[mi];
                Schedule s;
                int rc = schedule_build(all_names[k], P, M, &s);
                if (strncmp(all_names[k], "interleaved", 11) == 0 && M % P != 0) {
                    refused++;
                    if (rc != SCHEDULE_ERR_ARGS) { bad_valid++; schedule_free(&s); }
                    continue;
                }
                count++;
                if (rc != 0 || schedule_validate(&s, err, sizeof(err)) != 0) {
                    if (bad_valid++ < 5) printf("  %s P=%d M=%d invalid: rc=%d %s\n", all_names[k], P, M, rc, err);
                    if (rc == 0) schedule_free(&s);
                    continue;
                }
                // weight gradients (B or W) of each stage: micro-batches 0, 1, ..., M-1 in turn
                for (int st = 0; st < s.S; st++) {
                    const ActionList* L = &s.ranks[s.stage_rank[st]];
                    int next = 0;
                    for (int i = 0; i < L->n; i++)
                        if (L->a[i].stage == st && pp_is_bwd_weight(L->a[i].type) && L->a[i].mb != next++) bad_order++;
                    if (next != M) bad_order++;
                }
                // stash: the simulator reports schedule_peak_inflight; per rank (all its stages at once)
                // a ZB schedule holds no more than 1F1B's worst rank, min(P, M) micro-batches of 1/P of the model
                SimResult res;
                if (simulate_share(&s, &res) != 0) bad_peak++;
                int worst = 0;
                for (int st = 0; st < s.S; st++) {
                    if (res.peak_inflight[st] != schedule_peak_inflight(&s, st)) bad_peak++;
                    if (res.peak_inflight[st] > worst) worst = res.peak_inflight[st];
                }
                int pk1f1b = P < M ? P : M;
                if (strcmp(all_names[k], "zbh1") == 0 && worst != pk1f1b) {
                    if (bad_h1++ < 5) printf("  zbh1 P=%d M=%d: peak stash %d, 1F1B's %d\n", P, M, worst, pk1f1b);
                }
                if (strcmp(all_names[k], "zbv") == 0) {
                    for (int r = 0; r < P; r++) {  // stage-micro-batches held at once, each half a 1F1B stage
                        int held = 0, peak = 0;
                        for (int i = 0; i < s.ranks[r].n; i++) {
                            ActionType t = s.ranks[r].a[i].type;
                            if (t == PP_F && ++held > peak) peak = held;
                            if (pp_is_bwd_weight(t)) held--;
                        }
                        if (peak > 2 * pk1f1b) {
                            if (bad_v++ < 5) printf("  zbv P=%d M=%d rank %d: %d half-stages held\n", P, M, r, peak);
                        }
                    }
                }
                // fewer idle slots than 1F1B with the same work per rank
                if (P > 1 && k >= 2) {
                    Schedule b;
                    SimResult rb;
                    schedule_build("1f1b", P, M, &b);
                    simulate_share(&b, &rb);
                    if (!(res.bubble < rb.bubble - 1e-9)) {
                        if (bad_bubble++ < 5)
                            printf("  %s P=%d M=%d: bubble %.4f, 1F1B %.4f\n", all_names[k], P, M, res.bubble, rb.bubble);
                    }
                    sim_result_free(&rb);
                    schedule_free(&b);
                }
                sim_result_free(&res);
                check_round_trips(&s, all_names[k], &bad_trip, &bad_comms);
                schedule_free(&s);
            }
        }
    }
    CHECK(count == 122 && refused == 18, "builder cases %d (want 122), refused %d (want 18)", count, refused);
    CHECK(bad_valid == 0, "%d of %d builder outputs invalid or not refused", bad_valid, count);
    CHECK(bad_order == 0, "weight gradients out of micro-batch order in %d cases", bad_order);
    CHECK(bad_peak == 0, "simulated stash differs from schedule_peak_inflight in %d cases", bad_peak);
    CHECK(bad_h1 == 0, "ZB-H1 peak stash differs from 1F1B's in %d cases", bad_h1);
    CHECK(bad_v == 0, "ZB-V holds more than 1F1B's peak in %d cases", bad_v);
    CHECK(bad_bubble == 0, "interleaved/ZB bubble not below 1F1B's in %d cases", bad_bubble);
    CHECK(bad_trip == 0, "text round trip failed in %d cases", bad_trip);
    CHECK(bad_comms == 0, "add_comms(compute-only) != builder in %d cases", bad_comms);
}

// The cost-aware builders (zbc, zbcv), unit and uneven costs, every P x M: valid; I and W of each stage in
// micro-batch order; no rank holds more than the largest cap tried (2S-1 stage-micro-batches); the replay's
// own finish time = the simulator's (free messages), for each candidate; built twice, the same; the text
// round trip. Then names,
// and what the costs buy at issue 10's setting.
static void test_costed(void) {
    const int Ms[5] = {1, 2, 3, 4, 8};
    int count = 0, bad_valid = 0, bad_order = 0, bad_peak = 0, bad_time = 0, bad_same = 0, bad_trip = 0, unused = 0;
    int bad_search = 0, searched = 0;
    char err[4096], name[SCHEDULE_NAME_MAX];
    for (int v = 1; v <= 2; v++) {
        for (int P = 1; P <= 4; P++) {
            int S = v * P, place[8];
            pp_costed_placement(P, v, place);
            StageCosts c[8], unit[8];  // uneven: a heavy last stage (the LM head), W about 3/4 of I
            for (int st = 0; st < S; st++) {
                c[st] = (StageCosts){1.0 + st, 1.7 + st, 1.0 + st, 0.7 + 0.5 * st};
                unit[st] = (StageCosts){1, 2, 1, 1};  // what the builder takes without costs
            }
            c[S - 1] = (StageCosts){5.0, 5.6, 2.4, 3.2};
            for (int mi = 0; mi < 5; mi++) {
                int M = Ms[mi];
                for (int uneven = 0; uneven <= 1; uneven++) {
                    if (uneven) schedule_costed_name(v == 1 ? "zbc" : "zbcv", c, S, name, sizeof(name));
                    else snprintf(name, sizeof(name), "%s", v == 1 ? "zbc" : "zbcv");
                    Schedule s, again;
                    count++;
                    if (schedule_build(name, P, M, &s) != 0 || schedule_validate(&s, err, sizeof(err)) != 0) {
                        if (bad_valid++ < 5) printf("  %s P=%d M=%d invalid: %s\n", name, P, M, err);
                        continue;
                    }
                    for (int st = 0; st < S; st++) {
                        const ActionList* L = &s.ranks[s.stage_rank[st]];
                        int ni = 0, nw = 0;
                        for (int i = 0; i < L->n; i++) {
                            if (L->a[i].stage != st) continue;
                            if (L->a[i].type == PP_I && L->a[i].mb != ni++) bad_order++;
                            if (L->a[i].type == PP_W && L->a[i].mb != nw++) bad_order++;
                        }
                        if (ni != M || nw != M) bad_order++;
                    }
                    for (int r = 0; r < P; r++) {  // stage-micro-batches a rank holds at once: within the largest cap
                        int held = 0, peak = 0;
                        for (int i = 0; i < s.ranks[r].n; i++) {
                            if (s.ranks[r].a[i].type == PP_F && ++held > peak) peak = held;
                            if (s.ranks[r].a[i].type == PP_W) held--;
                        }
                        if (peak > 2 * S - 1 && bad_peak++ < 5) printf("  %s P=%d M=%d rank %d holds %d\n", name, P, M, r, peak);
                    }
                    SimResult res;
                    double greedy = 1e300;  // the fastest candidate: the local search starts there and cannot lose
                    for (int cap = v; cap <= 2 * S - 1; cap++)  // every candidate the builder tries
                        for (int k = 0; k < 6; k++) {
                            Schedule g;
                            double end = pp_build_greedy(P, S, place, M, uneven ? c : NULL, cap, 0.5 * (k % 3), k / 3, &g);
                            if (end < 0) { unused++; continue; }
                            if (end < greedy) greedy = end;
                            schedule_simulate_stages(&g, uneven ? c : unit, 0.0, &res);
                            if (fabs(res.makespan - end) > 1e-9 * end) {
                                if (bad_time++ < 5) printf("  %s P=%d M=%d cap %d: replay %g, simulator %g\n", name, P, M, cap, end, res.makespan);
                            }
                            sim_result_free(&res);
                            schedule_free(&g);
                        }
                    schedule_simulate_stages(&s, uneven ? c : unit, 0.0, &res);
                    if (res.makespan > greedy * (1 + 1e-9) && bad_search++ < 5)
                        printf("  %s P=%d M=%d: %g after the local search, %g before\n", name, P, M, res.makespan, greedy);
                    searched += res.makespan < greedy * (1 - 1e-9);
                    sim_result_free(&res);
                    schedule_build(name, P, M, &again);
                    bad_same += !same_actions(&s, &again);
                    schedule_free(&again);
                    char* text = format_alloc(&s);
                    Schedule t;
                    if (schedule_parse(text, &t, err, sizeof(err)) != 0 || !same_actions(&s, &t)) bad_trip++;
                    else schedule_free(&t);
                    free(text);
                    schedule_free(&s);
                }
            }
        }
    }
    CHECK(count == 80 && bad_valid == 0, "cost-aware builds: %d, %d invalid", count, bad_valid);
    CHECK(bad_order == 0, "cost-aware: I or W out of micro-batch order in %d cases", bad_order);
    CHECK(bad_peak == 0, "cost-aware: a rank holds more than 2S-1 stage-micro-batches in %d cases", bad_peak);
    CHECK(bad_search == 0 && searched > 0, "cost-aware: the local search made %d slower, %d of %d faster", bad_search,
          searched, count);
    printf("  the local search shortened %d of %d cost-aware schedules\n", searched, count);
    CHECK(bad_time == 0 && unused == 0, "cost-aware: replay time differs from the simulator's in %d candidates (%d failed)",
          bad_time, unused);
    CHECK(bad_same == 0 && bad_trip == 0, "cost-aware: %d not deterministic, %d text round trips differ", bad_same, bad_trip);
    // names: the costs parse back (four digits), malformed ones are refused, another builder's name is not taken
    StageCosts two[2] = {{719.4, 1178.3, 672.3, 506.0}, {826.6, 1129.8, 561.9, 567.9}};
    schedule_costed_name("zbc", two, 2, name, sizeof(name));
    CHECK(strcmp(name, "zbc:719.4/672.3/506,826.6/561.9/567.9") == 0, "costed name %s", name);
    Schedule s;
    const char* bad[] = {"zbc:1/1/1", "zbc:1/1/1,1/1", "zbc:1/1/1,1/1/0", "zbc:1/1/1,1/1/-1", "zbc:1/1/1,1/1/1,",
                         "zbc:nan/1/1,1/1/1", "zbc:inf/1/1,1/1/1", "zbc: 1/1/1,1/1/1", "zbc:", "zbcv:1/1/1,1/1/1"};
    int refused = 0;
    for (int i = 0; i < 10; i++) refused += schedule_build(bad[i], 2, 4, &s) == SCHEDULE_ERR_ARGS;
    CHECK(refused == 10, "malformed costs refused: %d of 10", refused);
    CHECK(schedule_build("zbcx", 2, 4, &s) == SCHEDULE_ERR_NAME && schedule_build("zbc:1/1/1,2/2/2", 2, 0, &s) == SCHEDULE_ERR_ARGS,
          "zbcx or M=0 accepted");
    CHECK(strstr(schedule_requires("zbcv"), "F/I/W per stage"), "zbc requirement: %s", schedule_requires("zbcv"));
    // Issue 10's setting, d12 B=1 T=64 M=8 on 2 ranks, with the action times one ZB-H2 run measured (ms per
    // micro-batch; stage 0: 8 layers, stage 1: 4 layers + LM head; a layer F 90, I 84, W 63, the head F 467,
    // I 226, W 316). One stage per rank cannot go below 0.058: rank 1 waits for stage 0's first F, then has
    // 8 x 1956 ms to do (1 - 8 (1898 + 1956) / (2 (719 + 8 x 1956))); ZB-H2 simulates 0.068. zbcv at the
    // split 3,3,5,1 (rank 0: 4 layers + head = 1957 ms, rank 1: 8 layers = 1896 ms) simulates 0.0486 from the
    // greedy alone, 0.0275 after the local search (the balance alone costs 0.0157).
    StageCosts layer = {90, 147, 84, 63}, head = {467, 542, 226, 316}, v4[4];
    const int split[4] = {3, 3, 5, 1};
    for (int st = 0; st < 4; st++) {
        v4[st] = (StageCosts){split[st] * layer.f, split[st] * layer.b, split[st] * layer.i, split[st] * layer.w};
        if (st == 3) { v4[st].f += head.f; v4[st].b += head.b; v4[st].i += head.i; v4[st].w += head.w; }
    }
    SimResult res, rz;
    schedule_costed_name("zbcv", v4, 4, name, sizeof(name));
    schedule_build(name, 2, 8, &s);
    schedule_simulate_stages(&s, v4, 0.0, &res);
    Schedule z;
    schedule_build("zbh2", 2, 8, &z);
    schedule_simulate_stages(&z, two, 0.0, &rz);
    CHECK(res.bubble < 0.05 && fabs(rz.bubble - 0.068) < 0.001, "d12 costs: zbcv 3,3,5,1 bubble %.4f, zbh2 8,4 %.4f",
          res.bubble, rz.bubble);
    Schedule g;  // the greedy alone, what the local search started from
    SimResult rg;
    schedule_build_opt(name, 2, 8, 0, &g);
    schedule_simulate_stages(&g, v4, 0.0, &rg);
    CHECK(res.bubble < rg.bubble, "d12 costs: zbcv 3,3,5,1 bubble %.4f after the local search, %.4f before", res.bubble,
          rg.bubble);
    printf("  d12 costs, zbcv 3,3,5,1: bubble %.4f, %.4f with the greedy alone\n", res.bubble, rg.bubble);
    sim_result_free(&rg);
    schedule_free(&g);
    sim_result_free(&res); sim_result_free(&rz);
    schedule_free(&s); schedule_free(&z);
}

// -mem for test_auto: every schedule's largest rank is 100 MiB but the cost-aware ones', 200 MiB
static double fake_rank_bytes(void* ctx, const char* schedule, const char* split) {
    (void)split;
    (*(int*)ctx)++;
    return (strncmp(schedule, "zbc", 3) == 0 ? 200.0 : 100.0) * 1048576.0;
}

// -sc auto's choice (llmc/schedule_auto.h) from the d12 costs of test_costed as 1F1B at 8,4 would measure them:
// the costs of a layer and the head come back from the stage times, the cost-aware V wins at a 4-stage split,
// -mem moves to the fastest that fits, -pl keeps the split and refuses the 4-stage builders, nothing fitting stays
static void test_auto(void) {
    double secs[10] = {0.7194, 1.1783, 0, 0, 0.5060, 0.8266, 1.1298, 0, 0, 0.5679}, counts[10] = {1, 1, 0, 0, 0, 1, 1, 0, 0, 0};
    StageCosts m[2];
    stage_costs_measured(secs, counts, 2, m);  // fused B: its weight part is W, the rest I
    CHECK(fabs(m[0].f - 719.4) < 1e-9 && fabs(m[0].w - 506.0) < 1e-9 && fabs(m[0].i - 672.3) < 1e-9 && fabs(m[1].b - 1129.8) < 1e-9,
          "measured stage 0: %g %g %g %g", m[0].f, m[0].b, m[0].i, m[0].w);
    int layers[2] = {16, 8}, calls = 0;  // 8,4 in half-layer units
    char buf[8192];
    FILE* f = tmpfile();
    PartitionCosts model = partition_gpt2_costs(1, 64, 768, 12, 50304, &PARTITION_CPU);  // the CPU trainer's
    double share = model.attention / model.layer;
    AutoQuery q = {"1f1b", 2, 0, 0, NULL, NULL, f, share};
    AutoChoice c;
    schedule_auto_choose(m, layers, 2, 8, 12, &q, &c);
    rewind(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = 0;
    fclose(f);
    CHECK(c.moves && strncmp(c.name, "zbcv:", 5) == 0 && strstr(buf, "F+B: a layer 237.2, the embedding 0.0, the LM head 1007.5"),
          "auto chose %s split %s:\n%s", c.name, c.split, buf);
    q.out = NULL; q.rank_bytes = fake_rank_bytes; q.ctx = &calls; q.max_mib = 150;
    schedule_auto_choose(m, layers, 2, 8, 12, &q, &c);
    // (zbh2 at 8.5,3.5: layer 8's attention half on stage 0, its MLP half on stage 1)
    CHECK(strcmp(c.name, "zbh2") == 0 && strcmp(c.split, "8.5,3.5") == 0 && calls == 8, "-mem 150: %s %s (%d plans)", c.name, c.split, calls);
    q.fixed = 1;
    schedule_auto_choose(m, layers, 2, 8, 12, &q, &c);
    CHECK(strcmp(c.name, "zbh2") == 0 && strcmp(c.split, "8,4") == 0 && calls == 8 + 5, "-pl 8,4: %s %s", c.name, c.split);
    q.max_mib = 50;
    schedule_auto_choose(m, layers, 2, 8, 12, &q, &c);
    CHECK(!c.moves && strcmp(c.name, "1f1b") == 0 && strcmp(c.split, "8,4") == 0, "nothing fits: %s %s", c.name, c.split);
    // A 1F1B calibration of this machine (2026-12-04; a layer F 19.82, I 19.27, W 13.74 ms, the LM head F 111.5,
    // I 67.6, W 67.1): the greedy alone ranks zbcv's split 3,5,3,1 first and 2,4,4,2 sixth of the splits that
    // share the best bound (rank 0: 4 layers and the head). -sc auto ranks splits by the bound, searches the
    // first eight, and the search takes 2,4,4,2 to the bound itself, 3660.2 ms: its bubble, 0.038, is all
    // imbalance (rank 0: 4 layers and the head, 457.5 ms a micro-batch; rank 1: 8 layers, 422.6 ms). 3,5,3,1
    // gets to 3707.2.
    StageCosts cal[2] = {{8 * 19.82, 8 * (19.27 + 13.74), 8 * 19.27, 8 * 13.74},
                         {4 * 19.82 + 111.5, 4 * (19.27 + 13.74) + 67.6 + 67.1, 4 * 19.27 + 67.6, 4 * 13.74 + 67.1}};
    const double kind_ms[4][2] = {{cal[0].f, cal[1].f}, {cal[0].b, cal[1].b}, {cal[0].i, cal[1].i}, {cal[0].w, cal[1].w}};
    ComponentCosts cc[4];
    for (int k = 0; k < 4; k++) cc[k] = component_costs(kind_ms[k], layers, 2, share);
    double greedy[2], searched[2], bound[2];
    const int splits[2][4] = {{6, 10, 6, 2}, {4, 8, 8, 4}};  // 3,5,3,1 and 2,4,4,2 in half-layer units
    for (int k = 0; k < 2; k++) {
        StageCosts cost[4];
        char full[SCHEDULE_NAME_MAX];
        Schedule sc;
        auto_build("zbcv", 2, 8, cc, splits[k], 4, cost, &sc, full, sizeof(full), 0);
        greedy[k] = auto_simulate(&sc, cost);
        bound[k] = schedule_lower_bound(&sc, cost);
        schedule_free(&sc);
        auto_build("zbcv", 2, 8, cc, splits[k], 4, cost, &sc, full, sizeof(full), 1);
        searched[k] = auto_simulate(&sc, cost);
        schedule_free(&sc);
    }
    CHECK(greedy[0] < greedy[1] && fabs(bound[0] - bound[1]) < 1e-9 && fabs(searched[1] - bound[1]) < 1e-6 * bound[1] &&
              searched[0] > searched[1],
          "calibrated: greedy 3,5,3,1 %.1f 2,4,4,2 %.1f, bounds %.1f %.1f, searched %.1f %.1f", greedy[0], greedy[1],
          bound[0], bound[1], searched[0], searched[1]);
    // With halves of layers -sc auto gets below the best whole-layer step: 2,4.5,4,1.5 gives rank 0 (stages 0 and 3)
    // 3.5 layers, one of them an MLP half, and the head, 8.5 to rank 1 (attention share 0.345 by the cost model)
    q = (AutoQuery){"1f1b", 2, 0, 0, NULL, NULL, NULL, share};
    schedule_auto_choose(cal, layers, 2, 8, 12, &q, &c);
    int chosen[4], chosen_first[4];
    double halves = 0.0;
    if (strncmp(c.name, "zbcv:", 5) == 0 && partition_parse(c.split, 12, 4, chosen, chosen_first, buf, sizeof(buf)) == 0) {
        StageCosts cost[4];
        char full[SCHEDULE_NAME_MAX];
        Schedule sc;
        auto_build("zbcv", 2, 8, cc, chosen, 4, cost, &sc, full, sizeof(full), 1);
        halves = auto_simulate(&sc, cost);
        schedule_free(&sc);
    }
    CHECK(strcmp(c.split, "2,4.5,4,1.5") == 0 && halves > 0.0 && halves < searched[1] * (1 - 1e-3),
          "calibrated: auto chose %.5s split %s, %.1f ms against the best whole split's %.1f", c.name, c.split, halves,
          searched[1]);
    printf("  calibrated zbcv: whole layers 2,4,4,2 %.1f ms, halves %s %.1f ms\n", searched[1], c.split, halves);
    // the bound holds: no builder's schedule of these costs, before or after the search, is shorter
    const char* builders[3] = {"zbcv", "zbc", "1f1b"};
    int below = 0;
    for (int k = 0; k < 3; k++) {
        const int* n = k == 0 ? splits[0] : layers;
        StageCosts cost[4];
        char full[SCHEDULE_NAME_MAX];
        Schedule sc;
        for (int improve = 0; improve < 2; improve++) {
            auto_build(builders[k], 2, 8, cc, n, k == 0 ? 4 : 2, cost, &sc, full, sizeof(full), improve);
            below += auto_simulate(&sc, cost) < schedule_lower_bound(&sc, cost) * (1 - 1e-9);
            schedule_free(&sc);
        }
    }
    CHECK(below == 0, "%d schedules shorter than the bound", below);
}

// placements: interleaved stage s on rank s % P, ZB-V rank r holds stages r and 2P-1-r
static void test_placement(void) {
    Schedule s;
    schedule_build("interleaved:3", 2, 4, &s);
    CHECK(s.S == 6 && s.stage_rank[0] == 0 && s.stage_rank[3] == 1 && s.stage_rank[4] == 0, "interleaved placement");
    schedule_free(&s);
    schedule_build("zbv", 3, 3, &s);
    int want[6] = {0, 1, 2, 2, 1, 0};
    CHECK(s.S == 6 && memcmp(s.stage_rank, want, sizeof(want)) == 0, "zbv placement %d %d %d %d %d %d", s.stage_rank[0],
          s.stage_rank[1], s.stage_rank[2], s.stage_rank[3], s.stage_rank[4], s.stage_rank[5]);
    // stages 2 and 3 share rank 2: no message between them
    char* t = format_alloc(&s);
    CHECK(strstr(t, "2SEND_F") == NULL && strstr(t, "3RECV_F") == NULL && strstr(t, "3SEND_B") == NULL, "zbv text:\n%s", t);
    free(t);
    schedule_free(&s);
    // the depth-first order of Megatron's interleaving on rank 0, P=2 v=2 M=4: forwards of chunk 0 for
    // micro-batches 0 and 1, chunk 1 for them, then pairs; backwards start from the last chunk
    schedule_build("interleaved", 2, 4, &s);
    t = format_alloc(&s);
    CHECK(strncmp(t, "0F0 0SEND_F0 0F1 0SEND_F1 2RECV_F0 2F0 2SEND_F0 2RECV_F1 2F1 2SEND_F1 0F2 0SEND_F2 2RECV_B0 2B0", 94) == 0,
          "interleaved P=2 M=4 rank 0:\n%s", t);
    free(t);
    schedule_free(&s);
}

// hand-written schedules in dev/test/schedules/ load, validate, and mean what they say
static void test_schedule_files(void) {
    Schedule s, ref;
    char err[2048];
    int rc = schedule_load_file("dev/test/schedules/gpipe_p2_m2.txt", &s, err, sizeof(err));
    CHECK(rc == 0, "gpipe file: %s", err);
    if (rc == 0) {
        schedule_build("gpipe", 2, 2, &ref);
        CHECK(same_actions(&s, &ref), "gpipe file differs from the builder");
        schedule_free(&ref);
        schedule_free(&s);
    }
    rc = schedule_load_file("dev/test/schedules/zbh1_p2_m4.txt", &s, err, sizeof(err));
    CHECK(rc == 0 && s.P == 2 && s.S == 2 && s.M == 4, "zbh1 file: %s", err);
    if (rc == 0) {
        SimResult res;
        simulate_share(&s, &res);
        CHECK(res.peak_inflight[0] == 2 && res.peak_inflight[1] == 2 && res.bubble < 0.2, "zbh1 file: stash %d %d bubble %g",
              res.peak_inflight[0], res.peak_inflight[1], res.bubble);
        sim_result_free(&res);
        schedule_free(&s);
    }
    rc = schedule_load_file("dev/test/schedules/v_p2_m2.csv", &s, err, sizeof(err));
    CHECK(rc == 0 && s.P == 2 && s.S == 4 && s.stage_rank[0] == 0 && s.stage_rank[1] == 1 && s.stage_rank[2] == 1 &&
          s.stage_rank[3] == 0, "V csv file: %s", err);
    if (rc == 0) schedule_free(&s);
}

// writes text to a file and loads it, expecting an error that names the file and contains want
static void expect_bad_file(const char* what, const char* text, size_t len, const char* want) {
    const char* path = "/tmp/test_schedule_bad.txt";
    FILE* f = fopen(path, "wb");
    if (!f) { CHECK(0, "cannot write %s", path); return; }
    fwrite(text, 1, len, f);
    fclose(f);
    Schedule s;
    char err[2048];
    int rc = schedule_load_file(path, &s, err, sizeof(err));
    CHECK(rc != 0 && strncmp(err, path, strlen(path)) == 0 && strstr(err, want), "%s: want \"%s\", got rc=%d \"%s\"", what,
          want, rc, err);
    if (rc == 0) schedule_free(&s);
    remove(path);
}
#define BAD_FILE(what, text, want) expect_bad_file(what, text, sizeof(text) - 1, want)

static void test_bad_files(void) {
    BAD_FILE("missing action", "0F0 0F1 0I0 0W0 0I1\n", "'0I1' without its '0W1'");
    BAD_FILE("duplicated action", "0F0 0F1 0B0 0B1 0B1\n", "duplicate action: rank 0 has '0B1' twice");
    BAD_FILE("misordered weight gradients", "# one rank\n0F0 0F1 0I0 0I1 0W1 0W0\n", "increasing micro-batch order");
    BAD_FILE("the line of the rank", "# one rank\n0F0 0F1 0I0 0I1 0W1 0W0\n", "(rank 0 is line 2)");
    BAD_FILE("deadlock",
             "0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n"
             "1RECV_F0 1F0 1B0 1SEND_B0 1RECV_F1 1F1 1B1 1SEND_B1\n",
             "deadlock with blocking send/recv");
    BAD_FILE("stage with no rank", "0F0 0B0\n2F0 2B0\n", "stage 1 has no rank");
    BAD_FILE("stage on two ranks", "0F0 0B0 1F0\n1B0\n", "line 2, token 1 '1B0': stage 1 already runs on rank 0 (line 1)");
    BAD_FILE("unknown token", "# P=1\n\n0F0 0X0 0B0\n", "line 3, token 2 '0X0': unknown action type");
    BAD_FILE("huge numbers", "1000000F1000000\n", "line 1, token 1 '1000000F1000000': stage number too large");
    BAD_FILE("huge micro-batch", "0F0 0F99999999999999999999\n", "token 2 '0F99999999999999999999': micro-batch number too large");
    BAD_FILE("NUL byte", "0F0 0B0\n0F1\0 0B1\n", "line 2: NUL byte");
    BAD_FILE("compute that never completes", "0F0 0B0\n1B0 1F0\n", "rank 1 stuck at #0 '1B0'");
    Schedule s;
    char err[512];
    int rc = schedule_load_file("/nonexistent/dir/x.txt", &s, err, sizeof(err));
    CHECK(rc != 0 && strstr(err, "/nonexistent/dir/x.txt: cannot open"), "missing file: %s", err);
}

static void test_compare(void) {
    ScheduleEstimate e[SCHEDULE_NUM_BUILDERS];
    StageCosts c[4] = {{1, 2, 1, 1}, {1, 2, 1, 1}, {1, 2, 1, 1}, {1, 2, 1, 1}};
    int best = schedule_compare(2, 8, c, 0.0, e);
    CHECK(best >= 0 && e[best].step < e[1].step && strcmp(e[1].name, "1f1b") == 0, "compare: best %d", best);
    CHECK(fabs(e[1].step - 27) < 1e-9 && fabs(e[1].stash - 2) < 1e-9 && fabs(e[0].stash - 8) < 1e-9,
          "1f1b/gpipe estimates %g %g %g", e[1].step, e[1].stash, e[0].stash);
    CHECK(fabs(e[3].stash - e[1].stash) < 1e-9, "zbh1 stash %g vs 1f1b %g", e[3].stash, e[1].stash);
    best = schedule_compare(4, 6, c, 0.0, e);
    CHECK(!e[2].ok && e[5].ok, "interleaved with M=6 P=4 should be refused");
    FILE* f = tmpfile();
    if (f) {
        schedule_compare_print(4, 6, c, 0.0, f);
        rewind(f);
        char buf[2048];
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = 0;
        fclose(f);
        CHECK(strstr(buf, "zbv") && strstr(buf, "needs M a multiple of P") && strstr(buf, "<- fastest"), "table:\n%s", buf);
    }
    // a slow last stage (the LM head) weighs on the ZB-V and interleaved stages at the same depth
    StageCosts h[2] = {{1, 2, 1, 1}, {2, 4, 2, 2}};
    schedule_compare(2, 4, h, 0.0, e);
    Schedule s;
    SimResult res;
    schedule_build("zbv", 2, 4, &s);
    StageCosts v[4] = {{0.5, 1, 0.5, 0.5}, {0.5, 1, 0.5, 0.5}, {1, 2, 1, 1}, {1, 2, 1, 1}};
    schedule_simulate_stages(&s, v, 0.0, &res);
    CHECK(fabs(e[5].step - res.makespan) < 1e-9, "zbv with a slow last stage: compare %g, simulate %g", e[5].step,
          res.makespan);
    sim_result_free(&res);
    schedule_free(&s);
}

// smallest achievable max stage cost by brute force over all splits with >= 1 block per stage
static double brute_minmax(int L, int P, const PartitionCosts* c, int s, int left) {
    int first = 2 * (L - left);  // in half-layer units
    if (s == P - 1) return left >= 1 ? partition_stage_cost(c, P, s, first, 2 * left) : 1e300;
    double best = 1e300;
    for (int k = 1; k <= left - (P - 1 - s); k++) {
        double cs = partition_stage_cost(c, P, s, first, 2 * k), rest = brute_minmax(L, P, c, s + 1, left - k);
        double v = cs > rest ? cs : rest;
        if (v < best) best = v;
    }
    return best;
}

static void test_partition(void) {
    int n[64], first[64];
    char err[512], buf[256];
    // d12 with the padded GPT-2 vocabulary: the head is ~4.5 blocks, the last stage gets fewer
    PartitionCosts c = partition_gpt2_costs(4, 1024, 768, 12, 50304, NULL);
    CHECK(fabs(c.head / c.layer - 4.466) < 1e-3, "d12 head/block ratio %g", c.head / c.layer);
    int rc = partition_balance(12, 4, &c, n, first, err, sizeof(err));
    CHECK(rc == 0 && strcmp(partition_format(n, 4, buf, sizeof(buf)), "3,4,4,1") == 0, "d12 P=4: %s %s", buf, err);
    CHECK(first[0] == 0 && first[1] == 6 && first[2] == 14 && first[3] == 22, "d12 first units %d %d %d %d", first[0],
          first[1], first[2], first[3]);
    CHECK(n[3] < n[1] && n[3] < n[2], "last stage should get fewer layers than middle stages");
    rc = partition_balance(12, 2, &c, n, first, err, sizeof(err));
    CHECK(rc == 0 && n[0] == 16 && n[1] == 8, "d12 P=2: %s", partition_format(n, 2, buf, sizeof(buf)));
    // d24 (C=1024, 24 blocks) and d48 (C=1600) on 8 stages: last stage lighter, every stage >= 1
    PartitionCosts c24 = partition_gpt2_costs(4, 1024, 1024, 16, 50304, NULL), c48 = partition_gpt2_costs(4, 1024, 1600, 25, 50304, NULL);
    const PartitionCosts* cs[2] = {&c24, &c48};
    int Ls[2] = {24, 48};
    for (int q = 0; q < 2; q++) {
        rc = partition_balance(Ls[q], 8, cs[q], n, first, err, sizeof(err));
        int sum = 0, minl = 1000;
        for (int s = 0; s < 8; s++) { sum += n[s]; if (n[s] < minl) minl = n[s]; }
        CHECK(rc == 0 && sum == 2 * Ls[q] && minl >= 2 && n[7] < n[3], "L=%d P=8: %s", Ls[q],
              partition_format(n, 8, buf, sizeof(buf)));
    }
    // memory traffic (llmc/partition.h): with a balance of 0 only the flops differ, flash attention's being
    // 7/12 of the materialized ones; with the CPU's balance the materialized scores add traffic that grows
    // with T^2, so a layer's cost per token grows faster with T than flash attention's
    const PartitionMachine flops_flash = {0.0, 2.0, 1};
    PartitionCosts ff = partition_gpt2_costs(1, 1024, 768, 12, 50304, &flops_flash);
    double att = 12.0 * 1024.0 * 1024.0 * 768.0, dense = 72.0 * 1024.0 * 768.0 * 768.0;
    CHECK(fabs(ff.layer - dense - att * 7.0 / 12.0) < 1e-6 * ff.layer && fabs(ff.head - c.head / 4.0) < 1e-6 * ff.head &&
          ff.encoder == 0.0, "flops of flash attention: layer %g, head %g", ff.layer, ff.head);
    double grow_cpu = 0, grow_gpu = 0;
    for (int k = 0; k < 2; k++) {
        int T = k ? 8192 : 1024;
        PartitionCosts pc = partition_gpt2_costs(1, T, 768, 12, 50304, &PARTITION_CPU);
        PartitionCosts pg = partition_gpt2_costs(1, T, 768, 12, 50304, &PARTITION_GPU);
        PartitionCosts pf = partition_gpt2_costs(1, T, 768, 12, 50304, NULL);
        CHECK(pc.layer > pf.layer && pc.head > pf.head && pc.encoder > 0, "T=%d: the CPU's traffic adds to every part", T);
        grow_cpu = k ? pc.layer / T / grow_cpu : pc.layer / T;
        grow_gpu = k ? pg.layer / T / grow_gpu : pg.layer / T;
    }
    CHECK(grow_cpu > grow_gpu, "cost per token from T=1024 to 8192: materialized x%.3f, flash x%.3f", grow_cpu, grow_gpu);
    // and the split follows: d12 at T=8192 over 4 stages, flops only (materialized attention) gives the LM-head
    // stage a second layer, the CUDA trainer's model (flash attention's half the flops, no scores in memory) one
    PartitionCosts long_f = partition_gpt2_costs(1, 8192, 768, 12, 50304, NULL);
    PartitionCosts long_g = partition_gpt2_costs(1, 8192, 768, 12, 50304, &PARTITION_GPU);
    char buf2[256];
    partition_balance(12, 4, &long_f, n, first, err, sizeof(err));
    partition_format(n, 4, buf, sizeof(buf));
    partition_balance(12, 4, &long_g, n, first, err, sizeof(err));
    partition_format(n, 4, buf2, sizeof(buf2));
    CHECK(strcmp(buf, "3,3,4,2") == 0 && strcmp(buf2, "3,4,4,1") == 0, "d12 T=8192 P=4: flops only %s, GPU model %s", buf, buf2);
    // uniform costs: even split; leftovers go to later stages
    PartitionCosts u;
    u.layer = 1; u.attention = 0.5; u.encoder = 0; u.head = 0;
    rc = partition_balance(12, 4, &u, n, first, err, sizeof(err));
    CHECK(rc == 0 && strcmp(partition_format(n, 4, buf, sizeof(buf)), "3,3,3,3") == 0, "uniform 12/4: %s", buf);
    rc = partition_balance(13, 4, &u, n, first, err, sizeof(err));
    CHECK(rc == 0 && strcmp(partition_format(n, 4, buf, sizeof(buf)), "3,3,3,4") == 0, "uniform 13/4: %s", buf);
    rc = partition_balance(4, 4, &c, n, first, err, sizeof(err));
    CHECK(rc == 0 && strcmp(partition_format(n, 4, buf, sizeof(buf)), "1,1,1,1") == 0, "L=P: %s", buf);
    rc = partition_balance(12, 1, &c, n, first, err, sizeof(err));
    CHECK(rc == 0 && n[0] == 24 && first[0] == 0, "P=1: %d", n[0]);
    // optimality against brute force on small shapes, with a heavy encoder too
    int bad = 0;
    PartitionCosts e = c;
    e.encoder = 2.5 * c.layer;
    for (int which = 0; which < 2; which++) {
        const PartitionCosts* pc = which ? &e : &c;
        for (int L = 1; L <= 12; L++)
            for (int P = 1; P <= L && P <= 6; P++) {
                if (partition_balance(L, P, pc, n, first, err, sizeof(err)) != 0) { bad++; continue; }
                double mx = 0;
                int sum = 0;
                for (int s = 0; s < P; s++) {
                    double v = partition_stage_cost(pc, P, s, first[s], n[s]);
                    if (v > mx) mx = v;
                    sum += n[s];
                    if (n[s] < 2 || n[s] % 2 || first[s] != sum - n[s]) bad++;
                }
                if (sum != 2 * L || fabs(mx - brute_minmax(L, P, pc, 0, L)) > 1e-6 * mx) bad++;
            }
    }
    CHECK(bad == 0, "balance not optimal / inconsistent in %d cases", bad);
    // errors of the default split
    rc = partition_balance(3, 4, &c, n, first, err, sizeof(err));
    CHECK(rc != 0 && strstr(err, "P=4 pipeline stages but only L=3 layers") && strstr(err, "-pl"), "P > L: %s", err);
    rc = partition_balance(3, 0, &c, n, first, err, sizeof(err));
    CHECK(rc != 0 && strstr(err, "P=0"), "P = 0: %s", err);

    // explicit lists (-pl)
    rc = partition_parse("3,3,3,3", 12, 4, n, first, err, sizeof(err));
    CHECK(rc == 0 && n[2] == 6 && first[3] == 18, "parse 3,3,3,3: %s", err);
    rc = partition_parse(" 5, 4 ,2,1", 12, 4, n, first, err, sizeof(err));
    CHECK(rc == 0 && n[0] == 10 && n[3] == 2 && first[3] == 22, "parse uneven with spaces: %s", err);
    rc = partition_parse("0,6,6,0", 12, 4, n, first, err, sizeof(err));
    CHECK(rc == 0 && n[0] == 0 && first[1] == 0 && first[3] == 24, "parse with empty stages: %s", err);
    // halves of a layer: a boundary between a layer's attention (even unit) and its MLP (odd unit)
    rc = partition_parse("3.5,8.5", 12, 2, n, first, err, sizeof(err));
    CHECK(rc == 0 && n[0] == 7 && n[1] == 17 && first[1] == 7 && strcmp(partition_format(n, 2, buf, sizeof(buf)), "3.5,8.5") == 0,
          "parse 3.5,8.5: %s %s", buf, err);
    rc = partition_parse("0.5, 2.0,0,1.5", 4, 4, n, first, err, sizeof(err));
    CHECK(rc == 0 && n[0] == 1 && n[1] == 4 && n[2] == 0 && n[3] == 3 && first[3] == 5, "parse halves and .0: %s", err);
    // the cost of a stage of halves: its attention halves (even units) and MLP halves (odd) weigh differently
    PartitionCosts h = {3.0, 1.0, 0.5, 4.0};  // layer, of it attention, encoder, head
    CHECK(partition_stage_cost(&h, 2, 0, 0, 1) == 1.0 + 0.5 && partition_stage_cost(&h, 2, 1, 1, 1) == 2.0 + 4.0 &&
              partition_stage_cost(&h, 3, 1, 3, 4) == 2 * 1.0 + 2 * 2.0 && partition_stage_cost(&h, 3, 1, 4, 3) == 2 * 1.0 + 2.0,
          "half-layer stage costs");
    rc = partition_parse("1,0,0,0,2", 3, 5, n, first, err, sizeof(err));
    CHECK(rc == 0, "explicit list with P > L: %s", err);
    struct { const char* spec; int L, P; const char* want; } bad_specs[] = {
        {"3,3,3", 12, 4, "has 3 entries but there are P=4 pipeline stages"},
        {"3,3,3,3,0", 12, 4, "has 5 entries but there are P=4"},
        {"3,3,3,4", 12, 4, "sums to 13 layers but the model has L=12"},
        {"3,x,3,3", 12, 4, "entry 2 'x' is not a number of layers"},
        {"3,3.5,3,3", 12, 4, "sums to 12.5 layers but the model has L=12"},
        {"3,3.25,3,2.75", 12, 4, "entry 2 '3.25' is not a number of layers (whole, or with a half: 3 or 3.5)"},
        {"3,.5,3,5.5", 12, 4, "entry 2 '.5' is not a number of layers"},
        {"3,-1,5,5", 12, 4, "entry 2 '-1' is negative"},
        {"3,,3,3", 12, 4, "entry 2 is empty"},
        {"3,3,3,3,", 12, 4, "entry 5 is empty"},
        {"", 12, 4, "empty layer list"},
        {"1,1,1", 2, 3, "sums to 3 layers but the model has L=2"},
    };
    for (size_t q = 0; q < sizeof(bad_specs) / sizeof(bad_specs[0]); q++) {
        rc = partition_parse(bad_specs[q].spec, bad_specs[q].L, bad_specs[q].P, n, first, err, sizeof(err));
        CHECK(rc != 0 && strstr(err, bad_specs[q].want), "-pl '%s': want \"%s\", got rc=%d \"%s\"", bad_specs[q].spec,
              bad_specs[q].want, rc, err);
    }
    rc = partition_parse(NULL, 12, 4, n, first, err, sizeof(err));
    CHECK(rc != 0 && strstr(err, "empty layer list"), "NULL spec: %s", err);
}

// Where the tied wte's head half goes out early (schedule_tied_wte_post): after every message of the list on
// both end ranks (so the pair cannot reorder what the validator proved), after the LM head's last weight
// gradient on the head's rank, and with compute still to run on the embedding's rank (the transfer overlaps
// it); nowhere when one rank holds both ends (P = 1, the V placements) or on a middle rank.
static void test_tied_wte_post(void) {
    const char* names[] = {"gpipe", "1f1b", "interleaved", "zbh1", "zbh2", "zbv", "zbc", "zbcv"};
    int count = 0, bad_place = 0, no_overlap = 0, bad_none = 0;
    for (int k = 0; k < 8; k++)
        for (int P = 1; P <= 4; P++) {
            Schedule s;
            if (schedule_build(names[k], P, 8, &s) != 0) continue;
            int head = s.S - 1, ends_apart = s.stage_rank[0] != s.stage_rank[head];
            for (int r = 0; r < P; r++) {
                int at = schedule_tied_wte_post(&s, r), end = r == s.stage_rank[0] || r == s.stage_rank[head];
                if (!ends_apart || !end) { bad_none += at != -1; continue; }
                count++;
                int last_compute = -1;
                for (int i = 0; i < s.ranks[r].n; i++) {
                    const Action* a = &s.ranks[r].a[i];
                    if (pp_is_compute(a->type)) last_compute = i;
                    int must_precede = !pp_is_compute(a->type) || (a->stage == head && pp_is_bwd_weight(a->type));
                    if (must_precede && i > at && bad_place++ < 5) printf("  %s P=%d rank %d: post at %d before action %d\n", names[k], P, r, at, i);
                }
                if (r == s.stage_rank[0] && last_compute <= at && no_overlap++ < 5) printf("  %s P=%d: no compute after the post\n", names[k], P);
            }
            schedule_free(&s);
        }
    CHECK(count == 2 * 17 && bad_place == 0, "tied wte post: %d end ranks, %d placed too early", count, bad_place);
    CHECK(no_overlap == 0 && bad_none == 0, "tied wte post: %d without overlap, %d where nothing travels", no_overlap, bad_none);
}

int main(void) {
    test_builders();
    test_build_errors();
    test_known_text();
    test_broken();
    test_parse();
    test_load_file();
    test_simulator();
    test_all_builders();
    test_costed();
    test_tied_wte_post();
    test_auto();
    test_placement();
    test_schedule_files();
    test_bad_files();
    test_compare();
    test_partition();
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
