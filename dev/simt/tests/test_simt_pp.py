#!/usr/bin/env python3
"""Tests of simt_pp.py, the <<<>>> / extern __shared__ rewriter (python3 stdlib only).
Prints "N passed, N failed" last and exits non-zero on failure."""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import simt_pp  # noqa: E402

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL: " + what)


def rw(src):
    return simt_pp.rewrite(src, "t.cu")


# 1. launches: line numbers kept, info before a multi-line configuration, templates, namespaces
src = "void f() {\n  ns::k<float,\n        4>\n  <<<dim3(g,\n  1), b, smem, st>>>(a,\n   b);\n  next();\n}\n"
out = rw(src)
check(out.count("\n") == src.count("\n"), "multi-line launch keeps the number of lines")
check(out.splitlines()[6].strip() == "next();", "the line after a multi-line launch stays in place")
check('LaunchInfo{"ns::k<float, 4>", __FILE__, __LINE__}, ::simt::Cfg(dim3(g,' in out, "info first, full kernel name: " + out)
check("[&](auto&... simt_a) { ns::k<float, 4>(simt_a...); }, a,\n   b)" in out, "a call (deduction) and the arguments in place")
out = rw("k<<<1, 32>>>();")
check(out.startswith('::simt::launch(::simt::LaunchInfo{"k"') and out.endswith("k(simt_a...); });"), "launch without arguments: " + out)
check(rw("obj.kern<<<1,1>>>(x);").find('{"obj.kern"') >= 0, "member access launch")

# 2. comments, strings, raw strings and preprocessor lines are left alone
for s in ['// k<<<1,1>>>(x);\n', '/* k<<<1,1>>>(x); */\n', 'const char* s = "k<<<1,1>>>(x)";\n',
          'auto r = R"x(k<<<1,1>>>(y))x";\n', "#define L k<<<1,1>>>(x)\n", "char c = '<'; int n = 1'000;\n"]:
    check(rw(s) == s, "untouched: " + s.strip())

# 3. dynamic shared memory: inside a function a local pointer, at namespace scope a macro
out = rw("__global__ void k() {\n  extern __shared__ __align__(16) float4 buf[];\n  buf[0] = x;\n}\n")
check("float4* buf = reinterpret_cast<float4*>(::simt::dynamic_smem());" in out, "extern __shared__ in a kernel: " + out)
out = rw("extern volatile __shared__ unsigned char raw[];\n")
check(out.startswith("#define raw (reinterpret_cast<unsigned char*>(::simt::dynamic_smem()))"), "namespace scope: " + out)
out = rw("namespace a { namespace b {\nextern __shared__ float s[];\n} }\n")
check("#define s (reinterpret_cast<float*>" in out, "inside namespaces it is still namespace scope: " + out)
out = rw('extern "C" {\nstruct S { int x; };\nvoid g() { extern __shared__ int t[]; }\n}\n')
check("int* t = reinterpret_cast<int*>" in out, "inside a function inside extern C: " + out)

# 4. cudaFuncSetAttribute records the kernel's name
out = rw("cudaFuncSetAttribute(kern<float, 2>, cudaFuncAttributeMaxDynamicSharedMemorySize, n);")
check(out == '::simt::func_set_attribute_named("kern<float, 2>", kern<float, 2>, cudaFuncAttributeMaxDynamicSharedMemorySize, n);', out)
check(rw("x.cudaFuncSetAttribute(a, b);") == "x.cudaFuncSetAttribute(a, b);", "member function of the same name untouched")

# 5. errors name the file and line
for bad, what in [("k<<<1,1>>>;", "expected ( after >>>"), ("\n\nk<<<1,1(x);", "<<< without >>>"), ("<<<1,1>>>(x);", "kernel name")]:
    try:
        rw(bad)
        check(False, "no error for " + bad)
    except simt_pp.PPError as e:
        check(what in str(e) and "t.cu:" in str(e), "error message: %s" % e)

# 6. end to end: quoted headers are rewritten into the mirror, #line names the originals,
# and a depfile lists them
with tempfile.TemporaryDirectory() as d:
    os.makedirs(os.path.join(d, "llmc"))
    with open(os.path.join(d, "llmc", "kern.cuh"), "w") as f:
        f.write('#pragma once\n#include "util.h"\n__global__ void k(float* x) {}\ninline void launch(float* x) { k<<<1, 32>>>(x); }\n')
    with open(os.path.join(d, "llmc", "util.h"), "w") as f:
        f.write("#pragma once\ninline int util() { return 1; }\n")
    with open(os.path.join(d, "main.cu"), "w") as f:
        f.write('#include <cstdio>\n#include "llmc/kern.cuh"\n#include "missing.h"\nint main() { return 0; }\n')
    out_cpp = os.path.join(d, "out", "main.cu.cpp")
    r = subprocess.run([sys.executable, os.path.join(os.path.dirname(HERE), "simt_pp.py"), "--mirror",
                        os.path.join(d, "out", "inc"), "--depfile", out_cpp + ".d", "main.cu", out_cpp],
                       cwd=d, capture_output=True, text=True)
    check(r.returncode == 0, "simt_pp.py exit status: " + r.stderr)
    main = open(out_cpp).read()
    mirrored = os.path.join(d, "out", "inc", "llmc", "kern.cuh")
    check(main.startswith('#line 1 "main.cu"\n'), "#line names the original")
    check('#include "%s"' % mirrored in main, "include points at the mirrored header: " + main)
    check('#include "missing.h"' in main and "#include <cstdio>" in main, "unresolved and system includes untouched")
    kern = open(mirrored).read()
    check(kern.startswith('#line 1 "llmc/kern.cuh"') and "::simt::launch(" in kern, "header rewritten: " + kern)
    check(os.path.exists(os.path.join(d, "out", "inc", "llmc", "util.h")), "nested include mirrored")
    dep = open(out_cpp + ".d").read()
    check(dep.startswith(out_cpp + ": main.cu llmc/kern.cuh llmc/util.h"), "depfile: " + dep)

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
