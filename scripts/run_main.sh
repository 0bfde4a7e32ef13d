#!/bin/bash
# The README's first command: install what is missing, build, and train the default model on the shipped
# King James Bible shards (d4: 4 layers, 256 channels, GPT-2 vocabulary) across 2 pipeline stages, one MPI
# rank each, 1F1B over 4 micro-batches of 4x64 tokens per step, 40 steps.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v cc > /dev/null || need+=(build-essential)
[ -e /usr/include/x86_64-linux-gnu/cblas.h ] || [ -e /usr/include/cblas.h ] || need+=(libopenblas-dev)
command -v mpirun > /dev/null || need+=(libopenmpi-dev openmpi-bin)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=$( [ "$(id -u)" -eq 0 ] && echo "" || echo sudo )
    $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
python3 -c "import numpy, matplotlib" 2> /dev/null || python3 -m pip install -q -r requirements.txt
make -s train_gpt2_pp_cpu
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
THREADS=$(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 ))
OMP_NUM_THREADS=$THREADS mpirun -np 2 ./train_gpt2_pp_cpu -pp 2 -sc 1f1b -pm 4 -b 4 -o out/main -tr out/main/trace.json "$@"
python3 scripts/plot_pipeline.py out/main/trace.json --out out/main/pipeline.png > /dev/null && echo "pipeline timeline: out/main/pipeline.png"
python3 scripts/plot_loss.py main=out/main/main.log --out out/main/loss.png > /dev/null && echo "loss curve: out/main/loss.png"
