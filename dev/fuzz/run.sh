#!/bin/bash
# Builds the libFuzzer harnesses in dev/fuzz/ (clang, ASan + UBSan) and runs each for FUZZ_SECONDS (30),
# seeded from the real files in data/ and small generated ones. Prints the executions per harness; exits
# non-zero if any harness crashed, hung or failed to build (the crashing input is kept in build/fuzz/).
# Usage: bash dev/fuzz/run.sh [harness...]   (from the repo root; default: all)
set -u
SECONDS_EACH=${FUZZ_SECONDS:-30}
# FUZZ_SEED: libFuzzer's seed (make test fixes it, so a CI run explores the same way each time)
CC=${FUZZ_CC:-clang}
OUT=build/fuzz
mkdir -p "$OUT"
HARNESSES=${*:-shard tokenizer checkpoint state args schedule}
CFLAGS="-g -O1 -std=c11 -D_GNU_SOURCE -I. -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all"

# seeds: valid inputs of each kind, small enough that the fuzzer mutates them quickly
python3 - "$OUT" << 'PY'
import os, struct, sys
out = sys.argv[1]
def seed(name, i, data):
    d = os.path.join(out, "seeds_" + name); os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "seed%d" % i), "wb").write(data)
def header(*ints): return struct.pack("<256i", *(list(ints) + [0] * (256 - len(ints))))
# shard: 4 bytes of B, T and vocabulary size (50257), then the shard
for i, n in enumerate([20, 64]):
    seed("shard", i, bytes([1, 7, 0x50, 0xC4]) + header(20240520, 1, n) + struct.pack("<%dH" % n, *[(7 * k) % 50257 for k in range(n)]))
real = "data/kjv/kjv_val.bin"
if os.path.exists(real):
    toks = open(real, "rb").read()[1024:1024 + 2 * 200]
    seed("shard", 2, bytes([2, 15, 0x50, 0xC4]) + header(20240520, 1, len(toks) // 2) + toks)
# tokenizer: a 10-token one (eot 9), version 1 and 2, and the real one
toks = b"".join(bytes([len(t)]) + t for t in [b"a", b"b", b" the", b"\n", b"xyz", b"\xe2\x80", b"\x99", b"!", b"ab", b"<|endoftext|>"])
seed("tokenizer", 0, header(20240328, 2, 10, 9) + toks)
seed("tokenizer", 1, header(20240328, 1, 10) + toks)
if os.path.exists("data/gpt2_tokenizer.bin"):
    seed("tokenizer", 2, open("data/gpt2_tokenizer.bin", "rb").read())
# checkpoint: maxT=4 V=5 Vp=8 L=2 NH=2 C=8 (fuzz_checkpoint.c reads both stages)
def nparams(maxT, V, Vp, L, NH, C):
    return Vp * C + maxT * C + L * (C + C + 3 * C * C + 3 * C + C * C + C + C + C + 4 * C * C + 4 * C + 4 * C * C + C) + 2 * C
for i, shape in enumerate([(4, 5, 8, 2, 2, 8), (4, 5, 8, 1, 1, 4)]):
    n = nparams(*shape)
    seed("checkpoint", i, header(20240326, 3, *shape[:1], shape[1], shape[3], shape[4], shape[5], shape[2]) + struct.pack("<%df" % n, *[0.01 * (k % 7) for k in range(n)]))
# state of the model fuzz_state.c loads: maxT=4 V=5 Vp=8 L=1 NH=2 C=8
n = nparams(4, 5, 8, 1, 2, 8)
def state(step, adam_t, settings):
    h = list(struct.unpack("<256i", header(20261125, 2, step, adam_t)))
    h[4:12] = struct.unpack("<8i", struct.pack("<qqqq", n, 0, 3, 1337))
    h[14:24] = settings
    return struct.pack("<256i", *h) + struct.pack("<%df" % n, *[0.001] * n) + struct.pack("<%df" % n, *[1e-6] * n)
seed("state", 0, state(3, 3, [0] * 10))
fl = list(struct.unpack("<4i", struct.pack("<4f", 1e-3, 0.1, 0.0, 1.0)))
seed("state", 1, state(5, 4, [8, 64, 1, 0] + fl + [123, 456]))
# command lines: arguments separated by NUL; the first byte picks the CPU (even) or CUDA (odd) flag set
for i, args in enumerate([["-e", "d4:c64:h4", "-b", "2", "-t", "16", "-pm", "4", "-pp", "2", "-pl", "1,3"],
                          ["-l", "3e-4", "-q", "0.5", "-c", "0.1", "-cl", "0", "-x", "10", "-o", "out/x", "-y", "1", "-to", "2.5", "-nf", "4"],
                          ["-e", "d12", "-ls", "1024", "-li", "10", "-ge", "0", "-k", "noam", "-u", "5"]]):
    seed("args", i, bytes([i]) + b"\0".join(a.encode() for a in args))
# schedules: GPipe P=2 M=2 with messages, 1F1B compute only, an empty rank
seed("schedule", 0, b"0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n")
seed("schedule", 1, b"# 1f1b\n0F0 0F1 0B0 0F2 0B1 0B2\n1F0 1B0 1F1 1B1 1F2 1B2\n")
seed("schedule", 2, b"0F0,0B0\n-\n")
# found by fuzz_schedule: a rank listing F more often than S*M overran the message queue of schedule_add_comms
seed("schedule", 3, b"1B2\n# f1b\n0F0 0F1 0F0 0F0 0F1 0F1 0F0 0F1 0F0 0F0 0F1 0F1 0F0 0F0 0F0\n")
PY

failed=0
for h in $HARNESSES; do
    bin=$OUT/fuzz_$h
    if ! $CC $CFLAGS dev/fuzz/fuzz_$h.c -o "$bin" -lm; then echo "fuzz_$h: build failed"; failed=1; continue; fi
    mkdir -p "$OUT/corpus_$h"
    # -close_fd_mask=3: the parsers' "error:" lines stay quiet (libFuzzer and sanitizer reports still print)
    ASAN_OPTIONS=detect_leaks=0 "$bin" "$OUT/corpus_$h" "$OUT/seeds_$h" -max_total_time="$SECONDS_EACH" \
        ${FUZZ_SEED:+-seed=$FUZZ_SEED} -timeout=10 -rss_limit_mb=2048 -max_len=16384 -close_fd_mask=3 -print_final_stats=1 \
        -artifact_prefix="$OUT/crash_${h}_" > "$OUT/fuzz_$h.log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$OUT/fuzz_$h.log" | grep -o '[0-9]*$')
    if [ $rc -eq 0 ]; then
        printf 'fuzz_%-10s %10s executions in %ss, no crash\n' "$h" "${execs:-?}" "$SECONDS_EACH"
    else
        printf 'fuzz_%-10s FAILED (exit %d) after %s executions; log %s:\n' "$h" $rc "${execs:-?}" "$OUT/fuzz_$h.log"
        grep -A 30 -m 1 'ERROR\|runtime error\|deadly signal\|timeout' "$OUT/fuzz_$h.log" | head -40
        failed=1
    fi
done
exit $failed
