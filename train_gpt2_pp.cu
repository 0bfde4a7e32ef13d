/*
GPT-2 training on GPUs, split into pipeline stages: one rank per GPU, one stage per rank.

Read train_gpt2_pp.c first: this file is the same trainer with the layer loops replaced by the CUDA kernels
of llmc/ (the .cuh files) and the point-to-point messages carried by NCCL. What stays the same, deliberately:
  - the model layout and checkpoints (llmc/model.h and llmc/train_state.h): a checkpoint written here resumes
    on the CPU trainer and the other way round;
  - the schedules (llmc/schedule.h): each rank walks its list of actions (forward, backward, send, receive),
    exactly the list the CPU trainer walks; GPipe and 1F1B, or any valid hand-made schedule;
  - the determinism rules: backwards in micro-batch order, the two halves of the tied wte gradient added once
    (embedding + head, in that order), the grad norm summed per (tensor, layer) slot in checkpoint order. With
    the kernels' fixed reduction orders, an FP32 run gives the same bits at every pipeline depth.
What is new: mixed precision. Parameters and activations are floatX (PRECISION=FP32|BF16|FP16 at build time),
AdamW keeps fp32 master weights and moments, parameter gradients are fp32. FP16 adds dynamic loss scaling:
the last stage scales the loss, an overflow anywhere (an inf/nan gradient) shows up in the all-reduced grad
norm on every rank, and then every rank skips the step and halves the scale; after 2000 clean steps it
doubles (PyTorch GradScaler's defaults).

Launch: mpirun -np P ./train_gpt2_pp [flags]   (NCCL bootstrapped through MPI)
        srun ... ./train_gpt2_pp -pf <shared dir> [flags]   (Slurm without MPI: a file rendezvous)
*/
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <dirent.h>
#include <unistd.h>
#include <pthread.h>
#include <nccl.h>
#ifdef USE_MPI
#include <mpi.h>
#endif

// defines: floatX, PRECISION_NAME, cudaCheck
#include "llmc/cuda_common.h"
// defines: cublas_init, cublaslt_handle
#include "llmc/cublas_common.h"
// defines: cast_to_floatX, cast_to_float, fill, add_inplace
#include "llmc/cuda_utils.cuh"
// defines: encoder_forward, encoder_backward
#include "llmc/encoder.cuh"
// defines: layernorm_forward, residual_forward, layernorm_backward
#include "llmc/layernorm.cuh"
// defines: matmul_forward, matmul_backward
#include "llmc/matmul.cuh"
// defines: attention_forward, attention_backward
#include "llmc/attention.cuh"
// defines: gelu_forward, gelu_backward
#include "llmc/gelu.cuh"
// defines: fused_classifier
#include "llmc/fused_classifier.cuh"
// defines: adamw_update
#include "llmc/adamw.cuh"
// defines: global_norm_squared, is_finite_norm
#include "llmc/global_norm.cuh"
// host side, shared with the CPU trainer: checks, model layout and checkpoints, data, schedules
#include "llmc/utils.h"
#include "llmc/rand.h"
#include "llmc/model.h"
#include "llmc/train_state.h"
#include "llmc/dataloader.h"
#include "llmc/tokenizer.h"
#include "llmc/lr_schedule.h"
#include "llmc/logger.h"
#include "llmc/schedule.h"
#include "llmc/partition.h"
#include "llmc/train_args.h"

#define ncclCheck(status) nccl_check_((status), __FILE__, __LINE__)
static void nccl_check_(ncclResult_t status, const char* file, int line) {
    if (status != ncclSuccess) { fatal("NCCL error at %s:%d: %s", file, line, ncclGetErrorString(status)); }
}

#if PRECISION_FP32
#define NCCL_FLOATX ncclFloat
#elif PRECISION_FP16
#define NCCL_FLOATX ncclHalf
#else
#define NCCL_FLOATX ncclBfloat16
#endif

// ----------------------------------------------------------------------------
// 1. a pipeline stage on one GPU: parameters, gradients, optimizer state, activation stash, scratch

typedef struct {
    floatX* wte; floatX* wpe; floatX* ln1w; floatX* ln1b; floatX* qkvw; floatX* qkvb; floatX* attprojw;
    floatX* attprojb; floatX* ln2w; floatX* ln2b; floatX* fcw; floatX* fcb; floatX* fcprojw; floatX* fcprojb;
    floatX* lnfw; floatX* lnfb;
} ParameterTensors;  // shapes as in train_gpt2_pp.c, nl = the stage's layers

typedef struct {
    float* wte; float* wpe; float* ln1w; float* ln1b; float* qkvw; float* qkvb; float* attprojw; float* attprojb;
    float* ln2w; float* ln2b; float* fcw; float* fcb; float* fcprojw; float* fcprojb; float* lnfw; float* lnfb;
} GradTensors;  // fp32, same shapes

// points 16 typed pointers into one buffer, in llm.c's tensor order
static void point_tensors(void** ptrs, char* memory, const StageLayout* s, size_t elem_size) {
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        ptrs[i] = s->sizes[i] ? memory : NULL;
        memory += s->sizes[i] * elem_size;
    }
}

// The activations of one micro-batch on one stage (the stash), as in train_gpt2_pp.c but in floatX.
typedef struct {
    int* inputs;       // (B,T) device
    int* targets;      // (B,T) device
    floatX* x;         // (B,T,C) residual stream entering the stage
    floatX* ln1;       // (nl,B,T,C)
    float* ln1_mean;   // (nl,B,T)
    float* ln1_rstd;   // (nl,B,T)
    floatX* qkv;       // (nl,B,T,3C)
    floatX* att;       // (nl,B,NH,T,T)
    floatX* atty;      // (nl,B,T,C)
    floatX* residual2; // (nl,B,T,C)
    floatX* ln2;       // (nl,B,T,C)
    float* ln2_mean;   // (nl,B,T)
    float* ln2_rstd;   // (nl,B,T)
    floatX* fch;       // (nl,B,T,4C)
    floatX* fch_gelu;  // (nl,B,T,4C)
    floatX* residual3; // (nl,B,T,C)
    floatX* lnf;       // (B,T,C) last stage
    float* lnf_mean;   // (B,T)
    float* lnf_rstd;   // (B,T)
    floatX* logits;    // (B,T,Vp) -> d(logits) when training
    float* losses;     // (B,T)
} Activations;

typedef struct {
    floatX* dresidual;  // (B,T,C)
    floatX* dresidual2; // (B,T,C)
    floatX* dln;        // (B,T,C)
    floatX* datty;      // (B,T,C)
    floatX* dqkv;       // (B,T,3C)
    floatX* dfch;       // (B,T,4C)
    floatX* dfch_gelu;  // (B,T,4C)
    floatX* datt;       // (B,NH,T,T)
    floatX* att_scratch;// attention's permuted q,k,v and their gradients: 6*B*T*C
    floatX* proj;       // (B,T,C) output of the attention and MLP projections before the residual add
    float* bias_scratch;// matmul_backward's bias partials: 32 * 4C
    float* ln_scratch;  // layernorm_backward's partials: 64 * C
} Scratch;

typedef struct {
    GPT2Config config;
    StageLayout layout;
    int B, T;
    ParameterTensors params;     // floatX, what the kernels read
    GradTensors grads;           // fp32
    floatX* params_memory;
    float* master_memory;        // fp32 master weights (NULL in FP32, where params are fp32 already)
    float* grads_memory;
    float* grad_wte_head;        // (Vp,C) the LM head's half of the tied wte gradient (last stage)
    float* m_memory;
    float* v_memory;
    Activations* stash;
    int num_slots;
    Scratch scratch;
    int gelu_fusion;             // GELU through cuBLASLt's GELU_AUX / DGELU epilogues (-ge 1) or its own kernels
    float* norm_slots;           // (4 + 12L) squared norms per (tensor, layer) slot, device
    double* norm_scratch;
} Stage;

static void* cuda_alloc(size_t bytes) {
    void* p = NULL;
    cudaCheck(cudaMalloc(&p, bytes > 0 ? bytes : 1));
    cudaCheck(cudaMemset(p, 0, bytes > 0 ? bytes : 1));
    return p;
}

// carves typed pieces out of one allocation
typedef struct { char* base; size_t used; } Arena;
static void* arena_take(Arena* a, size_t bytes) {
    void* p = bytes ? a->base + a->used : NULL;
    a->used += (bytes + 255) / 256 * 256;  // keep every piece 256-byte aligned for vector loads
    return p;
}

static size_t activations_bytes(const GPT2Config* c, const StageLayout* s, int B, int T, Arena* a,
                                Activations* act) {
    size_t nl = s->num_layers, BT = (size_t)B * T, C = c->channels, NH = c->num_heads, X = sizeof(floatX);
    size_t head = s->has_head;
    Arena dry = {NULL, 0};
    if (a == NULL) { a = &dry; }
    Activations tmp;
    if (act == NULL) { act = &tmp; }
    act->inputs = (int*)arena_take(a, BT * sizeof(int));
    act->targets = (int*)arena_take(a, BT * sizeof(int));
    act->x = (floatX*)arena_take(a, BT * C * X);
    act->ln1 = (floatX*)arena_take(a, nl * BT * C * X);
    act->ln1_mean = (float*)arena_take(a, nl * BT * sizeof(float));
    act->ln1_rstd = (float*)arena_take(a, nl * BT * sizeof(float));
    act->qkv = (floatX*)arena_take(a, nl * BT * 3 * C * X);
    act->att = (floatX*)arena_take(a, nl * B * NH * T * T * X);
    act->atty = (floatX*)arena_take(a, nl * BT * C * X);
    act->residual2 = (floatX*)arena_take(a, nl * BT * C * X);
    act->ln2 = (floatX*)arena_take(a, nl * BT * C * X);
    act->ln2_mean = (float*)arena_take(a, nl * BT * sizeof(float));
    act->ln2_rstd = (float*)arena_take(a, nl * BT * sizeof(float));
    act->fch = (floatX*)arena_take(a, nl * BT * 4 * C * X);
    act->fch_gelu = (floatX*)arena_take(a, nl * BT * 4 * C * X);
    act->residual3 = (floatX*)arena_take(a, nl * BT * C * X);
    act->lnf = (floatX*)arena_take(a, head * BT * C * X);
    act->lnf_mean = (float*)arena_take(a, head * BT * sizeof(float));
    act->lnf_rstd = (float*)arena_take(a, head * BT * sizeof(float));
    act->logits = (floatX*)arena_take(a, head * BT * c->padded_vocab_size * X);
    act->losses = (float*)arena_take(a, head * BT * sizeof(float));
    return a->used;
}

static void stage_init(Stage* st, const GPT2Config* c, const StageLayout* s, int B, int T, int num_slots) {
    memset(st, 0, sizeof(*st));
    st->config = *c;
    st->layout = *s;
    st->B = B;
    st->T = T;
    st->gelu_fusion = 1;
    size_t n = s->num_parameters;
    st->params_memory = (floatX*)cuda_alloc(n * sizeof(floatX));
    st->master_memory = PRECISION_FP32 ? NULL : (float*)cuda_alloc(n * sizeof(float));
    st->grads_memory = (float*)cuda_alloc(n * sizeof(float));
    st->m_memory = (float*)cuda_alloc(n * sizeof(float));
    st->v_memory = (float*)cuda_alloc(n * sizeof(float));
    point_tensors((void**)&st->params, (char*)st->params_memory, s, sizeof(floatX));
    point_tensors((void**)&st->grads, (char*)st->grads_memory, s, sizeof(float));
    if (s->has_head) { st->grad_wte_head = (float*)cuda_alloc(s->sizes[WTE] * sizeof(float)); }
    st->num_slots = num_slots;
    st->stash = (Activations*)calloc_check(num_slots, sizeof(Activations));
    size_t slot_bytes = activations_bytes(c, s, B, T, NULL, NULL);
    for (int k = 0; k < num_slots; k++) {
        Arena a = {(char*)cuda_alloc(slot_bytes), 0};
        activations_bytes(c, s, B, T, &a, &st->stash[k]);
    }
    size_t BT = (size_t)B * T, C = c->channels, X = sizeof(floatX);
    Arena dry = {NULL, 0};
    Arena* a = &dry;
    for (int pass = 0; pass < 2; pass++) {
        Scratch* sc = &st->scratch;
        sc->dresidual = (floatX*)arena_take(a, BT * C * X);
        sc->dresidual2 = (floatX*)arena_take(a, BT * C * X);
        sc->dln = (floatX*)arena_take(a, BT * C * X);
        sc->datty = (floatX*)arena_take(a, BT * C * X);
        sc->dqkv = (floatX*)arena_take(a, BT * 3 * C * X);
        sc->dfch = (floatX*)arena_take(a, BT * 4 * C * X);
        sc->dfch_gelu = (floatX*)arena_take(a, BT * 4 * C * X);
        sc->datt = (floatX*)arena_take(a, (size_t)B * c->num_heads * T * T * X);
        sc->att_scratch = (floatX*)arena_take(a, ATTENTION_BACKWARD_SCRATCH(B, T, C) * X);
        sc->proj = (floatX*)arena_take(a, BT * C * X);
        sc->bias_scratch = (float*)arena_take(a, MATMUL_BACKWARD_SCRATCH_FLOATS(4 * C) * sizeof(float));
        sc->ln_scratch = (float*)arena_take(a, LAYERNORM_BACKWARD_SCRATCH_FLOATS(C) * sizeof(float));
        if (pass == 0) { Arena real = {(char*)cuda_alloc(dry.used), 0}; dry = real; }
    }
    st->norm_slots = (float*)cuda_alloc((4 + 12 * (size_t)c->num_layers) * sizeof(float));
    st->norm_scratch = (double*)cuda_alloc(GLOBAL_NORM_SCRATCH_DOUBLES * sizeof(double));
}

// loads the stage's fp32 parameters (checkpoint layout slices) into master weights and floatX params
static void stage_set_params(Stage* st, const float* host_fp32) {
    size_t n = st->layout.num_parameters;
    float* staging = (float*)cuda_alloc(n * sizeof(float));
    cudaCheck(cudaMemcpy(staging, host_fp32, n * sizeof(float), cudaMemcpyHostToDevice));
    if (st->master_memory) { cudaCheck(cudaMemcpy(st->master_memory, staging, n * sizeof(float), cudaMemcpyDeviceToDevice)); }
    cast_to_floatX(st->params_memory, staging, n, 0);
    cudaCheck(cudaDeviceSynchronize());
    cudaCheck(cudaFree(staging));
}

// ----------------------------------------------------------------------------
// 2. forward and backward of one micro-batch on one stage: train_gpt2_pp.c's stage_forward/backward

static floatX* stage_output(Stage* st, Activations* a) {
    if (st->layout.num_layers == 0) { return a->x; }
    return a->residual3 + (size_t)(st->layout.num_layers - 1) * st->B * st->T * st->config.channels;
}

static void stage_forward(Stage* st, Activations* a, int B, int T, int with_targets, float dloss, cudaStream_t stream) {
    const GPT2Config* c = &st->config;
    const ParameterTensors* p = &st->params;
    int C = c->channels, NH = c->num_heads, BT = B * T;
    size_t BTa = (size_t)st->B * st->T, att_a = (size_t)st->B * NH * st->T * st->T;  // per-layer strides
    if (st->layout.has_embed) { encoder_forward(a->x, a->inputs, p->wte, p->wpe, B, T, C, stream); }
    floatX* residual = a->x;
    for (int l = 0; l < st->layout.num_layers; l++) {
        floatX* ln1 = a->ln1 + l * BTa * C;
        floatX* qkv = a->qkv + l * BTa * 3 * C;
        floatX* atty = a->atty + l * BTa * C;
        floatX* residual2 = a->residual2 + l * BTa * C;
        floatX* ln2 = a->ln2 + l * BTa * C;
        floatX* fch = a->fch + l * BTa * 4 * C;
        floatX* fch_gelu = a->fch_gelu + l * BTa * 4 * C;
        floatX* residual3 = a->residual3 + l * BTa * C;
        layernorm_forward(ln1, a->ln1_mean + l * BTa, a->ln1_rstd + l * BTa, residual, p->ln1w + l * C,
                          p->ln1b + l * C, BT, C, stream);
        matmul_forward(qkv, ln1, p->qkvw + (size_t)l * 3 * C * C, p->qkvb + l * 3 * C, BT, C, 3 * C, NULL, stream);
        attention_forward(atty, a->att + l * att_a, st->scratch.att_scratch, qkv, B, T, C, NH, stream);
        matmul_forward(st->scratch.proj, atty, p->attprojw + (size_t)l * C * C, p->attprojb + l * C, BT, C, C, NULL, stream);
        // the residual add and the second layernorm read the same row: one kernel
        fused_residual_layernorm_forward(residual2, ln2, a->ln2_mean + l * BTa, a->ln2_rstd + l * BTa, residual,
                                         st->scratch.proj, p->ln2w + l * C, p->ln2b + l * C, BT, C, stream);
        if (st->gelu_fusion) {  // GELU in the GEMM's epilogue; fch keeps the pre-activation for the backward
            matmul_forward(fch_gelu, ln2, p->fcw + (size_t)l * 4 * C * C, p->fcb + l * 4 * C, BT, C, 4 * C, fch, stream);
        } else {
            matmul_forward(fch, ln2, p->fcw + (size_t)l * 4 * C * C, p->fcb + l * 4 * C, BT, C, 4 * C, NULL, stream);
            gelu_forward(fch_gelu, fch, (size_t)BT * 4 * C, stream);
        }
        matmul_forward(st->scratch.proj, fch_gelu, p->fcprojw + (size_t)l * 4 * C * C, p->fcprojb + l * C, BT, 4 * C, C,
                       NULL, stream);
        residual_forward(residual3, residual2, st->scratch.proj, (size_t)BT * C, stream);
        residual = residual3;
    }
    if (st->layout.has_head) {
        layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, residual, p->lnfw, p->lnfb, BT, C, stream);
        matmul_forward(a->logits, a->lnf, p->wte, NULL, BT, C, c->padded_vocab_size, NULL, stream);
        if (with_targets) {
            fused_classifier(a->logits, a->losses, dloss, a->targets, BT, c->vocab_size, c->padded_vocab_size, stream);
        }
    }
}

static void stage_backward(Stage* st, Activations* a, const floatX* dout, cudaStream_t stream) {
    const GPT2Config* c = &st->config;
    const ParameterTensors* p = &st->params;
    GradTensors* g = &st->grads;
    Scratch* sc = &st->scratch;
    int B = st->B, T = st->T, C = c->channels, NH = c->num_heads, BT = B * T;
    size_t nBTC = (size_t)BT * C;
    if (st->layout.has_head) {
        matmul_backward(sc->dln, st->grad_wte_head, NULL, NULL, a->logits, a->lnf, p->wte, BT, C,
                        c->padded_vocab_size, NULL, stream);
        cudaCheck(cudaMemsetAsync(sc->dresidual, 0, nBTC * sizeof(floatX), stream));
        layernorm_backward(sc->dresidual, g->lnfw, g->lnfb, sc->ln_scratch, sc->dln, stage_output(st, a), p->lnfw,
                           a->lnf_mean, a->lnf_rstd, BT, C, stream);
    } else {
        cudaCheck(cudaMemcpyAsync(sc->dresidual, dout, nBTC * sizeof(floatX), cudaMemcpyDeviceToDevice, stream));
    }
    for (int l = st->layout.num_layers - 1; l >= 0; l--) {
        floatX* residual = l == 0 ? a->x : a->residual3 + (size_t)(l - 1) * nBTC;
        float* bs = sc->bias_scratch;
        // the MLP branch
        const floatX* fch = a->fch + l * nBTC * 4;
        if (st->gelu_fusion) {  // the DGELU epilogue turns d(fch_gelu) into d(fch) inside the GEMM
            matmul_backward(sc->dfch, g->fcprojw + (size_t)l * 4 * C * C, g->fcprojb + l * C, bs, sc->dresidual,
                            a->fch_gelu + l * nBTC * 4, p->fcprojw + (size_t)l * 4 * C * C, BT, 4 * C, C, fch, stream);
        } else {
            matmul_backward(sc->dfch_gelu, g->fcprojw + (size_t)l * 4 * C * C, g->fcprojb + l * C, bs, sc->dresidual,
                            a->fch_gelu + l * nBTC * 4, p->fcprojw + (size_t)l * 4 * C * C, BT, 4 * C, C, NULL, stream);
            gelu_backward(sc->dfch, fch, sc->dfch_gelu, nBTC * 4, stream);
        }
        matmul_backward(sc->dln, g->fcw + (size_t)l * 4 * C * C, g->fcb + l * 4 * C, bs, sc->dfch, a->ln2 + l * nBTC,
                        p->fcw + (size_t)l * 4 * C * C, BT, C, 4 * C, NULL, stream);
        cudaCheck(cudaMemcpyAsync(sc->dresidual2, sc->dresidual, nBTC * sizeof(floatX), cudaMemcpyDeviceToDevice, stream));
        layernorm_backward(sc->dresidual2, g->ln2w + l * C, g->ln2b + l * C, sc->ln_scratch, sc->dln,
                           a->residual2 + l * nBTC, p->ln2w + l * C, a->ln2_mean + l * BT, a->ln2_rstd + l * BT, BT, C,
                           stream);
        // the attention branch
        matmul_backward(sc->datty, g->attprojw + (size_t)l * C * C, g->attprojb + l * C, bs, sc->dresidual2,
                        a->atty + l * nBTC, p->attprojw + (size_t)l * C * C, BT, C, C, NULL, stream);
        attention_backward(sc->dqkv, sc->datt, sc->att_scratch, sc->datty, a->qkv + l * nBTC * 3,
                           a->att + (size_t)l * B * NH * T * T, B, T, C, NH, stream);
        matmul_backward(sc->dln, g->qkvw + (size_t)l * 3 * C * C, g->qkvb + l * 3 * C, bs, sc->dqkv, a->ln1 + l * nBTC,
                        p->qkvw + (size_t)l * 3 * C * C, BT, C, 3 * C, NULL, stream);
        cudaCheck(cudaMemcpyAsync(sc->dresidual, sc->dresidual2, nBTC * sizeof(floatX), cudaMemcpyDeviceToDevice, stream));
        layernorm_backward(sc->dresidual, g->ln1w + l * C, g->ln1b + l * C, sc->ln_scratch, sc->dln, residual,
                           p->ln1w + l * C, a->ln1_mean + l * BT, a->ln1_rstd + l * BT, BT, C, stream);
    }
    if (st->layout.has_embed) { encoder_backward(g->wte, g->wpe, sc->dresidual, a->inputs, B, T, C, stream); }
}

// ----------------------------------------------------------------------------
// 3. the pipeline on this rank: its stage, its list of actions, NCCL to the neighbours

typedef struct {
    float lr, beta1, beta2, eps, weight_decay, grad_clip;
} OptimizerConfig;

typedef struct {
    float scale;           // 0: no loss scaling
    float growth, backoff; // x2 after `interval` clean steps, x0.5 on an overflow
    int interval;
    int good_steps;
} LossScaler;

typedef struct {
    GPT2Config config;
    int P, M, B, T;
    int rank;
    int* layers;
    Stage stage;             // this rank's stage (stage == rank)
    StageLayout* layouts;    // (P) every stage's layout, for gathering checkpoints on rank 0
    Schedule schedule;
    OptimizerConfig opt;
    LossScaler scaler;
    int step, adam_t;
    float last_norm;
    int last_skipped;        // the last step overflowed and was skipped
    int* tokens;             // (M, 2, B*T) host: the step's inputs and targets
    int* slot_of;            // (M) stash slot of each micro-batch, -1 when not in flight
    floatX** act_in;         // (M) received activations (B,T,C)
    floatX** grad_in;        // (M) received gradients of the stage's output
    floatX** send_buf;       // (M) d(input) being sent: backward scratch is reused by the next backward
    float* host_losses;      // (B*T)
    ncclComm_t comm;
    cudaStream_t stream;
} Pipeline;

static char current_action[96] = "start-up";

static StageLayout layout_of(const GPT2Config* c, const int* layers, int P, int s) {
    int begin = 0;
    for (int i = 0; i < s; i++) { begin += layers[i]; }
    return stage_layout(c, begin, layers[s], s == 0, s == P - 1);
}

static void pipeline_init(Pipeline* pp, const GPT2Config* c, int P, const int* layers, int M, int B, int T,
                          const char* schedule_name, int rank, ncclComm_t comm) {
    memset(pp, 0, sizeof(*pp));
    pp->config = *c;
    pp->P = P; pp->M = M; pp->B = B; pp->T = T;
    pp->rank = rank;
    pp->comm = comm;
    pp->layers = (int*)malloc_check(P * sizeof(int));
    memcpy(pp->layers, layers, P * sizeof(int));
    pp->layouts = (StageLayout*)malloc_check(P * sizeof(StageLayout));
    for (int s = 0; s < P; s++) { pp->layouts[s] = layout_of(c, layers, P, s); }
    int rc = schedule_build(schedule_name, P, M, &pp->schedule);
    if (rc == SCHEDULE_ERR_NAME) { fatal("flag -sc expects %s, got '%s'", SCHEDULE_NAMES, schedule_name); }
    char err[512];
    if (rc != 0 || schedule_validate(&pp->schedule, err, sizeof(err)) != 0) {
        fatal("schedule %s for P=%d M=%d is invalid: %s", schedule_name, P, M, rc ? "bad arguments" : err);
    }
    // stash slots: the most micro-batches this rank's list ever holds between forward and backward
    int inflight = 0, peak = 1;
    const ActionList* mine = &pp->schedule.ranks[rank];
    for (int i = 0; i < mine->n; i++) {
        inflight += mine->a[i].type == PP_F ? 1 : mine->a[i].type == PP_B ? -1 : 0;
        if (inflight > peak) { peak = inflight; }
    }
    stage_init(&pp->stage, c, &pp->layouts[rank], B, T, peak);
    size_t nBTC = (size_t)B * T * c->channels;
    pp->tokens = (int*)calloc_check((size_t)M * 2 * B * T, sizeof(int));
    pp->slot_of = (int*)malloc_check(M * sizeof(int));
    for (int m = 0; m < M; m++) { pp->slot_of[m] = -1; }
    pp->act_in = (floatX**)calloc_check(M, sizeof(floatX*));
    pp->grad_in = (floatX**)calloc_check(M, sizeof(floatX*));
    pp->send_buf = (floatX**)calloc_check(M, sizeof(floatX*));
    for (int m = 0; m < M; m++) {
        if (rank > 0) { pp->act_in[m] = (floatX*)cuda_alloc(nBTC * sizeof(floatX)); }
        if (rank > 0) { pp->send_buf[m] = (floatX*)cuda_alloc(nBTC * sizeof(floatX)); }
        if (rank < P - 1) { pp->grad_in[m] = (floatX*)cuda_alloc(nBTC * sizeof(floatX)); }
    }
    pp->host_losses = (float*)malloc_check((size_t)B * T * sizeof(float));
    cudaCheck(cudaStreamCreate(&pp->stream));
}

static Activations* acquire_slot(Pipeline* pp, int m) {
    if (pp->slot_of[m] >= 0) { return &pp->stage.stash[pp->slot_of[m]]; }
    for (int k = 0; k < pp->stage.num_slots; k++) {
        int taken = 0;
        for (int j = 0; j < pp->M; j++) { taken |= pp->slot_of[j] == k; }
        if (!taken) { pp->slot_of[m] = k; return &pp->stage.stash[k]; }
    }
    fatal("rank %d: more micro-batches in flight than its %d stash slots (schedule bug)", pp->rank, pp->stage.num_slots);
    return NULL;
}

// One action of this rank's list. Sends and receives are NCCL point-to-point calls in their own group, queued
// on the compute stream in list order; the schedule validator proved that this order cannot deadlock.
static void run_action(Pipeline* pp, const Action* a, int B, int T, float dloss, double* loss_sum) {
    int m = a->mb;
    Stage* st = &pp->stage;
    size_t n = (size_t)B * T * pp->config.channels;
    char tok[48];
    schedule_action_str(a, tok, sizeof(tok));
    snprintf(current_action, sizeof(current_action), "%s (step %d)", tok, pp->step + 1);
    switch (a->type) {
    case PP_F: {
        Activations* act = acquire_slot(pp, m);
        const int* tokens = pp->tokens + (size_t)m * 2 * B * T;
        cudaCheck(cudaMemcpyAsync(act->inputs, tokens, (size_t)B * T * sizeof(int), cudaMemcpyHostToDevice, pp->stream));
        cudaCheck(cudaMemcpyAsync(act->targets, tokens + B * T, (size_t)B * T * sizeof(int), cudaMemcpyHostToDevice, pp->stream));
        if (pp->rank > 0) {
            cudaCheck(cudaMemcpyAsync(act->x, pp->act_in[m], n * sizeof(floatX), cudaMemcpyDeviceToDevice, pp->stream));
        }
        stage_forward(st, act, B, T, 1, dloss, pp->stream);
        if (pp->rank == pp->P - 1) {
            cudaCheck(cudaMemcpyAsync(pp->host_losses, act->losses, (size_t)B * T * sizeof(float), cudaMemcpyDeviceToHost, pp->stream));
            cudaCheck(cudaStreamSynchronize(pp->stream));
            double sum = 0.0;
            for (int i = 0; i < B * T; i++) { sum += pp->host_losses[i]; }
            *loss_sum += sum / (B * T);
            if (dloss == 0.0f) { pp->slot_of[m] = -1; }
        }
        return;
    }
    case PP_B:
        stage_backward(st, &st->stash[pp->slot_of[m]], pp->rank < pp->P - 1 ? pp->grad_in[m] : NULL, pp->stream);
        pp->slot_of[m] = -1;
        return;
    case PP_SEND_F:
    case PP_SEND_B: {
        int fwd = a->type == PP_SEND_F;
        const floatX* src = fwd ? stage_output(st, &st->stash[pp->slot_of[m]]) : pp->send_buf[m];
        if (!fwd) {
            cudaCheck(cudaMemcpyAsync(pp->send_buf[m], st->scratch.dresidual, n * sizeof(floatX), cudaMemcpyDeviceToDevice, pp->stream));
        }
        ncclCheck(ncclGroupStart());
        ncclCheck(ncclSend(src, n, NCCL_FLOATX, a->peer, pp->comm, pp->stream));
        ncclCheck(ncclGroupEnd());
        if (fwd && dloss == 0.0f) { pp->slot_of[m] = -1; }  // forward only: the slot is free once sent
        return;
    }
    case PP_RECV_F:
    case PP_RECV_B:
        ncclCheck(ncclGroupStart());
        ncclCheck(ncclRecv(a->type == PP_RECV_F ? pp->act_in[m] : pp->grad_in[m], n, NCCL_FLOATX, a->peer, pp->comm,
                           pp->stream));
        ncclCheck(ncclGroupEnd());
        return;
    default:
        fatal("action %s is not supported by this trainer", tok);
    }
}

// Runs this rank's list of a schedule; returns the summed micro-batch losses on the last stage (0 elsewhere).
static double run_schedule(Pipeline* pp, const Schedule* sc, int B, int T, float dloss) {
    double loss_sum = 0.0;
    const ActionList* list = &sc->ranks[pp->rank];
    for (int i = 0; i < list->n; i++) { run_action(pp, &list->a[i], B, T, dloss, &loss_sum); }
    cudaCheck(cudaStreamSynchronize(pp->stream));
    return loss_sum;
}

// sums a few doubles over all ranks (the loss lives on the last stage only), exactly: each value is non-zero
// on at most one rank
static void allreduce_sum(Pipeline* pp, double* x, int n) {
    double* d = (double*)cuda_alloc(n * sizeof(double));
    cudaCheck(cudaMemcpy(d, x, n * sizeof(double), cudaMemcpyHostToDevice));
    ncclCheck(ncclAllReduce(d, d, n, ncclDouble, ncclSum, pp->comm, pp->stream));
    cudaCheck(cudaMemcpyAsync(x, d, n * sizeof(double), cudaMemcpyDeviceToHost, pp->stream));
    cudaCheck(cudaStreamSynchronize(pp->stream));
    cudaCheck(cudaFree(d));
}

static void load_step_tokens(Pipeline* pp, NextBatchFn next, void* ctx, int M) {
    int n = pp->B * pp->T;
    for (int m = 0; m < M; m++) { next(ctx, pp->tokens + (size_t)m * 2 * n, pp->tokens + (size_t)m * 2 * n + n, n); }
}

// The tied wte: stage 0 holds the embedding side of the gradient, the last stage the LM-head side. They swap
// halves and both compute embed + head, so both copies of wte get the same gradient and stay equal.
static void pipeline_sync_tied_wte(Pipeline* pp) {
    Stage* st = &pp->stage;
    int last = pp->P - 1;
    size_t n = tensor_unit_size(&pp->config, WTE);
    if (pp->P == 1) {
        add_inplace(st->grads.wte, st->grad_wte_head, n, pp->stream);
        return;
    }
    if (pp->rank != 0 && pp->rank != last) { return; }
    float* other = (float*)cuda_alloc(n * sizeof(float));
    const float* mine = pp->rank == 0 ? st->grads.wte : st->grad_wte_head;
    int peer = last - pp->rank;
    ncclCheck(ncclGroupStart());
    ncclCheck(ncclSend(mine, n, ncclFloat, peer, pp->comm, pp->stream));
    ncclCheck(ncclRecv(other, n, ncclFloat, peer, pp->comm, pp->stream));
    ncclCheck(ncclGroupEnd());
    if (pp->rank == 0) {
        add_inplace(st->grads.wte, other, n, pp->stream);  // embed += head
    } else {
        cudaCheck(cudaMemcpyAsync(st->grads.wte, other, n * sizeof(float), cudaMemcpyDeviceToDevice, pp->stream));
        add_inplace(st->grads.wte, st->grad_wte_head, n, pp->stream);  // embed, then += head
    }
    cudaCheck(cudaStreamSynchronize(pp->stream));
    cudaCheck(cudaFree(other));
}

// forward and backward of M micro-batches, then the tied-wte gradient sum; returns the mean (unscaled)
// training loss on every rank
static float pipeline_forward_backward(Pipeline* pp, NextBatchFn next, void* ctx) {
    Stage* st = &pp->stage;
    cudaCheck(cudaMemsetAsync(st->grads_memory, 0, st->layout.num_parameters * sizeof(float), pp->stream));
    if (st->grad_wte_head) {
        cudaCheck(cudaMemsetAsync(st->grad_wte_head, 0, st->layout.sizes[WTE] * sizeof(float), pp->stream));
    }
    load_step_tokens(pp, next, ctx, pp->M);
    float scale = pp->scaler.scale > 0.0f ? pp->scaler.scale : 1.0f;
    float dloss = scale / ((float)pp->M * pp->B * pp->T);
    double loss = run_schedule(pp, &pp->schedule, pp->B, pp->T, dloss);
    pipeline_sync_tied_wte(pp);
    allreduce_sum(pp, &loss, 1);
    return (float)(loss / pp->M);
}

// Squared norms per (tensor, layer) slot in checkpoint order, each computed on the stage that owns it, summed
// over ranks (one owner per slot: exact), then added in slot order: the same number at every pipeline depth.
// `unscale` removes the loss scale. An inf/nan gradient on any rank makes the result inf/nan everywhere.
static float pipeline_grad_norm(Pipeline* pp, float unscale) {
    Stage* st = &pp->stage;
    const GPT2Config* c = &pp->config;
    const StageLayout* s = &st->layout;
    int nslots = 4 + 12 * c->num_layers;
    cudaCheck(cudaMemsetAsync(st->norm_slots, 0, nslots * sizeof(float), pp->stream));
    const float* g = st->grads_memory;
    int slot = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        int units = tensor_is_per_layer(i) ? c->num_layers : 1;
        size_t unit = tensor_unit_size(c, i);
        for (int u = 0; u < units; u++, slot++) {
            int owned = tensor_is_per_layer(i) ? (u >= s->layer_begin && u < s->layer_begin + s->num_layers)
                                               : (s->sizes[i] > 0 && (i != WTE || s->has_embed));
            if (!owned) { continue; }
            const float* base = g + (tensor_is_per_layer(i) ? (size_t)(u - s->layer_begin) * unit : 0);
            global_norm_squared(st->norm_slots + slot, base, unit, unscale, st->norm_scratch, pp->stream);
        }
        g += s->sizes[i];
    }
    float* host = (float*)malloc_check(nslots * sizeof(float));
    cudaCheck(cudaMemcpyAsync(host, st->norm_slots, nslots * sizeof(float), cudaMemcpyDeviceToHost, pp->stream));
    cudaCheck(cudaStreamSynchronize(pp->stream));
    double* slots = (double*)malloc_check(nslots * sizeof(double));
    for (int i = 0; i < nslots; i++) { slots[i] = host[i]; }
    allreduce_sum(pp, slots, nslots);
    double sum = 0.0;
    for (int i = 0; i < nslots; i++) { sum += slots[i]; }
    free(host);
    free(slots);
    return (float)sqrt(sum);
}

// The optimizer half of a step: norm, overflow check, clipping, AdamW, loss-scale update.
static void pipeline_update(Pipeline* pp, float lr) {
    Stage* st = &pp->stage;
    snprintf(current_action, sizeof(current_action), "optimizer (step %d)", pp->step + 1);
    float scale = pp->scaler.scale > 0.0f ? pp->scaler.scale : 1.0f;
    float norm = pipeline_grad_norm(pp, 1.0f / scale);
    pp->step++;
    pp->last_norm = norm;
    pp->last_skipped = 0;
    if (!is_finite_norm(norm)) {
        if (pp->scaler.scale <= 0.0f) { fatal("step %d: the gradient norm is %f (no loss scaler to recover)", pp->step, norm); }
        // every rank sees the same inf/nan norm, so every rank skips this step
        pp->last_skipped = 1;
        pp->scaler.scale *= pp->scaler.backoff;
        pp->scaler.good_steps = 0;
        return;
    }
    float clip = pp->opt.grad_clip;
    float grad_scale = ((clip > 0.0f && norm > clip) ? clip / norm : 1.0f) / scale;
    pp->adam_t++;
    float bc1 = 1.0f - powf(pp->opt.beta1, (float)pp->adam_t);
    float bc2 = 1.0f - powf(pp->opt.beta2, (float)pp->adam_t);
    size_t off = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        size_t n = st->layout.sizes[i];
        float wd = tensor_is_decayed(i) ? pp->opt.weight_decay : 0.0f;
        adamw_update(st->params_memory + off, st->master_memory ? st->master_memory + off : NULL, st->grads_memory + off,
                     st->m_memory + off, st->v_memory + off, n, lr, pp->opt.beta1, pp->opt.beta2, bc1, bc2,
                     pp->opt.eps, wd, grad_scale, pp->stream);
        off += n;
    }
    cudaCheck(cudaStreamSynchronize(pp->stream));
    if (pp->scaler.scale > 0.0f && ++pp->scaler.good_steps >= pp->scaler.interval) {
        pp->scaler.scale *= pp->scaler.growth;
        pp->scaler.good_steps = 0;
    }
}

static float pipeline_train_step(Pipeline* pp, NextBatchFn next, void* ctx, float lr) {
    float loss = pipeline_forward_backward(pp, next, ctx);
    pipeline_update(pp, lr);
    return loss;
}

static float pipeline_eval(Pipeline* pp, DataLoader* dl, int batches) {
    double sum = 0.0;
    for (int done = 0; done < batches; done += pp->M) {
        int m = batches - done < pp->M ? batches - done : pp->M;
        Schedule fwd;
        schedule_build_forward(pp->P, m, &fwd);
        load_step_tokens(pp, next_batch_from_loader, dl, m);
        sum += run_schedule(pp, &fwd, pp->B, pp->T, 0.0f);
        schedule_free(&fwd);
    }
    allreduce_sum(pp, &sum, 1);
    return (float)(sum / batches);
}

// ----------------------------------------------------------------------------
// 4. checkpoints (the CPU trainer's format), sampling

typedef enum { BUF_PARAMS, BUF_M, BUF_V } StageBuffer;

// this stage's fp32 copy of params (master weights), m or v, into host memory
static void stage_download(Pipeline* pp, StageBuffer which, float* host) {
    Stage* st = &pp->stage;
    size_t n = st->layout.num_parameters;
    if (which == BUF_PARAMS && st->master_memory == NULL) {
        cudaCheck(cudaMemcpy(host, st->params_memory, n * sizeof(float), cudaMemcpyDeviceToHost));  // FP32: params are fp32
        return;
    }
    const float* src = which == BUF_PARAMS ? st->master_memory : which == BUF_M ? st->m_memory : st->v_memory;
    cudaCheck(cudaMemcpy(host, src, n * sizeof(float), cudaMemcpyDeviceToHost));
}

// rank 0 collects every stage's slices into the whole-model layout (other ranks pass global = NULL)
static void pipeline_gather(Pipeline* pp, StageBuffer which, float* global) {
    size_t mine_n = pp->stage.layout.num_parameters;
    float* mine = (float*)malloc_check(mine_n * sizeof(float));
    stage_download(pp, which, mine);
    float* dbuf = NULL;
    for (int s = pp->P - 1; s >= 0; s--) {  // stage 0 last: its wte wins (both copies are equal anyway)
        size_t n = pp->layouts[s].num_parameters;
        if (s == 0 && pp->rank == 0) {
            stage_copy_global(&pp->config, &pp->layouts[0], mine, global, 1);
        } else if (pp->rank == 0 || pp->rank == s) {
            dbuf = (float*)cuda_alloc(n * sizeof(float));
            if (pp->rank == s) {
                cudaCheck(cudaMemcpy(dbuf, mine, n * sizeof(float), cudaMemcpyHostToDevice));
                ncclCheck(ncclSend(dbuf, n, ncclFloat, 0, pp->comm, pp->stream));
            } else {
                ncclCheck(ncclRecv(dbuf, n, ncclFloat, s, pp->comm, pp->stream));
            }
            cudaCheck(cudaStreamSynchronize(pp->stream));
            if (pp->rank == 0) {
                float* host = (float*)malloc_check(n * sizeof(float));
                cudaCheck(cudaMemcpy(host, dbuf, n * sizeof(float), cudaMemcpyDeviceToHost));
                stage_copy_global(&pp->config, &pp->layouts[s], host, global, 1);
                free(host);
            }
            cudaCheck(cudaFree(dbuf));
        }
    }
    free(mine);
}

static void gather_for_checkpoint(void* ctx, int which, float* global) {
    pipeline_gather((Pipeline*)ctx, which == 0 ? BUF_PARAMS : which == 1 ? BUF_M : BUF_V, global);
}

static void scatter_from_checkpoint(void* ctx, int which, float* global) {
    Pipeline* pp = (Pipeline*)ctx;
    size_t n = pp->stage.layout.num_parameters;
    float* local = (float*)malloc_check(n * sizeof(float));
    stage_copy_global(&pp->config, &pp->stage.layout, local, global, 0);
    cudaCheck(cudaMemcpy(which == 1 ? pp->stage.m_memory : pp->stage.v_memory, local, n * sizeof(float), cudaMemcpyHostToDevice));
    free(local);
}

static void save_checkpoint(Pipeline* pp, const char* out_dir, const DataLoader* dl, uint64_t sample_rng) {
    TrainState ts = {pp->step, pp->adam_t, (int64_t)model_num_parameters(&pp->config), (int64_t)dl->shard,
                     dl->position, sample_rng, pp->scaler.scale, pp->scaler.good_steps};
    checkpoint_save(out_dir, &pp->config, &ts, pp->rank == 0, gather_for_checkpoint, pp);
}

// every rank reads the state file and keeps its own slices of the moments
static void load_state(Pipeline* pp, const char* path, DataLoader* dl, uint64_t* sample_rng) {
    TrainState ts = checkpoint_load_state(path, &pp->config, scatter_from_checkpoint, pp);
    pp->step = ts.step;
    pp->adam_t = ts.adam_t;
    if (pp->scaler.scale > 0.0f && ts.loss_scale > 0.0f) {
        pp->scaler.scale = ts.loss_scale;
        pp->scaler.good_steps = ts.good_steps;
    }
    dataloader_seek(dl, (size_t)ts.shard, ts.position);
    *sample_rng = ts.sample_rng;
}

static void sample_text(Pipeline* pp, const Tokenizer* tok, int gen_tokens, uint64_t* rng) {
    const GPT2Config* c = &pp->config;
    int T = pp->T, last = pp->P - 1;
    int* seq = (int*)malloc_check((size_t)(gen_tokens + 1) * sizeof(int));
    seq[0] = tok->eot_token;
    int Vp = c->padded_vocab_size;
    float* probs = (float*)malloc_check(Vp * sizeof(float));
    float* row_f = (float*)cuda_alloc(Vp * sizeof(float));
    int* dnext = (int*)cuda_alloc(sizeof(int));
    Schedule one;
    schedule_build_forward(pp->P, 1, &one);
    if (pp->rank == 0) { printf("generating:\n---\n"); }
    for (int t = 1; t <= gen_tokens; t++) {
        int ctx = t < T ? t : T;
        memcpy(pp->tokens, seq + t - ctx, ctx * sizeof(int));
        memcpy(pp->tokens + ctx, seq + t - ctx, ctx * sizeof(int));  // targets: unused
        run_schedule(pp, &one, 1, ctx, 0.0f);
        int next = 0;
        if (pp->rank == last) {
            cast_to_float(row_f, pp->stage.stash[0].logits + (size_t)(ctx - 1) * Vp, Vp, pp->stream);
            cudaCheck(cudaMemcpyAsync(probs, row_f, Vp * sizeof(float), cudaMemcpyDeviceToHost, pp->stream));
            cudaCheck(cudaStreamSynchronize(pp->stream));
            float maxval = -INFINITY, sum = 0.0f;
            for (int i = 0; i < c->vocab_size; i++) { if (probs[i] > maxval) { maxval = probs[i]; } }
            for (int i = 0; i < c->vocab_size; i++) { probs[i] = expf(probs[i] - maxval); sum += probs[i]; }
            float coin = random_f32(rng) * sum, cdf = 0.0f;
            next = c->vocab_size - 1;
            for (int i = 0; i < c->vocab_size; i++) { cdf += probs[i]; if (coin < cdf) { next = i; break; } }
        }
        cudaCheck(cudaMemcpy(dnext, &next, sizeof(int), cudaMemcpyHostToDevice));
        ncclCheck(ncclBroadcast(dnext, dnext, 1, ncclInt, last, pp->comm, pp->stream));
        cudaCheck(cudaMemcpyAsync(&next, dnext, sizeof(int), cudaMemcpyDeviceToHost, pp->stream));
        cudaCheck(cudaStreamSynchronize(pp->stream));
        seq[t] = next;
        if (pp->rank == 0) { safe_print(tokenizer_decode(tok, next)); fflush(stdout); }
    }
    if (pp->rank == 0) { printf("\n---\n"); }
    // keep the sampler's RNG equal on every rank, so rank 0's checkpoint of it is the one that advanced
    uint64_t* drng = (uint64_t*)cuda_alloc(sizeof(uint64_t));
    cudaCheck(cudaMemcpy(drng, rng, sizeof(uint64_t), cudaMemcpyHostToDevice));
    ncclCheck(ncclBroadcast(drng, drng, 1, ncclUint64, last, pp->comm, pp->stream));
    cudaCheck(cudaMemcpy(rng, drng, sizeof(uint64_t), cudaMemcpyDeviceToHost));
    schedule_free(&one);
    cudaCheck(cudaFree(drng));
    cudaCheck(cudaFree(row_f));
    cudaCheck(cudaFree(dnext));
    free(seq);
    free(probs);
}

static void stage_free(Stage* st) {
    for (int k = 0; k < st->num_slots; k++) { cudaCheck(cudaFree(st->stash[k].inputs)); }
    free(st->stash);
    cudaCheck(cudaFree(st->scratch.dresidual));
    cudaCheck(cudaFree(st->params_memory));
    if (st->master_memory) { cudaCheck(cudaFree(st->master_memory)); }
    cudaCheck(cudaFree(st->grads_memory));
    if (st->grad_wte_head) { cudaCheck(cudaFree(st->grad_wte_head)); }
    cudaCheck(cudaFree(st->m_memory));
    cudaCheck(cudaFree(st->v_memory));
    cudaCheck(cudaFree(st->norm_slots));
    cudaCheck(cudaFree(st->norm_scratch));
}

static void pipeline_free(Pipeline* pp) {
    stage_free(&pp->stage);
    for (int m = 0; m < pp->M; m++) {
        if (pp->act_in[m]) { cudaCheck(cudaFree(pp->act_in[m])); }
        if (pp->grad_in[m]) { cudaCheck(cudaFree(pp->grad_in[m])); }
        if (pp->send_buf[m]) { cudaCheck(cudaFree(pp->send_buf[m])); }
    }
    free(pp->act_in);
    free(pp->grad_in);
    free(pp->send_buf);
    free(pp->slot_of);
    free(pp->tokens);
    free(pp->host_losses);
    free(pp->layers);
    free(pp->layouts);
    schedule_free(&pp->schedule);
    cudaCheck(cudaStreamDestroy(pp->stream));
}

// ----------------------------------------------------------------------------
// 5. the training loop of one rank, and main

#define printf0(...) do { if (rank == 0 && !args->quiet) { printf(__VA_ARGS__); } } while (0)

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// one rank's whole run: build its stage, train, validate, sample, checkpoint
static int train_rank(const TrainArgs* args, int rank, int world, ncclComm_t comm) {
    int P = train_args_stages(args, world), B = args->B, T = args->T, M = args->M;
    LRSchedule lrs = {lr_schedule_parse(args->lr_schedule_name), args->lr, args->warmup, args->max_steps, args->final_frac};
    const char* model_arg = args->model_arg;
    int from_file = strlen(model_arg) > 4 && strcmp(model_arg + strlen(model_arg) - 4, ".bin") == 0;
    GPT2Config config = from_file ? model_read_config(model_arg) : config_from_descriptor(model_arg);
    if (T > config.max_seq_len) {
        fatal("flag -t %d exceeds the model's maximum sequence length %d (%s)", T, config.max_seq_len, model_arg);
    }
    int* layers = (int*)malloc_check(P * sizeof(int));
    int* first = (int*)malloc_check(P * sizeof(int));
    char err[512];
    PartitionCosts costs = partition_gpt2_costs(B, T, config.channels, config.padded_vocab_size);
    int prc = args->layers_arg ? partition_parse(args->layers_arg, config.num_layers, P, layers, first, err, sizeof(err))
                               : partition_balance(config.num_layers, P, &costs, layers, first, err, sizeof(err));
    if (prc != 0) { fatal("%s %s: %s", args->layers_arg ? "flag -pl" : "flag -pp", args->layers_arg ? args->layers_arg : "", err); }
    char resume_model[1100], resume_state[1100];
    if (args->out_dir && rank == 0) { mkdir_p(args->out_dir); }
    if (args->resume) {
        int s = checkpoint_find_latest(args->out_dir);
        if (s < 0) { fatal("-y 1: no complete checkpoint (DONE_* file) in %s", args->out_dir); }
        snprintf(resume_model, sizeof(resume_model), "%s/model_%08d.bin", args->out_dir, s);
        snprintf(resume_state, sizeof(resume_state), "%s/state_%08d.bin", args->out_dir, s);
        GPT2Config saved = model_read_config(resume_model);
        if (memcmp(&saved, &config, sizeof(config)) != 0) {
            fatal("%s: the checkpoint's model disagrees with -e %s", resume_model, model_arg);
        }
    }

    Pipeline pp;
    pipeline_init(&pp, &config, P, layers, M, B, T, args->schedule_name, rank, comm);
    pp.opt = (OptimizerConfig){args->lr, 0.9f, 0.95f, 1e-8f, args->weight_decay, args->grad_clip};
    pp.scaler = (LossScaler){args->loss_scale, 2.0f, 0.5f, args->scale_interval, 0};
    pp.stage.gelu_fusion = args->gelu_fusion;
    float* host = (float*)malloc_check(pp.stage.layout.num_parameters * sizeof(float));
    const char* src = args->resume ? resume_model : from_file ? model_arg : NULL;
    if (src) { model_read_stage(src, &config, &pp.stage.layout, host); }
    else { stage_random_init(&config, &pp.stage.layout, host); }
    stage_set_params(&pp.stage, host);
    free(host);

    DataLoader train_loader, val_loader;
    dataloader_init(&train_loader, args->train_pattern, B, T, config.vocab_size);
    dataloader_init(&val_loader, args->val_pattern, B, T, config.vocab_size);
    int val_batches = args->val_batches;
    if (val_batches > dataloader_num_batches(&val_loader)) { val_batches = (int)dataloader_num_batches(&val_loader); }
    Tokenizer tokenizer;
    tokenizer_init(&tokenizer, args->tokenizer_path);
    uint64_t sample_rng = 1337;
    if (args->resume) { load_state(&pp, resume_state, &train_loader, &sample_rng); }
    Logger logger;
    logger_init(&logger, rank == 0 ? args->out_dir : NULL, args->resume);

    printf0("model: L=%d C=%d NH=%d V=%d (padded %d) maxT=%d, %zu parameters, %s\n", config.num_layers, config.channels,
            config.num_heads, config.vocab_size, config.padded_vocab_size, config.max_seq_len,
            model_num_parameters(&config), PRECISION_NAME);
    printf0("batch: B=%d T=%d M=%d -> %d tokens per step; pipeline P=%d, schedule %s%s\n", B, T, M, B * T * M, P,
            args->schedule_name, pp.scaler.scale > 0 ? ", dynamic loss scaling" : "");
    for (int s = 0; s < P; s++) {
        printf0("stage %d: %d layers from %d%s%s, %zu parameters\n", s, pp.layouts[s].num_layers,
                pp.layouts[s].layer_begin, pp.layouts[s].has_embed ? " + embeddings" : "",
                pp.layouts[s].has_head ? " + lnf/LM head" : "", pp.layouts[s].num_parameters);
    }
    int max_steps = args->max_steps;
    for (int step = pp.step; step <= max_steps; step++) {
        int last = step == max_steps;
        if (val_batches > 0 && ((args->val_every > 0 && step % args->val_every == 0) || last)) {
            dataloader_reset(&val_loader);
            float val_loss = pipeline_eval(&pp, &val_loader, val_batches);
            printf0("step %4d | val loss %.6f\n", step, val_loss);
            if (rank == 0) { logger_log_val(&logger, step, val_loss); }
        }
        if (args->gen_tokens > 0 && ((args->sample_every > 0 && step > 0 && step % args->sample_every == 0) || last)) {
            sample_text(&pp, &tokenizer, args->gen_tokens, &sample_rng);
        }
        if (last) { break; }
        double t0 = now_seconds();
        float lr = lr_at(&lrs, step);
        float loss = pipeline_train_step(&pp, next_batch_from_loader, &train_loader, lr);
        double secs = now_seconds() - t0;
        if (args->losses_out) { args->losses_out[step] = loss; }
        printf0("step %4d/%d | train loss %.6f | norm %.4f | lr %.2e | %.1f ms | %.0f tok/s%s", step + 1, max_steps,
                loss, pp.last_norm, lr, secs * 1e3, B * T * M / secs, pp.last_skipped ? " | overflow: step skipped" : "");
        if (pp.scaler.scale > 0) { printf0(" | loss scale %g", pp.scaler.scale); }
        printf0("\n");
        if (rank == 0) { logger_log_train(&logger, step + 1, loss, lr, pp.last_norm); }
        if (args->out_dir && ((args->ckpt_every > 0 && (step + 1) % args->ckpt_every == 0) || step + 1 == max_steps)) {
            save_checkpoint(&pp, args->out_dir, &train_loader, sample_rng);
        }
    }
    logger_free(&logger);
    tokenizer_free(&tokenizer);
    dataloader_free(&train_loader);
    dataloader_free(&val_loader);
    pipeline_free(&pp);
    free(layers);
    free(first);
    return 0;
}

#ifndef TESTING
#ifdef USE_MPI
static void abort_all_ranks(void) { MPI_Abort(MPI_COMM_WORLD, 1); }
#endif

// Slurm without MPI: rank 0 publishes the NCCL id in a file (written atomically), the others wait for it
static void rendezvous_file(const char* dir, int rank, ncclUniqueId* id) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/ncclUniqueId.bin", dir);
    if (rank == 0) {
        ncclCheck(ncclGetUniqueId(id));
        AtomicFile af;
        atomic_open(&af, path);
        atomic_write(&af, id, sizeof(*id), 1);
        atomic_commit(&af);
        return;
    }
    for (int tries = 0; tries < 600; tries++) {
        FILE* f = fopen(path, "rb");
        if (f) { fread_check(id, sizeof(*id), 1, f, path); fclose(f); return; }
        usleep(100000);
    }
    fatal("rank %d: no %s after 60 s: is rank 0 running with the same -pf directory?", rank, path);
}

// One process driving all P GPUs, one host thread per rank (and, under the SIMT CPU runtime, how the whole
// pipeline runs inside one test process: its NCCL ranks are threads).
typedef struct {
    const TrainArgs* args;
    int rank, world, devices;
    ncclUniqueId id;
    int rc;
} RankThread;

static void* rank_thread(void* arg) {
    RankThread* r = (RankThread*)arg;
    cudaCheck(cudaSetDevice(r->rank % r->devices));
    ncclComm_t comm;
    ncclCheck(ncclCommInitRank(&comm, r->world, r->id, r->rank));
    r->rc = train_rank(r->args, r->rank, r->world, comm);
    ncclCommDestroy(comm);
    return NULL;
}

static int run_ranks_as_threads(const TrainArgs* args, int P, int devices) {
    RankThread* ranks = (RankThread*)calloc_check(P, sizeof(RankThread));
    pthread_t* threads = (pthread_t*)calloc_check(P, sizeof(pthread_t));
    ncclUniqueId id;
    ncclCheck(ncclGetUniqueId(&id));
    for (int r = 0; r < P; r++) {
        ranks[r] = (RankThread){args, r, P, devices, id, 0};
        if (pthread_create(&threads[r], NULL, rank_thread, &ranks[r]) != 0) { fatal("cannot start the thread of rank %d", r); }
    }
    int rc = 0;
    for (int r = 0; r < P; r++) { pthread_join(threads[r], NULL); rc |= ranks[r].rc; }
    free(ranks);
    free(threads);
    return rc;
}

int main(int argc, char** argv) {
    TrainArgs args;
    train_args_default(&args, PRECISION_FP16 ? 65536.0f : 0.0f);  // FP16 needs a scaler; BF16 has fp32's range
    int rank = 0, world = 1;
#ifdef USE_MPI
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (world > 1) { fatal_hook = abort_all_ranks; }  // alone, a plain exit says it more quietly
#endif
    train_args_parse(&args, argc, argv, 1, rank == 0);
    if (args.rendezvous_dir) {
        const char* r = getenv("SLURM_PROCID");
        const char* n = getenv("SLURM_NTASKS");
        if (!r || !n) { fatal("flag -pf needs SLURM_PROCID and SLURM_NTASKS in the environment (run under srun)"); }
        rank = atoi(r);
        world = atoi(n);
    }
    int devices = 0;
    cudaError_t err = cudaGetDeviceCount(&devices);
    if (err != cudaSuccess || devices == 0) {
        fatal("no CUDA device: %s. This is the GPU trainer; without a GPU use ./train_gpt2_pp_cpu",
              err != cudaSuccess ? cudaGetErrorString(err) : "cudaGetDeviceCount found 0 devices");
    }
    cublas_init();
    int rc;
    if (args.print_schedule) {
        Schedule sc;
        if (schedule_build(args.schedule_name, args.P > 0 ? args.P : world, args.M, &sc) != 0) {
            fatal("flag -sc expects %s, got '%s'", SCHEDULE_NAMES, args.schedule_name);
        }
        if (rank == 0) { schedule_fprint(&sc, stdout); schedule_print_ascii_timeline(&sc, stdout); }
        schedule_free(&sc);
        return 0;
    }
    if (world == 1 && args.P > 1) {
        rc = run_ranks_as_threads(&args, args.P, devices);
    } else {
        cudaCheck(cudaSetDevice(rank % devices));
        ncclUniqueId id;
        if (args.rendezvous_dir) { rendezvous_file(args.rendezvous_dir, rank, &id); }
        else {
            if (rank == 0) { ncclCheck(ncclGetUniqueId(&id)); }
#ifdef USE_MPI
            MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD);
#endif
        }
        ncclComm_t comm;
        ncclCheck(ncclCommInitRank(&comm, world, id, rank));
        rc = train_rank(&args, rank, world, comm);
        ncclCommDestroy(comm);
    }
    cublas_destroy();
#ifdef USE_MPI
    MPI_Finalize();
#endif
    return rc;
}
#endif
