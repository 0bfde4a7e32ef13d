#!/usr/bin/env python3
"""simt_pp.py -- rewrite the CUDA-only syntax of a .cu file so that it compiles as C++ with simt.h.

  k<<<grid, block[, smem[, stream]]>>>(args);
      -> ::simt::launch(::simt::LaunchInfo{"k", __FILE__, __LINE__}, ::simt::Cfg(grid, block, smem, stream),
                        [&](auto&... simt_a) { k(simt_a...); }, args);
     (a call, not &k: template arguments are deduced exactly as nvcc deduces them)
  extern __shared__ [__align__(N)] T name[];
      -> T* name = reinterpret_cast<T*>(::simt::dynamic_smem());     inside a function
      -> #define name (reinterpret_cast<T*>(::simt::dynamic_smem()))   at namespace scope
  cudaFuncSetAttribute(k, ...)
      -> ::simt::func_set_attribute_named("k", k, ...)   (the shared-memory opt-in is looked up by name)

Comments and string/char literals are left alone. Every newline is kept and the output starts with
`#line 1 "<original path>"`, so compiler, sanitizer and SIMT messages point at the .cu lines.

Quoted #includes that resolve (next to the including file, then in -I directories) are rewritten
the same way into a mirror tree (llm.c-style .cuh headers contain kernels and launches), and the
#include is pointed at the mirrored copy.

Usage: simt_pp.py [-I dir]... [--mirror DIR] [--depfile F] in.cu out.cpp
Only the Python 3 standard library is needed.
"""
import argparse
import os
import re
import sys

EXTERN_SHARED = re.compile(
    r"extern\s+(?:(?:volatile|__align__\s*\(\s*\d+\s*\)|alignas\s*\(\s*\d+\s*\))\s+)*__shared__\s+"
    r"(?P<pre>(?:(?:volatile|__align__\s*\(\s*\d+\s*\)|alignas\s*\(\s*\d+\s*\))\s+)*)"
    r"(?P<type>[\w:<>,\s\*]+?)\s*(?:(?:__align__|alignas)\s*\(\s*\d+\s*\)\s*)?"
    r"(?P<name>[A-Za-z_]\w*)\s*\[\s*\]\s*;")
INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"', re.M)
FUNC_ATTR = re.compile(r"\bcudaFuncSetAttribute\s*\(")


class PPError(Exception):
    pass


def code_mask(src):
    """True for characters that are code (not inside comments, literals or preprocessor lines)."""
    mask = bytearray(b"\x01") * len(src)
    i, n = 0, len(src)
    line_start = True
    while i < n:
        c = src[i]
        if line_start and c == "#":  # preprocessor directive (with continuation lines)
            j = i
            while True:
                k = src.find("\n", j)
                if k < 0: k = n; break
                if src[k - 1] == "\\": j = k + 1; continue
                break
            mask[i:k] = bytes(k - i)
            i = k
            continue
        if c == "\n": line_start = True; i += 1; continue
        if not c.isspace(): line_start = False
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            mask[i:j] = bytes(j - i)
            i = j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            mask[i:j] = bytes(j - i)
            i = j
        elif src.startswith('R"', i) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            d = src.find("(", i)
            delim = src[i + 2:d]
            j = src.find(")" + delim + '"', d)
            j = n if j < 0 else j + len(delim) + 2
            mask[i:j] = bytes(j - i)
            i = j
        elif c in "\"'":
            if c == "'" and i > 0 and src[i - 1].isalnum():  # digit separator 1'000
                i += 1
                continue
            j = i + 1
            while j < n and src[j] != c and src[j] != "\n":
                j += 2 if src[j] == "\\" else 1
            mask[i:min(j + 1, n)] = bytes(min(j + 1, n) - i)
            i = j + 1
        else:
            i += 1
    return mask


def line_of(src, pos):
    return src.count("\n", 0, pos) + 1


def match_close(src, mask, i, open_ch, close_ch, path):
    depth = 0
    for j in range(i, len(src)):
        if not mask[j]: continue
        if src[j] == open_ch: depth += 1
        elif src[j] == close_ch:
            depth -= 1
            if depth == 0: return j
    raise PPError("%s:%d: unbalanced '%s'" % (path, line_of(src, i), open_ch))


def callee_start(src, end, path):
    """Scan back from `end` over `ns::name<tmpl, args>` (or `obj.member`) and return its start."""
    i = end
    while i > 0 and src[i - 1].isspace(): i -= 1
    while True:
        if i > 0 and src[i - 1] == ">":  # template argument list
            depth, j = 0, i - 1
            while j >= 0:
                if src[j] == ">": depth += 1
                elif src[j] == "<":
                    depth -= 1
                    if depth == 0: break
                j -= 1
            i = j
            while i > 0 and src[i - 1].isspace(): i -= 1
        j = i
        while j > 0 and (src[j - 1].isalnum() or src[j - 1] == "_"): j -= 1
        if j == i: raise PPError("%s:%d: cannot find the kernel name before <<<" % (path, line_of(src, end)))
        i = j
        k = i
        while k > 0 and src[k - 1] in " \t": k -= 1
        if src[max(0, k - 2):k] == "::": i = k - 2
        elif k > 0 and src[k - 1] == ".": i = k - 1
        else: return i
        while i > 0 and src[i - 1] in " \t": i -= 1


def brace_scopes(src, mask):
    """For each '{' offset: True if it opens a namespace / extern "C" block."""
    kinds = {}
    last = 0
    for i, c in enumerate(src):
        if not mask[i]: continue
        if c in ";}":
            last = i + 1
        elif c == "{":
            head = src[last:i]
            kinds[i] = bool(re.search(r'\bnamespace\b[^;{}()]*$|\bextern\s*"C(\+\+)?"\s*$', head))
            last = i + 1
    return kinds


def at_namespace_scope(src, mask, kinds, pos):
    stack = []
    for i in range(pos):
        if not mask[i]: continue
        if src[i] == "{": stack.append(kinds.get(i, False))
        elif src[i] == "}" and stack: stack.pop()
    return all(stack)


def rewrite(src, path):
    out = src
    # 1. kernel launches, right to left so earlier offsets stay valid
    mask = code_mask(out)
    starts = [m.start() for m in re.finditer(r"<<<", out) if mask[m.start()]]
    for s in reversed(starts):
        e = out.find(">>>", s)
        if e < 0: raise PPError("%s:%d: <<< without >>>" % (path, line_of(out, s)))
        cfg = out[s + 3:e]
        p = e + 3
        while p < len(out) and out[p].isspace(): p += 1
        if p >= len(out) or out[p] != "(": raise PPError("%s:%d: expected ( after >>>" % (path, line_of(out, e)))
        q = match_close(out, mask, p, "(", ")", path)
        args = out[p + 1:q]
        c0 = callee_start(out, s, path)
        callee = out[c0:s].strip()
        name = " ".join(callee.split())
        info = '::simt::LaunchInfo{"%s", __FILE__, __LINE__}' % name.replace("\\", "\\\\").replace('"', '\\"')
        # Newlines of the callee and of the gap before "(" move behind the call; those of the
        # configuration and the arguments stay where they are.
        moved = out[c0:s].count("\n") + out[e + 3:p].count("\n")
        body = "[&](auto&... simt_a) { %s(simt_a...); }" % name
        # info first: its __LINE__ must be read before a multi-line configuration
        rep = "::simt::launch(%s, ::simt::Cfg(%s), %s%s)" % (info, cfg, body, (", " + args) if args.strip() else "")
        out = out[:c0] + rep + "\n" * moved + out[q + 1:]
    mask = code_mask(out)
    # 2. cudaFuncSetAttribute(k, ...) -> record the name as well
    for m in reversed(list(FUNC_ATTR.finditer(out))):
        if not mask[m.start()] or (m.start() > 0 and out[m.start() - 1] in ".:>"):
            continue
        p = m.end() - 1
        q = match_close(out, mask, p, "(", ")", path)
        depth, j = 0, p + 1
        while j < q:  # first top-level comma
            c = out[j]
            if mask[j]:
                if c in "(<[{": depth += 1
                elif c in ")>]}": depth -= 1
                elif c == "," and depth == 0: break
            j += 1
        first = " ".join(out[p + 1:j].split())
        if j >= q: continue
        out = out[:m.start()] + '::simt::func_set_attribute_named("%s", ' % first.replace('"', '\\"') + out[p + 1:]
    # 3. dynamic shared memory
    mask = code_mask(out)
    kinds = brace_scopes(out, mask)
    pieces, last = [], 0
    for m in EXTERN_SHARED.finditer(out):
        if not mask[m.start()]: continue
        pre = re.sub(r"(?:__align__|alignas)\s*\(\s*\d+\s*\)", "", m.group("pre"))  # dynamic smem is 128-aligned anyway
        t = " ".join((pre + " " + m.group("type")).split())
        nl = "\n" * m.group(0).count("\n")
        if at_namespace_scope(out, mask, kinds, m.start()):
            line_start = out.rfind("\n", 0, m.start()) + 1
            if out[line_start:m.start()].strip():
                raise PPError("%s:%d: put a namespace-scope `extern __shared__` declaration on its own line"
                              % (path, line_of(out, m.start())))
            rep = "#define %s (reinterpret_cast<%s*>(::simt::dynamic_smem()))" % (m.group("name"), t) + nl
        else:
            rep = "%s* %s = reinterpret_cast<%s*>(::simt::dynamic_smem());" % (t, m.group("name"), t) + nl
        pieces.append(out[last:m.start()]); pieces.append(rep); last = m.end()
    pieces.append(out[last:])
    return "".join(pieces)


class Mirror:
    """Rewrites a file and, recursively, the quoted headers it includes."""

    def __init__(self, incdirs, mirror_dir):
        self.incdirs = incdirs
        self.mirror_dir = mirror_dir
        self.done = {}  # original abs path -> mirrored abs path
        self.deps = []

    def resolve(self, inc, from_dir):
        for d in [from_dir] + self.incdirs:
            p = os.path.join(d, inc)
            if os.path.isfile(p): return os.path.abspath(p)
        return None

    def mirror_path(self, src):
        rel = os.path.relpath(src)
        if rel.startswith(".."): rel = "_abs" + src  # outside the working directory
        return os.path.abspath(os.path.join(self.mirror_dir, rel))

    def process(self, src_path, out_path):
        src_abs = os.path.abspath(src_path)
        self.done[src_abs] = os.path.abspath(out_path)
        self.deps.append(src_path)
        with open(src_path) as f:
            text = f.read()
        text = rewrite(text, src_path)
        from_dir = os.path.dirname(src_abs)

        def repl(m):
            target = self.resolve(m.group(1), from_dir)
            if target is None or not self.mirror_dir: return m.group(0)
            if target not in self.done:
                self.process(os.path.relpath(target), self.mirror_path(target))
            return m.group(0).replace('"%s"' % m.group(1), '"%s"' % self.done[target])

        text = INCLUDE.sub(repl, text)
        os.makedirs(os.path.dirname(os.path.abspath(out_path)) or ".", exist_ok=True)
        res = '#line 1 "%s"\n' % src_path + text
        old = None
        if os.path.exists(out_path):
            with open(out_path) as f: old = f.read()
        if old != res:  # untouched outputs keep their timestamps
            tmp = "%s.tmp%d" % (out_path, os.getpid())  # atomic: parallel builds share mirrored headers
            with open(tmp, "w") as f: f.write(res)
            os.replace(tmp, out_path)


def main(argv):
    ap = argparse.ArgumentParser(description="rewrite CUDA launch syntax for the SIMT CPU runtime")
    ap.add_argument("-I", dest="inc", action="append", default=[], help="include directory for quoted headers")
    ap.add_argument("--mirror", default=None, help="directory for rewritten copies of included headers")
    ap.add_argument("--depfile", default=None, help="write a make dependency file")
    ap.add_argument("input")
    ap.add_argument("output")
    a = ap.parse_args(argv)
    m = Mirror(a.inc, a.mirror)
    try:
        m.process(a.input, a.output)
    except PPError as e:
        sys.stderr.write("simt_pp: error: %s\n" % e)
        return 1
    if a.depfile:
        with open(a.depfile, "w") as f:
            f.write("%s: %s\n" % (a.output, " ".join(m.deps)))
            for d in m.deps[1:]: f.write("%s:\n" % d)  # deleted headers must not break the build
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
