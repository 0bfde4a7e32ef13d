/*
Checks the CUDA trainer (train_gpt2_pp.cu) end to end: against the NumPy reference, across pipeline depths and
schedules, and the fp16 loss scaler's overflow path. Ranks are threads of this process: with P GPUs one GPU
each through NCCL, with fewer every stage on GPU 0 (device copies between them). Without a GPU it runs under
the SIMT CPU runtime (make test builds it for FP32, BF16 and FP16), which models SIMT_DEVICES devices (1 by
default: every P on one device; 2 or 4: the NCCL path).

  ./test_gpt2_pp build/ref_a.bin

1. Reference: for P = 1, 2 and 4 stages (P <= L) under GPipe and 1F1B, K steps on the reference's fixed
   micro-batches: the loss of every step, all 16 gradient tensors of the first step, the grad norm, and the
   parameters after every AdamW step.
2. Equivalence: the losses and the final parameters (fp32 master weights) are bitwise identical for every
   (P, schedule, launch mode): the kernels reduce in fixed orders, every stage sees the same shapes at any
   depth, and every GEMM operand the same alignment. Then the split-backward and several-stages-per-rank
   builders (ZB-H1, ZB-H2, interleaved, ZB-V; which P and why in main) against the same references and
   bitwise against 1F1B at the same P, stage boundaries inside a layer (-pl with halves) bitwise against
   P=1, and activation recomputation (-rc except_last, always) bitwise against the same P without it. Each run
   also checks a step without stalls (step_api_ok: no
   allocation, one host wait, messages off the compute stream, no cuBLASLt plan built after the first step),
   that a stash slot (under -rc also the work copy) allocates what the plan prints and that each stage's peak
   use of its slots is the schedule's count.
3. Overflow (when the loss scaler is on: FP16 by default; forced on here in every precision): an inf
   injected into one stage's gradient makes every rank skip the step and halve the scale, and leaves the
   parameters and AdamW moments byte-identical; the next step trains normally.

Tolerances, per precision, and why (u = unit roundoff of floatX: fp32 2^-24, fp16 2^-11, bf16 2^-8).
  FP32: the CPU test's: loss 1e-5 relative; gradients max|c-r| <= 1e-4·max|r| per tensor; parameters
        5e-2·lr per step (Adam's normalisation amplifies gradients within rounding of 0, see test_gpt2_pp.c).
  BF16/FP16: every activation and activation gradient is rounded to floatX after each kernel.
    loss: u/4 relative. Each token's loss is off by ~u·|logit|, with random signs, and the loss averages
        B·T·M of them. Measured on config A: 2e-5 relative in BF16 (0.005u), 1.7e-5 in FP16 (0.03u).
    gradients: 8u·max|r| per tensor. A gradient element sums many products of rounded activations and
        rounded upstream gradients; the worst element lands a few u of the tensor's scale away. Measured: at
        most 2.2u (BF16, wte) and 1.9u (FP16, wte).
    parameters: AdamW moves each weight by about lr per step whatever the gradient's size (m/sqrt(v) ~ sign(g)
        early on), so a gradient whose sign is within rounding flips the update: |c-r| <= 2·lr per step. The
        mean error over a tensor must stay below 0.05·lr per step (the signs are almost all right; measured at
        most 0.01·lr), leaving out the key biases: their exact gradient is 0 (a shift of every key by the same
        vector adds the same amount to all of a query's scores, which the softmax ignores), so float64 leaves
        them alone while a low-precision run pushes them by ±lr on rounding noise.
*/
#define TESTING
#include "train_gpt2_pp.cu"
#include "dev/test/reference.h"
// defines: simt_api_counts, simt_api_counts_reset (zero counts under nvcc)
#include "dev/simt/simt_api.h"

#if PRECISION_FP32
#define UNIT_ROUNDOFF 5.96e-8f
#elif PRECISION_FP16
#define UNIT_ROUNDOFF 4.88e-4f
#else
#define UNIT_ROUNDOFF 3.91e-3f
#endif

// what one run (all ranks) produced, collected into whole-model buffers by the rank threads
typedef struct {
    const RefFile* rf;
    const float* params0;
    const int* inputs;
    const int* targets;
    int P;
    int D, zero;      // data-parallel replicas of the pipeline (each takes M/D of the reference's micro-batches), ZeRO-1
    const char* schedule;
    const char* layers;  // -pl: the split in layers, halves allowed (NULL: the trainer's balanced whole layers)
    int one_device;   // every stage on GPU 0 even when there are P GPUs
    int recompute;    // -rc: RC_NEVER, RC_EXCEPT_LAST, RC_ALWAYS
    float loss_scale;
    float* losses;    // (K)
    float* norms;     // (K)
    float* grads0;    // (N) first step's gradients, unscaled
    float* params;    // (K, N) after each step
    int overflow_ok;  // overflow test: every rank skipped, scale halved, state unchanged
    int do_overflow;
    int gelu_fusion;
    int api_ok;       // every step on every rank: step_api_ok
    int stash_ok;     // every stash slot allocated exactly what the plan prints, and each stage's peak use of
                      // them was the schedule's count (schedule_peak_inflight)
    int one_device_used;
} Run;

// copies a stage's slices into the whole-model buffer; wte only from stage 0, so threads never write the
// same memory
static void scatter_owned(const Pipeline* pp, const Stage* st, const float* local, float* global) {
    StageLayout lay = st->layout;
    if (!lay.has_embed) { lay.sizes[WTE] = 0; }
    size_t off = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        if (st->layout.sizes[i] == 0) { continue; }
        if (lay.sizes[i]) {
            size_t g = tensor_global_offset(&pp->config, i, tensor_is_per_layer(i) ? stage_tensor_layer_begin(&lay, i) : 0);
            memcpy(global + g, local + off, lay.sizes[i] * sizeof(float));
        }
        off += st->layout.sizes[i];
    }
}

// the bytes of this rank's optimizer-visible state: parameters, master weights, m, v (with the layout's
// padding) of each of its stages
static void* snapshot_state(Pipeline* pp, size_t* bytes) {
    cudaStream_t stream = pp->comm->stream;
    *bytes = 0;
    for (int l = 0; l < pp->num_local; l++) {
        *bytes += pp->local[l].stage.dl.total * (sizeof(floatX) + 3 * sizeof(float));
    }
    char* h = (char*)malloc_check(*bytes);
    char* at = h;
    for (int l = 0; l < pp->num_local; l++) {
        Stage* st = &pp->local[l].stage;
        size_t n = st->dl.total;
        cudaCheck(cudaMemcpyAsync(at, st->params_memory, n * sizeof(floatX), cudaMemcpyDeviceToHost, stream));
        at += n * sizeof(floatX);
        const float* parts[3] = {st->master_memory ? st->master_memory : st->m_memory, st->m_memory, st->v_memory};
        for (int k = 0; k < 3; k++, at += n * sizeof(float)) {
            cudaCheck(cudaMemcpyAsync(at, parts[k], n * sizeof(float), cudaMemcpyDeviceToHost, stream));
        }
    }
    cudaCheck(cudaStreamSynchronize(stream));
    return h;
}

// Issue 12's step without stalls: no step allocates, frees, synchronizes the device or copies pageable memory;
// the host waits for the device once (the read of the losses and the norm); no NCCL operation runs on the
// compute stream, and with peers the messages go on the send and receive streams (NCCL operations, or the
// mailbox copies when every rank shares a device); no cuBLASLt plan is built after the first step. SIMT counts
// the calls per host thread and per stream; under nvcc those counts are all zero and only the plan count is
// checked. Rank 0 of the first run prints them.
#define STEP_API_CHECK "a step allocates nothing, waits for the device once, sends and receives off the compute " \
                       "stream, builds no cuBLASLt plan after the first"
static int step_api_ok(const Run* run, const Comm* cm, int k, long long plans_before) {
    int plans_ok = k == 0 || cublaslt_plans_built == plans_before;
    SimtApiCounts n;
    SimtStreamCounts compute, send, recv;
    if (!simt_api_counts(&n)) { return plans_ok; }
    simt_api_stream_counts(cm->stream, &compute);
    simt_api_stream_counts(cm->send_stream, &send);
    simt_api_stream_counts(cm->recv_stream, &recv);
    static int printed = 0;
    if (cm->rank == 0 && cm->world > 1 && !printed) {
        printed = 1;
        printf("API calls in one step (rank 0, P=%d %s, step %d): %lld cudaMalloc, %lld cudaFree, %lld cudaDeviceSynchronize, "
               "%lld host syncs, %lld pageable copies, %lld cuBLASLt plans built; NCCL operations on the compute, send and "
               "receive streams %lld, %lld, %lld; copies on the receive stream %lld; %lld event records, %lld stream waits\n",
               run->P, run->schedule, k, n.malloc_calls, n.free_calls, n.device_syncs, n.host_syncs, n.pageable_copies,
               cublaslt_plans_built - plans_before, compute.nccl_ops, send.nccl_ops, recv.nccl_ops, recv.copies,
               n.event_records, n.stream_waits);
    }
    int messages_off_compute = cm->world == 1 || (cm->nccl ? send.nccl_ops + recv.nccl_ops > 0 : recv.copies > 0);
    return plans_ok && n.malloc_calls == 0 && n.free_calls == 0 && n.device_syncs == 0 && n.pageable_copies == 0 &&
           n.host_syncs <= 1 && compute.nccl_ops == 0 && messages_off_compute;
}

// every stash slot allocation of this rank is exactly what the plan prints (under SIMT, which knows each
// allocation's size); with a split backward that includes what I keeps for W; under -rc the slot's own part,
// and the stage's one work copy
static int stash_alloc_ok(Pipeline* pp) {
    int ok = 1, split = schedule_has_split_backward(&pp->schedule);
    for (int l = 0; l < pp->num_local; l++) {
        const Stage* st = &pp->local[l].stage;
        const StageLayout* lay = &pp->layouts[pp->local[l].index];
        size_t printed = activation_slot_bytes(&pp->config, lay, pp->B, pp->T, split, st->recompute ? SLOT_PART : ALL_PARTS);
        size_t work = st->recompute ? activation_slot_bytes(&pp->config, lay, pp->B, pp->T, split, WORK_PART) : 0;
#ifdef SIMT_CPU  // simt.h (force-included) declares simt::device_range_ok
        const void* base = st->stash[0].inputs;
        ok &= simt::device_range_ok(base, printed) && !simt::device_range_ok(base, printed + 1);
        if (work > 0) {
            ok &= simt::device_range_ok(st->work_memory, work) && !simt::device_range_ok(st->work_memory, work + 1);
        }
#else
        ok &= st->slot_bytes == printed && st->work_bytes == work;
#endif
    }
    return ok;
}

// each local stage's fp32 buffer (grads, or params/m/v through stage_buffer) into the whole-model buffer
static void collect(Pipeline* pp, const float* (*which)(Stage*), float scale, float* local, float* global) {
    for (int l = 0; l < pp->num_local; l++) {
        Stage* st = &pp->local[l].stage;
        layout_copy(&st->dl, (float*)which(st), local, 0, pp->comm->stream);
        for (size_t i = 0; scale != 1.0f && i < st->layout.num_parameters; i++) { local[i] /= scale; }
        scatter_owned(pp, st, local, global);
    }
}

static const float* grads_of(Stage* st) { return st->grads_memory; }
static const float* params_of(Stage* st) { return stage_buffer(st, BUF_PARAMS); }

static void rank_job(void* ctx, Comm* cm) {
    Run* run = (Run*)ctx;
    const RefFile* rf = run->rf;
    int rank = cm->rank, P = run->P;
    const GPT2Config* c = &rf->config;
    TrainArgs args;
    train_args_default(&args, 0.0f);
    args.B = rf->B; args.T = rf->T; args.M = rf->M / run->D; args.P = P; args.D = run->D; args.zero = run->zero;
    args.schedule_name = run->schedule;
    args.layers_arg = run->layers;
    args.gelu_fusion = run->gelu_fusion;
    args.recompute = run->recompute;
    Pipeline pp;
    pipeline_init(&pp, c, &args, cm);
    pp.opt = (OptimizerConfig){rf->lr, rf->beta1, rf->beta2, rf->eps, rf->weight_decay, rf->grad_clip};
    pp.scaler = (LossScaler){run->loss_scale, 2.0f, 0.5f, 2000, 0};
    if (!stash_alloc_ok(&pp)) { run->stash_ok = 0; }
    if (cm->hub && P > 1) { run->one_device_used = 1; }
    float* local = (float*)malloc_check(model_num_parameters(c) * sizeof(float));  // room for any stage
    for (int l = 0; l < pp.num_local; l++) {
        Stage* st = &pp.local[l].stage;
        stage_copy_global(c, &st->layout, local, (float*)run->params0, 0);
        stage_set_params(st, local, cm->stream);
    }
    FixedBatches fb = {run->inputs, run->targets, rf->M, 0};
    for (int k = 0; k < rf->K; k++) {
        if (run->do_overflow && k == 1) {
            // an inf in the last stage's gradient: every rank must skip, halve the scale, change nothing
            pipeline_forward_backward(&pp, next_fixed_batch, &fb);
            pipeline_sync_tied_wte(&pp);
            size_t before_bytes;
            void* before = snapshot_state(&pp, &before_bytes);
            float scale = pp.scaler.scale;
            int adam_t = pp.adam_t;
            RankStage* head = local_or_null(&pp, pp.S - 1);
            if (head) {
                float inf = INFINITY;
                float* g = head->stage.grads_memory + shard_of(&pp, head, 0)[head->num_pieces[0] / 2].offset;
                cudaCheck(cudaMemcpyAsync(g, &inf, sizeof(float), cudaMemcpyHostToDevice, cm->stream));
            }
            pipeline_update(&pp, rf->lr);
            size_t after_bytes;
            void* after = snapshot_state(&pp, &after_bytes);
            int ok = pp.last_skipped && pp.scaler.scale == scale * 0.5f && pp.adam_t == adam_t &&
                     memcmp(before, after, before_bytes) == 0;
            free(before);
            free(after);
            if (!ok) { run->overflow_ok = 0; }
            // then the step again on the same micro-batches (a step uses all M, so fb is back at them), no inf
        }
        float step_scale = pp.scaler.scale > 0.0f ? pp.scaler.scale : 1.0f;
        long long plans = cublaslt_plans_built;
        simt_api_counts_reset();
        float loss = pipeline_train_step(&pp, next_fixed_batch, &fb, rf->lr);
        if (!step_api_ok(run, cm, k, plans)) { run->api_ok = 0; }
        if (run->do_overflow && k == 1 && pp.last_skipped) { run->overflow_ok = 0; }
        if (pp.grid.d != 0) { continue; }  // the replicas hold the same bits: replica 0's are collected
        if (k == 0 && !run->zero) { collect(&pp, grads_of, step_scale, local, run->grads0); }  // AdamW leaves them
        if (rank == 0) { run->losses[k] = loss; run->norms[k] = pp.last_norm; }
        collect(&pp, params_of, 1.0f, local, run->params + (size_t)k * rf->N);
    }
    for (int l = 0; l < pp.num_local; l++) {
        if (pp.local[l].stash.peak != schedule_peak_inflight(&pp.schedule, pp.local[l].index)) { run->stash_ok = 0; }
    }
    free(local);
    pipeline_free(&pp);
}

// runs the pipeline of run->P ranks (threads) on the reference's micro-batches, into fresh result buffers
static void run_pipeline(Run* run) {
    const RefFile* rf = run->rf;
    run->losses = (float*)calloc_check(rf->K, sizeof(float));
    run->norms = (float*)calloc_check(rf->K, sizeof(float));
    run->grads0 = (float*)calloc_check(rf->N, sizeof(float));
    run->params = (float*)calloc_check((size_t)rf->K * rf->N, sizeof(float));
    run->api_ok = 1;
    run->stash_ok = 1;
    run_ranks_as_threads(run->D * run->P, run->one_device, 300.0, rank_job, run);
}

static void run_free(Run* run) {
    free(run->losses);
    free(run->norms);
    free(run->grads0);
    free(run->params);
}

// the reference checks of one run: every step's loss, the first step's gradients and norm, the parameters
static void check_against_reference(const Run* run, const char* tag, const float* ref_step_loss,
                                    const float* ref_grads, const float* ref_norm, const float* ref_params) {
    const RefFile* rf = run->rf;
    const GPT2Config* c = &rf->config;
    size_t N = rf->N;
    const float u = UNIT_ROUNDOFF;
    float loss_rtol = PRECISION_FP32 ? 1e-5f : u / 4;
    float grad_rel = PRECISION_FP32 ? 1e-4f : 8 * u;
    char name[160];
    for (int k = 0; k < rf->K; k++) {
        snprintf(name, sizeof(name), "%s step %d loss %.7f vs %.7f", tag, k, run->losses[k], ref_step_loss[k]);
        check(fabsf(run->losses[k] - ref_step_loss[k]) <= loss_rtol * fabsf(ref_step_loss[k]), name);
    }
    size_t off = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        size_t n = tensor_global_size(c, i);
        snprintf(name, sizeof(name), "%s grad %s", tag, param_names[i]);
        check_scaled(name, run->grads0 + off, ref_grads + off, n, grad_rel);
        off += n;
    }
    snprintf(name, sizeof(name), "%s grad norm %.7f vs %.7f", tag, run->norms[0], ref_norm[0]);
    check(fabsf(run->norms[0] - ref_norm[0]) <= grad_rel * ref_norm[0], name);
    for (int k = 0; k < rf->K; k++) {
        float lr_steps = rf->lr * (k + 1);
        off = 0;
        for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
            size_t n = tensor_global_size(c, i);
            const float* mine = run->params + (size_t)k * N + off;
            const float* ref = ref_params + (size_t)k * N + off;
            snprintf(name, sizeof(name), "%s after step %d %s", tag, k, param_names[i]);
            if (PRECISION_FP32) {
                check_close(name, mine, ref, n, 5e-2f * lr_steps, 1e-5f);
            } else {
                check_close(name, mine, ref, n, 2.0f * lr_steps, 1e-5f);
                double mean = 0.0;
                size_t counted = 0;
                for (size_t j = 0; j < n; j++) {
                    size_t C = c->channels, in_layer = j % (3 * C);
                    if (i == QKVB && in_layer >= C && in_layer < 2 * C) { continue; }  // key biases, see top
                    mean += fabs((double)mine[j] - ref[j]);
                    counted++;
                }
                mean /= counted;
                snprintf(name, sizeof(name), "%s after step %d %s: mean error %.3g (allowed %.3g)", tag, k,
                         param_names[i], mean, 0.05 * lr_steps);
                check(mean <= 0.05 * lr_steps, name);
            }
            off += n;
        }
    }
}

int main(int argc, char** argv) {
    if (argc != 2) { fatal("usage: %s <reference file from dev/reference/gpt2_ref.py>", argv[0]); }
    RefFile rf;
    ref_open(&rf, argv[1]);
    const GPT2Config* c = &rf.config;
    size_t N = rf.N, BT = (size_t)rf.B * rf.T;
    printf("reference %s: L=%d C=%d NH=%d V=%d, B=%d T=%d M=%d K=%d; %s\n", argv[1], c->num_layers, c->channels,
           c->num_heads, c->vocab_size, rf.B, rf.T, rf.M, rf.K, PRECISION_NAME);
    int* inputs = (int*)malloc_check(rf.M * BT * sizeof(int));
    int* targets = (int*)malloc_check(rf.M * BT * sizeof(int));
    fread_check(inputs, sizeof(int), rf.M * BT, rf.f, rf.path);
    fread_check(targets, sizeof(int), rf.M * BT, rf.f, rf.path);
    float* params0 = ref_read(&rf, N);
    ref_skip_activations(&rf);
    float* ref_loss = ref_read(&rf, 1);  // the first step's loss, the same value as step_loss[0] (checked there)
    float* ref_grads = ref_read(&rf, N);
    float* ref_norm = ref_read(&rf, 1);
    float* ref_step_loss = (float*)malloc_check(rf.K * sizeof(float));
    float* ref_params = (float*)malloc_check((size_t)rf.K * N * sizeof(float));
    for (int k = 0; k < rf.K; k++) {
        fread_check(ref_step_loss + k, sizeof(float), 1, rf.f, rf.path);
        fread_check(ref_params + (size_t)k * N, sizeof(float), N, rf.f, rf.path);
    }
    int devices = 0;
    cudaCheck(cudaGetDeviceCount(&devices));
    printf("%d device(s): P stages %s\n", devices, devices > 1 ? "on P GPUs through NCCL when P <= devices, else on one GPU"
                                                             : "on one GPU");
    Run base;
    memset(&base, 0, sizeof(base));
    base.rf = &rf; base.params0 = params0; base.inputs = inputs; base.targets = targets; base.D = 1;
    base.loss_scale = PRECISION_FP16 ? 65536.0f : 0.0f;
    base.gelu_fusion = !PRECISION_FP32;  // the trainer's default (-ge)
    float loss_rtol = PRECISION_FP32 ? 1e-5f : UNIT_ROUNDOFF / 4;
    int depths[3] = {1, 2, 4};
    const char* schedules[2] = {"gpipe", "1f1b"};
    Run first, f1b[5];  // P=1 GPipe; 1F1B at each depth (on P GPUs where there are)
    memset(&first, 0, sizeof(first));
    memset(f1b, 0, sizeof(f1b));
    char name[240], tag[96];
    for (int d = 0; d < 3; d++) {
        if (depths[d] > c->num_layers) { continue; }
        // the 1F1B run once more with every stage on one GPU, when the pipeline had a GPU per stage
        int variants = depths[d] > 1 && devices >= depths[d] ? 3 : 2;
        for (int v = 0; v < variants; v++) {
            Run run = base;
            run.P = depths[d];
            run.schedule = schedules[v == 0 ? 0 : 1];
            run.one_device = v == 2;
            run_pipeline(&run);
            snprintf(tag, sizeof(tag), "P=%d %s%s", run.P, run.schedule, run.one_device_used ? " on one GPU" : "");
            check_against_reference(&run, tag, ref_step_loss, ref_grads, ref_norm, ref_params);
            snprintf(name, sizeof(name), "%s: " STEP_API_CHECK, tag);
            check(run.api_ok, name);
            snprintf(name, sizeof(name), "%s: each stash slot allocates the bytes the plan prints, the peak in use is the schedule's", tag);
            check(run.stash_ok, name);
            // every depth, schedule and launch mode: the same bits
            if (first.params == NULL) {
                first = run;
                continue;
            }
            snprintf(name, sizeof(name), "%s: losses and parameters bitwise equal to P=1 gpipe", tag);
            check(memcmp(first.losses, run.losses, rf.K * sizeof(float)) == 0 &&
                  memcmp(first.params, run.params, (size_t)rf.K * N * sizeof(float)) == 0, name);
            if (v == 1) { f1b[run.P] = run; } else { run_free(&run); }
        }
    }

    // Split backward (I, W) and several stages per rank: the same bits as 1F1B at the same depth (P=1: GPipe,
    // which is 1F1B there). What can go wrong differently, and the run that shows it:
    //   - W from what I kept, the layernorm grads in I, B = I+W (zbh1; P=1 zbh1: the LM head's W on the stage
    //     that also embeds, where I sends nothing);
    //   - W late, after later micro-batches' I's and F's, with more slots in flight (zbh2, at P=2 and at P=4,
    //     where the middle ranks both receive and send d(input));
    //   - two stages on one rank: hand-offs by device copy both ways, each stage's own stash and inbox
    //     (interleaved:2, whose stage 0 and last stage are on different ranks: the tied wte travels);
    //   - ZB-V: the first and the last stage on rank 0 (the tied wte sum without a message; the loss, the
    //     sample and the grad norm's head slots on rank 0), split backward across local hand-offs; at P=1
    //     both stages of the V on the one rank; and once more on one GPU when there are two (NCCL and device
    //     copies give the same bits).
    // Each builder needs S = v·P <= L stages (every stage holds a layer by default) and its M (interleaved:
    // a multiple of P); a combination the reference's shape cannot hold is left out.
    // Then stage boundaries inside a layer (-pl with halves, for the reference's L), bitwise equal to P=1.
    // Where the half-layer code can fail, and the run that shows it:
    //   - 1F1B (fused B; L=4: 0.5,2,1.5 at P=3; L=2: 0.5,1.5): stage 0 holds the embeddings and one attention
    //     half, no MLP tensor, and sends residual2; the next stage starts at an MLP half (its layernorm
    //     unfused, d(input) = d(mid)) and, at L=4, ends at an attention half (the residual add unfused, the
    //     received gradient entering attention directly);
    //   - ZB-V (split backward; L=4: 1.5,0.5,1.5,0.5; L=2: a half per stage): the kept gradients split into
    //     MLP and attention parts, a stage of one MLP half (no attention tensor, no attention stash), stages
    //     ending at an attention half, and the LM head behind one MLP half on rank 0 beside stage 0.
    // Then activation recomputation (-rc; its memory and the trainer's checkpoints in test_sim_trainer.sh),
    // bitwise equal without it. Where the rerun (stage_restore) can fail differently, and the run that shows it:
    //   - always under a fused B (1f1b P=2; P=1 where L=1): every B reruns, also on the last stage right after
    //     its F: d(logits) recomputed with the same dloss (FP16: the loss scale), the loss and the mean-loss
    //     buffer written once, by F; stage 0's rerun must not rewrite x (the embeddings it sends);
    //   - except_last under a split backward (zbh1 P=2): I reruns only when a later F took the work copy, W
    //     reruns (backward 0) after later I's and F's, from the slot's kept gradients;
    //   - a send out of the work copy: zbcv with uneven costs at P=2, M=4 (ref_a), whose rank 1 runs stage 2's F1, F2,
    //     then SEND_F1 and SEND_F2, so the sends rerun F1 and F2 and the second rerun waits for the first send;
    //     two stages per rank, each its own work copy;
    //   - always at stage boundaries inside a layer (zbv 1.5,0.5,1.5,0.5): outputs in residual2 of the work copy,
    //     a stage of one MLP half, the LM head behind it on rank 0.
    // Each run also checks the step without stalls (no allocation, one host wait: the work copy comes from
    // pipeline_init) and that the slots and the work copy allocate what the plan prints.
    struct { int L, P; const char* name; const char* layers; int rc; } split_runs[] = {
        {0, 1, "zbh1", NULL, 0}, {0, 1, "zbv", NULL, 0}, {0, 2, "interleaved:2", NULL, 0}, {0, 2, "zbh1", NULL, 0},
        {0, 2, "zbh2", NULL, 0}, {0, 2, "zbv", NULL, 0}, {0, 4, "zbh2", NULL, 0},
        {4, 3, "1f1b", "0.5,2,1.5", 0}, {4, 2, "zbv", "1.5,0.5,1.5,0.5", 0},
        {2, 2, "1f1b", "0.5,1.5", 0}, {2, 2, "zbv", "0.5,0.5,0.5,0.5", 0},
        {0, 2, "1f1b", NULL, RC_ALWAYS}, {1, 1, "1f1b", NULL, RC_ALWAYS}, {0, 2, "zbh1", NULL, RC_EXCEPT_LAST},
        {4, 2, "zbcv:1/1/1,1/1/1,1/1/1,4/2/3", NULL, RC_EXCEPT_LAST}, {4, 2, "zbv", "1.5,0.5,1.5,0.5", RC_ALWAYS}};
    for (size_t i = 0; i < sizeof(split_runs) / sizeof(split_runs[0]); i++) {
        const char* sc = split_runs[i].name;
        const char* layers = split_runs[i].layers;
        int P = split_runs[i].P, rc = split_runs[i].rc;
        int stages_per_rank = strncmp(sc, "zbh", 3) == 0 || strcmp(sc, "1f1b") == 0 ? 1 : 2;
        // L: only for a reference of L layers (the splits of -pl are L's); else where the stages fit
        if (split_runs[i].L ? split_runs[i].L != c->num_layers : stages_per_rank * P > c->num_layers) { continue; }
        if (strncmp(sc, "interleaved", 11) == 0 && rf.M % P != 0) { continue; }
        const Run* same = layers || P == 1 ? &first : &f1b[P];
        int variants = strcmp(sc, "zbv") == 0 && P > 1 && devices >= P && !rc ? 2 : 1;
        for (int v = 0; v < variants; v++) {
            Run run = base;
            run.P = P;
            run.schedule = sc;
            run.layers = layers;
            run.recompute = rc;
            run.one_device = v == 1;
            run_pipeline(&run);
            snprintf(tag, sizeof(tag), "P=%d %s%s%s%s%s", P, sc, layers ? " -pl " : "", layers ? layers : "",
                     rc == RC_ALWAYS ? " -rc always" : rc ? " -rc except_last" : "",
                     run.one_device_used && devices >= P ? " on one GPU" : "");
            check_against_reference(&run, tag, ref_step_loss, ref_grads, ref_norm, ref_params);
            snprintf(name, sizeof(name), "%s: " STEP_API_CHECK, tag);
            check(run.api_ok, name);
            snprintf(name, sizeof(name), "%s: each stash slot allocates the bytes the plan prints, the peak in use is the schedule's", tag);
            check(run.stash_ok, name);
            snprintf(name, sizeof(name), "%s: losses and parameters bitwise equal to P=%d %s", tag, same == &first ? 1 : P,
                     same == &first ? "gpipe" : "1f1b");
            check(same->params && memcmp(same->losses, run.losses, rf.K * sizeof(float)) == 0 &&
                  memcmp(same->params, run.params, (size_t)rf.K * N * sizeof(float)) == 0, name);
            run_free(&run);
        }
    }
    for (int p = 0; p < 5; p++) { if (f1b[p].params) { run_free(&f1b[p]); } }

    // Data parallelism: D=2 replicas of a 2-stage 1F1B pipeline, M/2 micro-batches each, against the NumPy
    // reference (only the order of the fp32 gradient sums differs, far inside the tolerances above), with no
    // allocation or device sync in a step (the shard messages' buffers come from pipeline_init); then ZeRO-1,
    // bitwise equal to it (AdamW is elementwise; a shard's update is the same bits). The trainer's own tests
    // (dev/test/test_sim_trainer.sh) compare checkpoints across P, schedules and launch modes.
    if (c->num_layers >= 2 && rf.M % 2 == 0) {
        Run dp[2];
        for (int z = 0; z < 2; z++) {
            dp[z] = base;
            dp[z].P = 2; dp[z].D = 2; dp[z].zero = z;
            dp[z].schedule = "1f1b";
            run_pipeline(&dp[z]);
            snprintf(tag, sizeof(tag), "D=2 x P=2 1f1b%s", z ? " ZeRO-1" : "");
            snprintf(name, sizeof(name), "%s: " STEP_API_CHECK, tag);
            check(dp[z].api_ok, name);
            snprintf(name, sizeof(name), "%s: each stash slot allocates the bytes the plan prints, the peak in use is the schedule's", tag);
            check(dp[z].stash_ok, name);
        }
        check_against_reference(&dp[0], "D=2 x P=2 1f1b", ref_step_loss, ref_grads, ref_norm, ref_params);
        check(memcmp(dp[0].losses, dp[1].losses, rf.K * sizeof(float)) == 0 &&
              memcmp(dp[0].params, dp[1].params, (size_t)rf.K * N * sizeof(float)) == 0,
              "D=2 x P=2 ZeRO-1: losses and parameters bitwise equal to D=2 x P=2 without it");
        run_free(&dp[0]);
        run_free(&dp[1]);
    }

    // GELU the other way (the trainer's default is the epilogue in BF16/FP16, the kernels in FP32): same checks
    if (c->num_layers >= 2) {
        Run run = base;
        run.P = 2;
        run.schedule = "1f1b";
        run.gelu_fusion = !base.gelu_fusion;
        run_pipeline(&run);
        check_against_reference(&run, run.gelu_fusion ? "P=2 1f1b, GELU epilogue" : "P=2 1f1b, GELU kernels",
                                ref_step_loss, ref_grads, ref_norm, ref_params);
        run_free(&run);
    }

    // the loss scaler's overflow path, on 2 stages (forced on in FP32/BF16 for the test)
    if (c->num_layers >= 2 && rf.K >= 2) {
        Run run = base;
        run.P = 2;
        run.schedule = "1f1b";
        run.loss_scale = 1024.0f;
        run.do_overflow = 1;
        run.overflow_ok = 1;
        run_pipeline(&run);
        check(run.overflow_ok, "overflow: every rank skipped the step, the scale halved, parameters and moments unchanged, the retry trained");
        snprintf(name, sizeof(name), "overflow run: last loss %.6f vs reference %.6f", run.losses[rf.K - 1], ref_step_loss[rf.K - 1]);
        check(fabsf(run.losses[rf.K - 1] - ref_step_loss[rf.K - 1]) <= fmaxf(loss_rtol, 1e-4f) * ref_step_loss[rf.K - 1], name);
        run_free(&run);
    }
    run_free(&first);
    free(inputs); free(targets); free(params0); free(ref_loss); free(ref_grads); free(ref_norm);
    free(ref_step_loss); free(ref_params);
    fclose(rf.f);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
