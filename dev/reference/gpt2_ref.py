"""NumPy float64 reference for the GPT-2 trainer: forward, backward, grad
accumulation, global-norm clipping, AdamW. Writes the binary file described in
FORMAT.md (layout shared with ref_file.py). Test-reference generation only.

    python dev/reference/gpt2_ref.py --L 4 --C 64 --NH 4 --V 101 --Vp 128 --maxT 32 \
        --B 2 --T 16 --M 4 --K 3 --lr 1e-3 --beta1 0.9 --beta2 0.95 --eps 1e-8 \
        --wd 0.1 --clip 1.0 --seed 1 --out build/ref_a.bin --log build/ref_a.log

Conventions are llm.c's (see FORMAT.md). Everything after the initial
parameters is float64; the initial parameters are llm.c's float32 random init
(mt19937 seed 42 + Box-Muller normal_), reproduced here in float32 arithmetic.
Shapes in comments: B batch, T time, C channels, NH heads, HS = C/NH,
V vocab, Vp padded vocab, L layers.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_file  # noqa: E402
from ref_file import Config, DECAYED, PARAM_NAMES, param_shapes  # noqa: E402

F32 = np.float32

# ===========================================================================
# llm.c's random init, bit-exact in float32 arithmetic.
# Algorithm: llm.c llmc/rand.h (mt19937 "numerically identical to torch",
# normal_ / normal_fill / normal_fill_16) and gpt2_build_from_random() in
# llm.c train_gpt2.cu. Written from the description, not copied.
# ===========================================================================
class MT19937:
    """Standard 32-bit Mersenne Twister (Matsumoto & Nishimura), init_genrand
    seeding, as PyTorch / llm.c use it. The twist is done on the whole 624-word
    state with numpy (in three chunks that respect the in-place update order)."""
    N, M = 624, 397
    MATRIX_A = np.uint32(0x9908B0DF)
    UMASK, LMASK = np.uint32(0x80000000), np.uint32(0x7FFFFFFF)

    def __init__(self, seed):
        s = [seed & 0xFFFFFFFF]
        for j in range(1, self.N):
            s.append((1812433253 * (s[-1] ^ (s[-1] >> 30)) + j) & 0xFFFFFFFF)
        self.state = np.array(s, dtype=np.uint32)
        self.out = np.empty(0, dtype=np.uint32)  # tempered outputs of the current state
        self.pos = 0

    def _mix(self, a, b):
        y = (a & self.UMASK) | (b & self.LMASK)
        return (y >> np.uint32(1)) ^ np.where((y & np.uint32(1)) != 0, self.MATRIX_A, np.uint32(0))

    def _twist(self):
        N, M, D = self.N, self.M, self.N - self.M  # D = 227
        old, new = self.state, np.empty_like(self.state)
        # j in [0, 227): partner old[j+397] is not yet updated
        new[:D] = old[M:] ^ self._mix(old[:D], old[1:D + 1])
        # j in [227, 454): partner new[j-227] in [0, 227), already updated
        new[D:2 * D] = new[:D] ^ self._mix(old[D:2 * D], old[D + 1:2 * D + 1])
        # j in [454, 623): partner new[j-227] in [227, 396), updated in the chunk above
        new[2 * D:N - 1] = new[D:N - 1 - D] ^ self._mix(old[2 * D:N - 1], old[2 * D + 1:N])
        # j = 623 wraps around to the (already updated) state[0]
        new[N - 1] = new[M - 1] ^ self._mix(old[N - 1:N], new[0:1])[0]
        self.state = new
        y = new.copy()  # tempering
        y ^= y >> np.uint32(11)
        y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
        y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
        y ^= y >> np.uint32(18)
        self.out, self.pos = y, 0

    def randint32(self, n):
        """next n 32-bit outputs, uint32[n]"""
        parts = []
        while n > 0:
            if self.pos == len(self.out):
                self._twist()
            take = min(n, len(self.out) - self.pos)
            parts.append(self.out[self.pos:self.pos + take])
            self.pos += take
            n -= take
        return np.concatenate(parts) if parts else np.empty(0, np.uint32)

    def randfloat32(self, n):
        # (x & (2^24-1)) * (1.0f/2^24): exact in float32
        return ((self.randint32(n) & np.uint32(0xFFFFFF)).astype(F32) * F32(1.0 / (1 << 24)))

    def randfloat64(self, n):
        # 64-bit = (first << 32) | second, masked to 53 bits, * 2^-53: exact in float64
        r = self.randint32(2 * n).astype(np.uint64)
        x = ((r[0::2] << np.uint64(32)) | r[1::2]) & np.uint64((1 << 53) - 1)
        return x.astype(np.float64) * (1.0 / (1 << 53))


# float32 libm functions logf/cosf/sinf. C's results depend on the libm, and
# glibc's are not correctly rounded (< 1 ulp error): evaluating in float64 and
# rounding differs from glibc in ~1.3% of the init values (by 1..4 ulp of the
# final value, relative error <= ~3e-7). So by default the very same libm
# functions are called through ctypes (one call per element: ~0.3 s for 2e5
# values), which makes the init bit-exact with a C build on the same libc.
# Fallback (no loadable libm, or GPT2_REF_LIBM=0): float64 evaluation rounded
# once to float32. See FORMAT.md.
def _load_libm():
    if os.environ.get("GPT2_REF_LIBM", "1") == "0":
        return None
    try:
        import ctypes
        import ctypes.util
        lib = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        fns = []
        for name in ("logf", "cosf", "sinf"):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float]
            fns.append(fn)
        return fns
    except (OSError, AttributeError):
        return None


_LIBM = _load_libm()
INIT_MATH = "libm (ctypes)" if _LIBM else "float64-rounded"


def _libm_or_f64(i, f64fn):
    def f(x):
        if _LIBM is None:
            return f64fn(x.astype(np.float64)).astype(F32)
        fn = _LIBM[i]
        return np.array([fn(v) for v in x.reshape(-1).tolist()], dtype=F32).reshape(x.shape)
    return f


_logf = _libm_or_f64(0, np.log)
_cosf = _libm_or_f64(1, np.cos)
_sinf = _libm_or_f64(2, np.sin)


def _normal_fill_16(d, mean, std):
    """d: float32 [nb,16] uniforms -> float32 [nb,16] normals (Box-Muller on the
    pairs (t, t+8)), every operation in C float semantics."""
    u1 = F32(1) - d[:, :8]                                   # float
    u2 = d[:, 8:]
    arg = (u1.astype(np.float64) + 1e-12).astype(F32)        # u1 + 1e-12 is double; logf takes float
    radius = np.sqrt(F32(-2) * _logf(arg))                   # sqrtf, float
    theta = ((2.0 * np.pi) * u2.astype(np.float64)).astype(F32)  # 2.0*M_PI*u2 in double -> float
    out = np.empty_like(d)
    out[:, :8] = radius * _cosf(theta) * std + mean
    out[:, 8:] = radius * _sinf(theta) * std + mean
    return out


def normal_(n, mean, std, rng):
    """llm.c normal_(data, n, mean, std): returns float32[n]. mean, std are float32."""
    mean, std = F32(mean), F32(std)
    if n >= 16:
        data = rng.randfloat32(n)
        nb = n // 16  # blocks at i = 0, 16, ... while i < n-15
        data[:nb * 16] = _normal_fill_16(data[:nb * 16].reshape(nb, 16), mean, std).reshape(-1)
        if n % 16 != 0:  # redraw the last 16 with fresh uniforms
            data[n - 16:] = _normal_fill_16(rng.randfloat32(16).reshape(1, 16), mean, std)[0]
        return data
    # n < 16: pairs from two float64 uniforms each (u1 first), cast to float
    data = np.empty(n, dtype=F32)
    t = 0
    while t < n:
        u = rng.randfloat64(2).astype(F32)
        u1, u2 = u[0:1], u[1:2]
        radius = np.sqrt(F32(-2) * _logf(((F32(1) - u2).astype(np.float64) + 1e-12).astype(F32)))
        theta = ((2.0 * np.pi) * u1.astype(np.float64)).astype(F32)
        data[t] = (radius * _cosf(theta) * std + mean)[0]
        if t + 1 < n:  # the sin sample: float product kept as double, then *std+mean in double
            nxt = np.float64((radius * _sinf(theta))[0])
            data[t + 1] = F32(nxt * np.float64(std) + np.float64(mean))
        t += 2
    return data


def init_params(cfg):
    """llm.c gpt2_build_from_random: dict name -> float32 array (param_shapes)."""
    rng = MT19937(42)
    p = {name: np.zeros(shape, dtype=F32) for name, shape in param_shapes(cfg)}
    L = cfg.L
    # residual_scale = 1.0f / sqrtf(2.0f * L), all float
    residual_scale = F32(1.0) / np.sqrt(F32(2.0) * F32(L))
    for l in range(L):
        for i, name in enumerate(PARAM_NAMES):
            if l == 0 and i in (2, 8, 14):  # ln1w, ln2w, lnfw
                p[name][...] = 1.0
            if (l == 0 and i in (0, 1)) or i in (4, 6, 10, 12):
                std = F32(0.02) * residual_scale if i in (6, 12) else F32(0.02)
                flat = p[name].reshape(-1)
                if i == 0:    # wte: only the V real rows
                    n, off = cfg.V * cfg.C, 0
                elif i == 1:  # wpe
                    n, off = flat.size, 0
                else:         # one layer's slice
                    n = flat.size // L
                    off = l * n
                flat[off:off + n] = normal_(n, 0.0, std, rng)
    return p


# ===========================================================================
# tokens
# ===========================================================================
def draw_tokens(cfg):
    """rng = default_rng(seed); tok = rng.integers(0, V, size=(M, B, T+1)) (int64);
    inputs = tok[..., :T], targets = tok[..., 1:] (targets are the shifted sequence)."""
    rng = np.random.default_rng(cfg.seed)
    tok = rng.integers(0, cfg.V, size=(cfg.M, cfg.B, cfg.T + 1), dtype=np.int64)
    return tok[..., :-1].astype(np.int32), tok[..., 1:].astype(np.int32)


# ===========================================================================
# model building blocks (float64)
# ===========================================================================
LN_EPS = 1e-5
GELU_SCALE = np.sqrt(2.0 / np.pi)


def layernorm_forward(x, w, b):
    # x (B,T,C), w,b (C) -> out (B,T,C), mean (B,T), rstd (B,T)
    mean = x.mean(-1)
    xc = x - mean[..., None]
    rstd = 1.0 / np.sqrt((xc * xc).mean(-1) + LN_EPS)  # biased variance
    out = xc * rstd[..., None] * w + b
    return out, mean, rstd


def layernorm_backward(dout, x, mean, rstd, w):
    # -> dx (B,T,C), dw (C), db (C)
    xhat = (x - mean[..., None]) * rstd[..., None]
    dw = (dout * xhat).sum((0, 1))
    db = dout.sum((0, 1))
    dxhat = dout * w
    dx = rstd[..., None] * (dxhat - dxhat.mean(-1, keepdims=True)
                            - xhat * (dxhat * xhat).mean(-1, keepdims=True))
    return dx, dw, db


def matmul_forward(x, w, b):
    # x (B,T,IC), w (OC,IC), b (OC) or None -> (B,T,OC)
    out = x @ w.T
    return out if b is None else out + b


def matmul_backward(dout, x, w):
    # dout (B,T,OC) -> dx (B,T,IC), dw (OC,IC), db (OC)
    dx = dout @ w
    dw = np.einsum("bto,bti->oi", dout, x)
    db = dout.sum((0, 1))
    return dx, dw, db


def attention_forward(qkv, NH):
    # qkv (B,T,3C) -> y (B,T,C), att (B,NH,T,T) (future entries exactly 0)
    B, T, C3 = qkv.shape
    C = C3 // 3
    HS = C // NH
    q, k, v = (qkv[..., i * C:(i + 1) * C].reshape(B, T, NH, HS).transpose(0, 2, 1, 3)
               for i in range(3))                                   # (B,NH,T,HS)
    s = (q @ k.transpose(0, 1, 3, 2)) / np.sqrt(HS)                 # (B,NH,T,T)
    mask = np.tril(np.ones((T, T), dtype=bool))
    s = np.where(mask, s, -np.inf)
    s = s - s.max(-1, keepdims=True)
    e = np.exp(s)                                                   # exp(-inf) = 0
    att = e / e.sum(-1, keepdims=True)
    y = (att @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
    return y, att


def attention_backward(dy, qkv, att, NH):
    # dy (B,T,C) -> dqkv (B,T,3C)
    B, T, C3 = qkv.shape
    C = C3 // 3
    HS = C // NH
    q, k, v = (qkv[..., i * C:(i + 1) * C].reshape(B, T, NH, HS).transpose(0, 2, 1, 3)
               for i in range(3))
    dyh = dy.reshape(B, T, NH, HS).transpose(0, 2, 1, 3)           # (B,NH,T,HS)
    dv = att.transpose(0, 1, 3, 2) @ dyh
    datt = dyh @ v.transpose(0, 1, 3, 2)                           # (B,NH,T,T)
    ds = att * (datt - (datt * att).sum(-1, keepdims=True))         # softmax backward (masked -> 0)
    ds = ds / np.sqrt(HS)
    dq = ds @ k
    dk = ds.transpose(0, 1, 3, 2) @ q
    to_btc = lambda a: a.transpose(0, 2, 1, 3).reshape(B, T, C)     # noqa: E731
    return np.concatenate([to_btc(dq), to_btc(dk), to_btc(dv)], axis=-1)


def gelu_forward(x):
    return 0.5 * x * (1.0 + np.tanh(GELU_SCALE * (x + 0.044715 * x ** 3)))


def gelu_backward(dout, x):
    u = GELU_SCALE * (x + 0.044715 * x ** 3)
    th = np.tanh(u)
    du = GELU_SCALE * (1.0 + 3 * 0.044715 * x * x)
    return dout * (0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * du)


# ===========================================================================
# transformer block, whole model
# ===========================================================================
def layer_forward(x, p, l, NH):
    """one pre-LN block. x (B,T,C) residual in -> residual3 (B,T,C), cache dict"""
    a = {}
    a["ln1"], a["ln1_mean"], a["ln1_rstd"] = layernorm_forward(x, p["ln1w"][l], p["ln1b"][l])
    a["qkv"] = matmul_forward(a["ln1"], p["qkvw"][l], p["qkvb"][l])               # (B,T,3C)
    a["atty"], a["att"] = attention_forward(a["qkv"], NH)                       # (B,T,C)
    a["attproj"] = matmul_forward(a["atty"], p["attprojw"][l], p["attprojb"][l])
    a["residual2"] = x + a["attproj"]
    a["ln2"], a["ln2_mean"], a["ln2_rstd"] = layernorm_forward(a["residual2"], p["ln2w"][l], p["ln2b"][l])
    a["fch"] = matmul_forward(a["ln2"], p["fcw"][l], p["fcb"][l])                  # (B,T,4C)
    a["fch_gelu"] = gelu_forward(a["fch"])
    a["fcproj"] = matmul_forward(a["fch_gelu"], p["fcprojw"][l], p["fcprojb"][l])  # (B,T,C)
    a["residual3"] = a["residual2"] + a["fcproj"]
    a["_x"] = x
    return a["residual3"], a


def layer_backward(dres3, a, p, g, l, NH):
    """dres3 (B,T,C) -> dx (B,T,C); adds this layer's parameter grads into g"""
    dfch_gelu, dw, db = matmul_backward(dres3, a["fch_gelu"], p["fcprojw"][l])
    g["fcprojw"][l] += dw
    g["fcprojb"][l] += db
    dfch = gelu_backward(dfch_gelu, a["fch"])
    dln2, dw, db = matmul_backward(dfch, a["ln2"], p["fcw"][l])
    g["fcw"][l] += dw
    g["fcb"][l] += db
    dx2, dw, db = layernorm_backward(dln2, a["residual2"], a["ln2_mean"], a["ln2_rstd"], p["ln2w"][l])
    g["ln2w"][l] += dw
    g["ln2b"][l] += db
    dres2 = dres3 + dx2
    datty, dw, db = matmul_backward(dres2, a["atty"], p["attprojw"][l])
    g["attprojw"][l] += dw
    g["attprojb"][l] += db
    dqkv = attention_backward(datty, a["qkv"], a["att"], NH)
    dln1, dw, db = matmul_backward(dqkv, a["ln1"], p["qkvw"][l])
    g["qkvw"][l] += dw
    g["qkvb"][l] += db
    dx1, dw, db = layernorm_backward(dln1, a["_x"], a["ln1_mean"], a["ln1_rstd"], p["ln1w"][l])
    g["ln1w"][l] += dw
    g["ln1b"][l] += db
    return dres2 + dx1


def gpt2_forward(p, inp, tgt, cfg):
    """p: dict of float64 params; inp, tgt (B,T) int. -> acts dict (ref_file.act_shapes
    keys, float64) plus private caches; acts['losses'] (B,T)."""
    B, T = inp.shape
    V = cfg.V
    acts = {"encoded": p["wte"][inp] + p["wpe"][:T][None]}        # (B,T,C)
    x, caches = acts["encoded"], []
    for l in range(cfg.L):
        x, a = layer_forward(x, p, l, cfg.NH)
        caches.append(a)
        for name, _ in ref_file.layer_act_shapes(cfg):
            acts[f"l{l}.{name}"] = a[name]
    acts["lnf"], acts["lnf_mean"], acts["lnf_rstd"] = layernorm_forward(x, p["lnfw"], p["lnfb"])
    logits = acts["lnf"] @ p["wte"].T                                # (B,T,Vp)
    lg = logits[..., :V]                                             # softmax over the first V only
    lg = lg - lg.max(-1, keepdims=True)
    logz = np.log(np.exp(lg).sum(-1))
    bi, ti = np.meshgrid(np.arange(B), np.arange(T), indexing="ij")
    acts["logits"] = logits[..., :V]                                 # (B,T,V)
    acts["losses"] = logz - lg[bi, ti, tgt]                          # (B,T)
    acts["_probs"] = np.exp(lg - logz[..., None])                    # (B,T,V)
    acts["_x"], acts["_caches"], acts["_inp"], acts["_tgt"] = x, caches, inp, tgt
    return acts


def gpt2_backward(p, acts, dloss, cfg, g):
    """accumulate d(sum(losses)*dloss)/dparams into g (dict of float64 zeros-like p)"""
    inp, tgt = acts["_inp"], acts["_tgt"]
    B, T = inp.shape
    V = cfg.V
    dlogits = np.zeros(acts["lnf"].shape[:2] + (cfg.Vp,))            # (B,T,Vp), padded cols 0
    dlogits[..., :V] = acts["_probs"]
    bi, ti = np.meshgrid(np.arange(B), np.arange(T), indexing="ij")
    dlogits[bi, ti, tgt] -= 1.0
    dlogits *= dloss
    g["wte"] += np.einsum("btv,btc->vc", dlogits, acts["lnf"])      # LM head part of dwte
    dlnf = dlogits @ p["wte"]                                        # (B,T,C)
    dx, dw, db = layernorm_backward(dlnf, acts["_x"], acts["lnf_mean"], acts["lnf_rstd"], p["lnfw"])
    g["lnfw"] += dw
    g["lnfb"] += db
    for l in reversed(range(cfg.L)):
        dx = layer_backward(dx, acts["_caches"][l], p, g, l, cfg.NH)
    np.add.at(g["wte"], inp, dx)                                     # embedding part of dwte
    g["wpe"][:T] += dx.sum(0)


def loss_and_grads(p, inputs, targets, cfg, keep_acts=False):
    """mean loss over the M micro-batches and its gradient (dict, float64).
    Each position weighs 1/(M*B*T)."""
    M, B, T = inputs.shape
    dloss = 1.0 / (M * B * T)
    g = {n: np.zeros_like(v) for n, v in p.items()}
    loss, acts_all = 0.0, []
    for m in range(M):
        acts = gpt2_forward(p, inputs[m], targets[m], cfg)
        loss += acts["losses"].sum() * dloss
        gpt2_backward(p, acts, dloss, cfg, g)
        if keep_acts:
            acts_all.append({k: v for k, v in acts.items() if not k.startswith("_")})
    return loss, g, acts_all


def loss_only(p, inputs, targets, cfg):
    M, B, T = inputs.shape
    return sum(gpt2_forward(p, inputs[m], targets[m], cfg)["losses"].sum()
               for m in range(M)) / (M * B * T)


# ===========================================================================
# optimizer
# ===========================================================================
def global_norm(g):
    return float(np.sqrt(sum((v * v).sum() for v in g.values())))


def clip_scale(grad_norm, clip):
    """s = clip/grad_norm if clip > 0 and grad_norm > clip, else 1"""
    return clip / grad_norm if (clip > 0 and grad_norm > clip) else 1.0


def adamw_update(p, g, m, v, t, cfg, scale=1.0):
    """in-place AdamW step t (1-based) on dicts p, m, v with gradient scale*g."""
    b1, b2 = cfg.beta1, cfg.beta2
    for name in p:
        gg = scale * g[name]
        m[name] = b1 * m[name] + (1 - b1) * gg
        v[name] = b2 * v[name] + (1 - b2) * gg * gg
        mhat = m[name] / (1 - b1 ** t)
        vhat = v[name] / (1 - b2 ** t)
        wd = cfg.wd if name in DECAYED else 0.0
        p[name] = p[name] - cfg.lr * (mhat / (np.sqrt(vhat) + cfg.eps) + wd * p[name])


# ===========================================================================
# the whole reference run
# ===========================================================================
def run_reference(cfg, verbose=False):
    """-> (data dict keyed like ref_file.layout, info dict)"""
    inputs, targets = draw_tokens(cfg)
    p32 = init_params(cfg)
    p = {n: a.astype(np.float64) for n, a in p32.items()}
    m = {n: np.zeros_like(a) for n, a in p.items()}
    v = {n: np.zeros_like(a) for n, a in p.items()}
    data = {"inputs": inputs, "targets": targets, "params0": ref_file.concat_params(p32, cfg, F32)}
    info = {"step_loss": [], "grad_norm": [], "clip_scale": []}
    for k in range(cfg.K):
        loss, g, acts = loss_and_grads(p, inputs, targets, cfg, keep_acts=(k == 0))
        norm = global_norm(g)
        s = clip_scale(norm, cfg.clip)
        if k == 0:
            for mb, a in enumerate(acts):
                for key, val in a.items():
                    data[f"mb{mb}.{key}"] = val
            data["loss"] = [loss]
            data["grads"] = ref_file.concat_params(g, cfg)
            data["grad_norm"] = [norm]
        adamw_update(p, g, m, v, k + 1, cfg, s)
        data[f"step_loss[{k}]"] = [loss]
        data[f"params[{k}]"] = ref_file.concat_params(p, cfg)
        info["step_loss"].append(loss)
        info["grad_norm"].append(norm)
        info["clip_scale"].append(s)
        if verbose:
            print(f"step {k}: loss {loss:.6f}  grad_norm {norm:.6f}  clip_scale {s:.6f}")
    return data, info


def f32(x):
    """hyperparameters are stored as float32 in the file: use exactly those values"""
    return float(np.float32(x))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for k in ["L", "C", "NH", "V", "Vp", "maxT", "B", "T", "M", "K"]:
        ap.add_argument(f"--{k}", type=int, required=True)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.95)
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--wd", type=float, default=0.0)
    ap.add_argument("--clip", type=float, default=1.0, help="<= 0: no clipping")
    ap.add_argument("--seed", type=int, default=1, help="token seed (numpy default_rng)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--log", default=None, help="per-step train losses, 's:%%d trl:%%.4f'")
    a = ap.parse_args(argv)
    if a.C % a.NH or a.T > a.maxT or a.V > a.Vp or min(a.L, a.C, a.NH, a.V, a.B, a.T, a.M, a.K) < 1:
        ap.error("need C % NH == 0, 1 <= T <= maxT, V <= Vp, all sizes >= 1")
    cfg = Config(L=a.L, C=a.C, NH=a.NH, V=a.V, Vp=a.Vp, maxT=a.maxT, B=a.B, T=a.T, M=a.M, K=a.K,
                 seed=a.seed, init=0, lr=f32(a.lr), beta1=f32(a.beta1), beta2=f32(a.beta2),
                 eps=f32(a.eps), wd=f32(a.wd), clip=f32(a.clip))
    t0 = time.time()
    print(f"gpt2_ref: {cfg}")
    print(f"N = {ref_file.num_params(cfg)} parameters; init float32 logf/cosf/sinf: {INIT_MATH}")
    data, info = run_reference(cfg, verbose=True)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    nbytes = ref_file.write_ref(a.out, cfg, data)
    if a.log:
        os.makedirs(os.path.dirname(os.path.abspath(a.log)), exist_ok=True)
        with open(a.log, "w") as f:
            for k, loss in enumerate(info["step_loss"]):
                f.write(f"s:{k} trl:{loss:.4f}\n")
    print(f"wrote {a.out} ({nbytes} bytes) in {time.time() - t0:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
