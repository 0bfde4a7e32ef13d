/*
The command line of both trainers (train_gpt2_pp_cpu and train_gpt2_pp): one table of flags, llm.c's letters
where the concept is the same, checked strictly (a bad value or an unknown flag is one "error:" line).
*/
#ifndef LLMC_TRAIN_ARGS_H
#define LLMC_TRAIN_ARGS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "utils.h"

// Upper bounds on the size flags: far beyond any real run, low enough that no product of them overflows
// (B*T*M tokens per step fit an int) and that a typo fails here naming the flag, not as a failed malloc.
#define TRAIN_MAX_STEPS 99999999   // checkpoint names have 8 digits
#define TRAIN_MAX_B 65536
#define TRAIN_MAX_T (1 << 20)
#define TRAIN_MAX_M 65536
#define TRAIN_MAX_TOKENS_PER_STEP (1 << 30)
#define TRAIN_MAX_P 1024
#define TRAIN_MAX_GEN_TOKENS (1 << 20)
#define TRAIN_MAX_PATH 1024        // -o: checkpoint and log names are built from it

typedef struct {
    const char* train_pattern;   // -i
    const char* val_pattern;     // -j
    const char* tokenizer_path;  // -tk
    const char* model_arg;       // -e
    const char* out_dir;         // -o
    const char* schedule_name;   // -sc
    const char* schedule_file;   // -sf: a schedule in text form instead of a builder
    const char* layers_arg;      // -pl
    const char* trace_path;      // -tr
    const char* rendezvous_dir;  // -pf (CUDA trainer)
    const char* lr_schedule_name;// -k
    int B, T, M, P;              // -b -t -pm -pp (P = 0: the number of ranks / D)
    int D, zero;                 // -dp: data-parallel replicas of the pipeline; -z 1: ZeRO-1 (optimizer sharded over them)
    int max_steps, warmup;       // -x -u
    int val_every, val_batches;  // -v -m
    int sample_every, gen_tokens;// -s -g
    int ckpt_every, resume;      // -n -y
    int print_schedule;          // -ps
    int print_memory;            // -plan: each stage's memory by category, without allocating
    int max_mib;                 // -mem: -sc auto picks the fastest schedule whose largest rank fits (MiB)
    int max_nonfinite;           // -nf: consecutive steps with a non-finite loss or grad norm skipped, then stop
    int shuffle;                 // -sh: llm.c's shuffled order of shards and micro-batches
    int recompute;               // -rc: 0 never, 1 except_last, 2 always (activation recomputation)
    float beta2;                 // -b2: AdamW's second-moment decay
    float lr, final_frac, weight_decay, grad_clip;  // -l -q -c -cl
    float loss_scale;            // -ls (CUDA trainer): initial loss scale, 0 = no scaler
    int scale_interval;          // -li (CUDA trainer)
    int gelu_fusion;             // -ge (CUDA trainer): GELU in cuBLASLt's epilogues
    int one_device;              // -1g (CUDA trainer): every stage on one GPU
    float timeout;               // -to: seconds a rank waits for a peer before the job stops
    int quiet;                   // tests: no per-step lines
    float* losses_out;           // tests: receives the train loss of every step
} TrainArgs;

static void train_args_default(TrainArgs* a, float default_loss_scale) {
    memset(a, 0, sizeof(*a));
    a->train_pattern = "data/kjv/kjv_train.bin";
    a->val_pattern = "data/kjv/kjv_val.bin";
    a->tokenizer_path = "data/gpt2_tokenizer.bin";
    a->model_arg = "d4";
    a->schedule_name = "1f1b";
    a->lr_schedule_name = "cosine";
    a->B = 8; a->T = 64; a->M = 1; a->D = 1;
    a->max_steps = 40; a->val_every = 10; a->val_batches = 20; a->gen_tokens = 64;
    a->lr = 1e-3f; a->final_frac = 0.1f; a->grad_clip = 1.0f;
    a->loss_scale = default_loss_scale;
    a->scale_interval = 2000;
    a->gelu_fusion = 1;
    a->beta2 = 0.95f;
    a->timeout = 300.0f;
    a->max_nonfinite = 3;
}

static void train_args_usage(int cuda) {
    fprintf(stderr,
        "Usage: %s\n"
        "Trains GPT-2 split into pipeline stages. Options (defaults in brackets):\n"
        "  -i <pattern> train data, llm.c token shards (glob) [data/kjv/kjv_train.bin]\n"
        "  -j <pattern> val data [data/kjv/kjv_val.bin]\n"
        "  -tk <file>   tokenizer for samples [data/gpt2_tokenizer.bin]\n"
        "  -e <model>   llm.c checkpoint (.bin, fp32), or a fresh model dN (N layers, 64N channels) or dN:cC:hH [d4]\n"
        "  -o <dir>     output directory for main.log and checkpoints [none]\n"
        "  -b <int>     micro-batch size B [8]\n"
        "  -t <int>     sequence length T, at most the model's maxT [64]\n"
        "  -pm <int>    micro-batches per step M (gradient accumulation) [1]\n"
        "  -pp <int>    pipeline stages P [the number of ranks / D]\n"
        "%s"
        "  -sc <name>   schedule: gpipe | 1f1b | interleaved[:v] | zbh1 | zbh2 | zbv | zbc[:F/I/W,...] |\n"
        "               zbcv[:F/I/W,...] (cost-aware, each stage's costs) | auto (measured, see -mem) [1f1b]\n"
        "  -sf <file>   the schedule from a file in text form (PyTorch's action grammar; -ps 1 writes it) [none]\n"
        "  -pl <list>   layers per stage, e.g. 3,3,3,3; halves split a layer between its attention and MLP, e.g.\n"
        "               3.5,8.5 [whole layers balanced by estimated compute]\n"
        "  -ps <0|1>    print the schedule (one row per rank) and its simulated timeline, then exit [0]\n"
        "  -plan <0|1>  print each stage's memory by category (parameters, gradients, ...) without allocating, then exit [0]\n"
        "  -mem <MiB>   with -sc auto: the fastest schedule whose largest rank needs at most this much (-plan) [any]\n"
        "  -x <int>     optimizer steps to run in total [40]\n"
        "  -l <float>   peak learning rate [1e-3]\n"
        "  -k <name>    learning-rate schedule: constant | cosine | noam [cosine]\n"
        "  -u <int>     warmup steps [0]\n"
        "  -q <float>   final learning rate as a fraction of the peak (cosine) [0.1]\n"
        "  -c <float>   weight decay (2-D weights only) [0.0]\n"
        "  -cl <float>  clip the global gradient norm to this; 0 disables [1.0]\n"
        "  -b2 <float>  AdamW beta2 [0.95, GPT-3's and llm.c's GPU trainer's; llm.c's CPU trainer uses 0.999]\n"
        "  -rc <mode>   activation recomputation: never | except_last | always (stash only each stage's input) [never]\n"
        "  -sh <0|1>    shuffle the training data as llm.c does: shards, then each shard's micro-batches [0]\n"
        "  -nf <int>    steps in a row with a non-finite loss or gradient norm that are skipped before the run stops [3]\n"
        "  -v <int>     validation loss every N steps and at the end; 0: never [10]\n"
        "  -m <int>     validation micro-batches [20]\n"
        "  -s <int>     sample text every N steps, 0: only at the end [0]\n"
        "  -g <int>     tokens to sample [64]\n"
        "  -n <int>     checkpoint every N steps (needs -o), 0: only at the end [0]\n"
        "  -y <0|1>     resume from the newest checkpoint in -o [0]\n"
        "  -tr <file>   write a Chrome/Perfetto trace of the last training step [none]\n"
        "  -to <float>  seconds a rank waits for a message before stopping the job, naming the peer [300]\n"
        "%s"
        "  -h           this help\n",
        cuda ? "mpirun -np P ./train_gpt2_pp [options]  (one GPU per rank and stage)\n"
               "       ./train_gpt2_pp -pp P [options]           (one process, one thread per GPU)\n"
               "       srun -n P ./train_gpt2_pp -pf <dir> [options]  (Slurm without MPI)"
             : "./train_gpt2_pp_cpu [options]                 (one process, every rank a thread)"
#ifdef USE_MPI
               "\n       mpirun -np P ./train_gpt2_pp_cpu [options]  (one MPI process per rank)"
#endif
               ,
        "  -dp <int>    data-parallel replicas D of the pipeline: D*P ranks, D*M micro-batches per step [1]\n"
        "  -z <0|1>     ZeRO-1: each replica keeps 1/D of the AdamW moments, parameters all-gathered [0]\n",
        cuda ? "  -ls <float>  initial loss scale, 0: none [65536 in FP16, 0 otherwise]\n"
               "  -li <int>    clean steps before the loss scale doubles [2000]\n"
               "  -pf <dir>    NCCL rendezvous through a shared directory (SLURM_PROCID/SLURM_NTASKS)\n"
               "  -ge <0|1>    GELU fused into the fc GEMM (cuBLASLt GELU_AUX/DGELU epilogues) or separate kernels\n"
               "               [0 in FP32: the epilogue's tanh approximation is unmeasured against FP32's tolerances; 1 in BF16/FP16]\n"
               "  -1g <0|1>    every stage on one GPU, device copies as the messages (chosen by itself with fewer GPUs than stages) [0]\n"
             : "");
}

// an int flag's value, which must lie in lo..hi
static int int_flag_in(const char* flag, const char* v, int lo, int hi, const char* what) {
    int x = parse_int_flag(flag, v);
    if (x < lo || x > hi) { fatal("flag %s (%s) must be in %d..%d, got %d", flag, what, lo, hi, x); }
    return x;
}

// a float flag's value, which must lie in lo..hi (lo excluded when open_lo)
static float float_flag_in(const char* flag, const char* v, float lo, int open_lo, float hi, const char* what) {
    float x = parse_float_flag(flag, v);
    if (x < lo || (open_lo && x == lo) || x > hi) {
        fatal("flag %s (%s) expects a number in %s%g, %g], got %s", flag, what, open_lo ? "(" : "[", lo, hi, v);
    }
    return x;
}

// Parses and checks the flags; -h prints the usage and exits 0. `cuda` selects the trainer's own flags.
static void train_args_parse(TrainArgs* a, int argc, char** argv, int cuda, int print_help) {
    const int S = TRAIN_MAX_STEPS;
    for (int i = 1; i < argc; i++) {
        const char* f = argv[i];
        if (strcmp(f, "-h") == 0) {
            if (print_help) { train_args_usage(cuda); }
            exit(0);
        }
        if (f[0] != '-' || i + 1 >= argc) { fatal("%s: expected a flag followed by a value (see -h)", f); }
        const char* v = argv[++i];
        int cuda_only = strcmp(f, "-ls") == 0 || strcmp(f, "-li") == 0 || strcmp(f, "-pf") == 0 || strcmp(f, "-ge") == 0 ||
                        strcmp(f, "-1g") == 0;
        if (!cuda && cuda_only) { fatal("flag %s belongs to the CUDA trainer (see -h)", f); }
        if (v[0] == '\0') { fatal("flag %s expects a value, got an empty string", f); }
        if (strcmp(f, "-i") == 0) { a->train_pattern = v; }
        else if (strcmp(f, "-j") == 0) { a->val_pattern = v; }
        else if (strcmp(f, "-tk") == 0) { a->tokenizer_path = v; }
        else if (strcmp(f, "-e") == 0) { a->model_arg = v; }
        else if (strcmp(f, "-o") == 0) { a->out_dir = v; }
        else if (strcmp(f, "-b") == 0) { a->B = int_flag_in(f, v, 1, TRAIN_MAX_B, "micro-batch size"); }
        else if (strcmp(f, "-t") == 0) { a->T = int_flag_in(f, v, 1, TRAIN_MAX_T, "sequence length"); }
        else if (strcmp(f, "-pm") == 0) { a->M = int_flag_in(f, v, 1, TRAIN_MAX_M, "micro-batches per step"); }
        else if (strcmp(f, "-pp") == 0) { a->P = int_flag_in(f, v, 1, TRAIN_MAX_P, "pipeline stages"); }
        else if (strcmp(f, "-dp") == 0) { a->D = int_flag_in(f, v, 1, TRAIN_MAX_P, "data-parallel replicas"); }
        else if (strcmp(f, "-z") == 0) { a->zero = int_flag_in(f, v, 0, 1, "ZeRO-1"); }
        else if (strcmp(f, "-sc") == 0) { a->schedule_name = v; }
        else if (strcmp(f, "-sf") == 0) { a->schedule_file = v; }
        else if (strcmp(f, "-pl") == 0) { a->layers_arg = v; }
        else if (strcmp(f, "-ps") == 0) { a->print_schedule = int_flag_in(f, v, 0, 1, "print the schedule"); }
        else if (strcmp(f, "-plan") == 0) { a->print_memory = int_flag_in(f, v, 0, 1, "print the memory plan"); }
        else if (strcmp(f, "-mem") == 0) { a->max_mib = int_flag_in(f, v, 1, 1 << 30, "memory per rank in MiB"); }
        else if (strcmp(f, "-to") == 0) { a->timeout = float_flag_in(f, v, 0.0f, 1, 86400.0f, "peer timeout in seconds"); }
        else if (strcmp(f, "-nf") == 0) { a->max_nonfinite = int_flag_in(f, v, 1, 1000, "non-finite steps skipped in a row"); }
        else if (strcmp(f, "-tr") == 0) { a->trace_path = v; }
        else if (strcmp(f, "-pf") == 0) { a->rendezvous_dir = v; }
        else if (strcmp(f, "-x") == 0) { a->max_steps = int_flag_in(f, v, 0, S, "steps"); }
        else if (strcmp(f, "-l") == 0) { a->lr = float_flag_in(f, v, 0.0f, 1, 1.0f, "learning rate"); }
        else if (strcmp(f, "-k") == 0) { a->lr_schedule_name = v; }
        else if (strcmp(f, "-u") == 0) { a->warmup = int_flag_in(f, v, 0, S, "warmup steps"); }
        else if (strcmp(f, "-q") == 0) { a->final_frac = float_flag_in(f, v, 0.0f, 0, 1.0f, "final learning-rate fraction"); }
        else if (strcmp(f, "-b2") == 0) { a->beta2 = float_flag_in(f, v, 0.0f, 0, 0.99999f, "AdamW beta2"); }
        else if (strcmp(f, "-rc") == 0) {
            a->recompute = strcmp(v, "never") == 0 ? 0 : strcmp(v, "except_last") == 0 ? 1 : strcmp(v, "always") == 0 ? 2 : -1;
            if (a->recompute < 0) { fatal("flag -rc expects never, except_last or always, got '%s'", v); }
        }
        else if (strcmp(f, "-sh") == 0) { a->shuffle = int_flag_in(f, v, 0, 1, "shuffle"); }
        else if (strcmp(f, "-c") == 0) { a->weight_decay = float_flag_in(f, v, 0.0f, 0, 10.0f, "weight decay"); }
        else if (strcmp(f, "-cl") == 0) { a->grad_clip = float_flag_in(f, v, 0.0f, 0, 1e30f, "gradient clip, 0: off"); }
        else if (strcmp(f, "-v") == 0) { a->val_every = int_flag_in(f, v, 0, S, "validation every N steps"); }
        else if (strcmp(f, "-m") == 0) { a->val_batches = int_flag_in(f, v, 0, 1 << 30, "validation micro-batches"); }
        else if (strcmp(f, "-s") == 0) { a->sample_every = int_flag_in(f, v, 0, S, "sample every N steps"); }
        else if (strcmp(f, "-g") == 0) { a->gen_tokens = int_flag_in(f, v, 0, TRAIN_MAX_GEN_TOKENS, "tokens to sample"); }
        else if (strcmp(f, "-n") == 0) { a->ckpt_every = int_flag_in(f, v, 0, S, "checkpoint every N steps"); }
        else if (strcmp(f, "-y") == 0) { a->resume = int_flag_in(f, v, 0, 1, "resume"); }
        else if (strcmp(f, "-ls") == 0) { a->loss_scale = float_flag_in(f, v, 0.0f, 0, 1e30f, "loss scale, 0: none"); }
        else if (strcmp(f, "-li") == 0) { a->scale_interval = int_flag_in(f, v, 1, 1 << 30, "loss-scale interval"); }
        else if (strcmp(f, "-ge") == 0) { a->gelu_fusion = int_flag_in(f, v, 0, 1, "GELU fusion"); }
        else if (strcmp(f, "-1g") == 0) { a->one_device = int_flag_in(f, v, 0, 1, "every stage on one GPU"); }
        else { fatal("unknown flag %s (see -h)", f); }
    }
    if ((int64_t)a->B * a->T > TRAIN_MAX_B * 256) {
        fatal("flags -b %d -t %d: %lld tokens per micro-batch, more than %d", a->B, a->T, (long long)a->B * a->T,
              TRAIN_MAX_B * 256);
    }
    if ((int64_t)a->B * a->T * a->M * a->D > TRAIN_MAX_TOKENS_PER_STEP) {
        fatal("flags -b %d -t %d -pm %d -dp %d: %lld tokens per step, more than %d", a->B, a->T, a->M, a->D,
              (long long)a->B * a->T * a->M * a->D, TRAIN_MAX_TOKENS_PER_STEP);
    }
    if (a->out_dir != NULL && strlen(a->out_dir) > TRAIN_MAX_PATH) {
        fatal("flag -o: the directory name has %zu characters, more than %d", strlen(a->out_dir), TRAIN_MAX_PATH);
    }
    if (a->resume && a->out_dir == NULL) { fatal("flag -y 1 needs -o <dir> to find the checkpoint in"); }
    if (a->zero && a->D == 1) {
        fatal("flag -z 1 with -dp 1 is a no-op: ZeRO-1 shards the optimizer over data-parallel replicas (-dp 2 or more)");
    }
    if (a->ckpt_every > 0 && a->out_dir == NULL) { fatal("flag -n needs -o <dir> to write checkpoints to"); }
}

// -pp against the number of ranks this launch has: D*P of them (in-process: 1, the ranks become threads)
static int train_args_stages(const TrainArgs* a, int world) {
    if (world > 1 && world % a->D != 0) {
        fatal("flag -dp %d does not divide the %d ranks: run D*P ranks (mpirun -np D*P)", a->D, world);
    }
    int P = a->P > 0 ? a->P : world > 1 ? world / a->D : 1;
    if ((int64_t)a->D * P > TRAIN_MAX_P) { fatal("flags -dp %d -pp %d: more than %d ranks", a->D, P, TRAIN_MAX_P); }
    if (world > 1 && a->D * P != world) {
        if (a->D == 1) { fatal("flag -pp %d does not match the %d ranks: run one rank per stage (mpirun -np %d)", P, world, P); }
        fatal("flags -dp %d -pp %d need %d ranks (D*P), this launch has %d", a->D, P, a->D * P, world);
    }
    return P;
}

#endif
