#!/usr/bin/env python3
"""ptxas_summary.py LOG -- one line per kernel and architecture from `nvcc -Xptxas -v` output
(registers, shared memory, stack, spills); exits 1 if any kernel spills registers to local memory."""
import re
import subprocess
import sys


def demangle(names):
    try:
        r = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True)
        out = r.stdout.splitlines()
        if r.returncode == 0 and len(out) == len(names): return dict(zip(names, out))
    except OSError:
        pass
    return {n: n for n in names}


log = open(sys.argv[1]).read()
fn = arch = None
rows, spills = [], []
for line in log.splitlines():
    m = re.search(r"Compiling entry function '([^']+)' for '(sm_\d+a?)'", line)
    if m: fn, arch = m.group(1), m.group(2); continue
    m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
    if m and fn:
        stack, st, ld = map(int, m.groups())
        rows.append([fn, arch, None, None, stack, st, ld])
        if st or ld: spills.append("%s (%s): %d bytes spill stores, %d bytes spill loads" % (fn, arch, st, ld))
        continue
    m = re.search(r"Used (\d+) registers(?:, used (\d+) barriers)?(?:, (\d+) bytes smem)?", line)
    if m and rows and rows[-1][0] == fn and rows[-1][2] is None:
        rows[-1][2] = int(m.group(1)); rows[-1][3] = int(m.group(3) or 0)
    if "warning" in line and "spill" in line: spills.append(line.strip())
names = demangle(sorted(set(r[0] for r in rows)))
for fn, arch, regs, smem, stack, st, ld in rows:
    print("ptxas %-6s %3s regs %6s B smem %4d B stack %4d/%d B spilled  %s" % (arch, regs, smem, stack, st, ld, names[fn]))
if spills:
    print("REGISTER SPILLS (fix the kernel or its launch bounds):\n  " + "\n  ".join(sorted(set(spills))))
    sys.exit(1)
