/*
GPT-2 training on GPUs, split into pipeline stages: one or several stages per rank, one GPU per rank, or every
rank on one GPU.

Read train_gpt2_pp.c first: this file is the same trainer with the layer loops replaced by the CUDA kernels
of llmc/ (the .cuh files) and the messages carried by NCCL. What stays the same, deliberately:
  - the model layout and checkpoints (llmc/model.h and llmc/train_state.h): a checkpoint written here resumes
    on the CPU trainer and the other way round;
  - the schedules (llmc/schedule.h): each rank walks its list of actions (forward, backward or its two halves
    I and W, send, receive), exactly the list the CPU trainer walks: every builder (-sc, also auto) or a
    schedule file (-sf);
  - the host bookkeeping (llmc/pipeline.h): the split, the stash slots, the grad-norm slots, the step's tokens,
    the trace, the measured bubble and every line printed;
  - the determinism rules: backwards in micro-batch order on every stage (B and W; here I too, which adds the
    layernorm and encoder weight gradients), I+W the float operations of B, the two halves of the tied wte
    gradient added once (embedding + head, in that order), the grad norm summed per (tensor, layer) slot in checkpoint order. With
    the kernels' fixed reduction orders and parameters laid out so that every GEMM operand has the same
    alignment at any depth (DeviceLayout), a run gives the same bits at every pipeline depth;
  - activation recomputation (-rc except_last|always): a stash slot keeps the stage's input, and the rest is
    one stage-wide work copy that the forward refills before a backward (stage_restore), with the same bits.
What is new: mixed precision. Parameters and activations are floatX (PRECISION=FP32|BF16|FP16 at build time),
AdamW keeps fp32 master weights and moments, parameter gradients are fp32. FP16 adds dynamic loss scaling:
the last stage scales the loss, an overflow anywhere (an inf/nan gradient) shows up in the all-reduced grad
norm on every rank, and then every rank skips the step and halves the scale; after 2000 clean steps it
doubles (PyTorch GradScaler's defaults).

Launch: mpirun -np P ./train_gpt2_pp [flags]        one process per rank, the node-local rank picks the GPU
        ./train_gpt2_pp -pp P [flags]               one process, one thread per rank: on P GPUs through NCCL,
                                                    or, with fewer GPUs than ranks (or -1g 1), all on GPU 0
        srun -n P ./train_gpt2_pp -pf <dir> [flags] Slurm without MPI: the NCCL id through a file
With -dp D every launch runs D*P ranks: D replicas of the pipeline (llmc/data_parallel.h's grid), one NCCL
communicator over all of them, the gradients summed in a fixed order by our own shard messages (section 4).
*/
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sched.h>
#include <pthread.h>
#include <nccl.h>
#ifdef USE_MPI
#include <mpi.h>
#endif

// defines: floatX, PRECISION_NAME, cudaCheck (through fatal)
#include "llmc/cuda_common.h"
// defines: cublas_init, cublas_destroy (one cuBLASLt handle and workspace per host thread)
#include "llmc/cublas_common.h"
// defines: cast_to_floatX, cast_to_float, add_inplace
#include "llmc/cuda_utils.cuh"
// defines: encoder_forward, encoder_backward
#include "llmc/encoder.cuh"
// defines: layernorm_forward, fused_residual_layernorm_forward, residual_forward, layernorm_backward
#include "llmc/layernorm.cuh"
// defines: matmul_forward, matmul_backward
#include "llmc/matmul.cuh"
// defines: flash_attention_forward, flash_attention_backward
#include "llmc/flash_attention.cuh"
// defines: gelu_forward, gelu_backward
#include "llmc/gelu.cuh"
// defines: fused_classifier, losses_mean
#include "llmc/fused_classifier.cuh"
// defines: adamw_update
#include "llmc/adamw.cuh"
// defines: GlobalNorm, global_norm_init, global_norm_squared, is_finite_norm
#include "llmc/global_norm.cuh"
// host side, shared with the CPU trainer: checks, model layout and checkpoints, data, schedules, bookkeeping
#include "llmc/utils.h"
#include "llmc/rand.h"
#include "llmc/model.h"
#include "llmc/train_state.h"
#include "llmc/dataloader.h"
#include "llmc/tokenizer.h"
#include "llmc/lr_schedule.h"
#include "llmc/logger.h"
#include "llmc/schedule.h"
#include "llmc/schedule_sim.h"
#include "llmc/schedule_text.h"
#include "llmc/schedule_auto.h"
#include "llmc/partition.h"
#include "llmc/train_args.h"
#include "llmc/pipeline.h"
#include "llmc/sampler.h"

#define ncclCheck(status) nccl_check_((status), __FILE__, __LINE__)
static void nccl_check_(ncclResult_t status, const char* file, int line) {
    if (status != ncclSuccess) { fatal("NCCL error at %s:%d: %s", file, line, ncclGetErrorString(status)); }
}

// ----------------------------------------------------------------------------
// 1. a pipeline stage on one GPU: parameters, gradients, optimizer state, activation stash, scratch

typedef struct {
    floatX* wte; floatX* wpe; floatX* ln1w; floatX* ln1b; floatX* qkvw; floatX* qkvb; floatX* attprojw;
    floatX* attprojb; floatX* ln2w; floatX* ln2b; floatX* fcw; floatX* fcb; floatX* fcprojw; floatX* fcprojb;
    floatX* lnfw; floatX* lnfb;
} ParameterTensors;  // shapes as in train_gpt2_pp.c: attention tensors x na layers, MLP tensors x nm

typedef struct {
    float* wte; float* wpe; float* ln1w; float* ln1b; float* qkvw; float* qkvb; float* attprojw; float* attprojb;
    float* ln2w; float* ln2b; float* fcw; float* fcb; float* fcprojw; float* fcprojb; float* lnfw; float* lnfb;
} GradTensors;  // fp32, same layout

// Where a stage's tensors live on the device. The checkpoint's order, but every tensor, and every layer's
// slice of a per-layer tensor, starts at a multiple of ALIGN_ELEMS elements: 256 bytes in BF16/FP16, 512 in
// fp32 (gradients, master weights, moments share the element layout). Packed, a stage-local offset depends on
// how many layers precede it on the stage (at P=2 stage 1's qkvw was 128-B aligned, 256-B at P=1); cuBLASLt's
// heuristic is told each pointer's alignment and may pick another algorithm, so another summation order, for
// another alignment. Aligned like this, every GEMM operand has the same alignment at any P, and the same bits
// follow. The padding is zero in every buffer and AdamW leaves zeros at zero.
#define ALIGN_ELEMS 128
static size_t align_elems(size_t n) { return (n + ALIGN_ELEMS - 1) / ALIGN_ELEMS * ALIGN_ELEMS; }

typedef struct {
    size_t offset[NUM_PARAMETER_TENSORS];  // first element of tensor i
    size_t unit[NUM_PARAMETER_TENSORS];    // elements of one layer's slice (the whole tensor when not per layer)
    size_t stride[NUM_PARAMETER_TENSORS];  // elements from one slice to the next
    int units[NUM_PARAMETER_TENSORS];      // slices: the layers whose half of the tensor's kind the stage holds
                                           // (attn_layers or mlp_layers), 1, or 0 when the stage lacks the tensor
    size_t total;
} DeviceLayout;

static DeviceLayout device_layout(const GPT2Config* c, const StageLayout* s) {
    DeviceLayout d;
    d.total = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        int layers = tensor_is_attention(i) ? s->attn_layers : s->mlp_layers;
        d.units[i] = s->sizes[i] == 0 ? 0 : tensor_is_per_layer(i) ? layers : 1;
        d.unit[i] = tensor_is_per_layer(i) ? tensor_unit_size(c, i) : s->sizes[i];
        d.stride[i] = align_elems(d.unit[i]);
        d.offset[i] = d.total;
        d.total += d.units[i] * d.stride[i];
    }
    return d;
}

// a packed (checkpoint-layout) offset into the stage's slice, as a device offset
static size_t device_offset(const DeviceLayout* d, const StageLayout* s, size_t packed) {
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        if (packed < s->sizes[i]) { return d->offset[i] + packed / d->unit[i] * d->stride[i] + packed % d->unit[i]; }
        packed -= s->sizes[i];
    }
    fatal("offset %zu is outside the stage's parameters", packed);
    return 0;
}

// copies between a host buffer in the checkpoint's packed stage layout and a device fp32 buffer in DeviceLayout
static void layout_copy(const DeviceLayout* d, float* device, float* host, int to_device, cudaStream_t stream) {
    size_t packed = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        for (int u = 0; u < d->units[i]; u++, packed += d->unit[i]) {
            float* dev = device + d->offset[i] + u * d->stride[i];
            cudaCheck(cudaMemcpyAsync(to_device ? dev : host + packed, to_device ? host + packed : dev,
                                      d->unit[i] * sizeof(float),
                                      to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost, stream));
        }
    }
    cudaCheck(cudaStreamSynchronize(stream));
}

// The activations of one micro-batch on one stage (the stash), as in train_gpt2_pp.c but in floatX, and with
// attention's per-row logsumexp where the CPU trainer keeps the (B,NH,T,T) probabilities. Per-layer tensors
// are (na, ...) for the attention halves the stage holds and (nm, ...) for its MLP halves (StageLayout's
// attn_layers and mlp_layers), each layer's slice aligned like the parameters (Stage's act strides). Under -rc
// the slot's own part is inputs, targets, x, losses and kept; the other pointers are the stage's work copy.
typedef struct {
    int* inputs;       // (B,T) device
    int* targets;      // (B,T) device
    floatX* x;         // (B,T,C) residual stream entering the stage
    floatX* ln1;       // (na,B,T,C)
    float* ln1_mean;   // (na,B,T)
    float* ln1_rstd;   // (na,B,T)
    floatX* qkv;       // (na,B,T,3C)
    float* lse;        // (na,B,NH,T) attention's softmax log-denominator per row: with qkv and atty, all
                       // that flash attention's backward needs (no T x T matrix)
    floatX* atty;      // (na,B,T,C)
    floatX* residual2; // (na,B,T,C)
    floatX* ln2;       // (nm,B,T,C)
    float* ln2_mean;   // (nm,B,T)
    float* ln2_rstd;   // (nm,B,T)
    floatX* fch;       // (nm,B,T,4C)
    floatX* fch_gelu;  // (nm,B,T,4C)
    floatX* residual3; // (nm,B,T,C) the stage's output is its last half's residual (stage_output)
    floatX* lnf;       // (B,T,C) last stage
    float* lnf_mean;   // (B,T)
    float* lnf_rstd;   // (B,T)
    floatX* logits;    // (B,T,Vp) -> d(logits) when training
    float* losses;     // (B,T)
    floatX* kept;      // split backward only: (nm x KEPT_MLP + na x KEPT_ATTN, B,T,C) what I keeps for W (kept_layer)
} Activations;

// What a split backward keeps from I for W: the gradient at the output of each matmul (their inputs are in
// the stash already), in units of the aligned (B,T,C) stride: of an MLP half fcproj C and fc 4C, of an
// attention half attproj C and qkv 3C; the MLP halves' first, then the attention halves'. The LM head needs
// none (d(logits) stays in place of the logits), nor do the layernorms and the encoder, whose weight
// gradients I computes (they are cheap, and layernorm.cuh computes d(input) and d(weight) in one pass).
#define KEPT_MLP 5
#define KEPT_ATTN 4
typedef struct {
    floatX *dfcproj, *dfc;    // of an MLP half
    floatX *dattproj, *dqkv;  // of an attention half
} LayerOutputGrads;

// per-layer strides of the stash, in elements
typedef struct { size_t BTC, BT, lse; } ActStrides;

static ActStrides act_strides(const GPT2Config* c, int B, int T) {
    size_t BT = (size_t)B * T;
    return (ActStrides){align_elems(BT * c->channels), align_elems(BT), align_elems((size_t)B * c->num_heads * T)};
}

typedef struct {
    floatX* dresidual;  // (B,T,C)
    floatX* dresidual2; // (B,T,C)
    floatX* dln;        // (B,T,C)
    floatX* datty;      // (B,T,C)
    floatX* dqkv;       // (B,T,3C)
    floatX* dfch;       // (B,T,4C)
    floatX* dfch_gelu;  // (B,T,4C)
    float* att_scratch; // flash_attention_backward's per-row dout . out: FLASH_ATTENTION_BACKWARD_SCRATCH
    floatX* proj;       // (B,T,C) output of the attention and MLP projections before the residual add
    float* bias_scratch;// matmul_backward's bias partials: 32 * 4C
    float* ln_scratch;  // layernorm_backward's partials: 64 * C
} Scratch;

typedef struct {
    GPT2Config config;
    StageLayout layout;
    DeviceLayout dl;
    ActStrides as;
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
    size_t slot_bytes;           // what each stash slot allocated: activation_slot_bytes
    int recompute;               // -rc (Recompute): the slots share `work` for all but their own part
    Activations work;            // -rc: the one copy of the work part, refilled by stage_restore
    void* work_memory;
    size_t work_bytes;
    int work_mb;                 // the micro-batch whose forward `work` holds, -1 for none
    size_t allocated[MEM_CATEGORIES];  // every device buffer of the stage, by category (llmc/pipeline.h)
    Scratch scratch;
    int gelu_fusion;             // GELU through cuBLASLt's GELU_AUX / DGELU epilogues (-ge 1) or its own kernels
} Stage;

// device memory, zeroed on `stream` (the padding of DeviceLayout, and AdamW's moments, must start at 0)
static void* cuda_alloc(size_t bytes, cudaStream_t stream) {
    void* p = NULL;
    cudaCheck(cudaMalloc(&p, bytes > 0 ? bytes : 1));
    cudaCheck(cudaMemsetAsync(p, 0, bytes > 0 ? bytes : 1, stream));
    return p;
}

// Every buffer of a stage is allocated through here and counted in its category: what a run prints as
// allocated, set against what -plan computes without allocating (stage_memory_plan)
static void* cuda_alloc_counted(size_t* counter, size_t bytes, cudaStream_t stream) {
    *counter += bytes;
    return cuda_alloc(bytes, stream);
}

static void device_copy(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
    cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream));
}

// carves typed pieces out of one allocation; with base NULL it only counts (a dry run)
typedef struct { char* base; size_t used; } Arena;
static void* arena_take(Arena* a, size_t bytes) {
    void* p = bytes && a->base ? a->base + a->used : NULL;
    a->used += (bytes + 255) / 256 * 256;  // every piece 256-byte aligned as cudaMalloc's (flash attention needs 16)
    return p;
}

// With recomputation (-rc, as in train_gpt2_pp.c) a stash slot keeps only its part (SLOT_PART: the tokens,
// the stage's input x, the losses, what I keeps for W) and every slot of the stage shares one copy of the rest
// (WORK_PART, Stage's `work`), which the forward fills again before a backward (stage_restore). What comes back
// from the next stage is in the grad_in buffers here, not in the stash. Without -rc a slot has ALL_PARTS.
enum { SLOT_PART = 1, WORK_PART = 2, ALL_PARTS = 3 };

// lays out the parts of one stash slot in `a` (pointers into it in *act, NULL for the parts not asked for) and
// returns its bytes: the one source of truth for what a slot and the work copy allocate and for what the plan
// and the stash report print. ALL_PARTS lays the slot part's pieces around the work part's, in field order.
static size_t activations_carve(const GPT2Config* c, const StageLayout* s, int B, int T, int split, int parts,
                                Arena* a, Activations* act) {
    size_t slot = (parts & SLOT_PART) != 0, work = (parts & WORK_PART) != 0;  // a piece not asked for takes 0
    size_t BT = (size_t)B * T, C = c->channels, X = sizeof(floatX), F = sizeof(float);
    size_t na = work * s->attn_layers, nm = work * s->mlp_layers, head = work * s->has_head;  // the work part's
    size_t sBT = slot * BT, shead = slot * s->has_head;                                       // the slot part's
    size_t kept = slot * split * ((size_t)s->mlp_layers * KEPT_MLP + (size_t)s->attn_layers * KEPT_ATTN);
    ActStrides st = act_strides(c, B, T);
    act->inputs = (int*)arena_take(a, sBT * sizeof(int));
    act->targets = (int*)arena_take(a, sBT * sizeof(int));
    act->x = (floatX*)arena_take(a, sBT * C * X);
    act->ln1 = (floatX*)arena_take(a, na * st.BTC * X);
    act->ln1_mean = (float*)arena_take(a, na * st.BT * F);
    act->ln1_rstd = (float*)arena_take(a, na * st.BT * F);
    act->qkv = (floatX*)arena_take(a, na * 3 * st.BTC * X);
    act->lse = (float*)arena_take(a, na * st.lse * F);
    act->atty = (floatX*)arena_take(a, na * st.BTC * X);
    act->residual2 = (floatX*)arena_take(a, na * st.BTC * X);
    act->ln2 = (floatX*)arena_take(a, nm * st.BTC * X);
    act->ln2_mean = (float*)arena_take(a, nm * st.BT * F);
    act->ln2_rstd = (float*)arena_take(a, nm * st.BT * F);
    act->fch = (floatX*)arena_take(a, nm * 4 * st.BTC * X);
    act->fch_gelu = (floatX*)arena_take(a, nm * 4 * st.BTC * X);
    act->residual3 = (floatX*)arena_take(a, nm * st.BTC * X);
    act->lnf = (floatX*)arena_take(a, head * BT * C * X);
    act->lnf_mean = (float*)arena_take(a, head * BT * F);
    act->lnf_rstd = (float*)arena_take(a, head * BT * F);
    act->logits = (floatX*)arena_take(a, head * BT * c->padded_vocab_size * X);
    act->losses = (float*)arena_take(a, shead * BT * F);
    act->kept = (floatX*)arena_take(a, kept * st.BTC * X);
    return a->used;
}

// the bytes of the parts of one stash slot of stage layout s (split: the schedule splits backwards into I and
// W): ALL_PARTS, or under -rc SLOT_PART per slot and WORK_PART once per stage
static size_t activation_slot_bytes(const GPT2Config* c, const StageLayout* s, int B, int T, int split, int parts) {
    Arena dry = {NULL, 0};
    Activations unused;
    return activations_carve(c, s, B, T, split, parts, &dry, &unused);
}

// -rc: a slot's work-part pointers become the stage's work copy's (its own part stays)
static void activations_share(Activations* slot, const Activations* work) {
    Activations own = *slot;
    *slot = *work;
    slot->inputs = own.inputs;
    slot->targets = own.targets;
    slot->x = own.x;
    slot->losses = own.losses;
    slot->kept = own.kept;
}

static void scratch_carve(const GPT2Config* c, int B, int T, Arena* a, Scratch* sc) {
    size_t BT = (size_t)B * T, C = c->channels, X = sizeof(floatX);
    sc->dresidual = (floatX*)arena_take(a, BT * C * X);
    sc->dresidual2 = (floatX*)arena_take(a, BT * C * X);
    sc->dln = (floatX*)arena_take(a, BT * C * X);
    sc->datty = (floatX*)arena_take(a, BT * C * X);
    sc->dqkv = (floatX*)arena_take(a, BT * 3 * C * X);
    sc->dfch = (floatX*)arena_take(a, BT * 4 * C * X);
    sc->dfch_gelu = (floatX*)arena_take(a, BT * 4 * C * X);
    sc->att_scratch = (float*)arena_take(a, FLASH_ATTENTION_BACKWARD_SCRATCH(B, T, c->num_heads) * sizeof(float));
    sc->proj = (floatX*)arena_take(a, BT * C * X);
    sc->bias_scratch = (float*)arena_take(a, MATMUL_BACKWARD_SCRATCH_FLOATS(4 * C) * sizeof(float));
    sc->ln_scratch = (float*)arena_take(a, LAYERNORM_BACKWARD_SCRATCH_FLOATS(C) * sizeof(float));
}

// the bytes of a stage's scratch (one allocation, carved by scratch_carve)
static size_t scratch_bytes(const GPT2Config* c, int B, int T) {
    Arena dry = {NULL, 0};
    Scratch unused;
    scratch_carve(c, B, T, &dry, &unused);
    return dry.used;
}

// points the 16 typed pointers at their tensors in DeviceLayout (NULL for tensors the stage lacks)
static void point_tensors(void** ptrs, char* memory, const DeviceLayout* d, size_t elem_size) {
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) { ptrs[i] = d->units[i] ? memory + d->offset[i] * elem_size : NULL; }
}

// -rc: never (stash everything), except_last (rerun a micro-batch's forward before its backward unless the
// stage's work copy still holds it), always (rerun it before every B and I): train_gpt2_pp.c's Recompute
typedef enum { RC_NEVER, RC_EXCEPT_LAST, RC_ALWAYS } Recompute;

// moments: floats of each AdamW moment (the whole DeviceLayout, or under ZeRO-1 this rank's shard, packed)
static void stage_init(Stage* st, const GPT2Config* c, const StageLayout* s, int B, int T, int num_slots, int split,
                       int recompute, size_t moments, cudaStream_t stream) {
    memset(st, 0, sizeof(*st));
    st->config = *c;
    st->layout = *s;
    st->dl = device_layout(c, s);
    st->as = act_strides(c, B, T);
    st->B = B;
    st->T = T;
    size_t n = st->dl.total, *mem = st->allocated;
    st->params_memory = (floatX*)cuda_alloc_counted(&mem[MEM_PARAMETERS], n * sizeof(floatX), stream);
    if (!PRECISION_FP32) {
        st->master_memory = (float*)cuda_alloc_counted(&mem[MEM_PARAMETERS], n * sizeof(float), stream);
    }
    st->grads_memory = (float*)cuda_alloc_counted(&mem[MEM_GRADIENTS], n * sizeof(float), stream);
    st->m_memory = (float*)cuda_alloc_counted(&mem[MEM_OPTIMIZER], moments * sizeof(float), stream);
    st->v_memory = (float*)cuda_alloc_counted(&mem[MEM_OPTIMIZER], moments * sizeof(float), stream);
    point_tensors((void**)&st->params, (char*)st->params_memory, &st->dl, sizeof(floatX));
    point_tensors((void**)&st->grads, (char*)st->grads_memory, &st->dl, sizeof(float));
    if (s->has_head) {
        st->grad_wte_head = (float*)cuda_alloc_counted(&mem[MEM_GRADIENTS], s->sizes[WTE] * sizeof(float), stream);
    }
    st->num_slots = num_slots;
    st->stash = (Activations*)calloc_check(num_slots, sizeof(Activations));
    st->recompute = recompute;
    st->work_mb = -1;
    if (recompute) {  // the work copy, counted in the stash
        st->work_bytes = activation_slot_bytes(c, s, B, T, split, WORK_PART);
        Arena w = {(char*)cuda_alloc_counted(&mem[MEM_STASH], st->work_bytes, stream), 0};
        st->work_memory = w.base;
        activations_carve(c, s, B, T, split, WORK_PART, &w, &st->work);
    }
    int parts = recompute ? SLOT_PART : ALL_PARTS;
    st->slot_bytes = activation_slot_bytes(c, s, B, T, split, parts);
    for (int k = 0; k < num_slots; k++) {
        Arena a = {(char*)cuda_alloc_counted(&mem[MEM_STASH], st->slot_bytes, stream), 0};
        activations_carve(c, s, B, T, split, parts, &a, &st->stash[k]);
        if (recompute) { activations_share(&st->stash[k], &st->work); }
    }
    Arena real = {(char*)cuda_alloc_counted(&mem[MEM_SCRATCH], scratch_bytes(c, B, T), stream), 0};
    scratch_carve(c, B, T, &real, &st->scratch);
}

// loads the stage's fp32 parameters (packed, checkpoint layout) into master weights and floatX params; the
// gradient buffer, zeroed at the start of every step, is the staging area
static void stage_set_params(Stage* st, float* host_fp32, cudaStream_t stream) {
    size_t n = st->dl.total;
    layout_copy(&st->dl, st->grads_memory, host_fp32, 1, stream);
    if (st->master_memory) {
        cudaCheck(cudaMemcpyAsync(st->master_memory, st->grads_memory, n * sizeof(float), cudaMemcpyDeviceToDevice, stream));
    }
    cast_to_floatX(st->params_memory, st->grads_memory, n, stream);
    cudaCheck(cudaMemsetAsync(st->grads_memory, 0, n * sizeof(float), stream));
    cudaCheck(cudaStreamSynchronize(stream));
}

typedef enum { BUF_PARAMS, BUF_M, BUF_V } StageBuffer;

// the stage's fp32 params (master weights), m or v, in DeviceLayout
static float* stage_buffer(Stage* st, StageBuffer which) {
    if (which == BUF_PARAMS) { return st->master_memory ? st->master_memory : (float*)st->params_memory; }
    return which == BUF_M ? st->m_memory : st->v_memory;
}

static void stage_free(Stage* st) {
    for (int k = 0; k < st->num_slots; k++) { cudaCheck(cudaFree(st->stash[k].inputs)); }
    free(st->stash);
    if (st->work_memory) { cudaCheck(cudaFree(st->work_memory)); }
    cudaCheck(cudaFree(st->scratch.dresidual));
    cudaCheck(cudaFree(st->params_memory));
    if (st->master_memory) { cudaCheck(cudaFree(st->master_memory)); }
    cudaCheck(cudaFree(st->grads_memory));
    if (st->grad_wte_head) { cudaCheck(cudaFree(st->grad_wte_head)); }
    cudaCheck(cudaFree(st->m_memory));
    cudaCheck(cudaFree(st->v_memory));
}

// ----------------------------------------------------------------------------
// 2. forward and backward of one micro-batch on one stage: train_gpt2_pp.c's stage_forward/backward

// the stage's output, what it sends to the next stage: the residual stream after its last half
static floatX* stage_output(Stage* st, Activations* a) {
    const StageLayout* s = &st->layout;
    if (s->num_units == 0) { return a->x; }
    if (s->mlp_layers == s->num_layers) { return a->residual3 + (size_t)(s->mlp_layers - 1) * st->as.BTC; }
    return a->residual2 + (size_t)(s->attn_layers - 1) * st->as.BTC;  // the last layer's MLP is downstream
}

// On the last stage: the logits, each position's loss, the micro-batch's mean loss into *mean_loss (device),
// and unless dloss == 0 (forward only) d(logits) in place of the logits. The layers the stage touches may
// begin at an MLP half and end at an attention half (llmc/model.h); `residual` carries the stream between
// halves. mean_loss == NULL: -rc's rerun (stage_restore), which writes the work part only: not x (the
// embeddings, or the input received, are in the slot already and may still be on their way to the next stage),
// not the losses nor the mean loss (the step reads what F wrote), only the activations and d(logits).
static void stage_forward(Stage* st, Activations* a, int B, int T, float dloss, double* mean_loss, cudaStream_t stream) {
    const GPT2Config* c = &st->config;
    const StageLayout* s = &st->layout;
    const ParameterTensors* p = &st->params;
    const size_t* w = st->dl.stride;  // per-layer strides of the parameters
    size_t sC = st->as.BTC, sBT = st->as.BT;
    int C = c->channels, NH = c->num_heads, BT = B * T;
    int rerun = mean_loss == NULL;
    if (s->has_embed && !rerun) { encoder_forward(a->x, a->inputs, p->wte, p->wpe, B, T, C, stream); }
    floatX* residual = a->x;  // the residual stream entering the next half
    for (int l = 0; l < s->num_layers; l++) {
        int la = stage_attention_index(s, l);  // -1: the attention half is upstream
        int mlp = l < s->mlp_layers;                     // the MLP half is here (else downstream)
        if (la >= 0) {
            floatX* ln1 = a->ln1 + la * sC;
            floatX* qkv = a->qkv + la * 3 * sC;
            floatX* atty = a->atty + la * sC;
            floatX* residual2 = a->residual2 + la * sC;
            layernorm_forward(ln1, a->ln1_mean + la * sBT, a->ln1_rstd + la * sBT, residual, p->ln1w + la * w[LN1W],
                              p->ln1b + la * w[LN1B], BT, C, stream);
            matmul_forward(qkv, ln1, p->qkvw + la * w[QKVW], p->qkvb + la * w[QKVB], BT, C, 3 * C, NULL, stream);
            flash_attention_forward(atty, a->lse + la * st->as.lse, qkv, B, T, C, NH, stream);
            matmul_forward(st->scratch.proj, atty, p->attprojw + la * w[ATTPROJW], p->attprojb + la * w[ATTPROJB], BT, C,
                           C, NULL, stream);
            if (mlp) {  // the residual add and the MLP half's layernorm read the same row: one kernel
                fused_residual_layernorm_forward(residual2, a->ln2 + l * sC, a->ln2_mean + l * sBT, a->ln2_rstd + l * sBT,
                                                 residual, st->scratch.proj, p->ln2w + l * w[LN2W], p->ln2b + l * w[LN2B],
                                                 BT, C, stream);
            } else {
                residual_forward(residual2, residual, st->scratch.proj, (size_t)BT * C, stream);
            }
            residual = residual2;
        } else if (mlp) {  // the stage begins at this MLP half: its layernorm alone (the same bits as fused)
            layernorm_forward(a->ln2 + l * sC, a->ln2_mean + l * sBT, a->ln2_rstd + l * sBT, residual,
                              p->ln2w + l * w[LN2W], p->ln2b + l * w[LN2B], BT, C, stream);
        }
        if (mlp) {
            floatX* ln2 = a->ln2 + l * sC;
            floatX* fch = a->fch + l * 4 * sC;
            floatX* fch_gelu = a->fch_gelu + l * 4 * sC;
            floatX* residual3 = a->residual3 + l * sC;
            if (st->gelu_fusion) {  // GELU in the GEMM's epilogue; fch keeps the pre-activation for the backward
                matmul_forward(fch_gelu, ln2, p->fcw + l * w[FCW], p->fcb + l * w[FCB], BT, C, 4 * C, fch, stream);
            } else {
                matmul_forward(fch, ln2, p->fcw + l * w[FCW], p->fcb + l * w[FCB], BT, C, 4 * C, NULL, stream);
                gelu_forward(fch_gelu, fch, (size_t)BT * 4 * C, stream);
            }
            matmul_forward(st->scratch.proj, fch_gelu, p->fcprojw + l * w[FCPROJW], p->fcprojb + l * w[FCPROJB], BT,
                           4 * C, C, NULL, stream);
            residual_forward(residual3, residual, st->scratch.proj, (size_t)BT * C, stream);
            residual = residual3;
        }
    }
    if (s->has_head) {
        layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, residual, p->lnfw, p->lnfb, BT, C, stream);
        matmul_forward(a->logits, a->lnf, p->wte, NULL, BT, C, c->padded_vocab_size, NULL, stream);
        fused_classifier(a->logits, rerun ? NULL : a->losses, dloss, a->targets, BT, c->vocab_size,
                         c->padded_vocab_size, stream);
        if (!rerun) { losses_mean(mean_loss, a->losses, BT, stream); }
    }
}

// -rc: puts micro-batch m's activations back into the stage's work copy before it is read (train_gpt2_pp.c's
// stage_restore): the same kernels on the same input (x and the tokens in m's slot) with the same dloss (the
// loss scale changes only between steps), so the same bits. except_last skips it while the work copy still
// holds m (a backward right after its forward); always reruns it before B and I regardless. `backward` is 0
// where only the activations are read (W, SEND_F). On the compute stream, so after the F that filled m's slot
// and before the backward that reads the result; first it waits for `work_sent`, the last send of a stage
// output out of the work copy, which must have been read before the rerun rewrites it.
static void stage_restore(Stage* st, Activations* a, int m, int B, int T, float dloss, int backward,
                          cudaEvent_t work_sent, cudaStream_t stream) {
    int there = st->work_mb == m;
    if (!st->recompute || (there && !(backward && st->recompute == RC_ALWAYS))) { return; }
    cudaCheck(cudaStreamWaitEvent(stream, work_sent, 0));
    stage_forward(st, a, B, T, dloss, NULL, stream);
    st->work_mb = m;
}

// what I kept for W of local layer l (its attention half la among the stage's), for the halves the stage holds
static LayerOutputGrads kept_layer(const Stage* st, const Activations* a, int l, int la) {
    size_t n = st->as.BTC;
    floatX* m = a->kept + (size_t)l * KEPT_MLP * n;
    floatX* t = a->kept + ((size_t)st->layout.mlp_layers * KEPT_MLP + la * KEPT_ATTN) * n;
    return (LayerOutputGrads){m, m + n, t, t + n};
}

// The d(input) half of the backward of one micro-batch (train_gpt2_pp.c's stage_backward_input): d(loss)/d(stage
// input) ends in scratch.dresidual; dout is d(stage output) (NULL on the last stage, which starts from the
// d(logits) its forward left in place of the logits). With keep (the I action) each matmul's output gradient
// goes to the stash slot for W and no matmul weight gradient is touched; without it (B) they are accumulated
// on the way. Either way every weight gradient gets the same float operations on the same operands, so B and
// I+W give the same bits. The layernorm and encoder weight gradients are computed here in both cases (see
// KEPT_MLP); they are accumulated in the order of the I's, which pipeline_init checks is micro-batch order.
// Each layer runs its MLP half, then its attention half, the ones the stage holds.
static void stage_backward_input(Stage* st, Activations* a, const floatX* dout, int keep, cudaStream_t stream) {
    const GPT2Config* c = &st->config;
    const StageLayout* s = &st->layout;
    const ParameterTensors* p = &st->params;
    GradTensors* g = &st->grads;
    Scratch* sc = &st->scratch;
    const size_t* w = st->dl.stride;
    size_t sC = st->as.BTC, sBT = st->as.BT;
    int B = st->B, T = st->T, C = c->channels, NH = c->num_heads, BT = B * T;
    size_t nBTC = (size_t)BT * C;
    float* bs = sc->bias_scratch;
#define GRAD(x) (keep ? NULL : (x))  // a matmul weight gradient: W's when the backward is split
    if (s->has_head) {
        matmul_backward(sc->dln, GRAD(st->grad_wte_head), NULL, NULL, a->logits, a->lnf, p->wte, BT, C,
                        c->padded_vocab_size, NULL, stream);
        cudaCheck(cudaMemsetAsync(sc->dresidual, 0, nBTC * sizeof(floatX), stream));
        layernorm_backward(sc->dresidual, g->lnfw, g->lnfb, sc->ln_scratch, sc->dln, stage_output(st, a), p->lnfw,
                           a->lnf_mean, a->lnf_rstd, BT, C, stream);
    } else {
        device_copy(sc->dresidual, dout, nBTC * sizeof(floatX), stream);
    }
    for (int l = s->num_layers - 1; l >= 0; l--) {
        int la = stage_attention_index(s, l);  // -1: the attention half is upstream
        floatX* residual = l == 0 ? a->x : a->residual3 + (l - 1) * sC;  // entering layer l
        floatX* mid = la >= 0 ? a->residual2 + la * sC : residual;       // entering its MLP half
        floatX* dmid = sc->dresidual;  // the gradient of mid, in dresidual2 once the MLP half has added to it
        LayerOutputGrads k = keep ? kept_layer(st, a, l, la)
                                  : (LayerOutputGrads){sc->dresidual, sc->dfch, NULL, sc->dqkv};
        if (l < s->mlp_layers) {  // the MLP half: out = mid + fcproj(gelu(fc(ln2(mid))))
            const floatX* fch = a->fch + l * 4 * sC;
            if (keep) { device_copy(k.dfcproj, sc->dresidual, nBTC * sizeof(floatX), stream); }
            if (st->gelu_fusion) {  // the DGELU epilogue turns d(fch_gelu) into d(fch) inside the GEMM
                matmul_backward(k.dfc, GRAD(g->fcprojw + l * w[FCPROJW]), GRAD(g->fcprojb + l * w[FCPROJB]), bs,
                                k.dfcproj, a->fch_gelu + l * 4 * sC, p->fcprojw + l * w[FCPROJW], BT, 4 * C, C, fch,
                                stream);
            } else {
                matmul_backward(sc->dfch_gelu, GRAD(g->fcprojw + l * w[FCPROJW]), GRAD(g->fcprojb + l * w[FCPROJB]), bs,
                                k.dfcproj, a->fch_gelu + l * 4 * sC, p->fcprojw + l * w[FCPROJW], BT, 4 * C, C, NULL,
                                stream);
                gelu_backward(k.dfc, fch, sc->dfch_gelu, nBTC * 4, stream);
            }
            matmul_backward(sc->dln, GRAD(g->fcw + l * w[FCW]), GRAD(g->fcb + l * w[FCB]), bs, k.dfc, a->ln2 + l * sC,
                            p->fcw + l * w[FCW], BT, C, 4 * C, NULL, stream);
            device_copy(sc->dresidual2, sc->dresidual, nBTC * sizeof(floatX), stream);  // the skip connection
            layernorm_backward(sc->dresidual2, g->ln2w + l * w[LN2W], g->ln2b + l * w[LN2B], sc->ln_scratch, sc->dln,
                               mid, p->ln2w + l * w[LN2W], a->ln2_mean + l * sBT, a->ln2_rstd + l * sBT, BT, C, stream);
            dmid = sc->dresidual2;
        }
        if (la >= 0) {  // the attention half: mid = residual + attproj(attention(qkv(ln1(residual))))
            if (keep) { device_copy(k.dattproj, dmid, nBTC * sizeof(floatX), stream); }
            else { k.dattproj = dmid; }
            matmul_backward(sc->datty, GRAD(g->attprojw + la * w[ATTPROJW]), GRAD(g->attprojb + la * w[ATTPROJB]), bs,
                            k.dattproj, a->atty + la * sC, p->attprojw + la * w[ATTPROJW], BT, C, C, NULL, stream);
            flash_attention_backward(k.dqkv, sc->att_scratch, sc->datty, a->qkv + la * 3 * sC, a->atty + la * sC,
                                     a->lse + la * st->as.lse, B, T, C, NH, stream);
            matmul_backward(sc->dln, GRAD(g->qkvw + la * w[QKVW]), GRAD(g->qkvb + la * w[QKVB]), bs, k.dqkv,
                            a->ln1 + la * sC, p->qkvw + la * w[QKVW], BT, C, 3 * C, NULL, stream);
            if (dmid != sc->dresidual) { device_copy(sc->dresidual, dmid, nBTC * sizeof(floatX), stream); }
            layernorm_backward(sc->dresidual, g->ln1w + la * w[LN1W], g->ln1b + la * w[LN1B], sc->ln_scratch, sc->dln,
                               residual, p->ln1w + la * w[LN1W], a->ln1_mean + la * sBT, a->ln1_rstd + la * sBT, BT, C,
                               stream);
        } else if (dmid != sc->dresidual) {  // the stage begins at this MLP half: its input is mid
            device_copy(sc->dresidual, dmid, nBTC * sizeof(floatX), stream);
        }
    }
#undef GRAD
    if (s->has_embed) { encoder_backward(g->wte, g->wpe, sc->dresidual, a->inputs, B, T, C, stream); }
}

// The weight half (W) of a split backward: the matmul weight gradients from what stage_backward_input kept, the
// same calls on the same operands as in B
static void stage_backward_weight(Stage* st, Activations* a, cudaStream_t stream) {
    const GPT2Config* c = &st->config;
    const StageLayout* s = &st->layout;
    const ParameterTensors* p = &st->params;
    GradTensors* g = &st->grads;
    const size_t* w = st->dl.stride;
    size_t sC = st->as.BTC;
    int BT = st->B * st->T, C = c->channels;
    float* bs = st->scratch.bias_scratch;
    if (s->has_head) {
        matmul_backward(NULL, st->grad_wte_head, NULL, NULL, a->logits, a->lnf, p->wte, BT, C, c->padded_vocab_size,
                        NULL, stream);
    }
    for (int l = s->num_layers - 1; l >= 0; l--) {
        int la = stage_attention_index(s, l);
        LayerOutputGrads k = kept_layer(st, a, l, la);
        if (l < s->mlp_layers) {
            matmul_backward(NULL, g->fcprojw + l * w[FCPROJW], g->fcprojb + l * w[FCPROJB], bs, k.dfcproj,
                            a->fch_gelu + l * 4 * sC, p->fcprojw + l * w[FCPROJW], BT, 4 * C, C, NULL, stream);
            matmul_backward(NULL, g->fcw + l * w[FCW], g->fcb + l * w[FCB], bs, k.dfc, a->ln2 + l * sC,
                            p->fcw + l * w[FCW], BT, C, 4 * C, NULL, stream);
        }
        if (la >= 0) {
            matmul_backward(NULL, g->attprojw + la * w[ATTPROJW], g->attprojb + la * w[ATTPROJB], bs, k.dattproj,
                            a->atty + la * sC, p->attprojw + la * w[ATTPROJW], BT, C, C, NULL, stream);
            matmul_backward(NULL, g->qkvw + la * w[QKVW], g->qkvb + la * w[QKVB], bs, k.dqkv, a->ln1 + la * sC,
                            p->qkvw + la * w[QKVW], BT, C, 3 * C, NULL, stream);
        }
    }
}

// ----------------------------------------------------------------------------
// 3. a rank's device and transport. With one GPU per rank, NCCL. With every stage on one GPU (NCCL refuses
// two ranks of a communicator on one device), one host thread per stage and a message is a device-to-device
// copy through a mailbox: the sender records an event after the data's producer and posts the pointer, the
// receiver's stream waits on that event and copies, and the sender's send stream waits on the receiver's copy,
// as after an NCCL send; so the same schedules, validated for blocking sends, run unchanged.
// Three streams per rank, each in list order: compute (every kernel and device copy), sends, receives (also the
// grouped exchanges and the collectives). Compute never waits for a message except through cudaStreamWaitEvent
// where it reads what arrived (the receive's `arrived` event) or writes a buffer a send still reads (the send's
// `sent` event); a receive waits for the compute that last read its buffer (`drained`), a send for the compute
// issued before it. Neighbours' sends and receives sit on different streams, so a send never queues behind a
// receive of the same rank.

typedef struct {
    const void* src;
    size_t bytes;
    int posted, taken;     // under LocalHub.mu
    cudaEvent_t ready;     // the sender's data is complete
    cudaEvent_t done;      // the receiver's copy is complete
} Mailbox;

typedef struct {
    int P;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    Mailbox* box;          // (P, P): box[src * P + dst]
    const double** rows;   // (P) each rank's contribution to a host all-reduce
    const void* bcast;     // the root's bytes during a broadcast
    int arrived, generation;
} LocalHub;

static void hub_init(LocalHub* h, int P) {
    memset(h, 0, sizeof(*h));
    h->P = P;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    h->box = (Mailbox*)calloc_check((size_t)P * P, sizeof(Mailbox));
    for (int i = 0; i < P * P; i++) {
        cudaCheck(cudaEventCreateWithFlags(&h->box[i].ready, cudaEventDisableTiming));
        cudaCheck(cudaEventCreateWithFlags(&h->box[i].done, cudaEventDisableTiming));
    }
    h->rows = (const double**)calloc_check(P, sizeof(double*));
}

static void hub_free(LocalHub* h) {
    for (int i = 0; i < h->P * h->P; i++) {
        cudaCheck(cudaEventDestroy(h->box[i].ready));
        cudaCheck(cudaEventDestroy(h->box[i].done));
    }
    free(h->box);
    free(h->rows);
}

// waits on the hub's condition until *flag is set, at most `timeout` seconds (-to)
static void hub_wait(LocalHub* h, const int* flag, double timeout, int rank, int peer) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)timeout;
    while (!*flag) {
        if (pthread_cond_timedwait(&h->cv, &h->mu, &until) != 0 && !*flag) {
            fatal("rank %d: no message from rank %d within %.0f s (-to)", rank, peer, timeout);
        }
    }
}

static void hub_barrier(LocalHub* h) {
    pthread_mutex_lock(&h->mu);
    int gen = h->generation;
    if (++h->arrived == h->P) {
        h->arrived = 0;
        h->generation++;
        pthread_cond_broadcast(&h->cv);
    } else {
        while (gen == h->generation) { pthread_cond_wait(&h->cv, &h->mu); }
    }
    pthread_mutex_unlock(&h->mu);
}

typedef struct {
    int rank, world, device;
    double timeout;        // -to: seconds a rank waits for a peer (start-up, a message) before the job stops
    ncclComm_t nccl;       // one GPU per rank; NULL: every stage on this GPU, through `hub`
    LocalHub* hub;
    cudaStream_t stream;   // non-blocking: compute, every kernel and device copy of the rank, in issue order
    cudaStream_t send_stream;  // non-blocking: the point-to-point sends, in issue order
    cudaStream_t recv_stream;  // non-blocking: the receives, the grouped exchanges and the collectives
    cudaEvent_t ev_compute;    // re-recorded on `stream` whenever a communication stream must follow it
    cudaEvent_t ev_comm;       // re-recorded on a communication stream whenever `stream` must follow it
    double* host_buf;      // pinned staging of the host collectives
    double* dev_buf;
    int cap;               // doubles in both
    const double** rows;   // (world) comm_gather_rows' answer
} Comm;

// the communicator of this process when it is one of several (MPI or -pf): aborted on failure (fatal_hook)
static ncclComm_t process_comm = NULL;

// fatal() after `seconds` unless deadline_end() comes first: waiting for ranks that never start (NCCL's
// start-up blocks until every rank has joined) ends with a message instead of a hang
typedef struct {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, seconds;
    char what[160];
} Deadline;

static void* deadline_watch(void* arg) {
    Deadline* d = (Deadline*)arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += d->seconds;
    pthread_mutex_lock(&d->mu);
    while (!d->done) {
        if (pthread_cond_timedwait(&d->cv, &d->mu, &until) != 0) { fatal("%s within %d s", d->what, d->seconds); }
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

static void deadline_start(Deadline* d, int seconds, const char* what) {
    d->done = 0;
    d->seconds = seconds;
    snprintf(d->what, sizeof(d->what), "%s", what);
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    if (pthread_create(&d->thread, NULL, deadline_watch, d) != 0) { fatal("cannot start a watchdog thread"); }
}

static void deadline_end(Deadline* d) {
    pthread_mutex_lock(&d->mu);
    d->done = 1;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->thread, NULL);
}

// Makes `device` current on this thread and sets the rank up there: its cuBLASLt handle and workspace (one per
// host thread, created on the thread's device), its stream, and its transport (hub, or NCCL with id).
static void comm_open(Comm* cm, int rank, int world, int device, LocalHub* hub, const ncclUniqueId* id, double timeout) {
    memset(cm, 0, sizeof(*cm));
    cm->rank = rank;
    cm->world = world;
    cm->device = device;
    cm->timeout = timeout;
    cm->hub = hub;
    cudaCheck(cudaSetDevice(device));
    cublas_init();
    cudaCheck(cudaStreamCreateWithFlags(&cm->stream, cudaStreamNonBlocking));
    cudaCheck(cudaStreamCreateWithFlags(&cm->send_stream, cudaStreamNonBlocking));
    cudaCheck(cudaStreamCreateWithFlags(&cm->recv_stream, cudaStreamNonBlocking));
    cudaCheck(cudaEventCreateWithFlags(&cm->ev_compute, cudaEventDisableTiming));
    cudaCheck(cudaEventCreateWithFlags(&cm->ev_comm, cudaEventDisableTiming));
    if (hub == NULL) {
        char what[160];
        snprintf(what, sizeof(what), "rank %d: NCCL did not start (ranks missing? each needs the same id)", rank);
        Deadline d;
        deadline_start(&d, (int)timeout, what);
        ncclCheck(ncclCommInitRank(&cm->nccl, world, *id, rank));
        deadline_end(&d);
    }
}

// host collectives of up to n doubles stage through buffers of every rank's n, allocated before the first step
static void comm_reserve(Comm* cm, int n) {
    if (n <= cm->cap) { return; }
    if (cm->host_buf) { cudaCheck(cudaFreeHost(cm->host_buf)); cudaCheck(cudaFree(cm->dev_buf)); }
    cudaCheck(cudaMallocHost(&cm->host_buf, (size_t)cm->world * n * sizeof(double)));
    cm->dev_buf = (double*)cuda_alloc((size_t)(cm->world + 1) * n * sizeof(double), cm->stream);
    cm->cap = n;
    if (!cm->rows) { cm->rows = (const double**)calloc_check(cm->world, sizeof(double*)); }
}

static void comm_close(Comm* cm) {
    if (cm->nccl) { ncclCheck(ncclCommDestroy(cm->nccl)); }
    if (cm->host_buf) { cudaCheck(cudaFreeHost(cm->host_buf)); cudaCheck(cudaFree(cm->dev_buf)); }
    free(cm->rows);
    cudaCheck(cudaEventDestroy(cm->ev_compute));
    cudaCheck(cudaEventDestroy(cm->ev_comm));
    cudaCheck(cudaStreamDestroy(cm->send_stream));
    cudaCheck(cudaStreamDestroy(cm->recv_stream));
    cudaCheck(cudaStreamDestroy(cm->stream));
    cublas_destroy();
}

// `to` waits for everything issued to `from` so far (ev is re-recorded: a wait takes the record made before it)
static void stream_follow(cudaStream_t to, cudaStream_t from, cudaEvent_t ev) {
    cudaCheck(cudaEventRecord(ev, from));
    cudaCheck(cudaStreamWaitEvent(to, ev, 0));
}

// Waits for all of the rank's work: compute follows both communication streams, and the host waits for compute,
// one host synchronization. Under NCCL it polls the communicator too: a peer that failed (its process gone,
// its communicator aborted) surfaces as an asynchronous error here, and one that hangs as the -to timeout, and
// this rank exits instead of waiting forever in a receive.
static void comm_wait(Comm* cm) {
    stream_follow(cm->stream, cm->send_stream, cm->ev_comm);
    stream_follow(cm->stream, cm->recv_stream, cm->ev_comm);
    if (cm->nccl == NULL) { cudaCheck(cudaStreamSynchronize(cm->stream)); return; }
    double deadline = now_seconds() + cm->timeout;
    for (;;) {
        cudaError_t e = cudaStreamQuery(cm->stream);
        if (e == cudaSuccess) { return; }
        if (e != cudaErrorNotReady) { cudaCheck(e); }
        ncclResult_t ne;
        ncclCheck(ncclCommGetAsyncError(cm->nccl, &ne));
        if (ne != ncclSuccess && ne != ncclInProgress) {
            fatal("rank %d: NCCL failed (%s): a peer rank died or aborted", cm->rank, ncclGetErrorString(ne));
        }
        if (now_seconds() > deadline) { fatal("rank %d: its stream did not finish within %.0f s (-to): a peer stopped?", cm->rank, cm->timeout); }
        sched_yield();
    }
}

// the local send in two halves, so that an exchange can post its send before it receives
static Mailbox* mailbox_post(Comm* cm, const void* buf, size_t bytes, int peer) {
    LocalHub* h = cm->hub;
    Mailbox* b = &h->box[cm->rank * h->P + peer];
    cudaCheck(cudaEventRecord(b->ready, cm->stream));
    pthread_mutex_lock(&h->mu);
    b->src = buf;
    b->bytes = bytes;
    b->posted = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    return b;
}

// waits (on the host) until the receiver has issued its copy; `stream` waits for the copy on the device
static void mailbox_complete(Comm* cm, Mailbox* b, int peer, cudaStream_t stream) {
    LocalHub* h = cm->hub;
    pthread_mutex_lock(&h->mu);
    hub_wait(h, &b->taken, cm->timeout, cm->rank, peer);
    b->taken = 0;
    pthread_mutex_unlock(&h->mu);
    cudaCheck(cudaStreamWaitEvent(stream, b->done, 0));
}

// the copy on `stream`, after the sender's producer
static void mailbox_receive(Comm* cm, void* buf, size_t bytes, int peer, cudaStream_t stream) {
    LocalHub* h = cm->hub;
    Mailbox* b = &h->box[peer * h->P + cm->rank];
    pthread_mutex_lock(&h->mu);
    hub_wait(h, &b->posted, cm->timeout, cm->rank, peer);
    b->posted = 0;
    pthread_mutex_unlock(&h->mu);
    if (b->bytes != bytes) { fatal("rank %d: expected %zu bytes from rank %d, got %zu", cm->rank, bytes, peer, b->bytes); }
    cudaCheck(cudaStreamWaitEvent(stream, b->ready, 0));
    cudaCheck(cudaMemcpyAsync(buf, b->src, bytes, cudaMemcpyDeviceToDevice, stream));
    cudaCheck(cudaEventRecord(b->done, stream));
    pthread_mutex_lock(&h->mu);
    b->taken = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

// Device buffers between two ranks; the schedule validator proved that these pairs cannot deadlock as blocking
// calls in list order, which is each stream's order. A send reads `buf` on the send stream after the compute
// issued before it and records `sent` there: compute waits for `sent` before it writes `buf` again. A receive
// waits for `drained` (recorded by compute after the last read of `buf`), writes `buf` on the receive stream and
// records `arrived` there: compute waits for it before reading `buf`.
static void comm_send(Comm* cm, const void* buf, size_t bytes, int peer, cudaEvent_t sent) {
    if (cm->hub) {
        mailbox_complete(cm, mailbox_post(cm, buf, bytes, peer), peer, cm->send_stream);
    } else {
        stream_follow(cm->send_stream, cm->stream, cm->ev_compute);
        ncclCheck(ncclSend(buf, bytes, ncclChar, peer, cm->nccl, cm->send_stream));
    }
    cudaCheck(cudaEventRecord(sent, cm->send_stream));
}

static void comm_recv(Comm* cm, void* buf, size_t bytes, int peer, cudaEvent_t drained, cudaEvent_t arrived) {
    cudaCheck(cudaStreamWaitEvent(cm->recv_stream, drained, 0));
    if (cm->hub) { mailbox_receive(cm, buf, bytes, peer, cm->recv_stream); }
    else { ncclCheck(ncclRecv(buf, bytes, ncclChar, peer, cm->nccl, cm->recv_stream)); }
    cudaCheck(cudaEventRecord(arrived, cm->recv_stream));
}

// Sends and receives that all run at once, none waiting for another (the tied wte's halves, the data-parallel
// shards): one NCCL group, or through the hub every send posted before the receives (one message per pair of
// ranks at a time). On the receive stream, after the compute issued before it; compute follows it (what
// arrived is read next, and what was sent may be written).
typedef struct { void* buf; size_t bytes; int peer; } Transfer;

static void comm_exchange(Comm* cm, const Transfer* sends, int num_sends, const Transfer* recvs, int num_recvs) {
    cudaStream_t x = cm->recv_stream;
    stream_follow(x, cm->stream, cm->ev_compute);
    if (cm->hub) {
        Mailbox* posted[TRAIN_MAX_P];
        for (int i = 0; i < num_sends; i++) { posted[i] = mailbox_post(cm, sends[i].buf, sends[i].bytes, sends[i].peer); }
        for (int i = 0; i < num_recvs; i++) { mailbox_receive(cm, recvs[i].buf, recvs[i].bytes, recvs[i].peer, x); }
        for (int i = 0; i < num_sends; i++) { mailbox_complete(cm, posted[i], sends[i].peer, x); }
    } else {
        ncclCheck(ncclGroupStart());
        for (int i = 0; i < num_sends; i++) {
            ncclCheck(ncclSend(sends[i].buf, sends[i].bytes, ncclChar, sends[i].peer, cm->nccl, x));
        }
        for (int i = 0; i < num_recvs; i++) {
            ncclCheck(ncclRecv(recvs[i].buf, recvs[i].bytes, ncclChar, recvs[i].peer, cm->nccl, x));
        }
        ncclCheck(ncclGroupEnd());
    }
    stream_follow(cm->stream, x, cm->ev_comm);
}

// Every rank's row of n doubles to the host of every rank: rows[r] for r < world, valid until comm_release_rows.
// row is on the device (on_device: written by compute, so one wait for the device: a training step's only host
// synchronization) or on the host. Under NCCL an all-gather on the receive stream; through the hub, the rows in
// place.
// comm_reserve(n) first.
static const double* const* comm_gather_rows(Comm* cm, const double* row, int n, int on_device) {
    if (n > cm->cap) { fatal("comm_gather_rows: %d values, %d reserved", n, cm->cap); }
    if (cm->hub) {
        if (on_device) {
            cudaCheck(cudaMemcpyAsync(cm->host_buf, row, n * sizeof(double), cudaMemcpyDeviceToHost, cm->stream));
            comm_wait(cm);
        } else {
            memcpy(cm->host_buf, row, n * sizeof(double));
        }
        cm->hub->rows[cm->rank] = cm->host_buf;
        hub_barrier(cm->hub);
        return cm->hub->rows;
    }
    cudaStream_t x = cm->recv_stream;
    stream_follow(x, cm->stream, cm->ev_compute);
    if (!on_device) {
        double* staged = cm->dev_buf + (size_t)cm->world * cm->cap;  // after the gathered rows
        memcpy(cm->host_buf, row, n * sizeof(double));
        cudaCheck(cudaMemcpyAsync(staged, cm->host_buf, n * sizeof(double), cudaMemcpyHostToDevice, x));
        row = staged;
    }
    ncclCheck(ncclAllGather(row, cm->dev_buf, n, ncclDouble, cm->nccl, x));
    cudaCheck(cudaMemcpyAsync(cm->host_buf, cm->dev_buf, (size_t)cm->world * n * sizeof(double),
                              cudaMemcpyDeviceToHost, x));
    comm_wait(cm);
    for (int r = 0; r < cm->world; r++) { cm->rows[r] = cm->host_buf + (size_t)r * n; }
    return cm->rows;
}

// through the hub the rows stay put until every rank has read them
static void comm_release_rows(Comm* cm) {
    if (cm->hub) { hub_barrier(cm->hub); }
}

// x[0..n) summed over the ranks in rank order, the same bits on every rank (comm_reserve(n) first). With data
// parallelism a loss or norm slot has one term per replica, and NCCL's reduction order depends on the topology:
// so every rank gathers the rows and adds them on the host in rank order.
static void comm_allreduce_sum(Comm* cm, double* x, int n) {
    const double* const* rows = comm_gather_rows(cm, x, n, 0);
    for (int i = 0; i < n; i++) {
        double s = 0.0;
        for (int r = 0; r < cm->world; r++) { s += rows[r][i]; }
        x[i] = s;
    }
    comm_release_rows(cm);
}

static void comm_barrier(Comm* cm) {
    double zero = 0.0;
    comm_allreduce_sum(cm, &zero, 1);
}

// a few host bytes from root to every rank
static void comm_broadcast(Comm* cm, void* x, size_t bytes, int root) {
    if (bytes > cm->cap * sizeof(double)) { fatal("comm_broadcast: %zu bytes, %zu reserved", bytes, cm->cap * sizeof(double)); }
    if (cm->hub) {
        if (cm->rank == root) { cm->hub->bcast = x; }
        hub_barrier(cm->hub);
        if (cm->rank != root) { memcpy(x, cm->hub->bcast, bytes); }
        hub_barrier(cm->hub);
        return;
    }
    memcpy(cm->host_buf, x, bytes);
    cudaStream_t r = cm->recv_stream;
    stream_follow(r, cm->stream, cm->ev_compute);
    cudaCheck(cudaMemcpyAsync(cm->dev_buf, cm->host_buf, bytes, cudaMemcpyHostToDevice, r));
    ncclCheck(ncclBroadcast(cm->dev_buf, cm->dev_buf, bytes, ncclChar, root, cm->nccl, r));
    cudaCheck(cudaMemcpyAsync(cm->host_buf, cm->dev_buf, bytes, cudaMemcpyDeviceToHost, r));
    comm_wait(cm);
    memcpy(x, cm->host_buf, bytes);
}

// host bytes from one rank to another through a temporary device buffer (checkpoints, the trace: not in a step)
static void comm_host_p2p(Comm* cm, void* host, size_t bytes, int peer, int send) {
    void* d = cuda_alloc(bytes, cm->stream);
    Transfer t = {d, bytes, peer};
    if (send) {
        cudaCheck(cudaMemcpyAsync(d, host, bytes, cudaMemcpyHostToDevice, cm->stream));
        comm_exchange(cm, &t, 1, NULL, 0);
    } else {
        comm_exchange(cm, NULL, 0, &t, 1);
        cudaCheck(cudaMemcpyAsync(host, d, bytes, cudaMemcpyDeviceToHost, cm->stream));
    }
    comm_wait(cm);
    cudaCheck(cudaFree(d));
}

// ----------------------------------------------------------------------------
// 4. the pipeline on this rank: its stage, its list of actions, its messages

typedef struct {
    float lr, beta1, beta2, eps, weight_decay, grad_clip;
} OptimizerConfig;

typedef struct {
    float scale;           // 0: no loss scaling
    float growth, backoff; // x2 after `interval` clean steps, x0.5 on an overflow
    int interval;
    int good_steps;
} LossScaler;

// one of this rank's stages (several under interleaved and ZB-V schedules): its layers, the stash slot of each
// micro-batch in flight, and its message buffers. Between two stages of this rank a message is a device copy
// into the receiving stage's buffer.
typedef struct {
    Stage stage;
    int index;               // its stage number
    StashSlots stash;        // micro-batch -> stash slot, between its forward and its backward (W when split)
    StashSlots inbox;        // -> act_in buffer, between its arrival (RECV_F, or F of the previous stage) and F
    StashSlots grad_inbox;   // -> grad_in buffer, between its arrival (RECV_B, or I/B of the next stage) and I/B
    StashSlots outbox;       // -> send_buf, between I/B and SEND_B (the next backward reuses the scratch)
    floatX** act_in;         // received activations (B,T,C)
    floatX** grad_in;        // received gradients of the stage's output
    floatX** send_buf;       // d(stage input) waiting to be sent to another rank
    // per buffer slot, the events of its messages (comm_send, comm_recv): a received buffer's arrival and its
    // last read by compute; a sent buffer's send (the outbox's, and each stash slot's stage output, SEND_F)
    cudaEvent_t *act_in_arrived, *act_in_drained, *grad_in_arrived, *grad_in_drained, *send_buf_sent, *stash_sent;
    cudaEvent_t work_sent;   // -rc: the last send of a stage output that lies in the work copy (see stage_restore)
    // data parallelism (llmc/data_parallel.h): the stage cut into D shards of pieces, offsets made device offsets.
    // With D = 1 the one shard is the whole stage, and its pieces with a slot are the norm slots it computes.
    ShardPiece* pieces;      // (D, max_shard_pieces)
    int* num_pieces;         // (D)
    size_t* shard_floats;    // (D)
    size_t* shard_base;      // (D) where shard k sits in dp_send
    size_t dp_slot;          // floats of the largest shard
    float* dp_send;          // (D > 1) every shard packed, one after another: what goes out, and the all-gathers
    float* dp_recv;          // (D > 1: D-1 slots of dp_slot) the other replicas' copies of this rank's shard
} RankStage;

typedef struct {
    GPT2Config config;
    int P, S, M, B, T;       // ranks, stages (S = P, or v*P with several stages per rank), micro-batches
    int rank;                // in its pipeline; the job's ranks are replica-major (Grid): job rank d*P + rank
    Grid grid;               // D replicas of the pipeline (llmc/data_parallel.h)
    int zero;                // -z 1: this rank keeps the AdamW moments of its shard only
    Comm* comm;              // every rank of the job, addressed by job rank
    int* units;              // (S) half-layer units per stage (llmc/partition.h)
    StageLayout* layouts;    // (S) every stage's layout: checkpoints, the plan, the stash report
    Schedule schedule;
    RankStage* local;        // this rank's stages, in increasing stage order
    int num_local;
    int* local_of;           // (S) index into local, -1 for another rank's stage
    OptimizerConfig opt;
    LossScaler scaler;
    int step, adam_t;
    float last_norm;
    int last_skipped;        // the last step overflowed and was skipped
    int nonfinite_in_a_row;  // without a loss scaler: steps skipped for a non-finite grad norm, up to -nf
    int max_nonfinite;
    // what a step reads and writes on the host, preallocated: nothing in a step allocates or syncs the device
    int* tokens;             // pinned (M, 2, B*T): the step's inputs and targets
    double* step_row;        // (M + num_norm_slots) device, what a step reads at its end, at once: each
                             // micro-batch's mean loss (last stage; 0 elsewhere), then this rank's squared norm
                             // per (tensor, layer) slot
    double* loss_dev;        // = step_row: the losses
    double* loss_host;       // (M) pinned: evaluation's read
    GlobalNorm norm;         // the norm slots' pieces this rank squares (its shard's, under data parallelism)
    double* norm_sums;       // (num_norm_slots)
    float last_loss;         // the mean training loss of the last step
    float* wte_other;        // (Vp*C) device: the other end stage's tied-wte half, when it runs on another rank
    cudaEvent_t ev_wte_sent, ev_wte_arrived, ev_wte_drained;  // this rank's half sent, the other's received, read
    // timing of a training step: events around every action of the list, the step's start, the optimizer
    cudaEvent_t* ev_begin;   // (list length)
    cudaEvent_t* ev_end;
    cudaEvent_t ev_step, ev_optim_begin, ev_optim_end;
    int timed;               // record them (training steps, not evaluation or sampling)
    double* action_secs;     // (S, 4) seconds of F, B, I, W on each local stage in the last timed step
    int* action_count;       // (S, 4) how many
} Pipeline;

static RankStage* local_stage(Pipeline* pp, int s) {
    if (pp->local_of[s] < 0) {
        fatal("rank %d: stage %d runs on rank %d (schedule bug)", pp->rank, s, pp->schedule.stage_rank[s]);
    }
    return &pp->local[pp->local_of[s]];
}

// the job rank of pipeline rank p in this replica, and of data-parallel rank k in this pipeline rank's group
static int pipe_peer(const Pipeline* pp, int p) { return pp->grid.d * pp->P + p; }
static int dp_peer(const Pipeline* pp, int k) { return k * pp->P + pp->rank; }

// this rank's stage s, or NULL when s is out of range or on another rank
static RankStage* local_or_null(Pipeline* pp, int s) {
    return s >= 0 && s < pp->S && pp->local_of[s] >= 0 ? &pp->local[pp->local_of[s]] : NULL;
}

// How many (B,T,C) message buffers stage s has: received activations, received gradients, and d(stage input)
// waiting for its send when the previous stage runs on another rank
typedef struct { int act_in, grad_in, send; } MessageBuffers;
static MessageBuffers stage_message_buffers(const Schedule* sc, int s) {
    int slots = schedule_stage_slots(sc, s), prev_remote = s > 0 && sc->stage_rank[s - 1] != sc->stage_rank[s];
    return (MessageBuffers){schedule_stage_inbox(sc, s), s < sc->S - 1 ? slots : 0, prev_remote ? slots : 0};
}

// whether end stage s receives the other end's half of the tied wte gradient (the ends run on two ranks)
static int stage_receives_wte(const Schedule* sc, int s) {
    return sc->stage_rank[0] != sc->stage_rank[sc->S - 1] && (s == 0 || s == sc->S - 1);
}

static void buffers_alloc(floatX*** bufs, StashSlots* slots, int M, int n, size_t elems, size_t* counter,
                          cudaStream_t stream) {
    stash_init(slots, M, n);
    *bufs = (floatX**)calloc_check(n > 0 ? n : 1, sizeof(floatX*));
    for (int k = 0; k < n; k++) { (*bufs)[k] = (floatX*)cuda_alloc_counted(counter, elems * sizeof(floatX), stream); }
}

static cudaEvent_t* events_create(int n) {
    cudaEvent_t* ev = (cudaEvent_t*)calloc_check(n > 0 ? n : 1, sizeof(cudaEvent_t));
    for (int k = 0; k < n; k++) { cudaCheck(cudaEventCreateWithFlags(&ev[k], cudaEventDisableTiming)); }
    return ev;
}

static void events_destroy(cudaEvent_t* ev, int n) {
    for (int k = 0; k < n; k++) { cudaCheck(cudaEventDestroy(ev[k])); }
    free(ev);
}

static void buffers_free(floatX** bufs, StashSlots* slots) {
    for (int k = 0; k < slots->num_slots; k++) { cudaCheck(cudaFree(bufs[k])); }
    free(bufs);
    stash_free(slots);
}

// The layernorm and encoder weight gradients accumulate in I (stage_backward_input), so on every stage the
// I's (or B's) must come in micro-batch order too for the bits of 1F1B; every builder's do, a file's may not.
static void check_input_backward_order(const Schedule* sc, const TrainArgs* args) {
    for (int st = 0; st < sc->S; st++) {
        const ActionList* list = &sc->ranks[sc->stage_rank[st]];
        for (int i = 0, last = -1; i < list->n; i++) {
            const Action* a = &list->a[i];
            if (a->stage != st || !pp_is_bwd_input(a->type)) { continue; }
            if (a->mb < last) {
                char tok[48];
                fatal("%s: '%s' comes after the backward of micro-batch %d: the CUDA trainer needs each stage's I "
                      "(or B) actions in micro-batch order as well (its layernorm weight gradients accumulate in I)",
                      args->schedule_file ? args->schedule_file : args->schedule_name,
                      schedule_action_str(a, tok, sizeof(tok)), last);
            }
            last = a->mb;
        }
    }
}

static void pipeline_init(Pipeline* pp, const GPT2Config* c, const TrainArgs* args, Comm* cm) {
    memset(pp, 0, sizeof(*pp));
    int P = args->P, M = args->M, B = args->B, T = args->T;
    pp->config = *c;
    pp->P = P; pp->M = M; pp->B = B; pp->T = T;
    pp->grid = grid_of(cm->rank, args->D, P);
    pp->rank = pp->grid.p;
    pp->zero = args->zero;
    pp->comm = cm;
    cudaStream_t stream = cm->stream;
    pipeline_load_schedule(&pp->schedule, args, P);
    check_input_backward_order(&pp->schedule, args);
    int S = pp->S = pp->schedule.S, rank = pp->rank;
    pp->units = (int*)malloc_check(S * sizeof(int));
    pipeline_split(args, c, S, pp->units);
    pp->layouts = (StageLayout*)malloc_check(S * sizeof(StageLayout));
    for (int s = 0; s < S; s++) { pp->layouts[s] = pipeline_stage_layout(c, pp->units, S, s); }
    int split = schedule_has_split_backward(&pp->schedule), nslots = num_norm_slots(c);
    size_t nBTC = (size_t)B * T * c->channels;
    pp->local_of = (int*)malloc_check(S * sizeof(int));
    pp->local = (RankStage*)calloc_check(S, sizeof(RankStage));
    for (int s = 0; s < S; s++) {
        pp->local_of[s] = pp->schedule.stage_rank[s] == rank ? pp->num_local++ : -1;
        if (pp->local_of[s] < 0) { continue; }
        RankStage* ls = &pp->local[pp->local_of[s]];
        ls->index = s;
        int slots = schedule_stage_slots(&pp->schedule, s), D = pp->grid.D, maxp = max_shard_pieces(c);
        ls->pieces = (ShardPiece*)malloc_check((size_t)D * maxp * sizeof(ShardPiece));
        ls->num_pieces = (int*)malloc_check(D * sizeof(int));
        ls->shard_floats = (size_t*)malloc_check(D * sizeof(size_t));
        ls->shard_base = (size_t*)malloc_check(D * sizeof(size_t));
        DeviceLayout dl = device_layout(c, &pp->layouts[s]);
        size_t packed = 0;
        for (int k = 0; k < D; k++) {
            ShardPiece* pc = ls->pieces + (size_t)k * maxp;
            ls->num_pieces[k] = stage_shard_pieces(c, &pp->layouts[s], D, k, pc, &ls->shard_floats[k]);
            for (int i = 0; i < ls->num_pieces[k]; i++) { pc[i].offset = device_offset(&dl, &pp->layouts[s], pc[i].offset); }
            ls->shard_base[k] = packed;
            packed += ls->shard_floats[k];
            if (ls->shard_floats[k] > ls->dp_slot) { ls->dp_slot = ls->shard_floats[k]; }
        }
        stage_init(&ls->stage, c, &pp->layouts[s], B, T, slots, split, args->recompute,
                   pp->zero ? ls->shard_floats[pp->grid.d] : dl.total, stream);
        size_t* comm = &ls->stage.allocated[MEM_COMMUNICATION];
        if (D > 1) {
            ls->dp_send = (float*)cuda_alloc_counted(comm, packed * sizeof(float), stream);
            ls->dp_recv = (float*)cuda_alloc_counted(comm, (size_t)(D - 1) * ls->dp_slot * sizeof(float), stream);
        }
        ls->stage.gelu_fusion = args->gelu_fusion;
        stash_init(&ls->stash, M, slots);
        MessageBuffers mb = stage_message_buffers(&pp->schedule, s);
        buffers_alloc(&ls->act_in, &ls->inbox, M, mb.act_in, nBTC, comm, stream);
        buffers_alloc(&ls->grad_in, &ls->grad_inbox, M, mb.grad_in, nBTC, comm, stream);
        buffers_alloc(&ls->send_buf, &ls->outbox, M, mb.send, nBTC, comm, stream);
        if (stage_receives_wte(&pp->schedule, s)) {  // the rank's one copy, counted on its end stage
            pp->wte_other = (float*)cuda_alloc_counted(comm, tensor_unit_size(c, WTE) * sizeof(float), stream);
        }
    }
    for (int l = 0; l < pp->num_local; l++) {
        RankStage* ls = &pp->local[l];
        ls->act_in_arrived = events_create(ls->inbox.num_slots);
        ls->act_in_drained = events_create(ls->inbox.num_slots);
        ls->grad_in_arrived = events_create(ls->grad_inbox.num_slots);
        ls->grad_in_drained = events_create(ls->grad_inbox.num_slots);
        ls->send_buf_sent = events_create(ls->outbox.num_slots);
        ls->stash_sent = events_create(ls->stash.num_slots);
        cudaCheck(cudaEventCreateWithFlags(&ls->work_sent, cudaEventDisableTiming));
    }
    cudaCheck(cudaMallocHost(&pp->tokens, (size_t)M * 2 * B * T * sizeof(int)));
    pp->step_row = pp->loss_dev = (double*)cuda_alloc((M + nslots) * sizeof(double), stream);
    cudaCheck(cudaMallocHost(&pp->loss_host, M * sizeof(double)));
    // this rank's shard's piece of every norm slot of its stages (the LM head's copy of the tied wte, slot -1,
    // is counted on stage 0)
    NormPiece* norm_pieces = (NormPiece*)malloc_check((size_t)pp->num_local * max_shard_pieces(c) * sizeof(NormPiece));
    int num_norm_pieces = 0;
    for (int l = 0; l < pp->num_local; l++) {
        const RankStage* ls = &pp->local[l];
        const ShardPiece* pc = ls->pieces + (size_t)pp->grid.d * max_shard_pieces(c);
        for (int i = 0; i < ls->num_pieces[pp->grid.d]; i++) {
            if (pc[i].slot < 0) { continue; }
            const float* g = ls->stage.grads_memory + pc[i].offset;
            norm_pieces[num_norm_pieces++] = (NormPiece){g, pc[i].count, pc[i].slot};
        }
    }
    global_norm_init(&pp->norm, norm_pieces, num_norm_pieces, nslots, stream);
    free(norm_pieces);
    pp->norm_sums = (double*)malloc_check(nslots * sizeof(double));
    int n = pp->schedule.ranks[rank].n;
    pp->ev_begin = (cudaEvent_t*)malloc_check(n * sizeof(cudaEvent_t));
    pp->ev_end = (cudaEvent_t*)malloc_check(n * sizeof(cudaEvent_t));
    for (int i = 0; i < n; i++) {
        cudaCheck(cudaEventCreate(&pp->ev_begin[i]));
        cudaCheck(cudaEventCreate(&pp->ev_end[i]));
    }
    cudaCheck(cudaEventCreate(&pp->ev_step));
    cudaCheck(cudaEventCreateWithFlags(&pp->ev_wte_sent, cudaEventDisableTiming));
    cudaCheck(cudaEventCreateWithFlags(&pp->ev_wte_arrived, cudaEventDisableTiming));
    cudaCheck(cudaEventCreateWithFlags(&pp->ev_wte_drained, cudaEventDisableTiming));
    cudaCheck(cudaEventCreate(&pp->ev_optim_begin));
    cudaCheck(cudaEventCreate(&pp->ev_optim_end));
    pp->action_secs = (double*)calloc_check((size_t)S * 4, sizeof(double));
    pp->action_count = (int*)calloc_check((size_t)S * 4, sizeof(int));
    comm_reserve(cm, M + nslots > 8 * S + 8 ? M + nslots : 8 * S + 8);
    uint32_t mine = pipeline_fingerprint(&pp->schedule, pp->units), rank0 = mine;
    comm_broadcast(cm, &rank0, sizeof(rank0), 0);
    pipeline_check_fingerprint(mine, rank0, cm->rank, args);
    comm_wait(cm);
}

static void pipeline_free(Pipeline* pp) {
    comm_barrier(pp->comm);  // no rank frees while a peer may still read its buffers
    for (int i = 0; i < pp->num_local; i++) {
        RankStage* ls = &pp->local[i];
        stage_free(&ls->stage);
        stash_free(&ls->stash);
        buffers_free(ls->act_in, &ls->inbox);
        buffers_free(ls->grad_in, &ls->grad_inbox);
        buffers_free(ls->send_buf, &ls->outbox);
        free(ls->pieces);
        free(ls->num_pieces);
        free(ls->shard_floats);
        free(ls->shard_base);
        if (ls->dp_send) { cudaCheck(cudaFree(ls->dp_send)); cudaCheck(cudaFree(ls->dp_recv)); }
    }
    for (int i = 0; i < pp->num_local; i++) {
        RankStage* ls = &pp->local[i];
        events_destroy(ls->act_in_arrived, ls->inbox.num_slots);
        events_destroy(ls->act_in_drained, ls->inbox.num_slots);
        events_destroy(ls->grad_in_arrived, ls->grad_inbox.num_slots);
        events_destroy(ls->grad_in_drained, ls->grad_inbox.num_slots);
        events_destroy(ls->send_buf_sent, ls->outbox.num_slots);
        events_destroy(ls->stash_sent, ls->stash.num_slots);
        cudaCheck(cudaEventDestroy(ls->work_sent));
    }
    free(pp->local);
    free(pp->local_of);
    cudaCheck(cudaFreeHost(pp->tokens));
    cudaCheck(cudaFree(pp->step_row));
    cudaCheck(cudaFreeHost(pp->loss_host));
    global_norm_free(&pp->norm);
    free(pp->norm_sums);
    if (pp->wte_other) { cudaCheck(cudaFree(pp->wte_other)); }
    for (int i = 0; i < pp->schedule.ranks[pp->rank].n; i++) {
        cudaCheck(cudaEventDestroy(pp->ev_begin[i]));
        cudaCheck(cudaEventDestroy(pp->ev_end[i]));
    }
    free(pp->ev_begin);
    free(pp->ev_end);
    cudaCheck(cudaEventDestroy(pp->ev_step));
    cudaCheck(cudaEventDestroy(pp->ev_wte_sent));
    cudaCheck(cudaEventDestroy(pp->ev_wte_arrived));
    cudaCheck(cudaEventDestroy(pp->ev_wte_drained));
    cudaCheck(cudaEventDestroy(pp->ev_optim_begin));
    cudaCheck(cudaEventDestroy(pp->ev_optim_end));
    free(pp->layouts);
    free(pp->units);
    free(pp->action_secs);
    free(pp->action_count);
    schedule_free(&pp->schedule);
}

// the event a send of slot k's stage output records: under -rc the output lies in the work copy, shared by
// the slots (unless the stage holds no layer and passes its input x on, which stays in the slot)
static cudaEvent_t output_sent_event(RankStage* ls, int k) {
    return ls->stage.recompute && ls->stage.layout.num_units > 0 ? ls->work_sent : ls->stash_sent[k];
}

// What compute waits for before a compute action: the message it reads (F: the activations received into its
// inbox slot; B/I: the gradient received into its grad_inbox slot), and the send of a buffer it writes (F: its
// stash slot's output, SEND_F of an earlier micro-batch, and under -rc the work copy's; B/I: its outbox slot,
// SEND_B; a rerun before B/I/W waits for the work copy's in stage_restore). Slots taken here are the ones
// run_action takes (stash_acquire returns a micro-batch's slot once it has one).
static void action_waits(Pipeline* pp, const Action* a) {
    RankStage* ls = local_stage(pp, a->stage);
    cudaStream_t stream = pp->comm->stream;
    int m = a->mb, s = a->stage;
    if (a->type == PP_F) {
        cudaCheck(cudaStreamWaitEvent(stream, ls->stash_sent[stash_acquire(&ls->stash, m)], 0));
        if (ls->stage.recompute) { cudaCheck(cudaStreamWaitEvent(stream, ls->work_sent, 0)); }
        if (s > 0) { cudaCheck(cudaStreamWaitEvent(stream, ls->act_in_arrived[stash_slot(&ls->inbox, m)], 0)); }
    } else if (a->type == PP_B || a->type == PP_I) {
        if (s < pp->S - 1) {
            cudaCheck(cudaStreamWaitEvent(stream, ls->grad_in_arrived[stash_slot(&ls->grad_inbox, m)], 0));
        }
        if (s > 0 && !local_or_null(pp, s - 1)) {
            cudaCheck(cudaStreamWaitEvent(stream, ls->send_buf_sent[stash_acquire(&ls->outbox, m)], 0));
        }
    }
}

// One action of this rank's list: compute on the rank's stream, messages on its send and receive streams,
// each in list order.
static void run_action(Pipeline* pp, const Action* a, int B, int T, int forward_only) {
    int m = a->mb, s = a->stage, last = s == pp->S - 1;
    RankStage* ls = local_stage(pp, s);
    RankStage* next = local_or_null(pp, s + 1);
    RankStage* prev = local_or_null(pp, s - 1);
    Stage* st = &ls->stage;
    Comm* cm = pp->comm;
    cudaStream_t stream = cm->stream;
    size_t bytes = (size_t)B * T * pp->config.channels * sizeof(floatX);
    float scale = pp->scaler.scale > 0.0f ? pp->scaler.scale : 1.0f;
    float dloss = forward_only ? 0.0f : scale / ((float)pp->grid.D * pp->M * pp->B * pp->T);  // every replica's tokens
    switch (a->type) {
    case PP_F: {
        Activations* act = &st->stash[stash_acquire(&ls->stash, m)];
        const int* tokens = pp->tokens + (size_t)m * 2 * B * T;
        cudaCheck(cudaMemcpyAsync(act->inputs, tokens, (size_t)B * T * sizeof(int), cudaMemcpyHostToDevice, stream));
        cudaCheck(cudaMemcpyAsync(act->targets, tokens + B * T, (size_t)B * T * sizeof(int), cudaMemcpyHostToDevice, stream));
        if (s > 0) {
            int j = stash_slot(&ls->inbox, m);
            device_copy(act->x, ls->act_in[j], bytes, stream);
            cudaCheck(cudaEventRecord(ls->act_in_drained[j], stream));  // the next receive into it may start
            stash_release(&ls->inbox, m);
        }
        stage_forward(st, act, B, T, dloss, pp->loss_dev + m, stream);
        st->work_mb = m;  // -rc: the work copy holds m (forward only: the logits, not d(logits))
        if (next) { device_copy(next->act_in[stash_acquire(&next->inbox, m)], stage_output(st, act), bytes, stream); }
        if (forward_only && (last || next)) { stash_release(&ls->stash, m); }
        return;
    }
    case PP_B:
    case PP_I: {
        int j = last ? -1 : stash_slot(&ls->grad_inbox, m);
        const floatX* dout = last ? NULL : ls->grad_in[j];
        Activations* act = &st->stash[stash_slot(&ls->stash, m)];
        stage_restore(st, act, m, B, T, dloss, 1, ls->work_sent, stream);
        stage_backward_input(st, act, dout, a->type == PP_I, stream);
        if (a->type == PP_B) { stash_release(&ls->stash, m); }
        if (!last) {
            cudaCheck(cudaEventRecord(ls->grad_in_drained[j], stream));
            stash_release(&ls->grad_inbox, m);
        }
        if (prev) {  // d(input) goes upstream at once: to this rank's previous stage, or to the outbox
            device_copy(prev->grad_in[stash_acquire(&prev->grad_inbox, m)], st->scratch.dresidual, bytes, stream);
        } else if (s > 0) {
            device_copy(ls->send_buf[stash_acquire(&ls->outbox, m)], st->scratch.dresidual, bytes, stream);
        }
        return;
    }
    case PP_W:
        stage_restore(st, &st->stash[stash_slot(&ls->stash, m)], m, B, T, dloss, 0, ls->work_sent, stream);
        stage_backward_weight(st, &st->stash[stash_slot(&ls->stash, m)], stream);
        stash_release(&ls->stash, m);  // the slot, with what I kept, is free for the next forward
        return;
    case PP_SEND_F: {  // under -rc from the work copy, which a later F may have taken: m's forward again first
        int k = stash_slot(&ls->stash, m);
        stage_restore(st, &st->stash[k], m, B, T, dloss, 0, ls->work_sent, stream);
        comm_send(cm, stage_output(st, &st->stash[k]), bytes, pipe_peer(pp, a->peer), output_sent_event(ls, k));
        if (forward_only) { stash_release(&ls->stash, m); }  // the slot is free once sent
        return;
    }
    case PP_SEND_B: {
        int k = stash_slot(&ls->outbox, m);
        comm_send(cm, ls->send_buf[k], bytes, pipe_peer(pp, a->peer), ls->send_buf_sent[k]);
        stash_release(&ls->outbox, m);
        return;
    }
    case PP_RECV_F: {
        int j = stash_acquire(&ls->inbox, m);
        comm_recv(cm, ls->act_in[j], bytes, pipe_peer(pp, a->peer), ls->act_in_drained[j], ls->act_in_arrived[j]);
        return;
    }
    case PP_RECV_B: {
        int j = stash_acquire(&ls->grad_inbox, m);
        comm_recv(cm, ls->grad_in[j], bytes, pipe_peer(pp, a->peer), ls->grad_in_drained[j], ls->grad_in_arrived[j]);
        return;
    }
    default: {
        char tok[48];
        fatal("action %s is not supported by this trainer", schedule_action_str(a, tok, sizeof(tok)));
    }
    }
}

// Queues this rank's list of a schedule (micro-batches of B x T tokens). forward_only: evaluation or
// sampling, no d(logits), each stash slot freed as soon as its activations have moved on.
static void tied_wte_post(Pipeline* pp);

static void run_schedule(Pipeline* pp, const Schedule* sc, int B, int T, int forward_only) {
    const ActionList* list = &sc->ranks[pp->rank];
    Comm* cm = pp->comm;
    int wte_post = forward_only ? -1 : schedule_tied_wte_post(sc, pp->rank);
    for (int l = 0; l < pp->num_local; l++) { pp->local[l].stage.work_mb = -1; }  // -rc: nothing of this schedule yet
    for (int i = 0; i < list->n; i++) {
        const Action* a = &list->a[i];
        activity_set("schedule", a, pp->step + 1);
        // each action timed on its own stream; a compute action after the waits for its messages, which count
        // as idle time, not as its own
        cudaStream_t s = pp_is_send(a->type) ? cm->send_stream : pp_is_recv(a->type) ? cm->recv_stream : cm->stream;
        if (pp_is_compute(a->type)) { action_waits(pp, a); }
        if (pp->timed) { cudaCheck(cudaEventRecord(pp->ev_begin[i], s)); }
        run_action(pp, a, B, T, forward_only);
        if (pp->timed) { cudaCheck(cudaEventRecord(pp->ev_end[i], s)); }
        if (i == wte_post) { tied_wte_post(pp); }
    }
    activity_set("schedule", NULL, pp->step + 1);
}

// the summed mean losses of micro-batches 0..m-1 over the job (only the last stage of each replica computes
// them; m may be 0): the one read of the losses per step
static double pipeline_read_losses(Pipeline* pp, int m) {
    Comm* cm = pp->comm;
    double sum = 0.0;
    if (pp->local_of[pp->S - 1] >= 0) {
        cudaCheck(cudaMemcpyAsync(pp->loss_host, pp->loss_dev, m * sizeof(double), cudaMemcpyDeviceToHost, cm->stream));
        comm_wait(cm);
        for (int i = 0; i < m; i++) { sum += pp->loss_host[i]; }
    }
    comm_allreduce_sum(cm, &sum, 1);
    return sum;
}

// forward and backward of the step's M micro-batches (this replica's of the D*M read); the losses stay on the
// device until pipeline_grad_norm reads them with the norm
static void pipeline_forward_backward(Pipeline* pp, NextBatchFn next, void* ctx) {
    cudaStream_t stream = pp->comm->stream;
    if (pp->timed) { cudaCheck(cudaEventRecord(pp->ev_step, stream)); }
    for (int i = 0; i < pp->num_local; i++) {
        Stage* st = &pp->local[i].stage;
        cudaCheck(cudaMemsetAsync(st->grads_memory, 0, st->dl.total * sizeof(float), stream));
        if (st->grad_wte_head) {
            cudaCheck(cudaMemsetAsync(st->grad_wte_head, 0, st->layout.sizes[WTE] * sizeof(float), stream));
        }
    }
    int D = pp->grid.D, M = pp->M;
    load_replica_tokens(pp->tokens, pp->grid.d * M, M, D * M, pp->B, pp->T, next, ctx);
    run_schedule(pp, &pp->schedule, pp->B, pp->T, 0);
}

// The tied wte: stage 0 holds the embedding side of the gradient, the last stage the LM-head side. Both compute
// embed + head, so both copies of wte get the same gradient and stay equal. The halves travel only when the
// two stages run on different ranks (not at P=1, nor under ZB-V, where rank 0 holds both): the head's while
// the schedule still runs (tied_wte_post, where schedule_tied_wte_post says), the embedding's after it.
static int tied_wte_peer(Pipeline* pp, int head_side) {
    return pipe_peer(pp, pp->schedule.stage_rank[head_side ? 0 : pp->S - 1]);
}

static void tied_wte_post(Pipeline* pp) {
    size_t bytes = tensor_unit_size(&pp->config, WTE) * sizeof(float);
    RankStage* h = local_or_null(pp, pp->S - 1);
    if (h) { comm_send(pp->comm, h->stage.grad_wte_head, bytes, tied_wte_peer(pp, 1), pp->ev_wte_sent); }
    else { comm_recv(pp->comm, pp->wte_other, bytes, tied_wte_peer(pp, 0), pp->ev_wte_drained, pp->ev_wte_arrived); }
}

static void pipeline_sync_tied_wte(Pipeline* pp) {
    cudaStream_t stream = pp->comm->stream;
    int last = pp->S - 1;
    size_t n = tensor_unit_size(&pp->config, WTE);
    RankStage* e = local_or_null(pp, 0);
    RankStage* h = local_or_null(pp, last);
    Stage* embed = e ? &e->stage : NULL;
    Stage* head = h ? &h->stage : NULL;
    activity_set("tied wte", NULL, pp->step + 1);
    if (!embed && !head) { return; }
    int travels = !embed || !head;
    if (travels && embed) { comm_send(pp->comm, embed->grads.wte, n * sizeof(float), tied_wte_peer(pp, 0), pp->ev_wte_sent); }
    if (travels && head) {
        comm_recv(pp->comm, pp->wte_other, n * sizeof(float), tied_wte_peer(pp, 1), pp->ev_wte_drained, pp->ev_wte_arrived);
    }
    if (travels) {  // the other half is here, and ours is sent before it is written
        cudaCheck(cudaStreamWaitEvent(stream, pp->ev_wte_arrived, 0));
        cudaCheck(cudaStreamWaitEvent(stream, pp->ev_wte_sent, 0));
    }
    if (embed) { add_inplace(embed->grads.wte, head ? head->grad_wte_head : pp->wte_other, n, stream); }  // += head
    if (head && head != embed) {  // embed, then += head; or the embedding stage's sum when it is on this rank
        device_copy(head->grads.wte, embed ? embed->grads.wte : pp->wte_other, n * sizeof(float), stream);
        if (!embed) { add_inplace(head->grads.wte, head->grad_wte_head, n, stream); }
    }
    if (travels) { cudaCheck(cudaEventRecord(pp->ev_wte_drained, stream)); }  // wte_other may be received again
}

// ----------------------------------------------------------------------------
// data parallelism (-dp D), as in train_gpt2_pp.c: every stage cut into D shards of pieces (llmc/data_parallel.h),
// a message carries one shard, its pieces packed one after another by device copies. Every message buffer is
// allocated in pipeline_init: nothing here allocates or waits for the device.

static const ShardPiece* shard_of(const Pipeline* pp, const RankStage* ls, int k) {
    return ls->pieces + (size_t)k * max_shard_pieces(&pp->config);
}

typedef enum { SHARD_PACK, SHARD_UNPACK, SHARD_ADD } ShardCopy;

// shard k of a stage buffer (elements of `size` bytes in DeviceLayout) into `packed`, back from it, or, for
// fp32 buffers, added from it
static void shard_copy(const Pipeline* pp, const RankStage* ls, int k, void* buf, void* packed, size_t size, ShardCopy how) {
    cudaStream_t stream = pp->comm->stream;
    const ShardPiece* pc = shard_of(pp, ls, k);
    for (int i = 0; i < ls->num_pieces[k]; i++) {
        char* at = (char*)buf + pc[i].offset * size;
        char* msg = (char*)packed + pc[i].packed * size;
        if (how == SHARD_PACK) { device_copy(msg, at, pc[i].count * size, stream); }
        else if (how == SHARD_UNPACK) { device_copy(at, msg, pc[i].count * size, stream); }
        else { add_inplace((float*)at, (const float*)msg, pc[i].count, stream); }
    }
}

// every rank's shard of a stage buffer to every other rank of the data-parallel group
static void shards_all_gather(Pipeline* pp, RankStage* ls, void* buf, size_t size) {
    int D = pp->grid.D, d = pp->grid.d, n = 0;
    char* packed = (char*)ls->dp_send;
    Transfer out[TRAIN_MAX_P], in[TRAIN_MAX_P];
    shard_copy(pp, ls, d, buf, packed + ls->shard_base[d] * size, size, SHARD_PACK);
    for (int k = 0; k < D; k++) {
        if (k == d) { continue; }
        out[n] = (Transfer){packed + ls->shard_base[d] * size, ls->shard_floats[d] * size, dp_peer(pp, k)};
        in[n++] = (Transfer){packed + ls->shard_base[k] * size, ls->shard_floats[k] * size, dp_peer(pp, k)};
    }
    comm_exchange(pp->comm, out, n, in, n);
    for (int k = 0; k < D; k++) {
        if (k != d) { shard_copy(pp, ls, k, buf, packed + ls->shard_base[k] * size, size, SHARD_UNPACK); }
    }
}

// The fp32 gradients summed over the data-parallel group with our own fixed order, not NCCL's (whose ring order
// changes with the topology): rank k of the group sums shard k, its own gradient first, then the others' in
// rank order, whatever P is. Without ZeRO-1 the sums are all-gathered so every replica updates the whole
// stage; under ZeRO-1 only this rank's shard is read after. Both end stages' copies of the tied wte, equal
// after pipeline_sync_tied_wte, get the same sums.
static void pipeline_reduce_gradients(Pipeline* pp) {
    int D = pp->grid.D, d = pp->grid.d;
    if (D == 1) { return; }
    activity_set("data-parallel reduction", NULL, pp->step + 1);
    for (int l = 0; l < pp->num_local; l++) {
        RankStage* ls = &pp->local[l];
        float* grads = ls->stage.grads_memory;
        Transfer out[TRAIN_MAX_P], in[TRAIN_MAX_P];
        int n = 0;
        for (int k = 0; k < D; k++) {
            if (k == d) { continue; }
            shard_copy(pp, ls, k, grads, ls->dp_send + ls->shard_base[k], sizeof(float), SHARD_PACK);
            out[n] = (Transfer){ls->dp_send + ls->shard_base[k], ls->shard_floats[k] * sizeof(float), dp_peer(pp, k)};
            in[n] = (Transfer){ls->dp_recv + (size_t)n * ls->dp_slot, ls->shard_floats[d] * sizeof(float), dp_peer(pp, k)};
            n++;
        }
        comm_exchange(pp->comm, out, n, in, n);
        for (int i = 0; i < n; i++) {  // in rank order
            shard_copy(pp, ls, d, grads, ls->dp_recv + (size_t)i * ls->dp_slot, sizeof(float), SHARD_ADD);
        }
        if (!pp->zero) { shards_all_gather(pp, ls, grads, sizeof(float)); }
    }
}

// The step's one read of the device: the losses and the norm. Squared norms per (tensor, layer) slot in
// checkpoint order: each rank squares its own shard's piece of each slot of its stages (the whole slot when
// D = 1) in one multi-tensor launch, whose slots do not depend on what else the rank holds (llmc/global_norm.cuh);
// the slots are summed over the job in rank order, then added in slot order: the same number at every pipeline
// depth for a fixed D. `unscale` removes the loss scale. An inf/nan gradient on any rank makes the result
// inf/nan everywhere. The job's mean training loss goes to pp->last_loss: each rank's micro-batches in order
// (the last stage's; 0 elsewhere), then the ranks in order.
static float pipeline_grad_norm(Pipeline* pp, float unscale) {
    Comm* cm = pp->comm;
    int M = pp->M, nslots = num_norm_slots(&pp->config);
    global_norm_squared(pp->step_row + M, &pp->norm, unscale, cm->stream);
    const double* const* rows = comm_gather_rows(cm, pp->step_row, M + nslots, 1);
    double loss = 0.0;
    for (int r = 0; r < cm->world; r++) {
        double mine = 0.0;
        for (int m = 0; m < M; m++) { mine += rows[r][m]; }
        loss += mine;
    }
    for (int i = 0; i < nslots; i++) {
        double sum = 0.0;
        for (int r = 0; r < cm->world; r++) { sum += rows[r][M + i]; }
        pp->norm_sums[i] = sum;
    }
    comm_release_rows(cm);
    pp->last_loss = (float)(loss / ((double)pp->grid.D * M));
    return norm_from_slots(pp->norm_sums, nslots);
}

// The optimizer half of a step: norm, overflow check, clipping, AdamW, loss-scale update.
static void pipeline_update(Pipeline* pp, float lr) {
    cudaStream_t stream = pp->comm->stream;
    activity_set("optimizer", NULL, pp->step + 1);
    if (pp->timed) { cudaCheck(cudaEventRecord(pp->ev_optim_begin, stream)); }
    float scale = pp->scaler.scale > 0.0f ? pp->scaler.scale : 1.0f;
    float norm = pipeline_grad_norm(pp, 1.0f / scale);
    pp->step++;
    pp->last_norm = norm;
    pp->last_skipped = 0;
    if (!is_finite_norm(norm)) {
        // every rank sees the same inf/nan norm, so every rank skips this step: the loss scaler's overflow, or,
        // without one, as in the CPU trainer, up to -nf steps in a row before the run counts as diverged
        pp->last_skipped = 1;
        if (pp->scaler.scale > 0.0f) {
            pp->scaler.scale *= pp->scaler.backoff;
            pp->scaler.good_steps = 0;
        } else if (++pp->nonfinite_in_a_row >= pp->max_nonfinite) {
            fatal("step %d: the gradient norm is %g, %d steps in a row (-nf %d): the run has diverged; no checkpoint "
                  "of it is written", pp->step, norm, pp->nonfinite_in_a_row, pp->max_nonfinite);
        } else if (pp->comm->rank == 0) {
            fprintf(stderr, "warning: step %d: the gradient norm is %g; the update is skipped on every rank (%d in a "
                    "row, -nf %d)\n", pp->step, norm, pp->nonfinite_in_a_row, pp->max_nonfinite);
        }
        if (pp->timed) { cudaCheck(cudaEventRecord(pp->ev_optim_end, stream)); }
        return;
    }
    pp->nonfinite_in_a_row = 0;
    float clip = pp->opt.grad_clip;
    float grad_scale = ((clip > 0.0f && norm > clip) ? clip / norm : 1.0f) / scale;
    pp->adam_t++;
    float bc1 = 1.0f - powf(pp->opt.beta1, (float)pp->adam_t);
    float bc2 = 1.0f - powf(pp->opt.beta2, (float)pp->adam_t);
    // AdamW on every piece of the stage, or under ZeRO-1 on this rank's shard (moments packed piece after
    // piece), then the shards' parameters all-gathered: elementwise, so a shard's update is the whole's bits
    int first = pp->zero ? pp->grid.d : 0, last = pp->zero ? pp->grid.d : pp->grid.D - 1;
    for (int l = 0; l < pp->num_local; l++) {
        RankStage* ls = &pp->local[l];
        Stage* st = &ls->stage;
        for (int k = first; k <= last; k++) {
            const ShardPiece* pc = shard_of(pp, ls, k);
            for (int i = 0; i < ls->num_pieces[k]; i++) {
                size_t off = pc[i].offset, mo = pp->zero ? pc[i].packed : off;
                float wd = tensor_is_decayed(pc[i].tensor) ? pp->opt.weight_decay : 0.0f;
                adamw_update(st->params_memory + off, st->master_memory ? st->master_memory + off : NULL,
                             st->grads_memory + off, st->m_memory + mo, st->v_memory + mo, pc[i].count, lr,
                             pp->opt.beta1, pp->opt.beta2, bc1, bc2, pp->opt.eps, wd, grad_scale, stream);
            }
        }
        if (pp->zero) {
            if (st->master_memory) { shards_all_gather(pp, ls, st->master_memory, sizeof(float)); }
            shards_all_gather(pp, ls, st->params_memory, sizeof(floatX));
        }
    }
    if (pp->timed) { cudaCheck(cudaEventRecord(pp->ev_optim_end, stream)); }
    if (pp->scaler.scale > 0.0f && ++pp->scaler.good_steps >= pp->scaler.interval) {
        pp->scaler.scale *= pp->scaler.growth;
        pp->scaler.good_steps = 0;
    }
}

// one training step: forward and backward of M micro-batches, the tied wte sum, the optimizer (as in the CPU
// trainer); returns the mean training loss
static float pipeline_train_step(Pipeline* pp, NextBatchFn next, void* ctx, float lr) {
    pipeline_forward_backward(pp, next, ctx);
    pipeline_sync_tied_wte(pp);
    pipeline_reduce_gradients(pp);
    pipeline_update(pp, lr);
    return pp->last_loss;
}

// mean loss over `batches` micro-batches of a loader, forward only, at most D*M at a time, M per replica
static float pipeline_eval(Pipeline* pp, DataLoader* dl, int batches) {
    double sum = 0.0;
    int D = pp->grid.D, M = pp->M;
    for (int done = 0; done < batches; done += D * M) {
        int round = batches - done < D * M ? batches - done : D * M;
        int first = pp->grid.d * M, m = round - first < M ? round - first : M;
        if (m < 0) { m = 0; }  // this replica has none of the last round: it reads past it all the same
        load_replica_tokens(pp->tokens, first, m, round, pp->B, pp->T, next_batch_from_loader, dl);
        if (m > 0) {
            Schedule fwd;
            schedule_build_forward_placed(&pp->schedule, m, &fwd);
            run_schedule(pp, &fwd, pp->B, pp->T, 1);
            schedule_free(&fwd);
        }
        sum += pipeline_read_losses(pp, m);
    }
    return (float)(sum / batches);
}

// Seconds of the last timed step, from its events: busy = the compute actions (F, B, I, W) of this rank,
// schedule = from the step's start to the end of its last action, and each stage's F, B, I and W seconds
// (-sc auto); with a trace on, every action as an event.
static void pipeline_step_times(Pipeline* pp, double* busy, double* schedule, Trace* tr) {
    const ActionList* list = &pp->schedule.ranks[pp->rank];
    float ms0, ms1;
    *busy = 0.0;
    memset(pp->action_secs, 0, (size_t)pp->S * 4 * sizeof(double));
    memset(pp->action_count, 0, (size_t)pp->S * 4 * sizeof(int));
    for (int i = 0; i < list->n; i++) {
        const Action* a = &list->a[i];
        cudaCheck(cudaEventElapsedTime(&ms0, pp->ev_step, pp->ev_begin[i]));
        cudaCheck(cudaEventElapsedTime(&ms1, pp->ev_step, pp->ev_end[i]));
        if (pp_is_compute(a->type)) {
            int kind = a->type == PP_F ? 0 : a->type == PP_B ? 1 : a->type == PP_I ? 2 : 3;
            *busy += (ms1 - ms0) * 1e-3;
            pp->action_secs[a->stage * 4 + kind] += (ms1 - ms0) * 1e-3;
            pp->action_count[a->stage * 4 + kind]++;
            trace_action(tr, a, ms0 * 1e-3, ms1 * 1e-3);
        } else {
            trace_add(tr, pp_is_send(a->type) ? "send" : "recv", a->stage, a->mb, ms0 * 1e-3, ms1 * 1e-3);
        }
    }
    cudaCheck(cudaEventElapsedTime(&ms1, pp->ev_step, pp->ev_end[list->n - 1]));
    *schedule = ms1 * 1e-3;
    cudaCheck(cudaEventElapsedTime(&ms0, pp->ev_step, pp->ev_optim_begin));
    cudaCheck(cudaEventElapsedTime(&ms1, pp->ev_step, pp->ev_optim_end));
    trace_add(tr, "optim", -1, -1, ms0 * 1e-3, ms1 * 1e-3);
    trace_add(tr, "step", -1, -1, 0.0, ms1 * 1e-3);
}

// the trace events of replica 0's ranks to rank 0, which writes the file (the replicas run the same schedule)
static void pipeline_write_trace(Pipeline* pp, const Trace* tr, const char* path) {
    Comm* cm = pp->comm;
    double* counts = (double*)calloc_check(pp->P, sizeof(double));
    if (pp->grid.d == 0) { counts[pp->rank] = tr->len; }
    comm_allreduce_sum(cm, counts, pp->P);
    if (cm->rank == 0) {
        int total = 0;
        for (int r = 0; r < pp->P; r++) { total += (int)counts[r]; }
        TraceEvent* all = (TraceEvent*)malloc_check((total > 0 ? total : 1) * sizeof(TraceEvent));
        memcpy(all, tr->events, tr->len * sizeof(TraceEvent));
        int n = tr->len;
        for (int r = 1; r < pp->P; r++) {
            comm_host_p2p(cm, all + n, (size_t)counts[r] * sizeof(TraceEvent), r, 0);
            n += (int)counts[r];
        }
        trace_write_json(all, n, path);
        free(all);
    } else if (pp->grid.d == 0) {
        comm_host_p2p(cm, tr->events, tr->len * sizeof(TraceEvent), 0, 1);
    }
    free(counts);
}

// ----------------------------------------------------------------------------
// 5. checkpoints (the CPU trainer's format), sampling

// ZeRO-1: a stage's whole moment (m or v) on replica 0, in DeviceLayout in its gradient buffer (free between
// steps), from every replica's shard; the other replicas send theirs and get NULL (collective over the group)
static float* stage_gather_moment(Pipeline* pp, RankStage* ls, StageBuffer which) {
    int D = pp->grid.D, d = pp->grid.d;
    float* mine = stage_buffer(&ls->stage, which);
    if (d != 0) {
        Transfer out = {mine, ls->shard_floats[d] * sizeof(float), dp_peer(pp, 0)};
        comm_exchange(pp->comm, &out, 1, NULL, 0);
        return NULL;
    }
    Transfer in[TRAIN_MAX_P];
    for (int k = 1; k < D; k++) {
        in[k - 1] = (Transfer){ls->dp_recv + (size_t)(k - 1) * ls->dp_slot, ls->shard_floats[k] * sizeof(float), dp_peer(pp, k)};
    }
    comm_exchange(pp->comm, NULL, 0, in, D - 1);
    float* whole = ls->stage.grads_memory;
    for (int k = 0; k < D; k++) {
        shard_copy(pp, ls, k, whole, k == 0 ? mine : ls->dp_recv + (size_t)(k - 1) * ls->dp_slot, sizeof(float), SHARD_UNPACK);
    }
    return whole;
}

// Rank 0 collects every stage's slices into the whole-model layout (other ranks pass global = NULL); the
// stages go last to first, so each rank sends its own in the order rank 0 receives them. Every replica holds
// the same bits, so replica 0's are gathered (under ZeRO-1 its moments assembled from the shards first).
static void pipeline_gather(Pipeline* pp, StageBuffer which, float* global) {
    int sharded = pp->zero && which != BUF_PARAMS;
    float** whole = (float**)calloc_check(pp->S, sizeof(float*));
    for (int l = 0; l < pp->num_local; l++) {
        RankStage* ls = &pp->local[l];
        whole[ls->index] = sharded ? stage_gather_moment(pp, ls, which) : stage_buffer(&ls->stage, which);
    }
    for (int s = pp->S - 1; s >= 0 && pp->grid.d == 0; s--) {  // stage 0 last: its wte wins (the copies are equal)
        int owner = pp->schedule.stage_rank[s];
        if (pp->rank != 0 && owner != pp->rank) { continue; }
        size_t ns = pp->layouts[s].num_parameters;
        float* part = (float*)malloc_check(ns * sizeof(float));
        if (owner == pp->rank) { layout_copy(&local_stage(pp, s)->stage.dl, whole[s], part, 0, pp->comm->stream); }
        if (pp->rank != 0) {
            comm_host_p2p(pp->comm, part, ns * sizeof(float), 0, 1);
        } else {
            if (owner != 0) { comm_host_p2p(pp->comm, part, ns * sizeof(float), owner, 0); }
            stage_copy_global(&pp->config, &pp->layouts[s], part, global, 1);
        }
        free(part);
    }
    free(whole);
}

static void gather_for_checkpoint(void* ctx, int which, float* global) {
    pipeline_gather((Pipeline*)ctx, which == 0 ? BUF_PARAMS : which == 1 ? BUF_M : BUF_V, global);
}

// each local stage's slice of a whole-model buffer into its params (master weights and floatX), m or v; under
// ZeRO-1 a moment keeps this rank's shard only, packed from the gradient buffer (free between steps)
static void pipeline_scatter(Pipeline* pp, StageBuffer which, float* global) {
    for (int l = 0; l < pp->num_local; l++) {
        RankStage* ls = &pp->local[l];
        Stage* st = &ls->stage;
        float* local = (float*)malloc_check(st->layout.num_parameters * sizeof(float));
        stage_copy_global(&pp->config, &st->layout, local, global, 0);
        if (which == BUF_PARAMS) { stage_set_params(st, local, pp->comm->stream); }
        else if (!pp->zero) { layout_copy(&st->dl, stage_buffer(st, which), local, 1, pp->comm->stream); }
        else {
            layout_copy(&st->dl, st->grads_memory, local, 1, pp->comm->stream);
            shard_copy(pp, ls, pp->grid.d, st->grads_memory, stage_buffer(st, which), sizeof(float), SHARD_PACK);
        }
        free(local);
    }
}

static void scatter_from_checkpoint(void* ctx, int which, float* global) {
    pipeline_scatter((Pipeline*)ctx, which == 1 ? BUF_M : BUF_V, global);
}

// -sc auto (llmc/schedule_auto.h, as in the CPU trainer): auto_calibration_step ran AUTO_CALIBRATION, whose I and W
// the CUDA events time apart (inside a fused B the weight-gradient GEMMs share each call with the d(input)
// GEMM); from each stage's F, I and W come the costs of a layer, the embedding and the LM head, every builder
// is simulated at the split those costs give it, and the run moves to the fastest schedule and split. Master
// weights and AdamW moments move through whole-model copies, as a checkpoint would (the floatX parameters
// are the master weights rounded to nearest, so they come back the same), and the run goes on with the same
// bits. choice gets the schedule and split that run on; -mem limits the largest rank by stage_memory_plan.
#define AUTO_CALIBRATION "zbh1"  // 1F1B's order and peak stash, with split backward
static void stage_memory_plan(const GPT2Config* c, const TrainArgs* args, const Schedule* sc, const int* units, int s,
                              double* bytes);
static void pipeline_auto_schedule(Pipeline* pp, const TrainArgs* args, AutoChoice* choice) {
    int S = pp->S, n = 5 * S;
    double* secs = (double*)calloc_check(2 * n, sizeof(double));  // (S, 5) as stage_costs_measured reads them
    for (int s = 0; s < S; s++) {
        for (int k = 0; k < 4; k++) {
            secs[5 * s + k] = pp->action_secs[4 * s + k];
            secs[n + 5 * s + k] = pp->action_count[4 * s + k];
        }
    }
    comm_allreduce_sum(pp->comm, secs, 2 * n);
    StageCosts* cost = (StageCosts*)malloc_check(S * sizeof(StageCosts));
    stage_costs_measured(secs, secs + n, S, cost);
    AutoMemory memory = {&pp->config, args, pp->P, stage_memory_plan};
    AutoQuery q = {AUTO_CALIBRATION, pp->step, args->layers_arg != NULL, args->max_mib, pipeline_largest_rank_bytes,
                   &memory, pp->comm->rank == 0 && !args->quiet ? stdout : NULL, pipeline_attention_share(args, &pp->config)};
    schedule_auto_choose(cost, pp->units, pp->P, pp->M, pp->config.num_layers, &q, choice);
    if (choice->moves) {
        size_t N = model_num_parameters(&pp->config);
        StageBuffer which[3] = {BUF_PARAMS, BUF_M, BUF_V};
        float* global[3];
        for (int k = 0; k < 3; k++) {
            global[k] = (float*)malloc_check(N * sizeof(float));
            pipeline_gather(pp, which[k], global[k]);
            if (pp->comm->rank == 0) {  // to every other rank of the job
                for (int r = 1; r < pp->comm->world; r++) { comm_host_p2p(pp->comm, global[k], N * sizeof(float), r, 1); }
            } else {
                comm_host_p2p(pp->comm, global[k], N * sizeof(float), 0, 0);
            }
        }
        TrainArgs a = *args;
        a.schedule_name = choice->name;
        a.layers_arg = choice->split;
        Pipeline next;
        pipeline_init(&next, &pp->config, &a, pp->comm);
        next.opt = pp->opt;
        next.scaler = pp->scaler;
        next.step = pp->step;
        next.adam_t = pp->adam_t;
        next.last_norm = pp->last_norm;
        next.nonfinite_in_a_row = pp->nonfinite_in_a_row;
        next.max_nonfinite = pp->max_nonfinite;
        for (int k = 0; k < 3; k++) {
            pipeline_scatter(&next, which[k], global[k]);
            free(global[k]);
        }
        pipeline_free(pp);
        *pp = next;
    }
    free(cost);
    free(secs);
}

static void save_checkpoint(Pipeline* pp, const TrainArgs* args, const DataLoader* dl, uint64_t sample_rng) {
    activity_set("checkpoint", NULL, pp->step);
    TrainState ts;
    memset(&ts, 0, sizeof(ts));
    ts.step = pp->step;
    ts.adam_t = pp->adam_t;
    ts.num_parameters = (int64_t)model_num_parameters(&pp->config);
    dataloader_state(dl, &ts.shard, &ts.position);
    ts.sample_rng = sample_rng;
    ts.loss_scale = pp->scaler.scale;
    ts.good_steps = pp->scaler.good_steps;
    train_state_set_args(&ts, args);
    checkpoint_save(args->out_dir, &pp->config, &ts, pp->comm->rank == 0, gather_for_checkpoint, pp);
}

// every rank reads the state file and keeps its own slices of the moments
static void load_state(Pipeline* pp, const TrainArgs* args, const char* path, DataLoader* dl, uint64_t* sample_rng) {
    TrainState ts = checkpoint_load_state(path, &pp->config, scatter_from_checkpoint, pp);
    train_state_resume_check(&ts, args, path, pp->comm->rank == 0 ? stdout : NULL);
    pp->step = ts.step;
    pp->adam_t = ts.adam_t;
    if (pp->scaler.scale > 0.0f && ts.loss_scale > 0.0f) {
        pp->scaler.scale = ts.loss_scale;
        pp->scaler.good_steps = ts.good_steps;
    }
    dataloader_seek(dl, (size_t)ts.shard, ts.position);
    *sample_rng = ts.sample_rng;
}

// gen_tokens tokens from <|endoftext|>, one forward-only pass of replica 0's pipeline per token (the replicas
// hold the same model); its last stage broadcasts each token to the job, rank 0 prints them
static void sample_text(Pipeline* pp, const Tokenizer* tok, int gen_tokens, uint64_t* rng) {
    const GPT2Config* c = &pp->config;
    Comm* cm = pp->comm;
    int Vp = c->padded_vocab_size, last = pp->schedule.stage_rank[pp->S - 1];  // the LM head's rank (replica 0's: its job rank)
    int* seq = (int*)malloc_check((size_t)(gen_tokens + 1) * sizeof(int));
    seq[0] = tok->eot_token;
    float* probs = (float*)malloc_check(Vp * sizeof(float));
    float* row_host;
    cudaCheck(cudaMallocHost(&row_host, Vp * sizeof(float)));
    float* row_dev = (float*)cuda_alloc(Vp * sizeof(float), cm->stream);
    Schedule one;
    schedule_build_forward_placed(&pp->schedule, 1, &one);
    if (cm->rank == 0) { printf("generating:\n---\n"); }
    for (int t = 1; t <= gen_tokens; t++) {
        int n = sample_window(seq, t, pp->T, pp->tokens);
        if (pp->grid.d == 0) { run_schedule(pp, &one, 1, n, 1); }
        float coin = random_f32(rng);  // drawn on every rank: the sampler's RNG stays the same everywhere
        int next = 0;
        if (cm->rank == last) {
            // forward only: F took slot 0 (all were free) and freed it, the logits stay
            Activations* a = &local_stage(pp, pp->S - 1)->stage.stash[0];
            cast_to_float(row_dev, a->logits + (size_t)(n - 1) * Vp, Vp, cm->stream);
            cudaCheck(cudaMemcpyAsync(row_host, row_dev, Vp * sizeof(float), cudaMemcpyDeviceToHost, cm->stream));
            comm_wait(cm);
            next = sample_softmax(row_host, c->vocab_size, coin, probs);
        }
        comm_broadcast(cm, &next, sizeof(next), last);
        seq[t] = next;
        if (cm->rank == 0) { safe_print(tokenizer_decode(tok, next)); fflush(stdout); }
    }
    if (cm->rank == 0) { printf("\n---\n"); }
    schedule_free(&one);
    comm_wait(cm);
    cudaCheck(cudaFree(row_dev));
    cudaCheck(cudaFreeHost(row_host));
    free(seq);
    free(probs);
}

// ----------------------------------------------------------------------------
// 6. the training loop of one rank, and how ranks are started

#define printf0(...) do { if (rank == 0 && !args->quiet) { printf(__VA_ARGS__); } } while (0)

// fatal() prints the error and then calls this: it says what this rank was doing, and when this process is
// one rank of several it aborts the communicator and the MPI job, so the peers exit too (they see an NCCL
// error in comm_wait). Ranks that are threads of this process end with it.
static int process_world = 1;
static void on_fatal(void) {
    if (strcmp(rank_activity.phase, "start-up") != 0) {  // a bad flag or file says enough by itself
        char what[160];
        fprintf(stderr, "error: this rank was on %s\n", activity_describe(what, sizeof(what)));
    }
    if (process_comm) { ncclCommAbort(process_comm); }
#ifdef USE_MPI
    if (process_world > 1) { MPI_Abort(MPI_COMM_WORLD, 1); }
#endif
}

// The plan of the schedule that runs: every stage's stash slots and the bytes one slot allocates (the functions
// that sized them), and the schedule's bubble in unit time (F = 1, B = 2), what each step's measured one is set
// against. Rank 0 prints it.
typedef struct {
    int* slots;
    size_t* stash_bytes;
    size_t* work_bytes;  // -rc: the one copy of the rest of the activations each stage recomputes into
    double bubble;
} Plan;

static void plan_make(Plan* plan, const Pipeline* pp, const TrainArgs* args) {
    int split = schedule_has_split_backward(&pp->schedule);
    plan->slots = (int*)malloc_check(pp->S * sizeof(int));
    plan->stash_bytes = (size_t*)malloc_check(pp->S * sizeof(size_t));
    plan->work_bytes = (size_t*)malloc_check(pp->S * sizeof(size_t));
    for (int s = 0; s < pp->S; s++) {
        const StageLayout* lay = &pp->layouts[s];
        plan->slots[s] = schedule_stage_slots(&pp->schedule, s);
        plan->stash_bytes[s] = activation_slot_bytes(&pp->config, lay, pp->B, pp->T, split,
                                                     args->recompute ? SLOT_PART : ALL_PARTS);
        plan->work_bytes[s] = args->recompute ? activation_slot_bytes(&pp->config, lay, pp->B, pp->T, split, WORK_PART) : 0;
    }
    SimResult sim;
    schedule_simulate_planned(&pp->schedule, args->schedule_file ? NULL : args->schedule_name, &sim);
    plan->bubble = sim.bubble;
    sim_result_free(&sim);
    if (pp->comm->rank == 0 && !args->quiet) {
        print_pipeline_plan(&pp->config, args, &pp->schedule, pp->units, plan->slots, plan->stash_bytes, plan->bubble);
        for (int s = 0; s < pp->S && args->recompute; s++) {
            printf("stage %d: -rc %s: the stash keeps each micro-batch's input; one %.1f MiB copy of the rest is "
                   "recomputed before each backward\n", s, args->recompute == RC_ALWAYS ? "always" : "except_last",
                   plan->work_bytes[s] / 1048576.0);
        }
    }
}

static void plan_free(Plan* plan) {
    free(plan->slots);
    free(plan->stash_bytes);
    free(plan->work_bytes);
}

// What stage s of the job allocates on its rank's GPU, by category, from the flags alone (-plan): the sizes
// stage_init and pipeline_init allocate with. Under ZeRO-1 the moments are replica 0's shard. Not in any stage:
// the rank's few KiB of losses, norm slots and collective staging, and its pinned host buffers.
static void stage_memory_plan(const GPT2Config* c, const TrainArgs* args, const Schedule* sc, const int* units, int s,
                              double* bytes) {
    StageLayout lay = pipeline_stage_layout(c, units, sc->S, s);
    DeviceLayout dl = device_layout(c, &lay);
    int B = args->B, T = args->T, D = args->D;
    size_t n = dl.total, F = sizeof(float), X = sizeof(floatX), moments = n, packed = 0, largest = 0;
    ShardPiece* pieces = (ShardPiece*)malloc_check(max_shard_pieces(c) * sizeof(ShardPiece));
    for (int k = 0; k < D; k++) {
        size_t floats;
        stage_shard_pieces(c, &lay, D, k, pieces, &floats);
        if (k == 0 && args->zero) { moments = floats; }
        packed += floats;
        largest = floats > largest ? floats : largest;
    }
    free(pieces);
    MessageBuffers mb = stage_message_buffers(sc, s);
    bytes[MEM_PARAMETERS] = n * X + (PRECISION_FP32 ? 0 : n * F);
    bytes[MEM_GRADIENTS] = (n + (lay.has_head ? lay.sizes[WTE] : 0)) * F;
    bytes[MEM_OPTIMIZER] = 2 * moments * F;
    int split = schedule_has_split_backward(sc);
    bytes[MEM_STASH] = schedule_stage_slots(sc, s) *
                       (double)activation_slot_bytes(c, &lay, B, T, split, args->recompute ? SLOT_PART : ALL_PARTS) +
                       (args->recompute ? (double)activation_slot_bytes(c, &lay, B, T, split, WORK_PART) : 0.0);
    bytes[MEM_SCRATCH] = scratch_bytes(c, B, T);
    bytes[MEM_COMMUNICATION] = (D > 1 ? (packed + (D - 1) * largest) * F : 0) +
                               (mb.act_in + mb.grad_in + mb.send) * (double)B * T * c->channels * X +
                               (stage_receives_wte(sc, s) ? tensor_unit_size(c, WTE) * F : 0);
}

// what every stage of replica 0 allocated, printed by rank 0 in -plan's form (collective)
static void print_allocated_memory(Pipeline* pp, int print) {
    int S = pp->S;
    double* bytes = (double*)calloc_check((size_t)S * MEM_CATEGORIES, sizeof(double));
    for (int l = 0; l < pp->num_local && pp->grid.d == 0; l++) {
        double* b = bytes + pp->local[l].index * MEM_CATEGORIES;
        for (int i = 0; i < MEM_CATEGORIES; i++) { b[i] = pp->local[l].stage.allocated[i]; }
    }
    comm_allreduce_sum(pp->comm, bytes, S * MEM_CATEGORIES);
    for (int s = 0; s < S && print; s++) { print_stage_memory(s, "allocated", bytes + s * MEM_CATEGORIES); }
    free(bytes);
}

// one rank's whole run: build its stage, train, validate, sample, checkpoint
static void train_rank(const TrainArgs* args, Comm* cm) {
    int rank = cm->rank, D = args->D, world = cm->world, B = args->B, T = args->T, M = args->M;
    LRSchedule lrs = {lr_schedule_parse(args->lr_schedule_name), args->lr, args->warmup, args->max_steps, args->final_frac};
    int from_file;
    GPT2Config config = pipeline_model_config(args, &from_file);
    int HS = config.channels / config.num_heads;
    if (HS % 16 != 0 || HS > 256) {  // flash_attention.cuh's tiles; said before anything is allocated
        fatal("flag -e %s: head size C/NH = %d/%d = %d; flash attention needs a multiple of 16, at most 256",
              args->model_arg, config.channels, config.num_heads, HS);
    }
    char resume_model[1100], resume_state[1100];
    if (args->out_dir && rank == 0) { mkdir_p(args->out_dir); }
    if (args->resume) { pipeline_resume_paths(args, &config, resume_model, resume_state, sizeof(resume_model)); }

    int autoschedule = !args->schedule_file && strcmp(args->schedule_name, "auto") == 0;
    TrainArgs first_args = *args;
    if (autoschedule) { first_args.schedule_name = AUTO_CALIBRATION; }  // up to auto_calibration_step, which times the stages
    AutoChoice choice;  // -sc auto's schedule after the first step
    Pipeline pp;
    pipeline_init(&pp, &config, &first_args, cm);
    pp.opt = (OptimizerConfig){args->lr, 0.9f, args->beta2, 1e-8f, args->weight_decay, args->grad_clip};
    pp.scaler = (LossScaler){args->loss_scale, 2.0f, 0.5f, args->scale_interval, 0};
    pp.max_nonfinite = args->max_nonfinite;
    const char* src = args->resume ? resume_model : from_file ? args->model_arg : NULL;
    for (int l = 0; l < pp.num_local; l++) {
        Stage* st = &pp.local[l].stage;
        float* host = (float*)malloc_check(st->layout.num_parameters * sizeof(float));
        if (src) { model_read_stage(src, &config, &st->layout, host); }
        else { stage_random_init(&config, &st->layout, host); }
        stage_set_params(st, host, cm->stream);
        free(host);
    }

    DataLoader train_loader, val_loader;
    dataloader_init(&train_loader, args->train_pattern, B, T, config.vocab_size);
    dataloader_init(&val_loader, args->val_pattern, B, T, config.vocab_size);
    if (args->shuffle) { dataloader_shuffle(&train_loader); }
    int val_batches = args->val_batches;
    if (val_batches > dataloader_num_batches(&val_loader)) { val_batches = (int)dataloader_num_batches(&val_loader); }
    Tokenizer tokenizer;
    tokenizer_init(&tokenizer, args->tokenizer_path);
    if (args->gen_tokens > 0) { tokenizer_check_model(&tokenizer, config.vocab_size); }
    uint64_t sample_rng = 1337;
    if (args->resume) { load_state(&pp, args, resume_state, &train_loader, &sample_rng); }
    Logger logger;
    logger_init(&logger, rank == 0 ? args->out_dir : NULL, args->resume);

    printf0("model: L=%d C=%d NH=%d V=%d (padded %d) maxT=%d, %zu parameters, %s\n", config.num_layers, config.channels,
            config.num_heads, config.vocab_size, config.padded_vocab_size, config.max_seq_len,
            model_num_parameters(&config), PRECISION_NAME);
    char replicas[40] = "";
    if (D > 1) { snprintf(replicas, sizeof(replicas), " per replica x D=%d", D); }
    printf0("batch: B=%d T=%d M=%d%s -> %d tokens per step%s; GELU %s\n", B, T, M, replicas, B * T * M * D,
            pp.scaler.scale > 0 ? ", dynamic loss scaling" : "", args->gelu_fusion ? "in cuBLASLt's epilogue" : "kernels");
    printf0("devices: %s\n", cm->hub ? (world > 1 ? "every stage on GPU 0, one thread each, device copies between them"
                                                  : "one GPU") : "one GPU per stage, NCCL between them");
    if (rank == 0 && !args->quiet) { grid_print(&pp.grid, stdout); }
    if (args->zero) { printf0("ZeRO-1: each rank keeps the AdamW moments of 1/%d of its stages' parameters\n", D); }
    print_allocated_memory(&pp, rank == 0 && !args->quiet);
    Plan plan;
    plan_make(&plan, &pp, &first_args);

    Trace trace;  // the actions, messages and optimizer of the last step, timed by CUDA events on the GPU
    memset(&trace, 0, sizeof(trace));
    trace.rank = rank;
    int max_steps = args->max_steps, first_step = pp.step;
    for (int step = pp.step; step <= max_steps; step++) {
        int last = step == max_steps;
        if (val_batches > 0 && due(args->val_every, step, last)) {
            dataloader_reset(&val_loader);
            float val_loss = pipeline_eval(&pp, &val_loader, val_batches);
            printf0("step %4d | val loss %.6f\n", step, val_loss);
            if (rank == 0) { logger_log_val(&logger, step, val_loss); }
        }
        if (args->gen_tokens > 0 && ((args->sample_every > 0 && step > 0 && step % args->sample_every == 0) || last)) {
            sample_text(&pp, &tokenizer, args->gen_tokens, &sample_rng);
        }
        if (last) { break; }
        trace.on = args->trace_path != NULL && step + 1 == max_steps;
        comm_barrier(cm);  // a common start, so idle time is measured fairly
        double t0 = now_seconds();
        float lr = lr_at(&lrs, step);
        pp.timed = 1;
        float loss = pipeline_train_step(&pp, next_batch_from_loader, &train_loader, lr);
        pp.timed = 0;
        comm_wait(cm);  // the step queued its update without waiting for it: its wall time and its events' times
        double secs[3] = {0.0, now_seconds() - t0, 0.0};  // busy (summed), wall, schedule (averaged)
        pipeline_step_times(&pp, &secs[0], &secs[2], &trace);
        comm_allreduce_sum(cm, secs, 3);
        if (args->losses_out) { args->losses_out[step] = loss; }
        char extra[96] = "";
        if (pp.scaler.scale > 0) {
            snprintf(extra, sizeof(extra), "%s | loss scale %g", pp.last_skipped ? " | overflow: step skipped" : "", pp.scaler.scale);
        }
        StepReport report = {step + 1, max_steps, world, M, B * T * M * D, loss, pp.last_norm, lr, secs[1] / world,
                             secs[2] / world, secs[0], plan.bubble, extra};  // every rank of the job
        if (rank == 0 && !args->quiet) { print_step_line(&report); }
        if (autoschedule && step == auto_calibration_step(first_step, max_steps)) {
            pipeline_auto_schedule(&pp, args, &choice);
            first_args.schedule_name = choice.name;
            plan_free(&plan);
            plan_make(&plan, &pp, &first_args);
        }
        if (rank == 0) { logger_log_train(&logger, step + 1, loss, lr, pp.last_norm); }
        if (args->out_dir && ((args->ckpt_every > 0 && (step + 1) % args->ckpt_every == 0) || step + 1 == max_steps)) {
            save_checkpoint(&pp, args, &train_loader, sample_rng);
        }
        if (trace.on) {
            pipeline_write_trace(&pp, &trace, args->trace_path);
            printf0("wrote trace %s (draw it: python3 scripts/plot_pipeline.py %s)\n", args->trace_path, args->trace_path);
        }
    }
    // the stash each stage actually used (counted as slots were taken), reported by rank 0
    double* peaks = (double*)calloc_check(pp.S, sizeof(double));
    for (int l = 0; l < pp.num_local && pp.grid.d == 0; l++) { peaks[pp.local[l].index] = pp.local[l].stash.peak; }
    comm_allreduce_sum(cm, peaks, pp.S);
    if (rank == 0 && !args->quiet) { print_peak_stash(pp.S, peaks, plan.stash_bytes); }
    free(peaks);
    free(trace.events);
    plan_free(&plan);
    logger_free(&logger);
    tokenizer_free(&tokenizer);
    dataloader_free(&train_loader);
    dataloader_free(&val_loader);
    pipeline_free(&pp);
}

// Runs fn(ctx, comm) for P ranks (D*P with data parallelism), each on a host thread of this process: rank r on
// GPU r through NCCL, or, with one_device (or fewer GPUs than ranks), every rank on GPU 0 through a LocalHub. Under the SIMT CPU runtime
// this is how a whole pipeline runs inside one test process.
typedef void (*RankMain)(void* ctx, Comm* cm);

typedef struct {
    RankMain fn;
    void* ctx;
    int rank, world;
    double timeout;
    LocalHub* hub;
    ncclUniqueId id;
} RankThread;

static void* rank_thread(void* arg) {
    RankThread* r = (RankThread*)arg;
    Comm cm;
    comm_open(&cm, r->rank, r->world, r->hub ? 0 : r->rank, r->hub, &r->id, r->timeout);
    r->fn(r->ctx, &cm);
    comm_close(&cm);
    return NULL;
}

static int use_one_device(int P, int one_device) {
    int devices = 0;
    cudaCheck(cudaGetDeviceCount(&devices));
    return one_device || P == 1 || devices < P;
}

static void run_ranks_as_threads(int P, int one_device, double timeout, RankMain fn, void* ctx) {
    RankThread* ranks = (RankThread*)calloc_check(P, sizeof(RankThread));
    pthread_t* threads = (pthread_t*)calloc_check(P, sizeof(pthread_t));
    LocalHub hub;
    int local = use_one_device(P, one_device);
    ncclUniqueId id;
    memset(&id, 0, sizeof(id));
    if (local) {
        cudaCheck(cudaSetDevice(0));
        hub_init(&hub, P);
    } else {
        ncclCheck(ncclGetUniqueId(&id));
    }
    for (int r = 0; r < P; r++) {
        ranks[r] = (RankThread){fn, ctx, r, P, timeout, local ? &hub : NULL, id};
        if (pthread_create(&threads[r], NULL, rank_thread, &ranks[r]) != 0) { fatal("cannot start the thread of rank %d", r); }
    }
    for (int r = 0; r < P; r++) { pthread_join(threads[r], NULL); }
    if (local) { hub_free(&hub); }
    free(ranks);
    free(threads);
}

#ifndef TESTING
static void train_rank_main(void* ctx, Comm* cm) { train_rank((const TrainArgs*)ctx, cm); }

// Slurm without MPI: rank 0 publishes the NCCL id in a file named after the job and step, so a reused
// directory or two jobs sharing it never hand a rank someone else's id; it removes the file once every rank
// has joined. The others poll for it (NFS may show a new file late) and give up with a message.
static void rendezvous_file(const char* dir, int rank, double timeout, ncclUniqueId* id, char* path, size_t n) {
    const char* job = getenv("SLURM_JOB_ID");
    const char* step = getenv("SLURM_STEP_ID");
    if (!job) { fatal("flag -pf needs SLURM_JOB_ID in the environment to name the id file (run under srun)"); }
    snprintf(path, n, "%s/ncclUniqueId.%s.%s.bin", dir, job, step ? step : "0");
    if (rank == 0) {
        ncclCheck(ncclGetUniqueId(id));
        AtomicFile af;
        atomic_open(&af, path);  // replaces a stale file of this job step (a requeued run)
        atomic_write(&af, id, sizeof(*id), 1);
        atomic_commit(&af);
        return;
    }
    double deadline = now_seconds() + timeout;
    for (;;) {
        FILE* f = fopen(path, "rb");
        if (f) {
            size_t got = fread(id, 1, sizeof(*id), f);
            fclose(f);
            if (got == sizeof(*id)) { return; }
        }
        if (now_seconds() > deadline) {
            fatal("rank %d: no %s after %.0f s (-to): is rank 0 running with the same -pf directory?", rank, path, timeout);
        }
        usleep(100000);
    }
}

int main(int argc, char** argv) {
    TrainArgs args;
    train_args_default(&args, PRECISION_FP16 ? 65536.0f : 0.0f);  // FP16 needs a scaler; BF16 has fp32's range
    // FP32 runs GELU in its own kernels: the cuBLASLt epilogue's tanh approximation is unmeasured against the
    // FP32 tolerances (issue 9, finding 6); in BF16/FP16 it is far below the rounding
    args.gelu_fusion = !PRECISION_FP32;
    int rank = 0, world = 1, local_rank = 0;
    fatal_hook = on_fatal;
#ifdef USE_MPI
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    MPI_Comm node;  // the ranks on this machine: the node-local rank picks the GPU, whatever the rank placement
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local_rank);
    MPI_Comm_free(&node);
#endif
    train_args_parse(&args, argc, argv, 1, rank == 0);
    if (args.rendezvous_dir) {
        const char* r = getenv("SLURM_PROCID");
        const char* n = getenv("SLURM_NTASKS");
        const char* l = getenv("SLURM_LOCALID");
        if (!r || !n || !l) { fatal("flag -pf needs SLURM_PROCID, SLURM_NTASKS and SLURM_LOCALID (run under srun)"); }
        rank = atoi(r);
        world = atoi(n);
        local_rank = atoi(l);
    }
    process_world = world;
    args.P = train_args_stages(&args, world);
    if (args.print_schedule || args.print_memory) {  // need no GPU
        if (args.print_schedule) {
            Schedule sc;
            TrainArgs shown = args;
            if (strcmp(args.schedule_name, "auto") == 0) { shown.schedule_name = "1f1b"; }  // what auto starts with
            pipeline_load_schedule(&sc, &shown, args.P);
            if (rank == 0) { print_schedule_loadable(&sc, stdout); }
            schedule_free(&sc);
        }
        if (rank == 0 && args.print_memory) {
            pipeline_print_memory_plan(&args, args.P, stage_memory_plan,
                                       PRECISION_FP32 ? "fp32" : PRECISION_NAME " parameters and activations, fp32 "
                                       "master weights, gradients and moments");
        }
    } else {
        int devices = 0;
        cudaError_t err = cudaGetDeviceCount(&devices);
        if (err != cudaSuccess || devices == 0) {
            fatal("no CUDA device: %s. This is the GPU trainer; without a GPU use ./train_gpt2_pp_cpu",
                  err != cudaSuccess ? cudaGetErrorString(err) : "cudaGetDeviceCount found 0 devices");
        }
        if (world == 1) {
            run_ranks_as_threads(args.D * args.P, args.one_device, args.timeout, train_rank_main, &args);
        } else {
            if (local_rank >= devices) {
                fatal("rank %d is rank %d on its node, which has %d GPU(s): NCCL needs one GPU per rank (one process "
                      "with -pp %d puts every stage on one GPU)", rank, local_rank, devices, args.P);
            }
            ncclUniqueId id;
            char id_path[1200] = "";
            if (args.rendezvous_dir) { rendezvous_file(args.rendezvous_dir, rank, args.timeout, &id, id_path, sizeof(id_path)); }
            else {
                if (rank == 0) { ncclCheck(ncclGetUniqueId(&id)); }
#ifdef USE_MPI
                MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD);
#endif
            }
            Comm cm;
            comm_open(&cm, rank, world, local_rank, NULL, &id, args.timeout);
            process_comm = cm.nccl;
            if (rank == 0 && id_path[0]) { unlink(id_path); }  // every rank has joined: the id is used up
            train_rank(&args, &cm);
            process_comm = NULL;
            comm_close(&cm);
        }
    }
#ifdef USE_MPI
    MPI_Finalize();
#endif
    return 0;
}
#endif
