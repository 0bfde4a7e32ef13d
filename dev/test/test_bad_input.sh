#!/bin/bash
# Every kind of bad input must give one clear "error:" line naming the file or flag, and a non-zero exit.
# Usage: bash dev/test/test_bad_input.sh  (from the repo root, after make train_gpt2_pp_cpu)
set -u
source dev/test/lib.sh
TINY="-b 1 -t 8 -x 1 -v 0 -g 0"

# expect_error <what the error line must contain> <args...>
expect_error() {
    local want="$1"; shift
    timeout 60 $BIN "$@" > "$W/out" 2> "$W/err"
    local rc=$?
    local lines; lines=$(grep -c '^error: ' "$W/err")
    if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ "$lines" -eq 1 ] && grep -q -- "$want" "$W/err"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL: $* -> rc=$rc, wanted one error line containing '$want', got:"; cat "$W/err"
    fi
}

# a small valid checkpoint and corrupted copies of every input file
$BIN -e d1 $TINY -o "$W/ok" > /dev/null || { echo "cannot make a checkpoint"; echo "0 passed, 1 failed"; exit 1; }
CKPT="$W/ok/model_00000001.bin"
head -c 5000 "$CKPT" > "$W/trunc_model.bin"
{ printf '\x01\x00\x00\x00'; tail -c +5 "$CKPT"; } > "$W/magic_model.bin"
head -c 3000 data/kjv/kjv_val.bin > "$W/trunc_data.bin"
{ printf '\x01\x00\x00\x00'; tail -c +5 data/kjv/kjv_val.bin; } > "$W/magic_data.bin"
head -c 2000 data/gpt2_tokenizer.bin > "$W/trunc_tok.bin"
{ printf '\x01\x00\x00\x00'; tail -c +5 data/gpt2_tokenizer.bin; } > "$W/magic_tok.bin"

expect_error "no data file matches $W/missing.bin" -e d1 $TINY -i "$W/missing.bin"
expect_error "$W/trunc_data.bin" -e d1 $TINY -i "$W/trunc_data.bin"
expect_error "$W/magic_data.bin: bad magic" -e d1 $TINY -j "$W/magic_data.bin"
expect_error "cannot open $W/missing_tok.bin" -e d1 $TINY -tk "$W/missing_tok.bin"
expect_error "$W/trunc_tok.bin is truncated" -e d1 $TINY -tk "$W/trunc_tok.bin"
expect_error "$W/magic_tok.bin: bad magic" -e d1 $TINY -tk "$W/magic_tok.bin"
expect_error "cannot open $W/missing_model.bin" -e "$W/missing_model.bin" $TINY
expect_error "$W/trunc_model.bin" -e "$W/trunc_model.bin" $TINY
expect_error "$W/magic_model.bin: bad magic" -e "$W/magic_model.bin" $TINY
expect_error "flag -t 2000 exceeds the model's maximum sequence length 1024" -e "$CKPT" -b 1 -t 2000
expect_error "disagrees with -e d2" -e d2 $TINY -o "$W/ok" -y 1
expect_error "no complete checkpoint" -e d1 $TINY -o "$W/empty" -y 1
expect_error "flag -b (micro-batch size) must be in 1..65536" -e d1 -b 0
expect_error "flag -b (micro-batch size) must be in 1..65536" -e d1 -b -3
expect_error "flag -b expects an integer, got 'abc'" -e d1 -b abc
expect_error "flag -pm (micro-batches per step) must be in 1..65536" -e d1 -pm 0
expect_error "unknown flag -zz" -e d1 -zz 1
expect_error "flag -e expects a checkpoint file or a model descriptor" -e banana $TINY
expect_error "flag -k expects constant, cosine or noam" -e d1 $TINY -k warp

summary
