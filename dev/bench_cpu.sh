#!/bin/bash
# Tokens/s of the CPU trainer for GPT-2 124M (d12) at B=4, T=64 with 2 threads, as issue 2 asks.
# The first step pays for page faults, so the figure is the mean over the steps after it.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s train_gpt2_pp_cpu
STEPS=${STEPS:-4}
OMP_NUM_THREADS=${THREADS:-2} ./train_gpt2_pp_cpu -e d12 -b 4 -t 64 -x "$STEPS" -v 0 -g 0 "$@" | tee /tmp/bench_cpu.txt |
  grep '^step' | tail -n +2 | awk '{ for (i = 1; i <= NF; i++) if ($i == "ms") { ms += $(i-1); n++ } }
    END { printf "d12 (124M), B=4 T=64, %s threads: %.0f ms/step, %.1f tokens/s (mean of %d steps)\n", ENVIRON["THREADS"] ? ENVIRON["THREADS"] : 2, ms / n, 256 * 1000 * n / ms, n }'
