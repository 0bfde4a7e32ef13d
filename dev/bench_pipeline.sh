#!/bin/bash
# Pipeline speed-up on this machine, measured side by side in one run: one stage in one process (one
# thread) against 1F1B over 2 MPI ranks (one thread each), same model and global batch.
# Ideal speed-up of 2 equal stages with M micro-batches: 2M/(M+1). Stages are rarely equal: with the slowest
# stage holding a share f of the compute the ideal is M/((M+1) f), which the script prints too. The default
# is the demo's model (scripts/run_main.sh): 14 blocks of 256 channels on stage 0 and the LM head alone on
# stage 1 (PL=14,0), whose estimated costs are 47% and 53%. For d4 the LM head (50304 x 256) is ~85% of the
# compute, so no split of its 4 layers gets near 2x (MODEL=d4 PL=).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s train_gpt2_pp_cpu
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
M=${M:-8}; STEPS=${STEPS:-5}
PL=${PL-14,0}
ARGS="-e ${MODEL:-d14:c256:h4} -b ${B:-4} -t ${T:-32} -pm $M -x $STEPS -v 0 -g 0"
mean_ms() { grep "^step" | tail -n +2 | awk '{ for (i = 1; i <= NF; i++) if ($i == "ms") { s += $(i-1); n++; break } } END { printf "%.1f", s / n }'; }
./train_gpt2_pp_cpu $ARGS -pp 1 > /tmp/bench_pp1.txt
mpirun -np 2 ./train_gpt2_pp_cpu $ARGS -pp 2 -sc 1f1b ${PL:+-pl $PL} > /tmp/bench_pp2.txt
T1=$(mean_ms < /tmp/bench_pp1.txt); T2=$(mean_ms < /tmp/bench_pp2.txt)
BUBBLE=$(grep '^step' /tmp/bench_pp2.txt | tail -n +2 | sed -n 's/.*bubble \([0-9.]*\).*/\1/p' | awk '{ s += $1; n++ } END { printf "%.3f", s / n }')
grep '^stage' /tmp/bench_pp2.txt | head -2
SHARE=$(sed -n 's/^balance: the slowest stage has \([0-9]*\)%.*/\1/p' /tmp/bench_pp2.txt)
awk -v t1=$T1 -v t2=$T2 -v m=$M -v b=$BUBBLE -v f=$SHARE 'BEGIN {
    ideal = 2 * m / (m + 1); balanced = m / ((m + 1) * f / 100); r = t1 / t2;
    printf "1 stage: %.1f ms/step | 2 stages 1F1B M=%d: %.1f ms/step\n", t1, m, t2;
    printf "speed-up %.3f | ideal 2M/(M+1) = %.3f (fraction %.3f) | ideal for this split (slowest stage %d%%) = %.3f (fraction %.3f)\n", r, ideal, r / ideal, f, balanced, r / balanced;
    printf "measured bubble %.3f, theory (P-1)/(M+P-1) = %.3f\n", b, 1 / (m + 1) }'
