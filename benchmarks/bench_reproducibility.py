"""How far do the main job's numbers move with the BLAS thread count, and with the seed?

    python benchmarks/bench_reproducibility.py [--threads 1 2] [--seeds 0 1 2] [--epochs 20] [--compare]

Runs ``python -m minicnnrnn.train --threads T --seed S`` (the main job; ``--compare``: all
six methods) once per thread count T and seed S, each in a fresh temporary ``--out``, and
prints one row per run (wall and CPU seconds of the command, the scored epoch and the
CNN-RNN's test metrics from its ``metrics.json``), then:

* per thread count, the mean and sd over the seeds of each metric (what the seed moves);
* per seed, the largest difference between thread counts (what the thread count moves).

A different thread count may change the order in which a BLAS adds up a matrix product;
then the last bits of the float32 results differ and training amplifies them (with
NumPy's OpenBLAS 0.3.31 here, 1 and 2 threads gave bit-identical runs: docs/training.md). CPU seconds are the
fairer speed measure on a shared machine: wall time depends on what else runs.
The built-in features come from the cache (``~/.cache/minicnnrnn``, built by the first run).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
COLUMNS = ("C-P", "C-R", "C-F1", "O-P", "O-R", "O-F1", "MAP@10", "mAP")


def run_once(threads, seed, epochs, compare, out):
    """One command; returns (wall s, CPU s of the command and its children, metrics.json of the CNN-RNN)."""
    cmd = [sys.executable, "-m", "minicnnrnn.train", "--threads", str(threads), "--seed", str(seed)]
    cmd += ["--epochs", str(epochs), "--out", out, "--quiet"] + (["--compare"] if compare else [])
    env = dict(os.environ, PYTHONPATH=os.path.abspath(REPO))
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with open(os.path.join(out, "cnn-rnn", "metrics.json") if compare else os.path.join(out, "metrics.json")) as f:
        return wall, cpu, json.load(f)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=20, help="training epochs (the main job's default: 20)")
    p.add_argument("--compare", action="store_true", help="time `train --compare` (all six methods) instead")
    args = p.parse_args()
    load = os.getloadavg()[0]
    print(f"# main job{' --compare' if args.compare else ''}, {args.epochs} epochs, load average {load:.1f} at start")
    print("| threads | seed | wall s | CPU s | scored epoch | " + " | ".join(COLUMNS) + " | L/img |")
    print("|---" * (len(COLUMNS) + 6) + "|")
    runs = {}
    with tempfile.TemporaryDirectory(prefix="bench-repro-") as tmp:
        for t in args.threads:
            for s in args.seeds:
                wall, cpu, record = run_once(t, s, args.epochs, args.compare, os.path.join(tmp, f"t{t}-s{s}"))
                runs[t, s] = record
                m = record["metrics"]
                cells = " | ".join(f"{m[c]:.1f}" for c in COLUMNS)
                print(
                    f"| {t} | {s} | {wall:.0f} | {cpu:.0f} | {record['run']['scored_epoch']} | {cells} | "
                    f"{record['labels_per_image']:.2f} |",
                    flush=True,
                )
    print("\n# what the seed moves: mean ± sd over seeds, per thread count")
    for t in args.threads:
        cells = []
        for c in COLUMNS:
            values = [runs[t, s]["metrics"][c] for s in args.seeds]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{c} {statistics.mean(values):.1f} ± {sd:.1f}")
        print(f"threads {t}: " + ", ".join(cells))
    print("\n# what the thread count moves: largest difference between thread counts, same seed")
    for s in args.seeds:
        diffs = [
            max(runs[t, s]["metrics"][c] for t in args.threads) - min(runs[t, s]["metrics"][c] for t in args.threads)
            for c in COLUMNS
        ]
        print(f"seed {s}: " + ", ".join(f"{c} {d:.1f}" for c, d in zip(COLUMNS, diffs)))


if __name__ == "__main__":
    main()
