#!/bin/bash
# Every schedule side by side in one run, on this machine: one stage in one process (one thread) against each
# builder over 2 MPI ranks (one thread each), same model and global batch (issue 10's setting: d12, B=1,
# T=64, M=8). For each: ms per step of the schedule phase (forward and backward, what a schedule changes;
# the optimizer step is printed apart), speed-up of the whole step over one stage, the measured bubble, and
# the simulator's prediction for that schedule, calibrated by `-sc auto` with 1F1B's measured per-stage costs.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s train_gpt2_pp_cpu
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
M=${M:-8}; STEPS=${STEPS:-4}
ARGS="-e ${MODEL:-d12} -b ${B:-1} -t ${T:-64} -pm $M -v 0 -g 0 ${PL:+-pl $PL}"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
# mean over the steps after the first (page faults) of a field: "ms" (the step) or "optimizer"
mean() { grep "^step" | tail -n +2 | awk -v f="$1" '{ for (i = 2; i <= NF; i++) if ($i == "ms" && $(i-1) ~ /^[0-9.]+$/ && (f == "ms" ? $(i-2) != "optimizer" : $(i-2) == "optimizer")) { s += $(i-1); n++ } } END { printf "%.1f", n ? s / n : 0 }'; }

./train_gpt2_pp_cpu $ARGS -x "$STEPS" -pp 1 > "$W/one.txt"
T1=$(mean ms < "$W/one.txt")
# the calibration: one 1F1B step measured, then the simulator's table (ms per schedule phase)
mpirun -np 2 ./train_gpt2_pp_cpu $ARGS -x 1 -pp 2 -sc auto > "$W/auto.txt"
grep -A 9 '^-sc auto: measured' "$W/auto.txt" | sed -n '2p'
printf "%-12s %10s %10s %8s %8s %8s %10s %9s\n" schedule "step ms" "sched ms" "predict" "pred/ms" speedup bubble "(theory)"
printf "%-12s %10.1f\n" "one stage" "$T1"
for S in gpipe 1f1b interleaved zbh1 zbh2 zbv; do
    if ! mpirun -np 2 ./train_gpt2_pp_cpu $ARGS -x "$STEPS" -pp 2 -sc $S > "$W/$S.txt" 2>&1; then
        printf "%-12s %s\n" $S "$(grep -m1 '^error' "$W/$S.txt")"; continue
    fi
    TS=$(mean ms < "$W/$S.txt"); OPT=$(mean optimizer < "$W/$S.txt")
    PRED=$(awk -v s=$S '$1 == s && $2 ~ /^[0-9.e+]+$/ { print $2 + 0 }' "$W/auto.txt")
    BUB=$(grep '^step' "$W/$S.txt" | tail -n +2 | sed -n 's/.*bubble \([0-9.]*\) (theory \([0-9.]*\)).*/\1 \2/p' |
          awk '{ b += $1; t = $2; n++ } END { printf "%.3f %.3f", b / n, t }')
    awk -v s=$S -v ts=$TS -v opt=$OPT -v t1=$T1 -v pred="${PRED:-0}" -v bub="$BUB" 'BEGIN { split(bub, b, " ");
        printf "%-12s %10.1f %10.1f %8.1f %8.2f %7.2fx %10s %9s\n", s, ts, ts - opt, pred, pred / (ts - opt), t1 / ts, b[1], "(" b[2] ")" }'
done
echo "ideal for 2 equal stages with M=$M: 2M/(M+1) = $(awk -v m=$M 'BEGIN { printf "%.3f", 2 * m / (m + 1) }'); the optimizer step is not pipelined"
