#!/bin/bash
# The CUDA trainer, run under the SIMT CPU runtime with 2 pipeline stages, trains the tiny model on the shipped
# data for 20 steps: the loss falls in every precision, and in FP32 every step's loss equals the CPU trainer's
# within 1e-5 relative (same kernels' math, fp32 throughout). SIMT models one device by default, so -pp 2 puts
# both stages on it (device copies between them); SIMT_DEVICES=2 gives each stage its own device and NCCL, with
# the same bits. The run prints what the CPU trainer prints (plan, bubble, stash) and writes a trace (-tr).
set -u
source dev/test/lib.sh
ARGS="-e d4:c64:h4 -b 2 -t 32 -pm 4 -x 20 -v 10 -m 4 -g 16 -l 3e-3"
losses() { sed -n 's/.*train loss \([0-9.]*\).*/\1/p' "$1"; }

./train_gpt2_pp_cpu $ARGS -pp 2 > "$W/cpu.txt" 2>&1 || echo "CPU trainer failed"
for p in FP32 BF16 FP16; do
    timeout 600 build/sim/$p/train_gpt2_pp $ARGS -pp 2 > "$W/$p.txt" 2>&1; rc=$?
    check "$p: sim trainer exits 0 (rc=$rc)" "[ $rc -eq 0 ]"
    check "$p: 20 steps" "[ \$(losses '$W/$p.txt' | wc -l) -eq 20 ]"
    check "$p: loss falls (first $(losses "$W/$p.txt" | head -1), last $(losses "$W/$p.txt" | tail -1))" \
          "awk 'NR == 1 { a = \$1 } END { exit !(\$1 < a - 0.5) }' <(losses '$W/$p.txt')"
    check "$p: a sample is printed" "grep -q -A2 '^generating:' '$W/$p.txt'"
done
check "FP32: every loss equals the CPU trainer's within 1e-5 relative" \
      "paste <(losses '$W/cpu.txt') <(losses '$W/FP32.txt') | awk '{ d = \$1 - \$2; if (d < 0) d = -d; if (d > 1e-5 * \$1 || NF != 2) bad++ } END { exit bad > 0 || NR != 20 }'"
paste <(losses "$W/cpu.txt") <(losses "$W/FP32.txt") <(losses "$W/BF16.txt") <(losses "$W/FP16.txt") | head -20 | awk 'BEGIN { print "step  cpu        sim FP32   sim BF16   sim FP16" } { printf "%4d  %s  %s  %s  %s\n", NR, $1, $2, $3, $4 }'

# the per-step fields and reports of the CPU trainer
check "the plan: stash per stage" "[ \$(grep -c '^stage [01]: .* activation stash [0-9]* micro-batches x' '$W/FP32.txt') -eq 2 ]"
check "every step line has the measured bubble" "[ \$(grep -c 'train loss .* | bubble [0-9.]* (theory 0.200)' '$W/FP32.txt') -eq 20 ]"
check "the peak stash report" "[ \$(grep -c '^stage [01]: peak stash [0-9]* micro-batches' '$W/FP32.txt') -eq 2 ]"
check "the stages share one device" "grep -q '^devices: every stage on GPU 0' '$W/FP32.txt'"

# -plan 1 computes each stage's device memory by category from the flags, allocating nothing; a run prints
# what it allocated in the same lines, equal byte for byte (BF16: floatX parameters beside fp32 master weights;
# data parallel with ZeRO-1, ZB-V's split backward with both ends on one rank, and ZB-V on half-layer stages:
# parameters, stash and what I keeps for W sized by the attention and MLP halves each stage holds)
mem() { sed -n "s/^stage \([0-9]*\) memory ($2):\(.*\)/\1 \2/p" "$1"; }
PLAN="-e d4:c64:h4 -b 2 -t 16 -x 0 -v 0 -g 0 -pm 4"
for F in "-dp 2 -pp 2 -z 1:2" "-pp 2 -sc zbv:4" "-pp 2 -sc zbv -pl 1.5,0.5,1.5,0.5:4"; do
    build/sim/BF16/train_gpt2_pp $PLAN ${F%:*} > "$W/m.txt" 2>&1
    build/sim/BF16/train_gpt2_pp $PLAN ${F%:*} -plan 1 > "$W/plan.txt" 2>&1
    check "BF16 ${F%:*}: allocated = -plan, ${F#*:} stages" \
          "[ \$(mem '$W/m.txt' allocated | wc -l) -eq ${F#*:} ] && diff <(mem '$W/m.txt' allocated) <(mem '$W/plan.txt' plan) > /dev/null"
done
# The stash without attention's T x T matrix (issue 12), BF16, B=8, T=1024: one layer of GPT-2 124M per
# micro-batch (d13 minus d12 at C=768, NH=12) at most 210 MB (materialized attention: 403 MB); GPT-2 1.5B at
# M=8, P=4: every stage at most 40 GB under 1F1B and 80 GB under GPipe
plan_bytes() {  # stage, then its bytes per category
    build/sim/BF16/train_gpt2_pp -b 8 -t 1024 "$@" -plan 1 | sed -n 's/^stage \([0-9]*\) memory (plan):.*(bytes: \(.*\))$/\1 \2/p'
}
layer=$(( $(plan_bytes -e d13:c768:h12 -pp 1 -pm 1 | awk '{ print $5 }') - $(plan_bytes -e d12 -pp 1 -pm 1 | awk '{ print $5 }') ))
check "124M: stash per layer per micro-batch $layer bytes <= 210 MB" "[ $layer -gt 0 ] && [ $layer -le 210000000 ]"
for S in 1f1b:40 gpipe:80; do
    plan_bytes -e d48 -pm 8 -pp 4 -sc ${S%:*} | awk '{ t = 0; for (i = 2; i <= 7; i++) t += $i; print t }' > "$W/d48.txt"
    check "1.5B P=4 ${S%:*}: every stage <= ${S#*:} GB (stages: $(awk '{ printf " %.1f", $1 / 1e9 }' "$W/d48.txt") GB)" \
          "awk '\$1 > ${S#*:}e9 { bad = 1 } END { exit bad || NR != 4 }' '$W/d48.txt'"
done

# one GPU per stage (NCCL ranks as threads) gives the same bits as both stages on one GPU, and P=4 as P=2;
# the last step's trace holds both ranks' forwards, backwards and messages
SHORT="-e d4:c64:h4 -b 2 -t 32 -pm 4 -x 3 -v 0 -g 0 -l 3e-3"
SIMT_DEVICES=2 build/sim/FP32/train_gpt2_pp $SHORT -pp 2 -tr "$W/trace.json" > "$W/nccl2.txt" 2>&1
build/sim/FP32/train_gpt2_pp $SHORT -pp 2 > "$W/one2.txt" 2>&1
build/sim/FP32/train_gpt2_pp $SHORT -pp 4 > "$W/one4.txt" 2>&1
check "SIMT_DEVICES=2: one GPU per stage" "grep -q '^devices: one GPU per stage, NCCL' '$W/nccl2.txt'"
check "one GPU per stage, both stages on one GPU, and P=4 on one GPU: identical losses" \
      "[ \$(losses '$W/nccl2.txt' | wc -l) -eq 3 ] && cmp -s <(losses '$W/nccl2.txt') <(losses '$W/one2.txt') && cmp -s <(losses '$W/one2.txt') <(losses '$W/one4.txt')"
check "-tr: the trace has F0-F3 and B0-B3 of both ranks, sends, receives and the optimizer" \
      "python3 -c \"import json,sys; e=json.load(open('$W/trace.json'))['traceEvents']; n=set((x['pid'],x['name']) for x in e); \
sys.exit(not all((r,k+str(m)) in n for r in (0,1) for k in 'FB' for m in range(4)) or not {(0,'send'),(1,'recv'),(0,'optim'),(1,'optim')} <= n)\""

# The trainer's own paths around the schedules test_gpt2_pp checks bit by bit: -sf with the -ps 1 output of
# ZB-V (split backward, two stages per rank) through NCCL, -sc auto (ZB-H1's first step times each stage's F,
# I and W, then the run moves to the predicted fastest builder and split, the state moving through whole-model
# copies; the splits move by half layers from the best whole-layer ones, so the split it prints and moves to
# depends on the timings: one run here moved to zbcv on 0.5,2,1,0.5, half-layer stages), and the cost-aware
# zbcv with uneven costs: the same checkpoint bytes as 1F1B; the trace names I and W, and rank 0 runs stages 0
# and 3
build/sim/FP32/train_gpt2_pp $SHORT -pp 2 -o "$W/f1b" > /dev/null 2>&1
build/sim/FP32/train_gpt2_pp $SHORT -pp 2 -sc zbv -ps 1 > "$W/zbv.txt"
SIMT_DEVICES=2 build/sim/FP32/train_gpt2_pp $SHORT -pp 2 -sf "$W/zbv.txt" -o "$W/sf" -tr "$W/zbv.json" > "$W/sf.txt" 2>&1
build/sim/FP32/train_gpt2_pp $SHORT -pp 2 -sc auto -mem 100000 -o "$W/auto" > "$W/auto.txt" 2>&1
build/sim/FP32/train_gpt2_pp $SHORT -pp 2 -sc zbcv:1/1/1,1/1/1,1/1/1,4/2/3 -o "$W/zbcv" > /dev/null 2>&1
for d in sf auto zbcv; do
    check "-$d: model and state files byte-identical to 1F1B's" \
          "cmp -s '$W/f1b/model_00000003.bin' '$W/$d/model_00000003.bin' && cmp -s '$W/f1b/state_00000003.bin' '$W/$d/state_00000003.bin'"
done
# Stage boundaries inside a layer through the trainer's own -pl and checkpoint paths (test_gpt2_pp checks the
# stage code in every precision, bitwise against P=1): the model file gathered from stages that hold half a
# layer's tensors, m and v with them. 1F1B at P=3 on 0.5,2,1.5 (stage 0 ends at an attention half, stage 1
# starts at an MLP half and ends at an attention half), every stage on one GPU; ZB-V on 1.5,0.5,1.5,0.5 (split
# backward, a stage of one MLP half, the LM head behind one MLP half) with one GPU per rank (NCCL)
for H in "1f1b 3 0.5,2,1.5 1" "zbv 2 1.5,0.5,1.5,0.5 2"; do
    read -r sc p pl devices <<< "$H"
    SIMT_DEVICES=$devices build/sim/FP32/train_gpt2_pp $SHORT -pp $p -sc $sc -pl $pl -o "$W/half" > /dev/null 2>&1
    check "-pl $pl $sc P=$p, SIMT_DEVICES=$devices: model and state files byte-identical to 1F1B's" \
          "cmp -s '$W/f1b/model_00000003.bin' '$W/half/model_00000003.bin' && cmp -s '$W/f1b/state_00000003.bin' '$W/half/state_00000003.bin'"
    rm -rf "$W/half"
done
# Activation recomputation (-rc; the CPU trainer's test is in test_pipeline_equiv.sh). test_gpt2_pp checks
# the stage code in every precision against NumPy and bit for bit, with a comment on where each rerun can fail;
# here the trainer's own paths, in FP32 and in BF16 (GELU in cuBLASLt's epilogue, which writes fch and
# fch_gelu in one GEMM: a rerun must rewrite both the same): the flag, checkpoints and plan. The cases that
# can fail differently: except_last reruns only a forward that a later F displaced, always reruns before every
# B and I (and on the last stage recomputes d(logits), while the losses stay F's); under 1F1B a fused B, under
# ZB-V a split backward (W rerunning after later F's, two stages and two work copies per rank, the LM head's W
# on rank 0); 0.5,2,1.5 puts stage 0's output in the attention half's residual of the work copy, stage 1
# beginning at an MLP half. Model and state files byte-identical to -rc never's; -plan 1 = what the run
# allocated, with the one work copy per stage in the stash. About 55 s on the 2-core machine.
build/sim/BF16/train_gpt2_pp $SHORT -pp 2 -o "$W/rc_base_BF16" > /dev/null 2>&1
ln -s f1b "$W/rc_base_FP32"
for p in FP32 BF16; do for sc in 1f1b zbv; do for rc in except_last always; do
    build/sim/$p/train_gpt2_pp $SHORT -pp 2 -sc $sc -rc $rc -o "$W/rc" > "$W/rc.txt" 2>&1
    check "$p -rc $rc $sc: model and state files byte-identical to -rc never's" \
          "grep -q '^stage 0: -rc $rc: ' '$W/rc.txt' && cmp -s '$W/rc_base_$p/model_00000003.bin' '$W/rc/model_00000003.bin' && cmp -s '$W/rc_base_$p/state_00000003.bin' '$W/rc/state_00000003.bin'"
    if [ $p$sc$rc = BF16zbvalways ] || [ $p$sc$rc = FP321f1bexcept_last ]; then
        build/sim/$p/train_gpt2_pp $SHORT -pp 2 -sc $sc -rc $rc -plan 1 > "$W/plan.txt" 2>&1
        check "$p -rc $rc $sc: allocated = -plan, one line per stage, and the work copy printed" \
              "[ \$(mem '$W/rc.txt' allocated | wc -l) -eq \$(grep -c '^stage [0-9]: -rc $rc: .* copy of the rest' '$W/rc.txt') ] \
               && diff <(mem '$W/rc.txt' allocated) <(mem '$W/plan.txt' plan) > /dev/null"
    fi
    rm -rf "$W/rc"
done; done; done
build/sim/BF16/train_gpt2_pp $SHORT -pp 3 -pl 0.5,2,1.5 -rc except_last -o "$W/rc" > /dev/null 2>&1
check "BF16 -pl 0.5,2,1.5 1f1b P=3 -rc except_last: model and state files byte-identical to -rc never's at P=2" \
      "cmp -s '$W/rc_base_BF16/model_00000003.bin' '$W/rc/model_00000003.bin' && cmp -s '$W/rc_base_BF16/state_00000003.bin' '$W/rc/state_00000003.bin'"
rm -rf "$W/rc" "$W/rc_base_BF16" "$W/rc_base_FP32"
# At GPT-2 124M (d12, BF16, B=4, T=64, P=2) under GPipe, which stashes all M=8 micro-batches, -rc always
# plans at most a quarter of -rc never's stash, the work copies included (measured: 103 of 783 MiB)
stash_plan() { build/sim/BF16/train_gpt2_pp -e d12 -b 4 -t 64 -pp 2 -pm 8 -sc gpipe -rc $1 -plan 1 | sed -n 's/^stage [0-9]* memory (plan):.*(bytes: [0-9]* [0-9]* [0-9]* \([0-9]*\) .*/\1/p' | awk '{ s += $1 } END { printf "%.0f", s / 1048576 }'; }
NEVER=$(stash_plan never); ALWAYS=$(stash_plan always)
check "d12 GPipe M=8: -rc always plans $ALWAYS MiB of stash, at most 25% of -rc never's $NEVER MiB" \
      "[ '$ALWAYS' -gt 0 ] && [ '$NEVER' -gt 0 ] && [ \$(( 4 * $ALWAYS )) -le $NEVER ]"
check "-sf: ZB-V's 4 stages, one GPU per rank" "grep -q 'S=4 stages, schedule $W/zbv.txt' '$W/sf.txt' && grep -q '^devices: one GPU per stage' '$W/sf.txt'"
check "-sc auto -mem: ZB-H1's F, I and W, each builder's split, prediction and largest rank (-plan), the choice" \
      "grep -q '^-sc auto: measured on step 2 (zbh1)' '$W/auto.txt' \
       && grep -Eq '^-sc auto: zbcv +[0-9.]+,[0-9.]+,[0-9.]+,[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ MiB +-sc zbcv:' '$W/auto.txt' \
       && grep -Eq '^-sc auto: (moving to|staying with) [a-z0-9:./,+-]+ split [0-9.,]+ \(the fastest within -mem 100000 MiB' '$W/auto.txt'"
check "-tr: I0-I3 and W0-W3 on both ranks, rank 0 on stages 0 and 3" \
      "python3 -c \"import json,sys; e=json.load(open('$W/zbv.json'))['traceEvents']; n=set((x['pid'],x['name']) for x in e); \
st=set(x['args']['stage'] for x in e if x['pid']==0 and x['cat']=='action'); \
sys.exit(not all((r,k+str(m)) in n for r in (0,1) for k in 'IW' for m in range(4)) or st != {0,3})\""
# the layernorm weight gradients accumulate in I here, so a file whose I's break micro-batch order (which the
# validator and the CPU trainer accept) is refused with one line
printf '0F0 0F1 0I1 0I0 0W0 0W1\n' > "$W/i_order.txt"
build/sim/FP32/train_gpt2_pp $SHORT -pm 2 -sf "$W/i_order.txt" > "$W/i_order.out" 2>&1; rc=$?
check "-sf with I1 before I0: one error line (rc=$rc)" \
      "[ $rc -ne 0 ] && [ \$(wc -l < '$W/i_order.out') -eq 1 ] && grep -q \"^error: $W/i_order.txt: '0I0' comes after\" '$W/i_order.out'"

# test_gpt2_pp with 2 and 4 devices: the NCCL path (P <= devices) against NumPy, bitwise equal to P=1 and to
# every stage on one GPU
for d in 2 4; do
    SIMT_DEVICES=$d build/sim/FP32/test_gpt2_pp build/ref_a.bin > "$W/test$d.txt" 2>&1
    check "SIMT_DEVICES=$d test_gpt2_pp: $(tail -n 1 "$W/test$d.txt")" "tail -n 1 '$W/test$d.txt' | grep -q ' 0 failed'"
done

# FP32 checkpoints move between the trainers: 2 steps of the CUDA trainer at P=4, then 2 more on the CPU
# trainer at P=1, against 4 CPU steps; and the other way round (CPU at P=1, then CUDA at P=4)
ARGS="-e d4:c64:h4 -b 2 -t 32 -pm 2 -v 0 -g 0 -l 3e-3 -k noam -u 2"
./train_gpt2_pp_cpu $ARGS -x 4 -o "$W/cpu4" > "$W/cpu4.txt" 2>&1
build/sim/FP32/train_gpt2_pp $ARGS -x 2 -pp 4 -o "$W/g2c" > /dev/null 2>&1
./train_gpt2_pp_cpu $ARGS -x 4 -o "$W/g2c" -y 1 > "$W/g2c.txt" 2>&1
./train_gpt2_pp_cpu $ARGS -x 2 -o "$W/c2g" > /dev/null 2>&1
build/sim/FP32/train_gpt2_pp $ARGS -x 4 -pp 4 -o "$W/c2g" -y 1 > "$W/c2g.txt" 2>&1
for d in g2c c2g; do
    check "$d: resumed at step 2" "grep -q 'step    3/4' '$W/$d.txt' && ! grep -q 'step    1/4' '$W/$d.txt'"
    check "$d: steps 3-4 match the uninterrupted CPU run within 1e-5 relative" \
          "paste <(losses '$W/cpu4.txt' | tail -2) <(losses '$W/$d.txt') | awk '{ d = \$1 - \$2; if (d < 0) d = -d; if (d > 1e-5 * \$1 || NF != 2) bad++ } END { exit bad > 0 || NR != 2 }'"
done

# Data parallelism (-dp D, -z 1). dev/test/test_data_parallel.sh runs the whole matrix on the CPU trainer; this
# is the subset where the CUDA trainer's own code can fail differently, in FP32 and in BF16 (where ZeRO-1 also
# all-gathers the bf16 parameters beside the fp32 master weights):
#  - byte-identical model and state files at D=2 across P=1 and P=2 (the shard pieces are cut per tensor and
#    layer, so the fixed-order sums cannot see the split), 1F1B, ZB-H1 (W after later I's: the reduction must
#    not see the order of weight-gradient work), ZB-V (two stages per rank, both copies of the tied wte on one
#    rank), ZeRO-1 (moments packed piece after piece, the parameter all-gather, the checkpoint assembling the
#    moments from both replicas) and NCCL with one device per rank (SIMT_DEVICES=4: grouped ncclSend/ncclRecv)
#    against device copies between ranks on one device;
#  - D=2 against D=1 on the same global batch, see below;
#  - one error line for -z 1 at D=1 and for a world that is not D*P.
DP="-e d4:c64:h4 -b 2 -t 16 -x 3 -v 0 -g 0 -l 3e-3 -u 1 -pm 4"
for p in FP32 BF16; do
    build/sim/$p/train_gpt2_pp $DP -dp 2 -pp 1 -o "$W/dp" > "$W/dp.txt" 2>&1
    check "$p D=2 P=1: prints the grid" "grep -q '^grid: D=2 replicas x P=1 pipeline ranks = 2 ranks' '$W/dp.txt'"
    for F in "-pp 2 -sc 1f1b" "-pp 2 -sc zbh1 -z 1" "-pp 2 -sc zbv" "-pp 2 -sc 1f1b -z 1 NCCL"; do
        n=""; [ "${F% NCCL}" != "$F" ] && n=4
        SIMT_DEVICES=${n:-1} build/sim/$p/train_gpt2_pp $DP -dp 2 ${F% NCCL} -o "$W/r" > "$W/r.txt" 2>&1
        check "$p D=2 $F: model and state files byte-identical to D=2 P=1 1f1b" \
              "cmp -s '$W/dp/model_00000003.bin' '$W/r/model_00000003.bin' && cmp -s '$W/dp/state_00000003.bin' '$W/r/state_00000003.bin'"
        rm -rf "$W/r"
    done
    check "$p: NCCL with one device per rank ran" "grep -q '^devices: one GPU per stage, NCCL' '$W/r.txt'"
    rm -rf "$W/dp"
done

# The state moving between ranks, FP32: saved at D=2 P=2 under ZeRO-1 (the moments assembled from both
# replicas' shards) and resumed at D=2 P=1 (each rank keeping its shard of the whole file), and -sc auto moving a
# ZeRO-1 run to another builder through whole-model copies sent to every rank of the job: the bytes of 3
# uninterrupted D=2 1F1B steps
DP="-e d4:c64:h4 -b 2 -t 16 -v 0 -g 0 -l 3e-3 -k noam -u 2 -pm 4"
build/sim/FP32/train_gpt2_pp $DP -x 3 -dp 2 -pp 2 -o "$W/u" > /dev/null 2>&1
build/sim/FP32/train_gpt2_pp $DP -x 2 -dp 2 -pp 2 -z 1 -o "$W/s" > /dev/null 2>&1
build/sim/FP32/train_gpt2_pp $DP -x 3 -dp 2 -pp 1 -z 1 -o "$W/s" -y 1 > "$W/s.txt" 2>&1
build/sim/FP32/train_gpt2_pp $DP -x 3 -dp 2 -pp 2 -z 1 -sc auto -o "$W/au" > "$W/au.txt" 2>&1
for d in s au; do
    check "-dp 2 -z 1 $([ $d = s ] && echo 'resumed at P=1' || echo '-sc auto'): model and state files byte-identical" \
          "cmp -s '$W/u/model_00000003.bin' '$W/$d/model_00000003.bin' && cmp -s '$W/u/state_00000003.bin' '$W/$d/state_00000003.bin'"
done
check "-dp 2 -sc auto chose a schedule" "grep -q '^-sc auto: ' '$W/au.txt'"

# D=2 against D=1 on the same global batch (D*M = 8 micro-batches), in FP32; the validation's 3 micro-batches
# split 3+0 over the replicas, and a sample comes from replica 0. As in test_data_parallel.sh, the runs
# differ only in the order of fp32 sums: one replica accumulates 8 micro-batches' gradients in a row, two add
# their partial sums of 4 (and the norm slots their two halves). Per element that moves a gradient by at most
# 8 * 2^-24 (5e-7) of the sum of magnitudes, and AdamW's update by as much relative, so over 6 steps at lr
# 3e-3 the losses near 10 agree to a few float ulps. We allow 2e-5 absolute (~30 ulps at 10), 500x below the
# 1e-2 that half the global batch moves them: the control run below must fall outside 1e-3.
DP="-e d4:c64:h4 -b 2 -t 16 -x 6 -v 3 -m 3 -l 3e-3 -u 1"
all_losses() { grep -o 'loss [0-9.]*' "$1" | awk '{ print $2 }'; }
within() { paste <(all_losses "$1") <(all_losses "$2") | awk -v tol="$3" 'NF != 2 { bad = 1 } { d = $1 - $2; if (d < 0) d = -d; if (d > tol) bad = 1 } END { exit bad || NR < 9 }'; }
build/sim/FP32/train_gpt2_pp $DP -g 0 -pm 8 > "$W/d1.txt" 2>&1
build/sim/FP32/train_gpt2_pp $DP -g 8 -pm 4 -dp 2 > "$W/d2.txt" 2>&1
build/sim/FP32/train_gpt2_pp $DP -g 0 -pm 4 > "$W/half.txt" 2>&1
check "FP32 D=2 M=4 vs D=1 M=8: train and val losses within 2e-5" "within '$W/d1.txt' '$W/d2.txt' 2e-5"
check "the comparison can fail: half the global batch is outside 1e-3" "! within '$W/d1.txt' '$W/half.txt' 1e-3"
check "D=2: a sample from replica 0" "grep -q -A2 '^generating:' '$W/d2.txt'"

bad() {  # bad <label> <message> <command...>
    local label=$1 msg=$2; shift 2
    "$@" > "$W/bad.txt" 2>&1; local rc=$?
    check "$label: one error line '$msg' (rc=$rc)" "[ $rc -ne 0 ] && [ \$(wc -l < '$W/bad.txt') = 1 ] && grep -q '^error: .*$msg' '$W/bad.txt'"
}
bad "-z 1 with D=1" "flag -z 1 with -dp 1 is a no-op" build/sim/FP32/train_gpt2_pp $SHORT -z 1
bad "-e with head size 10" "flag -e d4:c40:h4: head size C/NH = 40/4 = 10; flash attention needs a multiple of 16" \
    build/sim/FP32/train_gpt2_pp $SHORT -e d4:c40:h4
bad "3 ranks for -dp 2" "flag -dp 2 does not divide the 3 ranks" \
    env SLURM_JOB_ID=1 SLURM_PROCID=0 SLURM_NTASKS=3 SLURM_LOCALID=0 build/sim/FP32/train_gpt2_pp $SHORT -dp 2 -pf "$W"
bad "2 ranks for -dp 2 -pp 2" "flags -dp 2 -pp 2 need 4 ranks" \
    env SLURM_JOB_ID=1 SLURM_PROCID=0 SLURM_NTASKS=2 SLURM_LOCALID=0 build/sim/FP32/train_gpt2_pp $SHORT -dp 2 -pp 2 -pf "$W"

summary
