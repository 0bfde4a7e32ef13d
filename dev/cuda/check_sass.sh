#!/bin/bash
# SASS check of an nvcc-built kernel test (issue 12's acceptance): in every architecture of the binary, every
# kernel whose name matches KERNEL_REGEX (default: the flash attention kernels) must
#   * issue HMMA (tensor-core) instructions if it takes BF16 or FP16 data (its mangled name has __nv_bfloat16 or
#     __half; the FP32 build takes the plain path and is only checked for local memory),
#   * use no local memory: LOCAL:0 and STACK:0 in cuobjdump -res-usage, no STL/LDL in the SASS (a register
#     spill goes to local memory, so this also means zero spills).
# Usage: dev/cuda/check_sass.sh BINARY [KERNEL_REGEX]     e.g. after make -f dev/cuda/cuda.mk build/cuda/nvcc/BF16/flash_attention
# Needs cuobjdump and nvdisasm (CUDA toolkit; CUOBJDUMP overrides, else $CUDA_HOME/bin, else PATH).
# Prints one line per (arch, kernel) and exits non-zero on any failure.
set -euo pipefail
BIN=${1:?usage: $0 BINARY [KERNEL_REGEX]}
RE=${2:-flash_attention_(forward|dkdv|dq)_kernel}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
CUOBJDUMP=${CUOBJDUMP:-$(command -v "$CUDA_HOME/bin/cuobjdump" || command -v cuobjdump || true)}
[ -n "$CUOBJDUMP" ] || { echo "check_sass: cuobjdump not found (set CUOBJDUMP)"; exit 2; }
export PATH="$CUDA_HOME/bin:$(dirname "$CUOBJDUMP"):$PATH"  # cuobjdump -sass runs nvdisasm

# "arch function hmma local_insns" per kernel from the SASS, "arch function local stack" from -res-usage
sass=$("$CUOBJDUMP" -sass "$BIN" | awk -v re="$RE" '
    /arch = sm_|Function :/ { if (f != "") print arch, f, h, l; f = ""; h = 0; l = 0 }
    /arch = sm_/ { arch = $3 }
    /Function :/ { f = ($3 ~ re) ? $3 : ""; next }
    f != "" && /HMMA/ { h++ }
    f != "" && /[^A-Z](STL|LDL)[. ]/ { l++ }
    END { if (f != "") print arch, f, h, l }')
res=$("$CUOBJDUMP" -res-usage "$BIN" 2>&1 | awk -v re="$RE" '
    /arch = sm_/ { arch = $3 }
    /Function / { f = $2; sub(/:$/, "", f); next }
    f ~ re && /REG:/ { loc = $0; sub(/.*LOCAL:/, "", loc); sub(/ .*/, "", loc)
                       st = $0; sub(/.*STACK:/, "", st); sub(/ .*/, "", st); print arch, f, loc, st; f = "" }')
[ -n "$sass" ] || { echo "check_sass: no kernel matching '$RE' in $BIN"; exit 1; }
fail=0
while read -r arch f hmma lins; do
    read -r loc st < <(awk -v a="$arch" -v f="$f" '$1 == a && $2 == f { print $3, $4; exit }' <<< "$res")
    want_hmma=0
    [[ $f == *__nv_bfloat16* || $f == *6__half* ]] && want_hmma=1
    ok=1
    if [ $want_hmma = 1 ] && [ "$hmma" -eq 0 ]; then ok=0; fi
    if [ "$lins" -ne 0 ] || [ "${loc:-x}" != 0 ] || [ "${st:-x}" != 0 ]; then ok=0; fi
    printf '%-4s %-6s %-70s HMMA %3d  STL/LDL %d  LOCAL %s  STACK %s\n' "$([ $ok = 1 ] && echo ok || echo FAIL)" \
        "$arch" "$f" "$hmma" "$lins" "${loc:-?}" "${st:-?}"
    [ $ok = 1 ] || fail=1
done <<< "$sass"
[ $fail = 0 ] && echo "check_sass: $BIN: ok" || echo "check_sass: $BIN: FAILED"
exit $fail
