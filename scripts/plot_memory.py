"""
Draw each pipeline configuration's memory per rank, from the CPU trainer's `-plan 1` (which prints every
stage's memory by category without allocating anything): one panel per (recomputation mode, schedule),
x = the pipeline width P, and at each P one bar per data-parallel variant (D=1; D=2; D=2 with ZeRO-1),
its height the largest rank's memory, stacked by category (parameters, gradients, AdamW moments,
activation stash, scratch, communication buffers). A dashed line marks 80 GiB (one A100/H100 80GB).

    python3 scripts/plot_memory.py -o docs/images/memory.png          (GPT-2 1.5B: d48:c1600:h25, B=8 T=1024 M=8)
    python3 scripts/plot_memory.py -e d4 -b 4 -t 64 -pm 4 --pp 1,2 -o memory.png

Runs, for every point,
    ./train_gpt2_pp_cpu -e MODEL -b B -t T -pm M -pp P -sc SCHEDULE -rc RC -dp D -z Z -plan 1
and reads its lines
    plan: zbv, P=4, M=8, B=8, T=1024, -rc always, ZeRO-1; per rank, fp32
    stage 0 memory (plan): parameters 1016.9 MiB | ... | total 28819.3 MiB (bytes: 1066278400 ...)
    rank 0 memory (plan): total 50654.5 MiB
A rank may hold several stages (zbv: stages r and 2P-1-r; interleaved: r, r+P, ...): the stages are
assigned to ranks by whichever of those layouts reproduces every printed rank total, and a rank's
categories are the sums of its stages'. With D > 1 the plan prints one replica's P ranks (the others
are the same). A point the trainer refuses (an `error:` line) is skipped and named; a run that fails
without one, a missing binary or output with no plan stops the script with an `error:` line. The sizes are the
CPU trainer's fp32 bytes; the CUDA trainer keeps activations in bf16 and its numbers differ.
"""
import argparse
import concurrent.futures
import os
import re
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

GIB = float(2 ** 30)
CATEGORIES = ["parameters", "gradients", "optimizer", "stash", "scratch", "communication"]
COLORS = {
    "parameters": "#4C72B0",     # blue
    "gradients": "#55A868",      # green
    "optimizer": "#8172B3",      # purple: AdamW's two moments
    "stash": "#DD8452",          # orange: activations kept for the backward
    "scratch": "#937860",        # brown
    "communication": "#8C8C8C",  # grey: send/receive, gradient and all-gather buffers
}
LABELS = {"optimizer": "optimizer (AdamW m, v)", "stash": "activation stash", "communication": "communication buffers"}
VARIANTS = [(1, 0, "D1"), (2, 0, "D2"), (2, 1, "D2\nZ1")]  # (D, ZeRO-1, tick label)

STAGE = re.compile(r"^stage (\d+) memory \(plan\): (.*)\(bytes: ([\d ]+)\)\s*$", re.M)
RANK = re.compile(r"^rank (\d+) memory \(plan\): total ([\d.]+) MiB", re.M)
PLAN = re.compile(r"^plan: [^,]+, P=(\d+),", re.M)


class Fatal(Exception):
    pass


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def layouts(S, P):
    """Candidate stage -> rank assignments for S stages on P ranks."""
    if S == P:
        return [list(range(S))]
    out = []
    if S == 2 * P:
        out.append([s if s < P else 2 * P - 1 - s for s in range(S)])  # V shape (zbv)
    if S % P == 0:
        out.append([s % P for s in range(S)])  # round robin (interleaved)
    return out


def parse(text):
    """{'ranks': [{category: bytes}], 'P': P} from one -plan 1 output; None if it holds no plan."""
    stages = {}
    for m in STAGE.finditer(text):
        names = re.findall(r"(\w+) [\d.]+ MiB", m.group(2))
        names = [n for n in names if n != "total"]
        vals = [int(v) for v in m.group(3).split()]
        if len(names) != len(vals):
            raise Fatal(f"stage {m.group(1)}: {len(names)} categories but {len(vals)} byte counts in '{m.group(0)}'")
        stages[int(m.group(1))] = dict(zip(names, vals))
    totals = {int(r): float(t) for r, t in RANK.findall(text)}
    p = PLAN.search(text)
    if not stages or not totals or not p:
        return None
    P, S = int(p.group(1)), len(stages)
    if sorted(stages) != list(range(S)) or sorted(totals) != list(range(P)):
        raise Fatal(f"plan with stages {sorted(stages)} and ranks {sorted(totals)} (P={P})")
    for layout in layouts(S, P):
        ranks = [dict.fromkeys(CATEGORIES, 0) for _ in range(P)]
        for s, r in enumerate(layout):
            for k, v in stages[s].items():
                ranks[r][k] = ranks[r].get(k, 0) + v
        if all(abs(sum(ranks[r].values()) / 2 ** 20 - totals[r]) < 0.05 * S + 0.1 for r in range(P)):
            return dict(P=P, ranks=ranks)
    raise Fatal(f"cannot assign {S} stages to {P} ranks so that every printed rank total matches")


def run_plan(args, sched, rc, P, D, Z):
    cmd = [args.bin, "-e", args.model, "-b", str(args.b), "-t", str(args.t), "-pm", str(args.pm), "-pp", str(P),
           "-sc", sched, "-rc", rc, "-dp", str(D), "-z", str(Z), "-plan", "1"]
    try:
        pr = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    except OSError as e:
        raise Fatal(f"cannot run {args.bin}: {e.strerror}")
    except subprocess.TimeoutExpired:
        raise Fatal(f"'{' '.join(cmd)}' took over 120 s")
    out = pr.stdout + pr.stderr
    err = re.search(r"^error: (.*)$", out, re.M)
    if err:  # refused (a schedule that does not fit this P, M or model): skip the point
        return None, err.group(1)
    if pr.returncode != 0:
        last = out.strip().splitlines()[-1:] or ["no output"]
        raise Fatal(f"'{' '.join(cmd)}' exited {pr.returncode} without an error: line ({last[0]})")
    plan = parse(pr.stdout)
    if plan is None:
        raise Fatal(f"'{' '.join(cmd)}' printed no memory plan (does {args.bin} know -plan 1?)")
    return plan, None


def plot(points, args, out):
    rcs, scheds, pps = args.rc, args.schedules, args.pp
    fig, axes = plt.subplots(len(rcs), len(scheds), figsize=(4.3 * len(scheds) + 0.6, 3.5 * len(rcs) + 0.9),
                             sharey=True, squeeze=False)
    ymax = args.ymax
    width = 0.26
    for i, rc in enumerate(rcs):
        for j, sched in enumerate(scheds):
            ax = axes[i][j]
            ticks, ticklabels = [], []
            for xi, P in enumerate(pps):
                for vi, (D, Z, vlabel) in enumerate(VARIANTS):
                    x = xi + (vi - 1) * width * 1.08
                    ticks.append(x)
                    ticklabels.append(vlabel)
                    pt = points.get((sched, rc, P, D, Z))
                    if pt is None:
                        ax.text(x, 1, "refused", rotation=90, ha="center", va="bottom", fontsize=6, color="#C44E52")
                        continue
                    rank = pt["rank"]
                    bottom = 0.0
                    for k in CATEGORIES:
                        h = rank.get(k, 0) / GIB
                        if bottom >= ymax:
                            break
                        ax.bar(x, min(h, ymax - bottom), width, bottom=bottom, color=COLORS[k], edgecolor="white",
                               linewidth=0.3)
                        bottom += h
                    total = sum(rank.values()) / GIB
                    if total > ymax:  # clipped: say how tall it is
                        ax.text(x, ymax * 0.985, f"{total:.0f}\u2191", rotation=90, ha="center", va="top",
                                fontsize=7, color="white", fontweight="bold")
                    else:
                        ax.text(x, total + ymax * 0.01, f"{total:.0f}", rotation=90, ha="center", va="bottom",
                                fontsize=6.5, color="black")
            ax.axhline(80, color="#C44E52", linestyle="--", linewidth=1)
            ax.set_xticks(ticks)
            ax.set_xticklabels(ticklabels, fontsize=6.5)
            ax.tick_params(axis="x", length=0, pad=2)
            for xi, P in enumerate(pps):  # the P of each group, under its three variant labels
                ax.text(xi, -0.16, f"P={P}", transform=ax.get_xaxis_transform(), ha="center", va="top", fontsize=9)
            ax.set_xlim(-0.6, len(pps) - 0.4)
            ax.set_ylim(0, ymax)
            ax.grid(axis="y", color="#E5E5E5", linewidth=0.6)
            ax.set_axisbelow(True)
            for side in ("top", "right"):
                ax.spines[side].set_visible(False)
            ax.set_title(f"{sched}, -rc {rc}", fontsize=10)
            if j == 0:
                ax.set_ylabel("largest rank's memory (GiB)", fontsize=9)
    handles = [Patch(color=COLORS[k], label=LABELS.get(k, k)) for k in CATEGORIES] + \
        [Line2D([], [], color="#C44E52", linestyle="--", linewidth=1, label="80 GiB: one A100/H100 80GB")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    head = (f"memory of the largest rank, {args.model}: B={args.b} T={args.t} M={args.pm} (the CPU trainer's "
            f"-plan 1, fp32)\nbars at each P: D1 = one pipeline, D2 = 2 data-parallel replicas, D2 Z1 = 2 replicas "
            f"with ZeRO-1; numbers: total GiB (\u2191: clipped at {ymax:g})")
    fig.suptitle(args.title or head, fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95), h_pad=2.2)
    d = os.path.dirname(out)
    if d:
        os.makedirs(d, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def ints(s):
    try:
        v = [int(x) for x in s.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{s}' is not a comma-separated list of integers")
    if not v or min(v) < 1:
        raise argparse.ArgumentTypeError(f"'{s}': want positive integers")
    return v


def main():
    ap = argparse.ArgumentParser(description="draw the largest rank's memory by category from the trainer's "
                                             "-plan 1, over P, schedules, recomputation and data parallelism")
    ap.add_argument("--bin", default="./train_gpt2_pp_cpu", help="the CPU trainer [./train_gpt2_pp_cpu]")
    ap.add_argument("-e", "--model", default="d48:c1600:h25", help="model, as the trainer's -e [GPT-2 1.5B]")
    ap.add_argument("-b", type=int, default=8, help="micro-batch size B [8]")
    ap.add_argument("-t", type=int, default=1024, help="sequence length T [1024]")
    ap.add_argument("-pm", type=int, default=8, help="micro-batches per step M [8]")
    ap.add_argument("--pp", type=ints, default=[1, 2, 4, 8], help="pipeline widths P [1,2,4,8]")
    ap.add_argument("--schedules", type=lambda s: s.split(","), default=["gpipe", "1f1b", "zbv"],
                    help="schedules, one panel column each [gpipe,1f1b,zbv]")
    ap.add_argument("--rc", type=lambda s: s.split(","), default=["never", "always"],
                    help="recomputation modes, one panel row each [never,always]")
    ap.add_argument("--ymax", type=float, default=160.0, help="top of the y axis in GiB; taller bars are clipped "
                                                               "and labelled [160]")
    ap.add_argument("-j", "--jobs", type=int, default=8, help="-plan runs at once [8]")
    ap.add_argument("-o", "--out", default="docs/images/memory.png")
    ap.add_argument("--title", default=None)
    args = ap.parse_args()
    if not (os.path.isfile(args.bin) and os.access(args.bin, os.X_OK)):
        fail(f"{args.bin}: no such executable (build it with `make train_gpt2_pp_cpu`, or pass --bin)")
    if args.jobs < 1:
        fail(f"--jobs {args.jobs}: want at least 1")
    if args.ymax <= 0:
        fail(f"--ymax {args.ymax:g}: want a positive number of GiB")
    todo = [(sched, rc, P, D, Z, vlabel) for sched in args.schedules for rc in args.rc for P in args.pp
            for D, Z, vlabel in VARIANTS]
    # each -plan call is short and mostly waits: run a few at once
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            plans = list(pool.map(lambda a: run_plan(args, *a[:5]), todo))
    except Fatal as e:
        fail(str(e))
    points, skipped = {}, []
    print(f"{'schedule':<9} {'rc':<7} {'P':>2} {'variant':<9} {'largest rank':>12} " +
          " ".join(f"{k[:6]:>7}" for k in CATEGORIES) + "   (GiB)")
    for (sched, rc, P, D, Z, vlabel), (plan, why) in zip(todo, plans):
        name = vlabel.replace("\n", "+")
        if plan is None:
            skipped.append(f"{sched} -rc {rc} P={P} {name}: {why}")
            continue
        r = max(range(plan["P"]), key=lambda k: sum(plan["ranks"][k].values()))
        rank = plan["ranks"][r]
        points[(sched, rc, P, D, Z)] = dict(rank=rank, r=r)
        print(f"{sched:<9} {rc:<7} {P:>2} {name:<9} {sum(rank.values()) / GIB:>7.1f} (r{r:<2}) " +
              " ".join(f"{rank.get(k, 0) / GIB:>7.1f}" for k in CATEGORIES))
    for s in skipped:
        print(f"skipped {s}")
    if not points:
        fail("the trainer refused every point: nothing to draw")
    plot(points, args, args.out)


if __name__ == "__main__":
    main()
