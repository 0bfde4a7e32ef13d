"""
Draw how a model is split into pipeline stages: the embeddings, each half of a transformer block
(attention "3a", MLP "3m": a stage boundary may fall between them) and the LM head
as boxes coloured by stage, once with widths by compute and once by parameters, and each stage's share
of the compute and its memory.

    ./train_gpt2_pp_cpu -e d8:c512:h8 -pl 8,0 -pp 2 -pm 8 -b 4 -t 64 -x 0 -v 0 -g 0 > plan.txt
    python3 scripts/plot_split.py plan.txt -o split.png

Reads the trainer's start-up lines (any run's output, or `-x 0` for just the plan):
    model: L=8 C=512 NH=8 V=50257 (padded 50304) maxT=1024, 51500032 parameters
    batch: B=4 T=64 M=8 -> ...
    stage 0: 8 layers from 0 + embeddings, 51499008 parameters, 50% of the compute, activation stash 2 ...
The per-block compute is llmc/partition.h's flop count (the printed shares add its memory traffic): a
block's attention half 3 (8 B T C^2 + 4 B T^2 C) flops per micro-batch, its MLP half 3 (16 B T C^2), the
LM head 3 (2 B T C Vp), the embeddings 0 (a gather).
Parameters: a block 12 C^2 + 13 C (4 C^2 + 6 C in the attention half), the embeddings (wte, wpe) Vp C + maxT C, the head lnf and its copy of
wte Vp C + 2 C. Memory per stage: 16 bytes a parameter (weights, gradients, AdamW's two moments) plus
the activation stash the trainer prints.
"""
import argparse
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STAGE_COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]


def parse(text):
    m = re.search(r"model: L=(\d+) C=(\d+) NH=(\d+) V=(\d+) \(padded (\d+)\) maxT=(\d+)", text)
    b = re.search(r"batch: B=(\d+) T=(\d+) M=(\d+)", text)
    # layers as the trainer prints them, halves as .5 (a layer's attention half, then its MLP half)
    stages = [dict(layers=s[0], units=round(2 * float(s[0])), first=round(2 * float(s[1])), embed=bool(s[2]),
                   head=bool(s[3]), params=int(s[4]), share=float(s[5]), slots=int(s[6]), slot_mib=float(s[7]))
              for s in re.findall(r"stage \d+[^:\n]*: (\d+(?:\.5)?) layers from (\d+(?:\.5)?)( \+ embeddings)?"
                                  r"( \+ lnf/LM head)?, (\d+) "
                                  r"parameters, ([\d.]+)% of the compute, activation stash (\d+) micro-batches x "
                                  r"([\d.]+) MiB", text)]
    if not (m and b and stages):
        sys.exit("no start-up plan in the input (need the 'model:', 'batch:' and 'stage s: ... layers from' lines)")
    L, C, NH, V, Vp, maxT = map(int, m.groups())
    B, T, M = map(int, b.groups())
    return dict(L=L, C=C, NH=NH, Vp=Vp, maxT=maxT, B=B, T=T, M=M), stages


def blocks(cfg, stages):
    """(label, stage, flops, params) for the embeddings, every half block and the head, in model order."""
    B, T, C, Vp = cfg["B"], cfg["T"], cfg["C"], cfg["Vp"]
    attention = (3.0 * (8.0 * B * T * C * C + 4.0 * B * T * T * C), 4 * C * C + 6 * C)  # ln1, qkv, attention, proj
    mlp = (3.0 * 16.0 * B * T * C * C, 8 * C * C + 7 * C)                               # ln2, fc, fc proj
    out = [("emb", 0, 0.0, Vp * C + cfg["maxT"] * C)]
    for s, st in enumerate(stages):
        out += [(f"L{u // 2}{'m' if u % 2 else 'a'}", s) + (mlp if u % 2 else attention)
                for u in range(st["first"], st["first"] + st["units"])]
    out.append(("head", len(stages) - 1, 3.0 * 2.0 * B * T * C * Vp, Vp * C + 2 * C))
    return out


def half(u):
    """half-layer unit u as a label: 3a is layer 3's attention half, 3m its MLP half"""
    return f"{u // 2}{'m' if u % 2 else 'a'}"


def plot(cfg, stages, out, title=None):
    bl = blocks(cfg, stages)
    fig, ax = plt.subplots(figsize=(10, 2.6 + 0.28 * len(stages)))
    rows = [("compute", 2), ("parameters", 3)]
    for name, k in rows:
        total = sum(b[k] for b in bl)
        y = 1 if name == "compute" else 0
        x = 0.0
        for b in bl:
            w = max(b[k] / total, 0.004)  # the embeddings' gather shows as a sliver
            ax.barh(y, w, left=x, height=0.7, color=STAGE_COLORS[b[1] % 8], edgecolor="white", linewidth=1)
            if w > 0.028:
                ax.text(x + w / 2, y, b[0], ha="center", va="center", fontsize=7, color="white")
            x += w
    ax.set_yticks([1, 0])
    ax.set_yticklabels(["compute\n(flops)", "parameters"], fontsize=8)
    ax.set_xlim(0, 1.0 + 0.004 * 2)
    ax.set_ylim(-0.6, 1.5)
    ax.set_xticks([])
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    lines = []
    for s, st in enumerate(stages):
        weights = 16 * st["params"] / 2 ** 20
        stash = st["slots"] * st["slot_mib"]
        parts = ([f"embeddings"] if st["embed"] else []) + \
                ([f"half blocks {half(st['first'])}..{half(st['first'] + st['units'] - 1)}"] if st["units"] else []) + \
                (["lnf + LM head"] if st["head"] else [])
        lines.append((s, f"stage {s} ({' + '.join(parts)}): {st['share']:.0f}% of the compute, "
                         f"{st['params'] / 1e6:.1f}M parameters, memory {weights:.0f} MiB weights+grads+AdamW "
                         f"+ {stash:.0f} MiB activations ({st['slots']} x {st['slot_mib']:.1f})"))
    for i, (s, text) in enumerate(lines):
        fig.text(0.02, 0.06 + 0.065 * (len(lines) - 1 - i), text, fontsize=8, color=STAGE_COLORS[s % 8],
                 fontweight="bold")
    head = f"d{cfg['L']}: C={cfg['C']}, {cfg['NH']} heads, Vp={cfg['Vp']}; B={cfg['B']} T={cfg['T']}, " \
           f"split {','.join(str(st['layers']) for st in stages)} over {len(stages)} stages"
    ax.set_title(title or head, fontsize=9)
    fig.tight_layout(rect=(0, 0.08 + 0.065 * len(lines), 1, 1))
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main():
    ap = argparse.ArgumentParser(description="draw a model's split into pipeline stages from the trainer's plan")
    ap.add_argument("log", help="the trainer's output ('-': stdin)")
    ap.add_argument("-o", "--out", default="split.png")
    ap.add_argument("--title", default=None)
    args = ap.parse_args()
    text = sys.stdin.read() if args.log == "-" else open(args.log).read()
    cfg, stages = parse(text)
    for s, st in enumerate(stages):
        print(f"stage {s}: {st['layers']} layers, {st['share']:.0f}% of the compute, {st['params']} parameters")
    plot(cfg, stages, args.out, args.title)


if __name__ == "__main__":
    main()
