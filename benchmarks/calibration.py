"""Calibration measured: BCE's sigmoids against the CNN-RNN's P(label in path), on the test split.

    python benchmarks/calibration.py --seeds 0-4 --threads 1     # the tables in docs/training.md
    python benchmarks/calibration.py --datasets builtin --seeds 0 --epochs 4 --out /tmp/cal

For each dataset (``builtin``: Tiny Scenes through the shipped CNN; ``iaprtc12``: a seeded
subset of ``../shared/data/iaprtc12/iaprtc12.npz`` when present, as ``bench_learning.py``
draws it) it trains BCE and the CNN-RNN exactly as ``python -m minicnnrnn.train`` does
(validation split, best epoch on validation, test split scored once), takes each model's
per-label probabilities on the test images (BCE: its sigmoids; CNN-RNN: P(label in path),
``paths/presence.py``), and prints, as a markdown table, the expected calibration error
over all (image, label) entries and over the entries of probability >= 0.1 (the labels a
model might predict; almost every entry is a negative near 0, evaluation/calibration.py),
with the test mAP beside them. Over ``--seeds`` (default 0-4; each seed its own
initialisation, shuffles and validation split) it prints, per dataset, the mean ± sd of
each column and the paired difference CNN-RNN - BCE on the same seed ± its standard error,
``*`` beyond 2 standard errors (training/compare.py, evaluation/stats.py). The first seed's
reliability diagram per dataset goes to ``--out``/reliability_<dataset>.png.
"""

import argparse
import contextlib
import io
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench_learning import iapr_subset, seed_list  # noqa: E402  (benchmarks/ is the script's folder)

from minicnnrnn import train  # noqa: E402
from minicnnrnn.core import backend, threads  # noqa: E402
from minicnnrnn.evaluation import calibration  # noqa: E402
from minicnnrnn.training import compare, config, loop, selection  # noqa: E402
from minicnnrnn.training import data as train_data  # noqa: E402

MODELS = (("bce", "BCE sigmoid"), ("cnn-rnn", "CNN-RNN P(label in path)"))
CONFIDENT = 0.1  # the second ECE column counts entries of at least this probability
COLUMNS = ("ECE", f"ECE (p >= {CONFIDENT})", f"entries p >= {CONFIDENT}", "mAP")
DIGITS = dict(zip(COLUMNS, (4, 3, 0, 1)))


def measure(dataset, seed, opts, out):
    """Train both models on ``dataset`` with ``seed``; returns ({title: {column: value}}, {title: Reliability})."""
    argv = ["--dataset", dataset, "--seed", str(seed), "--epochs", str(opts.epochs)]
    argv += ["--hidden", str(opts.hidden), "--n-train", str(opts.n_train), "--n-test", str(opts.n_test)]
    argv += ["--presence-samples", str(opts.samples), "--decode", "path"]  # the ranking does not depend on it
    args = train.make_parser().parse_args(argv)
    backend.use(args.backend)
    data = selection.split_validation(train_data.load(args), args.val_fraction, args.seed)
    norm = train_data.fit_feature_norm(args.feature_norm, data.train_features)
    data = data.with_norm(norm)
    truth, ignore = np.asarray(data.test_labels), data.test_ignore
    rows, curves = {}, {}
    for name, title in MODELS:
        args.model = name
        cfg = config.from_args(args, data, norm)
        with contextlib.redirect_stdout(io.StringIO()):
            result = loop.train_and_evaluate(cfg, data, os.path.join(out, name))
        prob = np.clip(np.asarray(result["scores"], dtype=np.float64), 0.0, 1.0)
        bins = calibration.reliability_bins(prob, truth, ignore=ignore)
        confident = (prob < CONFIDENT) if ignore is None else (np.asarray(ignore, bool) | (prob < CONFIDENT))
        values = (
            calibration.ece_of(bins),
            calibration.expected_calibration_error(prob, truth, ignore=confident),
            int((~confident).sum()),
            result["metrics"]["mAP"],
        )
        rows[title] = dict(zip(COLUMNS, values))
        curves[title] = bins
    return rows, curves


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["builtin", "iaprtc12"])
    p.add_argument("--seeds", nargs="+", default=["0-4"], help="seeds: 0-4, 0,1,2 or 0 1 2 (default 0-4)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--n-train", type=int, default=2000, help="built-in training images")
    p.add_argument("--n-test", type=int, default=500, help="built-in test images")
    p.add_argument("--iapr-train", type=int, default=2000)
    p.add_argument("--iapr-test", type=int, default=500)
    p.add_argument("--samples", type=int, default=30, help="--presence-samples")
    p.add_argument("--threads", default="auto", help="BLAS threads: a number, or auto (core/threads.py)")
    p.add_argument("--out", default=os.path.join("runs", "calibration"))
    opts = p.parse_args(argv)
    try:
        opts.seeds = seed_list(opts.seeds)
    except ValueError as exc:
        p.error(f"--seeds: {exc}")
    threads.apply(opts.threads)
    os.makedirs(opts.out, exist_ok=True)
    start = time.perf_counter()
    for name in opts.datasets:
        dataset = "builtin"
        if name == "iaprtc12":
            path = iapr_subset(opts.iapr_train, opts.iapr_test, opts.out)
            if path is None:
                print("iaprtc12: data not found, skipped", file=sys.stderr)
                continue
            dataset = f"npz:{path}"
        per_seed = {}
        for seed in opts.seeds:
            per_seed[seed], curves = measure(dataset, seed, opts, os.path.join(opts.out, name, f"seed-{seed}"))
            if seed == opts.seeds[0]:
                calibration.plot_reliability(curves, os.path.join(opts.out, f"reliability_{name}.png"), title=name)
        print(compare.markdown(per_seed, f"**{name}** (test split)", MODELS[0][1], COLUMNS, DIGITS) + "\n")
    print(
        f"(epochs {opts.epochs}, H {opts.hidden}, built-in {opts.n_train} / {opts.n_test}, iaprtc12 subset "
        f"{opts.iapr_train} / {opts.iapr_test}, {opts.samples} presence samples, 10 equal-width bins; "
        f"{time.perf_counter() - start:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
