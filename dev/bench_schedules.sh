#!/bin/bash
# Every schedule side by side in one run, on this machine: one stage in one process (one thread) against each
# builder over 2 MPI ranks (one thread each), same model and global batch (issue 10's setting: d12, B=1,
# T=64, M=8). For each, means over the steps after the first WARM (2): on this 2-core VM memory first touches
# and the cores' speed settle over the first steps (one d12 run's optimizer took 4058, 1162, 764, 468, 487 ms):
#   step ms, speed-up of the whole step over one stage;
#   sched ms: the schedule phase (forward and backward, what a schedule changes; the optimizer is apart);
#   from 1F1B: the simulator's prediction before the schedule ran, calibrated by `-sc auto` on 1F1B's
#     second step (F and B per stage, B split into I and W by timing its weight-gradient ops, hence the
#     costs of a layer, the embedding and the LM head), and its ratio to the measured schedule phase. Each
#     schedule runs with the split `-sc auto` chose for it from the same costs (PL= fixes one for all), the
#     cost-aware zbc and zbcv also with the costs it built them from;
#   own: the schedule simulated with its own measured action times each step (the step line), and ratio;
#   the measured bubble, the simulated one (own costs) and the planned one (the step line's theory: unit time, or
#   for zbc and zbcv the costs they were built from).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s train_gpt2_pp_cpu
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
M=${M:-8}; STEPS=${STEPS:-6}; WARM=${WARM:-2}
ARGS="-e ${MODEL:-d12} -b ${B:-1} -t ${T:-64} -pm $M -v 0 -g 0 ${PL:+-pl $PL}"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
# means over the steps after the first WARM of: step ms, schedule ms, its simulation, bubble, simulated, theory
means() {
    grep "^step" | tail -n +$((WARM + 1)) | awk '{
        for (i = 1; i <= NF; i++) if ($i == "ms") { step += $(i-1); break }
        if (match($0, /schedule [0-9.]+ ms \(simulated [0-9.]+\)/)) { split(substr($0, RSTART, RLENGTH), f, /[ ()]+/); sched += f[2]; sim += f[5] }
        if (match($0, /bubble [0-9.]+ \(theory [0-9.]+, simulated [0-9.]+\)/)) { split(substr($0, RSTART, RLENGTH), g, /[ (),]+/); b += g[2]; th = g[4]; bs += g[6] }
        n++ } END { if (n) printf "%.1f %.1f %.1f %.3f %.3f %.3f", step / n, sched / n, sim / n, b / n, bs / n, th }'
}

./train_gpt2_pp_cpu $ARGS -x "$STEPS" -pp 1 > "$W/one.txt"
T1=$(grep "^step" "$W/one.txt" | tail -n +$((WARM + 1)) | awk '{ for (i = 1; i <= NF; i++) if ($i == "ms") { s += $(i-1); n++; break } } END { printf "%.1f", s / n }')
mpirun -np 2 ./train_gpt2_pp_cpu $ARGS -x 2 -pp 2 -sc auto > "$W/auto.txt"
grep '^-sc auto: ' "$W/auto.txt"
printf "%-12s %9s %8s %9s %9s %6s %9s %6s %7s %7s %7s\n" schedule "step ms" speedup "sched ms" "from 1F1B" ratio own ratio bubble "(sim)" "(plan)"
printf "%-12s %9.1f\n" "one stage" "$T1"
for S in gpipe 1f1b interleaved zbh1 zbh2 zbv zbc zbcv; do
    SPLIT=$(awk -v s=$S '$1 == "-sc" && $3 == s && $8 == "MiB" { print $4 }' "$W/auto.txt")
    NAME=$(awk -v s=$S '$1 == "-sc" && $3 == s && $(NF-1) == "-sc" { print $NF }' "$W/auto.txt")  # zbc, zbcv: with the costs
    if ! mpirun -np 2 ./train_gpt2_pp_cpu $ARGS -x "$STEPS" -pp 2 -sc "${NAME:-$S}" ${SPLIT:+-pl $SPLIT} > "$W/$S.txt" 2>&1; then
        printf "%-12s %s\n" $S "$(grep -m1 '^error' "$W/$S.txt")"; continue
    fi
    PRED=$(awk -v s=$S '$1 == "-sc" && $3 == s && $8 == "MiB" { print $5 }' "$W/auto.txt")
    read STEP SCHED SIM BUB BSIM THEORY <<< "$(means < "$W/$S.txt")"
    awk -v s=$S -v step=$STEP -v sched=$SCHED -v sim=$SIM -v pred="${PRED:-0}" -v t1=$T1 -v b=$BUB -v bs=$BSIM -v th=$THEORY 'BEGIN {
        printf "%-12s %9.1f %7.2fx %9.1f %9.1f %6.2f %9.1f %6.2f %7.3f %7.3f %7.3f\n", s, step, t1 / step, sched, pred, pred / sched, sim, sim / sched, b, bs, th }'
done
echo "ideal for 2 equal stages with M=$M: 2M/(M+1) = $(awk -v m=$M 'BEGIN { printf "%.3f", 2 * m / (m + 1) }'); the optimizer step is not pipelined"
