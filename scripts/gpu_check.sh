#!/bin/bash
# One verdict on a GPU machine in at most 10 minutes: every step of the GPU suite under `timeout`, then a
# PASS/FAIL table; the exit status is non-zero when any step failed. Runs the prebuilt bundle (make gpu_bundle
# on any machine with nvcc: build/gpu_bundle/, which holds a copy of this script), so it compiles nothing and
# needs no Python.
#   bash build/gpu_bundle/gpu_check.sh          (or scripts/gpu_check.sh, which finds build/gpu_bundle)
#   bash scripts/gpu_check.sh --plan            the steps and their time budgets; needs no GPU
#   GPU_CHECK_STEPS=kernels_BF16,gpu_vs_cpu bash scripts/gpu_check.sh    a subset, for a rerun
#   (GPU_CHECK_TIME_SCALE multiplies the budgets: dev/test/test_gpu_check.sh runs the script on SIMT builds)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
if [ -d "$HERE/bin" ]; then BUNDLE=$HERE; else BUNDLE=$HERE/../build/gpu_bundle; fi

# name | budget in seconds | what it checks
STEPS="preflight|10|driver, CUDA, cuBLASLt, NCCL versions and the GPU list, through their APIs
kernels_FP32|20|every dev/cuda kernel test, FP32
kernels_BF16|20|every dev/cuda kernel test, BF16
kernels_FP16|20|every dev/cuda kernel test, FP16
test_gpt2_pp_FP32|15|vs NumPy at P = 1, 2, 4 on one GPU, both references; bitwise across P and schedules
test_gpt2_pp_BF16|15|the same in BF16
test_gpt2_pp_FP16|15|the same in FP16, with the loss scaler's overflow path
gpu_vs_cpu|35|GPU FP32 vs the CPU trainer, 20 steps: every loss within 1e-4 relative
checkpoints_across_P|20|FP32 checkpoints byte-identical at P = 1, 2, 4 x gpipe, 1f1b, half-layer splits (+ BF16, -rc)
determinism_resume|20|BF16 run twice: identical checkpoints; 2 steps + resume to 4 = 4 straight, byte for byte
sanitizer_memcheck|30|compute-sanitizer memcheck on the BF16 kernel tests (skipped without the tool)
sanitizer_synccheck|30|compute-sanitizer synccheck on the BF16 kernel tests
sanitizer_racecheck|135|compute-sanitizer racecheck on the BF16 kernel tests: no shared-memory hazard in our kernels
sanitizer_initcheck|45|compute-sanitizer initcheck on the BF16 kernel tests: no kernel reads memory never written
sanitizer_trainer|25|compute-sanitizer memcheck on 2-step BF16 trainer runs on one GPU: 2 stages; ZB-V at a half-layer split
throughput_P1|25|d12, B=8 T=1024 M=8, BF16, P=1: ms/step, tokens/s, MFU, peak memory
throughput_P2|25|the same at P=2 on one GPU
footprint_1p5B|60|GPT-2 1.5B (d48), 1F1B, P=4 stages on one GPU: allocated once, one step runs
multi_gpu|30|with 2+ GPUs: 2 stages on 2 GPUs through NCCL, FP32 losses bitwise equal to one GPU"

if [ "${1:-}" = "--plan" ]; then
    echo "$STEPS" | awk -F'|' '{ printf "%-22s %4d s  %s\n", $1, $2, $3; t += $2 } END { printf "%-22s %4d s  (at most 600)\n", "total", t }'
    exit 0
fi
command -v nvidia-smi > /dev/null && nvidia-smi -L 2> /dev/null | grep -q '^GPU' || {
    echo "error: no NVIDIA GPU here (nvidia-smi lists none): run this on a GPU machine; --plan lists the steps"; exit 2; }
[ -x "$BUNDLE/bin/gpu_preflight" ] || { echo "error: no bundle in $BUNDLE: run 'make gpu_bundle' (needs nvcc, no GPU) first"; exit 2; }
cd "$BUNDLE"
GPUS=$(nvidia-smi -L | grep -c '^GPU')
LOG=$(mktemp -d /tmp/gpu_check.XXXXXX)
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2> /dev/null || true)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
TINY="-e d4:c64:h4 -b 4 -t 64 -pm 4 -v 0 -g 0 -l 3e-3"
THROUGHPUT_RUN=${THROUGHPUT_RUN:--e d12 -b 8 -t 1024 -pm 8 -x 6}  # dev/test/test_gpu_check.sh runs a small one
losses() { sed -n 's/.*train loss \([0-9.]*\).*/\1/p' "$1"; }
results=""; failures=0

budget() { echo "$STEPS" | awk -F'|' -v s="$1" -v k="${GPU_CHECK_TIME_SCALE:-1}" '$1 == s { print $2 * k }'; }
ONLY=${GPU_CHECK_STEPS:-}  # a comma-separated subset of the steps, for a rerun
# run_step NAME COMMAND...: the command (a function below, exported, or a binary) under NAME's time budget;
# exit status 77 means skipped
run_step() {
    local name=$1 t0=$SECONDS rc verdict; shift
    [ -z "$ONLY" ] || [[ ",$ONLY," == *",$name,"* ]] || return 0
    echo "== $name"
    timeout "$(budget "$name")" bash -c '"$@"' run_step "$@" > "$LOG/$name.txt" 2>&1; rc=$?
    case $rc in 0) verdict=PASS ;; 124) verdict=TIMEOUT ;; 77) verdict=SKIP ;; *) verdict=FAIL ;; esac
    [ $verdict = PASS ] || [ $verdict = SKIP ] || { failures=$((failures + 1)); tail -n 15 "$LOG/$name.txt"; }
    grep -E '^(RESULT|GPU |CUDA )' "$LOG/$name.txt"
    results="$results$(printf '%-22s %-7s %4d s / %3s s' "$name" "$verdict" $((SECONDS - t0)) "$(budget "$name")")\n"
}

kernels() { local f=0; for t in bin/$1/kernels/*; do $2 "$t" || { echo "FAILED: $t"; f=1; }; done; return $f; }
# each benchmark's kernel once at GPT-2 size, not timed 20 times: instrumented runs are slow
sanitize() { [ -n "$SAN" ] || return 77; KERNEL_BENCH=once kernels BF16 "$SAN --tool $1 --error-exitcode 1"; }
# racecheck: on an H200 it reported shared-memory hazards inside cuBLASLt's own sm90 kernels (nvjet_*, which
# synchronise through mbarriers it does not model) and none in ours; the verdict is the hazards in our kernels
racecheck() {
    [ -n "$SAN" ] || return 77
    KERNEL_BENCH=once kernels BF16 "$SAN --tool racecheck --print-limit 0" > "$LOG/racecheck_raw.txt" 2>&1; local rc=$?
    local ours; ours=$(grep 'Race reported between' "$LOG/racecheck_raw.txt" | grep -vc ' at nvjet_')
    grep -A2 'Race reported between' "$LOG/racecheck_raw.txt" | grep -v nvjet_ | head -n 40
    echo "RESULT racecheck: $ours hazards in our kernels, $(grep 'Race reported between' "$LOG/racecheck_raw.txt" | grep -c ' at nvjet_') in cuBLASLt's"
    [ $rc -eq 0 ] && [ "$ours" -eq 0 ]
}
# initcheck: on an H200 it reported every cudaMemcpy of a cuBLASLt output as a read of uninitialised memory,
# although each element held the validated product (it does not see cuBLASLt's stores, Hopper's bulk copies
# presumably): 9376 such reports in matmul_forward and matmul_backward, of which the default --print-limit (100
# a process) printed 200, so a kernel's report could have gone unprinted. Every report is printed (--print-limit 0),
# and the verdict is the kernel tests' own, no "Uninitialized __global__ memory read" in a kernel, and every error
# that the tool counts (its ERROR SUMMARY lines) one of the cudaMemcpy reads
initcheck() {
    [ -n "$SAN" ] || return 77
    local raw=$LOG/initcheck_raw.txt
    KERNEL_BENCH=once kernels BF16 "$SAN --tool initcheck --print-limit 0" > "$raw" 2>&1; local rc=$?
    grep -A3 'Uninitialized __global__' "$raw" | head -n 40
    local kern memcpy total
    kern=$(grep -c 'Uninitialized __global__' "$raw")
    memcpy=$(grep -c 'on access by cudaMemcpy source' "$raw")
    total=$(awk '/ERROR SUMMARY: [0-9]+ error/ && !/not printed/ { s += $4 } END { print s + 0 }' "$raw")
    grep 'not printed' "$raw" | head -n 3
    echo "RESULT initcheck: $kern uninitialised reads in kernels, $memcpy reported cudaMemcpy reads (cuBLASLt outputs)," \
         "$total errors counted by the tool"
    [ $rc -eq 0 ] && [ "$kern" -eq 0 ] && [ "$total" -eq "$memcpy" ] && ! grep -q 'not printed' "$raw"
}
sanitize_trainer() {
    [ -n "$SAN" ] || return 77
    "$SAN" --tool memcheck --error-exitcode 1 bin/BF16/train_gpt2_pp $TINY -x 2 -pp 2 &&
        "$SAN" --tool memcheck --error-exitcode 1 bin/BF16/train_gpt2_pp $TINY -x 2 -pp 2 -sc zbv -pl 0.5,1.5,1.5,0.5
}
test_pp() { bin/$1/test_gpt2_pp ref_a.bin && bin/$1/test_gpt2_pp ref_b.bin; }
checkpoints() {
    for P in 1 2 4; do for S in gpipe 1f1b; do
        bin/FP32/train_gpt2_pp $TINY -x 2 -pp $P -sc $S -o "$LOG/ck_${P}_$S" > /dev/null || return 1
        for f in model_00000002.bin state_00000002.bin; do
            cmp "$LOG/ck_1_gpipe/$f" "$LOG/ck_${P}_$S/$f" || { echo "P=$P $S: $f differs from P=1 gpipe"; return 1; }
        done
    done; done
    # stage boundaries inside a layer (-pl halves): a fused backward, and I/W over four stages in a V; BF16 too
    bin/FP32/train_gpt2_pp $TINY -x 2 -pp 2 -sc 1f1b -pl 1.5,2.5 -o "$LOG/ck_half_1f1b" > /dev/null || return 1
    bin/FP32/train_gpt2_pp $TINY -x 2 -pp 2 -sc zbv -pl 0.5,1.5,1.5,0.5 -o "$LOG/ck_half_zbv" > /dev/null || return 1
    bin/BF16/train_gpt2_pp $TINY -x 2 -pp 1 -o "$LOG/ck_bf16" > /dev/null || return 1
    bin/BF16/train_gpt2_pp $TINY -x 2 -pp 2 -sc zbv -pl 0.5,1.5,1.5,0.5 -o "$LOG/ck_bf16_half" > /dev/null || return 1
    # activation recomputation: the forward rerun into the shared work copy before each backward
    bin/BF16/train_gpt2_pp $TINY -x 2 -pp 2 -sc zbv -pl 0.5,1.5,1.5,0.5 -rc always -o "$LOG/ck_bf16_rc" > /dev/null || return 1
    for f in model_00000002.bin state_00000002.bin; do
        for d in ck_half_1f1b ck_half_zbv; do
            cmp "$LOG/ck_1_gpipe/$f" "$LOG/$d/$f" || { echo "$d: $f differs from P=1 gpipe"; return 1; }
        done
        cmp "$LOG/ck_bf16/$f" "$LOG/ck_bf16_half/$f" || { echo "BF16 zbv -pl 0.5,1.5,1.5,0.5: $f differs from P=1"; return 1; }
        cmp "$LOG/ck_bf16/$f" "$LOG/ck_bf16_rc/$f" || { echo "BF16 zbv -pl 0.5,1.5,1.5,0.5 -rc always: $f differs from P=1"; return 1; }
    done
    echo "RESULT checkpoints: 6 runs byte-identical; half-layer splits (1f1b 1.5,2.5; zbv 0.5,1.5,1.5,0.5; BF16 zbv, also -rc always) too"
}
gpu_vs_cpu() {
    bin/cpu/train_gpt2_pp_cpu $TINY -x 20 > "$LOG/cpu.txt" 2>&1 || return 1
    bin/FP32/train_gpt2_pp $TINY -x 20 -pp 2 > "$LOG/gpu.txt" 2>&1 || return 1
    paste <(losses "$LOG/cpu.txt") <(losses "$LOG/gpu.txt") | awk '{ d = $1 - $2; d = d < 0 ? -d : d; r = d / $1;
        if (r > worst) worst = r; if (r > 1e-4 || NF != 2) bad++ }
        END { printf "RESULT gpu vs cpu: %d steps, worst relative difference %.2e (threshold 1e-4)\n", NR, worst; exit bad > 0 || NR != 20 }'
}
determinism() {
    # -k constant: the default cosine schedule depends on -x, so a 2-step run would not be the first half of a 4-step one
    local run="bin/BF16/train_gpt2_pp $TINY -k constant -pp 2"
    for d in a b; do $run -x 4 -o "$LOG/det_$d" > /dev/null || return 1; done
    $run -x 2 -o "$LOG/det_r" > /dev/null && $run -x 4 -o "$LOG/det_r" -y 1 > /dev/null || return 1
    for d in b r; do for f in model_00000004.bin state_00000004.bin; do
        cmp "$LOG/det_a/$f" "$LOG/det_$d/$f" || return 1
    done; done
    echo "RESULT determinism: run twice and save/resume byte-identical"
}
# peak GPU memory while a command runs (nvidia-smi every 0.2 s), and the trainer's speed after warm-up
measured() {
    local out=$1; shift
    ( while :; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0; sleep 0.2; done ) > "$out.mem" 2> /dev/null &
    local sampler=$! rc
    "$@" > "$out" 2>&1; rc=$?
    kill $sampler
    return $rc
}
throughput() {
    CUDA_VISIBLE_DEVICES=0 measured "$LOG/tp$1.txt" bin/BF16/train_gpt2_pp $THROUGHPUT_RUN -v 0 -g 0 -pp $1 || return 1
    local name peak
    name=$(nvidia-smi --query-gpu=name --format=csv,noheader -i 0)
    case "$name" in *H100*|*H200*|*H800*) peak=989e12 ;; *A100*|*A800*) peak=312e12 ;; *) peak=0 ;; esac
    awk -v peak="$peak" -v P="$1" -v mem="$(sort -n "$LOG/tp$1.txt.mem" | tail -n 1)" '
        /^model:/ { for (i = 1; i <= NF; i++) if ($i == "parameters,") n = $(i - 1) }
        / train loss / && ++s > 2 { for (i = 1; i <= NF; i++) { if ($i == "ms") ms += $(i - 1); if ($i == "tok/s") tps += $(i - 1) } k++ }
        END { if (k == 0) exit 1; tps /= k; printf "RESULT throughput P=%d: %.1f ms/step, %.0f tokens/s, MFU %s, peak memory %s MiB\n",
              P, ms / k, tps, (peak > 0 ? sprintf("%.1f%%", 100 * 6 * n * tps / peak) : "n/a (unknown GPU)"), mem }' "$LOG/tp$1.txt"
}
footprint() {
    CUDA_VISIBLE_DEVICES=0 measured "$LOG/fp.txt" bin/BF16/train_gpt2_pp -e d48 -b 1 -t 1024 -pm 4 -x 1 -v 0 -g 0 -pp 4 -sc 1f1b || return 1
    grep -E '^stage 0:' "$LOG/fp.txt" | head -n 1
    echo "RESULT 1.5B, 4 stages on one GPU: peak memory $(sort -n "$LOG/fp.txt.mem" | tail -n 1) MiB"
}
multi_gpu() {
    [ "$GPUS" -ge 2 ] || return 77
    CUDA_VISIBLE_DEVICES=0,1 bin/FP32/train_gpt2_pp $TINY -x 4 -pp 2 > "$LOG/mg2.txt" 2>&1 || return 1
    CUDA_VISIBLE_DEVICES=0 bin/FP32/train_gpt2_pp $TINY -x 4 -pp 2 > "$LOG/mg1.txt" 2>&1 || return 1
    grep -q '^devices: one GPU per stage' "$LOG/mg2.txt" && cmp <(losses "$LOG/mg2.txt") <(losses "$LOG/mg1.txt") &&
        echo "RESULT 2 GPUs through NCCL: the same losses as one GPU"
}

export LOG SAN TINY GPUS THROUGHPUT_RUN
export -f losses kernels sanitize racecheck initcheck sanitize_trainer test_pp checkpoints gpu_vs_cpu determinism measured throughput footprint multi_gpu
run_step preflight bin/gpu_preflight
for p in FP32 BF16 FP16; do run_step kernels_$p kernels $p ""; done
for p in FP32 BF16 FP16; do run_step test_gpt2_pp_$p test_pp $p; done
run_step gpu_vs_cpu gpu_vs_cpu
run_step checkpoints_across_P checkpoints
run_step determinism_resume determinism
for t in memcheck synccheck; do run_step sanitizer_$t sanitize $t; done
run_step sanitizer_racecheck racecheck
run_step sanitizer_initcheck initcheck
run_step sanitizer_trainer sanitize_trainer
run_step throughput_P1 throughput 1
run_step throughput_P2 throughput 2
run_step footprint_1p5B footprint
run_step multi_gpu multi_gpu
printf "\n%-22s %-7s %s\n" step result "time / budget"
printf "$results"
echo "logs: $LOG; $failures step(s) failed"
[ $failures -eq 0 ]
