#!/bin/bash
# scripts/gpu_check.sh on the SIMT builds, with a stand-in nvidia-smi, so that a GPU lease is not spent on the
# script's own bugs: the first H200 run found two (a resume check under the cosine schedule, which depends on
# -x; an awk expression mawk rejects). The steps that fit on a CPU run: the BF16 kernel tests, FP32 vs NumPy,
# 20 steps vs the CPU trainer, checkpoints across P, determinism and resume, throughput's parsing on a small
# model; the sanitizers skip (no compute-sanitizer), multi_gpu skips (one device). What they check on a GPU is
# tested under SIMT by test_cuda_kernels and test_cuda_sim; here it is the script that is under test.
set -u
source dev/test/lib.sh
B=$W/bundle
mkdir -p "$B/bin/cpu" "$W/path"
for p in FP32 BF16 FP16; do
    mkdir -p "$B/bin/$p/kernels"
    ln -s "$PWD/build/sim/$p/train_gpt2_pp" "$PWD/build/sim/$p/test_gpt2_pp" "$B/bin/$p/"
done
ln -s "$PWD"/build/simt/rel-BF16/bin/dev/cuda/* "$B/bin/BF16/kernels/"
ln -s "$PWD/train_gpt2_pp_cpu" "$B/bin/cpu/train_gpt2_pp_cpu"
printf '#!/bin/sh\necho "SIMT CPU runtime (no preflight)"\n' > "$B/bin/gpu_preflight"
cp build/ref_a.bin build/ref_b.bin scripts/gpu_check.sh "$B/"
ln -s "$PWD/data" "$B/data"
cat > "$W/path/nvidia-smi" <<'SMI'
#!/bin/sh
case "$*" in *-L*) echo "GPU 0: SIMT CPU runtime (UUID: GPU-simt)" ;; *memory.used*) echo 0 ;; *name*) echo SIMT ;; esac
SMI
chmod +x "$B/bin/gpu_preflight" "$W/path/nvidia-smi"

STEPS=preflight,kernels_BF16,test_gpt2_pp_FP32,gpu_vs_cpu,checkpoints_across_P,determinism_resume,sanitizer_memcheck,throughput_P1,multi_gpu
PATH="$W/path:$PATH" GPU_CHECK_STEPS=$STEPS GPU_CHECK_TIME_SCALE=20 THROUGHPUT_RUN="-e d4:c64:h4 -b 4 -t 64 -pm 4 -x 4" \
    SIMT_DEVICES=1 OMP_NUM_THREADS=1 bash "$B/gpu_check.sh" > "$W/out.txt" 2>&1
rc=$?
cat "$W/out.txt"
LOGDIR=$(sed -n 's/^logs: \(\/tmp\/gpu_check\.[A-Za-z0-9]*\);.*/\1/p' "$W/out.txt")
[ -n "$LOGDIR" ] && rm -rf "$LOGDIR"  # the script keeps its logs for a person to read; here nobody does
check "gpu_check exits 0 on the SIMT builds" "[ $rc -eq 0 ]"
for s in preflight kernels_BF16 test_gpt2_pp_FP32 gpu_vs_cpu checkpoints_across_P determinism_resume throughput_P1; do
    check "$s passes" "grep -Eq '^$s +PASS' '$W/out.txt'"
done
for s in sanitizer_memcheck multi_gpu; do check "$s skips" "grep -Eq '^$s +SKIP' '$W/out.txt'"; done
check "the other steps did not run" "! grep -Eq '^(kernels_FP32|footprint_1p5B|sanitizer_racecheck) ' '$W/out.txt'"
check "gpu_vs_cpu compared 20 steps" "grep -q '^RESULT gpu vs cpu: 20 steps' '$W/out.txt'"
check "throughput parsed the step lines" "grep -Eq '^RESULT throughput P=1: [0-9.]+ ms/step, [0-9]+ tokens/s, MFU n/a' '$W/out.txt'"
summary
