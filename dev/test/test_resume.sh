#!/bin/bash
# Bit-exact resume: 6 steps in one go must equal 3 steps, a checkpoint, a restart with -y 1 and 3 more steps:
# the same train losses and byte-identical final checkpoint files.
set -u
source dev/test/lib.sh
# noam depends on the step only, not on -x, so the two halves see the same learning rates
ARGS="-e d1 -b 2 -t 16 -pm 2 -v 3 -m 2 -g 8 -s 3 -l 3e-3 -u 2 -k noam"

$BIN $ARGS -x 6 -o "$W/full" > "$W/full.txt" || echo "full run failed"
$BIN $ARGS -x 3 -o "$W/split" > "$W/a.txt" || echo "first half failed"
$BIN $ARGS -x 6 -o "$W/split" -y 1 > "$W/b.txt" || echo "resumed half failed"

check "the resumed run says where it resumed" "grep -q 'resumed from .*model_00000003.bin at step 3' '$W/b.txt'"
for f in model_00000006.bin state_00000006.bin DONE_00000006; do
    check "$f exists and is byte-identical" "cmp -s '$W/full/$f' '$W/split/$f'"
done
# the train-loss lines of steps 1..6, from the log of each run
check "train losses identical" "diff <(grep trl '$W/full/main.log') <(grep trl '$W/split/main.log')"
check "val losses identical" "diff <(grep tel '$W/full/main.log' | sort -u) <(grep tel '$W/split/main.log' | sort -u)"
check "no temporary files left" "! ls '$W/full' '$W/split' | grep -q '\.tmp$'"

# -sh 1 (llm.c's shuffled order): the same, with the loader's position in the permutations; -v 0: no validation
ARGS="-e d1 -b 2 -t 16 -pm 2 -v 0 -g 0 -l 3e-3 -k constant -sh 1"
$BIN $ARGS -x 6 -o "$W/shfull" > "$W/shfull.txt" || echo "shuffled full run failed"
$BIN $ARGS -x 3 -o "$W/shsplit" > /dev/null || echo "shuffled first half failed"
$BIN $ARGS -x 6 -o "$W/shsplit" -y 1 > /dev/null || echo "shuffled resumed half failed"
for f in model_00000006.bin state_00000006.bin; do
    check "-sh 1: $f byte-identical after a resume" "cmp -s '$W/shfull/$f' '$W/shsplit/$f'"
done
$BIN ${ARGS% -sh 1} -x 2 -o "$W/plain" > /dev/null || echo "unshuffled run failed"
check "-sh 1 reads other batches than -sh 0" "! diff -q <(grep trl '$W/shfull/main.log' | head -2) <(grep trl '$W/plain/main.log') > /dev/null"
check "-v 0: no val loss printed or logged" "! grep -q 'val loss' '$W/shfull.txt' && ! grep -q tel '$W/shfull/main.log'"
check "-sh 0 on a -sh 1 checkpoint is refused" "! $BIN \${ARGS% -sh 1} -x 7 -o '$W/shsplit' -y 1 > '$W/mix.txt' 2>&1 && grep -q 'saved with -sh 1' '$W/mix.txt'"

summary
