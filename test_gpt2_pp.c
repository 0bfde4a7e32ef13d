/*
Checks the CPU trainer against the NumPy reference (dev/reference/gpt2_ref.py, float64; file format in
dev/reference/FORMAT.md): llm.c's random init, every activation of every layer of every micro-batch, the
logits, per-position losses, the loss, all 16 gradient tensors, the grad norm, and the parameters and loss
after each of K optimizer steps.

  ./test_gpt2_pp_cpu build/ref_a.bin [P schedule]

With P > 1 the model is split into P stages under the given schedule (gpipe | 1f1b), each rank a thread of
this process as in the trainer: every rank runs the test's steps (the gathers and all-reduces are
collective) and rank 0 checks. The per-layer activations are checked only at P = 1, everything from the loss
on at any P. Also checked: the stash each stage prints is the bytes it allocates, for several shapes and P.

Tolerances. The trainer computes in fp32 (unit roundoff u = 2^-24 ~ 6e-8) against float64. A dot product of
length K carries a relative error of at most ~K·u (typically ~sqrt(K)·u), and errors compound through L layers
and the softmax. For the tiny test models (K <= 4C = 256, L <= 4) that bounds errors near 1e-5 relative, so:
  - activations, logits, losses: |c - r| <= 1e-5 + 1e-4·|r|   (10x headroom over the measured ~1e-6)
  - gradients: max|c - r| <= 1e-4 · max|r| per tensor. Gradients are sums over all B·T·M positions of
    products of activations, so compare against the tensor's scale, not element by element (an element
    that cancels to ~0 in float64 has no meaningful relative error).
  - parameters after each AdamW step: a step moves a weight by lr·m̂/(sqrt(v̂)+eps) + lr·wd·p. Where |g| is
    far above eps the normalised update is insensitive to the gradient's relative error; where |g| is within
    a few eps (1e-8) of zero, an fp32 gradient error of ~1e-10 moves it by up to ~1e-2·lr (measured worst:
    1.2e-2·lr after step 0 on config A). We allow |c - r| <= 5e-2·lr·(steps so far) + 1e-5·|r|.
  - llm.c's init is the same float32 arithmetic as the reference's, up to libm's last-ulp differences in
    sinf/cosf/logf: |c - r| <= 1e-6·max(|r|, 0.02).
Each tolerance is stated once, in the table below, beside what it checks.
*/
#define TESTING
#include "train_gpt2_pp.c"

#include "dev/test/reference.h"

// compares one micro-batch's forward activations with the reference, which stores them in FORMAT.md order
static void check_activations(RefFile* rf, Activations* a, int mb) {
    const GPT2Config* c = &rf->config;
    size_t BT = (size_t)rf->B * rf->T, C = c->channels, NH = c->num_heads, T = rf->T;
    const float atol = 1e-5f, rtol = 1e-4f;
    char name[128];
    float* r = ref_read(rf, BT * C);
    snprintf(name, sizeof(name), "mb%d encoded", mb);
    check_close(name, a->x, r, BT * C, atol, rtol);
    free(r);
    struct { const char* name; float* base; size_t n; } per_layer[15] = {
        {"ln1", a->ln1, BT * C}, {"ln1_mean", a->ln1_mean, BT}, {"ln1_rstd", a->ln1_rstd, BT},
        {"qkv", a->qkv, BT * 3 * C}, {"att", a->att, rf->B * NH * T * T}, {"atty", a->atty, BT * C},
        {"attproj", a->attproj, BT * C}, {"residual2", a->residual2, BT * C}, {"ln2", a->ln2, BT * C},
        {"ln2_mean", a->ln2_mean, BT}, {"ln2_rstd", a->ln2_rstd, BT}, {"fch", a->fch, BT * 4 * C},
        {"fch_gelu", a->fch_gelu, BT * 4 * C}, {"fcproj", a->fcproj, BT * C}, {"residual3", a->residual3, BT * C}};
    for (int l = 0; l < c->num_layers; l++) {
        for (int k = 0; k < 15; k++) {
            size_t n = per_layer[k].n;
            r = ref_read(rf, n);
            snprintf(name, sizeof(name), "mb%d layer %d %s", mb, l, per_layer[k].name);
            check_close(name, per_layer[k].base + l * n, r, n, atol, rtol);
            free(r);
        }
    }
    struct { const char* name; float* base; size_t n; } head[3] = {
        {"lnf", a->lnf, BT * C}, {"lnf_mean", a->lnf_mean, BT}, {"lnf_rstd", a->lnf_rstd, BT}};
    for (int k = 0; k < 3; k++) {
        r = ref_read(rf, head[k].n);
        snprintf(name, sizeof(name), "mb%d %s", mb, head[k].name);
        check_close(name, head[k].base, r, head[k].n, atol, rtol);
        free(r);
    }
    // logits: the reference stores the first V of Vp columns
    int V = c->vocab_size, Vp = c->padded_vocab_size;
    r = ref_read(rf, BT * V);
    float* mine = (float*)malloc_check(BT * V * sizeof(float));
    for (size_t i = 0; i < BT; i++) { memcpy(mine + i * V, a->logits + i * Vp, V * sizeof(float)); }
    snprintf(name, sizeof(name), "mb%d logits", mb);
    check_close(name, mine, r, BT * V, atol, rtol);
    free(mine);
    free(r);
    r = ref_read(rf, BT);
    snprintf(name, sizeof(name), "mb%d losses", mb);
    check_close(name, a->losses, r, BT, atol, rtol);
    // At the full GPT-2 vocabulary the softmax denominator is a sum of ~50k terms. Summed in double, a loss
    // keeps only the rounding of one logf and two subtractions: a few u = 2^-24 relative (measured 1.4u at
    // L=1 C=32); summed in float it is off by ~13u. 4u tells the two apart.
    if (V > 50000) {
        snprintf(name, sizeof(name), "mb%d losses, full vocabulary (4u)", mb);
        check_close(name, a->losses, r, BT, 0.0f, 4.0f / (1 << 24));
    }
    free(r);
}

static void check_params(RefFile* rf, Pipeline* pp, const float* ref, const char* when, float lr_steps) {
    float* mine = (float*)malloc_check(rf->N * sizeof(float));
    pipeline_gather(pp, BUF_PARAMS, mine, 0);
    size_t off = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS && pp->rank == 0; i++) {
        size_t n = tensor_global_size(&rf->config, i);
        char name[160];
        snprintf(name, sizeof(name), "%s %s", when, param_names[i]);
        check_close(name, mine + off, ref + off, n, 5e-2f * lr_steps, 1e-5f);
        off += n;
    }
    free(mine);
}

// what every rank shares: the reference (read by rank 0 as the test goes), the batches, the split
typedef struct {
    RefFile* rf;
    int P;
    const char* schedule_name;
    int* inputs;
    int* targets;
    float* params0;
    Mailboxes* boxes;
} TestRun;

typedef struct { TestRun* run; int rank; } TestRank;

static void* test_rank(void* arg) {
    TestRun* run = ((TestRank*)arg)->run;
    int rank = ((TestRank*)arg)->rank, P = run->P, checker = rank == 0;
    RefFile* rf = run->rf;
    const GPT2Config* c = &rf->config;
    size_t N = rf->N, BT = (size_t)rf->B * rf->T;
    Transport tp = transport_job(rank, P, 60.0f, run->boxes), dp = transport_group(&tp, rank, P, 1);
    TrainArgs args;
    train_args_default(&args, 0.0f);
    args.B = rf->B;
    args.T = rf->T;
    args.M = rf->M;
    args.schedule_name = run->schedule_name;
    Pipeline pp;
    pipeline_init(&pp, c, &args, &tp, &dp, &tp);
    pp.opt = (OptimizerConfig){rf->lr, rf->beta1, rf->beta2, rf->eps, rf->weight_decay, rf->grad_clip};

    // llm.c's random init must reproduce the reference's initial parameters
    for (int l = 0; l < pp.num_local; l++) {
        stage_random_init(c, &pp.local[l].stage.layout, pp.local[l].stage.params_memory);
    }
    float* mine = (float*)malloc_check(N * sizeof(float));
    pipeline_gather(&pp, BUF_PARAMS, mine, 0);
    size_t off = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS && checker; i++) {
        size_t n = tensor_global_size(c, i);
        char name[64];
        snprintf(name, sizeof(name), "init %s", param_names[i]);
        check_close(name, mine + off, run->params0 + off, n, 2e-8f, 1e-6f);
        off += n;
    }
    free(mine);
    // from here on use the reference's parameters exactly, so differences come from the math only
    pipeline_scatter(&pp, BUF_PARAMS, run->params0);

    // forward only, micro-batch by micro-batch: every activation (one stage holds them all at P = 1)
    Stage* st = &pp.local[0].stage;
    for (int m = 0; m < rf->M && pp.S == 1; m++) {
        Activations* a = &st->stash[0];  // checked right away, so one slot serves every micro-batch
        memcpy(a->inputs, run->inputs + m * BT, BT * sizeof(int));
        memcpy(a->targets, run->targets + m * BT, BT * sizeof(int));
        stage_forward(st, a, rf->B, rf->T, 1, 0.0f);
        check_activations(rf, a, m);
    }
    float *ref_loss = NULL, *ref_grads = NULL, *ref_norm = NULL;
    if (checker) {
        if (pp.S > 1) { ref_skip_activations(rf); }
        ref_loss = ref_read(rf, 1);
        ref_grads = ref_read(rf, N);
        ref_norm = ref_read(rf, 1);
    }

    // K optimizer steps on the same micro-batches; the first also checks gradients and the grad norm
    FixedBatches fb = {run->inputs, run->targets, rf->M, 0};
    float* g = (float*)malloc_check(N * sizeof(float));
    for (int k = 0; k < rf->K; k++) {
        float* ref_step_loss = checker ? ref_read(rf, 1) : NULL;
        float* ref_params = checker ? ref_read(rf, N) : NULL;
        float loss = pipeline_forward_backward(&pp, next_fixed_batch, &fb);
        pipeline_sync_tied_wte(&pp);
        float norm = pipeline_grad_norm(&pp);
        if (k == 0) { pipeline_gather(&pp, BUF_GRADS, g, 0); }
        char name[128];
        if (checker) {
            snprintf(name, sizeof(name), "step %d loss %.7f vs %.7f", k, loss, ref_step_loss[0]);
            check(fabsf(loss - ref_step_loss[0]) <= 1e-5f + 1e-5f * fabsf(ref_step_loss[0]), name);
        }
        if (checker && k == 0) {
            snprintf(name, sizeof(name), "loss %.7f vs %.7f", loss, ref_loss[0]);
            check(fabsf(loss - ref_loss[0]) <= 1e-5f + 1e-5f * fabsf(ref_loss[0]), name);
            off = 0;
            for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
                size_t n = tensor_global_size(c, i);
                snprintf(name, sizeof(name), "grad %s", param_names[i]);
                check_scaled(name, g + off, ref_grads + off, n, 1e-4f);
                off += n;
            }
            snprintf(name, sizeof(name), "grad norm %.7f vs %.7f", norm, ref_norm[0]);
            check(fabsf(norm - ref_norm[0]) <= 1e-4f * ref_norm[0], name);
        }
        float clip = pp.opt.grad_clip;
        float scale = (clip > 0.0f && norm > clip) ? clip / norm : 1.0f;
        pp.step++;
        pp.adam_t++;
        pipeline_adamw(&pp, pp.opt.lr, scale);
        snprintf(name, sizeof(name), "after step %d", k);
        check_params(rf, &pp, ref_params, name, pp.opt.lr * (k + 1));
        free(ref_step_loss);
        free(ref_params);
    }
    free(g);
    free(ref_loss);
    free(ref_grads);
    free(ref_norm);
    pipeline_free(&pp);
    transport_free(&dp);
    transport_free(&tp);
    return NULL;
}

// The stash the trainer prints (activations_bytes, per slot) is what stage_init allocates, for several
// shapes, every stage of several splits, and the slot counts of both schedules.
static void check_stash_accounting(void) {
    const char* models[3] = {"d4", "d2:c48:h3", "d3:c64:h2"};
    int shapes[3][2] = {{8, 64}, {3, 24}, {1, 1}};
    for (int i = 0; i < 3; i++) {
        GPT2Config c = config_from_descriptor(models[i]);
        for (int P = 1; P <= 3 && P <= c.num_layers; P++) {
            int layers[3], first[3];  // half-layer units
            char err[256];
            PartitionCosts costs = partition_gpt2_costs(shapes[i][0], shapes[i][1], c.channels, c.num_heads, c.padded_vocab_size,
                                                       PIPELINE_MACHINE);
            if (partition_balance(c.num_layers, P, &costs, layers, first, err, sizeof(err)) != 0) { fatal("%s", err); }
            if (P > 1 && i != 1) { layers[0]++; layers[1]--; }  // half a layer: stage 0 ends on an attention half,
                                                                 // stage 1 starts on an MLP half
            for (int s = 0; s < P; s++) {
                StageLayout lay = pipeline_stage_layout(&c, layers, P, s);
                Stage st;
                int slots = 1 + (s + i) % 3;
                int split = (s + i) % 2;  // with and without what a split backward keeps for W
                int rc = (s + P) % 3;     // and with each recompute mode
                stage_init(&st, &c, &lay, shapes[i][0], shapes[i][1], slots, split, rc, lay.num_parameters);
                char name[200];
                size_t printed = slots * activations_bytes(&c, &lay, shapes[i][0], shapes[i][1], split,
                                                           rc ? SLOT_PART : ALL_PARTS);
                size_t work = rc ? activations_bytes(&c, &lay, shapes[i][0], shapes[i][1], split, WORK_PART) : 0;
                snprintf(name, sizeof(name), "stash %s B=%d T=%d P=%d stage %d split %d -rc %d: printed %zu + %zu bytes, "
                         "allocated %zu + %zu", models[i], shapes[i][0], shapes[i][1], P, s, split, rc, printed, work,
                         st.stash_bytes, st.work_bytes);
                check(printed == st.stash_bytes && work == st.work_bytes, name);
                stage_free(&st);
            }
        }
    }
}

int main(int argc, char** argv) {
    if (argc != 2 && argc != 4) {
        fatal("usage: %s <reference file from dev/reference/gpt2_ref.py> [P schedule]", argv[0]);
    }
    int P = argc == 4 ? parse_int_flag("P", argv[2]) : 1;
    const char* schedule_name = argc == 4 ? argv[3] : "gpipe";
    RefFile rf;
    ref_open(&rf, argv[1]);
    const GPT2Config* c = &rf.config;
    size_t BT = (size_t)rf.B * rf.T;
    printf("reference %s: L=%d C=%d NH=%d V=%d Vp=%d maxT=%d, B=%d T=%d M=%d K=%d\n", argv[1], c->num_layers,
           c->channels, c->num_heads, c->vocab_size, c->padded_vocab_size, c->max_seq_len, rf.B, rf.T, rf.M, rf.K);
    TestRun run = {&rf, P, schedule_name, NULL, NULL, NULL, mailboxes_new(P)};
    run.inputs = (int*)malloc_check(rf.M * BT * sizeof(int));
    run.targets = (int*)malloc_check(rf.M * BT * sizeof(int));
    fread_check(run.inputs, sizeof(int), rf.M * BT, rf.f, rf.path);
    fread_check(run.targets, sizeof(int), rf.M * BT, rf.f, rf.path);
    run.params0 = ref_read(&rf, rf.N);
    printf("P=%d stages, schedule %s, ranks as threads\n", P, schedule_name);

    TestRank* ranks = (TestRank*)malloc_check(P * sizeof(TestRank));
    pthread_t* threads = (pthread_t*)malloc_check(P * sizeof(pthread_t));
    for (int r = 0; r < P; r++) {
        ranks[r] = (TestRank){&run, r};
        if (pthread_create(&threads[r], NULL, test_rank, &ranks[r]) != 0) { fatal("cannot start rank %d", r); }
    }
    for (int r = 0; r < P; r++) { pthread_join(threads[r], NULL); }
    check_stash_accounting();

    free(ranks);
    free(threads);
    mailboxes_free(run.boxes, P);
    free(run.params0);
    free(run.inputs);
    free(run.targets);
    fclose(rf.f);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
