#!/bin/bash
# The README's first command: install what is missing, build, and train the default model on the shipped
# King James Bible shards (d4: 4 layers, 256 channels, GPT-2 vocabulary; 40 steps of 8x64 tokens).
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
OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)} ./train_gpt2_pp_cpu -o out/main "$@"
python3 scripts/plot_loss.py main=out/main/main.log --out out/main/loss.png > /dev/null && echo "loss curve: out/main/loss.png"
