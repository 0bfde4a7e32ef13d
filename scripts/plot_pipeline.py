"""
Draw pipeline timelines (like the GPipe paper's figure): a measured trace of the trainer, a simulated
schedule, or several of them as one grid (one panel each, top to bottom).

    python3 scripts/plot_pipeline.py trace.json -o pipeline.png [--title "1F1B P=2 M=8"]
    ./train_gpt2_pp_cpu -pp 4 -pm 8 -sc zbv -ps 1 | python3 scripts/plot_pipeline.py - -o zbv.png
    python3 scripts/plot_pipeline.py gpipe.txt 1f1b.txt zbv.json -o schedules.png --title "GPipe|1F1B|ZB-V"

Each input is one of
  - a Chrome/Perfetto trace, {"traceEvents": [...]} or a bare list, of complete ("ph": "X") events:
        {"name": "F3", "ph": "X", "pid": 0, "ts": 1250.0, "dur": 830.5, "args": {"mb": 3, "stage": 0}}
    pid is the rank (one row each), ts/dur in microseconds. Names: F<mb>, B<mb>, I<mb>, W<mb> (forward,
    backward, and the two halves of a split backward: input and weight gradient), send, recv, wait (blocked
    on a peer), optim (optimizer step). The trainer's nested trace (-tr) also has "cat": only "action" and
    "comm" events and optim are drawn; steps, layers and ops (scripts/profile.py reads those) are skipped.
    The simulator's trace (dev/test/schedule_tool.c -tr, schedule_write_trace) has no "cat" and args.stage.
  - the text printed by `train_gpt2_pp_cpu -ps 1` or `schedule_tool -a 1`: its unit-time rows
        rank 0 | F0 F1 F2 F3 .  .  .  B0 == f0 ...     (or "# rank 0 | ...")
    (F = 1 unit, B = 2, I = W = 1; '=' continues an action, '.' is idle); other lines are ignored except
    the summary line, whose P and S rescale a schedule of S = 2P stages to units of a P-way stage.
A rank's later stages (interleaved, ZB-V: lower case in the text, stage >= P in a trace) are hatched.
Idle gaps are white. The bubble printed per panel is the idle share of the schedule, the optimizer left
out: for a simulated schedule 1 - compute / (ranks x makespan), as the simulator prints it; for the
trainer's trace 1 - compute / (sum of each rank's schedule span, first to last event), as the trainer's
step line measures it.
"""
import argparse
import json
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

COMPUTE = re.compile(r"^([FBIWfbiw])(\d+)$")
COLORS = {
    "F": "#4C72B0",      # forward: blue
    "B": "#55A868",      # backward: green
    "I": "#F39C12",      # backward, input gradient: orange
    "W": "#8E44AD",      # backward, weight gradient: purple
    "send": "#E59866",   # transfers
    "recv": "#F5CBA7",
    "wait": "#E5E5E5",   # blocked on a peer
    "optim": "#7F8C8D",  # optimizer: grey
    "other": "#A0A0A0",
}
LEGEND = [("F", "forward"), ("B", "backward"), ("I", "backward (input grad)"), ("W", "backward (weight grad)"),
          ("send", "send"), ("recv", "recv"), ("wait", "wait"), ("optim", "optimizer")]


def event(rank, ts, dur, name, mb=None, stage=None, nranks=None):
    m = COMPUTE.match(name)
    if m:
        later = m.group(1).islower() or (stage is not None and nranks is not None and stage >= nranks)
        return dict(rank=rank, ts=ts, dur=dur, kind=m.group(1).upper(), mb=int(m.group(2)) if mb is None else mb,
                    later=later, name=name)
    return dict(rank=rank, ts=ts, dur=dur, kind=name if name in COLORS else "other", mb=mb, later=False, name=name)


def load_trace(data):
    raw = data["traceEvents"] if isinstance(data, dict) else data
    raw = [e for e in raw if e.get("ph") == "X" and (e.get("cat") in (None, "action", "comm") or e.get("name") == "optim")]
    nranks = len({int(e["pid"]) for e in raw})
    nstages = max([e.get("args", {}).get("stage", 0) for e in raw] + [nranks - 1]) + 1
    k = nranks / nstages  # the simulator times each of S = kP stages in units of a whole stage: rescale
    out = []
    for e in raw:
        args = e.get("args", {})
        mb = args.get("mb")
        out.append(event(int(e["pid"]), k * float(e["ts"]), k * float(e.get("dur", 0.0)), str(e.get("name", "")),
                         mb if mb is not None and mb >= 0 else None, args.get("stage"), nranks))
    return out, "measured" if any("cat" in e for e in raw) else None


def load_text(text):
    out, summary = [], None
    for line in text.splitlines():
        m = re.match(r"^(?:#\s*)?rank\s+(\d+) \| ?(.*)$", line)
        if not m:
            if re.search(r"makespan .* bubble", line) and summary is None:
                summary = line.strip()
            continue
        for u, tok in enumerate(m.group(2).split()):
            if COMPUTE.match(tok):
                out.append(event(int(m.group(1)), float(u), 1.0, tok))
            elif tok.startswith("=") and out and out[-1]["rank"] == int(m.group(1)):
                out[-1]["dur"] += 1.0
    # with S = kP stages (interleaved, ZB-V) a unit is the forward of a 1/k-sized stage: rescale to P stages
    m = re.search(r"P=(\d+) S=(\d+)", summary or "")
    k = int(m.group(1)) / int(m.group(2)) if m else 1.0
    for e in out:
        e["ts"] *= k
        e["dur"] *= k
    return out, summary


def load(path):
    text = sys.stdin.read() if path == "-" else open(path).read()
    try:
        events, summary = load_trace(json.loads(text))
        unit = "us"
    except json.JSONDecodeError:
        events, summary = load_text(text)
        unit = "unit"
    if not events:
        sys.exit(f"{path}: no timeline in it (no complete trace events, no 'rank N | ...' rows)")
    return events, unit, summary


def plot_panel(ax, events, unit, title, xmax=None, measured=False):
    t0 = min(e["ts"] for e in events)
    # the schedule: everything but the optimizer step and the messages inside it (tied wte, grad norm)
    opt = [(e["rank"], e["ts"], e["ts"] + e["dur"]) for e in events if e["kind"] == "optim"]
    inside = lambda e: any(r == e["rank"] and a <= e["ts"] < b for r, a, b in opt)
    sched = [e for e in events if e["kind"] != "optim" and not inside(e)] or events
    span = max(e["ts"] + e["dur"] for e in sched) - min(e["ts"] for e in sched)
    if measured:  # the trainer's definition: each rank's own schedule span, averaged
        ranks = {e["rank"] for e in sched}
        span = sum(max(e["ts"] + e["dur"] for e in sched if e["rank"] == r) -
                   min(e["ts"] for e in sched if e["rank"] == r) for r in ranks) / len(ranks)
    full = max(e["ts"] + e["dur"] for e in events) - t0
    scale, label = (1.0, "time (units: a stage's F = 1, B = 2, I = W = 1; with 2P stages, half that)") if unit == "unit" else \
        (1e3, "time (ms)") if full >= 1e3 else (1.0, "time (us)")
    ranks = sorted({e["rank"] for e in events})
    row = {r: i for i, r in enumerate(ranks)}
    busy = {r: 0.0 for r in ranks}
    used = set()
    xlim = xmax if xmax is not None else full / scale
    for e in events:
        x, w, y = (e["ts"] - t0) / scale, e["dur"] / scale, row[e["rank"]]
        compute = e["kind"] in "FBIW"
        h = 0.8 if compute or e["kind"] == "optim" else 0.35  # transfers and waits as thin bars: not work
        ax.broken_barh([(x, w)], (y - h / 2, h), facecolors=COLORS[e["kind"]], hatch="///" if e["later"] else None,
                       edgecolors="black" if compute else "none", linewidth=0.4)
        used.add(e["kind"])
        if compute:
            busy[e["rank"]] += e["dur"]
        text = str(e["mb"]) if compute and e["mb"] is not None else "opt" if e["kind"] == "optim" else \
            e["name"] if e["kind"] == "other" else ""
        if text and w / xlim * ax.figure.get_figwidth() * 72 > 6 * len(text) + 2:  # only if it fits
            ax.text(x + w / 2, y, text, ha="center", va="center", fontsize=6,
                    color="white" if e["kind"] in ("F", "W", "optim") else "black")
    ax.set_yticks(range(len(ranks)))
    ax.set_yticklabels([f"rank {r}" for r in ranks], fontsize=8)
    ax.invert_yaxis()  # rank 0 on top, as in the GPipe figure
    ax.set_xlim(0, xlim)
    ax.set_xlabel(label, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", linestyle=":", linewidth=0.5)
    bubble = 1.0 - sum(busy.values()) / (len(ranks) * span)
    ax.set_title((title + ": " if title else "") + f"bubble {bubble:.3f}", fontsize=9, loc="left")
    return used, busy, span, bubble


def main():
    ap = argparse.ArgumentParser(description="draw pipeline timelines from traces or -ps 1 schedule text")
    ap.add_argument("inputs", nargs="+", help="trace JSON, or -ps 1 / schedule_tool -a 1 text ('-': stdin)")
    ap.add_argument("-o", "--out", default="pipeline.png", help="output PNG")
    ap.add_argument("--title", default=None, help="panel titles separated by | (default: the file names)")
    ap.add_argument("--width", type=float, default=None, help="figure width in inches")
    args = ap.parse_args()
    loaded = [load(p) for p in args.inputs]
    titles = args.title.split("|") if args.title else []
    n = len(loaded)
    units = [u for _, u, _ in loaded]
    # panels in the same unit share the x range, so their makespans compare at a glance
    xmax = {u: max(max(e["ts"] + e["dur"] for e in ev) - min(e["ts"] for e in ev) for ev, uu, _ in loaded if uu == u)
            for u in set(units)}
    nranks = [len({e["rank"] for e in ev}) for ev, _, _ in loaded]
    width = args.width or (10.0 if n > 1 else
                           min(max(8.0, 0.35 * sum(e["kind"] in "FBIW" for e in loaded[0][0]) / nranks[0]), 30.0))
    heights = [0.32 * r + 0.9 for r in nranks]
    fig, axes = plt.subplots(n, 1, figsize=(width, sum(heights) + 0.6), gridspec_kw=dict(height_ratios=heights),
                             squeeze=False)
    used = set()
    for i, ((events, unit, summary), ax) in enumerate(zip(loaded, axes[:, 0])):
        name = titles[i] if i < len(titles) else (None if args.inputs[i] == "-" and n == 1 else
                                                  re.sub(r"\.(json|txt)$", "", args.inputs[i].split("/")[-1]))
        if unit == "unit" and summary:
            makespan = max(e["ts"] + e["dur"] for e in events)
            name = (name + ", " if name else "") + f"makespan {makespan:g}"
        u, busy, span, bubble = plot_panel(ax, events, unit, name, xmax[unit] if n > 1 and unit == "unit" else None,
                                           summary == "measured")
        used |= u
        for r in sorted(busy):
            print(f"{args.inputs[i]}: rank {r}: compute busy {busy[r] / span:.3f}")
        print(f"{args.inputs[i]}: bubble (idle compute / (ranks * schedule span)) {bubble:.4f}")
    handles = [Patch(facecolor=COLORS[k], edgecolor="black", label=lab) for k, lab in LEGEND if k in used]
    if "other" in used:
        handles.append(Patch(facecolor=COLORS["other"], label="other"))
    if any(e["later"] for ev, _, _ in loaded for e in ev):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="///", label="rank's later stage"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.6 / (sum(heights) + 0.6), 1, 1))
    fig.savefig(args.out, dpi=100 if n > 1 else 150)
    small_png(args.out)
    print(f"wrote {args.out}")


def small_png(path, colors=64):
    """Re-save a PNG with a 64-colour palette (a few times smaller), where Pillow (matplotlib's) is there."""
    try:
        from PIL import Image
        Image.open(path).convert("RGB").quantize(colors).save(path, optimize=True)
    except ImportError:
        pass


if __name__ == "__main__":
    main()
