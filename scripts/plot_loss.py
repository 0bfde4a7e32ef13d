"""
Plot train / val loss curves from one or more llm.c-style main.log files into one PNG.

A log holds lines such as
    s:120 trl:4.1234 lr:0.000600 norm:1.23
    s:120 tel:4.2345
(a step, then train loss `trl:` or val loss `tel:`; any other fields are ignored, and so are
lines without a loss). If a step appears twice (a resumed run), its last value wins.

Usage:
    python scripts/plot_loss.py main.log
    python scripts/plot_loss.py base=log_a/main.log "pp=4 stages=log_b/main.log" --out loss.png
    python scripts/plot_loss.py log/main.log --smooth 20 --logy --title "GPT-2 124M on KJV"

Each run gets one color: train loss solid, val loss dashed with markers. A run's label is
its path, or LABEL when given as LABEL=PATH. --smooth N draws the train loss as an
exponential moving average (weight 1/N on each new point) over the faint raw curve.
"""

import argparse
import math
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

STEP_RE = re.compile(r"^s:(-?\d+)$")
FIELD_RE = re.compile(r"^(trl|tel):(\S+)$")


class LogError(Exception):
    pass


def parse_spec(spec):
    """'path' or 'label=path' -> (label, path).

    An existing file is taken as a path even if its name holds '='; a label may hold '='
    too: the first '=' after which an existing file is named splits label from path."""
    if os.path.exists(spec) or "=" not in spec:
        return spec, spec
    cuts = [i for i, c in enumerate(spec) if c == "="]
    cut = next((i for i in cuts if os.path.exists(spec[i + 1:])), cuts[0])
    label, path = spec[:cut], spec[cut + 1:]
    if not label or not path:
        raise LogError(f"bad run argument {spec!r}: expected PATH or LABEL=PATH")
    return label, path


def read_log(path):
    """Returns (train, val): dicts step -> loss."""
    if not os.path.isfile(path):
        raise LogError(f"log file not found: {path}")
    train, val = {}, {}
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            if len(fields) < 2:
                continue
            m = STEP_RE.match(fields[0])
            if m is None:
                continue
            step = int(m.group(1))
            for field in fields[1:]:
                fm = FIELD_RE.match(field)
                if fm is None:
                    continue
                try:
                    value = float(fm.group(2))
                except ValueError:
                    continue
                (train if fm.group(1) == "trl" else val)[step] = value
    if not train and not val:
        raise LogError(f"no loss lines ('s:<step> trl:<loss>' or 's:<step> tel:<loss>') in {path}")
    return train, val


def ema(values, n):
    """Exponential moving average with weight 1/n on each new value (n <= 1: no smoothing).
    Non-finite values (nan/inf) are passed through and do not enter the average."""
    if n <= 1:
        return list(values)
    alpha = 1.0 / n
    out, avg = [], None
    for v in values:
        if not math.isfinite(v):
            out.append(v)
            continue
        avg = v if avg is None else (1 - alpha) * avg + alpha * v
        out.append(avg)
    return out


def main():
    parser = argparse.ArgumentParser(description="plot train/val loss from llm.c-style main.log files")
    parser.add_argument("runs", nargs="+", metavar="[LABEL=]PATH", help="log files, optionally labelled")
    parser.add_argument("--out", "-o", default="loss.png", help="output PNG (default: %(default)s)")
    parser.add_argument("--title", default=None, help="plot title")
    parser.add_argument("--logy", action="store_true", help="logarithmic loss axis")
    parser.add_argument("--smooth", type=float, default=0, metavar="N",
                        help="EMA-smooth the train loss with weight 1/N (default: off)")
    args = parser.parse_args()
    if args.smooth < 0:
        parser.error("--smooth must be >= 0")

    runs = []
    try:
        for spec in args.runs:
            label, path = parse_spec(spec)
            runs.append((label, path) + read_log(path))
    except LogError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)

    fig, ax = plt.subplots(figsize=(10, 6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, path, train, val) in enumerate(runs):
        color = colors[i % len(colors)]
        summary = [label]
        if train:
            steps = sorted(train)
            losses = [train[s] for s in steps]
            if args.smooth > 1:
                ax.plot(steps, losses, color=color, alpha=0.25, linewidth=0.8)
                ax.plot(steps, ema(losses, args.smooth), color=color, linewidth=1.6,
                        label=f"{label} train (EMA {args.smooth:g})")
            else:
                ax.plot(steps, losses, color=color, linewidth=1.4, label=f"{label} train")
            summary.append(f"train: {len(steps)} points, last s:{steps[-1]} {losses[-1]:.4f}")
        if val:
            steps = sorted(val)
            losses = [val[s] for s in steps]
            ax.plot(steps, losses, color=color, linestyle="--", marker="o", markersize=4,
                    linewidth=1.4, label=f"{label} val")
            finite = [v for v in losses if math.isfinite(v)]
            best = f", best {min(finite):.4f}" if finite else ""
            summary.append(f"val: {len(steps)} points, last s:{steps[-1]} {losses[-1]:.4f}{best}")
        print(" | ".join(summary))

    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if args.logy:
        ax.set_yscale("log")
        # plain numbers (3, 4, 6, 10) instead of 3x10^0 ...: losses span about one decade
        plain = FuncFormatter(lambda y, _: f"{y:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
    if args.title:
        ax.set_title(args.title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    plt.close(fig)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
