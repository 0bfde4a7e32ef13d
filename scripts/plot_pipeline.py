"""
Draw a pipeline timeline (like the GPipe paper's figure) from a Chrome/Perfetto trace.

    python scripts/plot_pipeline.py trace.json -o pipeline.png [--title "1F1B P=4 M=8"]

Input: the Chrome trace event format, either {"traceEvents": [...]} or a bare list. Only
complete events are drawn; everything else ("M" metadata, counters) is ignored:

    {"name": "F3", "ph": "X", "pid": 0, "tid": 0, "ts": 1250.0, "dur": 830.5,
     "args": {"mb": 3, "stage": 0}}

  name  "F<mb>" forward, "B<mb>" full backward, "I<mb>" / "W<mb>" split backward
        (input / weight), "send", "recv" (a transfer), "wait" (blocked on a peer or the
        GPU, i.e. idle), "optim" (optimizer step, grad norm, all-reduces); any other name
        is drawn in grey with its name
  pid   the pipeline rank (one row per rank; tid is ignored, set it to the rank too)
  ts    start, dur duration, both in microseconds (floats are fine)
  args  "mb": micro-batch id (used as the box label; for F/B/I/W the id in the name is
        used if args has none). Other args are ignored.

Times are drawn relative to the earliest event. Gaps with no event are idle time (the
bubble) and show as white. The per-rank compute busy fraction is printed to stdout.
dev/test/schedule_tool.c -tr writes this format from the schedule simulator.
"""
import argparse
import json
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

COMPUTE = re.compile(r"^([FBIW])(\d+)$")
COLORS = {
    "F": "#4C72B0",      # forward: blue
    "B": "#55A868",      # backward: green
    "I": "#8FD19E",      # backward input: light green
    "W": "#2E7D32",      # backward weight: dark green
    "send": "#F0B27A",   # transfers: orange
    "recv": "#F5CBA7",
    "wait": "#E5E5E5",   # waiting: light grey
    "optim": "#8E44AD",  # optimizer: purple
    "other": "#A0A0A0",
}
LEGEND = [("F", "forward"), ("B", "backward"), ("I", "backward (input)"), ("W", "backward (weight)"),
          ("send", "send"), ("recv", "recv"), ("wait", "wait"), ("optim", "optimizer")]


def load_events(path):
    with open(path) as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    out = []
    for e in events:
        if e.get("ph") != "X":
            continue
        name = str(e.get("name", ""))
        m = COMPUTE.match(name)
        if m:
            kind = m.group(1)
            mb = e.get("args", {}).get("mb", int(m.group(2)))
        else:
            kind = name if name in COLORS else "other"
            mb = e.get("args", {}).get("mb")
        out.append(dict(rank=int(e["pid"]), ts=float(e["ts"]), dur=float(e.get("dur", 0.0)),
                        kind=kind, name=name, mb=mb))
    return out


def plot(events, out_path, title=None):
    if not events:
        sys.exit("no complete ('ph': 'X') events in the trace")
    t0 = min(e["ts"] for e in events)
    t1 = max(e["ts"] + e["dur"] for e in events)
    span = max(t1 - t0, 1e-9)
    # pick a readable unit for the time axis
    scale, unit = (1e3, "ms") if span >= 1e3 else (1.0, "us")
    ranks = sorted({e["rank"] for e in events})
    row = {r: i for i, r in enumerate(ranks)}
    width = min(max(8.0, 0.35 * len([e for e in events if e["kind"] in "FBIW"]) / max(len(ranks), 1)), 30.0)
    fig, ax = plt.subplots(figsize=(width, 0.6 * len(ranks) + 1.6))
    busy = {r: 0.0 for r in ranks}
    used = set()
    for e in events:
        x, w = (e["ts"] - t0) / scale, e["dur"] / scale
        y = row[e["rank"]]
        compute = e["kind"] in ("F", "B", "I", "W")
        h = 0.8 if compute or e["kind"] == "optim" else 0.4  # comm/wait as thin bars: not work
        ax.broken_barh([(x, w)], (y - h / 2, h), facecolors=COLORS[e["kind"]],
                       edgecolors="black" if compute else "none", linewidth=0.5)
        used.add(e["kind"])
        if compute:
            busy[e["rank"]] += e["dur"]
        label = str(e["mb"]) if compute and e["mb"] is not None else ("opt" if e["kind"] == "optim" else "")
        if e["kind"] == "other":
            label = e["name"]
        # label only boxes wide enough to hold the text
        if label and w / (span / scale) * width * 72 > 7 * len(label) + 2:
            ax.text(x + w / 2, y, label, ha="center", va="center", fontsize=7,
                    color="white" if e["kind"] in ("F", "W", "optim") else "black")
    ax.set_yticks(range(len(ranks)))
    ax.set_yticklabels([f"rank {r}" for r in ranks])
    ax.invert_yaxis()  # rank 0 on top, as in the GPipe figure
    ax.set_xlim(0, span / scale)
    ax.set_xlabel(f"time ({unit})")
    ax.grid(axis="x", linestyle=":", linewidth=0.5)
    handles = [Patch(facecolor=COLORS[k], edgecolor="black", label=lab) for k, lab in LEGEND if k in used]
    if "other" in used:
        handles.append(Patch(facecolor=COLORS["other"], label="other"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.25 if len(ranks) < 4 else -0.12),
              ncol=len(handles), fontsize=8, frameon=False)
    idle = 1.0 - sum(busy.values()) / (len(ranks) * span)
    ax.set_title((title + "  " if title else "") + f"idle (bubble) fraction {idle:.3f}")
    fig.tight_layout()
    fig.savefig(out_path, dpi=150)
    for r in ranks:
        print(f"rank {r}: compute busy {busy[r] / span:.3f}")
    print(f"bubble (idle compute / (ranks * makespan)) {idle:.4f}; wrote {out_path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[1].strip())
    ap.add_argument("trace", help="Chrome trace JSON")
    ap.add_argument("-o", "--out", default="pipeline.png", help="output PNG")
    ap.add_argument("--title", default=None)
    args = ap.parse_args()
    plot(load_events(args.trace), args.out, args.title)


if __name__ == "__main__":
    main()
