#!/bin/bash
# Data parallelism against pipelining on this machine, side by side in one run: the same model and the same
# global batch of 8 micro-batches (issue 11's setting: d12, B=1, T=64), one thread per rank, every rank an MPI
# process: one rank (D=1 P=1, M=8); two pipeline stages (D=1 P=2, 1F1B, M=8); two replicas (D=2 P=1, M=4 each),
# with and without ZeRO-1 (which also halves each rank's AdamW work).
# Prints ms per step (mean over the steps after the first), the speed-up over one rank, and how much of a
# replicated step is the gradient reduction and the optimizer (the part after the schedule).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s train_gpt2_pp_cpu
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
STEPS=${STEPS:-4}
ARGS="-e ${MODEL:-d12} -b ${B:-1} -t ${T:-64} -x $STEPS -v 0 -g 0"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
# mean over the steps after the first (page faults) of the step's ms, or of the optimizer's
mean() { grep "^step" | tail -n +2 | awk -v f="$1" '{ for (i = 2; i <= NF; i++) if ($i == "ms" && (f == "ms" || $(i-2) == "optimizer")) { s += $(i-1); n++; break } } END { printf "%.1f", n ? s / n : 0 }'; }

./train_gpt2_pp_cpu $ARGS -pm 8 > "$W/one.txt"
mpirun -np 2 ./train_gpt2_pp_cpu $ARGS -pp 2 -sc 1f1b -pm 8 > "$W/pp.txt"
mpirun -np 2 ./train_gpt2_pp_cpu $ARGS -dp 2 -pm 4 > "$W/dp.txt"
mpirun -np 2 ./train_gpt2_pp_cpu $ARGS -dp 2 -pm 4 -z 1 > "$W/zero.txt"
T1=$(mean ms < "$W/one.txt")
printf "%-28s %10s %8s %16s\n" run "ms/step" speedup "after schedule"
for R in "one:D=1 P=1 (one rank)" "pp:D=1 P=2 1F1B" "dp:D=2 P=1" "zero:D=2 P=1 ZeRO-1"; do
    F=${R%%:*}; LABEL=${R#*:}
    TS=$(mean ms < "$W/$F.txt"); OPT=$(mean optimizer < "$W/$F.txt")
    awk -v l="$LABEL" -v ts=$TS -v opt=$OPT -v t1=$T1 -v f=$F 'BEGIN {
        printf "%-28s %10.1f %7.2fx %16s\n", l, ts, t1 / ts, f == "one" ? "" : sprintf("%.1f ms", opt) }'
done
grep -h '^step *[0-9]*/' "$W/one.txt" "$W/zero.txt" | awk '{ print $5 }' | paste -sd' ' |
    awk '{ n = NF / 2; same = 1; for (i = 1; i <= n; i++) { d = $i - $(i + n); if (d < 0) d = -d; if (d > 2e-5) same = 0 }
           printf "train losses of D=2 (ZeRO-1) and one rank %s (tolerance 2e-5, dev/test/test_data_parallel.sh)\n", same ? "agree" : "DIFFER" }'
echo "ideal for D=2: 2x (the schedule halves; the reduction and the optimizer do not)"
