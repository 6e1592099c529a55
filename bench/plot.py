#!/usr/bin/env python3
"""PNG charts from the benches' JSON lines.

    datafeed-bench pipeline --threads 1 --json --torchvision  > runs.jsonl
    datafeed-bench pipeline --threads 4 --json --torchvision >> runs.jsonl
    bench/e2e/run_e2e.sh                                      >> runs.jsonl
    python3 bench/plot.py runs.jsonl --out charts/

Reads JSON lines (other lines are skipped and counted) and writes, for the
kinds of lines it finds:

  throughput_vs_threads.png   datafeed-bench pipeline: samples/s by producer
                              threads, with the bare kernel loop measured in
                              the same runs (the limit) and ideal scaling
  wait_vs_threads.png         trainer lines (mnist_train --json, run_e2e.sh,
                              or datafeed-consume --json with producer_threads
                              added): the trainer's data-wait fraction by
                              producer threads, one line per transport
  datafeed_vs_dataloader.png  datafeed-bench pipeline --torchvision: samples/s
                              per core, datafeed's thread against
                              torchvision's pipeline in one process (what each
                              DataLoader worker runs)
  transport_vs_limit.png      datafeed-bench shm / grpc: GB/s against memcpy /
                              raw TCP measured in the same run

It fails (exit 1, saying what it found) when no chart can be made.
Needs matplotlib (Debian: python3-matplotlib).
"""

import argparse
import collections
import json
import os
import sys


def read_lines(paths):
    records, skipped = [], 0
    for path in paths:
        f = sys.stdin if path == "-" else open(path, encoding="utf-8")
        with f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    skipped += bool(line)
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    skipped += 1
                    continue
                if isinstance(obj, dict):
                    records.append(obj)
                else:
                    skipped += 1
    return records, skipped


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def by_threads(rows, key):
    """{threads: median of key} over rows that have both."""
    acc = collections.defaultdict(list)
    for r in rows:
        if isinstance(r.get(key), (int, float)) and isinstance(r.get("threads"), int):
            acc[r["threads"]].append(float(r[key]))
    return {t: median(v) for t, v in sorted(acc.items())}


def chart_throughput(plt, rows, out):
    df = by_threads(rows, "samples_per_s")
    kernel = by_threads(rows, "kernel_samples_per_s")
    if not df:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    ts = list(df)
    ax.plot(ts, [df[t] for t in ts], "o-", label="datafeed producer")
    if kernel:
        kt = list(kernel)
        ax.plot(kt, [kernel[t] for t in kt], "s--", label="bare kernel loop (same run)")
    one = df.get(1)
    if one:
        ax.plot(ts, [one * t for t in ts], ":", color="gray", label="ideal scaling from 1 thread")
    ax.set_xlabel("producer threads")
    ax.set_ylabel("samples/s")
    stages = sorted({str(r.get("stages") or r.get("pipeline") or "") for r in rows} - {""})
    ax.set_title("Pipeline throughput vs threads" + ("\n" + stages[0] if len(stages) == 1 else ""), fontsize=9)
    ax.set_xticks(ts)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(plt, fig, out, "throughput_vs_threads.png")


def chart_wait(plt, rows, out):
    series = collections.defaultdict(lambda: collections.defaultdict(list))
    for r in rows:
        wait = r.get("data_wait_frac", r.get("wait_frac"))
        threads = r.get("producer_threads")
        if not isinstance(wait, (int, float)) or not isinstance(threads, int):
            continue
        name = str(r.get("transport") or r.get("source") or "?")
        if r.get("source") == "local":
            name = "in-process (DataLoader-like)"
        series[name][threads].append(100.0 * wait)
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    ticks = set()
    for name, pts in sorted(series.items()):
        ts = sorted(pts)
        ticks.update(ts)
        ax.plot(ts, [median(pts[t]) for t in ts], "o-", label=name)
    ax.set_xlabel("producer threads")
    ax.set_ylabel("trainer waiting for data (% of its time)")
    ax.set_title("Trainer data wait vs producer threads")
    ax.set_xticks(sorted(ticks))
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(plt, fig, out, "wait_vs_threads.png")


def chart_dataloader(plt, rows, out):
    df, tv = [], []
    for r in rows:
        if isinstance(r.get("torchvision_samples_per_s"), (int, float)) and isinstance(r.get("threads"), int):
            df.append(float(r["samples_per_s"]) / r["threads"])
            tv.append(float(r["torchvision_samples_per_s"]))
    if not df:
        return None
    fig, ax = plt.subplots(figsize=(5, 4))
    vals = [median(df), median(tv)]
    bars = ax.bar(["datafeed\n(one producer thread)", "torchvision\n(one DataLoader worker)"], vals,
                  color=["tab:blue", "tab:orange"])
    for b, v in zip(bars, vals):
        ax.annotate("%.0f" % v, (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("samples/s per core")
    ax.set_title("The same pipeline per core: %.1fx" % (vals[0] / vals[1] if vals[1] else float("nan")))
    ax.grid(axis="y", alpha=0.3)
    return save(plt, fig, out, "datafeed_vs_dataloader.png")


def chart_transport(plt, rows, out):
    bars = []
    for r in rows:
        if r.get("bench") == "shm" and isinstance(r.get("gbps"), (int, float)):
            bars.append(("shared memory", r["gbps"], "memcpy", r.get("memcpy_gbps")))
        elif r.get("bench") == "grpc" and isinstance(r.get("gbps"), (int, float)):
            bars.append(("gRPC", r["gbps"], "raw TCP", r.get("tcp_gbps")))
    if not bars:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = range(len(bars))
    ax.bar([x - 0.2 for x in xs], [b[1] for b in bars], 0.4, label="datafeed")
    ax.bar([x + 0.2 for x in xs], [b[3] or 0 for b in bars], 0.4, label="physical limit (same run)")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(["%s\nvs %s" % (b[0], b[2]) for b in bars])
    ax.set_ylabel("GB/s")
    ax.set_title("Transport throughput against its limit")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return save(plt, fig, out, "transport_vs_limit.png")


def save(plt, fig, out, name):
    path = os.path.join(out, name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", help="files of JSON lines ('-': stdin)")
    ap.add_argument("--out", default=".", help="folder for the PNGs (made if missing)")
    args = ap.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        print("plot.py: matplotlib is missing (%s): apt-get install python3-matplotlib" % e, file=sys.stderr)
        return 2
    records, skipped = read_lines(args.inputs)
    os.makedirs(args.out, exist_ok=True)
    pipeline = [r for r in records if r.get("bench") == "pipeline"]
    made = [p for p in (chart_throughput(plt, pipeline, args.out), chart_wait(plt, records, args.out),
                        chart_dataloader(plt, pipeline, args.out), chart_transport(plt, records, args.out)) if p]
    for p in made:
        print(p)
    if skipped:
        print("plot.py: %d lines were not JSON objects and were skipped" % skipped, file=sys.stderr)
    if not made:
        kinds = collections.Counter(str(r.get("bench") or r.get("source") or "unknown") for r in records)
        print("plot.py: no chart: %d JSON lines (%s) hold none of the fields a chart needs" %
              (len(records), ", ".join("%s: %d" % kv for kv in sorted(kinds.items())) or "none"), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
