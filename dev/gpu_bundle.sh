#!/bin/bash
# Prebuilds, on a machine with nvcc and no GPU, everything scripts/gpu_check.sh runs, into build/gpu_bundle/:
# the trainer, test_gpt2_pp and the dev/cuda kernel tests for sm_80 + sm_90 in FP32, BF16 and FP16, the CPU
# trainer (plain C, no MPI or BLAS, so that it runs anywhere), the NumPy reference files, the shipped data and
# the check script itself. A GPU machine then needs only the CUDA driver, cuBLAS(Lt) and NCCL: no compiler, no
# Python, and its minutes go to running.   make gpu_bundle   (or bash dev/gpu_bundle.sh; JOBS=2 by default)
set -eu
cd "$(dirname "$0")/.."
OUT=build/gpu_bundle
NVCC=${NVCC:-${CUDA_HOME:-/usr/local/cuda}/bin/nvcc}
command -v "$NVCC" > /dev/null || { echo "error: no nvcc ($NVCC): the bundle is built with the CUDA toolkit"; exit 1; }
PRECISIONS="FP32 BF16 FP16"
make -j"${JOBS:-2}" build/ref_a.bin build/ref_b.bin nvcc_kernels \
    $(for p in $PRECISIONS; do echo build/nvcc/$p/train_gpt2_pp build/nvcc/$p/test_gpt2_pp; done)
rm -rf "$OUT"
mkdir -p "$OUT/bin/cpu"
for p in $PRECISIONS; do
    mkdir -p "$OUT/bin/$p/kernels"
    cp build/nvcc/$p/train_gpt2_pp build/nvcc/$p/test_gpt2_pp "$OUT/bin/$p/"
    for t in build/cuda/nvcc/$p/*; do [ -x "$t" ] && [ -f "$t" ] && cp "$t" "$OUT/bin/$p/kernels/"; done
done
"$NVCC" -std=c++17 -O2 dev/gpu_preflight.cu -o "$OUT/bin/gpu_preflight" -L"$(dirname "$NVCC")/../lib64" -lcublasLt -lnccl
${CC:-gcc} -O3 -std=c11 -D_GNU_SOURCE -fopenmp -I. train_gpt2_pp.c -o "$OUT/bin/cpu/train_gpt2_pp_cpu" -lm
cp build/ref_a.bin build/ref_b.bin "$OUT/"
cp -r data "$OUT/"
cp scripts/gpu_check.sh "$OUT/"
# one file to copy (27 MB instead of 66): tar xzf gpu_bundle.tgz && bash gpu_bundle/gpu_check.sh
tar -C "$(dirname "$OUT")" -czf "$OUT.tgz" "$(basename "$OUT")"
echo "$OUT: $(du -sh "$OUT" | cut -f1), $OUT.tgz: $(du -sh "$OUT.tgz" | cut -f1); on the GPU machine: bash $OUT/gpu_check.sh (--plan: the steps)"
