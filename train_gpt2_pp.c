/*
GPT-2 training in plain C, fp32, on the CPU: the reference path of this project.

It is the oracle for the CUDA kernels, the trainer for anyone without a GPU, and the first place to read how
the model is cut into pipeline stages. The file reads top to bottom:
  1. the layer kernels (forward and backward), plain loops, OpenMP across independent outputs only;
  2. a pipeline Stage: a contiguous run of layers with its parameters, gradients, AdamW state and a stash of
     per-micro-batch activations, and its forward/backward over one micro-batch;
  3. the optimizer pieces: the global grad norm's slots, AdamW;
  4. the pipeline on one rank: walking its list of actions from the schedule, messages to the neighbours,
     the tied-wte gradient sum, clipping, a training step, validation;
  5. checkpoints, sampling, the trace;
  6. one rank's whole run, and main(): ranks are MPI processes (mpirun) or threads of this process.

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
#include <pthread.h>
#ifdef USE_BLAS
#include <cblas.h>
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
// defines: Schedule, Action, schedule_build, schedule_validate (pipeline schedules as data)
#include "llmc/schedule.h"
// defines: schedule_fprint (the schedule as text)
#include "llmc/schedule_text.h"
// defines: schedule_simulate, schedule_print_ascii_timeline (the unit-time simulator)
#include "llmc/schedule_sim.h"
// defines: schedule_auto_choose, stage_costs_measured (-sc auto's choice from measured costs)
#include "llmc/schedule_auto.h"
// defines: pipeline_split, StashSlots, Trace, print_step_line (host bookkeeping shared with the .cu)
#include "llmc/pipeline.h"
// defines: sample_window, sample_softmax
#include "llmc/sampler.h"
// defines: Transport, transport_send/recv, transport_allreduce_sum (threads or MPI)
#include "llmc/transport.h"

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

// The backward of layernorm and matmul come in two halves: d(input), which the previous layer waits for,
// and d(weights), which a split backward (the I and W actions of zero-bubble schedules) runs later.
static void layernorm_backward_input(float* dinp, const float* dout, const float* inp, const float* weight,
                                     const float* mean, const float* rstd, int N, int C) {
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
}

static void layernorm_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp,
                                      const float* mean, const float* rstd, int N, int C) {
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

static void matmul_backward_input(float* dinp, const float* dout, const float* weight, int N, int C, int OC) {
#ifdef USE_BLAS
    // dinp (N,C) += dout (N,OC) @ weight (OC,C), in blocks of rows of dinp
    #pragma omp parallel for
    for (int n0 = 0; n0 < N; n0 += BLAS_BLOCK) {
        int rows = N - n0 < BLAS_BLOCK ? N - n0 : BLAS_BLOCK;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, C, OC, 1.0f, dout + (size_t)n0 * OC, OC,
                    weight, C, 1.0f, dinp + (size_t)n0 * C, C);
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
#endif
}

static void matmul_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp, int N, int C,
                                   int OC) {
#ifdef USE_BLAS
    // dweight (OC,C) += dout^T @ inp, in blocks of rows of dweight
    #pragma omp parallel for
    for (int o0 = 0; o0 < OC; o0 += BLAS_BLOCK) {
        int rows = OC - o0 < BLAS_BLOCK ? OC - o0 : BLAS_BLOCK;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rows, C, N, 1.0f, dout + o0, OC, inp, C, 1.0f,
                    dweight + (size_t)o0 * C, C);
    }
#else
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
    // With dloss != 0 (training) the logits are overwritten in place by d(loss)/d(logits) =
    // (softmax - onehot) * dloss, so the probabilities never need a buffer of their own.
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        float* x = logits + (size_t)n * Vp;
        float maxval = -INFINITY;
        for (int i = 0; i < V; i++) { if (x[i] > maxval) { maxval = x[i]; } }
        // in double: a float sum of 50,257 terms loses ~1e-5 of its value, and every probability with it
        double sum = 0.0;
        for (int i = 0; i < V; i++) { sum += expf(x[i] - maxval); }
        float logsum = (float)log(sum);
        int y = targets[n];
        losses[n] = logsum - (x[y] - maxval);
        if (dloss != 0.0f) {
            float inv = (float)(1.0 / sum);
            for (int i = 0; i < V; i++) { x[i] = (expf(x[i] - maxval) * inv - (i == y ? 1.0f : 0.0f)) * dloss; }
            for (int i = V; i < Vp; i++) { x[i] = 0.0f; }
        }
    }
}

// ----------------------------------------------------------------------------
// 2. a pipeline stage: half-layer units [unit_begin, unit_begin + num_units) of the model (llmc/model.h): a
// run of layers, the first of which may lack its attention half and the last its MLP half

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
    float* ln1;       // (na,B,T,C) na: the layers whose attention half the stage holds
    float* ln1_mean;  // (na,B,T)
    float* ln1_rstd;  // (na,B,T)
    float* qkv;       // (na,B,T,3C)
    float* att;       // (na,B,NH,T,T)
    float* atty;      // (na,B,T,C)
    float* attproj;   // (na,B,T,C)
    float* residual2; // (na,B,T,C)
    float* ln2;       // (nm,B,T,C) nm: the layers whose MLP half it holds
    float* ln2_mean;  // (nm,B,T)
    float* ln2_rstd;  // (nm,B,T)
    float* fch;       // (nm,B,T,4C)
    float* fch_gelu;  // (nm,B,T,4C)
    float* fcproj;    // (nm,B,T,C)
    float* residual3; // (nm,B,T,C) the stage's output is its last half's residual (stage_output)
    float* lnf;       // (B,T,C) last stage only, like the three below
    float* lnf_mean;  // (B,T)
    float* lnf_rstd;  // (B,T)
    float* logits;    // (B,T,Vp), overwritten by d(logits) when training
    float* losses;    // (B,T)
    float* dout;      // (B,T,C) gradient of the stage's output, received from the next stage (all but the last)
    float* kept;      // split backward only: the output gradients I keeps for W (stage_backward_input)
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
    float* m_memory;           // AdamW first moment: of the whole stage, or of this rank's shard under ZeRO-1
    float* v_memory;           // AdamW second moment, likewise
    Activations* stash;        // one slot per micro-batch that can be in flight at once
    int num_slots;
    size_t stash_bytes;        // what the slots allocated
    size_t allocated[MEM_CATEGORIES];  // every buffer of the stage, by category
    int recompute;             // -rc (Recompute): the slots share `work` for all but their own part
    Activations work;
    size_t work_bytes;
    int work_mb;               // the micro-batch whose forward `work` holds, -1 for none
    BackwardScratch scratch;
} Stage;

#define KEPT_MLP 6   // channels of LayerOutputGrads (below) of an MLP half, in units of C
#define KEPT_ATTN 5  // and of an attention half

// The stash of one micro-batch: the sizes of its 23 float tensors, in the order of Activations' fields. One
// table for allocating and for the memory the trainer prints. A split backward (I and W actions) also keeps
// the output gradients W needs. With recomputation (-rc) a slot keeps only its part (SLOT_PART: the stage's
// input, losses, what comes back from the next stage, what I keeps for W, the tokens) and every slot shares
// one stage-wide copy of the rest (WORK_PART), which the forward fills again before a backward.
#define NUM_ACTIVATION_TENSORS 23
enum { SLOT_PART = 1, WORK_PART = 2, ALL_PARTS = 3 };
static int activation_part(int i) { return i == 0 || i >= 20 ? SLOT_PART : WORK_PART; }

static void activation_sizes(const GPT2Config* c, const StageLayout* s, int B, int T, int split, int parts,
                             size_t* sizes) {
    size_t na = s->attn_layers, nm = s->mlp_layers, BT = (size_t)B * T, C = c->channels, NH = c->num_heads;
    size_t head = s->has_head, body = !s->has_head;  // dout: what the next stage sends back
    size_t kept = split ? (nm * KEPT_MLP + na * KEPT_ATTN + s->has_head + s->has_embed) * BT * C : 0;
    size_t table[NUM_ACTIVATION_TENSORS] = {
        BT * C, na * BT * C, na * BT, na * BT, na * BT * 3 * C, na * B * NH * T * T, na * BT * C, na * BT * C,
        na * BT * C, nm * BT * C, nm * BT, nm * BT, nm * BT * 4 * C, nm * BT * 4 * C, nm * BT * C, nm * BT * C,
        head * BT * C, head * BT, head * BT, head * BT * c->padded_vocab_size, head * BT, body * BT * C, kept};
    for (int i = 0; i < NUM_ACTIVATION_TENSORS; i++) { sizes[i] = activation_part(i) & parts ? table[i] : 0; }
}

// bytes of one stash slot (or of the parts asked for): its floats and, in the slot part, its two token arrays
static size_t activations_bytes(const GPT2Config* c, const StageLayout* s, int B, int T, int split, int parts) {
    size_t sizes[NUM_ACTIVATION_TENSORS], floats = 0;
    activation_sizes(c, s, B, T, split, parts, sizes);
    for (int i = 0; i < NUM_ACTIVATION_TENSORS; i++) { floats += sizes[i]; }
    return floats * sizeof(float) + (parts & SLOT_PART ? 2 * (size_t)B * T * sizeof(int) : 0);
}

static void activation_ptrs(Activations* a, float*** ptrs) {
    float** p[NUM_ACTIVATION_TENSORS] = {
        &a->x, &a->ln1, &a->ln1_mean, &a->ln1_rstd, &a->qkv, &a->att, &a->atty, &a->attproj, &a->residual2, &a->ln2,
        &a->ln2_mean, &a->ln2_rstd, &a->fch, &a->fch_gelu, &a->fcproj, &a->residual3, &a->lnf, &a->lnf_mean,
        &a->lnf_rstd, &a->logits, &a->losses, &a->dout, &a->kept};
    memcpy(ptrs, p, sizeof(p));
}

// Every buffer of a stage is allocated through here and counted in its category (MemoryCategory, llmc/
// pipeline.h): what a run prints as allocated, set against what -plan computes without allocating.
static void* calloc_counted(size_t* counter, size_t n, size_t size) {
    *counter += n * size;
    return calloc_check(n, size);
}

// allocates the parts of one stash slot, counted in *counter
static void activations_alloc(Activations* a, const GPT2Config* c, const StageLayout* s, int B, int T, int split,
                              int parts, size_t* counter) {
    size_t sizes[NUM_ACTIVATION_TENSORS], total = 0;
    activation_sizes(c, s, B, T, split, parts, sizes);
    float** ptrs[NUM_ACTIVATION_TENSORS];
    activation_ptrs(a, ptrs);
    for (int i = 0; i < NUM_ACTIVATION_TENSORS; i++) { total += sizes[i]; }
    a->memory = (float*)calloc_counted(counter, total, sizeof(float));
    float* p = a->memory;
    for (int i = 0; i < NUM_ACTIVATION_TENSORS; i++) {
        if (activation_part(i) & parts) { *ptrs[i] = sizes[i] ? p : NULL; }
        p += sizes[i];
    }
    if (parts & SLOT_PART) {
        a->inputs = (int*)calloc_counted(counter, (size_t)B * T, sizeof(int));
        a->targets = (int*)calloc_counted(counter, (size_t)B * T, sizeof(int));
    }
}

// the floats of BackwardScratch's eight buffers, in the order of its fields
static void scratch_sizes(const GPT2Config* c, int B, int T, size_t* sizes) {
    size_t BT = (size_t)B * T, C = c->channels;
    size_t table[8] = {BT * C, BT * C, BT * 3 * C, (size_t)B * c->num_heads * T, BT * C, BT * 4 * C, BT * 4 * C, BT * C};
    memcpy(sizes, table, sizeof(table));
}

// -rc: never (stash everything), except_last (rerun a micro-batch's forward before its backward unless the
// stage's work copy still holds it), always (rerun it before every backward)
typedef enum { RC_NEVER, RC_EXCEPT_LAST, RC_ALWAYS } Recompute;

static void stage_init(Stage* st, const GPT2Config* c, const StageLayout* s, int B, int T, int num_slots, int split,
                       int recompute, size_t moment_floats) {
    memset(st, 0, sizeof(*st));
    st->config = *c;
    st->layout = *s;
    st->B = B;
    st->T = T;
    size_t n = s->num_parameters, *mem = st->allocated;
    st->params_memory = (float*)calloc_counted(&mem[MEM_PARAMETERS], n, sizeof(float));
    st->grads_memory = (float*)calloc_counted(&mem[MEM_GRADIENTS], n, sizeof(float));
    st->m_memory = (float*)calloc_counted(&mem[MEM_OPTIMIZER], moment_floats, sizeof(float));
    st->v_memory = (float*)calloc_counted(&mem[MEM_OPTIMIZER], moment_floats, sizeof(float));
    point_parameters(&st->params, st->params_memory, s);
    point_parameters(&st->grads, st->grads_memory, s);
    if (s->has_head) { st->grad_wte_head = (float*)calloc_counted(&mem[MEM_GRADIENTS], s->sizes[WTE], sizeof(float)); }
    st->num_slots = num_slots;
    st->stash = (Activations*)calloc_check(num_slots, sizeof(Activations));
    st->recompute = recompute;
    st->work_mb = -1;
    int slot_parts = recompute ? SLOT_PART : ALL_PARTS;
    if (recompute) { activations_alloc(&st->work, c, s, B, T, split, WORK_PART, &st->work_bytes); }
    for (int i = 0; i < num_slots; i++) {
        activations_alloc(&st->stash[i], c, s, B, T, split, slot_parts, &st->stash_bytes);
        if (!recompute) { continue; }
        float** mine[NUM_ACTIVATION_TENSORS];
        float** shared[NUM_ACTIVATION_TENSORS];
        activation_ptrs(&st->stash[i], mine);
        activation_ptrs(&st->work, shared);
        for (int k = 0; k < NUM_ACTIVATION_TENSORS; k++) { if (activation_part(k) == WORK_PART) { *mine[k] = *shared[k]; } }
    }
    size_t sizes[8];
    scratch_sizes(c, B, T, sizes);
    float** ptrs[8] = {&st->scratch.dresidual, &st->scratch.dln, &st->scratch.dqkv, &st->scratch.datt,
                       &st->scratch.datty, &st->scratch.dfch, &st->scratch.dfch_gelu, &st->scratch.dresidual2};
    size_t total = 0;
    for (int i = 0; i < 8; i++) { total += sizes[i]; }
    mem[MEM_STASH] = st->stash_bytes + st->work_bytes;
    st->scratch.memory = (float*)calloc_counted(&mem[MEM_SCRATCH], total, sizeof(float));
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
    free(st->work.memory);
    free(st->scratch.memory);
    free(st->params_memory);
    free(st->grads_memory);
    free(st->grad_wte_head);
    free(st->m_memory);
    free(st->v_memory);
}

// The forward pass of one micro-batch (B,T may be smaller than the buffers, e.g. when sampling).
// Stage 0 embeds a->inputs into a->x; later stages find their input already in a->x (received from the
// previous stage). The last stage ends with the logits and per-position losses; when training (not
// forward_only) it turns the logits into their gradient right away, each position weighing dloss.
static void stage_forward(Stage* st, Activations* a, int B, int T, int forward_only, float dloss) {
    const GPT2Config* c = &st->config;
    const StageLayout* s = &st->layout;
    const ParameterTensors* p = &st->params;
    int C = c->channels, NH = c->num_heads, BT = B * T;
    if (s->has_embed) { OP("encoder", encoder_forward(a->x, a->inputs, p->wte, p->wpe, B, T, C)); }
    // per-layer activations are laid out for the full buffer shape, so index with the allocated B*T
    size_t BTa = (size_t)st->B * st->T;
    size_t att_a = (size_t)st->B * NH * st->T * st->T;
    float* residual = a->x;  // the residual stream entering the next half
    for (int l = 0; l < s->num_layers; l++) {
        int la = stage_attention_index(s, l);  // -1: the attention half is upstream
        double layer_t0 = op_begin();
        if (la >= 0) {
            float* ln1 = a->ln1 + la * BTa * C;
            float* qkv = a->qkv + la * BTa * 3 * C;
            float* atty = a->atty + la * BTa * C;
            float* attproj = a->attproj + la * BTa * C;
            float* residual2 = a->residual2 + la * BTa * C;
            OP("layernorm", layernorm_forward(ln1, a->ln1_mean + la * BTa, a->ln1_rstd + la * BTa, residual,
                                              p->ln1w + la * C, p->ln1b + la * C, BT, C));
            OP("matmul", matmul_forward(qkv, ln1, p->qkvw + (size_t)la * 3 * C * C, p->qkvb + la * 3 * C, BT, C, 3 * C));
            OP("attention", attention_forward(atty, a->att + la * att_a, qkv, B, T, C, NH));
            OP("matmul", matmul_forward(attproj, atty, p->attprojw + (size_t)la * C * C, p->attprojb + la * C, BT, C, C));
            OP("residual", residual_forward(residual2, residual, attproj, (size_t)BT * C));
            residual = residual2;
        }
        if (l < s->mlp_layers) {
            float* ln2 = a->ln2 + l * BTa * C;
            float* fch = a->fch + l * BTa * 4 * C;
            float* fch_gelu = a->fch_gelu + l * BTa * 4 * C;
            float* fcproj = a->fcproj + l * BTa * C;
            float* residual3 = a->residual3 + l * BTa * C;
            OP("layernorm", layernorm_forward(ln2, a->ln2_mean + l * BTa, a->ln2_rstd + l * BTa, residual,
                                              p->ln2w + l * C, p->ln2b + l * C, BT, C));
            OP("matmul", matmul_forward(fch, ln2, p->fcw + (size_t)l * 4 * C * C, p->fcb + l * 4 * C, BT, C, 4 * C));
            OP("gelu", gelu_forward(fch_gelu, fch, (size_t)BT * 4 * C));
            OP("matmul", matmul_forward(fcproj, fch_gelu, p->fcprojw + (size_t)l * 4 * C * C, p->fcprojb + l * C, BT,
                                        4 * C, C));
            OP("residual", residual_forward(residual3, residual, fcproj, (size_t)BT * C));
            residual = residual3;
        }
        op_end_layer(s->layer_begin + l, layer_t0);
    }
    if (s->has_head) {
        OP("layernorm", layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, residual, p->lnfw, p->lnfb, BT, C));
        OP("matmul", matmul_forward(a->logits, a->lnf, p->wte, NULL, BT, C, c->padded_vocab_size));
        OP("classifier", crossentropy_forward(a->logits, a->losses, a->targets, BT, c->vocab_size, c->padded_vocab_size,
                                 forward_only ? 0.0f : dloss));
    }
}

// the stage's output: what it sends to the next stage
static float* stage_output(Stage* st, Activations* a) {
    const StageLayout* s = &st->layout;
    size_t BTC = (size_t)st->B * st->T * st->config.channels;
    if (s->num_units == 0) { return a->x; }
    if (s->mlp_layers == s->num_layers) { return a->residual3 + (size_t)(s->mlp_layers - 1) * BTC; }
    return a->residual2 + (size_t)(s->attn_layers - 1) * BTC;  // the last layer's MLP is downstream
}

// With recomputation (-rc), puts micro-batch m's activations back into the stage's work copy before its
// backward: the same forward on the same input, so the same bits. except_last skips it while the work copy
// still holds m (a backward right after its forward); always reruns it before B and I regardless.
// `backward` is 0 where only the activations are needed (W, a send).
static void stage_restore(Stage* st, Activations* a, int m, float dloss, int backward) {
    int there = st->work_mb == m;
    if (!st->recompute || (there && !(backward && st->recompute == RC_ALWAYS))) { return; }
    stage_forward(st, a, st->B, st->T, 0, dloss);
    st->work_mb = m;
}

// What a split backward keeps from I for W: the gradient at the output of each matmul and layernorm, per
// position (their inputs are in the stash already). (B,T) each; C channels unless noted. The MLP halves'
// come first, then the attention halves', the LM head's and the embeddings'.
typedef struct {
    float *dfcproj, *dfc, *dln2;    // of an MLP half: C, 4C, C
    float *dattproj, *dqkv, *dln1;  // of an attention half: C, 3C, C
} LayerOutputGrads;

// of local layer l (its attention half la among the stage's), for the halves the stage holds
static LayerOutputGrads kept_layer(const Stage* st, const Activations* a, int l, int la) {
    size_t BTC = (size_t)st->B * st->T * st->config.channels;
    float* m = a->kept + l * KEPT_MLP * BTC;
    float* t = a->kept + ((size_t)st->layout.mlp_layers * KEPT_MLP + la * KEPT_ATTN) * BTC;
    LayerOutputGrads k = {m, m + BTC, m + 5 * BTC, t, t + BTC, t + 4 * BTC};
    return k;
}

// the kept gradient at the input of the final layernorm (last stage), then at the embeddings (stage 0)
static float* kept_head(const Stage* st, const Activations* a) {
    const StageLayout* s = &st->layout;
    return a->kept + ((size_t)s->mlp_layers * KEPT_MLP + s->attn_layers * KEPT_ATTN) * st->B * st->T * st->config.channels;
}

static float* kept_embed(const Stage* st, const Activations* a) {
    return kept_head(st, a) + (size_t)st->layout.has_head * st->B * st->T * st->config.channels;
}

// The seconds a fused backward (B) spends on weight gradients, what a split backward defers to W: -sc auto
// splits the measured B into I and W with it.
static PP_THREAD_LOCAL double weight_grad_secs = 0.0;
#define WEIGHT_OP(name, call) \
    do { double w_t0_ = now_seconds(); OP(name, call); weight_grad_secs += now_seconds() - w_t0_; } while (0)

// The d(input) half of the backward of one micro-batch at full shape (B,T). The last stage starts from the
// d(logits) its forward left in place; the others start from a->dout, the gradient of their output sent back
// by the next stage. Afterwards st->scratch.dresidual holds the gradient of the stage's input (sent to the
// previous stage). With keep (the I action), every output gradient the weight half needs is written to the
// stash instead of scratch; without it (B) the weight gradients are accumulated on the way, in the same
// float operations, so B and I+W give the same bits.
static void stage_backward_input(Stage* st, Activations* a, int keep) {
    const GPT2Config* c = &st->config;
    const StageLayout* s = &st->layout;
    const ParameterTensors* p = &st->params;
    ParameterTensors* g = &st->grads;
    BackwardScratch* sc = &st->scratch;
    int B = st->B, T = st->T, C = c->channels, NH = c->num_heads, BT = B * T;
    size_t nBTC = (size_t)BT * C;
    if (s->has_head) {
        float* dlnf = keep ? kept_head(st, a) : sc->dln;
        memset(dlnf, 0, nBTC * sizeof(float));
        memset(sc->dresidual, 0, nBTC * sizeof(float));
        OP("matmul", matmul_backward_input(dlnf, a->logits, p->wte, BT, C, c->padded_vocab_size));
        if (!keep) { WEIGHT_OP("matmul", matmul_backward_weight(st->grad_wte_head, NULL, a->logits, a->lnf, BT, C, c->padded_vocab_size)); }
        OP("layernorm", layernorm_backward_input(sc->dresidual, dlnf, stage_output(st, a), p->lnfw, a->lnf_mean,
                                                 a->lnf_rstd, BT, C));
        if (!keep) {
            WEIGHT_OP("layernorm", layernorm_backward_weight(g->lnfw, g->lnfb, dlnf, stage_output(st, a), a->lnf_mean,
                                                      a->lnf_rstd, BT, C));
        }
    } else {
        memcpy(sc->dresidual, a->dout, nBTC * sizeof(float));
    }
    for (int l = s->num_layers - 1; l >= 0; l--) {
        int la = stage_attention_index(s, l);  // -1: the attention half is upstream
        float* residual = l == 0 ? a->x : a->residual3 + (size_t)(l - 1) * nBTC;  // entering layer l
        float* mid = la >= 0 ? a->residual2 + la * nBTC : residual;                // entering its MLP half
        float* dmid = sc->dresidual;  // the gradient of mid, in dresidual2 once the MLP half has added to it
        LayerOutputGrads k = keep ? kept_layer(st, a, l, la)
                                  : (LayerOutputGrads){sc->dresidual, sc->dfch, sc->dln, sc->dresidual2, sc->dqkv, sc->dln};
        double layer_t0 = op_begin();
        if (l < s->mlp_layers) {  // the MLP half: out = mid + fcproj(gelu(fc(ln2(mid))))
            float* ln2 = a->ln2 + l * nBTC;
            float* fch = a->fch + l * nBTC * 4;
            float* fch_gelu = a->fch_gelu + l * nBTC * 4;
            size_t w4 = (size_t)l * 4 * C * C;
            if (keep) { memcpy(k.dfcproj, sc->dresidual, nBTC * sizeof(float)); }
            memset(sc->dfch_gelu, 0, nBTC * 4 * sizeof(float));
            OP("matmul", matmul_backward_input(sc->dfch_gelu, k.dfcproj, p->fcprojw + w4, BT, 4 * C, C));
            if (!keep) { WEIGHT_OP("matmul", matmul_backward_weight(g->fcprojw + w4, g->fcprojb + l * C, k.dfcproj, fch_gelu, BT, 4 * C, C)); }
            OP("gelu", gelu_backward(k.dfc, fch, sc->dfch_gelu, nBTC * 4));
            memset(k.dln2, 0, nBTC * sizeof(float));
            OP("matmul", matmul_backward_input(k.dln2, k.dfc, p->fcw + w4, BT, C, 4 * C));
            if (!keep) { WEIGHT_OP("matmul", matmul_backward_weight(g->fcw + w4, g->fcb + l * 4 * C, k.dfc, ln2, BT, C, 4 * C)); }
            memcpy(sc->dresidual2, sc->dresidual, nBTC * sizeof(float));  // the skip connection
            OP("layernorm", layernorm_backward_input(sc->dresidual2, k.dln2, mid, p->ln2w + l * C,
                                                     a->ln2_mean + l * BT, a->ln2_rstd + l * BT, BT, C));
            if (!keep) {
                WEIGHT_OP("layernorm", layernorm_backward_weight(g->ln2w + l * C, g->ln2b + l * C, k.dln2, mid,
                                                          a->ln2_mean + l * BT, a->ln2_rstd + l * BT, BT, C));
            }
            dmid = sc->dresidual2;
        }
        if (la >= 0) {  // the attention half: mid = residual + attproj(attention(qkv(ln1(residual))))
            float* ln1 = a->ln1 + la * nBTC;
            float* qkv = a->qkv + la * nBTC * 3;
            float* att = a->att + (size_t)la * B * NH * T * T;
            float* atty = a->atty + la * nBTC;
            size_t w3 = (size_t)la * 3 * C * C, w1 = (size_t)la * C * C;
            if (!keep) { k.dattproj = dmid; }
            if (keep) { memcpy(k.dattproj, dmid, nBTC * sizeof(float)); }
            memset(sc->datty, 0, nBTC * sizeof(float));
            OP("matmul", matmul_backward_input(sc->datty, k.dattproj, p->attprojw + w1, BT, C, C));
            if (!keep) { WEIGHT_OP("matmul", matmul_backward_weight(g->attprojw + w1, g->attprojb + la * C, k.dattproj, atty, BT, C, C)); }
            OP("attention", attention_backward(k.dqkv, sc->datt, sc->datty, qkv, att, B, T, C, NH));
            memset(k.dln1, 0, nBTC * sizeof(float));
            OP("matmul", matmul_backward_input(k.dln1, k.dqkv, p->qkvw + w3, BT, C, 3 * C));
            if (!keep) { WEIGHT_OP("matmul", matmul_backward_weight(g->qkvw + w3, g->qkvb + la * 3 * C, k.dqkv, ln1, BT, C, 3 * C)); }
            if (dmid != sc->dresidual) { memcpy(sc->dresidual, dmid, nBTC * sizeof(float)); }
            OP("layernorm", layernorm_backward_input(sc->dresidual, k.dln1, residual, p->ln1w + la * C,
                                                     a->ln1_mean + la * BT, a->ln1_rstd + la * BT, BT, C));
            if (!keep) {
                WEIGHT_OP("layernorm", layernorm_backward_weight(g->ln1w + la * C, g->ln1b + la * C, k.dln1, residual,
                                                          a->ln1_mean + la * BT, a->ln1_rstd + la * BT, BT, C));
            }
        } else if (dmid != sc->dresidual) {
            memcpy(sc->dresidual, dmid, nBTC * sizeof(float));  // the stage's input is this layer's mid
        }
        op_end_layer(s->layer_begin + l, layer_t0);
    }
    if (s->has_embed && keep) { memcpy(kept_embed(st, a), sc->dresidual, nBTC * sizeof(float)); }
    if (s->has_embed && !keep) { WEIGHT_OP("encoder", encoder_backward(g->wte, g->wpe, sc->dresidual, a->inputs, B, T, C)); }
}

// The weight half (W) of a split backward, from what stage_backward_input kept: the same float operations
// as the fused backward, per tensor in the same order of micro-batches, so the same bits.
static void stage_backward_weight(Stage* st, Activations* a) {
    const GPT2Config* c = &st->config;
    const StageLayout* s = &st->layout;
    ParameterTensors* g = &st->grads;
    int B = st->B, T = st->T, C = c->channels, BT = B * T;
    size_t nBTC = (size_t)BT * C;
    if (s->has_head) {
        OP("matmul", matmul_backward_weight(st->grad_wte_head, NULL, a->logits, a->lnf, BT, C, c->padded_vocab_size));
        OP("layernorm", layernorm_backward_weight(g->lnfw, g->lnfb, kept_head(st, a), stage_output(st, a), a->lnf_mean,
                                                  a->lnf_rstd, BT, C));
    }
    for (int l = s->num_layers - 1; l >= 0; l--) {
        int la = stage_attention_index(s, l);
        float* residual = l == 0 ? a->x : a->residual3 + (size_t)(l - 1) * nBTC;
        float* mid = la >= 0 ? a->residual2 + la * nBTC : residual;
        LayerOutputGrads k = kept_layer(st, a, l, la);
        double layer_t0 = op_begin();
        if (l < s->mlp_layers) {
            size_t w4 = (size_t)l * 4 * C * C;
            OP("matmul", matmul_backward_weight(g->fcprojw + w4, g->fcprojb + l * C, k.dfcproj, a->fch_gelu + l * nBTC * 4,
                                                BT, 4 * C, C));
            OP("matmul", matmul_backward_weight(g->fcw + w4, g->fcb + l * 4 * C, k.dfc, a->ln2 + l * nBTC, BT, C, 4 * C));
            OP("layernorm", layernorm_backward_weight(g->ln2w + l * C, g->ln2b + l * C, k.dln2, mid,
                                                      a->ln2_mean + l * BT, a->ln2_rstd + l * BT, BT, C));
        }
        if (la >= 0) {
            size_t w3 = (size_t)la * 3 * C * C, w1 = (size_t)la * C * C;
            OP("matmul", matmul_backward_weight(g->attprojw + w1, g->attprojb + la * C, k.dattproj, a->atty + la * nBTC,
                                                BT, C, C));
            OP("matmul", matmul_backward_weight(g->qkvw + w3, g->qkvb + la * 3 * C, k.dqkv, a->ln1 + la * nBTC, BT, C,
                                                3 * C));
            OP("layernorm", layernorm_backward_weight(g->ln1w + la * C, g->ln1b + la * C, k.dln1, residual,
                                                      a->ln1_mean + la * BT, a->ln1_rstd + la * BT, BT, C));
        }
        op_end_layer(s->layer_begin + l, layer_t0);
    }
    if (s->has_embed) { OP("encoder", encoder_backward(g->wte, g->wpe, kept_embed(st, a), a->inputs, B, T, C)); }
}

// ----------------------------------------------------------------------------
// 3. the optimizer

typedef struct {
    float lr, beta1, beta2, eps, weight_decay, grad_clip;
} OptimizerConfig;

// AdamW on the pieces this rank updates (llmc/data_parallel.h): the whole stage, or its shard under ZeRO-1,
// whose moments are packed piece after piece. Elementwise, so a shard's update is the same bits as the whole's.
static void stage_adamw(Stage* st, const ShardPiece* pieces, int num_pieces, int packed_moments,
                        const OptimizerConfig* opt, float lr, float grad_scale, int t) {
    float bc1 = 1.0f - powf(opt->beta1, (float)t);
    float bc2 = 1.0f - powf(opt->beta2, (float)t);
    for (int i = 0; i < num_pieces; i++) {
        size_t n = pieces[i].count, moment = packed_moments ? pieces[i].packed : pieces[i].offset;
        float wd = tensor_is_decayed(pieces[i].tensor) ? opt->weight_decay : 0.0f;
        float* p = st->params_memory + pieces[i].offset;
        float* g = st->grads_memory + pieces[i].offset;
        float* m = st->m_memory + moment;
        float* v = st->v_memory + moment;
        #pragma omp parallel for if (n > 4096)
        for (size_t j = 0; j < n; j++) {
            float grad = g[j] * grad_scale;
            m[j] = opt->beta1 * m[j] + (1.0f - opt->beta1) * grad;
            v[j] = opt->beta2 * v[j] + (1.0f - opt->beta2) * grad * grad;
            float m_hat = m[j] / bc1;
            float v_hat = v[j] / bc2;
            p[j] -= lr * (m_hat / (sqrtf(v_hat) + opt->eps) + wd * p[j]);
        }
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
// 4. the pipeline on this rank: its stages, its list of actions, messages to the neighbours (llmc/transport.h).
// Every rank runs the same code whether it is an MPI process or a thread of this one; only the transport
// differs, and a message carries the same bytes either way, so both launch modes give the same bits.

// one of this rank's stages: its layers, the stash slot of each micro-batch in flight, and the inputs that
// arrived ahead of their forward
typedef struct {
    Stage stage;
    StashSlots slots;
    StashSlots inbox;
    float* inbox_memory;      // (inbox.num_slots, B*T*C)
    ShardPiece* pieces;       // (D, max_shard_pieces) the stage's D data-parallel shards (llmc/data_parallel.h)
    int* num_pieces;          // (D)
    size_t* shard_floats;     // (D)
    float* shard_message;     // (largest shard) one shard's pieces one after another: a D > 1 message
    int shards_sent;          // this step's gradient shards already went to the data-parallel group
} RankStage;

typedef struct {
    GPT2Config config;
    int P, S, M, B, T;        // ranks, stages (S = P, or v*P with several stages per rank), micro-batches
    int rank;                 // this rank in its pipeline
    Transport* tp;            // this rank's pipeline: the schedule's messages
    Grid grid;                // D replicas of the pipeline (llmc/data_parallel.h)
    Transport* dp;            // this pipeline rank's data-parallel group: the gradient reduction
    Transport* job;           // every rank: the loss, the grad norm, who prints
    int zero;                 // -z 1: this rank keeps the AdamW moments of its shard only
    int* reduce_order;        // (num_local) local stages in the order their gradient shards left this step
    int num_sent;             // how many left during the schedule
    int* units;               // (S) half-layer units per stage (llmc/partition.h)
    Schedule schedule;        // the training schedule: which rank runs which stage, and every rank's actions
    char schedule_name[SCHEDULE_NAME_MAX];  // its builder
    RankStage* local;         // this rank's stages, in increasing stage order
    int num_local;
    int* local_of;            // (S) index into local, -1 for another rank's stage
    OptimizerConfig opt;
    int step;                 // training steps taken
    int adam_t;               // AdamW updates taken (fewer than steps when non-finite steps were skipped)
    float last_norm;
    int nonfinite_in_a_row;   // steps skipped for a non-finite loss or grad norm, up to max_nonfinite (-nf)
    int max_nonfinite;
    int* tokens;              // (M, 2, B*T) the step's inputs and targets, read before the schedule runs
    float* wte_peer;          // (Vp*C) the other end stage's half of the tied wte gradient, when on another rank
    double busy;              // compute seconds in the last schedule
    double* action_secs;      // (S, 5) seconds of F, B, I, W on each local stage in the last training schedule,
                              // and of B's weight-gradient part
    int* action_count;        // (S, 5) how many
    double schedule_secs;     // wall seconds of the last step's schedule (forward and backward, no optimizer)
    Trace trace;
} Pipeline;

static RankStage* local_stage(Pipeline* pp, int s) {
    if (pp->local_of[s] < 0) { fatal("rank %d: stage %d runs on rank %d (schedule bug)", pp->rank, s, pp->schedule.stage_rank[s]); }
    return &pp->local[pp->local_of[s]];
}

static int schedule_splits_backward(const Schedule* sc) {
    for (int r = 0; r < sc->P; r++) {
        for (int i = 0; i < sc->ranks[r].n; i++) { if (sc->ranks[r].a[i].type == PP_I) { return 1; } }
    }
    return 0;
}

static void pipeline_init(Pipeline* pp, const GPT2Config* c, const TrainArgs* args, Transport* tp, Transport* dp,
                          Transport* job) {
    memset(pp, 0, sizeof(*pp));
    int P = tp->world, rank = tp->rank;
    pp->config = *c;
    pp->P = P;
    pp->M = args->M;
    pp->B = args->B;
    pp->T = args->T;
    pp->rank = rank;
    pp->tp = tp;
    pp->dp = dp;
    pp->job = job;
    pp->grid = grid_of(job->rank, dp->world, P);
    pp->zero = args->zero;
    pp->max_nonfinite = args->max_nonfinite;
    pipeline_load_schedule(&pp->schedule, args, P);
    snprintf(pp->schedule_name, sizeof(pp->schedule_name), "%s", args->schedule_name);
    int S = pp->S = pp->schedule.S;
    pp->units = (int*)malloc_check(S * sizeof(int));
    pipeline_split(args, c, S, pp->units);
    int split = schedule_splits_backward(&pp->schedule);
    pp->local_of = (int*)malloc_check(S * sizeof(int));
    pp->local = (RankStage*)calloc_check(S, sizeof(RankStage));
    pp->reduce_order = (int*)calloc_check(S, sizeof(int));
    size_t nBTC = (size_t)pp->B * pp->T * c->channels;
    for (int s = 0; s < S; s++) {
        pp->local_of[s] = pp->schedule.stage_rank[s] == rank ? pp->num_local++ : -1;
        if (pp->local_of[s] < 0) { continue; }
        RankStage* ls = &pp->local[pp->local_of[s]];
        StageLayout lay = pipeline_stage_layout(c, pp->units, S, s);
        int slots = schedule_stage_slots(&pp->schedule, s), inbox = schedule_stage_inbox(&pp->schedule, s);
        int D = pp->grid.D, maxp = max_shard_pieces(c);
        ls->pieces = (ShardPiece*)malloc_check((size_t)D * maxp * sizeof(ShardPiece));
        ls->num_pieces = (int*)malloc_check(D * sizeof(int));
        ls->shard_floats = (size_t*)malloc_check(D * sizeof(size_t));
        for (int k = 0; k < D; k++) {
            ls->num_pieces[k] = stage_shard_pieces(c, &lay, D, k, ls->pieces + (size_t)k * maxp, &ls->shard_floats[k]);
        }
        size_t moments = pp->zero ? ls->shard_floats[pp->grid.d] : lay.num_parameters;
        stage_init(&ls->stage, c, &lay, pp->B, pp->T, slots, split, args->recompute, moments);
        size_t* comm = &ls->stage.allocated[MEM_COMMUNICATION];
        size_t largest = 0;
        for (int k = 0; k < D; k++) { largest = ls->shard_floats[k] > largest ? ls->shard_floats[k] : largest; }
        if (D > 1) { ls->shard_message = (float*)calloc_counted(comm, largest, sizeof(float)); }
        stash_init(&ls->slots, pp->M, slots);
        stash_init(&ls->inbox, pp->M, inbox);
        ls->inbox_memory = (float*)calloc_counted(comm, (size_t)inbox * nBTC, sizeof(float));
    }
    pp->tokens = (int*)calloc_check((size_t)pp->M * 2 * pp->B * pp->T, sizeof(int));
    pp->action_secs = (double*)calloc_check((size_t)S * 5, sizeof(double));
    pp->action_count = (int*)calloc_check((size_t)S * 5, sizeof(int));
    pp->trace.rank = rank;
    op_trace = &pp->trace;  // this thread runs this rank
    int ends_apart = pp->schedule.stage_rank[0] != pp->schedule.stage_rank[S - 1];
    if (ends_apart && (pp->local_of[0] >= 0 || pp->local_of[S - 1] >= 0)) {  // counted on the lower end stage here
        int end = pp->local_of[0] >= 0 ? 0 : S - 1;
        pp->wte_peer = (float*)calloc_counted(&local_stage(pp, end)->stage.allocated[MEM_COMMUNICATION],
                                              tensor_unit_size(c, WTE), sizeof(float));
    }
}

static void pipeline_free(Pipeline* pp) {
    for (int i = 0; i < pp->num_local; i++) {
        stage_free(&pp->local[i].stage);
        stash_free(&pp->local[i].slots);
        stash_free(&pp->local[i].inbox);
        free(pp->local[i].inbox_memory);
        free(pp->local[i].pieces);
        free(pp->local[i].num_pieces);
        free(pp->local[i].shard_floats);
        free(pp->local[i].shard_message);
    }
    free(pp->local);
    free(pp->reduce_order);
    free(pp->local_of);
    schedule_free(&pp->schedule);
    free(pp->tokens);
    free(pp->action_secs);
    free(pp->action_count);
    free(pp->wte_peer);
    free(pp->trace.events);
    free(pp->units);
}

static float* inbox_buffer(RankStage* ls, int k) {
    return ls->inbox_memory + (size_t)k * ls->stage.B * ls->stage.T * ls->stage.config.channels;
}

// ----------------------------------------------------------------------------
// data parallelism (-dp D): every stage's buffers cut into D shards of pieces (llmc/data_parallel.h); a
// message carries one shard, its pieces one after another.

static const ShardPiece* shard_pieces(const Pipeline* pp, const RankStage* ls, int k) {
    return ls->pieces + (size_t)k * max_shard_pieces(&pp->config);
}

// shard k of a stage-layout buffer into ls->shard_message (to_message), or back; `add` adds it to buf instead
static void shard_copy(const Pipeline* pp, RankStage* ls, int k, float* buf, int to_message, int add) {
    const ShardPiece* pc = shard_pieces(pp, ls, k);
    for (int i = 0; i < ls->num_pieces[k]; i++) {
        float* msg = ls->shard_message + pc[i].packed;
        float* at = buf + pc[i].offset;
        if (to_message) { memcpy(msg, at, pc[i].count * sizeof(float)); }
        else if (!add) { memcpy(at, msg, pc[i].count * sizeof(float)); }
        else { for (size_t j = 0; j < pc[i].count; j++) { at[j] += msg[j]; } }
    }
}

// This rank's gradient of every other shard to that shard's owner in the data-parallel group (a send copies
// its message: the buffer is free again at once)
static void send_gradient_shards(Pipeline* pp, RankStage* ls) {
    for (int k = 0; k < pp->grid.D; k++) {
        if (k == pp->grid.d) { continue; }
        shard_copy(pp, ls, k, ls->stage.grads_memory, 1, 0);
        transport_send(pp->dp, k, TAG_DATA_PARALLEL, ls->shard_message, ls->shard_floats[k] * sizeof(float));
    }
    ls->shards_sent = 1;
}

// Runs one action of this rank's list. A forward-only pass (validation, sampling) at micro-batch shape (B, T)
// frees each micro-batch's slot once its output has left; training keeps it for the backward, and dloss is
// each position's weight in the loss. Between two stages of this rank the output is handed over directly.
static void run_action(Pipeline* pp, const Action* a, int B, int T, int forward_only, float dloss, double* loss_sum) {
    RankStage* ls = local_stage(pp, a->stage);
    Stage* st = &ls->stage;
    int m = a->mb, s = a->stage, last = s == pp->S - 1;
    RankStage* next = !last && pp->local_of[s + 1] >= 0 ? local_stage(pp, s + 1) : NULL;
    RankStage* prev = s > 0 && pp->local_of[s - 1] >= 0 ? local_stage(pp, s - 1) : NULL;
    size_t bytes = (size_t)B * T * pp->config.channels * sizeof(float);
    activity_set("schedule", a, pp->step + 1);
    pp->trace.stage = s;  // the stage of the op and layer events to come
    double t0 = now_seconds(), weight0 = weight_grad_secs;
    switch (a->type) {
    case PP_RECV_F:
        transport_recv(pp->tp, a->peer, TAG_ACTIVATION, inbox_buffer(ls, stash_acquire(&ls->inbox, m)), bytes);
        trace_add(&pp->trace, "recv", s, m, t0, now_seconds());
        return;
    case PP_F: {
        Activations* act = &st->stash[stash_acquire(&ls->slots, m)];
        const int* tokens = pp->tokens + (size_t)m * 2 * B * T;
        memcpy(act->inputs, tokens, (size_t)B * T * sizeof(int));
        memcpy(act->targets, tokens + B * T, (size_t)B * T * sizeof(int));
        if (s > 0) {
            memcpy(act->x, inbox_buffer(ls, stash_slot(&ls->inbox, m)), bytes);
            stash_release(&ls->inbox, m);
        }
        stage_forward(st, act, B, T, forward_only, dloss);
        st->work_mb = forward_only ? -1 : m;
        if (last) { *loss_sum += microbatch_loss(act, B, T); }
        if (next) { memcpy(inbox_buffer(next, stash_acquire(&next->inbox, m)), stage_output(st, act), bytes); }
        if (forward_only && (last || next)) { stash_release(&ls->slots, m); }
        break;
    }
    case PP_SEND_F:
        if (!forward_only) { stage_restore(st, &st->stash[stash_slot(&ls->slots, m)], m, dloss, 0); }
        transport_send(pp->tp, a->peer, TAG_ACTIVATION, stage_output(st, &st->stash[stash_slot(&ls->slots, m)]), bytes);
        if (forward_only) { stash_release(&ls->slots, m); }
        trace_add(&pp->trace, "send", s, m, t0, now_seconds());
        return;
    case PP_RECV_B:
        transport_recv(pp->tp, a->peer, TAG_GRADIENT, st->stash[stash_slot(&ls->slots, m)].dout, bytes);
        trace_add(&pp->trace, "recv", s, m, t0, now_seconds());
        return;
    case PP_B:
    case PP_I: {
        Activations* act = &st->stash[stash_slot(&ls->slots, m)];
        stage_restore(st, act, m, dloss, 1);
        stage_backward_input(st, act, a->type == PP_I);
        if (a->type == PP_B) { stash_release(&ls->slots, m); }
        if (prev) {
            Stage* ps = &prev->stage;
            memcpy(ps->stash[stash_slot(&prev->slots, m)].dout, st->scratch.dresidual, bytes);
        }
        break;
    }
    case PP_W:
        stage_restore(st, &st->stash[stash_slot(&ls->slots, m)], m, dloss, 0);
        stage_backward_weight(st, &st->stash[stash_slot(&ls->slots, m)]);
        stash_release(&ls->slots, m);
        break;
    case PP_SEND_B:
        transport_send(pp->tp, a->peer, TAG_GRADIENT, st->scratch.dresidual, bytes);
        trace_add(&pp->trace, "send", s, m, t0, now_seconds());
        return;
    default: {
        char tok[48];
        fatal("action %s is not supported by this trainer", schedule_action_str(a, tok, sizeof(tok)));
    }
    }
    double t1 = now_seconds();
    pp->busy += t1 - t0;
    if (!forward_only) {
        int kind = a->type == PP_F ? 0 : a->type == PP_B ? 1 : a->type == PP_I ? 2 : 3;
        pp->action_secs[s * 5 + kind] += t1 - t0;
        pp->action_count[s * 5 + kind]++;
        if (a->type == PP_B) { pp->action_secs[s * 5 + 4] += weight_grad_secs - weight0; }
        // a stage's gradient is final after its M-th weight-gradient action, unless the tied wte's other half
        // is still to come: its shards can leave for the data-parallel group now, while the schedule goes on
        int weight_done = pp->action_count[s * 5 + 1] + pp->action_count[s * 5 + 3];
        if (pp->grid.D > 1 && weight_done == pp->M && st->layout.sizes[WTE] == 0) {
            pp->reduce_order[pp->num_sent++] = pp->local_of[s];
            send_gradient_shards(pp, ls);
        }
    }
    trace_action(&pp->trace, a, t0, t1);
}

// Runs this rank's list of a schedule. Returns the summed per-micro-batch mean losses on the last stage, 0
// on the others.
static double run_schedule(Pipeline* pp, const Schedule* sc, int B, int T, int forward_only) {
    double loss_sum = 0.0;
    float dloss = 1.0f / ((float)pp->grid.D * pp->M * pp->B * pp->T);  // the mean over every replica's tokens
    pp->busy = 0.0;
    if (!forward_only) {
        memset(pp->action_secs, 0, (size_t)pp->S * 5 * sizeof(double));
        memset(pp->action_count, 0, (size_t)pp->S * 5 * sizeof(int));
    }
    const ActionList* list = &sc->ranks[pp->rank];
    for (int i = 0; i < list->n; i++) { run_action(pp, &list->a[i], B, T, forward_only, dloss, &loss_sum); }
    transport_wait_sends(pp->tp);
    activity_set("between schedules", NULL, pp->step + 1);
    return loss_sum;
}

// The tied wte: stage 0 accumulated the embedding side of its gradient, the last stage the LM-head side.
// Both end stages compute embed + head in that order, so both copies of wte stay bitwise equal. The halves
// travel only when the two stages run on different ranks.
static void pipeline_sync_tied_wte(Pipeline* pp) {
    int last = pp->S - 1;
    Stage* embed_st = pp->local_of[0] >= 0 ? &local_stage(pp, 0)->stage : NULL;
    Stage* head_st = pp->local_of[last] >= 0 ? &local_stage(pp, last)->stage : NULL;
    if (!embed_st && !head_st) { return; }
    size_t n = tensor_unit_size(&pp->config, WTE);
    const float* embed = embed_st ? embed_st->grads.wte : pp->wte_peer;
    const float* head = head_st ? head_st->grad_wte_head : pp->wte_peer;
    if (!embed_st || !head_st) {
        int peer = pp->schedule.stage_rank[embed_st ? last : 0];
        double t0 = now_seconds();
        transport_send(pp->tp, peer, TAG_TIED_WTE, embed_st ? embed : head, n * sizeof(float));
        transport_recv(pp->tp, peer, TAG_TIED_WTE, pp->wte_peer, n * sizeof(float));
        transport_wait_sends(pp->tp);
        trace_add(&pp->trace, "recv", -1, -1, t0, now_seconds());
    }
    double t0 = op_begin();
    if (head_st && head_st != embed_st) {  // the head's copy first: the embedding's sum overwrites `embed`
        for (size_t i = 0; i < n; i++) { head_st->grads.wte[i] = embed[i] + head[i]; }
    }
    if (embed_st) {
        for (size_t i = 0; i < n; i++) { embed_st->grads.wte[i] = embed[i] + head[i]; }
    }
    op_end("op", "tied_wte", t0);
}

// every rank's shard of a stage-layout buffer to every other rank of the data-parallel group
static void shards_all_gather(Pipeline* pp, RankStage* ls, float* buf) {
    int D = pp->grid.D, d = pp->grid.d;
    shard_copy(pp, ls, d, buf, 1, 0);
    for (int k = 0; k < D; k++) {
        if (k != d) { transport_send(pp->dp, k, TAG_DATA_PARALLEL, ls->shard_message, ls->shard_floats[d] * sizeof(float)); }
    }
    for (int k = 0; k < D; k++) {
        if (k == d) { continue; }
        transport_recv(pp->dp, k, TAG_DATA_PARALLEL, ls->shard_message, ls->shard_floats[k] * sizeof(float));
        shard_copy(pp, ls, k, buf, 0, 0);
    }
    transport_wait_sends(pp->dp);
}

// The gradients summed over the data-parallel group: rank k of it sums shard k, its own gradient first and
// then the others' in rank order, one fixed order per shard whatever P is. Without ZeRO-1 the sums are
// all-gathered so every replica updates the whole stage; under ZeRO-1 only this rank's shard is read after.
// Stages whose shards left during the schedule come first, in the order they left, then the others, and the
// all-gathers only after every sum: every rank of the group runs the same list, so each peer's messages
// arrive in the order they are taken.
static void pipeline_reduce_gradients(Pipeline* pp) {
    int D = pp->grid.D, d = pp->grid.d, n = pp->num_sent;
    if (D == 1) { return; }
    double t0 = now_seconds();
    for (int l = 0; l < pp->num_local; l++) { if (!pp->local[l].shards_sent) { pp->reduce_order[n++] = l; } }
    pp->num_sent = 0;
    for (int i = 0; i < n; i++) {
        RankStage* ls = &pp->local[pp->reduce_order[i]];
        float* grads = ls->stage.grads_memory;
        if (!ls->shards_sent) { send_gradient_shards(pp, ls); }
        ls->shards_sent = 0;
        for (int e = 0; e < D; e++) {
            if (e == d) { continue; }
            transport_recv(pp->dp, e, TAG_DATA_PARALLEL, ls->shard_message, ls->shard_floats[d] * sizeof(float));
            shard_copy(pp, ls, d, grads, 0, 1);
        }
    }
    for (int i = 0; i < n && !pp->zero; i++) {
        RankStage* ls = &pp->local[pp->reduce_order[i]];
        shards_all_gather(pp, ls, ls->stage.grads_memory);
    }
    transport_wait_sends(pp->dp);
    trace_add(&pp->trace, "recv", -1, -1, t0, now_seconds());
}

// ZeRO-1: each rank updated its shard; every replica gets the whole stage back
static void pipeline_gather_parameters(Pipeline* pp) {
    double t0 = now_seconds();
    for (int l = 0; l < pp->num_local; l++) { shards_all_gather(pp, &pp->local[l], pp->local[l].stage.params_memory); }
    trace_add(&pp->trace, "recv", -1, -1, t0, now_seconds());
}

// AdamW on every local stage: all of it, or under ZeRO-1 this rank's shard, then the shards all-gathered
static void pipeline_adamw(Pipeline* pp, float lr, float grad_scale) {
    int first = pp->zero ? pp->grid.d : 0, last = pp->zero ? pp->grid.d : pp->grid.D - 1;
    for (int l = 0; l < pp->num_local; l++) {
        RankStage* ls = &pp->local[l];
        for (int k = first; k <= last; k++) {
            OP("adamw", stage_adamw(&ls->stage, shard_pieces(pp, ls, k), ls->num_pieces[k], pp->zero, &pp->opt, lr,
                                    grad_scale, pp->adam_t));
        }
    }
    if (pp->zero) { pipeline_gather_parameters(pp); }
}

// The global grad norm: each rank squares its shard of each norm slot (its whole stage when D = 1), and the
// slots are summed over the job in rank order and added in slot order: the same bits at any P for a fixed D.
static float pipeline_grad_norm(Pipeline* pp) {
    int n = num_norm_slots(&pp->config);
    double* slots = (double*)calloc_check(n, sizeof(double));
    double t0 = op_begin();
    for (int l = 0; l < pp->num_local; l++) {
        const RankStage* ls = &pp->local[l];
        const ShardPiece* pc = shard_pieces(pp, ls, pp->grid.d);
        for (int i = 0; i < ls->num_pieces[pp->grid.d]; i++) {
            if (pc[i].slot < 0) { continue; }
            const float* g = ls->stage.grads_memory + pc[i].offset;
            double sum = 0.0;
            for (size_t j = 0; j < pc[i].count; j++) { sum += (double)g[j] * g[j]; }
            slots[pc[i].slot] = sum;
        }
    }
    op_end("op", "grad_norm", t0);
    t0 = now_seconds();
    transport_allreduce_sum(pp->job, slots, n);
    trace_add(&pp->trace, "recv", -1, -1, t0, now_seconds());
    float norm = norm_from_slots(slots, n);
    free(slots);
    return norm;
}

// the forward and backward of M micro-batches under the training schedule; returns the mean loss
static float pipeline_forward_backward(Pipeline* pp, NextBatchFn next, void* ctx) {
    for (int l = 0; l < pp->num_local; l++) { stage_zero_grads(&pp->local[l].stage); }
    int D = pp->grid.D, M = pp->M;
    load_replica_tokens(pp->tokens, pp->grid.d * M, M, D * M, pp->B, pp->T, next, ctx);
    double t0 = now_seconds();
    double loss = run_schedule(pp, &pp->schedule, pp->B, pp->T, 0);
    pp->schedule_secs = now_seconds() - t0;
    return (float)(transport_sum(pp->job, loss) / ((double)D * M));
}

// One optimizer step over M micro-batches; returns the mean training loss. A non-finite loss or grad norm
// (the same number on every rank: both are all-reduced) skips the update everywhere; -nf such steps in a
// row stop the run, so a diverged run never trains on, or saves, NaN.
static float pipeline_train_step(Pipeline* pp, NextBatchFn next, void* ctx, float lr) {
    float loss = pipeline_forward_backward(pp, next, ctx);
    double t0 = now_seconds();
    activity_set("optimizer", NULL, pp->step + 1);
    pp->trace.stage = -1;
    pipeline_sync_tied_wte(pp);
    pipeline_reduce_gradients(pp);
    float norm = pipeline_grad_norm(pp);
    pp->step++;
    pp->last_norm = norm;
    if (!isfinite(loss) || !isfinite(norm)) {
        pp->nonfinite_in_a_row++;
        if (pp->nonfinite_in_a_row >= pp->max_nonfinite) {
            fatal("step %d: the loss is %g and the gradient norm %g, %d steps in a row (-nf %d): the run has "
                  "diverged; no checkpoint of it is written", pp->step, loss, norm, pp->nonfinite_in_a_row,
                  pp->max_nonfinite);
        }
        if (pp->job->rank == 0) {
            fprintf(stderr, "warning: step %d: the loss is %g and the gradient norm %g; the update is skipped on "
                    "every rank (%d in a row, -nf %d)\n", pp->step, loss, norm, pp->nonfinite_in_a_row, pp->max_nonfinite);
        }
        return loss;
    }
    pp->nonfinite_in_a_row = 0;
    float clip = pp->opt.grad_clip;
    float grad_scale = (clip > 0.0f && norm > clip) ? clip / norm : 1.0f;
    pp->adam_t++;
    pipeline_adamw(pp, lr, grad_scale);
    trace_add(&pp->trace, "optim", -1, -1, t0, now_seconds());
    return loss;
}

// mean loss over `batches` micro-batches of a loader, forward only, at most D*M at a time, M per replica
static float pipeline_eval(Pipeline* pp, DataLoader* dl, int batches) {
    int tracing = pp->trace.on;
    pp->trace.on = 0;
    double sum = 0.0;
    int D = pp->grid.D, M = pp->M;
    for (int done = 0; done < batches; done += D * M) {
        int round = batches - done < D * M ? batches - done : D * M;
        int first = pp->grid.d * M, m = round - first < M ? round - first : M;
        if (m <= 0) {  // this replica has none of the last round: read past it all the same
            load_replica_tokens(pp->tokens, 0, 0, round, pp->B, pp->T, next_batch_from_loader, dl);
            continue;
        }
        Schedule fwd;
        schedule_build_forward_placed(&pp->schedule, m, &fwd);
        load_replica_tokens(pp->tokens, first, m, round, pp->B, pp->T, next_batch_from_loader, dl);
        sum += run_schedule(pp, &fwd, pp->B, pp->T, 1);
        schedule_free(&fwd);
    }
    pp->trace.on = tracing;
    return (float)(transport_sum(pp->job, sum) / batches);
}

// ----------------------------------------------------------------------------
// 5. checkpoints, sampling, the trace

// Copies one of the stage's buffers (params, grads, m or v) of every stage into a whole-model buffer.
typedef enum { BUF_PARAMS, BUF_GRADS, BUF_M, BUF_V } StageBuffer;

static float* stage_buffer(Stage* st, StageBuffer which) {
    switch (which) {
    case BUF_PARAMS: return st->params_memory;
    case BUF_GRADS: return st->grads_memory;
    case BUF_M: return st->m_memory;
    default: return st->v_memory;
    }
}

// The stage's whole buffer: its own, or under ZeRO-1 the moments all-gathered from the data-parallel group's
// shards into `whole` (collective over the group)
static float* stage_whole_buffer(Pipeline* pp, RankStage* ls, StageBuffer which, float* whole) {
    float* mine = stage_buffer(&ls->stage, which);
    if (!pp->zero || which == BUF_PARAMS || which == BUF_GRADS) { return mine; }
    int d = pp->grid.d;
    memcpy(ls->shard_message, mine, ls->shard_floats[d] * sizeof(float));
    shard_copy(pp, ls, d, whole, 0, 0);
    shards_all_gather(pp, ls, whole);
    return whole;
}

// Every stage's slices into `global` on pipeline rank 0 of each replica that gathers (collective: every rank
// calls it; global is unused elsewhere). All replicas hold the same bits, so a checkpoint gathers replica 0.
static void pipeline_gather(Pipeline* pp, StageBuffer which, float* global, int every_replica) {
    activity_set("checkpoint gather", NULL, pp->step);
    int gathers = every_replica || pp->grid.d == 0;
    for (int s = pp->S - 1; s >= 0; s--) {  // stage 0 last: its wte wins (both copies are equal anyway)
        int owner = pp->schedule.stage_rank[s];
        if (owner != pp->rank && pp->rank != 0) { continue; }
        StageLayout lay = pipeline_stage_layout(&pp->config, pp->units, pp->S, s);
        size_t bytes = lay.num_parameters * sizeof(float);
        float* buf = (float*)malloc_check(bytes);
        if (owner == pp->rank) {
            float* whole = stage_whole_buffer(pp, local_stage(pp, s), which, buf);
            if (whole != buf) { memcpy(buf, whole, bytes); }
        }
        if (gathers && owner != pp->rank) { transport_recv(pp->tp, owner, TAG_GATHER, buf, bytes); }
        if (gathers && pp->rank != 0) { transport_send(pp->tp, 0, TAG_GATHER, buf, bytes); }
        if (gathers && pp->rank == 0) { stage_copy_global(&pp->config, &lay, buf, global, 1); }
        free(buf);
    }
    transport_wait_sends(pp->tp);
}

// a whole-model buffer into this rank's stages (the moments' shard only, under ZeRO-1)
static void pipeline_scatter(Pipeline* pp, StageBuffer which, float* global) {
    for (int l = 0; l < pp->num_local; l++) {
        RankStage* ls = &pp->local[l];
        Stage* st = &ls->stage;
        if (!pp->zero || which == BUF_PARAMS || which == BUF_GRADS) {
            stage_copy_global(&pp->config, &st->layout, stage_buffer(st, which), global, 0);
            continue;
        }
        float* whole = (float*)malloc_check(st->layout.num_parameters * sizeof(float));
        stage_copy_global(&pp->config, &st->layout, whole, global, 0);
        const ShardPiece* pc = shard_pieces(pp, ls, pp->grid.d);
        for (int i = 0; i < ls->num_pieces[pp->grid.d]; i++) {
            memcpy(stage_buffer(st, which) + pc[i].packed, whole + pc[i].offset, pc[i].count * sizeof(float));
        }
        free(whole);
    }
}

// Checkpoints (llmc/train_state.h): the whole model and its AdamW moments in checkpoint layout, so a run
// saved at one pipeline depth resumes at any other.
static void gather_for_checkpoint(void* ctx, int which, float* global) {
    pipeline_gather((Pipeline*)ctx, which == 0 ? BUF_PARAMS : which == 1 ? BUF_M : BUF_V, global, 0);
}

static void scatter_from_checkpoint(void* ctx, int which, float* global) {
    pipeline_scatter((Pipeline*)ctx, which == 1 ? BUF_M : BUF_V, global);
}

static void save_checkpoint(Pipeline* pp, const TrainArgs* args, const DataLoader* dl, uint64_t sample_rng) {
    TrainState ts = {.step = pp->step, .adam_t = pp->adam_t, .num_parameters = (int64_t)model_num_parameters(&pp->config),
                     .sample_rng = sample_rng};
    dataloader_state(dl, &ts.shard, &ts.position);
    train_state_set_args(&ts, args);
    activity_set("checkpoint", NULL, pp->step);
    checkpoint_save(args->out_dir, &pp->config, &ts, pp->job->rank == 0, gather_for_checkpoint, pp);
}

// every rank reads the state file and keeps its own slices of the moments; rank 0 says what changed since
static void load_state(Pipeline* pp, const TrainArgs* args, const char* path, DataLoader* dl, uint64_t* sample_rng) {
    TrainState ts = checkpoint_load_state(path, &pp->config, scatter_from_checkpoint, pp);
    train_state_resume_check(&ts, args, path, pp->job->rank == 0 ? stdout : NULL);
    pp->step = ts.step;
    pp->adam_t = ts.adam_t;
    dataloader_seek(dl, (size_t)ts.shard, ts.position);
    *sample_rng = ts.sample_rng;
}

// Generates gen_tokens tokens after an end-of-text token, re-running the forward pass through every stage
// on the growing sequence (no KV cache: this is a reference implementation). The last stage samples; the
// token goes to every rank so stage 0 can embed it next, and so does the sampler's RNG at the end, so any
// rank's checkpoint of it is the same.
static void sample_text(Pipeline* pp, const Tokenizer* tok, int gen_tokens, uint64_t* rng) {
    const GPT2Config* c = &pp->config;
    int* seq = (int*)malloc_check((size_t)(gen_tokens + 1) * sizeof(int));
    seq[0] = tok->eot_token;
    float* probs = (float*)malloc_check((size_t)c->vocab_size * sizeof(float));
    Schedule one;
    schedule_build_forward_placed(&pp->schedule, 1, &one);
    int last = pp->schedule.stage_rank[pp->S - 1];
    int tracing = pp->trace.on;
    pp->trace.on = 0;
    if (pp->rank == 0) { printf("generating:\n---\n"); }
    for (int t = 1; t <= gen_tokens; t++) {
        int n = sample_window(seq, t, pp->T, pp->tokens);
        run_schedule(pp, &one, 1, n, 1);
        int next = 0;
        if (pp->rank == last) {
            const float* logits = local_stage(pp, pp->S - 1)->stage.stash[0].logits + (size_t)(n - 1) * c->padded_vocab_size;
            next = sample_softmax(logits, c->vocab_size, random_f32(rng), probs);
        }
        transport_broadcast(pp->tp, last, &next, sizeof(next));
        seq[t] = next;
        if (pp->rank == 0) { safe_print(tokenizer_decode(tok, next)); fflush(stdout); }
    }
    transport_broadcast(pp->tp, last, rng, sizeof(*rng));
    if (pp->rank == 0) { printf("\n---\n"); }
    pp->trace.on = tracing;
    schedule_free(&one);
    free(seq);
    free(probs);
}

// every rank's events to rank 0, which writes the Chrome/Perfetto trace (llmc/pipeline.h)
static void write_trace(Pipeline* pp, const char* path) {
    Trace* tr = &pp->trace;
    if (pp->rank != 0) {
        transport_send(pp->tp, 0, TAG_GATHER, &tr->len, sizeof(int));
        transport_send(pp->tp, 0, TAG_GATHER, tr->events, tr->len * sizeof(TraceEvent));
        transport_wait_sends(pp->tp);
        return;
    }
    for (int r = 1; r < pp->P; r++) {
        int n;
        transport_recv(pp->tp, r, TAG_GATHER, &n, sizeof(int));
        TraceEvent* events = (TraceEvent*)malloc_check((size_t)(n > 0 ? n : 1) * sizeof(TraceEvent));
        transport_recv(pp->tp, r, TAG_GATHER, events, n * sizeof(TraceEvent));
        for (int i = 0; i < n; i++) {  // as recorded on their rank: times from its own start of the step
            trace_add_cat(tr, "", "", -1, -1, 0.0, 0.0);
            tr->events[tr->len - 1] = events[i];
        }
        free(events);
    }
    trace_write_json(tr->events, tr->len, path);
}

// ----------------------------------------------------------------------------
// 6. one rank's whole run, and main

// The plan of the schedule that runs: every stage's stash slots and the bytes one slot allocates, and the
// bubble the schedule was built for (schedule_simulate_planned), what each step's measured one is set
// against. Rank 0 prints it.
typedef struct {
    int* slots;
    size_t* stash_bytes;
    size_t* work_bytes;  // -rc: the one copy of the rest of the activations each stage recomputes into
    SimResult sim;
} Plan;

static void plan_make(Plan* plan, const Pipeline* pp, const TrainArgs* args) {
    int split = schedule_splits_backward(&pp->schedule);
    plan->slots = (int*)malloc_check(pp->S * sizeof(int));
    plan->stash_bytes = (size_t*)malloc_check(pp->S * sizeof(size_t));
    plan->work_bytes = (size_t*)malloc_check(pp->S * sizeof(size_t));
    for (int s = 0; s < pp->S; s++) {
        StageLayout lay = pipeline_stage_layout(&pp->config, pp->units, pp->S, s);
        plan->slots[s] = schedule_stage_slots(&pp->schedule, s);
        plan->stash_bytes[s] = activations_bytes(&pp->config, &lay, pp->B, pp->T, split, args->recompute ? SLOT_PART : ALL_PARTS);
        plan->work_bytes[s] = args->recompute ? activations_bytes(&pp->config, &lay, pp->B, pp->T, split, WORK_PART) : 0;
    }
    schedule_simulate_planned(&pp->schedule, args->schedule_file ? NULL : args->schedule_name, &plan->sim);
    if (pp->job->rank == 0) {
        print_pipeline_plan(&pp->config, args, &pp->schedule, pp->units, plan->slots, plan->stash_bytes, plan->sim.bubble);
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
    sim_result_free(&plan->sim);
}

// What stage s of the job allocates on its rank, by category, computed from the flags alone (-plan). A run
// prints what it counted as it allocated (stage_init, pipeline_init) in the same form; dev/test compares them.
// Under ZeRO-1 the optimizer's shard is replica 0's (shards differ by at most one float per tensor).
static void stage_memory_plan(const GPT2Config* c, const TrainArgs* args, const Schedule* sc, const int* units, int s,
                              double* bytes) {
    StageLayout lay = pipeline_stage_layout(c, units, sc->S, s);
    int split = schedule_splits_backward(sc), B = args->B, T = args->T, D = args->D;
    size_t n = lay.num_parameters, f = sizeof(float), scratch[8], moments = n, largest = 0;
    ShardPiece* pieces = (ShardPiece*)malloc_check(max_shard_pieces(c) * sizeof(ShardPiece));
    for (int k = 0; k < D && D > 1; k++) {  // ZeRO-1 keeps replica 0's shard; a message holds the largest
        size_t floats;
        stage_shard_pieces(c, &lay, D, k, pieces, &floats);
        if (k == 0 && args->zero) { moments = floats; }
        largest = floats > largest ? floats : largest;
    }
    free(pieces);
    scratch_sizes(c, B, T, scratch);
    int ends_apart = sc->stage_rank[0] != sc->stage_rank[sc->S - 1];
    size_t stash = schedule_stage_slots(sc, s) * activations_bytes(c, &lay, B, T, split, args->recompute ? SLOT_PART : ALL_PARTS);
    bytes[MEM_PARAMETERS] = n * f;
    bytes[MEM_GRADIENTS] = (n + (lay.has_head ? lay.sizes[WTE] : 0)) * f;
    bytes[MEM_OPTIMIZER] = 2 * moments * f;
    bytes[MEM_STASH] = stash + (args->recompute ? activations_bytes(c, &lay, B, T, split, WORK_PART) : 0);
    bytes[MEM_SCRATCH] = 0;
    for (int i = 0; i < 8; i++) { bytes[MEM_SCRATCH] += scratch[i] * f; }
    bytes[MEM_COMMUNICATION] = (largest + schedule_stage_inbox(sc, s) * (size_t)B * T * c->channels +
                                (ends_apart && (s == 0 || s == sc->S - 1) ? tensor_unit_size(c, WTE) : 0)) * f;
}

// Each stage's mean F, B, I and W (ms per micro-batch) in the last training schedule, over the ranks of `tp`
// (collective); B's weight-gradient ops are timed (action_secs' fifth column), so 1F1B's times also give I and W.
static void measured_costs(Pipeline* pp, Transport* tp, StageCosts* cost) {
    int S = pp->S, n = 5 * S;
    double* secs = (double*)malloc_check(2 * n * sizeof(double));
    for (int i = 0; i < n; i++) { secs[i] = pp->action_secs[i]; secs[n + i] = pp->action_count[i]; }
    transport_allreduce_sum(tp, secs, 2 * n);
    stage_costs_measured(secs, secs + n, S, cost);
    free(secs);
}

// The schedule that ran, simulated with this step's measured action times of each stage (replica 0's): what
// the step line sets against the measured step, and what is left when the measured costs are right is
// waiting on messages and noise.
static void simulate_last_step(Pipeline* pp, StepReport* report) {
    StageCosts* cost = (StageCosts*)malloc_check(pp->S * sizeof(StageCosts));
    measured_costs(pp, pp->tp, cost);
    SimResult res;
    if (pp->P > 1 && schedule_simulate_stages(&pp->schedule, cost, 0.0, &res) == 0) {
        report->sim_schedule_wall = res.makespan * 1e-3;
        report->sim_bubble = res.bubble;
    }
    if (pp->P > 1) { sim_result_free(&res); }
    free(cost);
}

// what every stage of replica 0 allocated, printed by rank 0 in -plan's form
static void print_allocated_memory(Pipeline* pp) {
    int S = pp->S;
    double* bytes = (double*)calloc_check((size_t)S * MEM_CATEGORIES, sizeof(double));
    for (int s = 0; s < S; s++) {
        for (int i = 0; i < MEM_CATEGORIES && pp->local_of[s] >= 0; i++) {
            bytes[s * MEM_CATEGORIES + i] = local_stage(pp, s)->stage.allocated[i];
        }
    }
    transport_allreduce_sum(pp->tp, bytes, S * MEM_CATEGORIES);
    for (int s = 0; s < S && pp->job->rank == 0; s++) { print_stage_memory(s, "allocated", bytes + s * MEM_CATEGORIES); }
    free(bytes);
}

// every rank of the job built the schedule and split rank 0 built (llmc/pipeline.h: pipeline_fingerprint)
static void check_same_build(const Pipeline* pp, const TrainArgs* args) {
    uint32_t mine = pipeline_fingerprint(&pp->schedule, pp->units), rank0 = mine;
    transport_broadcast(pp->job, 0, &rank0, sizeof(rank0));
    pipeline_check_fingerprint(mine, rank0, pp->job->rank, args);
}

// -sc auto: 1F1B runs first and times each stage's F and B, and within B its weight-gradient ops, which a
// split backward defers to W (I is the rest); llmc/schedule_auto.h chooses the builder and split (or the
// fastest whose largest rank fits -mem). Parameters and AdamW moments move through a whole-model copy, as a
// checkpoint would, so the run goes on with the same bits: neither the split nor the schedule changes them.
static void pipeline_auto_schedule(Pipeline* pp, const TrainArgs* args) {
    int P = pp->P;
    StageCosts* measured = (StageCosts*)malloc_check(P * sizeof(StageCosts));
    measured_costs(pp, pp->job, measured);  // over every replica: all of them choose alike
    AutoMemory memory = {&pp->config, args, P, stage_memory_plan};
    AutoQuery q = {"1f1b", pp->step, args->layers_arg != NULL, args->max_mib, pipeline_largest_rank_bytes, &memory,
                   pp->job->rank == 0 ? stdout : NULL, pipeline_attention_share(args, &pp->config)};
    AutoChoice choice;
    schedule_auto_choose(measured, pp->units, P, pp->M, pp->config.num_layers, &q, &choice);
    if (choice.moves) {
        size_t N = model_num_parameters(&pp->config);
        StageBuffer which[3] = {BUF_PARAMS, BUF_M, BUF_V};
        float* global[3];
        for (int k = 0; k < 3; k++) {
            global[k] = (float*)malloc_check(N * sizeof(float));
            pipeline_gather(pp, which[k], global[k], 1);
            transport_broadcast(pp->tp, 0, global[k], N * sizeof(float));
        }
        TrainArgs a = *args;
        a.schedule_name = choice.name;
        a.layers_arg = choice.split;
        Pipeline next;
        pipeline_init(&next, &pp->config, &a, pp->tp, pp->dp, pp->job);
        check_same_build(&next, &a);
        next.opt = pp->opt;
        next.step = pp->step;
        next.adam_t = pp->adam_t;
        next.last_norm = pp->last_norm;
        next.nonfinite_in_a_row = pp->nonfinite_in_a_row;
        for (int k = 0; k < 3; k++) {
            pipeline_scatter(&next, which[k], global[k]);
            free(global[k]);
        }
        pipeline_free(pp);
        *pp = next;
        op_trace = &pp->trace;
    }
    free(measured);
}

// -ps 1: the schedule as text (what -sf loads), then its unit-time timeline with the simulated bubble as
// comment lines, so the output loads back as it is
static void print_schedule(const TrainArgs* args, int P) {
    Schedule sc;
    TrainArgs shown = *args;
    if (strcmp(args->schedule_name, "auto") == 0) { shown.schedule_name = "1f1b"; }  // what auto starts with
    pipeline_load_schedule(&sc, &shown, P);
    schedule_fprint(&sc, stdout);
    char* timeline = NULL;
    size_t len = 0;
    FILE* f = open_memstream(&timeline, &len);
    if (f == NULL) { fatal("out of memory printing the schedule"); }
    schedule_print_ascii_timeline(&sc, f);
    fclose(f);
    for (char* line = strtok(timeline, "\n"); line; line = strtok(NULL, "\n")) { printf("# %s\n", line); }
    free(timeline);
    schedule_free(&sc);
    // every builder for this model from the cost model of llmc/partition.h: per micro-batch a stage's forward
    // is a third of its cost, B the other two thirds, I and W half of B each
    int from_file;
    GPT2Config c = pipeline_model_config(args, &from_file);
    int* units = (int*)malloc_check(P * sizeof(int));
    pipeline_split(args, &c, P, units);
    PartitionCosts pc = pipeline_costs(args, &c);
    StageCosts* cost = (StageCosts*)malloc_check(P * sizeof(StageCosts));
    for (int s = 0, first = 0; s < P; first += units[s++]) {
        double f = partition_stage_cost(&pc, P, s, first, units[s]) / 3.0 / 1e9;  // Gflop (memory traffic as flops)
        double again = args->recompute ? f : 0.0;  // -rc reruns the forward before B or I
        cost[s] = (StageCosts){f, 2 * f + again, f + again, f};
    }
    f = open_memstream(&timeline, &len);
    if (f == NULL) { fatal("out of memory printing the schedule"); }
    schedule_compare_print(P, args->M, cost, 0.0, f);
    fclose(f);
    for (char* line = strtok(timeline, "\n"); line; line = strtok(NULL, "\n")) { printf("# %s\n", line); }
    free(timeline);
    free(cost);
    free(units);
}

#define printf0(...) do { if (rank == 0) { printf(__VA_ARGS__); } } while (0)

static void train_rank(const TrainArgs* args, Transport* job) {
    int rank = job->rank, D = args->D, P = job->world / D;
    // One bad input, one error line: rank 0 reads and checks every input first, the others once it is done.
    if (rank != 0) { transport_sum(job, 0.0); }
    Grid grid = grid_of(rank, D, P);
    Transport pipe = transport_group(job, grid.d * P, 1, P), dp = transport_group(job, grid.p, P, D);
    int B = args->B, T = args->T, M = args->M, max_steps = args->max_steps;
    LRSchedule lrs = {lr_schedule_parse(args->lr_schedule_name), args->lr, args->warmup, max_steps, args->final_frac};
    int from_file;
    GPT2Config config = pipeline_model_config(args, &from_file);
    char resume_model[4096], resume_state[4096];
    if (args->out_dir && rank == 0) {
        mkdir_p(args->out_dir);
        checkpoint_clean_tmp(args->out_dir);  // what a killed run left half-written
    }
    if (args->resume) { pipeline_resume_paths(args, &config, resume_model, resume_state, sizeof(resume_model)); }

    int autoschedule = strcmp(args->schedule_name, "auto") == 0;
    TrainArgs first_args = *args;
    if (autoschedule) { first_args.schedule_name = "1f1b"; }
    Pipeline pp;
    pipeline_init(&pp, &config, &first_args, &pipe, &dp, job);
    pp.opt = (OptimizerConfig){args->lr, 0.9f, args->beta2, 1e-8f, args->weight_decay, args->grad_clip};
    const char* src = args->resume ? resume_model : from_file ? args->model_arg : NULL;
    for (int l = 0; l < pp.num_local; l++) {
        Stage* st = &pp.local[l].stage;
        if (src) { model_read_stage(src, &config, &st->layout, st->params_memory); }
        else { stage_random_init(&config, &st->layout, st->params_memory); }
    }

    DataLoader train_loader, val_loader;
    dataloader_init(&train_loader, args->train_pattern, B, T, config.vocab_size);
    dataloader_init(&val_loader, args->val_pattern, B, T, config.vocab_size);
    if (args->shuffle) { dataloader_shuffle(&train_loader); }
    int val_batches = args->val_batches;
    if (val_batches > dataloader_num_batches(&val_loader)) { val_batches = (int)dataloader_num_batches(&val_loader); }
    Tokenizer tokenizer;
    tokenizer_init(&tokenizer, args->tokenizer_path);
    uint64_t sample_rng = 1337;
    if (args->gen_tokens > 0) { tokenizer_check_model(&tokenizer, config.vocab_size); }
    if (args->resume) { load_state(&pp, args, resume_state, &train_loader, &sample_rng); }
    Logger logger;
    logger_init(&logger, rank == 0 ? args->out_dir : NULL, args->resume);
    if (rank == 0) { transport_sum(job, 0.0); }
    check_same_build(&pp, &first_args);
    if (dataloader_num_batches(&train_loader) < (int64_t)D * M) {
        fatal("flags -pm %d -dp %d: a step takes %d micro-batches of -b %d -t %d, the train data %s has only %lld",
              M, D, D * M, B, T, args->train_pattern, (long long)dataloader_num_batches(&train_loader));
    }

    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    if (rank == 0) {
        printf("model: L=%d C=%d NH=%d V=%d (padded %d) maxT=%d, %zu parameters\n", config.num_layers,
               config.channels, config.num_heads, config.vocab_size, config.padded_vocab_size, config.max_seq_len,
               model_num_parameters(&config));
        char replicas[40] = "";
        if (D > 1) { snprintf(replicas, sizeof(replicas), " per replica x D=%d", D); }
        printf("batch: B=%d T=%d M=%d%s -> %d tokens per step; %s, %d threads each\n", B, T, M, replicas, B * T * M * D,
               job->boxes ? "ranks are threads of this process" : "one MPI process per rank", threads);
        grid_print(&grid, stdout);
        if (args->zero) {
            printf("ZeRO-1: each rank keeps the AdamW moments of 1/%d of its stages' parameters\n", D);
        }
        printf("train: %s, %lld micro-batches per epoch; val: %s, using %d micro-batches\n", args->train_pattern,
               (long long)dataloader_num_batches(&train_loader), args->val_pattern, val_batches);
        if (args->resume) { printf("resumed from %s at step %d\n", resume_model, pp.step); }
    }
    Plan plan;
    plan_make(&plan, &pp, &first_args);
    print_allocated_memory(&pp);
    int first_step = pp.step;
    for (int step = pp.step; step <= max_steps; step++) {
        int last = step == max_steps;
        if (val_batches > 0 && args->val_every > 0 && due(args->val_every, step, last)) {  // -v 0: never
            dataloader_reset(&val_loader);
            float val_loss = pipeline_eval(&pp, &val_loader, val_batches);
            printf0("step %4d | val loss %.6f\n", step, val_loss);
            logger_log_val(&logger, step, val_loss);
        }
        int sampling = args->gen_tokens > 0 && grid.d == 0;  // one replica is enough: they all hold the same model
        if (sampling && ((args->sample_every > 0 && step > 0 && step % args->sample_every == 0) || last)) {
            sample_text(&pp, &tokenizer, args->gen_tokens, &sample_rng);
        }
        if (last) { break; }
        pp.trace.on = args->trace_path != NULL && step + 1 == max_steps;
        transport_sum(job, 0.0);  // a common start, so idle time is measured fairly
        double t0 = now_seconds();
        pp.trace.origin = t0;
        float lr = lr_at(&lrs, step);
        float loss = pipeline_train_step(&pp, next_batch_from_loader, &train_loader, lr);
        double secs = now_seconds() - t0;
        trace_add_cat(&pp.trace, "step", "step", -1, -1, t0, t0 + secs);
        StepReport report = {step + 1, max_steps, D * P, M, B * T * M * D, loss, pp.last_norm, lr,  // every rank's
                             transport_sum(job, secs) / (D * P), transport_sum(job, pp.schedule_secs) / (D * P),
                             transport_sum(job, pp.busy), plan.sim.bubble, NULL, 0.0, 0.0};
        simulate_last_step(&pp, &report);
        if (rank == 0) { print_step_line(&report); }
        if (autoschedule && step == auto_calibration_step(first_step, max_steps)) {
            pipeline_auto_schedule(&pp, args);
            first_args.schedule_name = pp.schedule_name;
            plan_free(&plan);
            plan_make(&plan, &pp, &first_args);
        }
        logger_log_train(&logger, step + 1, loss, lr, pp.last_norm);
        if (args->out_dir && due(args->ckpt_every, step + 1, step + 1 == max_steps)) {
            save_checkpoint(&pp, args, &train_loader, sample_rng);
        }
        if (pp.trace.on && grid.d == 0) {  // replica 0's pipeline
            write_trace(&pp, args->trace_path);
            printf0("wrote trace %s (draw it: python3 scripts/plot_pipeline.py %s)\n", args->trace_path, args->trace_path);
        }
    }
    // the stash each stage actually used, counted as slots were taken
    int S = pp.S;
    double* peak = (double*)calloc_check(S, sizeof(double));
    for (int s = 0; s < S; s++) { if (pp.local_of[s] >= 0) { peak[s] = local_stage(&pp, s)->slots.peak; } }
    transport_allreduce_sum(&pipe, peak, S);
    if (rank == 0) { print_peak_stash(S, peak, plan.stash_bytes); }
    free(peak);
    transport_free(&pipe);
    transport_free(&dp);
    plan_free(&plan);
    logger_free(&logger);
    tokenizer_free(&tokenizer);
    dataloader_free(&train_loader);
    dataloader_free(&val_loader);
    pipeline_free(&pp);
}

#ifndef TESTING
static PP_THREAD_LOCAL int this_rank = 0;

// A signal names the rank and what it was doing, unless it is mpirun (our parent) stopping the job after
// another rank failed: that rank has said why already.
static void on_fatal_signal(int sig, siginfo_t* info, void* context) {
    (void)context;
    if (!(sig == SIGTERM && info && info->si_pid == getppid())) {
        char msg[200], what[120];
        int n = snprintf(msg, sizeof(msg), "error: rank %d died on signal %d during %s\n", this_rank, sig,
                         activity_describe(what, sizeof(what)));
        if (write(2, msg, n) < 0) { /* nothing left to do */ }
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

#ifdef USE_MPI
// a rank that fails takes the whole job down at once, instead of leaving its neighbours blocked
static void abort_all_ranks(void) { MPI_Abort(MPI_COMM_WORLD, 1); }
#endif

// Without mpirun every rank is a thread of this process, each with its share of the OpenMP threads.
typedef struct {
    const TrainArgs* args;
    Transport tp;
    int omp_threads;
} RankThread;

static void* rank_thread(void* arg) {
    RankThread* r = (RankThread*)arg;
    this_rank = r->tp.rank;
#ifdef _OPENMP
    omp_set_num_threads(r->omp_threads);
#endif
    train_rank(r->args, &r->tp);
    return NULL;
}

static void run_ranks_as_threads(const TrainArgs* args, int ranks_in_job) {
    fatal_first_only = 1;
    Mailboxes* boxes = mailboxes_new(ranks_in_job);
    RankThread* ranks = (RankThread*)calloc_check(ranks_in_job, sizeof(RankThread));
    pthread_t* threads = (pthread_t*)calloc_check(ranks_in_job, sizeof(pthread_t));
    int omp_threads = 1;
#ifdef _OPENMP
    omp_threads = omp_get_max_threads() / ranks_in_job > 1 ? omp_get_max_threads() / ranks_in_job : 1;
#endif
    for (int r = 0; r < ranks_in_job; r++) {
        ranks[r] = (RankThread){args, transport_job(r, ranks_in_job, args->timeout, boxes), omp_threads};
        if (pthread_create(&threads[r], NULL, rank_thread, &ranks[r]) != 0) { fatal("cannot start the thread of rank %d", r); }
    }
    for (int r = 0; r < ranks_in_job; r++) { pthread_join(threads[r], NULL); }
    for (int r = 0; r < ranks_in_job; r++) { transport_free(&ranks[r].tp); }
    mailboxes_free(boxes, ranks_in_job);
    free(ranks);
    free(threads);
}

int main(int argc, char** argv) {
    int rank = 0, world = 1;
#ifdef USE_MPI
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (world > 1) { fatal_hook = abort_all_ranks; }  // alone, a plain exit says it more quietly
#endif
    this_rank = rank;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_fatal_signal;
    sa.sa_flags = SA_SIGINFO;
    int fatal_signals[4] = {SIGTERM, SIGSEGV, SIGBUS, SIGFPE};
    for (int i = 0; i < 4; i++) { sigaction(fatal_signals[i], &sa, NULL); }
#ifdef USE_BLAS
    openblas_set_num_threads(1);  // see BLAS_BLOCK
#endif
    // a bad flag fails every rank alike: rank 0 says so and takes the job down, the others wait for that
    fatal_first_only = fatal_taken = world > 1 && rank != 0;
    TrainArgs args;
    train_args_default(&args, 0.0f);
    train_args_parse(&args, argc, argv, 0, rank == 0);
    int P = train_args_stages(&args, world);
    fatal_first_only = fatal_taken = 0;
    if (args.print_schedule || args.print_memory) {
        if (rank == 0 && args.print_schedule) { print_schedule(&args, P); }
        if (rank == 0 && args.print_memory) { pipeline_print_memory_plan(&args, P, stage_memory_plan, "fp32"); }
    } else if (world > 1) {
        Transport job = transport_job(rank, world, args.timeout, NULL);
        train_rank(&args, &job);
        transport_free(&job);
    } else {
        run_ranks_as_threads(&args, args.D * P);
    }
#ifdef USE_MPI
    MPI_Finalize();
#endif
    return 0;
}
#endif
