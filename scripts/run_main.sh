#!/bin/bash
# The README's first command: install what is missing, build, and train the default model on the shipped
# King James Bible shards across 2 pipeline stages, one MPI rank each. Arguments go to the trainer
# (e.g. `-x 2` for a 2-step smoke run).
# It installs with apt (as root, or with sudo) and pip; when it cannot (no root, no network) it says so in one
# line and runs anyway: plain-C matmuls without OpenBLAS, both stages in one process without MPI.
set -euo pipefail
cd "$(dirname "$0")/.."
notice() { echo "run_main: $*" >&2; }

# OpenBLAS is found by linking against it, as the Makefile does: libblas-dev's cblas.h proves nothing
OPENBLAS=${OPENBLAS:-openblas}
have_openblas() {
    echo 'char cblas_sgemm(void); char openblas_set_num_threads(void);
          int main(void) { return cblas_sgemm() + openblas_set_num_threads(); }' |
        cc -x c - $(pkg-config --libs "$OPENBLAS" 2> /dev/null || echo "-l$OPENBLAS") -o /dev/null 2> /dev/null
}
have_mpi() { command -v mpicc > /dev/null && command -v mpirun > /dev/null; }
have_python_libs() { python3 -c "import numpy, matplotlib" 2> /dev/null; }

have_python_libs || python3 -m pip install -q -r requirements.txt > /dev/null 2>&1 || true
missing=()
command -v cc > /dev/null && command -v make > /dev/null || missing+=(build-essential)
command -v cc > /dev/null && have_openblas || missing+=(libopenblas-dev)
have_mpi || missing+=(libopenmpi-dev openmpi-bin)
have_python_libs || missing+=(python3-numpy python3-matplotlib)  # where pip may not install (PEP 668, no pip)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo > /dev/null; then SUDO=sudo; else SUDO=none; fi
    if [ "$SUDO" != none ] && command -v apt-get > /dev/null && $SUDO apt-get update -qq > /dev/null 2>&1 &&
       $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null 2>&1; then
        rm -f train_gpt2_pp_cpu  # rebuild with what was just installed
    else
        notice "could not install ${missing[*]} (needs apt, root or sudo, and network); going on without"
    fi
fi
command -v cc > /dev/null && command -v make > /dev/null || { echo "error: no C compiler or make: apt install build-essential"; exit 1; }
have_mpi || notice "no MPI: both stages run in one process"
have_python_libs || notice "no numpy/matplotlib: no plots"

make -s train_gpt2_pp_cpu $(have_mpi || echo NO_MPI=1)
# The demo: 14 blocks of 256 channels on stage 0, the LM head (50304 x 256) alone on stage 1 (-pl 14,0). The
# two stages carry about the same work (47% and 53% by the trainer's flop estimate), so 1F1B over M=8
# micro-batches can approach its ideal M/((M+1) f) for a slowest-stage share f.
DEMO=(-e d14:c256:h4 -sc 1f1b -pm 8 -b 4 -t 32 -x 30 -v 10 -m 8)
mkdir -p out/main
THREADS=$(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 ))  # one stage's share of the cores
if have_mpi; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
    OMP_NUM_THREADS=$THREADS mpirun -np 2 ./train_gpt2_pp_cpu -pp 2 -pl 14,0 "${DEMO[@]}" -o out/main -tr out/main/trace.json "$@"
else
    OMP_NUM_THREADS=$(( 2 * THREADS )) ./train_gpt2_pp_cpu -pp 2 -pl 14,0 "${DEMO[@]}" -o out/main -tr out/main/trace.json "$@"
fi | tee out/main/train.txt
# The same global batch on one stage with one stage's threads, a few steps: what the pipeline bought. The
# user's flags pass on, except those about output, length and sampling.
ONE=()
while [ $# -ge 2 ]; do case $1 in -o|-y|-tr|-x|-v|-n|-s|-g|-pp|-pl) ;; *) ONE+=("$1" "$2") ;; esac; shift 2; done
echo "the same global batch on one stage (-pp 1), 3 steps, for the speed-up:"
OMP_NUM_THREADS=$THREADS ./train_gpt2_pp_cpu -pp 1 "${DEMO[@]}" "${ONE[@]}" -x 3 -v 0 -g 0 | tee out/main/one_stage.txt |
    grep '^step'
if have_python_libs; then
    python3 scripts/plot_pipeline.py out/main/trace.json --out out/main/pipeline.png > /dev/null && echo "pipeline timeline: out/main/pipeline.png"
    python3 scripts/plot_loss.py main=out/main/main.log --out out/main/loss.png > /dev/null && echo "loss curve: out/main/loss.png"
    python3 scripts/plot_split.py out/main/train.txt --out out/main/split.png > /dev/null && echo "model split: out/main/split.png"
    python3 scripts/profile.py out/main/trace.json --out out/main/flame.png | grep '^bottleneck' &&
        echo "flame graph: out/main/flame.png (python3 scripts/profile.py out/main/trace.json: top ops per stage)"
fi
# mean step time after the first step (or of the only one)
step_ms() { awk '/^step +[0-9]+\/[0-9]+ \|/ { for (i = 1; i <= NF; i++) if ($i == "ms") { t[++n] = $(i - 1); break } }
                 END { for (i = n > 1 ? 2 : 1; i <= n; i++) { s += t[i]; k++ } if (k) printf "%.1f", s / k }' "$1"; }
T1=$(step_ms out/main/one_stage.txt); T2=$(step_ms out/main/train.txt)
M=$(sed -n 's/^batch: .* M=\([0-9]*\) .*/\1/p' out/main/train.txt)
F=$(sed -n 's/^balance: the slowest stage has \([0-9]*\)%.*/\1/p' out/main/train.txt)
if [ -n "$T1" ] && [ -n "$T2" ] && [ -n "$M" ] && [ -n "$F" ]; then
    awk -v t1="$T1" -v t2="$T2" -v m="$M" -v f="$F" 'BEGIN { s = t1 / t2; ideal = m / ((m + 1) * f / 100)
        printf "one stage %.0f ms/step, two stages %.0f ms/step\n", t1, t2
        printf "measured pipeline speed-up %.2fx (ideal for this split %.2fx: %.2f of it)\n", s, ideal, s / ideal }' |
        tee -a out/main/train.txt
fi
