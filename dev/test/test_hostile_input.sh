#!/bin/bash
# The bad-input suite (issue 14): hostile shards, tokenizers, checkpoints, resume states, flags, schedule
# files and output paths, and faults (kill during save, a full disk, a frozen or killed rank, non-finite
# weights), against the CPU trainer built with ASan + UBSan. Every bad input must give a non-zero exit and
# exactly one "error:" line naming the file or flag; a valid control (or a documented recovery) must run
# clean. Every case: no sanitizer report, done within 10 s. Prints a table per class and "N passed, N failed".
# Usage: bash dev/test/test_hostile_input.sh   (from the repo root; builds build/asan/train_gpt2_pp_cpu)
#   BIN=path: use that (sanitizer) binary instead of building one; MPI_BIN likewise for the MPI cases.
#   KILL_TRIALS (8): kill-during-save trials (the issue's acceptance runs 30).
set -u
export OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
SAN="-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -std=c11 -D_GNU_SOURCE -fopenmp -I."
# OpenBLAS when it links (libblas-dev's cblas.h alone proves nothing), as the Makefile decides
BLAS=$(echo 'char cblas_sgemm(void); char openblas_set_num_threads(void); int main(void) { return cblas_sgemm() + openblas_set_num_threads(); }' |
       gcc -x c - -lopenblas -o /dev/null 2> /dev/null && echo "-DUSE_BLAS -lopenblas")
mkdir -p build/asan
# the two builds in parallel (2 cores): the plain one for most cases, the MPI one for the rank faults
if [ -z "${MPI_BIN:-}" ] && command -v mpicc > /dev/null && command -v mpirun > /dev/null; then
    MPI_BIN=build/asan/train_gpt2_pp_mpi
    mpicc $SAN -DUSE_MPI train_gpt2_pp.c -o $MPI_BIN -lm $BLAS &
    MPI_BUILD=$!
fi
if [ -z "${BIN:-}" ]; then
    BIN=build/asan/train_gpt2_pp_cpu
    gcc $SAN train_gpt2_pp.c -o $BIN -lm $BLAS || { echo "cannot build $BIN"; echo "0 passed, 1 failed"; exit 1; }
fi
if [ -n "${MPI_BUILD:-}" ] && ! wait $MPI_BUILD; then MPI_BIN=; fi
W=$(mktemp -d)
MNT=$W/full
trap 'mountpoint -q "$MNT" && umount "$MNT"; pkill -9 -f -- "$W/" 2> /dev/null; rm -rf "$W"' EXIT
CLASSES="shard tokenizer checkpoint state flags schedule paths faults"
declare -A TRIED CLEAN
for c in $CLASSES; do TRIED[$c]=0; CLEAN[$c]=0; done
passed=0; failed=0

# ---------------------------------------------------------------------------------------------------------
# the verdict of one case. report CLASS OK DESCRIPTION [why]
report() {
    TRIED[$1]=$((TRIED[$1] + 1))
    if [ "$2" = 1 ]; then CLEAN[$1]=$((CLEAN[$1] + 1)); passed=$((passed + 1))
    else failed=$((failed + 1)); echo "FAIL [$1] $3: $4"; sed 's/^/    | /' "$W/err" | head -8; fi
}

sanitizer_report() { grep -Eq 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: .*Sanitizer' "$W/out" "$W/err"; }

# run the trainer with a 10 s limit; sets RC (124: timed out)
run() { timeout -k 2 10 "$@" > "$W/out" 2> "$W/err" < /dev/null; RC=$?; }

# bad CLASS WANT ARGS...: non-zero exit, exactly one "error:" line, containing WANT (the file or flag)
bad() {
    local class=$1 want=$2; shift 2
    run $BIN "$@"
    local n; n=$(grep -c '^error: ' "$W/err")
    if [ $RC -eq 124 ] || [ $RC -eq 137 ]; then report $class 0 "$*" "timed out (10 s)"
    elif sanitizer_report; then report $class 0 "$*" "sanitizer report"
    elif [ $RC -eq 0 ]; then report $class 0 "$*" "exit 0, wanted an error containing '$want'"
    elif [ "$n" -ne 1 ]; then report $class 0 "$*" "$n error lines, wanted 1 containing '$want'"
    elif ! grep '^error: ' "$W/err" | grep -qF -- "$want"; then report $class 0 "$*" "the error does not name '$want'"
    else report $class 1; fi
}

# good CLASS PATTERN ARGS...: exit 0, no error line, stdout matches PATTERN (a valid control or a recovery)
good() {
    local class=$1 pattern=$2; shift 2
    run $BIN "$@"
    if [ $RC -eq 124 ] || [ $RC -eq 137 ]; then report $class 0 "$*" "timed out (10 s)"
    elif sanitizer_report; then report $class 0 "$*" "sanitizer report"
    elif [ $RC -ne 0 ] || grep -q '^error: ' "$W/err"; then report $class 0 "$*" "rc=$RC, wanted a clean run"
    elif ! cat "$W/out" "$W/err" | grep -Eq -- "$pattern"; then report $class 0 "$*" "output lacks '$pattern'"
    else report $class 1; fi
}

# ---------------------------------------------------------------------------------------------------------
# tiny inputs: a 2-layer model with 101 tokens (C=32, maxT=64), its tokenizer and shards. gen.py also makes
# the corrupted copies: gen.py patch SRC DST OFFSET FORMAT VALUE... (struct format, little-endian), and
# gen.py redone DIR STEP rewrites a DONE marker's checksums so a crafted state reaches the header checks.
cat > "$W/gen.py" << 'PY'
import os, struct, sys, random
def header(*ints): return struct.pack("<256i", *(list(ints) + [0] * (256 - len(ints))))
def nparams(maxT, V, Vp, L, NH, C):
    return Vp * C + maxT * C + L * (12 * C * C + 13 * C) + 2 * C
def checksum(b):
    h = 0xcbf29ce484222325
    for (w,) in struct.iter_unpack("<I", b[: len(b) // 4 * 4]): h = ((h ^ w) * 0x100000001b3) & (2**64 - 1)
    for x in b[len(b) // 4 * 4:]: h = ((h ^ x) * 0x100000001b3) & (2**64 - 1)
    return h
cmd, a = sys.argv[1], sys.argv[2:]
if cmd == "model":  # model OUT maxT V Vp L NH C
    out, shape = a[0], [int(x) for x in a[1:7]]
    maxT, V, Vp, L, NH, C = shape
    rnd = random.Random(1)
    n = nparams(*shape)
    vals = [rnd.gauss(0, 0.05) for _ in range(n)]
    # layernorm gains 1 (ln1w, ln2w per layer; lnfw): the offsets follow llm.c's tensor order
    off = Vp * C + maxT * C
    for l in range(L): vals[off + l * C: off + (l + 1) * C] = [1.0] * C
    off2 = off + L * (C + C + 3 * C * C + 3 * C + C * C + C)
    for l in range(L): vals[off2 + l * C: off2 + (l + 1) * C] = [1.0] * C
    vals[n - 2 * C: n - C] = [1.0] * C
    open(out, "wb").write(header(20240326, 3, maxT, V, L, NH, C, Vp) + struct.pack("<%df" % n, *vals))
elif cmd == "tokenizer":  # tokenizer OUT V EOT [version]
    V, eot = int(a[1]), int(a[2]); ver = int(a[3]) if len(a) > 3 else 2
    toks = b"".join(bytes([len(t)]) + t for t in [(" w%d" % i).encode() for i in range(V - 1)] + [b"<|endoftext|>"])
    open(a[0], "wb").write(header(20240328, ver, V, eot) + toks)
elif cmd == "shard":  # shard OUT NTOK V [seed]
    n, V = int(a[1]), int(a[2]); rnd = random.Random(int(a[3]) if len(a) > 3 else 0)
    open(a[0], "wb").write(header(20240520, 1, n) + struct.pack("<%dH" % n, *[rnd.randrange(V) for _ in range(n)]))
elif cmd == "patch":  # patch SRC DST OFFSET FORMAT VALUE...  (offset < 0: from the end)
    b = bytearray(open(a[0], "rb").read()); off = int(a[2]); fmt = "<" + a[3]
    vals = [float(v) if any(c in a[3] for c in "fd") else int(v) for v in a[4:]]
    if off < 0: off += len(b)
    b[off: off + struct.calcsize(fmt)] = struct.pack(fmt, *vals)
    open(a[1], "wb").write(b)
elif cmd == "redone":  # redone DIR STEP: recompute the DONE marker of DIR's checkpoint STEP
    d, s = a[0], int(a[1])
    p = lambda k, e: os.path.join(d, "%s_%08d%s" % (k, s, e))
    lines = open(p("DONE", ""), "r").read().splitlines()
    m, st = open(p("model", ".bin"), "rb").read(), open(p("state", ".bin"), "rb").read()
    lines[2] = "model %d bytes checksum %016x" % (len(m), checksum(m))
    lines[3] = "state %d bytes checksum %016x" % (len(st), checksum(st))
    open(p("DONE", ""), "w").write("\n".join(lines) + "\n")
PY
gen() { python3 "$W/gen.py" "$@"; }
poke() { gen patch "$@"; }
gen model "$W/m.bin" 64 101 128 2 2 32
gen tokenizer "$W/tok.bin" 101 100
gen shard "$W/train.bin" 4000 101 1
gen shard "$W/val.bin" 600 101 2
M=$W/m.bin; TK=$W/tok.bin; TR=$W/train.bin; VA=$W/val.bin
# every run: the tiny model on the tiny data, one step, no sampling unless a case asks
T="-e $M -tk $TK -i $TR -j $VA -b 2 -t 8 -x 1 -v 0 -m 1 -g 0"
NPARAM=$(python3 -c "print(128*32 + 64*32 + 2*(12*32*32 + 13*32) + 2*32)")

# ---------------------------------------------------------------------------------------------------------
# shards
S=$W/s; mkdir -p $S
good shard 'step +1/1' $T
good shard 'step +1/1' $T -i "$W/t*in.bin"
bad shard "no data file matches $S/missing.bin" $T -i $S/missing.bin
: > $S/empty.bin;                      bad shard "$S/empty.bin" $T -i $S/empty.bin
head -c 100 $TR > $S/100.bin;          bad shard "$S/100.bin" $T -i $S/100.bin
head -c 1023 $TR > $S/1023.bin;        bad shard "$S/1023.bin" $T -i $S/1023.bin
head -c 1024 $TR > $S/hdr.bin;         bad shard "$S/hdr.bin" $T -i $S/hdr.bin
head -c 3001 $TR > $S/odd.bin;         bad shard "$S/odd.bin" $T -i $S/odd.bin
head -c -2 $TR > $S/short.bin;         bad shard "$S/short.bin" $T -i $S/short.bin
{ cat $TR; printf 'xy'; } > $S/trail.bin; bad shard "$S/trail.bin" $T -i $S/trail.bin
poke $TR $S/magic.bin 0 i 1;          bad shard "$S/magic.bin: bad magic" $T -i $S/magic.bin
poke $TR $S/magic2.bin 0 i 20240326;  bad shard "$S/magic2.bin: bad magic" $T -j $S/magic2.bin
for v in 0 2 -1 2147483647; do poke $TR $S/ver$v.bin 4 i $v; bad shard "$S/ver$v.bin" $T -i $S/ver$v.bin; done
for n in 0 -1 -4000 3999 4001 2147483647 -2147483648; do poke $TR $S/n$n.bin 8 i $n; bad shard "$S/n$n.bin" $T -i $S/n$n.bin; done
poke $TR $S/tok_first.bin 1024 H 101;  bad shard "$S/tok_first.bin: token 101 at index 0" $T -i $S/tok_first.bin
poke $TR $S/tok_last.bin -2 H 65535;   bad shard "$S/tok_last.bin: token 65535 at index 3999" $T -i $S/tok_last.bin
poke $VA $S/val_tok.bin 2000 H 5000;   bad shard "$S/val_tok.bin" $T -j $S/val_tok.bin
mkdir -p $S/glob; for i in 1 2 3; do gen shard $S/glob/g$i.bin 2000 101 $i; done
poke $S/glob/g3.bin $S/glob/g4.bin 3000 H 200
bad shard "$S/glob/g4.bin" $T -i "$S/glob/g*.bin"
bad shard "$S/glob/g4.bin" $T -x 0 -i "$S/glob/g*.bin"
rm $S/glob/g4.bin; good shard 'step +1/1' $T -i "$S/glob/g*.bin"
gen shard $S/tiny.bin 16 101;          bad shard "$S/tiny.bin has 16 tokens" $T -i $S/tiny.bin
mkdir -p $S/dir.bin;                   bad shard "$S/dir.bin is not a regular file" $T -i $S/dir.bin
mkfifo $S/fifo.bin;                    bad shard "$S/fifo.bin is not a regular file" $T -i $S/fifo.bin
bad shard "/dev/null is not a regular file" $T -j /dev/null
bad shard "$TK: bad magic" $T -i $TK
bad shard "$M: bad magic" $T -j $M
ln -s $TR $S/link.bin;                 good shard 'step +1/1' $T -i $S/link.bin
cp $TR "$S/with space.bin";            good shard 'step +1/1' $T -i "$S/with space.bin"
bad shard "flag -i expects a value" $T -i ''
# the default data (GPT-2 tokens) against the 101-token model
bad shard "is outside the vocabulary (size 101)" -e $M -tk $TK -b 2 -t 8 -x 1 -v 0 -g 0

# ---------------------------------------------------------------------------------------------------------
# tokenizer (-g 4 samples, so the tokenizer is used, not only loaded)
K=$W/k; mkdir -p $K
G="$T -g 4"
good tokenizer 'generating' $G
bad tokenizer "cannot open $K/missing.bin" $G -tk $K/missing.bin
: > $K/empty.bin;                      bad tokenizer "$K/empty.bin is truncated" $G -tk $K/empty.bin
head -c 500 $TK > $K/h500.bin;         bad tokenizer "$K/h500.bin is truncated" $G -tk $K/h500.bin
head -c -3 $TK > $K/short.bin;         bad tokenizer "$K/short.bin is truncated" $G -tk $K/short.bin
{ cat $TK; printf 'z'; } > $K/trail.bin; bad tokenizer "$K/trail.bin: 1 bytes after" $G -tk $K/trail.bin
poke $TK $K/magic.bin 0 i 20240520;  bad tokenizer "$K/magic.bin: bad magic" $G -tk $K/magic.bin
for v in 0 3 -1; do poke $TK $K/ver$v.bin 4 i $v; bad tokenizer "$K/ver$v.bin: unsupported tokenizer version" $G -tk $K/ver$v.bin; done
for n in 0 -1 2097152 2147483647; do poke $TK $K/n$n.bin 8 i $n; bad tokenizer "$K/n$n.bin: implausible vocabulary size" $G -tk $K/n$n.bin; done
poke $TK $K/n102.bin 8 i 102;         bad tokenizer "$K/n102.bin is truncated" $G -tk $K/n102.bin
poke $TK $K/n99.bin 8 i 99;           bad tokenizer "$K/n99.bin" $G -tk $K/n99.bin
for e in -1 101 99999 2147483647; do poke $TK $K/eot$e.bin 12 i $e; bad tokenizer "$K/eot$e.bin: end-of-text token $e" $G -tk $K/eot$e.bin; done
poke $TK $K/len0.bin 1024 B 0;        bad tokenizer "$K/len0.bin: token 0 has length 0" $G -tk $K/len0.bin
gen tokenizer $K/v1.bin 101 0 1;       bad tokenizer "$K/v1.bin: end-of-text token 50256" $G -tk $K/v1.bin
mkdir -p $K/dir.bin;                   bad tokenizer "$K/dir.bin is not a regular file" $G -tk $K/dir.bin
mkfifo $K/fifo.bin;                    bad tokenizer "$K/fifo.bin is not a regular file" $G -tk $K/fifo.bin
bad tokenizer "$M: bad magic" $G -tk $M
# against the model (tokenizer_check_model in the trainer): fewer tokens than the model, eot in the padding
gen tokenizer $K/small.bin 50 49;      bad tokenizer "$K/small.bin has 50 tokens" $G -tk $K/small.bin
gen tokenizer $K/pad.bin 128 110;      bad tokenizer "$K/pad.bin: end-of-text token 110" $G -tk $K/pad.bin
bad tokenizer "data/gpt2_tokenizer.bin: end-of-text token 50256" $G -tk data/gpt2_tokenizer.bin

# ---------------------------------------------------------------------------------------------------------
# checkpoints (-e FILE)
C=$W/c; mkdir -p $C
# header ints: 0 magic, 1 version, 2 maxT, 3 V, 4 L, 5 NH, 6 C, 7 Vp
# ck NAME INDEX VALUE: a copy of the tiny model with header int INDEX set to VALUE
ck() { poke $M $C/$1.bin $((4 * $2)) i $3; }
bad checkpoint "cannot open $C/missing.bin" $T -e $C/missing.bin
: > $C/empty.bin;                      bad checkpoint "$C/empty.bin is truncated" $T -e $C/empty.bin
head -c 1023 $M > $C/1023.bin;         bad checkpoint "$C/1023.bin is truncated" $T -e $C/1023.bin
head -c 1024 $M > $C/hdr.bin;          bad checkpoint "$C/hdr.bin" $T -e $C/hdr.bin
head -c -4 $M > $C/short.bin;          bad checkpoint "$C/short.bin" $T -e $C/short.bin
{ cat $M; printf 'abcd'; } > $C/long.bin; bad checkpoint "$C/long.bin" $T -e $C/long.bin
ck magic 0 20240328;                   bad checkpoint "$C/magic.bin: bad magic" $T -e $C/magic.bin
ck bf16 1 5;                           bad checkpoint "$C/bf16.bin: checkpoint version 5" $T -e $C/bf16.bin
ck v1 1 1;                             bad checkpoint "$C/v1.bin: checkpoint version 1" $T -e $C/v1.bin
for f in "maxT0 2 0" "maxTneg 2 -1" "maxTbig 2 1073741824" "V0 3 0" "Vbig 3 129" "L0 4 0" "Lbig 4 100000" \
         "NH0 5 0" "NH3 5 3" "NHbig 5 64" "C0 6 0" "Cneg 6 -32" "Cbig 6 1073741824" "Vp100 7 100" \
         "Vpbig 7 2147483647"; do
    set -- $f; ck $1 $2 $3; bad checkpoint "$C/$1.bin" $T -e $C/$1.bin
done
# the finding-9 header: C = 2^30, Vp = 2^31 - 1 in a 1024-byte file
poke $C/hdr.bin $C/wrap.bin 24 i 1073741824;  poke $C/wrap.bin $C/wrap.bin 28 i 2147483647
bad checkpoint "$C/wrap.bin" $T -e $C/wrap.bin
# a shape within the bounds but far beyond this machine's memory: refused naming the file, before allocating
poke $C/hdr.bin $C/huge.bin 16 i 1024; poke $C/huge.bin $C/huge.bin 24 i 65536; poke $C/huge.bin $C/huge.bin 20 i 1
bad checkpoint "$C/huge.bin" $T -e $C/huge.bin
# non-finite parameters, named by tensor: wte (first element, a padding row), lnfw, the last element
poke $M $C/nan0.bin 1024 f nan;                       bad checkpoint "$C/nan0.bin: parameter wte" $T -e $C/nan0.bin
poke $M $C/nanpad.bin $((1024 + 4 * 120 * 32)) f nan; bad checkpoint "$C/nanpad.bin: parameter wte" $T -e $C/nanpad.bin
poke $M $C/inflnf.bin $((1024 + 4 * (NPARAM - 64))) f inf; bad checkpoint "$C/inflnf.bin: parameter lnfw" $T -e $C/inflnf.bin
poke $M $C/naninner.bin $((1024 + 4 * (128 * 32 + 64 * 32 + 64 + 100))) f -inf; bad checkpoint "$C/naninner.bin: parameter qkvw" $T -e $C/naninner.bin
poke $M $C/nanlast.bin -4 f nan;                      bad checkpoint "$C/nanlast.bin: parameter lnfb" $T -e $C/nanlast.bin
bad checkpoint "flag -t 65 exceeds the model's maximum sequence length 64" $T -t 65
mkdir -p $C/dir.bin;                   bad checkpoint "$C/dir.bin is not a regular file" $T -e $C/dir.bin
mkfifo $C/fifo.bin;                    bad checkpoint "$C/fifo.bin is not a regular file" $T -e $C/fifo.bin
bad checkpoint "$TR: bad magic" $T -e $TR
# huge weights: a finite checkpoint whose every step overflows; the steps are skipped, -nf (3) in a row stop
# the run with one error, and nothing non-finite is saved
cp $M $C/hot.bin
python3 - "$C/hot.bin" << 'PY'
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
# fcw of both layers: 1e30 everywhere, so the MLP overflows to inf in the first forward pass
C, L = 32, 2
off = 1024 + 4 * (128 * C + 64 * C + L * (C + C + 3 * C * C + 3 * C + C * C + C + C + C))
b[off: off + 4 * L * 4 * C * C] = struct.pack("<%df" % (L * 4 * C * C), *[1e30] * (L * 4 * C * C))
open(sys.argv[1], "wb").write(b)
PY
mkdir -p $C/hot_out
run $BIN $T -e $C/hot.bin -x 5 -o $C/hot_out
saved_nonfinite=$(python3 -c "
import glob, math, struct, sys
bad = 0
for f in glob.glob('$C/hot_out/*_0*.bin'):
    b = open(f, 'rb').read()[1024:]
    bad += any(not math.isfinite(x) for (x,) in struct.iter_unpack('<f', b))
print(bad)")
if [ $RC -ne 0 ] && [ "$(grep -c '^error: ' $W/err)" = 1 ] && grep -q '^error: .*-nf 3' $W/err && ! sanitizer_report &&
   [ "$saved_nonfinite" = 0 ]; then
    report checkpoint 1
else report checkpoint 0 "fcw = 1e30" "rc=$RC, want one error line and no non-finite file saved ($saved_nonfinite)"; fi

# ---------------------------------------------------------------------------------------------------------
# resume state: a run with checkpoints at steps 1 and 2, then corrupted copies of its directory
R=$W/r
run $BIN $T -x 2 -n 1 -o $R/base
# fresh NAME: a copy of the base run to corrupt; F=its state_2, D=its DONE_2
fresh() { rm -rf $R/$1; cp -r $R/base $R/$1; D=$R/$1/DONE_00000002; F=$R/$1/state_00000002.bin; O=$R/$1; }
RS="$T -x 3 -y 1"
fresh ok;      good state 'resumed from .*model_00000002.bin at step 2' $RS -o $O
fresh flip;    poke $F $F 5000 B 7;            bad state "$O/state_00000002.bin does not match its checksum" $RS -o $O
fresh flipm;   poke $O/model_00000002.bin $O/model_00000002.bin 9000 B 7; bad state "$O/model_00000002.bin does not match its checksum" $RS -o $O
fresh swap;    cp $O/state_00000001.bin $F;     bad state "$O/state_00000002.bin" $RS -o $O
fresh swapm;   cp $O/model_00000001.bin $O/model_00000002.bin; bad state "$O/model_00000002.bin" $RS -o $O
fresh trunc;   head -c -8 $F > $F.x; mv $F.x $F; bad state "$O/state_00000002.bin" $RS -o $O
fresh empty;   : > $D;                          bad state "$D is not a checkpoint marker" $RS -o $O
fresh garb;    echo hello > $D;                 bad state "$D is not a checkpoint marker" $RS -o $O
fresh dstep;   sed -i 's/^step 2$/step 3/' $D;  bad state "$D records step 3" $RS -o $O
fresh dshape;  sed -i 's/C=32/C=0/' $D;         bad state "$D" $RS -o $O
fresh nomodel; rm $O/model_00000002.bin;        bad state "cannot open $O/model_00000002.bin" $RS -o $O
fresh nostate; rm $F;                           bad state "cannot open $O/state_00000002.bin" $RS -o $O
fresh nodone;  rm $O/DONE_*;                    bad state "no complete checkpoint" $RS -o $O
bad state "no complete checkpoint" $RS -o $R/none
# crafted headers with matching checksums (gen.py redone), so the header checks themselves are tested
# hdr NAME OFFSET FORMAT VALUE...: patch the state of a fresh copy, then re-sign its DONE marker
hdr() { local n=$1; shift; fresh $n; poke $F $F "$@"; gen redone $O 2; }
hdr step_neg 8 i -5;            bad state "$F: step -5" $RS -o $O
hdr step_big 8 i 1000;          bad state "$F is at step 1000" $RS -x 2000 -o $O
hdr step_max 8 i 2147483647;    bad state "$F: step 2147483647" $RS -o $O
hdr adam_neg 12 i -1;           bad state "$F: optimizer step count -1" $RS -o $O
hdr adam_big 12 i 3;            bad state "$F: optimizer step count 3" $RS -o $O
hdr adam_max 12 i 2147483647;   bad state "$F: optimizer step count 2147483647" $RS -o $O
hdr nparam 16 q 12345;          bad state "$F: holds 12345 parameters" $RS -o $O
hdr shard_neg 24 q -1;          bad state "$F: negative data position" $RS -o $O
hdr pos_neg 32 q -7;            bad state "$F: negative data position" $RS -o $O
hdr pos_end 32 q 3999;          bad state "data position 3999 is past the end of $TR" $RS -o $O
hdr shard_far 24 q 5;           bad state "names shard 5" $RS -o $O
hdr scale_nan 48 f nan;         bad state "$F: invalid loss scale" $RS -o $O
hdr scale_neg 48 f -1;          bad state "$F: invalid loss scale" $RS -o $O
hdr good_neg 52 i -3;           bad state "$F: invalid loss scale" $RS -o $O
hdr magic 0 i 20240326;         bad state "$F: bad magic/version" $RS -o $O
hdr version 4 i 1;              bad state "$F: bad magic/version" $RS -o $O
hdr settings 56 i -2;           bad state "$F: corrupt run settings" $RS -o $O
hdr m_nan 1024 f nan;           bad state "$F: AdamW m of wte" $RS -o $O
hdr m_inf $((1024 + 4 * (NPARAM - 1))) f inf; bad state "$F: AdamW m of lnfb" $RS -o $O
hdr v_nan $((1024 + 4 * NPARAM + 400)) f nan; bad state "$F: AdamW v of wte" $RS -o $O
hdr v_neg $((1024 + 4 * (2 * NPARAM - 1))) f -0.5; bad state "$F: AdamW v of lnfb" $RS -o $O
# the policy: -x below the saved step is refused; changed settings are named in one line, and the run goes on
fresh x1;      bad state "flag -x 1" $T -x 1 -y 1 -o $O
fresh b4;      good state 'resume: changed since .*-b 2->4' $RS -b 4 -o $O
fresh lr;      good state 'resume: changed since .*-l 0.001->0.002' $RS -l 2e-3 -o $O
fresh shape;   bad state "disagrees with -e" $RS -e d1:c32:h1 -o $O
# a stale .tmp from a crash is removed, the resume works, and main.log holds each step once
fresh stale; : > $O/state_00000003.bin.tmp; : > $O/main.log.tmp
good state 'step +3/3' $RS -o $O
if ! ls $O | grep -q '\.tmp$' && [ "$(grep -c '^s:3 trl' $O/main.log)" = 1 ] && [ "$(grep -c '^s:2 trl' $O/main.log)" = 1 ]; then
    report state 1; else report state 0 "stale .tmp / main.log" "a .tmp survived or main.log repeats a step"; fi

# ---------------------------------------------------------------------------------------------------------
# flags
for f in "-b 0" "-b -1" "-b 65537" "-t 0" "-t 2097152" "-pm 0" "-pm 65537" "-pm 2147483647" "-pp 0" "-pp -1" \
         "-pp 1025" "-ps -1" "-ps 2" "-ps 2147483647" "-x -1" "-x 100000000" "-u -1" "-g -1" "-g 2147483647" \
         "-n -1" "-v -1" "-m -1" "-s -1" "-y 2" "-y -1" "-to 0" "-to -5" "-to 86401" "-nf 0" "-nf 1001"; do
    set -- $f; bad flags "flag $1 (" $T $f
done
for f in "-b abc" "-b 1.5" "-b 99999999999" "-t 8x" "-x 1e3"; do set -- $f; bad flags "flag $1 expects an integer" $T $f; done
for f in "-l nan" "-l inf" "-l -inf" "-l 0x1p-3" "-l 1e-3x" "-q nan" "-c inf" "-cl nan" "-cl infinity" "-l 1e-50"; do
    set -- $f; bad flags "flag $1 expects a finite decimal number" $T $f
done
for f in "-l 0" "-l -1" "-l 1e30" "-q -1" "-q 1.5" "-c -1" "-c 100" "-cl -1" "-cl 1e31"; do
    set -- $f; bad flags "flag $1 (" $T $f
done
bad flags "flags -b 65536 -t 4096" $T -b 65536 -t 4096
bad flags "flags -b 4096 -t 256 -pm 2048" $T -b 4096 -t 256 -pm 2048
bad flags "flag -o expects a value" $T -o ''
bad flags "flag -tk expects a value" $T -tk ''
for e in "d 4" "d4 " " d4" "d0" "d-1" "d129" "d1:c32" "d1:c32:h3" "d1:c0:h1" "d1:c32:h0" "d1:c100000:h1" "d1:c32:h1:x" "dx" "d1:h1:c32"; do
    bad flags "flag -e expects a checkpoint file or a model descriptor" $T -e "$e"
done
bad flags "flag -e d128" $T -e d128
bad flags "flag -e d64:c65536:h1" $T -e d64:c65536:h1
bad flags "unknown flag -zz" $T -zz 1
bad flags "-b: expected a flag followed by a value" $T -b
bad flags "flag -ls belongs to the CUDA trainer" $T -ls 1
bad flags "flag -k expects constant, cosine or noam" $T -k warp
bad flags "flag -sc" $T -sc warp
bad flags "flag -pl" $T -pl 1,x -pp 2
bad flags "flag -pl" $T -pl 1,2 -pp 2
bad flags "-pp" $T -pp 3
bad flags "flag -y 1 needs -o" $T -y 1
bad flags "flag -n needs -o" $T -n 1
good flags 'step +1/1' $T -cl 0 -c 0.1 -q 0 -l 1
good flags 'step +1/1' $T -pp 2 -pm 2 -sc gpipe
good flags 'bubble' $T -pp 2 -pm 4 -ps 1
good flags 'Usage' -h

# ---------------------------------------------------------------------------------------------------------
# schedule text: through the trainer's -sf FILE when it loads schedule files, else the ASan schedule tool
P=$W/p; mkdir -p $P
if $BIN -h 2>&1 | grep -q -- '^ *-sf '; then
    sched() { local want=$1 file=$2; bad schedule "$want" $T -pp 2 -pm 2 -sf "$file"; }
    sched_ok() { good schedule 'step +1/1' $T -pp 2 -pm 2 -sf "$1"; }
else
    gcc $SAN -Wno-unused-function dev/test/schedule_tool.c -o build/asan/schedule_tool -lm 2> /dev/null
    # the tool prints the loader's message alone, "PATH: reason", not an "error:" line
    sched() {
        run build/asan/schedule_tool -sc "$2"
        if [ $RC -eq 124 ] || [ $RC -eq 137 ]; then report schedule 0 "-sc $2" "timed out (10 s)"
        elif sanitizer_report; then report schedule 0 "-sc $2" "sanitizer report"
        elif [ $RC -eq 0 ] || [ "$(wc -l < $W/err)" -ne 1 ] || ! grep -qF -- "$1" $W/err; then
            report schedule 0 "-sc $2" "rc=$RC, wanted one line naming '$1'"
        else report schedule 1; fi
    }
    sched_ok() {
        run build/asan/schedule_tool -sc "$1"
        if [ $RC -eq 0 ] && ! sanitizer_report; then report schedule 1; else report schedule 0 "-sc $1" "rc=$RC"; fi
    }
fi
printf '0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1\n1RECV_F0 1F0 1RECV_F1 1F1 1B0 1SEND_B0 1B1 1SEND_B1\n' > $P/gpipe.txt
sched_ok $P/gpipe.txt
printf '# 1f1b, compute only\r\n0F0 0F1 0B0 0B1\r\n1F0 1B0 1F1 1B1\r\n' > $P/crlf.txt; sched_ok $P/crlf.txt
: > $P/empty.txt;                                  sched "$P/empty.txt" $P/empty.txt
printf '# nothing\n\n' > $P/comments.txt;          sched "$P/comments.txt" $P/comments.txt
printf '1000000F1000000\n' > $P/big.txt;           sched "$P/big.txt" $P/big.txt
printf '20000F20000\n' > $P/big2.txt;              sched "$P/big2.txt" $P/big2.txt
printf '99999999999F0\n' > $P/big3.txt;            sched "$P/big3.txt" $P/big3.txt
printf '0F0 0B0\n1F\0 1B0\n' > $P/nul.txt;         sched "$P/nul.txt" $P/nul.txt
printf '0F0 0X0\n' > $P/type.txt;                  sched "$P/type.txt" $P/type.txt
printf '0F-1 0B-1\n' > $P/neg.txt;                 sched "$P/neg.txt" $P/neg.txt
printf '0F0 0F0 0B0\n' > $P/dup.txt;               sched "$P/dup.txt" $P/dup.txt
printf '0F0\n1F0 1B0\n' > $P/nob.txt;              sched "$P/nob.txt" $P/nob.txt
printf '0B0 0F0\n' > $P/order.txt;                 sched "$P/order.txt" $P/order.txt
printf '0RECV_B0 0F0 0SEND_F0 0B0\n1RECV_F0 1SEND_B0 1F0 1B0\n' > $P/deadlock.txt; sched "$P/deadlock.txt" $P/deadlock.txt
printf -- '- 0F0\n' > $P/dash.txt;                 sched "$P/dash.txt" $P/dash.txt
for i in $(seq 0 299); do printf '%dF0 %dB0\n' $i $i; done > $P/rows.txt; sched "$P/rows.txt" $P/rows.txt
python3 -c "print(' '.join('0F%d' % i for i in range(200000)))" > $P/long.txt; sched "$P/long.txt" $P/long.txt
mkdir -p $P/dir.txt;                               sched "$P/dir.txt" $P/dir.txt
mkfifo $P/fifo.txt;                                sched "$P/fifo.txt" $P/fifo.txt
sched "$P/missing.txt" $P/missing.txt

# ---------------------------------------------------------------------------------------------------------
# output paths
O=$W/o
# 1010 characters in 4-character components: checkpoints and the log keep their full names
LONG=$O/$(python3 -c "print('/'.join(['abc'] * ((1010 - len('$O') - 1) // 4)))")
good paths 'step +2/2' $T -x 2 -n 1 -o "$LONG"
if [ -f "$LONG/model_00000001.bin" ] && [ -f "$LONG/DONE_00000002" ] && [ -s "$LONG/main.log" ]; then report paths 1
else report paths 0 "-o <1010 chars>" "checkpoint names truncated"; fi
good paths 'resumed from' $T -x 3 -y 1 -o "$LONG"
bad paths "flag -o: the directory name has" $T -o "$O/$(python3 -c "print('/'.join(['abc'] * 300))")"
NAME256=$(python3 -c "print('n' * 256)")
bad paths "cannot create directory $O/$NAME256" $T -o "$O/$NAME256"
: > $O.file;                                       bad paths "$O.file exists and is not a directory" $T -o $O.file
bad paths "/dev/null exists and is not a directory" $T -o /dev/null
good paths 'step +1/1' $T -o "$O/new/nested/dir"
good paths 'wrote trace' $T -tr "$O/trace.json"
bad paths "$O/nodir/trace.json" $T -tr "$O/nodir/trace.json"
mkdir -p $O/tracedir.json.tmp;                     bad paths "$O/tracedir.json" $T -tr "$O/tracedir.json"
bad paths "flag -tr expects a value" $T -tr ''

# ---------------------------------------------------------------------------------------------------------
# faults
# kill -9 during checkpoint writes (a checkpoint every step): the next start resumes from an intact
# checkpoint, bit-identical to a run never killed, or says that none exists; no .tmp survives it
FA=$W/f
KT="$T -x 40 -n 1 -k noam"
run $BIN $KT -o $FA/ref
for trial in $(seq 1 ${KILL_TRIALS:-8}); do
    $BIN $KT -o $FA/k$trial > /dev/null 2>&1 &
    sleep "0.$((trial * 11 % 9 + 1))"
    kill -9 $! 2> /dev/null; wait $! 2> /dev/null
    run $BIN $KT -y 1 -o $FA/k$trial
    if grep -q 'no complete checkpoint' $W/err; then run $BIN $KT -o $FA/k$trial; fi
    if [ $RC -eq 0 ] && ! sanitizer_report && ! ls $FA/k$trial | grep -q '\.tmp$' &&
       cmp -s $FA/ref/model_00000040.bin $FA/k$trial/model_00000040.bin &&
       cmp -s $FA/ref/state_00000040.bin $FA/k$trial/state_00000040.bin; then report faults 1
    else report faults 0 "kill -9 during save, trial $trial" "rc=$RC, or a .tmp left, or not bit-identical"; fi
done
# a fresh (not resumed) run also removes the .tmp files a crash left
mkdir -p $FA/stale; : > $FA/stale/model_00000007.bin.tmp; : > $FA/stale/DONE_00000007.tmp
run $BIN $T -o $FA/stale
if [ $RC -eq 0 ] && ! ls $FA/stale | grep -q '\.tmp$'; then report faults 1; else report faults 0 "fresh run, stale .tmp" "rc=$RC or a .tmp survived"; fi
# a full disk (a 450 KiB tmpfs: the checkpoint of step 1 fits, not the one of step 2): one error, no .tmp,
# the previous checkpoint intact and resumable; a log that cannot be written is an error too
mkdir -p $MNT
if mount -t tmpfs -o size=450k tmpfs $MNT 2> /dev/null; then
    bad faults "No space left on device" $T -x 2 -n 1 -o $MNT/run
    if ! ls $MNT/run | grep -q '\.tmp$'; then report faults 1; else report faults 0 "disk full" ".tmp left behind"; fi
    good faults 'resumed from .*model_00000001.bin at step 1' $T -x 1 -y 1 -o $MNT/run
    rm -rf $MNT/run; mkdir -p $MNT/log
    head -c 10M /dev/zero > $MNT/filler 2> /dev/null
    bad faults "$MNT/log/main.log" $T -o $MNT/log
    umount $MNT
else
    echo "(no tmpfs mount here: the 4 disk-full cases are skipped)"
fi
# non-finite values in the weights a run starts from: refused naming the tensor, nothing saved
mkdir -p $FA/nan
bad faults "$C/nanpad.bin: parameter wte" $T -e $C/nanpad.bin -o $FA/nan
if ! ls $FA/nan | grep -q 'model_'; then report faults 1; else report faults 0 "NaN weight" "a checkpoint was written"; fi
# MPI: one bad input gives one error line (not one per rank); a frozen rank (SIGSTOP) is detected by the
# watchdog (-to 5) at 2 and 4 ranks, a killed one (SIGKILL) named by the survivors, each within 15 s
if [ -n "${MPI_BIN:-}" ]; then
    mpi() { timeout -k 2 ${TO:-10} mpirun -np 2 $MPI_BIN "$@" > "$W/out" 2> "$W/err" < /dev/null; RC=$?; }
    for c in "$S/magic.bin -i" "$K/eot101.bin -tk" "$C/nan0.bin -e"; do
        set -- $c; mpi $T -g 4 $2 $1
        n=$(cat $W/out $W/err | grep -c '^error: ')
        if [ $RC -ne 0 ] && [ $RC -ne 124 ] && [ "$n" = 1 ] && ! sanitizer_report; then report faults 1
        else report faults 0 "mpirun -np 2, bad $2" "rc=$RC, $n error lines"; fi
    done
    for CASE in STOP:2 STOP:4 KILL:2; do
        SIG=${CASE%:*}; NP=${CASE#*:}
        OUTD=$W/mpi_$SIG$NP
        # up to a minute to reach step 2: an ASan build under mpirun starts slowly on a loaded machine, and a
        # kill before the ranks exist would leave the job running until the timeout
        timeout -k 2 100 mpirun -np $NP $MPI_BIN $T -pl $([ $NP = 2 ] && echo 1,1 || echo 1,1,0,0) -x 100000 -to 5 -o $OUTD > $W/out 2> $W/err < /dev/null &
        JOB=$!
        for i in $(seq 1 300); do grep -q '^step *2/' $W/out 2> /dev/null && break; sleep 0.2; done
        PID=
        for pid in $(pgrep -f -- "-o $OUTD"); do
            tr '\0' '\n' < /proc/$pid/environ 2> /dev/null | grep -qx OMPI_COMM_WORLD_RANK=1 && PID=$pid
        done
        START=$(date +%s)
        [ -n "$PID" ] && kill -$SIG $PID
        wait $JOB; RC=$?
        took=$(($(date +%s) - START))
        [ -n "$PID" ] && kill -9 $PID 2> /dev/null
        # Who is named: at 2 ranks the frozen rank 1. At 4 ranks (stages 2 and 3 without layers, waiting
        # most of the time) the first watchdog to fire may be rank 3's, waiting on rank 2, which itself waits
        # on rank 1: each rank only knows the peer it waits on, so the message names rank 1 or that chain.
        named='rank 1'; [ $NP = 4 ] && named='rank [12]'
        if [ -n "$PID" ] && [ $RC -ne 0 ] && [ $took -le 15 ] && grep -q "$named" $W/out $W/err && ! sanitizer_report; then
            report faults 1
        else report faults 0 "SIG$SIG of rank 1 of $NP with -to 5" "rank 1 pid '${PID}', rc=$RC after ${took}s, peer named: $(grep -c 'rank 1' $W/err)"; fi
    done
else
    echo "(no MPI: the 5 MPI fault cases are skipped)"
fi

# ---------------------------------------------------------------------------------------------------------
printf '\n%-12s %6s %6s\n' class tried clean
for c in $CLASSES; do printf '%-12s %6d %6d\n' $c ${TRIED[$c]} ${CLEAN[$c]}; done
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
