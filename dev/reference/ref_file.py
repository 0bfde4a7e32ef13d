"""Reader/writer for the binary reference file described in FORMAT.md.

The writer (used by gpt2_ref.py) and the reader (used by test_gpt2_ref.py and
any other Python tooling) share ONE table of (name, dtype, shape): `layout(cfg)`.
Both walk that list in order, so they cannot disagree about the payload.

    python dev/reference/ref_file.py build/ref_a.bin     # prints a summary
"""
import struct
import sys
from dataclasses import dataclass

import numpy as np

MAGIC = 20261124
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4


@dataclass
class Config:
    L: int
    C: int
    NH: int
    V: int
    Vp: int
    maxT: int
    B: int
    T: int
    M: int
    K: int
    seed: int = 1
    init: int = 0
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    wd: float = 0.0
    clip: float = 1.0


# ---------------------------------------------------------------------------
# the shared tables
# ---------------------------------------------------------------------------
# names of the 16 parameter tensors, in llm.c order
PARAM_NAMES = ["wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
               "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb"]
# tensors that get weight decay (the 2-D matrices)
DECAYED = {"wte", "wpe", "qkvw", "attprojw", "fcw", "fcprojw"}


def param_shapes(cfg):
    """[(name, shape)] of the 16 parameter tensors, llm.c order."""
    L, C, Vp, maxT = cfg.L, cfg.C, cfg.Vp, cfg.maxT
    return [("wte", (Vp, C)), ("wpe", (maxT, C)),
            ("ln1w", (L, C)), ("ln1b", (L, C)),
            ("qkvw", (L, 3 * C, C)), ("qkvb", (L, 3 * C)),
            ("attprojw", (L, C, C)), ("attprojb", (L, C)),
            ("ln2w", (L, C)), ("ln2b", (L, C)),
            ("fcw", (L, 4 * C, C)), ("fcb", (L, 4 * C)),
            ("fcprojw", (L, C, 4 * C)), ("fcprojb", (L, C)),
            ("lnfw", (C,)), ("lnfb", (C,))]


def num_params(cfg):
    return sum(int(np.prod(s)) for _, s in param_shapes(cfg))


def layer_act_shapes(cfg):
    """[(name, shape)] of one layer's recorded activations, in file order."""
    B, T, C, NH = cfg.B, cfg.T, cfg.C, cfg.NH
    return [("ln1", (B, T, C)), ("ln1_mean", (B, T)), ("ln1_rstd", (B, T)),
            ("qkv", (B, T, 3 * C)), ("att", (B, NH, T, T)), ("atty", (B, T, C)),
            ("attproj", (B, T, C)), ("residual2", (B, T, C)),
            ("ln2", (B, T, C)), ("ln2_mean", (B, T)), ("ln2_rstd", (B, T)),
            ("fch", (B, T, 4 * C)), ("fch_gelu", (B, T, 4 * C)),
            ("fcproj", (B, T, C)), ("residual3", (B, T, C))]


def act_shapes(cfg):
    """[(key, shape)] of one micro-batch's recorded activations, in file order.
    Per-layer keys are 'l{l}.{name}'."""
    B, T, C, V = cfg.B, cfg.T, cfg.C, cfg.V
    out = [("encoded", (B, T, C))]
    for l in range(cfg.L):
        out += [(f"l{l}.{n}", s) for n, s in layer_act_shapes(cfg)]
    out += [("lnf", (B, T, C)), ("lnf_mean", (B, T)), ("lnf_rstd", (B, T)),
            ("logits", (B, T, V)), ("losses", (B, T))]
    return out


def layout(cfg):
    """[(key, dtype, shape)] of the whole payload after the header, in order.
    Activation keys are 'mb{m}.<act key>'; per step keys are 'step_loss[k]', 'params[k]'."""
    N = num_params(cfg)
    M, B, T = cfg.M, cfg.B, cfg.T
    out = [("inputs", np.int32, (M, B, T)), ("targets", np.int32, (M, B, T)),
           ("params0", np.float32, (N,))]
    for m in range(M):
        out += [(f"mb{m}.{k}", np.float32, s) for k, s in act_shapes(cfg)]
    out += [("loss", np.float32, (1,)), ("grads", np.float32, (N,)),
            ("grad_norm", np.float32, (1,))]
    for k in range(cfg.K):
        out += [(f"step_loss[{k}]", np.float32, (1,)), (f"params[{k}]", np.float32, (N,))]
    return out


def file_size(cfg):
    return HEADER_BYTES + sum(np.dtype(dt).itemsize * int(np.prod(s)) for _, dt, s in layout(cfg))


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def f32_bits(x):
    return struct.unpack("<i", struct.pack("<f", float(x)))[0]


def bits_f32(i):
    return struct.unpack("<f", struct.pack("<i", int(i)))[0]


def split_params(flat, cfg):
    """flat [N] -> dict name -> view with its shape (llm.c order)."""
    out, off = {}, 0
    for name, shape in param_shapes(cfg):
        n = int(np.prod(shape))
        out[name] = flat[off:off + n].reshape(shape)
        off += n
    assert off == flat.size, (off, flat.size)
    return out


def concat_params(tensors, cfg, dtype=np.float64):
    """dict name -> array  ->  flat [N] in llm.c order."""
    return np.concatenate([np.asarray(tensors[n], dtype=dtype).reshape(-1)
                           for n, _ in param_shapes(cfg)])


def make_header(cfg):
    h = np.zeros(HEADER_INTS, dtype="<i4")
    h[0], h[1] = MAGIC, VERSION
    h[2:8] = [cfg.L, cfg.C, cfg.NH, cfg.V, cfg.Vp, cfg.maxT]
    h[8:13] = [cfg.B, cfg.T, cfg.M, cfg.K, cfg.seed]
    h[13] = cfg.init
    h[16:22] = [f32_bits(x) for x in (cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.wd, cfg.clip)]
    return h


def config_from_header(h):
    if int(h[0]) != MAGIC:
        raise ValueError(f"bad magic {int(h[0])}")
    if int(h[1]) != VERSION:
        raise ValueError(f"bad version {int(h[1])}")
    L, C, NH, V, Vp, maxT = (int(x) for x in h[2:8])
    B, T, M, K, seed = (int(x) for x in h[8:13])
    lr, beta1, beta2, eps, wd, clip = (bits_f32(x) for x in h[16:22])
    return Config(L=L, C=C, NH=NH, V=V, Vp=Vp, maxT=maxT, B=B, T=T, M=M, K=K, seed=seed,
                  init=int(h[13]), lr=lr, beta1=beta1, beta2=beta2, eps=eps, wd=wd, clip=clip)


# ---------------------------------------------------------------------------
# write / read
# ---------------------------------------------------------------------------
def write_ref(path, cfg, data):
    """data: dict key -> array for every key of layout(cfg). Returns bytes written."""
    with open(path, "wb") as f:
        f.write(make_header(cfg).tobytes())
        for key, dt, shape in layout(cfg):
            a = np.asarray(data[key])
            if a.size != int(np.prod(shape)):
                raise ValueError(f"{key}: got {a.shape}, layout says {shape}")
            f.write(np.ascontiguousarray(a, dtype=np.dtype(dt).newbyteorder("<")).tobytes())
        n = f.tell()
    assert n == file_size(cfg)
    return n


def read_ref(path):
    """-> (cfg, dict key -> array with its layout shape). Raises on a size mismatch."""
    raw = open(path, "rb").read()
    h = np.frombuffer(raw[:HEADER_BYTES], dtype="<i4")
    cfg = config_from_header(h)
    if len(raw) != file_size(cfg):
        raise ValueError(f"{path}: {len(raw)} bytes, expected {file_size(cfg)}")
    out, off = {}, HEADER_BYTES
    for key, dt, shape in layout(cfg):
        d = np.dtype(dt).newbyteorder("<")
        n = int(np.prod(shape))
        out[key] = np.frombuffer(raw, dtype=d, count=n, offset=off).reshape(shape).astype(dt)
        off += n * d.itemsize
    return cfg, out


if __name__ == "__main__":
    cfg, d = read_ref(sys.argv[1])
    print(cfg)
    print(f"N = {num_params(cfg)}  bytes = {file_size(cfg)}")
    print(f"loss = {d['loss'][0]:.6f}  grad_norm = {d['grad_norm'][0]:.6f}")
    print("step_loss:", " ".join(f"{d[f'step_loss[{k}]'][0]:.6f}" for k in range(cfg.K)))
