#!/bin/bash
# Bitwise equivalence of every pipeline split: for each M, the checkpoints (model and optimizer state) after
# 3 steps are byte-identical across P = 1..4 ranks, every schedule, and both launch modes (ranks as threads
# of one process, and one MPI process per rank). Then checkpoints do not depend on P: a run saved at P = 4 resumes at
# P = 1 and 2 and ends byte-identical to uninterrupted runs. Last, the stash each rank used: M micro-batches
# for GPipe, min(P-r, M) for 1F1B. Splits with halves of layers too.
set -u
source dev/test/lib.sh
MPI=$(mpi_built && echo 1 || echo 0)
ARGS="-e d4:c64:h4 -b 2 -t 16 -x 3 -v 0 -g 0 -l 3e-3 -u 1"

# same_as_base <dir> <label>: the run's checkpoint after 3 steps is the baseline's, byte for byte
same_as_base() {
    check "$2: model identical" "cmp -s '$W/base/model_00000003.bin' '$1/model_00000003.bin'"
    check "$2: optimizer state identical" "cmp -s '$W/base/state_00000003.bin' '$1/state_00000003.bin'"
}

run() {  # run <dir> <P> <schedule> <M> <mode> [more flags]
    if [ "$5" = mpi ]; then
        OMP_NUM_THREADS=1 timeout 120 mpirun -np "$2" $BIN $ARGS -pp "$2" -sc "$3" -pm "$4" "${@:6}" -o "$1" > "$1.txt" 2>&1
    else
        timeout 120 $BIN $ARGS -pp "$2" -sc "$3" -pm "$4" "${@:6}" -o "$1" > "$1.txt" 2>&1
    fi
}

# What is left out adds nothing that can fail differently: P=1 GPipe in one process is the baseline's own
# command line; mpirun changes the transport alone, so it runs at M=3 (fewer micro-batches than P=4 ranks, not a
# multiple of P=2) and M=8 (more than every P), where the messages in flight differ, and with P >= 2 only.
for M in 1 2 3 4 8; do
    run "$W/base" 1 gpipe $M local || echo "baseline run failed (M=$M)"
    for P in 1 2 3 4; do
        for S in gpipe 1f1b; do
            for MODE in local $( [ $MPI = 1 ] && [ $P -gt 1 ] && { [ $M = 3 ] || [ $M = 8 ]; } && echo mpi ); do
                [ $P = 1 ] && [ $S = gpipe ] && [ $MODE = local ] && continue
                D="$W/p${P}_${S}_${MODE}"
                run "$D" $P $S $M $MODE
                same_as_base "$D" "M=$M P=$P $S $MODE"
                rm -rf "$D"
            done
        done
    done
    rm -rf "$W/base"
done
[ $MPI = 1 ] || { echo "FAIL: this build has no MPI, the mpirun launches were not tested"; failed=$((failed + 1)); }

# Split backward (I, W) and several stages per rank: every other builder against one stage, on a model with
# 8 layers so that ZB-V and interleaved (2P stages) fit P = 4. Every P in one process, at M = 1 (fewer micro-batches
# than ranks), 3 (not a multiple of P = 2), 4 and 8 (more than every P); M = 2 would add only M = P at P = 2, which
# M = 3 at P = 3 and M = 4 at P = 4 already show. Under mpirun only M = 4 and P >= 2: the launch mode changes the transport alone, which GPipe and 1F1B above
# cover. Each run also checks that each stage's peak stash is the schedule's count that the plan printed.
ARGS="-e d8:c32:h2 -b 2 -t 16 -x 3 -v 0 -g 0 -l 3e-3 -u 1"
for M in 1 3 4 8; do
    run "$W/base" 1 gpipe $M local || echo "baseline run failed (M=$M)"
    for S in zbh1 zbh2 zbv interleaved; do
        for P in 1 2 3 4; do
            for MODE in local $( [ $MPI = 1 ] && [ $M = 4 ] && [ $P -gt 1 ] && echo mpi ); do
                D="$W/p${P}_${S}_${MODE}"
                if ! run "$D" $P $S $M $MODE; then
                    check "M=$M P=$P $S: refused with one error line" "grep -q '^error: flag -sc $S cannot run P=$P, M=$M' '$D.txt'"
                    continue
                fi
                same_as_base "$D" "M=$M P=$P $S $MODE"
                check "M=$M P=$P $S $MODE: peak stash = the schedule's count" \
                    "diff <(sed -n 's/^stage \([0-9]*\):.* activation stash \([0-9]*\) micro-batches.*/\1 \2/p' '$D.txt') \
                          <(sed -n 's/^stage \([0-9]*\): peak stash \([0-9]*\) micro-batches.*/\1 \2/p' '$D.txt')"
                rm -rf "$D"
            done
        done
    done
    rm -rf "$W/base"
done

# -sc auto moves to another schedule, and to another split of the layers when the measured costs say so,
# through a whole-model copy: the run ends with the bits of 1F1B all along
ARGS="-e d8:c32:h2 -b 2 -t 16 -x 4 -v 0 -g 0 -l 3e-3 -u 1 -pm 4"
run "$W/base" 2 1f1b 4 local
$BIN $ARGS -pp 2 -sc auto -o "$W/auto" > "$W/auto.txt" 2>&1
check "-sc auto: decided ($(grep -o 'moving to .*\|staying with .*' "$W/auto.txt"))" "grep -Eq '^-sc auto: (moving to|staying with) ' '$W/auto.txt'"
check "-sc auto: model identical to 1F1B's" "cmp -s '$W/base/model_00000004.bin' '$W/auto/model_00000004.bin'"
check "-sc auto: optimizer state identical to 1F1B's" "cmp -s '$W/base/state_00000004.bin' '$W/auto/state_00000004.bin'"
# the cost-aware builder with uneven costs (a heavy LM-head stage), whose order and stash follow the costs: the
# bits of 1F1B, and each stage's peak stash is the schedule's count
run "$W/zbcv" 2 zbcv:1/1/1,1/1/1,2/2/1,6/3/4 4 local
check "zbcv with costs: model and optimizer state identical to 1F1B's" \
      "cmp -s '$W/base/model_00000004.bin' '$W/zbcv/model_00000004.bin' && cmp -s '$W/base/state_00000004.bin' '$W/zbcv/state_00000004.bin'"
check "zbcv with costs: peak stash = the schedule's count" \
    "diff <(sed -n 's/^stage \([0-9]*\):.* activation stash \([0-9]*\) micro-batches.*/\1 \2/p' '$W/zbcv.txt') \
          <(sed -n 's/^stage \([0-9]*\): peak stash \([0-9]*\) micro-batches.*/\1 \2/p' '$W/zbcv.txt') && grep -q '^stage 3: peak stash' '$W/zbcv.txt'"
rm -rf "$W/base" "$W/auto" "$W/zbcv"

# Stage boundaries inside a layer (-pl with halves: a layer's attention half on one stage, its MLP half on the
# next): the bits of one stage. The cases differ in what can break: 1F1B (fused B) with a stage that starts on
# an MLP half and one of a single half; ZB-V (I and W kept apart, four stages) with boundaries of both kinds and
# a last stage of one MLP half beside the LM head; ZB-H1 at P=4 with an empty stage between halves; -rc always
# (the forward rerun over halves); mpirun (the transport alone, once); resuming at P=1 from a half split
# (checkpoint slices of half-held tensors).
ARGS="-e d8:c32:h2 -b 2 -t 16 -x 3 -v 0 -g 0 -l 3e-3 -u 1 -pm 4"
$BIN $ARGS -pp 1 -o "$W/base" > /dev/null
for C in "1f1b 3 0.5,4,3.5 local" "zbv 2 1.5,2.5,3.5,0.5 local" "zbh1 4 2.5,0,3,2.5 local" "zbv 2 1.5,2.5,3.5,0.5 mpi"; do
    set -- $C
    run "$W/half" "$2" "$1" 4 "$4" -pl "$3" || echo "half-layer run failed: $C"
    same_as_base "$W/half" "-pl $3 $1 P=$2 $4"
    rm -rf "$W/half"
done
$BIN $ARGS -pp 2 -sc zbv -pl 1.5,2.5,3.5,0.5 -rc always -o "$W/half" > /dev/null
same_as_base "$W/half" "-pl 1.5,2.5,3.5,0.5 zbv -rc always"
rm -rf "$W/half"
rm -rf "$W/base"
ARGS="-e d8:c32:h2 -b 2 -t 16 -v 0 -g 0 -pm 4 -l 3e-3 -k noam -u 2"  # noam: the learning rate does not depend on -x
$BIN $ARGS -x 3 -pp 1 -o "$W/base" > /dev/null
$BIN $ARGS -x 2 -pp 2 -pl 4.5,3.5 -o "$W/half" > /dev/null
$BIN $ARGS -x 3 -pp 1 -o "$W/half" -y 1 > /dev/null
same_as_base "$W/half" "saved at -pl 4.5,3.5, resumed at P=1"
rm -rf "$W/half" "$W/base"
[ $MPI = 1 ] || { echo "FAIL: this build has no MPI, the half-layer mpirun launch was not tested"; failed=$((failed + 1)); }

# Activation recomputation (-rc) gives the same bits under a fused and a split backward, and at GPT-2 124M
# (d12, B=4, T=64, 1F1B, P=2) -rc always stashes at most a quarter of what -rc never does (printed plan).
ARGS="-e d4:c64:h4 -b 2 -t 16 -x 3 -v 0 -g 0 -l 3e-3 -u 1 -pm 4"
$BIN $ARGS -pp 1 -o "$W/base" > /dev/null
for S in 1f1b zbh1; do for RC in except_last always; do
    $BIN $ARGS -pp 2 -sc $S -rc $RC -o "$W/rc" > /dev/null
    same_as_base "$W/rc" "-rc $RC $S"
    rm -rf "$W/rc"
done; done
rm -rf "$W/base"
stash_mib() { $BIN -e d12 -b 4 -t 64 -pp 2 -pm 8 -sc 1f1b -x 0 -v 0 -g 0 -rc "$1" | sed -n 's/^stage \([0-9]\):.*activation stash \([0-9]*\) micro-batches x \([0-9.]*\) MiB.*/\2 \3/p' | awk '{ s += $1 * $2 } END { print s }'; }
NEVER=$(stash_mib never); ALWAYS=$(stash_mib always)
check "-rc always stashes $ALWAYS MiB, at most 25% of -rc never's $NEVER MiB" "awk 'BEGIN { exit !($ALWAYS > 0 && $ALWAYS <= 0.25 * $NEVER) }'"

# checkpoints do not depend on P: 2 steps at P=4, then 2 more at P=1 or P=2, equal an uninterrupted run
ARGS="-e d4:c64:h4 -b 2 -t 16 -v 0 -g 0 -pm 4 -l 3e-3 -k noam -u 2"
$BIN $ARGS -x 2 -pp 4 -o "$W/ck4" > /dev/null
for P in 1 2; do
    $BIN $ARGS -x 4 -pp $P -o "$W/whole$P" > /dev/null
    cp -r "$W/ck4" "$W/res$P"
    $BIN $ARGS -x 4 -pp $P -o "$W/res$P" -y 1 > /dev/null
    for f in model_00000004.bin state_00000004.bin; do
        check "saved at P=4, resumed at P=$P: $f identical" "cmp -s '$W/whole$P/$f' '$W/res$P/$f'"
    done
done

# the activation stash holds exactly the micro-batches in flight: M per rank for GPipe, min(P-r, M) for 1F1B
for M in 2 8; do
    for S in gpipe 1f1b; do
        $BIN -e d4:c64:h4 -b 2 -t 16 -x 1 -v 0 -g 0 -pp 4 -pm $M -sc $S > "$W/stash.txt" 2>&1
        for r in 0 1 2 3; do
            want=$M; [ $S = 1f1b ] && want=$(( 4 - r < M ? 4 - r : M ))
            check "stash P=4 M=$M $S rank $r: $want micro-batches" "grep -q '^stage $r: peak stash $want micro-batches' '$W/stash.txt'"
        done
    done
done

summary
