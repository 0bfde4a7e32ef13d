#!/bin/bash
# SASS checks of the nvcc-built kernel tests (issue 12's acceptance), in every architecture of a binary
# (sm_80 and sm_90): every kernel whose mangled name matches the regex
#   hmma    issues HMMA (tensor-core) instructions if it takes BF16 or FP16 data (its mangled name has
#           __nv_bfloat16 or __half; the FP32 build takes the plain path and is only checked for local memory);
#   ldg128  issues 128-bit global loads (LDG.E.128, LDG.E.EF.128, LDG.E.128.STRONG.GPU, ...): the main loads
#           of a memory-bound kernel; narrower loads may remain on its scalar path (odd sizes, the tail);
# and, in both modes, uses no local memory: LOCAL:0 and STACK:0 in cuobjdump -res-usage, no STL/LDL in the
# SASS (a register spill goes to local memory, so this also means zero spills).
# Usage: dev/cuda/check_sass.sh hmma|ldg128 BINARY KERNEL_REGEX     one binary
#        dev/cuda/check_sass.sh --all DIR     every binary of the table below in DIR (make check_sass runs it on
#                                             build/cuda/nvcc/<PREC> through dev/test/run_suite.sh check_sass)
#        dev/cuda/check_sass.sh --list        the table's binaries;  --probe: the cuobjdump found, or why none
# Needs cuobjdump and nvdisasm: $CUOBJDUMP, else $CUDA_HOME/bin, else PATH, else NVIDIA's PyPI wheels
# (pip install -r dev/cuda/requirements-sass.txt; the CUDA 13 toolkit may ship without them, and .ci/run
# installs them then).
# Prints one line per (arch, kernel), ends with "N passed, M failed" and exits non-zero on any failure.
set -euo pipefail

# test binary         check   kernels (extended regex on the mangled name). fill_kernel only stores.
TABLE='
flash_attention       hmma    flash_attention_(forward|dkdv|dq)_kernel
layernorm_forward     ldg128  (layernorm_forward|residual_forward)_kernel
layernorm_backward    ldg128  layernorm_backward_kernel
gelu                  ldg128  gelu_(forward|backward)_kernel
adamw                 ldg128  adamw_kernel
encoder_forward       ldg128  encoder_forward_kernel
encoder_backward      ldg128  (wpe|wte)_backward_kernel
fused_classifier      ldg128  fused_classifier_kernel
cuda_utils            ldg128  (cast|add_inplace|scale_inplace)_kernel
global_norm           ldg128  global_norm_chunks_kernel
'

CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
wheel_bin() {  # where pip put the nvidia-cuda-cuobjdump wheel's binary, if it did
    python3 -c 'import importlib.util, os
s = importlib.util.find_spec("nvidia")
for d in (s.submodule_search_locations if s else []):
    p = os.path.join(d, "cu13", "bin", "cuobjdump")
    if os.access(p, os.X_OK): print(p); break' 2> /dev/null || true
}
[ "${1:-}" = --list ] && { awk 'NF == 3 { print $1 }' <<< "$TABLE"; exit 0; }
CUOBJDUMP=${CUOBJDUMP:-$(command -v "$CUDA_HOME/bin/cuobjdump" || command -v cuobjdump || wheel_bin)}
if [ -z "$CUOBJDUMP" ]; then
    echo "needs cuobjdump (none in $CUDA_HOME/bin, PATH or pip's nvidia-cuda-cuobjdump; pip install -r dev/cuda/requirements-sass.txt)"
    exit 2
fi
[ "${1:-}" = --probe ] && { echo "$CUOBJDUMP"; exit 0; }
export PATH="$CUDA_HOME/bin:$(dirname "$CUOBJDUMP"):$PATH"  # cuobjdump -sass runs nvdisasm
passed=0; failed=0

# check_one MODE BINARY REGEX
check_one() {
    local mode=$1 bin=$2 re=$3 sass res fail=0
    # "arch function hmma ldg128 local_insns" per kernel from the SASS, "arch function local stack" from -res-usage
    sass=$("$CUOBJDUMP" -sass "$bin" | awk -v re="$re" '
        /arch = sm_|Function :/ { if (f != "") print arch, f, h, v, l; f = ""; h = 0; v = 0; l = 0 }
        /arch = sm_/ { arch = $3 }
        /Function :/ { f = ($3 ~ re) ? $3 : ""; next }
        f != "" && /HMMA/ { h++ }
        f != "" && /[^A-Z]LDG\.E[.A-Z0-9]*\.128[ .]/ { v++ }
        f != "" && /[^A-Z](STL|LDL)[. ]/ { l++ }
        END { if (f != "") print arch, f, h, v, l }')
    res=$("$CUOBJDUMP" -res-usage "$bin" 2>&1 | awk -v re="$re" '
        /arch = sm_/ { arch = $3 }
        /Function / { f = $2; sub(/:$/, "", f); next }
        f ~ re && /REG:/ { loc = $0; sub(/.*LOCAL:/, "", loc); sub(/ .*/, "", loc)
                           st = $0; sub(/.*STACK:/, "", st); sub(/ .*/, "", st); print arch, f, loc, st; f = "" }')
    [ -n "$sass" ] || { echo "FAIL no kernel matching '$re' in $bin"; failed=$((failed + 1)); return 1; }
    while read -r arch f hmma ldg128 lins; do
        read -r loc st < <(awk -v a="$arch" -v f="$f" '$1 == a && $2 == f { print $3, $4; exit }' <<< "$res")
        local ok=1 what
        if [ "$mode" = hmma ]; then
            what="HMMA $(printf %3d "$hmma")"
            [[ ($f == *__nv_bfloat16* || $f == *6__half*) && $hmma -eq 0 ]] && ok=0
        else
            what="LDG.128 $(printf %3d "$ldg128")"
            [ "$ldg128" -eq 0 ] && ok=0
        fi
        if [ "$lins" -ne 0 ] || [ "${loc:-x}" != 0 ] || [ "${st:-x}" != 0 ]; then ok=0; fi
        printf '%-4s %-6s %-22s %-90s %s  STL/LDL %d  LOCAL %s  STACK %s\n' "$([ $ok = 1 ] && echo ok || echo FAIL)" \
            "$arch" "$(basename "$(dirname "$bin")")/$(basename "$bin")" "$f" "$what" "$lins" "${loc:-?}" "${st:-?}"
        if [ $ok = 1 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fail=1; fi
    done <<< "$sass"
    return $fail
}

case ${1:-} in
--all)
    DIR=${2:?usage: $0 --all DIR}
    while read -r name mode re; do
        [ -n "$name" ] && { check_one "$mode" "$DIR/$name" "$re" || true; }
    done <<< "$TABLE"
    ;;
hmma|ldg128)
    check_one "$1" "${2:?usage: $0 hmma|ldg128 BINARY REGEX}" "${3:?usage: $0 hmma|ldg128 BINARY REGEX}" || true
    ;;
*)
    echo "usage: $0 hmma|ldg128 BINARY KERNEL_REGEX | --all DIR"; exit 2
    ;;
esac
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
