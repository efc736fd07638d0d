"""Learning quality: seeds x datasets x methods, mean +- sd, as a markdown table.

    python benchmarks/bench_learning.py                       # the table in docs/training.md
    python benchmarks/bench_learning.py --seeds 0 1 2 3 4 --epochs 20 --hidden 512

Every run is what ``python -m minicnnrnn.train`` does (same code: validation split, best
epoch chosen on validation, the test split scored once, ranking by P(label in path)), at
sizes small enough for a shared 2-core machine (``--hidden``, ``--epochs``, ``--n-train``).
Methods: softmax, bce, no-rnn, the CNN-RNN with every label order (freq, rare, random,
pla, mla) and the semantic interface (sr-cnn-rnn, freq order, ``--sr-stages``), plus BCE
at the CNN-RNN's (freq) per-image label counts and BCE thresholded at 0.5 (at most k),
from the same BCE run. Datasets: ``builtin`` (Tiny Scenes, fc7 of the
shipped CNN) and ``iaprtc12`` (``../shared/data/iaprtc12/iaprtc12.npz`` when present; a
seeded subset of ``--iapr-train`` / ``--iapr-test`` images, the same for every method).
The table (markdown) goes to stdout and to ``--out``/table.md; every run's metrics.json
stays under ``--out``. Column ``val`` is the validation O-F1 + C-F1 that chose each run's
epoch (and, with ``--decode auto``, the default, or ``--tune-decoding``, its decoding):
the only figure a setting may be chosen by. ``--decode`` takes several values (or ``all``):
the path models are trained once with the first, and every CNN-RNN order and no-rnn also
gets a row per further decoding of the same trained parameters (``... / marginal``).
"""

import argparse
import contextlib
import csv
import dataclasses
import io
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from minicnnrnn import train  # noqa: E402
from minicnnrnn.core import backend  # noqa: E402
from minicnnrnn.rnn import lstm  # noqa: E402
from minicnnrnn.training import checkpoint, compare, config, loop, selection  # noqa: E402
from minicnnrnn.training import data as train_data  # noqa: E402

IAPR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "iaprtc12", "iaprtc12.npz")
IAPR_FALLBACK = "/work/shared/data/iaprtc12/iaprtc12.npz"
ORDERS = ("freq", "rare", "random", "pla", "mla")
COLUMNS = ("C-F1", "O-F1", "MAP@10", "mAP", "L/img", "val")


def iapr_subset(n_train, n_test, folder):
    """A seeded subset of iaprtc12 as an npz in ``folder`` (None when the file is absent)."""
    src = next((p for p in (IAPR, IAPR_FALLBACK) if os.path.exists(p)), None)
    if src is None:
        return None
    a = np.load(src)
    rng = np.random.default_rng(12345)
    tr = np.sort(rng.permutation(len(a["train_labels"]))[:n_train])
    te = np.sort(rng.permutation(len(a["test_labels"]))[:n_test])
    path = os.path.join(folder, "iaprtc12_subset.npz")
    np.savez(
        path,
        train_features=a["train_features"][tr],
        train_labels=a["train_labels"][tr],
        test_features=a["test_features"][te],
        test_labels=a["test_labels"][te],
        label_names=a["label_names"],
    )
    return path


def run_seed(dataset, seed, opts, out):
    """Every method on one dataset and seed: {row title: {column: value}}."""
    argv = ["--dataset", dataset, "--seed", str(seed), "--epochs", str(opts.epochs), "--hidden", str(opts.hidden)]
    argv += ["--embed", str(opts.embed)] + (["--variant", opts.variant] if opts.variant else [])
    argv += ["--n-train", str(opts.n_train), "--n-test", str(opts.n_test)]
    argv += ["--presence-samples", str(opts.samples), "--val-fraction", str(opts.val_fraction)]
    argv += ["--tune-decoding"] if opts.tune_decoding else []
    argv += ["--sr-concept-epochs", str(opts.sr_stages[0]), "--sr-rnn-epochs", str(opts.sr_stages[1])]
    argv += ["--decode", opts.decode[0]]
    args = train.make_parser().parse_args(argv)
    backend.use(args.backend)
    data = selection.split_validation(train_data.load(args), args.val_fraction, seed)
    norm = train_data.fit_feature_norm(args.feature_norm, data.train_features)
    data = data.with_norm(norm)
    runs = [("softmax", "freq"), ("bce", "freq"), ("no-rnn", "freq")] + [("cnn-rnn", o) for o in opts.orders]
    runs += [("sr-cnn-rnn", "freq")]
    results, rows = {}, {}
    for name, order in runs:
        args.model, args.label_order = name, order
        cfg = config.from_args(args, data, norm)
        title = {"softmax": "Softmax", "bce": "BCE", "no-rnn": "No RNN", "sr-cnn-rnn": "SR-CNN-RNN"}.get(
            name, f"CNN-RNN {order}"
        )
        start = time.perf_counter()
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                result = loop.train_and_evaluate(cfg, data, os.path.join(out, f"{name}-{order}"))
        except Exception as exc:  # a diverged run is a result too: reported, not hidden
            print(f"  {dataset} seed {seed} {title}: FAILED {exc}", flush=True)
            rows[title] = {c: float("nan") for c in COLUMNS}
            continue
        results[(name, order)] = result
        val = validation_score(os.path.join(out, f"{name}-{order}"))
        rows[title] = dict(result["metrics"], **{"L/img": result["labels_per_image"], "val": val})
        if name in ("cnn-rnn", "no-rnn"):
            rows.update(other_decodings(cfg, data, os.path.join(out, f"{name}-{order}"), title, opts.decode[1:]))
        print(f"  {dataset} seed {seed} {title}: {time.perf_counter() - start:.0f} s", flush=True)
    # the best CNN-RNN setting of this seed, chosen on validation only, and BCE at its label counts
    tried = [o for o in opts.orders if ("cnn-rnn", o) in results]
    best = max(tried, key=lambda o: rows[f"CNN-RNN {o}"]["val"], default=None)
    if best is not None:
        rows["CNN-RNN, order chosen on validation"] = dict(rows[f"CNN-RNN {best}"])
        print(f"  {dataset} seed {seed}: validation chose CNN-RNN {best}", flush=True)
    for order, name in (("freq", "CNN-RNN freq"), (best, "the chosen CNN-RNN")):
        if ("bce", "freq") in results and ("cnn-rnn", order) in results:
            both = {"bce": results[("bce", "freq")], "cnn-rnn": results[("cnn-rnn", order)]}
            for title, r in compare.matched_rows(data, cfg, both).items():
                # setdefault: the thresholded row does not depend on the order; keep its first copy
                row = dict(r["metrics"], **{"L/img": r["labels_per_image"]})
                rows.setdefault(title.replace("CNN-RNN's", name), row)
    return rows


def other_decodings(cfg, data, folder, title, decodings):
    """Rows of the same trained path model (its scored parameters in ``folder``) decoded each
    way in ``decodings`` (e.g. marginal), at the run's beam and min_labels: {title: row}."""
    rows = {}
    if not decodings:
        return rows
    best = os.path.join(folder, "best.npz")
    state = checkpoint.load(best if os.path.exists(best) else os.path.join(folder, "checkpoint.npz"))
    params = backend.params_to_device(state["params"])
    for how in decodings:
        trial = dataclasses.replace(cfg, decode=how)
        result = loop.evaluate(trial, params, data)
        val = selection.validation_row(trial, params, data)["val_score"] if data.val_labels is not None else np.nan
        rows[f"{title} / {how}"] = dict(result["metrics"], **{"L/img": result["labels_per_image"], "val": val})
    return rows


def validation_score(folder):
    """The validation O-F1 + C-F1 that chose the run's scored epoch (and its decoding, when tuned)."""
    with open(os.path.join(folder, "metrics.json"), encoding="utf-8") as f:
        run = json.load(f)["run"]
    if "decoding" in run:
        return float(run["decoding"]["val_score"])
    with open(os.path.join(folder, "log.csv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return float(next(r["val_score"] for r in rows if int(r["epoch"]) == run["scored_epoch"]))


def table(per_seed, seeds):
    """Markdown: one row per method, mean +- sd over the seeds of each column."""
    lines = ["| method | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for title in per_seed[0]:
        cells = []
        for c in COLUMNS:
            v = np.array([rows.get(title, {}).get(c, np.nan) for rows in per_seed], float)
            digits = 2 if c == "L/img" else 1
            cells.append(
                f"{np.nanmean(v):.{digits}f} ± {np.nanstd(v, ddof=1):.{digits}f}" if np.isfinite(v).sum() > 1 else "-"
            )
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return (
        "\n".join(lines) + f"\n\n(mean ± sd over seeds {', '.join(map(str, seeds))}; percent, L/img labels per image)"
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--datasets", nargs="+", default=["builtin", "iaprtc12"])
    p.add_argument("--orders", nargs="+", default=list(ORDERS), choices=ORDERS)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--embed", type=int, default=64, help="label embedding size E")
    p.add_argument("--variant", choices=lstm.VARIANTS, help="LSTM of Eq. 1 (default: train's --variant default)")
    p.add_argument("--n-train", type=int, default=2000, help="built-in training images")
    p.add_argument("--n-test", type=int, default=500, help="built-in test images")
    p.add_argument("--iapr-train", type=int, default=2000)
    p.add_argument("--iapr-test", type=int, default=500)
    p.add_argument("--samples", type=int, default=30, help="--presence-samples")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument(
        "--tune-decoding",
        action="store_true",
        help="path models choose beam and shortest path on validation (train --tune-decoding)",
    )
    p.add_argument(
        "--sr-stages",
        type=int,
        nargs=2,
        default=[2, 2],
        metavar=("CONCEPT", "RNN"),
        help="sr-cnn-rnn: epochs of stage 1 (concepts alone) and stage 2 (RNN alone); the rest are joint",
    )
    p.add_argument(
        "--decode",
        nargs="+",
        default=["auto"],
        choices=config.DECODINGS + ("all",),
        help="path models' decodings (train --decode): the first trains, the others re-decode the "
        "same parameters; all = auto, path, marginal, marginal-f1",
    )
    p.add_argument("--out", default=os.path.join("runs", "bench_learning"))
    opts = p.parse_args(argv)
    if "all" in opts.decode:
        opts.decode = list(config.DECODINGS)
    os.makedirs(opts.out, exist_ok=True)
    start, parts = time.perf_counter(), []
    for name in opts.datasets:
        dataset = "builtin"
        if name == "iaprtc12":
            path = iapr_subset(opts.iapr_train, opts.iapr_test, opts.out)
            if path is None:
                print("iaprtc12: data not found, skipped")
                continue
            dataset = f"npz:{path}"
        per_seed = [run_seed(dataset, s, opts, os.path.join(opts.out, name, str(s))) for s in opts.seeds]
        parts.append(f"**{name}** (k = 3)\n\n" + table(per_seed, opts.seeds))
    variant = opts.variant or train.make_parser().get_default("variant")
    sizes = (
        f"settings: epochs {opts.epochs}, H {opts.hidden}, E {opts.embed}, LSTM {variant}, "
        f"built-in {opts.n_train} train / {opts.n_test} test, "
        f"iaprtc12 subset {opts.iapr_train} / {opts.iapr_test}, validation {opts.val_fraction}, "
        f"{opts.samples} presence samples, SR-CNN-RNN stages {opts.sr_stages[0]} + {opts.sr_stages[1]} epochs, "
        f"decode {' / '.join(opts.decode)}"
        f"{', --tune-decoding' if opts.tune_decoding else ''}; "
        f"{time.perf_counter() - start:.0f} s"
    )
    text = "\n\n".join(parts + [sizes]) + "\n"
    with open(os.path.join(opts.out, "table.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
