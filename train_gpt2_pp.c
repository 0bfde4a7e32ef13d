/*
GPT-2 training in plain C, fp32, on the CPU: the reference path of this project.

It is the oracle for the CUDA kernels, the trainer for anyone without a GPU, and the first place to read how
the model is cut into pipeline stages. The file reads top to bottom:
  1. the layer kernels (forward and backward), plain loops, OpenMP across independent outputs only;
  2. a pipeline Stage: a contiguous run of layers with its parameters, gradients, AdamW state and a stash of
     per-micro-batch activations, and its forward/backward over one micro-batch;
  3. the training step: micro-batches, the tied-wte gradient sum, the global grad norm, clipping, AdamW;
  4. checkpoints, validation, sampling and main().

Determinism is a design rule, not an accident: every output element is computed by one thread in a fixed
order, gradients accumulate over micro-batches in increasing order, and the two halves of the tied wte
gradient (embedding side, LM-head side) are kept apart and added once, at the end of the step. That is what
lets any pipeline split of the same model reproduce the single-stage run bit for bit.
*/
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <dirent.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <signal.h>
#ifdef USE_BLAS
#include <cblas.h>
#endif
#ifdef USE_MPI
#include <mpi.h>
#endif

// defines: fatal, fopen_check, fread_check, atomic file writes, flag parsing
#include "llmc/utils.h"
// defines: manual_seed, normal_, random_f32 (mt19937 and xorshift)
#include "llmc/rand.h"
// defines: GPT2Config, StageLayout, tensor tables, stage_random_init, model checkpoint read/write
#include "llmc/model.h"
// defines: DataLoader (llm.c token shards)
#include "llmc/dataloader.h"
// defines: Tokenizer (decode only)
#include "llmc/tokenizer.h"
// defines: LRSchedule, lr_at
#include "llmc/lr_schedule.h"
// defines: Logger (main.log)
#include "llmc/logger.h"
// defines: TrainArgs (the command line, shared with the CUDA trainer)
#include "llmc/train_args.h"
// defines: TrainState, checkpoint_save/load (shared with the CUDA trainer)
#include "llmc/train_state.h"
// defines: Schedule, Action, schedule_build, schedule_validate, schedule_simulate (pipeline schedules as data)
#include "llmc/schedule.h"
// defines: partition_balance, partition_parse (layers per stage)
#include "llmc/partition.h"

// ----------------------------------------------------------------------------
// 1. layer kernels. Shapes: B batch, T time, C channels, OC output channels, NH heads.
// Parameter gradients accumulate (+=) so micro-batches add up; activation gradients are overwritten (=)
// except where the residual stream forks, where they are added.

static void encoder_forward(float* out, const int* inp, const float* wte, const float* wpe, int B, int T, int C) {
    // out (B,T,C): token embedding wte[inp[b,t]] plus position embedding wpe[t]
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float* o = out + ((size_t)b * T + t) * C;
            const float* te = wte + (size_t)inp[b * T + t] * C;
            const float* pe = wpe + (size_t)t * C;
            for (int i = 0; i < C; i++) { o[i] = te[i] + pe[i]; }
        }
    }
}

static void encoder_backward(float* dwte, float* dwpe, const float* dout, const int* inp, int B, int T, int C) {
    // several positions may hold the same token, so threads split the channels, never the positions:
    // each dwte element then sums its contributions in (b,t) order whatever the thread count
    #pragma omp parallel for
    for (int i0 = 0; i0 < C; i0 += 16) {
        int i1 = i0 + 16 < C ? i0 + 16 : C;
        for (int b = 0; b < B; b++) {
            for (int t = 0; t < T; t++) {
                const float* d = dout + ((size_t)b * T + t) * C;
                float* dte = dwte + (size_t)inp[b * T + t] * C;
                float* dpe = dwpe + (size_t)t * C;
                for (int i = i0; i < i1; i++) {
                    dte[i] += d[i];
                    dpe[i] += d[i];
                }
            }
        }
    }
}

static void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                              const float* bias, int N, int C) {
    // normalises each of the N rows of inp (N,C); mean and rstd (N) are kept for the backward pass
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float* x = inp + (size_t)n * C;
        float m = 0.0f;
        for (int i = 0; i < C; i++) { m += x[i]; }
        m /= C;
        float v = 0.0f;
        for (int i = 0; i < C; i++) { v += (x[i] - m) * (x[i] - m); }
        v /= C;
        float s = 1.0f / sqrtf(v + 1e-5f);
        float* o = out + (size_t)n * C;
        for (int i = 0; i < C; i++) { o[i] = s * (x[i] - m) * weight[i] + bias[i]; }
        mean[n] = m;
        rstd[n] = s;
    }
}

static void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                               const float* weight, const float* mean, const float* rstd, int N, int C) {
    // dinp: rows are independent
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float* d = dout + (size_t)n * C;
        const float* x = inp + (size_t)n * C;
        float m = mean[n], s = rstd[n];
        float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
        for (int i = 0; i < C; i++) {
            float dnorm = weight[i] * d[i];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * (x[i] - m) * s;
        }
        dnorm_mean /= C;
        dnorm_norm_mean /= C;
        float* di = dinp + (size_t)n * C;
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - m) * s;
            di[i] += (weight[i] * d[i] - dnorm_mean - norm * dnorm_norm_mean) * s;
        }
    }
    // dweight, dbias: a sum over rows, so threads split the channels and each sums rows in order
    #pragma omp parallel for
    for (int i0 = 0; i0 < C; i0 += 16) {
        int i1 = i0 + 16 < C ? i0 + 16 : C;
        for (int n = 0; n < N; n++) {
            const float* d = dout + (size_t)n * C;
            const float* x = inp + (size_t)n * C;
            for (int i = i0; i < i1; i++) {
                dweight[i] += (x[i] - mean[n]) * rstd[n] * d[i];
                dbias[i] += d[i];
            }
        }
    }
}

#ifdef USE_BLAS
// OpenBLAS splits a GEMM differently for different thread counts, which changes the rounding. So it runs
// single-threaded, and we split every GEMM into fixed 64-row blocks across OpenMP threads ourselves: the
// blocks, and so the bits, are the same whatever the thread count.
#define BLAS_BLOCK 64
#endif

static void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C,
                           int OC) {
    // out (N,OC) = inp (N,C) @ weight^T + bias, weight (OC,C) as nn.Linear stores it
#ifdef USE_BLAS
    #pragma omp parallel for
    for (int n0 = 0; n0 < N; n0 += BLAS_BLOCK) {
        int rows = N - n0 < BLAS_BLOCK ? N - n0 : BLAS_BLOCK;
        for (int n = n0; n < n0 + rows; n++) {
            if (bias) { memcpy(out + (size_t)n * OC, bias, OC * sizeof(float)); }
            else { memset(out + (size_t)n * OC, 0, OC * sizeof(float)); }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, OC, C, 1.0f, inp + (size_t)n0 * C, C, weight, C,
                    1.0f, out + (size_t)n0 * OC, OC);
    }
#else
    // 4 rows x 4 output channels per tile; each output is one dot product summed in order
    #pragma omp parallel for
    for (int n0 = 0; n0 < N; n0 += 4) {
        int rows = N - n0 < 4 ? N - n0 : 4;
        for (int o0 = 0; o0 < OC; o0 += 4) {
            int cols = OC - o0 < 4 ? OC - o0 : 4;
            float acc[4][4] = {{0}};
            for (int r = 0; r < rows; r++) {
                const float* x = inp + (size_t)(n0 + r) * C;
                for (int k = 0; k < cols; k++) {
                    const float* w = weight + (size_t)(o0 + k) * C;
                    float s = 0.0f;
                    for (int i = 0; i < C; i++) { s += x[i] * w[i]; }
                    acc[r][k] = s;
                }
            }
            for (int r = 0; r < rows; r++) {
                for (int k = 0; k < cols; k++) {
                    out[(size_t)(n0 + r) * OC + o0 + k] = acc[r][k] + (bias ? bias[o0 + k] : 0.0f);
                }
            }
        }
    }
#endif
}

static void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                            const float* weight, int N, int C, int OC) {
#ifdef USE_BLAS
    // dinp (N,C) += dout (N,OC) @ weight (OC,C), in blocks of rows of dinp
    #pragma omp parallel for
    for (int n0 = 0; n0 < N; n0 += BLAS_BLOCK) {
        int rows = N - n0 < BLAS_BLOCK ? N - n0 : BLAS_BLOCK;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, C, OC, 1.0f, dout + (size_t)n0 * OC, OC,
                    weight, C, 1.0f, dinp + (size_t)n0 * C, C);
    }
    // dweight (OC,C) += dout^T @ inp, in blocks of rows of dweight
    #pragma omp parallel for
    for (int o0 = 0; o0 < OC; o0 += BLAS_BLOCK) {
        int rows = OC - o0 < BLAS_BLOCK ? OC - o0 : BLAS_BLOCK;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rows, C, N, 1.0f, dout + o0, OC, inp, C, 1.0f,
                    dweight + (size_t)o0 * C, C);
    }
#else
    // dinp (N,C) += dout (N,OC) @ weight (OC,C): rows of dinp are independent
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float* d = dout + (size_t)n * OC;
        float* di = dinp + (size_t)n * C;
        for (int o = 0; o < OC; o++) {
            const float* w = weight + (size_t)o * C;
            float g = d[o];
            for (int i = 0; i < C; i++) { di[i] += g * w[i]; }
        }
    }
    // dweight (OC,C) += dout^T @ inp: rows of dweight are independent, each sums over n in order
    #pragma omp parallel for
    for (int o = 0; o < OC; o++) {
        float* dw = dweight + (size_t)o * C;
        for (int n = 0; n < N; n++) {
            float g = dout[(size_t)n * OC + o];
            const float* x = inp + (size_t)n * C;
            for (int i = 0; i < C; i++) { dw[i] += g * x[i]; }
        }
    }
#endif
    if (dbias) {
        #pragma omp parallel for
        for (int o = 0; o < OC; o++) {
            float s = 0.0f;
            for (int n = 0; n < N; n++) { s += dout[(size_t)n * OC + o]; }
            dbias[o] += s;
        }
    }
}

static void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH) {
    // qkv (B,T,3C) holds query, key, value; att (B,NH,T,T) gets the causal softmax (future entries 0);
    // out (B,T,C) the attention-weighted values, heads side by side
    int HS = C / NH;
    float scale = 1.0f / sqrtf((float)HS);
    #pragma omp parallel for collapse(3)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < NH; h++) {
                const float* q = qkv + ((size_t)b * T + t) * 3 * C + h * HS;
                float* a = att + (((size_t)b * NH + h) * T + t) * T;
                float maxval = -INFINITY;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float* k = qkv + ((size_t)b * T + t2) * 3 * C + C + h * HS;
                    float s = 0.0f;
                    for (int i = 0; i < HS; i++) { s += q[i] * k[i]; }
                    s *= scale;
                    a[t2] = s;
                    if (s > maxval) { maxval = s; }
                }
                float sum = 0.0f;
                for (int t2 = 0; t2 <= t; t2++) {
                    a[t2] = expf(a[t2] - maxval);
                    sum += a[t2];
                }
                float inv = 1.0f / sum;
                for (int t2 = 0; t2 < T; t2++) { a[t2] = t2 <= t ? a[t2] * inv : 0.0f; }
                float* o = out + ((size_t)b * T + t) * C + h * HS;
                for (int i = 0; i < HS; i++) { o[i] = 0.0f; }
                for (int t2 = 0; t2 <= t; t2++) {
                    const float* v = qkv + ((size_t)b * T + t2) * 3 * C + 2 * C + h * HS;
                    for (int i = 0; i < HS; i++) { o[i] += a[t2] * v[i]; }
                }
            }
        }
    }
}

static void attention_backward(float* dqkv, float* datt_scratch, const float* dout, const float* qkv,
                               const float* att, int B, int T, int C, int NH) {
    // dqkv (B,T,3C) is overwritten. Within one (b,h), every t writes into the keys and values of all t2 <= t,
    // so a thread owns a whole (b,h): its slice of dqkv is disjoint from every other thread's.
    // datt_scratch holds one row of d(att) per (b,h) pair: (B,NH,T).
    int HS = C / NH;
    float scale = 1.0f / sqrtf((float)HS);
    #pragma omp parallel for collapse(2)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            float* datt = datt_scratch + ((size_t)b * NH + h) * T;
            for (int t = 0; t < T; t++) {
                float* dq = dqkv + ((size_t)b * T + t) * 3 * C + h * HS;
                for (int i = 0; i < HS; i++) { dq[i] = 0.0f; dq[C + i] = 0.0f; dq[2 * C + i] = 0.0f; }
            }
            for (int t = 0; t < T; t++) {
                const float* a = att + (((size_t)b * NH + h) * T + t) * T;
                const float* d = dout + ((size_t)b * T + t) * C + h * HS;
                // through out = att @ v
                for (int t2 = 0; t2 <= t; t2++) {
                    const float* v = qkv + ((size_t)b * T + t2) * 3 * C + 2 * C + h * HS;
                    float* dv = dqkv + ((size_t)b * T + t2) * 3 * C + 2 * C + h * HS;
                    float s = 0.0f;
                    for (int i = 0; i < HS; i++) {
                        s += v[i] * d[i];
                        dv[i] += a[t2] * d[i];
                    }
                    datt[t2] = s;
                }
                // through the softmax: dpre = att * (datt - sum(att * datt))
                float dot = 0.0f;
                for (int t2 = 0; t2 <= t; t2++) { dot += a[t2] * datt[t2]; }
                const float* q = qkv + ((size_t)b * T + t) * 3 * C + h * HS;
                float* dq = dqkv + ((size_t)b * T + t) * 3 * C + h * HS;
                for (int t2 = 0; t2 <= t; t2++) {
                    float dpre = a[t2] * (datt[t2] - dot) * scale;
                    const float* k = qkv + ((size_t)b * T + t2) * 3 * C + C + h * HS;
                    float* dk = dqkv + ((size_t)b * T + t2) * 3 * C + C + h * HS;
                    for (int i = 0; i < HS; i++) {
                        dq[i] += k[i] * dpre;
                        dk[i] += q[i] * dpre;
                    }
                }
            }
        }
    }
}

#define GELU_SCALING_FACTOR 0.7978845608028654f  // sqrt(2/pi)

static void gelu_forward(float* out, const float* inp, size_t N) {
    // the tanh approximation GPT-2 was trained with
    #pragma omp parallel for
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + tanhf(GELU_SCALING_FACTOR * (x + 0.044715f * x * x * x)));
    }
}

static void gelu_backward(float* dinp, const float* inp, const float* dout, size_t N) {
    #pragma omp parallel for
    for (size_t i = 0; i < N; i++) {
        float x = inp[i];
        float u = GELU_SCALING_FACTOR * (x + 0.044715f * x * x * x);
        float th = tanhf(u);
        float sech2 = 1.0f - th * th;
        float du = GELU_SCALING_FACTOR * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] = (0.5f * (1.0f + th) + 0.5f * x * sech2 * du) * dout[i];
    }
}

static void residual_forward(float* out, const float* a, const float* b, size_t N) {
    #pragma omp parallel for
    for (size_t i = 0; i < N; i++) { out[i] = a[i] + b[i]; }
}

static void crossentropy_forward(float* logits, float* losses, const int* targets, int N, int V, int Vp,
                                 float dloss) {
    // logits (N,Vp) over the padded vocabulary; the softmax runs over the first V only. losses (N).
    // With dloss != 0 the logits are overwritten in place by d(loss)/d(logits) = (softmax - onehot) * dloss,
    // so the probabilities never need a buffer of their own.
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        float* x = logits + (size_t)n * Vp;
        float maxval = -INFINITY;
        for (int i = 0; i < V; i++) { if (x[i] > maxval) { maxval = x[i]; } }
        float sum = 0.0f;
        for (int i = 0; i < V; i++) { sum += expf(x[i] - maxval); }
        float logsum = logf(sum);
        int y = targets[n];
        losses[n] = logsum - (x[y] - maxval);
        if (dloss != 0.0f) {
            float inv = 1.0f / sum;
            for (int i = 0; i < V; i++) { x[i] = (expf(x[i] - maxval) * inv - (i == y ? 1.0f : 0.0f)) * dloss; }
            for (int i = V; i < Vp; i++) { x[i] = 0.0f; }
        }
    }
}

// ----------------------------------------------------------------------------
// 2. a pipeline stage: layers [layer_begin, layer_begin + num_layers) of the model

typedef struct {
    float* wte;       // (Vp, C) token embedding, also the LM head
    float* wpe;       // (maxT, C)
    float* ln1w;      // (nl, C)
    float* ln1b;      // (nl, C)
    float* qkvw;      // (nl, 3C, C)
    float* qkvb;      // (nl, 3C)
    float* attprojw;  // (nl, C, C)
    float* attprojb;  // (nl, C)
    float* ln2w;      // (nl, C)
    float* ln2b;      // (nl, C)
    float* fcw;       // (nl, 4C, C)
    float* fcb;       // (nl, 4C)
    float* fcprojw;   // (nl, C, 4C)
    float* fcprojb;   // (nl, C)
    float* lnfw;      // (C)
    float* lnfb;      // (C)
} ParameterTensors;

static void point_parameters(ParameterTensors* p, float* memory, const StageLayout* s) {
    float** ptrs[NUM_PARAMETER_TENSORS] = {&p->wte, &p->wpe, &p->ln1w, &p->ln1b, &p->qkvw, &p->qkvb,
                                           &p->attprojw, &p->attprojb, &p->ln2w, &p->ln2b, &p->fcw, &p->fcb,
                                           &p->fcprojw, &p->fcprojb, &p->lnfw, &p->lnfb};
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        *ptrs[i] = s->sizes[i] ? memory : NULL;
        memory += s->sizes[i];
    }
}

// The activations of one micro-batch on one stage, kept from its forward until its backward (the "stash").
typedef struct {
    int* inputs;      // (B,T) tokens (stage 0)
    int* targets;     // (B,T) next tokens (last stage)
    float* x;         // (B,T,C) the residual stream entering the stage: embeddings, or what the previous stage sent
    float* ln1;       // (nl,B,T,C)
    float* ln1_mean;  // (nl,B,T)
    float* ln1_rstd;  // (nl,B,T)
    float* qkv;       // (nl,B,T,3C)
    float* att;       // (nl,B,NH,T,T)
    float* atty;      // (nl,B,T,C)
    float* attproj;   // (nl,B,T,C)
    float* residual2; // (nl,B,T,C)
    float* ln2;       // (nl,B,T,C)
    float* ln2_mean;  // (nl,B,T)
    float* ln2_rstd;  // (nl,B,T)
    float* fch;       // (nl,B,T,4C)
    float* fch_gelu;  // (nl,B,T,4C)
    float* fcproj;    // (nl,B,T,C)
    float* residual3; // (nl,B,T,C) the stage's output is the last layer's residual3
    float* lnf;       // (B,T,C) last stage only, like the three below
    float* lnf_mean;  // (B,T)
    float* lnf_rstd;  // (B,T)
    float* logits;    // (B,T,Vp), overwritten by d(logits) when training
    float* losses;    // (B,T)
    float* memory;
} Activations;

// One layer's worth of activation gradients, reused layer after layer during the backward pass.
typedef struct {
    float* dresidual;  // (B,T,C) gradient of the residual stream, flowing down through the layers
    float* dln;        // (B,T,C)
    float* dqkv;       // (B,T,3C)
    float* datt;       // (B,NH,T)
    float* datty;      // (B,T,C)
    float* dfch;       // (B,T,4C)
    float* dfch_gelu;  // (B,T,4C)
    float* dresidual2; // (B,T,C)
    float* memory;
} BackwardScratch;

typedef struct {
    GPT2Config config;
    StageLayout layout;
    int B, T;                  // micro-batch shape the buffers are sized for
    ParameterTensors params, grads;
    float* params_memory;
    float* grads_memory;
    float* grad_wte_head;      // (Vp,C) the LM head's half of the tied wte gradient (last stage), see top
    float* m_memory;           // AdamW first moment
    float* v_memory;           // AdamW second moment
    Activations* stash;        // one slot per micro-batch that can be in flight at once
    int num_slots;
    BackwardScratch scratch;
} Stage;

static void activations_alloc(Activations* a, const GPT2Config* c, const StageLayout* s, int B, int T) {
    size_t nl = s->num_layers, BT = (size_t)B * T, C = c->channels, NH = c->num_heads;
    size_t head = s->has_head;
    size_t sizes[21] = {BT * C, nl * BT * C, nl * BT, nl * BT, nl * BT * 3 * C, nl * B * NH * T * T, nl * BT * C,
                        nl * BT * C, nl * BT * C, nl * BT * C, nl * BT, nl * BT, nl * BT * 4 * C, nl * BT * 4 * C,
                        nl * BT * C, nl * BT * C, head * BT * C, head * BT, head * BT,
                        head * BT * c->padded_vocab_size, head * BT};
    float** ptrs[21] = {&a->x, &a->ln1, &a->ln1_mean, &a->ln1_rstd, &a->qkv, &a->att, &a->atty, &a->attproj,
                        &a->residual2, &a->ln2, &a->ln2_mean, &a->ln2_rstd, &a->fch, &a->fch_gelu, &a->fcproj,
                        &a->residual3, &a->lnf, &a->lnf_mean, &a->lnf_rstd, &a->logits, &a->losses};
    size_t total = 0;
    for (int i = 0; i < 21; i++) { total += sizes[i]; }
    a->memory = (float*)calloc_check(total, sizeof(float));
    float* p = a->memory;
    for (int i = 0; i < 21; i++) { *ptrs[i] = sizes[i] ? p : NULL; p += sizes[i]; }
    a->inputs = (int*)calloc_check(BT, sizeof(int));
    a->targets = (int*)calloc_check(BT, sizeof(int));
}

static size_t activations_bytes(const GPT2Config* c, const StageLayout* s, int B, int T) {
    size_t nl = s->num_layers, BT = (size_t)B * T, C = c->channels;
    size_t floats = BT * C + nl * (BT * (C * 9 + 4 * 2 * C + 4) + (size_t)B * c->num_heads * T * T);
    if (s->has_head) { floats += BT * (C + 3 + c->padded_vocab_size); }
    return floats * sizeof(float) + 2 * BT * sizeof(int);
}

static void stage_init(Stage* st, const GPT2Config* c, const StageLayout* s, int B, int T, int num_slots) {
    memset(st, 0, sizeof(*st));
    st->config = *c;
    st->layout = *s;
    st->B = B;
    st->T = T;
    size_t n = s->num_parameters;
    st->params_memory = (float*)calloc_check(n, sizeof(float));
    st->grads_memory = (float*)calloc_check(n, sizeof(float));
    st->m_memory = (float*)calloc_check(n, sizeof(float));
    st->v_memory = (float*)calloc_check(n, sizeof(float));
    point_parameters(&st->params, st->params_memory, s);
    point_parameters(&st->grads, st->grads_memory, s);
    if (s->has_head) { st->grad_wte_head = (float*)calloc_check(s->sizes[WTE], sizeof(float)); }
    st->num_slots = num_slots;
    st->stash = (Activations*)calloc_check(num_slots, sizeof(Activations));
    for (int i = 0; i < num_slots; i++) { activations_alloc(&st->stash[i], c, s, B, T); }
    size_t BT = (size_t)B * T, C = c->channels;
    size_t sizes[8] = {BT * C, BT * C, BT * 3 * C, (size_t)B * c->num_heads * T, BT * C, BT * 4 * C, BT * 4 * C, BT * C};
    float** ptrs[8] = {&st->scratch.dresidual, &st->scratch.dln, &st->scratch.dqkv, &st->scratch.datt,
                       &st->scratch.datty, &st->scratch.dfch, &st->scratch.dfch_gelu, &st->scratch.dresidual2};
    size_t total = 0;
    for (int i = 0; i < 8; i++) { total += sizes[i]; }
    st->scratch.memory = (float*)calloc_check(total, sizeof(float));
    float* p = st->scratch.memory;
    for (int i = 0; i < 8; i++) { *ptrs[i] = p; p += sizes[i]; }
}

static void stage_free(Stage* st) {
    for (int i = 0; i < st->num_slots; i++) {
        free(st->stash[i].memory);
        free(st->stash[i].inputs);
        free(st->stash[i].targets);
    }
    free(st->stash);
    free(st->scratch.memory);
    free(st->params_memory);
    free(st->grads_memory);
    free(st->grad_wte_head);
    free(st->m_memory);
    free(st->v_memory);
}

// The forward pass of one micro-batch (B,T may be smaller than the buffers, e.g. when sampling).
// Stage 0 embeds a->inputs into a->x; later stages find their input already in a->x (received from the
// previous stage). The last stage ends with the logits and, given targets, per-position losses; dloss != 0
// turns the logits into their gradient right away (training).
static void stage_forward(Stage* st, Activations* a, int B, int T, int with_targets, float dloss) {
    const GPT2Config* c = &st->config;
    const StageLayout* s = &st->layout;
    const ParameterTensors* p = &st->params;
    int C = c->channels, NH = c->num_heads, BT = B * T;
    if (s->has_embed) { encoder_forward(a->x, a->inputs, p->wte, p->wpe, B, T, C); }
    // per-layer activations are laid out for the full buffer shape, so index with the allocated B*T
    size_t BTa = (size_t)st->B * st->T;
    size_t att_a = (size_t)st->B * NH * st->T * st->T;
    float* residual = a->x;
    for (int l = 0; l < s->num_layers; l++) {
        float* ln1 = a->ln1 + l * BTa * C;
        float* qkv = a->qkv + l * BTa * 3 * C;
        float* att = a->att + l * att_a;
        float* atty = a->atty + l * BTa * C;
        float* attproj = a->attproj + l * BTa * C;
        float* residual2 = a->residual2 + l * BTa * C;
        float* ln2 = a->ln2 + l * BTa * C;
        float* fch = a->fch + l * BTa * 4 * C;
        float* fch_gelu = a->fch_gelu + l * BTa * 4 * C;
        float* fcproj = a->fcproj + l * BTa * C;
        float* residual3 = a->residual3 + l * BTa * C;
        layernorm_forward(ln1, a->ln1_mean + l * BTa, a->ln1_rstd + l * BTa, residual, p->ln1w + l * C,
                          p->ln1b + l * C, BT, C);
        matmul_forward(qkv, ln1, p->qkvw + (size_t)l * 3 * C * C, p->qkvb + l * 3 * C, BT, C, 3 * C);
        attention_forward(atty, att, qkv, B, T, C, NH);
        matmul_forward(attproj, atty, p->attprojw + (size_t)l * C * C, p->attprojb + l * C, BT, C, C);
        residual_forward(residual2, residual, attproj, (size_t)BT * C);
        layernorm_forward(ln2, a->ln2_mean + l * BTa, a->ln2_rstd + l * BTa, residual2, p->ln2w + l * C,
                          p->ln2b + l * C, BT, C);
        matmul_forward(fch, ln2, p->fcw + (size_t)l * 4 * C * C, p->fcb + l * 4 * C, BT, C, 4 * C);
        gelu_forward(fch_gelu, fch, (size_t)BT * 4 * C);
        matmul_forward(fcproj, fch_gelu, p->fcprojw + (size_t)l * 4 * C * C, p->fcprojb + l * C, BT, 4 * C, C);
        residual_forward(residual3, residual2, fcproj, (size_t)BT * C);
        residual = residual3;
    }
    if (s->has_head) {
        layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, residual, p->lnfw, p->lnfb, BT, C);
        matmul_forward(a->logits, a->lnf, p->wte, NULL, BT, C, c->padded_vocab_size);
        if (with_targets) {
            crossentropy_forward(a->logits, a->losses, a->targets, BT, c->vocab_size, c->padded_vocab_size, dloss);
        }
    }
}

// the stage's output: what it sends to the next stage
static float* stage_output(Stage* st, Activations* a) {
    if (st->layout.num_layers == 0) { return a->x; }
    return a->residual3 + (size_t)(st->layout.num_layers - 1) * st->B * st->T * st->config.channels;
}

// The backward pass of one micro-batch at full shape (B,T). The last stage starts from the d(logits) its
// forward left in place; the others start from dout, the gradient of their output sent back by the next
// stage. Afterwards st->scratch.dresidual holds the gradient of the stage's input (sent to the previous
// stage), and the parameter gradients have been accumulated.
static void stage_backward(Stage* st, Activations* a, const float* dout) {
    const GPT2Config* c = &st->config;
    const StageLayout* s = &st->layout;
    const ParameterTensors* p = &st->params;
    ParameterTensors* g = &st->grads;
    BackwardScratch* sc = &st->scratch;
    int B = st->B, T = st->T, C = c->channels, NH = c->num_heads, BT = B * T;
    size_t nBTC = (size_t)BT * C;
    if (s->has_head) {
        memset(sc->dln, 0, nBTC * sizeof(float));
        memset(sc->dresidual, 0, nBTC * sizeof(float));
        matmul_backward(sc->dln, st->grad_wte_head, NULL, a->logits, a->lnf, p->wte, BT, C, c->padded_vocab_size);
        layernorm_backward(sc->dresidual, g->lnfw, g->lnfb, sc->dln, stage_output(st, a), p->lnfw, a->lnf_mean,
                           a->lnf_rstd, BT, C);
    } else {
        memcpy(sc->dresidual, dout, nBTC * sizeof(float));
    }
    for (int l = s->num_layers - 1; l >= 0; l--) {
        float* residual = l == 0 ? a->x : a->residual3 + (size_t)(l - 1) * nBTC;
        float* ln1 = a->ln1 + l * nBTC;
        float* qkv = a->qkv + l * nBTC * 3;
        float* att = a->att + (size_t)l * B * NH * T * T;
        float* atty = a->atty + l * nBTC;
        float* residual2 = a->residual2 + l * nBTC;
        float* ln2 = a->ln2 + l * nBTC;
        float* fch = a->fch + l * nBTC * 4;
        float* fch_gelu = a->fch_gelu + l * nBTC * 4;
        // the MLP branch: residual3 = residual2 + fcproj(gelu(fc(ln2(residual2))))
        memset(sc->dfch_gelu, 0, nBTC * 4 * sizeof(float));
        matmul_backward(sc->dfch_gelu, g->fcprojw + (size_t)l * 4 * C * C, g->fcprojb + l * C, sc->dresidual,
                        fch_gelu, p->fcprojw + (size_t)l * 4 * C * C, BT, 4 * C, C);
        gelu_backward(sc->dfch, fch, sc->dfch_gelu, nBTC * 4);
        memset(sc->dln, 0, nBTC * sizeof(float));
        matmul_backward(sc->dln, g->fcw + (size_t)l * 4 * C * C, g->fcb + l * 4 * C, sc->dfch, ln2,
                        p->fcw + (size_t)l * 4 * C * C, BT, C, 4 * C);
        memcpy(sc->dresidual2, sc->dresidual, nBTC * sizeof(float));  // the skip connection
        layernorm_backward(sc->dresidual2, g->ln2w + l * C, g->ln2b + l * C, sc->dln, residual2, p->ln2w + l * C,
                           a->ln2_mean + l * BT, a->ln2_rstd + l * BT, BT, C);
        // the attention branch: residual2 = residual + attproj(attention(qkv(ln1(residual))))
        memset(sc->datty, 0, nBTC * sizeof(float));
        matmul_backward(sc->datty, g->attprojw + (size_t)l * C * C, g->attprojb + l * C, sc->dresidual2, atty,
                        p->attprojw + (size_t)l * C * C, BT, C, C);
        attention_backward(sc->dqkv, sc->datt, sc->datty, qkv, att, B, T, C, NH);
        memset(sc->dln, 0, nBTC * sizeof(float));
        matmul_backward(sc->dln, g->qkvw + (size_t)l * 3 * C * C, g->qkvb + l * 3 * C, sc->dqkv, ln1,
                        p->qkvw + (size_t)l * 3 * C * C, BT, C, 3 * C);
        memcpy(sc->dresidual, sc->dresidual2, nBTC * sizeof(float));
        layernorm_backward(sc->dresidual, g->ln1w + l * C, g->ln1b + l * C, sc->dln, residual, p->ln1w + l * C,
                           a->ln1_mean + l * BT, a->ln1_rstd + l * BT, BT, C);
    }
    if (s->has_embed) { encoder_backward(g->wte, g->wpe, sc->dresidual, a->inputs, B, T, C); }
}

// ----------------------------------------------------------------------------
// 3. the training step

typedef struct {
    float lr, beta1, beta2, eps, weight_decay, grad_clip;
} OptimizerConfig;

// Sum of squares of every gradient "slot" the stage owns. A slot is one tensor of one layer (or a whole
// non-layer tensor); slots are numbered in checkpoint order: wte, wpe, ln1w[0..L), ln1b[0..L), ..., lnfb.
// The global norm adds the slots in that order, so it does not depend on how layers are split into stages.
static int num_norm_slots(const GPT2Config* c) { return 4 + 12 * c->num_layers; }

static void stage_norm_slots(const Stage* st, double* slots) {
    const GPT2Config* c = &st->config;
    const StageLayout* s = &st->layout;
    const float* g = st->grads_memory;
    int slot = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        int units = tensor_is_per_layer(i) ? c->num_layers : 1;
        size_t unit = tensor_unit_size(c, i);
        for (int u = 0; u < units; u++, slot++) {
            int owned;
            const float* base = g;
            if (tensor_is_per_layer(i)) {
                owned = u >= s->layer_begin && u < s->layer_begin + s->num_layers;
                base = g + (size_t)(u - s->layer_begin) * unit;
            } else {
                // the tied wte lives on two stages; its slot belongs to the embedding stage
                owned = s->sizes[i] > 0 && (i != WTE || s->has_embed);
            }
            if (!owned) { slots[slot] = 0.0; continue; }
            double sum = 0.0;
            for (size_t j = 0; j < unit; j++) { sum += (double)base[j] * base[j]; }
            slots[slot] = sum;
        }
        if (s->sizes[i]) { g += s->sizes[i]; }
    }
}

static float norm_from_slots(const double* slots, int n) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) { sum += slots[i]; }
    return (float)sqrt(sum);
}

static void stage_adamw(Stage* st, const OptimizerConfig* opt, float lr, float grad_scale, int t) {
    float bc1 = 1.0f - powf(opt->beta1, (float)t);
    float bc2 = 1.0f - powf(opt->beta2, (float)t);
    size_t off = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        size_t n = st->layout.sizes[i];
        float wd = tensor_is_decayed(i) ? opt->weight_decay : 0.0f;
        float* p = st->params_memory + off;
        float* g = st->grads_memory + off;
        float* m = st->m_memory + off;
        float* v = st->v_memory + off;
        #pragma omp parallel for
        for (size_t j = 0; j < n; j++) {
            float grad = g[j] * grad_scale;
            m[j] = opt->beta1 * m[j] + (1.0f - opt->beta1) * grad;
            v[j] = opt->beta2 * v[j] + (1.0f - opt->beta2) * grad * grad;
            float m_hat = m[j] / bc1;
            float v_hat = v[j] / bc2;
            p[j] -= lr * (m_hat / (sqrtf(v_hat) + opt->eps) + wd * p[j]);
        }
        off += n;
    }
}

static void stage_zero_grads(Stage* st) {
    memset(st->grads_memory, 0, st->layout.num_parameters * sizeof(float));
    if (st->grad_wte_head) { memset(st->grad_wte_head, 0, st->layout.sizes[WTE] * sizeof(float)); }
}

// mean loss of one micro-batch on the last stage, summed in a fixed order
static float microbatch_loss(const Activations* a, int B, int T) {
    double sum = 0.0;
    int BT = B * T;
    for (int i = 0; i < BT; i++) { sum += a->losses[i]; }
    return (float)(sum / BT);
}

// ----------------------------------------------------------------------------
// The pipeline: P stages, each driven by its rank's list of actions from llmc/schedule.h.
// With MPI and -np P, each process owns one stage and activations travel by MPI point-to-point. Otherwise
// one process owns all P stages and runs their action lists round-robin, a send copying into a mailbox
// that the matching receive reads: the same actions, the same order of float operations, the same bits.

typedef struct {
    double t0, dur;    // seconds since the trace origin
    int stage, mb;
    char name[12];     // "F3", "B3", "send", "recv", "wait", "optim"
} TraceEvent;

typedef struct {
    GPT2Config config;
    int P, M;                 // stages, micro-batches per step
    int B, T;
    int rank, world;          // MPI rank and size; world 1 when all stages live in this process
    int* layers;              // (P) layers per stage
    Stage* stages;            // (P) only the local ones are allocated
    int* is_local;            // (P)
    Schedule schedule;        // the training schedule
    OptimizerConfig opt;
    int step;                 // training steps taken
    int adam_t;               // AdamW updates taken (the same here; a CUDA fp16 run may have skipped some)
    float last_norm;
    int* tokens;              // (M, 2, B*T) the step's inputs and targets, read before the schedule runs
    int* slot_of;             // (P, M) stash slot of micro-batch m on stage s, -1 when not in flight
    int* peak_slots;          // (P) the most slots ever in use at once
    float** act_box;          // (P, M) input of stage s for micro-batch m: a mailbox or an MPI receive buffer
    int* act_full;            // (P, M)
    float** grad_box;         // (P, M) d(output) of stage s for micro-batch m
    int* grad_full;           // (P, M)
    float** send_box;         // (2, M) MPI send buffers: activations, then d(input)s
    double busy;              // compute seconds of this process's stages in the last step
    double schedule_secs;     // wall seconds of the last step's schedule (forward and backward, no optimizer)
    TraceEvent* trace;        // recorded when tracing
    int trace_len, trace_cap, tracing;
    double trace_origin;
} Pipeline;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void trace_add(Pipeline* pp, const char* name, int stage, int mb, double t0, double t1) {
    if (!pp->tracing) { return; }
    if (pp->trace_len == pp->trace_cap) {
        pp->trace_cap = pp->trace_cap ? 2 * pp->trace_cap : 1024;
        pp->trace = (TraceEvent*)realloc(pp->trace, pp->trace_cap * sizeof(TraceEvent));
        if (!pp->trace) { fatal("out of memory for the trace"); }
    }
    TraceEvent* e = &pp->trace[pp->trace_len++];
    e->t0 = t0 - pp->trace_origin;
    e->dur = t1 - t0;
    e->stage = stage;
    e->mb = mb;
    snprintf(e->name, sizeof(e->name), "%s", name);
}

// what this process is doing, so a fatal error or a signal can say where it happened
static char current_action[96] = "start-up";

static StageLayout pipeline_stage_layout(const Pipeline* pp, int s) {
    int begin = 0;
    for (int i = 0; i < s; i++) { begin += pp->layers[i]; }
    return stage_layout(&pp->config, begin, pp->layers[s], s == 0, s == pp->P - 1);
}

// peak in-flight micro-batches of each rank under the schedule: exactly the stash slots it needs
static void schedule_peak_inflight(const Schedule* sc, int* peak) {
    for (int r = 0; r < sc->P; r++) {
        int inflight = 0;
        peak[r] = 0;
        for (int i = 0; i < sc->ranks[r].n; i++) {
            ActionType t = sc->ranks[r].a[i].type;
            if (t == PP_F) { inflight++; }
            if (t == PP_B) { inflight--; }
            if (inflight > peak[r]) { peak[r] = inflight; }
        }
    }
}

static void pipeline_init(Pipeline* pp, const GPT2Config* c, int P, const int* layers, int M, int B, int T,
                          const char* schedule_name, int rank, int world) {
    memset(pp, 0, sizeof(*pp));
#ifdef USE_BLAS
    openblas_set_num_threads(1);  // see BLAS_BLOCK
#endif
    pp->config = *c;
    pp->P = P;
    pp->M = M;
    pp->B = B;
    pp->T = T;
    pp->rank = rank;
    pp->world = world;
    pp->layers = (int*)malloc_check(P * sizeof(int));
    memcpy(pp->layers, layers, P * sizeof(int));
    int rc = schedule_build(schedule_name, P, M, &pp->schedule);
    if (rc == SCHEDULE_ERR_NAME) { fatal("flag -sc expects %s, got '%s'", SCHEDULE_NAMES, schedule_name); }
    char err[512];
    if (rc != 0 || schedule_validate(&pp->schedule, err, sizeof(err)) != 0) {
        fatal("schedule %s for P=%d M=%d is invalid: %s", schedule_name, P, M, rc ? "bad arguments" : err);
    }
    int* slots = (int*)malloc_check(P * sizeof(int));
    schedule_peak_inflight(&pp->schedule, slots);
    pp->stages = (Stage*)calloc_check(P, sizeof(Stage));
    pp->is_local = (int*)calloc_check(P, sizeof(int));
    for (int s = 0; s < P; s++) {
        pp->is_local[s] = world == 1 || s == rank;
        if (!pp->is_local[s]) { continue; }
        StageLayout lay = pipeline_stage_layout(pp, s);
        stage_init(&pp->stages[s], c, &lay, B, T, slots[s] > 0 ? slots[s] : 1);
    }
    free(slots);
    size_t nBTC = (size_t)B * T * c->channels;
    pp->tokens = (int*)calloc_check((size_t)M * 2 * B * T, sizeof(int));
    pp->slot_of = (int*)malloc_check((size_t)P * M * sizeof(int));
    for (int i = 0; i < P * M; i++) { pp->slot_of[i] = -1; }
    pp->peak_slots = (int*)calloc_check(P, sizeof(int));
    pp->act_box = (float**)calloc_check((size_t)P * M, sizeof(float*));
    pp->grad_box = (float**)calloc_check((size_t)P * M, sizeof(float*));
    pp->act_full = (int*)calloc_check((size_t)P * M, sizeof(int));
    pp->grad_full = (int*)calloc_check((size_t)P * M, sizeof(int));
    pp->send_box = (float**)calloc_check((size_t)2 * M, sizeof(float*));
    for (int i = 0; i < 2 * M && world > 1; i++) { pp->send_box[i] = (float*)malloc_check(nBTC * sizeof(float)); }
    for (int s = 0; s < P; s++) {
        if (!pp->is_local[s]) { continue; }
        for (int m = 0; m < M; m++) {
            if (s > 0) { pp->act_box[s * M + m] = (float*)malloc_check(nBTC * sizeof(float)); }
            if (s < P - 1) { pp->grad_box[s * M + m] = (float*)malloc_check(nBTC * sizeof(float)); }
        }
    }
}

static void pipeline_free(Pipeline* pp) {
    for (int s = 0; s < pp->P; s++) { if (pp->is_local[s]) { stage_free(&pp->stages[s]); } }
    for (int i = 0; i < pp->P * pp->M; i++) { free(pp->act_box[i]); free(pp->grad_box[i]); }
    for (int i = 0; i < 2 * pp->M; i++) { free(pp->send_box[i]); }
    free(pp->send_box);
    free(pp->act_box);
    free(pp->grad_box);
    free(pp->act_full);
    free(pp->grad_full);
    free(pp->slot_of);
    free(pp->peak_slots);
    free(pp->tokens);
    free(pp->trace);
    schedule_free(&pp->schedule);
    free(pp->stages);
    free(pp->is_local);
    free(pp->layers);
}

// Every process reads the same M micro-batches in the same order, so no tokens travel between stages.
static void load_step_tokens(Pipeline* pp, NextBatchFn next, void* ctx, int M) {
    int n = pp->B * pp->T;
    for (int m = 0; m < M; m++) { next(ctx, pp->tokens + (size_t)m * 2 * n, pp->tokens + (size_t)m * 2 * n + n, n); }
}

// a free stash slot for micro-batch m on stage s
static Activations* acquire_slot(Pipeline* pp, int s, int m) {
    Stage* st = &pp->stages[s];
    int* slot_of = pp->slot_of + s * pp->M;
    if (slot_of[m] >= 0) { return &st->stash[slot_of[m]]; }
    int used = 0;
    for (int k = 0; k < st->num_slots; k++) {
        int taken = 0;
        for (int j = 0; j < pp->M; j++) { if (slot_of[j] == k) { taken = 1; used++; } }
        if (!taken) {
            slot_of[m] = k;
            if (used + 1 > pp->peak_slots[s]) { pp->peak_slots[s] = used + 1; }
            return &st->stash[k];
        }
    }
    fatal("stage %d: more micro-batches in flight than its %d stash slots (schedule bug)", s, st->num_slots);
    return NULL;
}

#ifdef USE_MPI
#define TAG_ACT 1
#define TAG_GRAD 2
#endif

// Runs one action of a rank's list. Returns 0 if it must wait (in-process mode: a receive whose message
// has not been sent yet), 1 when done. `training` chooses between a training step and a forward-only pass
// (validation, sampling) at micro-batch shape (B, T), and dloss is each position's weight in the loss.
static int run_action(Pipeline* pp, const Action* a, int B, int T, float dloss, double* loss_sum, void* reqs) {
    int s = a->stage, m = a->mb, M = pp->M;
    Stage* st = &pp->stages[s];
    size_t n = (size_t)B * T * pp->config.channels;
    char tok[48];
    schedule_action_str(a, tok, sizeof(tok));
    snprintf(current_action, sizeof(current_action), "%s (step %d)", tok, pp->step + 1);
    double t0 = now_seconds();
    (void)reqs;
    switch (a->type) {
    case PP_F: {
        Activations* act = acquire_slot(pp, s, m);
        const int* tokens = pp->tokens + (size_t)m * 2 * B * T;
        memcpy(act->inputs, tokens, (size_t)B * T * sizeof(int));
        memcpy(act->targets, tokens + B * T, (size_t)B * T * sizeof(int));
        if (s > 0) { memcpy(act->x, pp->act_box[s * M + m], n * sizeof(float)); }
        stage_forward(st, act, B, T, 1, dloss);
        if (s == pp->P - 1) {
            *loss_sum += microbatch_loss(act, B, T);
            if (dloss == 0.0f) { pp->slot_of[s * M + m] = -1; }  // forward only: nothing to keep
        }
        char name[12];
        snprintf(name, sizeof(name), "F%d", m);
        double t1 = now_seconds();
        pp->busy += t1 - t0;
        trace_add(pp, name, s, m, t0, t1);
        return 1;
    }
    case PP_B: {
        Activations* act = &st->stash[pp->slot_of[s * M + m]];
        stage_backward(st, act, s < pp->P - 1 ? pp->grad_box[s * M + m] : NULL);
        pp->slot_of[s * M + m] = -1;
        char name[12];
        snprintf(name, sizeof(name), "B%d", m);
        double t1 = now_seconds();
        pp->busy += t1 - t0;
        trace_add(pp, name, s, m, t0, t1);
        return 1;
    }
    case PP_SEND_F:
    case PP_SEND_B: {
        int fwd = a->type == PP_SEND_F;
        const float* src = fwd ? stage_output(st, &st->stash[pp->slot_of[s * M + m]]) : st->scratch.dresidual;
        int dst_stage = fwd ? s + 1 : s - 1;
        if (pp->world == 1) {
            memcpy((fwd ? pp->act_box : pp->grad_box)[dst_stage * M + m], src, n * sizeof(float));
            (fwd ? pp->act_full : pp->grad_full)[dst_stage * M + m] = 1;
        }
#ifdef USE_MPI
        else {
            // send from a copy: d(input) lives in scratch that the next backward overwrites, and a forward-only
            // pass reuses its one stash slot for the next micro-batch before the send has completed
            float* buf = pp->send_box[(fwd ? 0 : M) + m];
            memcpy(buf, src, n * sizeof(float));
            MPI_Request* r = (MPI_Request*)reqs + (fwd ? m : M + m);
            MPI_Isend(buf, (int)n, MPI_FLOAT, a->peer, fwd ? TAG_ACT : TAG_GRAD, MPI_COMM_WORLD, r);
        }
#endif
        if (fwd && dloss == 0.0f) { pp->slot_of[s * M + m] = -1; }  // forward only: nothing to keep
        trace_add(pp, "send", s, m, t0, now_seconds());
        return 1;
    }
    case PP_RECV_F:
    case PP_RECV_B: {
        int fwd = a->type == PP_RECV_F;
        if (pp->world == 1) {
            int* full = (fwd ? pp->act_full : pp->grad_full) + s * M + m;
            if (!*full) { return 0; }
            *full = 0;
        }
#ifdef USE_MPI
        else {
            MPI_Recv((fwd ? pp->act_box : pp->grad_box)[s * M + m], (int)n, MPI_FLOAT, a->peer,
                     fwd ? TAG_ACT : TAG_GRAD, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        }
#endif
        trace_add(pp, "recv", s, m, t0, now_seconds());
        return 1;
    }
    default:
        fatal("action %s is not supported by this trainer", tok);
    }
    return 1;
}

// Runs a whole schedule: every rank's list, for a training step or a forward-only pass.
// Returns the summed per-micro-batch mean losses (meaningful on the process that owns the last stage).
static double run_schedule(Pipeline* pp, const Schedule* sc, int B, int T, float dloss) {
    double loss_sum = 0.0;
    pp->busy = 0.0;
    if (pp->world == 1) {
        int* pc = (int*)calloc_check(sc->P, sizeof(int));
        for (;;) {
            int progress = 0, done = 1;
            for (int r = 0; r < sc->P; r++) {
                while (pc[r] < sc->ranks[r].n && run_action(pp, &sc->ranks[r].a[pc[r]], B, T, dloss, &loss_sum, NULL)) {
                    pc[r]++;
                    progress = 1;
                }
                if (pc[r] < sc->ranks[r].n) { done = 0; }
            }
            if (done) { break; }
            if (!progress) { fatal("schedule deadlocked: every rank waits on a receive (invalid schedule)"); }
        }
        free(pc);
        return loss_sum;
    }
#ifdef USE_MPI
    MPI_Request* reqs = (MPI_Request*)malloc_check(2 * pp->M * sizeof(MPI_Request));
    for (int i = 0; i < 2 * pp->M; i++) { reqs[i] = MPI_REQUEST_NULL; }
    const ActionList* list = &sc->ranks[pp->rank];
    for (int i = 0; i < list->n; i++) { run_action(pp, &list->a[i], B, T, dloss, &loss_sum, reqs); }
    double t0 = now_seconds();
    MPI_Waitall(2 * pp->M, reqs, MPI_STATUSES_IGNORE);
    trace_add(pp, "wait", pp->rank, -1, t0, now_seconds());
    free(reqs);
#endif
    return loss_sum;
}

// sum over ranks (MPI) or the value itself; used for losses and timings
static double allreduce_sum(Pipeline* pp, double x) {
#ifdef USE_MPI
    if (pp->world > 1) { MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD); }
#endif
    (void)pp;
    return x;
}

// The tied wte: stage 0 accumulated the embedding side of its gradient, the last stage the LM-head side.
// Both stages compute embed + head in that order, so both copies of wte stay bitwise equal.
static void pipeline_sync_tied_wte(Pipeline* pp) {
    int last = pp->P - 1;
    size_t n = tensor_unit_size(&pp->config, WTE);
    if (pp->world == 1) {
        float* a = pp->stages[0].grads.wte;
        const float* b = pp->stages[last].grad_wte_head;
        for (size_t i = 0; i < n; i++) { a[i] += b[i]; }
        if (last != 0) { memcpy(pp->stages[last].grads.wte, a, n * sizeof(float)); }
        return;
    }
#ifdef USE_MPI
    if (pp->rank != 0 && pp->rank != last) { return; }
    Stage* st = &pp->stages[pp->rank];
    float* other = (float*)malloc_check(n * sizeof(float));
    float* mine = pp->rank == 0 ? st->grads.wte : st->grad_wte_head;
    MPI_Sendrecv(mine, (int)n, MPI_FLOAT, last - pp->rank, 3, other, (int)n, MPI_FLOAT, last - pp->rank, 3,
                 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    const float* embed = pp->rank == 0 ? mine : other;
    const float* head = pp->rank == 0 ? other : mine;
    float* g = st->grads.wte;
    for (size_t i = 0; i < n; i++) { g[i] = embed[i] + head[i]; }
    free(other);
#endif
}

static float pipeline_grad_norm(Pipeline* pp) {
    int n = num_norm_slots(&pp->config);
    double* slots = (double*)calloc_check(n, sizeof(double));
    double* mine = (double*)calloc_check(n, sizeof(double));
    for (int s = 0; s < pp->P; s++) {
        if (!pp->is_local[s]) { continue; }
        stage_norm_slots(&pp->stages[s], mine);
        for (int i = 0; i < n; i++) { slots[i] += mine[i]; }  // one stage owns each slot: adding zeros is exact
    }
#ifdef USE_MPI
    if (pp->world > 1) { MPI_Allreduce(MPI_IN_PLACE, slots, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD); }
#endif
    float norm = norm_from_slots(slots, n);
    free(slots);
    free(mine);
    return norm;
}

// the forward and backward of M micro-batches under the training schedule; returns the mean loss
static float pipeline_forward_backward(Pipeline* pp, NextBatchFn next, void* ctx) {
    for (int s = 0; s < pp->P; s++) { if (pp->is_local[s]) { stage_zero_grads(&pp->stages[s]); } }
    load_step_tokens(pp, next, ctx, pp->M);
    float dloss = 1.0f / ((float)pp->M * pp->B * pp->T);
    double t0 = now_seconds();
    double loss = run_schedule(pp, &pp->schedule, pp->B, pp->T, dloss);
    pp->schedule_secs = now_seconds() - t0;
    return (float)(allreduce_sum(pp, loss) / pp->M);
}

// one optimizer step over M micro-batches; returns the mean training loss
static float pipeline_train_step(Pipeline* pp, NextBatchFn next, void* ctx, float lr) {
    float loss = pipeline_forward_backward(pp, next, ctx);
    double t0 = now_seconds();
    snprintf(current_action, sizeof(current_action), "optimizer (step %d)", pp->step + 1);
    pipeline_sync_tied_wte(pp);
    float norm = pipeline_grad_norm(pp);
    float clip = pp->opt.grad_clip;
    float grad_scale = (clip > 0.0f && norm > clip) ? clip / norm : 1.0f;
    pp->step++;
    pp->adam_t++;
    for (int s = 0; s < pp->P; s++) {
        if (pp->is_local[s]) { stage_adamw(&pp->stages[s], &pp->opt, lr, grad_scale, pp->adam_t); }
    }
    pp->last_norm = norm;
    trace_add(pp, "optim", pp->world == 1 ? 0 : pp->rank, -1, t0, now_seconds());
    return loss;
}

// mean loss over `batches` micro-batches of a loader, forward only
static float pipeline_eval(Pipeline* pp, DataLoader* dl, int batches) {
    Schedule fwd;
    schedule_build_forward(pp->P, pp->M, &fwd);
    int tracing = pp->tracing;
    pp->tracing = 0;
    double sum = 0.0;
    for (int done = 0; done < batches; done += pp->M) {
        int m = batches - done < pp->M ? batches - done : pp->M;
        load_step_tokens(pp, next_batch_from_loader, dl, m);
        Schedule* sc = &fwd;
        Schedule partial;
        if (m < pp->M) { schedule_build_forward(pp->P, m, &partial); sc = &partial; }
        sum += run_schedule(pp, sc, pp->B, pp->T, 0.0f);
        if (sc == &partial) { schedule_free(&partial); }
    }
    pp->tracing = tracing;
    schedule_free(&fwd);
    return (float)(allreduce_sum(pp, sum) / batches);
}

// ----------------------------------------------------------------------------
// 4. checkpoints, sampling, main

// Copies one of the per-stage buffers (params, grads, m or v) of every stage into a whole-model buffer.
typedef enum { BUF_PARAMS, BUF_GRADS, BUF_M, BUF_V } StageBuffer;

static float* stage_buffer(Stage* st, StageBuffer which) {
    switch (which) {
    case BUF_PARAMS: return st->params_memory;
    case BUF_GRADS: return st->grads_memory;
    case BUF_M: return st->m_memory;
    default: return st->v_memory;
    }
}

// every stage's slices into `global` on the process that owns stage 0 (rank 0)
static void pipeline_gather(Pipeline* pp, StageBuffer which, float* global) {
    for (int s = pp->P - 1; s >= 0; s--) {  // stage 0 last: its wte wins (both copies are equal anyway)
        StageLayout lay = pipeline_stage_layout(pp, s);
        if (pp->is_local[s] && (pp->world == 1 || pp->rank == 0)) {
            stage_copy_global(&pp->config, &lay, stage_buffer(&pp->stages[s], which), global, 1);
        }
#ifdef USE_MPI
        else if (pp->world > 1 && pp->rank == 0) {
            float* buf = (float*)malloc_check(lay.num_parameters * sizeof(float));
            MPI_Recv(buf, (int)lay.num_parameters, MPI_FLOAT, s, 4, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            stage_copy_global(&pp->config, &lay, buf, global, 1);
            free(buf);
        } else if (pp->world > 1 && pp->rank == s) {
            MPI_Send(stage_buffer(&pp->stages[s], which), (int)lay.num_parameters, MPI_FLOAT, 0, 4, MPI_COMM_WORLD);
        }
#endif
    }
}

static void pipeline_scatter(Pipeline* pp, StageBuffer which, float* global) {
    for (int s = 0; s < pp->P; s++) {
        if (!pp->is_local[s]) { continue; }
        StageLayout lay = pp->stages[s].layout;
        stage_copy_global(&pp->config, &lay, stage_buffer(&pp->stages[s], which), global, 0);
    }
}

// Checkpoints (llmc/train_state.h): the whole model and its AdamW moments in checkpoint layout, so a run
// saved at one pipeline depth resumes at any other. All ranks take part (their slices travel to rank 0).
static void gather_for_checkpoint(void* ctx, int which, float* global) {
    pipeline_gather((Pipeline*)ctx, which == 0 ? BUF_PARAMS : which == 1 ? BUF_M : BUF_V, global);
}

static void scatter_from_checkpoint(void* ctx, int which, float* global) {
    pipeline_scatter((Pipeline*)ctx, which == 1 ? BUF_M : BUF_V, global);
}

static void save_checkpoint(Pipeline* pp, const char* out_dir, const DataLoader* dl, uint64_t sample_rng) {
    TrainState ts = {pp->step, pp->adam_t, (int64_t)model_num_parameters(&pp->config), (int64_t)dl->shard,
                     dl->position, sample_rng, 0.0f, 0};
    checkpoint_save(out_dir, &pp->config, &ts, pp->world == 1 || pp->rank == 0, gather_for_checkpoint, pp);
}

// every rank reads the state file and keeps its own slices of the moments
static void load_state(Pipeline* pp, const char* path, DataLoader* dl, uint64_t* sample_rng) {
    TrainState ts = checkpoint_load_state(path, &pp->config, scatter_from_checkpoint, pp);
    pp->step = ts.step;
    pp->adam_t = ts.adam_t;
    dataloader_seek(dl, (size_t)ts.shard, ts.position);
    *sample_rng = ts.sample_rng;
}

// Generates gen_tokens tokens after an end-of-text token, re-running the forward pass through every stage
// on the growing sequence (no KV cache: this is a reference implementation) and sampling from the softmax.
// The last stage samples; the token is shared with every rank so stage 0 can embed it next.
static void sample_text(Pipeline* pp, const Tokenizer* tok, int gen_tokens, uint64_t* rng) {
    const GPT2Config* c = &pp->config;
    int T = pp->T, last = pp->P - 1;
    int owns_last = pp->is_local[last], printer = pp->world == 1 || pp->rank == 0;
    int* seq = (int*)malloc_check((size_t)(gen_tokens + 1) * sizeof(int));
    seq[0] = tok->eot_token;
    float* probs = (float*)malloc_check((size_t)c->vocab_size * sizeof(float));
    Schedule one;
    schedule_build_forward(pp->P, 1, &one);
    int tracing = pp->tracing;
    pp->tracing = 0;
    if (printer) { printf("generating:\n---\n"); }
    for (int t = 1; t <= gen_tokens; t++) {
        int ctx = t < T ? t : T;  // the model sees at most T tokens
        memcpy(pp->tokens, seq + t - ctx, ctx * sizeof(int));
        memcpy(pp->tokens + ctx, seq + t - ctx, ctx * sizeof(int));  // targets: unused, any valid token
        run_schedule(pp, &one, 1, ctx, 0.0f);
        int next = 0;
        if (owns_last) {
            Stage* st = &pp->stages[last];
            const float* logits = st->stash[0].logits + (size_t)(ctx - 1) * c->padded_vocab_size;
            float maxval = -INFINITY, sum = 0.0f;
            for (int i = 0; i < c->vocab_size; i++) { if (logits[i] > maxval) { maxval = logits[i]; } }
            for (int i = 0; i < c->vocab_size; i++) { probs[i] = expf(logits[i] - maxval); sum += probs[i]; }
            float coin = random_f32(rng) * sum, cdf = 0.0f;
            next = c->vocab_size - 1;
            for (int i = 0; i < c->vocab_size; i++) {
                cdf += probs[i];
                if (coin < cdf) { next = i; break; }
            }
        }
#ifdef USE_MPI
        if (pp->world > 1) { MPI_Bcast(&next, 1, MPI_INT, last, MPI_COMM_WORLD); }
#endif
        seq[t] = next;
        if (printer) { safe_print(tokenizer_decode(tok, next)); fflush(stdout); }
    }
#ifdef USE_MPI
    // every rank keeps the sampler's RNG in step, so any rank's checkpoint of it is the same
    if (pp->world > 1) { MPI_Bcast(rng, 1, MPI_UINT64_T, last, MPI_COMM_WORLD); }
#endif
    if (printer) { printf("\n---\n"); }
    pp->tracing = tracing;
    schedule_free(&one);
    free(seq);
    free(probs);
}

// Chrome/Perfetto trace: one track (pid) per rank; scripts/plot_pipeline.py draws it.
static void write_trace(Pipeline* pp, const char* path) {
    int n = pp->trace_len;
    TraceEvent* all = pp->trace;
    int total = n;
#ifdef USE_MPI
    if (pp->world > 1) {
        int* counts = (int*)malloc_check(pp->world * sizeof(int));
        MPI_Gather(&n, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
        if (pp->rank == 0) {
            total = 0;
            for (int r = 0; r < pp->world; r++) { total += counts[r]; }
            all = (TraceEvent*)malloc_check(total * sizeof(TraceEvent));
            memcpy(all, pp->trace, n * sizeof(TraceEvent));
            int off = n;
            for (int r = 1; r < pp->world; r++) {
                MPI_Recv(all + off, counts[r] * (int)sizeof(TraceEvent), MPI_BYTE, r, 5, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                off += counts[r];
            }
        } else {
            MPI_Send(pp->trace, n * (int)sizeof(TraceEvent), MPI_BYTE, 0, 5, MPI_COMM_WORLD);
        }
        free(counts);
        if (pp->rank != 0) { return; }
    }
#endif
    AtomicFile af;
    atomic_open(&af, path);
    fprintf(af.f, "{\"traceEvents\": [\n");
    for (int i = 0; i < total; i++) {
        TraceEvent* e = &all[i];
        fprintf(af.f, "{\"name\": \"%s\", \"ph\": \"X\", \"pid\": %d, \"tid\": %d, \"ts\": %.3f, \"dur\": %.3f, "
                "\"args\": {\"mb\": %d}}%s\n", e->name, e->stage, e->stage, e->t0 * 1e6, e->dur * 1e6, e->mb,
                i + 1 < total ? "," : "");
    }
    fprintf(af.f, "]}\n");
    atomic_commit(&af);
    if (all != pp->trace) { free(all); }
}

#ifndef TESTING
#ifdef USE_MPI
// a rank that fails takes the whole job down at once, instead of leaving its neighbours blocked forever
static void abort_all_ranks(void) { MPI_Abort(MPI_COMM_WORLD, 1); }
#endif

static int my_rank = 0;

static void on_fatal_signal(int sig) {
    char msg[160];
    int n = snprintf(msg, sizeof(msg), "error: rank %d died on signal %d during %s\n", my_rank, sig, current_action);
    if (write(2, msg, n) < 0) { /* nothing left to do */ }
    signal(sig, SIG_DFL);
    raise(sig);
}

// rank 0 prints, or every line would appear P times
#define printf0(...) do { if (rank == 0) { printf(__VA_ARGS__); } } while (0)

int main(int argc, char** argv) {
    int rank = 0, world = 1;
#ifdef USE_MPI
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (world > 1) { fatal_hook = abort_all_ranks; }  // alone, a plain exit says it more quietly
#endif
    my_rank = rank;
    signal(SIGTERM, on_fatal_signal);
    signal(SIGSEGV, on_fatal_signal);
    signal(SIGBUS, on_fatal_signal);
    signal(SIGFPE, on_fatal_signal);
    TrainArgs args;
    train_args_default(&args, 0.0f);
    train_args_parse(&args, argc, argv, 0, rank == 0);
    int P = train_args_stages(&args, world);
    const char *train_pattern = args.train_pattern, *val_pattern = args.val_pattern, *out_dir = args.out_dir;
    const char *model_arg = args.model_arg, *schedule_name = args.schedule_name, *trace_path = args.trace_path;
    int B = args.B, T = args.T, M = args.M, max_steps = args.max_steps, val_batches = args.val_batches;
    int val_every = args.val_every, sample_every = args.sample_every, gen_tokens = args.gen_tokens;
    int resume = args.resume, ckpt_every = args.ckpt_every;
    float lr = args.lr;
    LRSchedule lrs = {lr_schedule_parse(args.lr_schedule_name), lr, args.warmup, max_steps, args.final_frac};

    // the model: from a checkpoint file, or a descriptor and llm.c's random init
    int from_file = strlen(model_arg) > 4 && strcmp(model_arg + strlen(model_arg) - 4, ".bin") == 0;
    GPT2Config config = from_file ? model_read_config(model_arg) : config_from_descriptor(model_arg);
    if (T > config.max_seq_len) {
        fatal("flag -t %d exceeds the model's maximum sequence length %d (%s)", T, config.max_seq_len, model_arg);
    }
    // layers per stage
    int* layers = (int*)malloc_check(P * sizeof(int));
    int* first = (int*)malloc_check(P * sizeof(int));
    char err[512];
    PartitionCosts costs = partition_gpt2_costs(B, T, config.channels, config.padded_vocab_size);
    const char* layers_arg = args.layers_arg;
    int prc = layers_arg ? partition_parse(layers_arg, config.num_layers, P, layers, first, err, sizeof(err))
                         : partition_balance(config.num_layers, P, &costs, layers, first, err, sizeof(err));
    if (prc != 0) { fatal("%s %s: %s", layers_arg ? "flag -pl" : "flag -pp", layers_arg ? layers_arg : "", err); }

    int resume_step = -1;
    char resume_model[1100], resume_state[1100];
    if (out_dir && rank == 0) { mkdir_p(out_dir); }
    if (resume) {
        resume_step = checkpoint_find_latest(out_dir);
        if (resume_step < 0) { fatal("-y 1: no complete checkpoint (DONE_* file) in %s", out_dir); }
        snprintf(resume_model, sizeof(resume_model), "%s/model_%08d.bin", out_dir, resume_step);
        snprintf(resume_state, sizeof(resume_state), "%s/state_%08d.bin", out_dir, resume_step);
        GPT2Config saved = model_read_config(resume_model);
        if (memcmp(&saved, &config, sizeof(config)) != 0) {
            fatal("%s: the checkpoint's model (L=%d C=%d NH=%d V=%d maxT=%d) disagrees with -e %s", resume_model,
                  saved.num_layers, saved.channels, saved.num_heads, saved.vocab_size, saved.max_seq_len, model_arg);
        }
    }

    Pipeline pp;
    pipeline_init(&pp, &config, P, layers, M, B, T, schedule_name, rank, world);
    pp.opt = (OptimizerConfig){lr, 0.9f, 0.95f, 1e-8f, args.weight_decay, args.grad_clip};
    SimResult sim;
    schedule_simulate(&pp.schedule, 1.0, 2.0, 0.0, &sim);
    if (args.print_schedule) {
        if (rank == 0) {
            schedule_fprint(&pp.schedule, stdout);
            schedule_print_ascii_timeline(&pp.schedule, stdout);
            printf("simulated bubble %.4f (theory (P-1)/(M+P-1) = %.4f)\n", sim.bubble, (P - 1.0) / (M + P - 1.0));
        }
        sim_result_free(&sim);
        pipeline_free(&pp);
#ifdef USE_MPI
        MPI_Finalize();
#endif
        return 0;
    }
    for (int s = 0; s < P; s++) {
        if (!pp.is_local[s]) { continue; }
        Stage* st = &pp.stages[s];
        const char* src = resume ? resume_model : from_file ? model_arg : NULL;
        if (src) { model_read_stage(src, &config, &st->layout, st->params_memory); }
        else { stage_random_init(&config, &st->layout, st->params_memory); }
    }

    DataLoader train_loader, val_loader;
    dataloader_init(&train_loader, train_pattern, B, T, config.vocab_size);
    dataloader_init(&val_loader, val_pattern, B, T, config.vocab_size);
    int64_t val_available = dataloader_num_batches(&val_loader);
    if (val_batches > val_available) { val_batches = (int)val_available; }
    Tokenizer tokenizer;
    tokenizer_init(&tokenizer, args.tokenizer_path);
    uint64_t sample_rng = 1337;
    if (resume) { load_state(&pp, resume_state, &train_loader, &sample_rng); }
    Logger logger;
    logger_init(&logger, rank == 0 ? out_dir : NULL, resume);

    size_t nparams = model_num_parameters(&config);
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    printf0("model: L=%d C=%d NH=%d V=%d (padded %d) maxT=%d, %zu parameters\n", config.num_layers,
            config.channels, config.num_heads, config.vocab_size, config.padded_vocab_size, config.max_seq_len,
            nparams);
    printf0("batch: B=%d T=%d M=%d -> %d tokens per step; %d threads per process\n", B, T, M, B * T * M, threads);
    printf0("pipeline: P=%d stages, schedule %s, %s; simulated bubble %.3f, theory (P-1)/(M+P-1) = %.3f\n", P,
            schedule_name, world > 1 ? "one MPI rank per stage" : "all stages in this process", sim.bubble,
            (P - 1.0) / (M + P - 1.0));
    // estimated compute per stage (llmc/partition.h): the slowest stage sets the pipeline's pace
    double total_cost = 0.0, max_cost = 0.0;
    for (int s = 0; s < P; s++) {
        double cost = partition_stage_cost(&costs, P, s, layers[s]);
        total_cost += cost;
        max_cost = cost > max_cost ? cost : max_cost;
    }
    for (int s = 0; s < P; s++) {
        StageLayout lay = pipeline_stage_layout(&pp, s);
        printf0("stage %d: %d layers from %d%s%s, %zu parameters, %.0f%% of the compute, activation stash %d "
                "micro-batches x %.1f MiB\n", s, lay.num_layers, lay.layer_begin, lay.has_embed ? " + embeddings" : "",
                lay.has_head ? " + lnf/LM head" : "", lay.num_parameters,
                100.0 * partition_stage_cost(&costs, P, s, layers[s]) / total_cost, sim.peak_inflight[s],
                activations_bytes(&config, &lay, B, T) / 1048576.0);
    }
    if (P > 1) {
        printf0("balance: the slowest stage has %.0f%% of the compute, so P stages can be at most %.2fx faster than one\n",
                100.0 * max_cost / total_cost, total_cost / max_cost);
    }
    printf0("train: %s, %lld micro-batches per epoch; val: %s, using %d micro-batches\n", train_pattern,
            (long long)dataloader_num_batches(&train_loader), val_pattern, val_batches);
    if (resume) { printf0("resumed from %s at step %d\n", resume_model, pp.step); }

    double theory = (P - 1.0) / (M + P - 1.0);
    for (int step = pp.step; step <= max_steps; step++) {
        int last = step == max_steps;
        if (val_batches > 0 && ((val_every > 0 && step % val_every == 0) || last)) {
            dataloader_reset(&val_loader);
            float val_loss = pipeline_eval(&pp, &val_loader, val_batches);
            printf0("step %4d | val loss %.6f\n", step, val_loss);
            logger_log_val(&logger, step, val_loss);
        }
        if (gen_tokens > 0 && ((sample_every > 0 && step > 0 && step % sample_every == 0) || last)) {
            sample_text(&pp, &tokenizer, gen_tokens, &sample_rng);
        }
        if (last) { break; }
        pp.tracing = trace_path != NULL && step + 1 == max_steps;
#ifdef USE_MPI
        if (world > 1) { MPI_Barrier(MPI_COMM_WORLD); }  // a common start, so idle time is measured fairly
#endif
        double t0 = now_seconds();
        pp.trace_origin = t0;
        float step_lr = lr_at(&lrs, step);
        float loss = pipeline_train_step(&pp, next_batch_from_loader, &train_loader, step_lr);
        double secs = now_seconds() - t0;
        // measured bubble: the share of the schedule's wall time (forward and backward of all micro-batches,
        // the part the theory describes) that the ranks spend not computing; the optimizer comes after
        double busy = allreduce_sum(&pp, pp.busy);
        double wall = allreduce_sum(&pp, secs) / world;
        double schedule_wall = allreduce_sum(&pp, pp.schedule_secs) / world;
        char bubble[128] = "";
        if (world > 1) {
            snprintf(bubble, sizeof(bubble), " | bubble %.3f (theory %.3f) | optimizer %.0f ms",
                     1.0 - busy / (P * schedule_wall), theory, (wall - schedule_wall) * 1e3);
        }
        printf0("step %4d/%d | train loss %.6f | norm %.4f | lr %.2e | %.1f ms | %.0f tok/s%s\n", step + 1,
                max_steps, loss, pp.last_norm, step_lr, wall * 1e3, B * T * M / wall, bubble);
        logger_log_train(&logger, step + 1, loss, step_lr, pp.last_norm);
        if (out_dir && ((ckpt_every > 0 && (step + 1) % ckpt_every == 0) || step + 1 == max_steps)) {
            save_checkpoint(&pp, out_dir, &train_loader, sample_rng);
        }
        if (pp.tracing) {
            write_trace(&pp, trace_path);
            printf0("wrote trace %s (draw it: python3 scripts/plot_pipeline.py %s)\n", trace_path, trace_path);
        }
    }
    // the stash each stage actually used (counted as slots were taken), reported by rank 0
    for (int s = 0; s < P; s++) {
        double peak = allreduce_sum(&pp, pp.is_local[s] && (world == 1 || s == rank) ? pp.peak_slots[s] : 0);
        StageLayout lay = pipeline_stage_layout(&pp, s);
        printf0("stage %d: peak stash %.0f micro-batches (%.1f MiB)\n", s, peak,
                peak * activations_bytes(&config, &lay, B, T) / 1048576.0);
    }
    sim_result_free(&sim);
    free(layers);
    free(first);
    logger_free(&logger);
    tokenizer_free(&tokenizer);
    dataloader_free(&train_loader);
    dataloader_free(&val_loader);
    pipeline_free(&pp);
#ifdef USE_MPI
    MPI_Finalize();
#endif
    return 0;
}
#endif
