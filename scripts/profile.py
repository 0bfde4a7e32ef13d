"""
Find the bottleneck in a trace of the CPU trainer (-tr trace.json): the top ops by self time on each
stage, the slowest stage and its largest op, and a flame graph.

    python3 scripts/profile.py trace.json [--out flame.png] [--top 8]

The trace nests by time on each stage's track (pid): step > action (F3, B3, I3, W3) or optim > layer (L5)
> op (matmul, attention, layernorm, gelu, residual, classifier, encoder, adamw); send/recv (cat "comm")
sit beside the actions. An op's self time is its duration less that of anything nested in it. Ops directly
inside an action are the embeddings (encoder) on the first stage and lnf/LM head (layernorm, matmul,
classifier) on the last. A stage's compute is the sum of its actions plus its optimizer step ("optim"),
less any send/recv nested in them; whatever of it is inside no op is printed as "(outside any op)" so the
table always adds up.

The flame graph has one panel per stage on a common scale: x is time summed over identical stacks
(F0..F7 merge into F), y the nesting depth; the wider a stage's compute, the slower it is.
"""
import argparse
import json
import re
from collections import defaultdict

DEPTH = {"step": 0, "action": 1, "comm": 1, "layer": 2, "op": 3}


def load(path):
    with open(path) as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    stages = defaultdict(list)
    for e in events:
        if e.get("ph") != "X":
            continue
        cat = e.get("cat", "op")
        if e.get("name") == "optim":
            cat = "action"  # the optimizer step: a container like an action
        stages[int(e["pid"])].append(dict(name=str(e["name"]), cat=cat, ts=float(e["ts"]),
                                          end=float(e["ts"]) + float(e.get("dur", 0.0)), kids=[]))
    return {s: nest(evs) for s, evs in sorted(stages.items())}


def nest(events, eps=0.01):
    """Tree by time containment; returns the top-level events (each with .parent and .kids)."""
    events.sort(key=lambda e: (e["ts"], -(e["end"] - e["ts"]), DEPTH.get(e["cat"], 3)))
    roots, stack = [], []
    for e in events:
        while stack and not (e["ts"] >= stack[-1]["ts"] - eps and e["end"] <= stack[-1]["end"] + eps):
            stack.pop()
        e["parent"] = stack[-1] if stack else None
        (stack[-1]["kids"] if stack else roots).append(e)
        stack.append(e)
    return roots


def walk(events):
    for e in events:
        yield e
        yield from walk(e["kids"])


def dur(e):
    return e["end"] - e["ts"]


def self_time(e):
    return dur(e) - sum(dur(k) for k in e["kids"])


def where(op, last_stage):
    """The part of the model an op belongs to."""
    p = op["parent"]
    while p is not None and p["cat"] not in ("layer", "action"):
        p = p["parent"]
    if p is None:
        return "step"
    if p["cat"] == "layer":
        return "layers"
    if p["name"] == "optim":
        return "optimizer"
    return "embeddings" if op["name"] == "encoder" or not last_stage else "LM head"


def frame(e):
    """An event's name in the flame graph: micro-batch ids dropped (F3 -> F)."""
    return re.sub(r"^([FBIWfbiw])\d+$", r"\1", e["name"]) if e["cat"] == "action" else e["name"]


def analyse(stages):
    last = max(stages)
    rows = {}
    for s, roots in stages.items():
        evs = list(walk(roots))
        # send/recv nested in an action (e.g. the optimizer's all-reduce, if traced) is waiting, not compute
        waits = sum(dur(e) for e in evs if e["cat"] == "comm" and e["parent"] and e["parent"]["cat"] != "step")
        compute = sum(dur(e) for e in evs if e["cat"] == "action") - waits
        comm = sum(dur(e) for e in evs if e["cat"] == "comm")
        ops, outside = defaultdict(float), defaultdict(float)
        for e in evs:
            if e["cat"] == "op":
                ops[(e["name"], where(e, s == last))] += self_time(e)
            elif e["cat"] in ("action", "layer"):
                outside["optimizer" if e["name"] == "optim" else "F/B" if e["cat"] == "action" else "layers"] += self_time(e)
        step = max((dur(e) for e in evs if e["cat"] == "step" and e["name"] == "step"), default=0.0)
        optim = sum(dur(e) for e in evs if e["cat"] == "action" and e["name"] == "optim") - waits
        in_optim = sum(t for (name, part), t in ops.items() if part == "optimizer")
        rows[s] = dict(compute=compute, comm=comm, ops=ops, outside=outside, step=step, op_total=sum(ops.values()),
                       optim=optim, in_optim=in_optim)
    return rows


def report(rows, top):
    total = sum(r["compute"] for r in rows.values()) or 1.0
    for s, r in rows.items():
        c = r["compute"] or 1.0
        print(f"stage {s}: compute {r['compute'] / 1e3:.1f} ms ({100 * r['compute'] / total:.0f}% of all stages), "
              f"ops {r['op_total'] / 1e3:.1f} ms ({100 * r['op_total'] / c:.1f}% of its compute), "
              f"send/recv {r['comm'] / 1e3:.1f} ms, step {r['step'] / 1e3:.1f} ms")
        fb = r["compute"] - r["optim"]
        print(f"    ops cover {100 * (r['op_total'] - r['in_optim']) / (fb or 1):.1f}% of the actions "
              f"({fb / 1e3:.1f} ms) and {100 * r['in_optim'] / (r['optim'] or 1):.1f}% of the optimizer step "
              f"({r['optim'] / 1e3:.1f} ms)")
        items = sorted(r["ops"].items(), key=lambda kv: -kv[1])
        for (name, part), t in items[:top]:
            print(f"    {name:<11} {part:<11} {t / 1e3:10.2f} ms  {100 * t / c:5.1f}%")
        rest = sum(t for _, t in items[top:])
        if rest:
            print(f"    {'(other ops)':<23} {rest / 1e3:10.2f} ms  {100 * rest / c:5.1f}%")
        print(f"    {'(outside any op)':<23} {(r['compute'] - r['op_total']) / 1e3:10.2f} ms  "
              f"{100 * (r['compute'] - r['op_total']) / c:5.1f}%  ("
              + ", ".join(f"{k} {v / 1e3:.2f} ms" for k, v in sorted(r["outside"].items())) + ")")
    s = max(rows, key=lambda k: rows[k]["compute"])
    (name, part), t = max(rows[s]["ops"].items(), key=lambda kv: kv[1])
    print(f"bottleneck: stage {s} ({100 * rows[s]['compute'] / total:.0f}% of the compute) - {name} in the "
          f"{part} ({100 * t / (rows[s]['compute'] or 1):.0f}% of the stage's compute)")


COLORS = {"step": "#DDDDDD", "F": "#4C72B0", "B": "#55A868", "I": "#F39C12", "W": "#8E44AD", "optim": "#7F8C8D",
          "send": "#F5CBA7", "recv": "#F5CBA7", "matmul": "#E45756", "attention": "#F58518", "layernorm": "#72B7B2",
          "gelu": "#EECA3B", "residual": "#B279A2", "classifier": "#9D755D", "encoder": "#54A24B", "adamw": "#BAB0AC",
          "layer": "#C6DBEF"}


def flame(stages, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    def op_names(node):
        for (name, cat), (_, kids) in node.items():
            if cat == "op":
                yield name
            yield from op_names(kids)

    def merge(events, node, last):  # node: {(frame, cat): [time, {children}]}
        for e in events:
            if e["cat"] == "op" and e["parent"] and e["parent"]["cat"] == "action" and e["parent"]["name"] != "optim":
                k = node.setdefault((where(e, last), "layer"), [0.0, {}])  # head/embeddings: a layer of their own
                k[0] += dur(e)
                k = k[1].setdefault((e["name"], "op"), [0.0, {}])
            else:
                k = node.setdefault((frame(e), e["cat"]), [0.0, {}])
            k[0] += dur(e)
            merge(e["kids"], k[1], last)

    trees = {}
    for s, roots in stages.items():
        trees[s] = {}
        merge(roots, trees[s], s == max(stages))
    width = max(sum(v[0] for v in t.values()) for t in trees.values()) / 1e3 or 1.0
    fig, axes = plt.subplots(len(trees), 1, figsize=(11, 1.0 + 1.6 * len(trees)), squeeze=False, sharex=True)
    for ax, (s, tree) in zip(axes[:, 0], trees.items()):
        def draw(node, x, depth):
            order = lambda kv: (DEPTH.get(kv[0][1], 3), [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", kv[0][0])])
            for (name, cat), (t, kids) in sorted(node.items(), key=order):
                w = t / 1e3
                color = COLORS.get(name, COLORS["layer"] if cat == "layer" else "#A0A0A0")
                ax.barh(depth, w, left=x, height=0.95, color=color, edgecolor="white", linewidth=0.3)
                if w / width > 0.035:
                    ax.text(x + w / 2, depth, name, ha="center", va="center", fontsize=6, clip_on=True)
                draw(kids, x, depth + 1 if cat != "action" or name != "optim" else 3)
                x += w
        draw(tree, 0.0, 0)
        ax.set_ylim(-0.5, 3.5)
        ax.set_yticks(range(4))
        ax.set_yticklabels(["step", "action", "layer", "op"], fontsize=7)
        ax.set_ylabel(f"stage {s}")
        ax.set_xlim(0, width)
    axes[-1, 0].set_xlabel("time summed over identical stacks (ms), last step")
    ops = sorted({name for t in trees.values() for name in op_names(t)})
    fig.legend(handles=[Patch(color=COLORS.get(n, "#A0A0A0"), label=n) for n in ops], loc="lower center",
               ncol=len(ops), fontsize=7, frameon=False)
    axes[0, 0].set_title("flame graph per stage: step > action (F/B/optim) or send/recv > layer > op", fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main():
    ap = argparse.ArgumentParser(description="top ops per stage, the bottleneck, and a flame graph of a trace")
    ap.add_argument("trace")
    ap.add_argument("-o", "--out", default="flame.png", help="flame graph PNG ('' for none)")
    ap.add_argument("--top", type=int, default=8, help="ops listed per stage")
    args = ap.parse_args()
    stages = load(args.trace)
    if not stages:
        raise SystemExit("no complete ('ph': 'X') events in the trace")
    report(analyse(stages), args.top)
    if args.out:
        flame(stages, args.out)


if __name__ == "__main__":
    main()
