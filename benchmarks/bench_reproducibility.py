"""How far do the main job's numbers move with the BLAS thread count, and with the seed?

    python benchmarks/bench_reproducibility.py [--threads 1 2] [--seeds 0 1 2] [--epochs 20] [--compare] [--busy]
        [--coretypes Haswell Sandybridge]

Runs ``python -m minicnnrnn.train --threads T --seed S`` (the main job; ``--compare``: all
six methods) once per thread count T and seed S, each in a fresh temporary ``--out``, and
prints one row per run (wall and CPU seconds of the command, the scored epoch and the
CNN-RNN's test metrics from its ``metrics.json``), then:

* per thread count, the mean and sd over the seeds of each metric (what the seed moves);
* per seed, the largest difference between thread counts (what the thread count moves).

``--busy``: per seed, the same command once more at its default thread count (no
``--threads``) while one ``python -c 'while True: pass'`` process per core keeps every core
busy (started before the command, killed after it, also on an error), and whether its
``metrics.json`` is byte-identical (SHA-256 of the file) to the idle run at the thread
count that ``metrics.json`` records; with the 1-minute load average sampled during that run.

``--coretypes K ...``: per kernel K and seed, the command at the first thread count with
``OPENBLAS_CORETYPE=K``: NumPy's OpenBLAS (built with every CPU's kernels) then runs the
kernels of another CPU, which add up a product in another order, as another BLAS would; the
rows give the largest metric difference to the run with this CPU's own kernel.

A different thread count may change the order in which a BLAS adds up a matrix product;
then the last bits of the float32 results differ and training amplifies them (whether they
do with this machine's BLAS is what the table shows: docs/training.md). CPU seconds are the
fairer speed measure on a shared machine: wall time depends on what else runs.
The built-in features come from the cache (``~/.cache/minicnnrnn`` or ``$MINICNNRNN_CACHE``,
built by the first run), so the runs time training and scoring, not feature extraction.
"""

import argparse
import hashlib
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


def job_command(threads, seed, epochs, compare, out):
    """The main job (or ``--compare``) for one seed; ``threads`` None: the command's default."""
    cmd = [sys.executable, "-m", "minicnnrnn.train", "--seed", str(seed), "--epochs", str(epochs)]
    cmd += (["--threads", str(threads)] if threads is not None else []) + ["--out", out, "--quiet"]
    return cmd + (["--compare"] if compare else [])


def run_once(cmd, metrics_path, every=2.0, extra_env=None):
    """Run ``cmd`` (with ``extra_env`` added to the environment); returns (wall s, CPU s of the
    command and its children, highest 1-minute load average sampled every ``every`` s while it
    ran, metrics.json bytes)."""
    env = dict(os.environ, PYTHONPATH=os.path.abspath(REPO), **(extra_env or {}))
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    job, load = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL), os.getloadavg()[0]
    while True:
        try:
            job.wait(timeout=every)
            break
        except subprocess.TimeoutExpired:
            load = max(load, os.getloadavg()[0])
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    if job.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} exited with status {job.returncode}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with open(metrics_path, "rb") as f:
        return wall, cpu, load, f.read()


def metrics_file(out, compare):
    return os.path.join(out, "cnn-rnn", "metrics.json") if compare else os.path.join(out, "metrics.json")


def run_busy(cmd, metrics_path, cores):
    """``run_once`` beside one busy-loop process per core; the loops are killed whatever happens."""
    loops = []
    try:
        for _ in range(cores):
            loops.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        time.sleep(1.0)  # let them occupy the cores before the job starts
        return run_once(cmd, metrics_path)
    finally:
        for loop in loops:
            loop.kill()
        for loop in loops:
            loop.wait()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def idle_runs(args, tmp):
    """Every thread count x seed on the machine as it is; prints a row each.
    Returns {(threads, seed): (metrics.json record, its SHA-256)}."""
    print(
        "| threads | seed | wall s | CPU s | scored epoch | "
        + " | ".join(COLUMNS)
        + " | L/img | metrics.json SHA-256 |"
    )
    print("|---" * (len(COLUMNS) + 7) + "|")
    runs = {}
    for t in args.threads:
        for s in args.seeds:
            out = os.path.join(tmp, f"t{t}-s{s}")
            cmd = job_command(t, s, args.epochs, args.compare, out)
            wall, cpu, _, raw = run_once(cmd, metrics_file(out, args.compare))
            record = json.loads(raw)
            runs[t, s] = record, sha256(raw)
            cells = " | ".join(f"{record['metrics'][c]:.1f}" for c in COLUMNS)
            print(
                f"| {t} | {s} | {wall:.0f} | {cpu:.0f} | {record['run']['scored_epoch']} | {cells} | "
                f"{record['labels_per_image']:.2f} | `{sha256(raw)[:16]}` |",
                flush=True,
            )
    return runs


def busy_runs(args, tmp, runs):
    """Per seed, the command at its default thread count beside a busy loop on every core;
    prints whether its metrics.json is byte-identical to the idle run at the same thread count."""
    cores = os.cpu_count() or 1
    print(
        f"\n# beside a busy loop: {cores} `python -c 'while True: pass'` processes (one per core), "
        "the command's default thread count (no --threads)"
    )
    print("| seed | threads | wall s | CPU s | load average during | metrics.json SHA-256 | same bytes as idle |")
    print("|---" * 7 + "|")
    for s in args.seeds:
        out = os.path.join(tmp, f"busy-s{s}")
        wall, cpu, load, raw = run_busy(
            job_command(None, s, args.epochs, args.compare, out), metrics_file(out, args.compare), cores
        )
        t = json.loads(raw)["run"].get("threads")
        idle = runs.get((t, s))
        same = f"no idle run at {t} threads" if idle is None else ("yes" if idle[1] == sha256(raw) else "**no**")
        print(f"| {s} | {t} | {wall:.0f} | {cpu:.0f} | {load:.1f} | `{sha256(raw)[:16]}` | {same} |", flush=True)


def kernel_runs(args, tmp, runs):
    """Per OpenBLAS kernel of ``--coretypes`` and seed, the command at the first thread count
    with ``OPENBLAS_CORETYPE`` set: the same library running another CPU's kernels, which add
    up a product in another order (what another BLAS or CPU would do). Prints each run and
    its largest metric difference to the run with this CPU's own kernel."""
    t = args.threads[0]
    print(f"\n# another BLAS kernel: OPENBLAS_CORETYPE set, {t} thread(s); difference to this CPU's own kernel")
    print("| kernel | seed | CPU s | " + " | ".join(COLUMNS) + " | metrics.json SHA-256 | largest difference |")
    print("|---" * (len(COLUMNS) + 5) + "|")
    for kernel in args.coretypes:
        for s in args.seeds:
            out = os.path.join(tmp, f"{kernel}-s{s}")
            cmd = job_command(t, s, args.epochs, args.compare, out)
            _, cpu, _, raw = run_once(cmd, metrics_file(out, args.compare), extra_env={"OPENBLAS_CORETYPE": kernel})
            record, own = json.loads(raw), runs[t, s][0]
            cells = " | ".join(f"{record['metrics'][c]:.1f}" for c in COLUMNS)
            diff = max(abs(record["metrics"][c] - own["metrics"][c]) for c in COLUMNS)
            print(f"| {kernel} | {s} | {cpu:.0f} | {cells} | `{sha256(raw)[:16]}` | {diff:.1f} |", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=20, help="training epochs (the main job's default: 20)")
    p.add_argument("--compare", action="store_true", help="time `train --compare` (all six methods) instead")
    p.add_argument("--busy", action="store_true", help="also run each seed beside a busy loop on every core")
    p.add_argument(
        "--coretypes",
        nargs="+",
        default=[],
        metavar="KERNEL",
        help="also run each seed with OPENBLAS_CORETYPE=KERNEL (e.g. Haswell Sandybridge): another BLAS kernel",
    )
    args = p.parse_args()
    load = os.getloadavg()[0]
    print(f"# main job{' --compare' if args.compare else ''}, {args.epochs} epochs, load average {load:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="bench-repro-") as tmp:
        runs = idle_runs(args, tmp)
        if args.busy:
            busy_runs(args, tmp, runs)
        if args.coretypes:
            kernel_runs(args, tmp, runs)
    print("\n# what the seed moves: mean ± sd over seeds, per thread count")
    for t in args.threads:
        cells = []
        for c in COLUMNS:
            values = [runs[t, s][0]["metrics"][c] for s in args.seeds]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{c} {statistics.mean(values):.1f} ± {sd:.1f}")
        print(f"threads {t}: " + ", ".join(cells))
    print("\n# what the thread count moves: largest difference between thread counts, same seed")
    for s in args.seeds:
        values = [[runs[t, s][0]["metrics"][c] for t in args.threads] for c in COLUMNS]
        print(f"seed {s}: " + ", ".join(f"{c} {max(v) - min(v):.1f}" for c, v in zip(COLUMNS, values)))


if __name__ == "__main__":
    main()
