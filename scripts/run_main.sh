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
ARGS=(-pp 2 -sc 1f1b -pm 4 -b 4 -o out/main -tr out/main/trace.json "$@")
if have_mpi; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
    THREADS=$(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 ))
    OMP_NUM_THREADS=$THREADS mpirun -np 2 ./train_gpt2_pp_cpu "${ARGS[@]}"
else
    ./train_gpt2_pp_cpu "${ARGS[@]}"
fi
if have_python_libs; then
    python3 scripts/plot_pipeline.py out/main/trace.json --out out/main/pipeline.png > /dev/null && echo "pipeline timeline: out/main/pipeline.png"
    python3 scripts/plot_loss.py main=out/main/main.log --out out/main/loss.png > /dev/null && echo "loss curve: out/main/loss.png"
fi
