#!/bin/bash
# scripts/profile.py, plot_pipeline.py and plot_split.py on a short real run: each stage's op self times add
# up to its compute time (its actions plus its optimizer step) within 5%, the bottleneck is named, and every
# picture is written (a measured timeline, a grid of simulated schedules from -ps 1 text and from the
# simulator's trace, the model split), and plot_memory.py's memory plan picture.
set -u
TOOL=${TOOL:-./build/schedule_tool}
source dev/test/lib.sh

OMP_NUM_THREADS=1 $BIN -e d2 -b 4 -t 32 -pm 4 -pp 2 -x 2 -g 0 -m 2 -tr "$W/trace.json" > "$W/run.txt" 2>&1 || echo "training run failed"
python3 scripts/profile.py "$W/trace.json" --out "$W/flame.png" > "$W/profile.txt" 2>&1 || echo "profile.py failed"
cat "$W/profile.txt"
check "a line per stage" "[ \$(grep -c '^stage [01]: compute' '$W/profile.txt') -eq 2 ]"
# "ops X ms (Y% of its compute)": Y within 95..105 on every stage
while read -r s pct; do
    check "stage $s: op self times are $pct% of its compute (actions + optimizer), want 95..105" \
        "awk -v p=$pct 'BEGIN { exit !(p >= 95 && p <= 105) }'"
done < <(sed -n 's/^stage \([0-9]*\): compute.*ops [0-9.]* ms (\([0-9.]*\)% of its compute).*/\1 \2/p' "$W/profile.txt")
# the same within the forward/backward actions alone (the optimizer step aside)
while read -r pct; do
    check "op self times are $pct% of the actions' time, want 95..105" "awk -v p=$pct 'BEGIN { exit !(p >= 95 && p <= 105) }'"
done < <(sed -n 's/^    ops cover \([0-9.]*\)% of the actions.*/\1/p' "$W/profile.txt")
check "the bottleneck is the head's stage" "grep -q '^bottleneck: stage 1 ([0-9]*% of the compute) - .* in the LM head' '$W/profile.txt'"
check "flame graph written" "[ -s '$W/flame.png' ]"

python3 scripts/plot_pipeline.py "$W/trace.json" -o "$W/pipeline.png" > "$W/pipe.txt" 2>&1 || cat "$W/pipe.txt"
check "measured timeline written" "[ -s '$W/pipeline.png' ]"
# its bubble is the trainer's: the share of the schedule span the ranks spend not computing
want=$(grep '^step    2/2' "$W/run.txt" | sed -n 's/.*bubble \([0-9.]*\) .*/\1/p')
got=$(sed -n 's/.*bubble (idle.*) \([0-9.]*\)$/\1/p' "$W/pipe.txt")
check "timeline bubble $got equals the trainer's $want within 0.01" "awk -v a=$got -v b=$want 'BEGIN { d = a - b; exit !(d < 0.01 && d > -0.01) }'"

for s in gpipe 1f1b interleaved zbh1 zbv; do $BIN -pp 4 -pm 8 -sc $s -ps 1 > "$W/$s.txt"; done
[ -x "$TOOL" ] && $TOOL -sc zbv -P 4 -M 8 -tr "$W/zbv.json" > /dev/null
inputs="$W/gpipe.txt $W/1f1b.txt $W/interleaved.txt $W/zbh1.txt $W/zbv.txt"
[ -s "$W/zbv.json" ] && inputs="$inputs $W/zbv.json"
python3 scripts/plot_pipeline.py $inputs -o "$W/grid.png" > "$W/grid.txt" 2>&1 || cat "$W/grid.txt"
check "schedule grid written" "[ -s '$W/grid.png' ]"
# the drawn bubble of each -ps 1 timeline is the simulator's
for s in gpipe 1f1b interleaved zbh1 zbv; do
    sim=$(sed -n 's/.*units, bubble \([0-9.]*\) .*/\1/p' "$W/$s.txt")
    drawn=$(sed -n "s|^$W/$s.txt: bubble .* \([0-9.]*\)\$|\1|p" "$W/grid.txt")
    check "$s: drawn bubble $drawn = simulated $sim" "[ -n '$sim' ] && [ '$drawn' = '$sim' ]"
done
if [ -s "$W/zbv.json" ]; then
    check "zbv: simulator trace and -ps 1 text give the same bubble" \
        "[ \"\$(sed -n 's|^$W/zbv.json: bubble .* \([0-9.]*\)\$|\1|p' '$W/grid.txt')\" = \"\$(sed -n 's|^$W/zbv.txt: bubble .* \([0-9.]*\)\$|\1|p' '$W/grid.txt')\" ]"
fi

python3 scripts/plot_split.py "$W/run.txt" -o "$W/split.png" > "$W/split.txt" 2>&1 || cat "$W/split.txt"
check "split picture written" "[ -s '$W/split.png' ]"
check "split shares read from the plan" "grep -q '^stage 1: 1 layers, [0-9]*% of the compute' '$W/split.txt'"

# plot_memory.py over -plan 1 on a small model: a PNG, a line per point, the refused points (zbv at P=4 wants 8
# stages of d4's 4 layers) skipped and named; a bad binary path: one error: line and a non-zero exit
python3 scripts/plot_memory.py --bin "$BIN" -e d4 -b 4 -t 64 -pm 4 --pp 1,2,4 --schedules 1f1b,zbv --rc never,always \
    -o "$W/memory.png" > "$W/memory.txt" 2>&1 || cat "$W/memory.txt"
check "memory picture written" "[ -s '$W/memory.png' ] && [ \"\$(head -c 4 '$W/memory.png' | tail -c 3)\" = PNG ]"
check "a line per point drawn (1f1b: 3 P x 2 rc x 3 variants, zbv: 2 P x 2 rc x 3)" \
    "[ \$(grep -cE '^(1f1b|zbv) +(never|always) +[0-9]+ D' '$W/memory.txt') -eq 30 ]"
check "zbv at P=4 skipped, with the trainer's reason" "[ \$(grep -c '^skipped zbv -rc [a-z]* P=4 .*: flags -pp' '$W/memory.txt') -eq 6 ]"
python3 scripts/plot_memory.py --bin "$W/no_such_trainer" -o "$W/bad.png" > "$W/bad.txt" 2>&1
rc=$?
check "bad binary: non-zero exit ($rc)" "[ $rc -ne 0 ]"
check "bad binary: one error: line" "[ \$(grep -c '^error: ' '$W/bad.txt') -eq 1 ] && [ ! -e '$W/bad.png' ]"

summary
