"""Self-tests of the NumPy GPT-2 reference (gpt2_ref.py) and its file format (ref_file.py).

    python dev/reference/test_gpt2_ref.py

Prints one line per check and ends with 'N passed, N failed'; exit status 1 on
any failure. Runs in ~10 s on 2 cores.
"""
import contextlib
import hashlib
import io
import math
import os
import re
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt2_ref as G  # noqa: E402
import ref_file as R  # noqa: E402
from ref_file import Config, param_shapes  # noqa: E402

RESULTS = {"passed": 0, "failed": 0}


def check(name, ok, detail=""):
    RESULTS["passed" if ok else "failed"] += 1
    print(f"[{'PASS' if ok else 'FAIL'}] {name}" + (f"  ({detail})" if detail else ""))
    return ok


def skip(name, why):
    print(f"[SKIP] {name}  ({why})")


# ---------------------------------------------------------------------------
# 1. mt19937 + normal_
# ---------------------------------------------------------------------------
# Published in karpathy/llm.c llmc/rand.h (header comment): seed 137, produced by
# PyTorch (torch.manual_seed(137); torch.randint(...); t.normal_()).
PUB_INT_A = [4053805790, 2173880614, 380293709, 1237255315, 2986595568]
PUB_N8 = [0.7947664260864258, 1.4369317293167114, -0.2292192131280899, 0.47556325793266296,
          -0.6334410905838013, -0.5791953802108765, -0.0925704762339592, -0.8659197092056274]
PUB_INT_B = 2186503452
PUB_N16 = [-1.2813878059387207, -2.646395683288574, -0.06569503247737885, 0.2180829495191574,
           -0.46536165475845337, -0.33108410239219666, 2.5485482215881348, 0.10425379872322083,
           0.8460659980773926, 0.9462448358535767, -0.2913765013217926, 0.34313806891441345,
           -1.1186704635620117, -0.18305328488349915, -2.3153159618377686, 0.3961987793445587]
PUB_INT_C = 2756748748
# The same 24 normals as llm.c's C float arithmetic gives them (float32 bit
# patterns), obtained from a C transcription of rand.h's algorithm compiled
# with gcc against glibc 2.36. PyTorch's values above agree with them only to
# ~5e-7 absolute (llm.c's header compares them printed with %f), hence the
# separate bit-exact vector.
C_N8_N16_BITS = [0x3f4b75d1, 0x3fb7ed61, 0xbe6ab86f, 0x3ef37d08, 0xbf222932, 0xbf144628,
                 0xbdbd958d, 0xbf5dacea, 0xbfa40484, 0xc0295e8c, 0xbd868b1f, 0x3e5f5123,
                 0xbeee43f3, 0xbea983db, 0x40231b6a, 0x3dd58309, 0x3f5897c7, 0x3f723d1a,
                 0xbe952f4d, 0x3eafafcb, 0xbf8f3097, 0xbe3b7253, 0xc0142e23, 0x3ecada91]
# sha256 of the float32 params0 bytes of llm.c's init (same C transcription,
# glibc 2.36) for (L, C, V, Vp, maxT); NH, B, T, ... do not enter the init.
C_INIT_SHA256 = {
    (4, 64, 101, 128, 32): "97dc42942f600e5029183a568c787c472d1cb686a6b54d0e061244cebf80c3ee",
    (2, 48, 77, 128, 24): "a02ad0fead757764989f478f1ffdc8c1ec41016155260ed1fd14ce0dfcfcc94a",
    (1, 8, 11, 16, 6): "ccc1a472fd3409d94d954a9c349476cd398f395e6c0b9ac97f39002ccc10100b",
}


def test_rng():
    r = G.MT19937(137)
    a = r.randint32(5).tolist()
    check("mt19937 seed 137: first 5 randint32", a == PUB_INT_A, f"{a}")
    n8 = G.normal_(8, 0.0, 1.0, r)            # n < 16 path (randfloat64 pairs)
    b = int(r.randint32(1)[0])
    n16 = G.normal_(16, 0.0, 1.0, r)          # n >= 16 path (normal_fill_16)
    c = int(r.randint32(1)[0])
    check("mt19937 randint32 after normal_(8)", b == PUB_INT_B, f"{b}")
    check("mt19937 randint32 after normal_(16)", c == PUB_INT_C, f"{c}")
    got = np.concatenate([n8, n16]).astype(np.float64)
    d = np.abs(got - np.array(PUB_N8 + PUB_N16)).max()
    check("normal_(8), normal_(16) vs PyTorch's published values (abs 1e-6)", d <= 1e-6, f"max |diff| {d:.2e}")
    cbits = np.array(C_N8_N16_BITS, dtype=np.uint32).view(np.float32)
    if G.INIT_MATH.startswith("libm"):
        ne = int((got.astype(np.float32).view(np.uint32) != cbits.view(np.uint32)).sum())
        check("normal_(8), normal_(16) bit-exact vs C float arithmetic", ne == 0, f"{ne} of 24 differ")
    else:
        ulp = (np.abs(got - cbits) / np.spacing(np.abs(cbits))).max()
        check("normal_ vs C float arithmetic within 4 ulp (no libm)", ulp <= 4, f"max {ulp:.0f} ulp")
    # long stream (several twists) against numpy's own MT19937 with the same init_genrand state
    bg = np.random.MT19937()
    st = bg.state
    st["state"]["key"], st["state"]["pos"] = G.MT19937(5489).state.copy(), 624
    bg.state = st
    r = G.MT19937(5489)
    ok = bool((bg.random_raw(3000).astype(np.uint32) == np.concatenate([r.randint32(1000), r.randint32(2000)])).all())
    check("mt19937 3000 outputs == numpy.random.MT19937 (independent implementation)", ok)
    # uniform conversions
    r1, r2 = G.MT19937(7), G.MT19937(7)
    u32 = r1.randfloat32(4)
    x = r2.randint32(4)
    ok32 = bool((u32 == (x & 0xFFFFFF).astype(np.float64) / 2 ** 24).all())
    u64 = r1.randfloat64(2)
    y = [int(v) for v in r2.randint32(4)]
    exp64 = [(((y[0] << 32) | y[1]) & ((1 << 53) - 1)) / 2 ** 53, (((y[2] << 32) | y[3]) & ((1 << 53) - 1)) / 2 ** 53]
    check("randfloat32 / randfloat64 definitions", ok32 and u64.tolist() == exp64)


def test_init():
    for key, sha in C_INIT_SHA256.items():
        L, C, V, Vp, maxT = key
        cfg = Config(L=L, C=C, NH=1, V=V, Vp=Vp, maxT=maxT, B=1, T=1, M=1, K=1)
        p0 = R.concat_params(G.init_params(cfg), cfg, np.float32)
        if G.INIT_MATH.startswith("libm"):
            h = hashlib.sha256(p0.astype("<f4").tobytes()).hexdigest()
            check(f"init L,C,V,Vp,maxT={key}: bit-exact with C (sha256)", h == sha, h[:16])
        else:
            skip(f"init {key} sha256", "libm not loadable; float64-rounded math may differ by ulps")
    cfg = Config(L=4, C=64, NH=4, V=101, Vp=128, maxT=32, B=1, T=1, M=1, K=1)
    p = G.init_params(cfg)
    ok = all((p[n] == 1).all() for n in ("ln1w", "ln2w", "lnfw"))
    ok &= all((p[n] == 0).all() for n in ("ln1b", "qkvb", "attprojb", "ln2b", "fcb", "fcprojb", "lnfb"))
    ok &= bool((p["wte"][cfg.V:] == 0).all()) and bool((p["wte"][:cfg.V] != 0).all())
    check("init structure: LN weights 1, biases 0, padded wte rows 0", ok)
    s = {n: p[n].std() for n in ("wpe", "qkvw", "fcw", "attprojw", "fcprojw")}
    s["wte"] = p["wte"][:cfg.V].std()
    want = {n: 0.02 / (math.sqrt(2 * cfg.L) if n in ("attprojw", "fcprojw") else 1) for n in s}
    ok = all(abs(s[n] / want[n] - 1) < 0.05 for n in s)
    check("init std: 0.02, 0.02/sqrt(2L) for attprojw/fcprojw", ok,
          " ".join(f"{n}={s[n]:.5f}" for n in s))
    # stream order: wte is the first draw from seed 42; wpe the next
    r = G.MT19937(42)
    a = G.normal_(cfg.V * cfg.C, 0.0, np.float32(0.02), r)
    b = G.normal_(cfg.maxT * cfg.C, 0.0, np.float32(0.02), r)
    check("init order: wte (V*C values) then wpe from seed 42",
          bool((p["wte"][:cfg.V].reshape(-1) == a).all() and (p["wpe"].reshape(-1) == b).all()))


# ---------------------------------------------------------------------------
# 2. forward against a naive loop implementation
# ---------------------------------------------------------------------------
def naive_forward(p, inp, tgt, cfg):
    """per-position loops, written independently of gpt2_ref's vectorized code"""
    B, T = inp.shape
    C, NH, V = cfg.C, cfg.NH, cfg.V
    HS = C // NH

    def ln(x, w, b):
        mu = sum(x) / C
        var = sum((xi - mu) ** 2 for xi in x) / C
        return np.array([(x[i] - mu) / math.sqrt(var + 1e-5) * w[i] + b[i] for i in range(C)])

    def gelu(x):
        return 0.5 * x * (1 + math.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))

    losses = np.zeros((B, T))
    logits_all = np.zeros((B, T, V))
    for b in range(B):
        x = [p["wte"][inp[b, t]] + p["wpe"][t] for t in range(T)]
        for l in range(cfg.L):
            h = [ln(x[t], p["ln1w"][l], p["ln1b"][l]) for t in range(T)]
            qkv = [p["qkvw"][l] @ h[t] + p["qkvb"][l] for t in range(T)]
            y = []
            for t in range(T):
                yt = np.zeros(C)
                for hh in range(NH):
                    sl = slice(hh * HS, (hh + 1) * HS)
                    q = qkv[t][:C][sl]
                    sc = [float(q @ qkv[t2][C:2 * C][sl]) / math.sqrt(HS) for t2 in range(t + 1)]
                    mx = max(sc)
                    e = [math.exp(s - mx) for s in sc]
                    z = sum(e)
                    for t2 in range(t + 1):
                        yt[sl] += e[t2] / z * qkv[t2][2 * C:][sl]
                y.append(yt)
            x = [x[t] + p["attprojw"][l] @ y[t] + p["attprojb"][l] for t in range(T)]
            h = [ln(x[t], p["ln2w"][l], p["ln2b"][l]) for t in range(T)]
            f = [np.array([gelu(v) for v in p["fcw"][l] @ h[t] + p["fcb"][l]]) for t in range(T)]
            x = [x[t] + p["fcprojw"][l] @ f[t] + p["fcprojb"][l] for t in range(T)]
        for t in range(T):
            lg = p["wte"] @ ln(x[t], p["lnfw"], p["lnfb"])
            lg = lg[:V]
            logits_all[b, t] = lg
            mx = lg.max()
            losses[b, t] = mx + math.log(sum(math.exp(v - mx) for v in lg)) - lg[tgt[b, t]]
    return logits_all, losses


def random_params(cfg, seed, scale=0.3):
    """non-degenerate float64 parameters (LN weights != 1, biases != 0) for checks"""
    rng = np.random.default_rng(seed)
    p = {n: rng.normal(size=s) * scale for n, s in param_shapes(cfg)}
    for n in ("ln1w", "ln2w", "lnfw"):
        p[n] += 1.0
    return p


def test_forward():
    cfg = Config(L=2, C=8, NH=2, V=11, Vp=16, maxT=6, B=2, T=5, M=1, K=1)
    p = random_params(cfg, 3)
    inp, tgt = G.draw_tokens(cfg)
    acts = G.gpt2_forward(p, inp[0], tgt[0], cfg)
    lg, ls = naive_forward(p, inp[0], tgt[0], cfg)
    d = max(np.abs(acts["logits"] - lg).max(), np.abs(acts["losses"] - ls).max())
    check("forward logits/losses == naive per-position loops", d < 1e-12, f"max diff {d:.1e}")
    att = acts["l1.att"]
    tri = np.triu(np.ones((cfg.T, cfg.T), dtype=bool), 1)
    ok = bool((att[..., tri] == 0).all()) and np.abs(att.sum(-1) - 1).max() < 1e-14
    check("att: future entries exactly 0, rows sum to 1", ok)


# ---------------------------------------------------------------------------
# 3. gradients vs central finite differences (float64)
# ---------------------------------------------------------------------------
# Central differences with h = 1e-5 in float64: truncation error h^2/6 |f'''|
# ~ 1e-11 and round-off ~ eps_mach * |loss| / h ~ 2e-16 * 5 / 1e-5 ~ 1e-10 (times
# a small factor for the summation noise of the forward). Measured worst
# absolute error on these configs is ~1e-9. So we accept
#     |fd - an| <= ATOL + RTOL * max(|fd|, |an|),   ATOL = 1e-8, RTOL = 1e-5,
# i.e. ~10x head-room over the measured noise, while any real backward bug
# (missing term, wrong transpose, wrong scale) gives errors of order |g| itself
# (relative error 1e-2..1), many orders of magnitude above the threshold.
FD_H, ATOL, RTOL = 1e-5, 1e-8, 1e-5


def fd_grad(p, name, idx, inputs, targets, cfg):
    a = p[name].reshape(-1)
    old = a[idx]
    a[idx] = old + FD_H
    lp = G.loss_only(p, inputs, targets, cfg)
    a[idx] = old - FD_H
    lm = G.loss_only(p, inputs, targets, cfg)
    a[idx] = old
    return (lp - lm) / (2 * FD_H)


def compare_fd(p, g, name, idxs, inputs, targets, cfg):
    worst_excess, worst_rel, worst_abs = 0.0, 0.0, 0.0
    for i in idxs:
        an = g[name].reshape(-1)[i]
        fd = fd_grad(p, name, i, inputs, targets, cfg)
        err = abs(fd - an)
        scale = max(abs(fd), abs(an))
        worst_excess = max(worst_excess, err / (ATOL + RTOL * scale))
        worst_abs = max(worst_abs, err)
        if scale > 1e-6:
            worst_rel = max(worst_rel, err / scale)
    return worst_excess <= 1.0, f"{len(idxs)} entries, max abs err {worst_abs:.1e}, max rel err {worst_rel:.1e}"


def test_grads_full():
    """every entry of every tensor, tiny config, non-degenerate random params"""
    cfg = Config(L=2, C=8, NH=2, V=11, Vp=16, maxT=6, B=2, T=5, M=2, K=1)
    p = random_params(cfg, 1)
    inputs, targets = G.draw_tokens(cfg)
    loss, g, _ = G.loss_and_grads(p, inputs, targets, cfg)
    check("loss_and_grads loss == loss_only", abs(loss - G.loss_only(p, inputs, targets, cfg)) < 1e-13)
    for name, shape in param_shapes(cfg):
        ok, detail = compare_fd(p, g, name, range(int(np.prod(shape))), inputs, targets, cfg)
        check(f"full FD grad {name}{shape}", ok, detail)


def test_grads_sampled():
    """sampled entries of every tensor, config A sizes, llm.c init params"""
    cfg = Config(L=4, C=64, NH=4, V=101, Vp=128, maxT=32, B=2, T=16, M=4, K=1)
    p = {n: a.astype(np.float64) for n, a in G.init_params(cfg).items()}
    inputs, targets = G.draw_tokens(cfg)
    _, g, _ = G.loss_and_grads(p, inputs, targets, cfg)
    rng = np.random.default_rng(123)
    for name, shape in param_shapes(cfg):
        flat = np.abs(g[name].reshape(-1))
        idxs = list(np.argsort(flat)[-3:]) + list(rng.choice(flat.size, 4, replace=False))
        if name == "wte":
            used = int(inputs[0, 0, 0])  # a row hit by both the embedding and the LM head
            idxs += [used * cfg.C + 5, cfg.V * cfg.C + 7]  # ... and a padded row
        ok, detail = compare_fd(p, g, name, idxs, inputs, targets, cfg)
        check(f"sampled FD grad {name}{shape}", ok, detail)
    ok = bool((g["wte"][cfg.V:] == 0).all()) and bool((g["wpe"][cfg.T:] == 0).all())
    check("grads of padded wte rows and unused wpe rows are exactly 0", ok)


# ---------------------------------------------------------------------------
# 4. optimizer
# ---------------------------------------------------------------------------
def test_adamw():
    cfg = Config(L=1, C=1, NH=1, V=1, Vp=1, maxT=1, B=1, T=1, M=1, K=1,
                 lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, wd=0.1)
    rng = np.random.default_rng(5)
    p = {"qkvw": rng.normal(size=5), "qkvb": rng.normal(size=3)}   # decayed / not decayed
    m = {n: np.zeros_like(a) for n, a in p.items()}
    v = {n: np.zeros_like(a) for n, a in p.items()}
    ref = {n: a.tolist() for n, a in p.items()}
    rm = {n: [0.0] * len(a) for n, a in p.items()}
    rv = {n: [0.0] * len(a) for n, a in p.items()}
    for t in (1, 2, 3):
        g = {n: rng.normal(size=a.shape) for n, a in p.items()}
        G.adamw_update(p, g, m, v, t, cfg)
        for n in ref:  # direct scalar re-derivation of FORMAT.md's formulas
            wd = 0.1 if n == "qkvw" else 0.0
            for i in range(len(ref[n])):
                gi = float(g[n][i])
                rm[n][i] = 0.9 * rm[n][i] + 0.1 * gi
                rv[n][i] = 0.95 * rv[n][i] + 0.05 * gi * gi
                mh = rm[n][i] / (1 - 0.9 ** t)
                vh = rv[n][i] / (1 - 0.95 ** t)
                ref[n][i] = ref[n][i] - 1e-2 * (mh / (math.sqrt(vh) + 1e-8) + wd * ref[n][i])
    d = max(np.abs(p[n] - np.array(ref[n])).max() for n in p)
    check("AdamW 3 steps (decayed + non-decayed tensor) == scalar re-derivation", d < 1e-15, f"max diff {d:.1e}")


def test_clip():
    g = {"qkvw": np.array([3.0, 4.0]), "qkvb": np.array([0.0])}   # norm 5
    n = G.global_norm(g)
    check("global_norm", abs(n - 5.0) < 1e-15)
    s_big, s_small, s_off = G.clip_scale(n, 1.0), G.clip_scale(n, 10.0), G.clip_scale(n, 0.0)
    check("clip applied when norm > clip (s = clip/norm)", abs(s_big - 0.2) < 1e-15, f"s={s_big}")
    check("clip not applied when norm <= clip", s_small == 1.0 and G.clip_scale(5.0, 5.0) == 1.0)
    check("clip <= 0 disables clipping", s_off == 1.0 and G.clip_scale(n, -1.0) == 1.0)
    cfg = Config(L=1, C=1, NH=1, V=1, Vp=1, maxT=1, B=1, T=1, M=1, K=1, beta1=0.9, beta2=0.95)
    p = {k: np.zeros_like(a) for k, a in g.items()}
    m = {k: np.zeros_like(a) for k, a in g.items()}
    v = {k: np.zeros_like(a) for k, a in g.items()}
    G.adamw_update(p, g, m, v, 1, cfg, s_big)
    ok = np.allclose(m["qkvw"], 0.1 * 0.2 * g["qkvw"], rtol=1e-14) and \
        np.allclose(v["qkvw"], 0.05 * 0.04 * g["qkvw"] ** 2, rtol=1e-14)
    check("AdamW moments see the clipped gradient", ok)
    # end to end: run_reference clips iff norm > clip
    base = dict(L=1, C=8, NH=2, V=11, Vp=16, maxT=6, B=2, T=5, M=2, K=2)
    _, info = G.run_reference(Config(**base, clip=1e-3))
    ok = all(abs(s - 1e-3 / nrm) < 1e-15 for s, nrm in zip(info["clip_scale"], info["grad_norm"]))
    _, info0 = G.run_reference(Config(**base, clip=0.0))
    _, info1 = G.run_reference(Config(**base, clip=1e6))
    ok &= all(s == 1.0 for s in info0["clip_scale"] + info1["clip_scale"])
    ok &= info["step_loss"][0] == info0["step_loss"][0] and info["step_loss"][1] != info0["step_loss"][1]
    check("run_reference: clip used iff grad_norm > clip, and it changes step 2", ok,
          f"norms {['%.3g' % x for x in info['grad_norm']]}")


# ---------------------------------------------------------------------------
# 5. the file
# ---------------------------------------------------------------------------
def expected_size(c):
    """closed form, independent of ref_file.layout"""
    L, C, NH, V, Vp, mT, B, T, M, K = c.L, c.C, c.NH, c.V, c.Vp, c.maxT, c.B, c.T, c.M, c.K
    N = Vp * C + mT * C + L * (2 * C + 3 * C * C + 3 * C + C * C + C + 2 * C + 4 * C * C + 4 * C + 4 * C * C + C) + 2 * C
    per_layer = (B * T * C * (1 + 3 + 1 + 1 + 1 + 1 + 4 + 4 + 1 + 1)   # ln1 qkv atty attproj res2 ln2 fch fch_gelu fcproj res3
                 + 4 * B * T + B * NH * T * T)                         # 2 LN stats x2, att
    acts = B * T * C + L * per_layer + B * T * C + 2 * B * T + B * T * V + B * T
    floats = N + M * acts + 1 + N + 1 + K * (1 + N)
    return 1024 + 4 * 2 * M * B * T + 4 * floats


def test_file():
    cfg = Config(L=2, C=8, NH=2, V=11, Vp=16, maxT=6, B=2, T=5, M=2, K=2, seed=7,
                 lr=1e-3, beta1=0.9, beta2=0.95, eps=1e-8, wd=0.1, clip=0.5)
    with tempfile.TemporaryDirectory() as td:
        out, log = os.path.join(td, "r.bin"), os.path.join(td, "r.log")
        args = ["--L", "2", "--C", "8", "--NH", "2", "--V", "11", "--Vp", "16", "--maxT", "6",
                "--B", "2", "--T", "5", "--M", "2", "--K", "2", "--lr", "1e-3", "--beta1", "0.9",
                "--beta2", "0.95", "--eps", "1e-8", "--wd", "0.1", "--clip", "0.5", "--seed", "7",
                "--out", out, "--log", log]
        with contextlib.redirect_stdout(io.StringIO()):
            G.main(args)
        size = os.path.getsize(out)
        check("file size == closed-form size", size == expected_size(cfg) == R.file_size(cfg), f"{size} bytes")
        c, d = R.read_ref(out)
        ok = (c.L, c.C, c.NH, c.V, c.Vp, c.maxT, c.B, c.T, c.M, c.K, c.seed, c.init) == \
            (2, 8, 2, 11, 16, 6, 2, 5, 2, 2, 7, 0)
        ok &= [c.lr, c.beta1, c.beta2, c.eps, c.wd, c.clip] == \
            [float(np.float32(x)) for x in (1e-3, 0.9, 0.95, 1e-8, 0.1, 0.5)]
        check("header fields parse back", ok)
        inp, tgt = G.draw_tokens(cfg)
        ok = bool((d["inputs"] == inp).all() and (d["targets"] == tgt).all())
        ok &= bool((d["targets"][..., :-1] == d["inputs"][..., 1:]).all())
        check("tokens == default_rng(seed) draw, targets = shifted inputs", ok)
        p0 = R.concat_params(G.init_params(cfg), cfg, np.float32)
        check("params0 == llm.c init", bool((d["params0"] == p0).all()))
        check("step_loss[0] == loss", d["step_loss[0]"][0] == d["loss"][0])
        gn = np.sqrt((d["grads"].astype(np.float64) ** 2).sum())
        check("grad_norm == |grads|", abs(gn / d["grad_norm"][0] - 1) < 1e-6, f"{d['grad_norm'][0]:.6f}")
        mean = np.mean([d[f"mb{m}.losses"].astype(np.float64).mean() for m in range(cfg.M)])
        lg = d["mb1.logits"].astype(np.float64)
        mx = lg.max(-1)
        ls = mx + np.log(np.exp(lg - mx[..., None]).sum(-1)) - np.take_along_axis(lg, tgt[1][..., None], -1)[..., 0]
        ok = abs(mean - d["loss"][0]) < 1e-6 and np.abs(ls - d["mb1.losses"]).max() < 1e-5
        ok &= abs(np.abs(d["mb0.l1.att"].sum(-1) - 1).max()) < 1e-6
        check("activations consistent (losses vs logits, mean loss, att rows)", ok)
        sp = R.split_params(d["params[1]"], cfg)
        ok = bool((R.split_params(d["grads"], cfg)["wte"][cfg.V:] == 0).all() and (sp["wte"][cfg.V:] == 0).all())
        check("padded wte rows stay 0 in grads and params", ok)
        # params[0] from params0 and grads: one clipped AdamW step from zero moments
        s = G.clip_scale(float(d["grad_norm"][0]), c.clip)
        p0d = {k: a.astype(np.float64) for k, a in R.split_params(d["params0"], cfg).items()}
        gd = {k: a.astype(np.float64) for k, a in R.split_params(d["grads"], cfg).items()}
        zero = {k: np.zeros_like(a) for k, a in p0d.items()}
        G.adamw_update(p0d, gd, dict(zero), dict(zero), 1, c, s)
        diff = np.abs(R.concat_params(p0d, cfg) - d["params[0]"]).max()
        check("params[0] == AdamW(params0, clipped grads)", diff < 1e-7 and s < 1.0, f"s={s:.4f}, max diff {diff:.1e}")
        lines = open(log).read().splitlines()
        ok = len(lines) == cfg.K and all(
            re.fullmatch(rf"s:{k} trl:\d+\.\d{{4}}", ln) and abs(float(ln.split("trl:")[1]) - d[f"step_loss[{k}]"][0]) < 1e-4
            for k, ln in enumerate(lines))
        check("--log lines 's:%d trl:%.4f'", bool(ok), lines[0] if lines else "empty")
        out2 = os.path.join(td, "r2.bin")
        with contextlib.redirect_stdout(io.StringIO()):
            G.main(args[:-4] + ["--out", out2])
        check("deterministic: second run byte-identical", open(out, "rb").read() == open(out2, "rb").read())
        with open(out, "rb") as f:
            raw = f.read()
        bad = os.path.join(td, "bad.bin")
        with open(bad, "wb") as f:
            f.write(raw[:-4])
        try:
            R.read_ref(bad)
            check("reader rejects a truncated file", False)
        except ValueError:
            check("reader rejects a truncated file", True)


def main():
    t0 = time.time()
    print(f"init float32 math: {G.INIT_MATH}")
    for fn in (test_rng, test_init, test_forward, test_adamw, test_clip, test_file,
               test_grads_sampled, test_grads_full):
        try:
            fn()
        except Exception as e:  # a crash counts as a failure, keep going
            check(f"{fn.__name__} raised", False, f"{type(e).__name__}: {e}")
    print(f"({time.time() - t0:.1f} s)")
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
