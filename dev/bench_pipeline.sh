#!/bin/bash
# Pipeline speed-up on this machine, measured side by side in one run: one stage in one process (one
# thread) against 1F1B over 2 MPI ranks (one thread each) on a d4-sized model, same global batch.
# Ideal speed-up of 2 stages with M micro-batches: 2M/(M+1); the gap is the bubble plus communication.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s train_gpt2_pp_cpu
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
M=${M:-8}; STEPS=${STEPS:-5}
ARGS="-e ${MODEL:-d4} -b ${B:-4} -t ${T:-64} -pm $M -x $STEPS -v 0 -g 0"
mean_ms() { grep '^step' | tail -n +2 | awk '{ for (i = 1; i <= NF; i++) if ($i == "ms") { s += $(i-1); n++ } } END { printf "%.1f", s / n }'; }
./train_gpt2_pp_cpu $ARGS -pp 1 > /tmp/bench_pp1.txt
mpirun -np 2 ./train_gpt2_pp_cpu $ARGS -pp 2 -sc 1f1b > /tmp/bench_pp2.txt
T1=$(mean_ms < /tmp/bench_pp1.txt); T2=$(mean_ms < /tmp/bench_pp2.txt)
BUBBLE=$(grep '^step' /tmp/bench_pp2.txt | tail -n +2 | sed -n 's/.*bubble \([0-9.]*\).*/\1/p' | awk '{ s += $1; n++ } END { printf "%.3f", s / n }')
grep '^stage' /tmp/bench_pp2.txt | head -2
awk -v t1=$T1 -v t2=$T2 -v m=$M -v b=$BUBBLE 'BEGIN {
    ideal = 2 * m / (m + 1); r = t1 / t2;
    printf "1 stage: %.1f ms/step | 2 stages 1F1B M=%d: %.1f ms/step\n", t1, m, t2;
    printf "speed-up %.3f, ideal 2M/(M+1) = %.3f, fraction of ideal %.3f | measured bubble %.3f, theory (P-1)/(M+P-1) = %.3f\n", r, ideal, r / ideal, b, 1 / (m + 1) }'
