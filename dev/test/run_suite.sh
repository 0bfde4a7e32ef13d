#!/bin/bash
# The runs of one test suite: which binary, with which arguments and SIMT_SCHED thread orders. `make SUITE`
# builds the binaries, then calls `bash dev/test/run_suite.sh SUITE` from the repository root.
# Every run writes build/logs/SUITE/NAME.log; it passes when it exits 0 and its last line reads
# "N passed, 0 failed". One line per run; a failing run also prints the end of its log. All runs go on
# after a failure; the suite fails if any run failed.
#   SIMT_SEED (1): the seed of the random thread order. CUDA_TESTS, CUDA_PRECISIONS: set by dev/cuda/cuda.mk.
#   CI=true: a suite that would skip for a missing tool fails instead.
set -u
SUITE=$1
LOGS=build/logs/$SUITE
mkdir -p "$LOGS"
SEED=${SIMT_SEED:-1}
runs=0; fails=0; start=$(date +%s)

# run NAME CMD...: one run (CMD may start with VAR=value assignments)
run() {
    local name=$1 log=$LOGS/${1//[^A-Za-z0-9_.-]/_}.log; shift
    runs=$((runs + 1))
    if env "$@" > "$log" 2>&1 && tail -n 1 "$log" | grep -Eq '^[0-9]+ passed, 0 failed$'; then
        printf '%-40s %s\n' "$name" "$(tail -n 1 "$log")"
    else
        tail -n 60 "$log"; printf '%-40s FAILED (log: %s)\n' "$name" "$log"; fails=$((fails + 1))
    fi
}

case $SUITE in
test_cpu)  # P = 1 checks every activation; P = 2..4 (stages in one process) under both schedules check the
           # loss, every gradient and the parameters after each step against the same reference
    for r in a b; do
        run "test_gpt2_pp_cpu ref_$r" ./test_gpt2_pp_cpu build/ref_$r.bin
        run "test_gpt2_pp_cpu_noblas ref_$r" build/test_gpt2_pp_cpu_noblas build/ref_$r.bin
    done
    for P in 2 3 4; do for S in gpipe 1f1b; do
        run "test_gpt2_pp_cpu ref_a P=$P $S" ./test_gpt2_pp_cpu build/ref_a.bin $P $S
    done; done
    run "test_gpt2_pp_cpu ref_b P=2 1f1b" ./test_gpt2_pp_cpu build/ref_b.bin 2 1f1b
    # split backward and several stages per rank; their bits equal 1F1B's (test_pipeline_equiv), so one
    # reference each shows the math is right
    for S in zbh1 zbv interleaved; do run "test_gpt2_pp_cpu ref_a P=2 $S" ./test_gpt2_pp_cpu build/ref_a.bin 2 $S; done
    run "test_gpt2_pp_cpu ref_a P=1 zbh2" ./test_gpt2_pp_cpu build/ref_a.bin 1 zbh2
    # the full GPT-2 vocabulary: the loss to 4u (see test_gpt2_pp.c)
    run "test_gpt2_pp_cpu ref_v" ./test_gpt2_pp_cpu build/ref_v.bin
    ;;
test_simt)  # the SIMT runtime's self-tests in three thread orders and under ASan+UBSan; the rewriter's tests
    for t in simt_selftest simt_libs_test; do
        for order in forward reverse random:$SEED; do
            run "$t [$order]" SIMT_SCHED=$order build/simt/rel/bin/dev/simt/tests/$t
        done
        run "$t [asan]" SIMT_SCHED=random:$SEED build/simt/asan/bin/dev/simt/tests/$t
    done
    run test_simt_pp python3 dev/simt/tests/test_simt_pp.py
    ;;
test_cuda_kernels)  # every dev/cuda test in every precision and three thread orders, and a BF16 ASan+UBSan build
    for p in $CUDA_PRECISIONS; do for order in forward reverse random:$SEED; do for t in $CUDA_TESTS; do
        run "$t $p [$order]" OPENBLAS_NUM_THREADS=1 SIMT_SCHED=$order build/simt/rel-$p/bin/dev/cuda/$t
    done; done; done
    for t in $CUDA_TESTS; do
        run "$t BF16 [asan]" OPENBLAS_NUM_THREADS=1 SIMT_SCHED=random:$SEED build/simt/asan-BF16/bin/dev/cuda/$t
    done
    # the tensor-core kernels under the runtime's other WMMA element mapping (the thread orders above ran
    # mapping 0; one order per precision suffices: the mapping, not the order, is what a kernel may not assume)
    for p in $CUDA_PRECISIONS; do
        run "flash_attention $p [wmma mapping 1]" OPENBLAS_NUM_THREADS=1 SIMT_SCHED=random:$SEED SIMT_WMMA_MAPPING=1 \
            build/simt/rel-$p/bin/dev/cuda/flash_attention
    done
    ;;
check_sass)  # the nvcc builds' SASS: 128-bit loads in the memory-bound kernels, HMMA in flash attention, no local
            # memory anywhere (dev/cuda/check_sass.sh); without cuobjdump one line says so, and CI fails
    if why=$(bash dev/cuda/check_sass.sh --probe); then
        for p in $CUDA_PRECISIONS; do run "check_sass $p" bash dev/cuda/check_sass.sh --all build/cuda/nvcc/$p; done
    else
        echo "check_sass: skipped, $why"
        if [ "${CI:-}" = true ]; then echo "error: CI must run every suite"; fails=1; fi
    fi
    ;;
test_cuda_sim)  # the CUDA trainer's test under SIMT in every precision against the three references (each also
                # runs the split-backward and several-stages-per-rank builders its shape allows, bitwise against
                # 1F1B, and D=2 x P=2 with and without ZeRO-1: see test_gpt2_pp.cu); then the sim-mode trainer
                # on the shipped data against the CPU trainer, and -dp 2 (dev/test/test_sim_trainer.sh)
    for p in FP32 BF16 FP16; do for r in a b v; do  # v: the fused classifier at the full vocabulary
        run "test_gpt2_pp $p ref_$r" build/sim/$p/test_gpt2_pp build/ref_$r.bin
    done; done
    runs=$((runs + 1)); bash dev/test/test_sim_trainer.sh || fails=$((fails + 1))  # prints its table of losses
    run "test_rendezvous (-pf)" bash dev/test/test_rendezvous.sh
    ;;
nvcc_check)  # without a GPU, the real trainer must say so and fail, not crash
    if ! command -v nvidia-smi > /dev/null; then
        runs=1; log=$LOGS/nodevice.log
        build/nvcc/FP32/train_gpt2_pp -x 1 > "$log" 2>&1; rc=$?
        if [ $rc -ne 0 ] && grep -q 'error: no CUDA device' "$log"; then echo "without a GPU: $(cat "$log")"
        else cat "$log"; echo "FAIL: the GPU trainer without a GPU should say 'no CUDA device' (rc=$rc)"; fails=1; fi
    fi
    ;;
*)
    echo "usage: bash dev/test/run_suite.sh test_cpu|test_simt|test_cuda_kernels|check_sass|test_cuda_sim|nvcc_check"; exit 2
    ;;
esac
echo "$SUITE: $runs runs, $fails failed, $(( $(date +%s) - start )) s"
[ $fails -eq 0 ]
