#!/bin/bash
# -pf (Slurm without MPI): the NCCL id travels through a file named by job and step. Under the SIMT runtime a
# communicator cannot span processes, so this checks the rendezvous itself, one process per rank:
#   - a stale id file from an earlier job in the directory is not read: rank 1 waits for its own job's file
#     and, with no rank 0, stops after -to with a message naming the file;
#   - rank 0 replaces a stale file of its own job step (a requeued run) with a fresh id;
#   - rank 0 whose peer never arrives stops after -to (plus NCCL start-up) with a message.
set -u
BIN=${BIN:-build/sim/FP32/train_gpt2_pp}
source dev/test/lib.sh
ARGS="-pf $W -e d2:c32:h2 -b 2 -t 16 -x 1 -g 0 -v 0 -to 3"
export SLURM_NTASKS=2 SLURM_STEP_ID=0 SIMT_DEVICES=2
printf 'an id from job 100, long gone..........................' > "$W/ncclUniqueId.100.0.bin"
printf 'an id from an earlier run of job 101 (requeued)........' > "$W/ncclUniqueId.101.0.bin"
cp "$W/ncclUniqueId.101.0.bin" "$W/stale"
rm "$W/ncclUniqueId.101.0.bin"

start=$(date +%s)
SLURM_JOB_ID=101 SLURM_PROCID=1 SLURM_LOCALID=1 timeout 30 $BIN $ARGS > "$W/r1.txt" 2>&1; rc=$?
check "rank 1 without rank 0: exit 1 (rc=$rc)" "[ $rc -eq 1 ]"
check "rank 1 waited for job 101's file, not job 100's" "grep -q '^error: rank 1: no .*ncclUniqueId.101.0.bin after 3 s' '$W/r1.txt'"
check "rank 1 stopped within -to + 10 s" "[ $(( $(date +%s) - start )) -le 13 ]"

cp "$W/stale" "$W/ncclUniqueId.101.0.bin"
start=$(date +%s)
SLURM_JOB_ID=101 SLURM_PROCID=0 SLURM_LOCALID=0 timeout 30 $BIN $ARGS > "$W/r0.txt" 2>&1; rc=$?
check "rank 0 replaced its job step's stale id file" "! cmp -s '$W/stale' '$W/ncclUniqueId.101.0.bin'"
check "rank 0 without rank 1: exit 1 with a message (rc=$rc)" "[ $rc -eq 1 ] && grep -q '^error: rank 0: NCCL did not start' '$W/r0.txt'"
check "rank 0 stopped within -to + 10 s" "[ $(( $(date +%s) - start )) -le 13 ]"
check "job 100's file untouched" "grep -q 'job 100' '$W/ncclUniqueId.100.0.bin'"

summary
