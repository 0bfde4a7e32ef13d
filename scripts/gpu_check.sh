#!/bin/bash
# On a machine with NVIDIA GPUs: build everything for this GPU, run every GPU test in every precision, then a
# short multi-GPU pipeline run on the shipped data next to the CPU trainer. One command, one summary.
#   ./scripts/gpu_check.sh            (uses all visible GPUs, at least 1; the pipeline run needs 2)
set -u
cd "$(dirname "$0")/.."
command -v nvidia-smi > /dev/null || { echo "error: no nvidia-smi: this script needs a GPU machine"; exit 1; }
GPUS=$(nvidia-smi -L | wc -l)
CC_=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | sort -n | head -n 1 | tr -d .)
echo "$GPUS GPU(s), compute capability $CC_"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fails=0
run() { echo "== $*"; if ! "$@"; then echo "FAILED: $*"; fails=$((fails + 1)); fi; }
make -s build/ref_a.bin build/ref_b.bin train_gpt2_pp_cpu
for P in FP32 BF16 FP16; do
    run make -s nvcc_kernels CUDA_PRECISIONS=$P
    for t in build/cuda/nvcc/$P/*; do [ -x "$t" ] && run "$t"; done
    run make -s build/nvcc/$P/test_gpt2_pp
    for r in a b; do run build/nvcc/$P/test_gpt2_pp build/ref_$r.bin; done
    rm -f train_gpt2_pp && run make -s train_gpt2_pp PRECISION=$P GPU_COMPUTE_CAPABILITY=$CC_
    NP=$(( GPUS >= 2 ? 2 : 1 ))
    run mpirun -np $NP ./train_gpt2_pp -pp $NP -e d4:c64:h4 -b 4 -t 64 -pm 4 -x 20 -v 10 -g 32 -o out/gpu_$P
done
./train_gpt2_pp_cpu -e d4:c64:h4 -b 4 -t 64 -pm 4 -x 20 -v 10 -g 32 -o out/gpu_cpu > /dev/null
echo "train losses (CPU vs GPU FP32 should agree to ~1e-5 relative; BF16/FP16 to ~1e-3):"
paste <(grep trl out/gpu_cpu/main.log) <(grep trl out/gpu_FP32/main.log) <(grep trl out/gpu_BF16/main.log) <(grep trl out/gpu_FP16/main.log) | cut -c1-120
echo "$fails failed command(s)"
[ $fails -eq 0 ]
