/*
Splitting the L transformer blocks of GPT-2 over P pipeline stages (header-only; C11 and C++).

A split counts half-layer units: unit 2l is block l's attention half, unit 2l+1 its MLP half (llmc/model.h).
Stage s gets the contiguous units first_unit[s] .. first_unit[s] + n_units[s] - 1, so a boundary may fall
between a block's attention and its MLP: whole blocks alone cannot balance stages whose extra work (the LM
head, ~4.5 blocks) is not a whole number of blocks. As text (-pl) a split counts layers, halves as ".5":
"3.5,8.5" is blocks 0-2 and block 3's attention, then block 3's MLP and blocks 4-11.
Stage 0 also holds the encoder (wte, wpe), the last stage the final layernorm and the LM
head (which reuses wte: the trainer keeps a copy there and sums the two gradients).

Cost model, flops per micro-batch of B x T tokens (forward; a matmul's backward computes
d(input) and d(weight), each as expensive as the forward, so forward + backward = 3x):
  block:   24 B T C^2   qkv (2*3C*C) + attn proj (2*C*C) + fc (2*4C*C) + fc proj (2*C*4C): a third of it in
                        the attention half, two thirds in the MLP half
         +  4 B T^2 C   Q K^T and att V over the full T x T (the CPU trainer, as llm.c, computes it all);
                        flash attention (the CUDA trainer) computes the causal half, 2 B T^2 C, and its
                        backward recomputes the scores: 7 B T^2 C forward + backward instead of 12
  LM head:  2 B T C Vp  logits over the padded vocabulary
  encoder:  0           embedding gather / scatter-add
The memory-bound work is counted as the bytes it moves times the machine's balance (its peak flop/s
over its memory bytes/s, PartitionMachine), elements per micro-batch forward + backward, from what the
CUDA trainer's fused kernels read and write (the CPU trainer's unfused ones move somewhat more, which its
balance makes negligible):
  block:   36 B T C     two residual + layernorm passes (8 each), GELU's pre-activation written and read
                        again (8), attention's q, k, v, output and their gradients (12); of it 20 in the
                        attention half, 16 in the MLP half
         +  9 B NH T^2  a materialized attention: the scores and probabilities written and read (4), their
                        gradients (5); flash attention keeps them on chip
  LM head:  3 B T Vp    the logits written, read by the fused softmax/loss, d(logits) written in place
         +  8 B T C     the final layernorm
  encoder:  6 B T C     gather and scatter-add
With no machine (NULL) the model is flops only, materialized attention: what the unit tests pin.
For d12 (C=768, T=1024, Vp=50304) that puts the head at 2*768*50304 / (24*768^2 + 4*1024*768)
= 4.47 blocks, so the last stage should get clearly fewer blocks than the others.

Default split (partition_balance), of whole blocks: among contiguous splits with >= 1 block per stage,
minimize the largest stage cost (that is the pipeline's clock period); among those,
minimize the sum of squared stage costs (balance the remaining stages too); among
those, give the earlier stages fewer blocks (with 1F1B stage 0 keeps the most
micro-batches in flight, and it holds the embeddings).
A stage with 0 blocks and half blocks come only from an explicit list (partition_parse, the trainer's -pl
flag), e.g. "0,6,6,0" puts only the encoder on stage 0, or from -sc auto's search (llmc/schedule_auto.h).
*/
#ifndef LLMC_PARTITION_H
#define LLMC_PARTITION_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double layer;      // one transformer block, forward + backward, per micro-batch
    double attention;  // of it, the attention half (the MLP half is the rest)
    double encoder;    // extra work on stage 0 (embeddings)
    double head;       // extra work on the last stage (lnf + LM head)
} PartitionCosts;

typedef struct {
    double flops_per_byte;  // the machine balance: what moving one byte costs, in flops
    double element_bytes;   // bytes per activation element
    int flash;              // attention tiled on chip (causal half, no T x T in memory), or materialized
} PartitionMachine;

// The CPU trainer: fp32, materialized attention; OpenBLAS sgemm at ~64 Gflop/s per thread against ~20 GB/s of
// DRAM bandwidth per thread (measured on the development machine, 2026-12). Its GELU, softmax and loss are
// bound by their tanh and exp rather than by memory, which no byte count sees: -sc auto measures them.
static const PartitionMachine PARTITION_CPU = {3.2, 4.0, 0};
// The CUDA trainer: bf16 activations, flash attention; H100 SXM's 989 Tflop/s dense bf16 against 3.35 TB/s.
static const PartitionMachine PARTITION_GPU = {295.0, 2.0, 1};

static inline PartitionCosts partition_gpt2_costs(int B, int T, int C, int NH, int Vp, const PartitionMachine* m) {
    double bt = (double)B * T, c = C, per_byte = m ? m->flops_per_byte * m->element_bytes : 0.0;
    int flash = m && m->flash;
    PartitionCosts pc;
    pc.attention = 3.0 * 8.0 * bt * c * c + (flash ? 7.0 : 12.0) * bt * T * c +
                   per_byte * (20.0 * bt * c + (flash ? 0.0 : 9.0 * bt * NH * T));
    pc.layer = pc.attention + 3.0 * 16.0 * bt * c * c + per_byte * 16.0 * bt * c;
    pc.head = 3.0 * 2.0 * bt * c * Vp + per_byte * (3.0 * bt * Vp + 8.0 * bt * c);
    pc.encoder = per_byte * 6.0 * bt * c;
    return pc;
}

// attention halves among the units [first_unit, first_unit + n_units): the even units
static inline int partition_attention_units(int first_unit, int n_units) {
    return (first_unit + n_units + 1) / 2 - (first_unit + 1) / 2;
}

static inline double partition_stage_cost(const PartitionCosts* c, int P, int stage, int first_unit, int n_units) {
    int attn = partition_attention_units(first_unit, n_units);
    return attn * c->attention + (n_units - attn) * (c->layer - c->attention) + (stage == 0 ? c->encoder : 0.0) +
           (stage == P - 1 ? c->head : 0.0);
}

static inline void partition_first_units(const int* n_units, int P, int* first_unit) {
    int acc = 0;
    for (int s = 0; s < P; s++) { first_unit[s] = acc; acc += n_units[s]; }
}

// "3,4,4,1"-style text in layers ("3.5,8.5" with halves) for logs and -pl; returns buf
static inline char* partition_format(const int* n_units, int P, char* buf, size_t cap) {
    size_t len = 0;
    if (cap) buf[0] = 0;
    for (int s = 0; s < P && len < cap; s++) {
        int w = snprintf(buf + len, cap - len, "%s%d%s", s ? "," : "", n_units[s] / 2, n_units[s] % 2 ? ".5" : "");
        if (w < 0) break;
        len += (size_t)w;
    }
    return buf;
}

/*
Default balanced split of L blocks over P stages (see the top of the file), whole blocks.
n_units and first_unit are caller arrays of P ints (half-layer units, so even here). Returns 0, or -1 with
err set (P < 1, L < 1, or P > L: then not every stage can get a block).
*/
static inline int partition_balance(int L, int P, const PartitionCosts* c, int* n_units, int* first_unit,
                                    char* err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    if (P < 1 || L < 1) {
        if (err) snprintf(err, errlen, "bad partition request: L=%d layers over P=%d stages (both must be >= 1)", L, P);
        return -1;
    }
    if (P > L) {
        if (err) snprintf(err, errlen,
                          "P=%d pipeline stages but only L=%d layers: the default split gives every stage at least "
                          "one layer; pass an explicit list (-pl) with zeros to allow empty stages", P, L);
        return -1;
    }
    const double INF = 1e300;
    const double tol = 1e-9;
    int W = L + 1;
    // best[s*W + i]: smallest possible max cost for blocks i..L-1 on stages s..P-1
    double* best = (double*)malloc((size_t)(P + 1) * W * sizeof(double));
    double* ss = (double*)malloc((size_t)(P + 1) * W * sizeof(double));
    for (int i = 0; i <= L; i++) { best[P * W + i] = i == L ? 0 : INF; ss[P * W + i] = i == L ? 0 : INF; }
    for (int s = P - 1; s >= 0; s--) {
        for (int i = 0; i <= L; i++) {
            double b = INF;
            for (int k = 1; i + k <= L; k++) {
                double rest = best[(s + 1) * W + i + k];
                if (rest >= INF) continue;
                double cs = partition_stage_cost(c, P, s, 2 * i, 2 * k);
                double v = cs > rest ? cs : rest;
                if (v < b) b = v;
            }
            best[s * W + i] = b;
        }
    }
    double cmax = best[0] * (1 + tol);
    // ss[s*W + i]: smallest sum of squared stage costs with every stage <= cmax
    for (int s = P - 1; s >= 0; s--) {
        for (int i = 0; i <= L; i++) {
            double b = INF;
            for (int k = 1; i + k <= L; k++) {
                double cs = partition_stage_cost(c, P, s, 2 * i, 2 * k);
                double rest = ss[(s + 1) * W + i + k];
                if (cs > cmax || rest >= INF) continue;
                if (cs * cs + rest < b) b = cs * cs + rest;
            }
            ss[s * W + i] = b;
        }
    }
    // reconstruct, taking the fewest blocks that stay optimal at each stage
    int i = 0;
    for (int s = 0; s < P; s++) {
        int pick = -1;
        for (int k = 1; i + k <= L && pick < 0; k++) {
            double cs = partition_stage_cost(c, P, s, 2 * i, 2 * k);
            double rest = ss[(s + 1) * W + i + k];
            if (cs > cmax || rest >= INF) continue;
            double tot = cs * cs + rest;
            if (tot <= ss[s * W + i] * (1 + tol) + 1e-300) pick = k;
        }
        n_units[s] = 2 * pick;  // always found: ss[s*W+i] is finite on the optimal path
        i += pick;
    }
    partition_first_units(n_units, P, first_unit);
    free(best); free(ss);
    return 0;
}

/*
Parses an explicit split "n0,n1,...,n{P-1}" (the trainer's -pl flag): P non-negative numbers of layers, whole
or with a half (".5"), separated by commas (spaces allowed around them) summing to L, into half-layer units.
Uneven splits and empty stages are fine. Returns 0, or -1 with err naming the problem.
*/
static inline int partition_parse(const char* spec, int L, int P, int* n_units, int* first_unit,
                                  char* err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    if (P < 1 || L < 1) {
        if (err) snprintf(err, errlen, "bad partition request: L=%d layers over P=%d stages (both must be >= 1)", L, P);
        return -1;
    }
    if (!spec || !*spec) {
        if (err) snprintf(err, errlen, "empty layer list: expected P=%d comma-separated layer counts summing to L=%d", P, L);
        return -1;
    }
    int count = 0;
    long sum = 0;  // in units
    const char* p = spec;
    for (;;) {
        const char* e = strchr(p, ',');
        if (!e) e = p + strlen(p);
        const char* a = p;
        const char* b = e;
        while (a < b && (*a == ' ' || *a == '\t')) a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
        int tl = (int)(e - p);
        if (a == b) {
            if (err) snprintf(err, errlen, "layer list '%s': entry %d is empty", spec, count + 1);
            return -1;
        }
        const char* q = a;
        if (*q == '-' || *q == '+') q++;
        long v = 0;
        int digits = 0;
        while (q < b && *q >= '0' && *q <= '9' && v < 100000000) { v = v * 10 + (*q - '0'); q++; digits++; }
        v *= 2;
        if (q + 2 == b && q[0] == '.' && q[1] == '5') { v++; q += 2; }  // a half: one unit more
        else if (q + 2 == b && q[0] == '.' && q[1] == '0') { q += 2; }
        if (q != b || digits == 0) {
            if (err) snprintf(err, errlen, "layer list '%s': entry %d '%.*s' is not a number of layers (whole, or with "
                              "a half: 3 or 3.5)", spec, count + 1, tl, p);
            return -1;
        }
        if (*a == '-' && v != 0) {
            if (err) snprintf(err, errlen, "layer list '%s': entry %d '%.*s' is negative", spec, count + 1, tl, p);
            return -1;
        }
        if (count < P) n_units[count] = (int)v;
        count++;
        sum += v;
        if (!*e) break;
        p = e + 1;
    }
    if (count != P) {
        if (err) snprintf(err, errlen, "layer list '%s' has %d entries but there are P=%d pipeline stages", spec, count, P);
        return -1;
    }
    if (sum != 2L * L) {
        if (err) snprintf(err, errlen, "layer list '%s' sums to %ld%s layers but the model has L=%d", spec, sum / 2,
                          sum % 2 ? ".5" : "", L);
        return -1;
    }
    partition_first_units(n_units, P, first_unit);
    return 0;
}

#endif // LLMC_PARTITION_H
