"""Learning quality as statistics: seeds x datasets x methods, mean ± sd and paired differences to BCE.

    python benchmarks/bench_learning.py --datasets builtin --seeds 0-4 --threads 1
    python benchmarks/bench_learning.py --methods bce cnn-rnn sr-cnn-rnn --orders freq --seeds 0-4

Every run is what ``python -m minicnnrnn.train`` does (same code: validation split, best
epoch chosen on validation, the test split scored once, ranking by P(label in path)), at
sizes small enough for a shared 2-core machine (``--hidden``, ``--epochs``, ``--n-train``).
Methods (``--methods``, default all): softmax, bce, no-rnn, the CNN-RNN with every label
order of ``--orders`` (freq, rare, random, pla, mla) and the semantic interface
(sr-cnn-rnn, freq order, ``--sr-stages``). Datasets: ``builtin`` (Tiny Scenes, fc7 of the
shipped CNN) and ``iaprtc12`` (``--iapr``, by default ``../shared/data/iaprtc12/iaprtc12.npz``
beside the repository; one line and skipped when absent; a seeded subset of ``--iapr-train``
/ ``--iapr-test`` images, the same for every method and seed, or all of it when those
are at least its sizes).

Per dataset the markdown on stdout (also ``--out``/DATASET/compare.md, every seed's rows in
compare.json, every run's metrics.json under ``--out``/DATASET/SEED/) is training/compare.py's:
mean ± sd over the seeds per method, and each method's paired difference to BCE (same
seed) ± its standard error, ``*`` beyond 2 standard errors (evaluation/stats.py). Column
``val`` is the validation O-F1 + C-F1 that chose each run's epoch and, with ``--decode
auto`` (the default), its decoding: the only figure a setting is chosen by. The row
"Recurrent model chosen on validation" is, per seed, the CNN-RNN order or SR-CNN-RNN (or
further decoding) with the highest ``val``, never chosen by a test figure; "BCE at the
chosen model's counts" is BCE given that model's per-image label counts. Each dataset
ends with a computed reading of issue #24's goal: does the chosen model beat BCE on O-F1
and C-F1 (paired difference above 2 standard errors) with mAP at least BCE's (mean
paired difference >= 0)? ``--decode`` takes several values (or ``all``): the path models
are trained once with the first, and each gets a row per further decoding of the same
trained parameters (``... / marginal``). Progress goes to stderr.
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
from minicnnrnn.core import backend, threads  # noqa: E402
from minicnnrnn.evaluation import stats  # noqa: E402
from minicnnrnn.rnn import lstm  # noqa: E402
from minicnnrnn.training import checkpoint, compare, config, kinds, loop, selection  # noqa: E402
from minicnnrnn.training import data as train_data  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IAPR = os.path.join(os.path.dirname(REPO), "shared", "data", "iaprtc12", "iaprtc12.npz")
ORDERS = ("freq", "rare", "random", "pla", "mla")
METHODS = ("softmax", "bce", "no-rnn", "cnn-rnn", "sr-cnn-rnn")
RECURRENT = ("cnn-rnn", "sr-cnn-rnn")  # the models the chosen row picks from
COLUMNS = ("C-F1", "O-F1", "MAP@10", "mAP", compare.LPI, "val")
CHOSEN = "Recurrent model chosen on validation"
MATCHED = "BCE at the chosen model's counts"


def iapr_subset(n_train, n_test, folder, source=IAPR):
    """iaprtc12 as an npz path: ``source`` itself when n_train and n_test cover it, else a
    seeded subset (the same for every call) written to ``folder``. None when ``source`` is absent."""
    if not os.path.exists(source):
        return None
    a = np.load(source)
    if n_train >= len(a["train_labels"]) and n_test >= len(a["test_labels"]):
        return source
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


def say(text):
    """Progress, on stderr: stdout holds only the markdown (docs' measured blocks)."""
    print(text, file=sys.stderr, flush=True)


def planned_runs(opts):
    """[(model name, label order, row title)] of ``--methods`` in the table's order."""
    runs = []
    for name in METHODS:
        if name in opts.methods:
            orders = opts.orders if name == "cnn-rnn" else ("freq",)
            runs += [
                (name, o, f"{kinds.KINDS[name].title} {o}" if name == "cnn-rnn" else kinds.KINDS[name].title)
                for o in orders
            ]
    return runs


def train_args(dataset, seed, opts):
    """train's parsed arguments for one dataset and seed at the benchmark's sizes."""
    argv = ["--dataset", dataset, "--seed", str(seed), "--epochs", str(opts.epochs), "--hidden", str(opts.hidden)]
    argv += ["--embed", str(opts.embed)] + (["--variant", opts.variant] if opts.variant else [])
    argv += ["--n-train", str(opts.n_train), "--n-test", str(opts.n_test)]
    argv += ["--presence-samples", str(opts.samples), "--val-fraction", str(opts.val_fraction)]
    argv += ["--tune-decoding"] if opts.tune_decoding else []
    argv += ["--sr-concept-epochs", str(opts.sr_stages[0]), "--sr-rnn-epochs", str(opts.sr_stages[1])]
    argv += ["--decode", opts.decode[0]]
    return train.make_parser().parse_args(argv)


def run_seed(name, dataset, seed, opts, out):
    """Every planned run on dataset ``name`` (train's ``--dataset`` value ``dataset``) and one
    seed: ({row title: {column: value}}, the title validation chose), with the recurrent
    model chosen on validation and BCE at its label counts."""
    args = train_args(dataset, seed, opts)
    backend.use(args.backend)
    data = selection.split_validation(train_data.load(args), args.val_fraction, seed)
    norm = train_data.fit_feature_norm(args.feature_norm, data.train_features)
    data = data.with_norm(norm)
    results, rows, recurrent, cfg = {}, {}, [], None
    for model, order, title in planned_runs(opts):
        args.model, args.label_order = model, order
        cfg = config.from_args(args, data, norm)
        folder, start, cpu = os.path.join(out, f"{model}-{order}"), time.perf_counter(), time.process_time()
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                results[title] = loop.train_and_evaluate(cfg, data, folder)
        except Exception as exc:  # a diverged run is a result too: reported, not hidden
            say(f"  {name} seed {seed} {title}: FAILED {exc}")
            rows[title] = {c: float("nan") for c in COLUMNS}
            continue
        rows[title] = row_of(results[title], validation_score(folder))
        titles = [title]
        if kinds.KINDS[model].paths:
            decoded = other_decodings(cfg, data, folder, title, opts.decode[1:])
            results.update(decoded)
            rows.update({t: row_of(r, r["val"]) for t, r in decoded.items()})
            titles += list(decoded)
        recurrent += titles if model in RECURRENT else []
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        say(f"  {name} seed {seed} {title}: {wall:.0f} s ({cpu:.0f} CPU s, what an idle core would take)")
    # the recurrent model of this seed chosen by its validation score alone (the first of ties)
    best = max(recurrent, key=lambda t: rows[t]["val"], default=None)
    if best is not None:
        rows[CHOSEN] = dict(rows[best])
        say(f"  {name} seed {seed}: validation chose {best}")
        bce = kinds.KINDS["bce"].title
        if bce in results:
            matched = compare.matched_rows(data, cfg, {"bce": results[bce], "cnn-rnn": results[best]})
            for title, r in matched.items():
                rows[title.replace("BCE at CNN-RNN's counts", MATCHED)] = row_of(r, float("nan"))
    return rows, best


def row_of(result, val):
    """A table row of an evaluate()-like result: its metrics, labels per image and ``val``."""
    return dict(result["metrics"], **{compare.LPI: result["labels_per_image"], "val": val})


def other_decodings(cfg, data, folder, title, decodings):
    """The same trained path model (its scored parameters in ``folder``) decoded each way in
    ``decodings`` (e.g. marginal), at the run's beam and min_labels: {title / how: evaluate()
    result with "val", the validation O-F1 + C-F1 of that decoding}."""
    results = {}
    if not decodings:
        return results
    best = os.path.join(folder, "best.npz")
    state = checkpoint.load(best if os.path.exists(best) else os.path.join(folder, "checkpoint.npz"))
    params = backend.params_to_device(state["params"])
    for how in decodings:
        trial = dataclasses.replace(cfg, decode=how)
        val = selection.validation_row(trial, params, data)["val_score"] if data.val_labels is not None else np.nan
        results[f"{title} / {how}"] = dict(loop.evaluate(trial, params, data), val=val)
    return results


def validation_score(folder):
    """The validation O-F1 + C-F1 that chose the run's scored epoch (and its decoding, when tuned)."""
    with open(os.path.join(folder, "metrics.json"), encoding="utf-8") as f:
        run = json.load(f)["run"]
    if "decoding" in run:
        return float(run["decoding"]["val_score"])
    with open(os.path.join(folder, "log.csv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return float(next(r["val_score"] for r in rows if int(r["epoch"]) == run["scored_epoch"]))


def _verdict(cell):
    """beats / trails / level: the sign of a paired difference where it exceeds 2 SE."""
    if not stats.is_clear(cell["diff"], cell["se"]):
        return "level"
    return "beats BCE" if cell["diff"] > 0 else "trails BCE"


def _pm(cell):
    """'+1.2 ± 0.4', or '+1.2 (no SE)' where one seed gives no standard error."""
    se = cell["se"]
    return f"{cell['diff']:+.1f} " + (f"± {se:.1f}" if se == se else "(no SE)")


def goal_line(name, per_seed, chosen):
    """Issue #24's goal on one dataset, read off the statistics: does the recurrent model
    chosen on validation beat BCE on O-F1 and C-F1 (paired difference > 2 SE) with a mean
    paired difference in mAP >= 0? ``chosen``: {seed: the row title validation chose}."""
    summary = compare.summary(per_seed, columns=COLUMNS)
    row = summary.get(CHOSEN, {}).get("O-F1", {})
    if "diff" not in row:
        return f"Goal on {name}: not assessed (it needs bce and cnn-rnn or sr-cnn-rnn in --methods)."
    cells = {c: summary[CHOSEN][c] for c in ("O-F1", "C-F1", "mAP")}
    words = [f"{c} {_pm(cells[c])} ({_verdict(cells[c])})" for c in ("O-F1", "C-F1")]
    map_ok = cells["mAP"]["diff"] >= 0
    words.append(f"mAP {_pm(cells['mAP'])} ({'at least' if map_ok else 'below'} BCE's)")
    reached = all(_verdict(cells[c]) == "beats BCE" for c in ("O-F1", "C-F1")) and map_ok
    picks = ", ".join(f"{s}: {t}" for s, t in chosen.items())
    return (
        f"Goal on {name} (the recurrent model chosen on validation, per seed {picks}; paired difference to BCE "
        f"± SE over {len(per_seed)} seed{'s' if len(per_seed) > 1 else ''}): "
        + ", ".join(words)
        + f": **{'reached' if reached else 'not reached'}**."
    )


def seed_list(texts):
    """``--seeds`` values (``0-4``, ``0,1,2``, ``0 1 2``) as one list (evaluation/stats.parse_seeds)."""
    return stats.parse_seeds(",".join(texts))


def make_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", nargs="+", default=["0-2"], help="seeds: 0-4, 0,1,2 or 0 1 2 (default 0-2)")
    p.add_argument("--datasets", nargs="+", default=["builtin", "iaprtc12"], choices=("builtin", "iaprtc12"))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="the rows to train")
    p.add_argument("--orders", nargs="+", default=list(ORDERS), choices=ORDERS, help="the CNN-RNN's label orders")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--embed", type=int, default=64, help="label embedding size E")
    p.add_argument("--variant", choices=lstm.VARIANTS, help="LSTM of Eq. 1 (default: train's --variant default)")
    p.add_argument("--n-train", type=int, default=2000, help="built-in training images")
    p.add_argument("--n-test", type=int, default=500, help="built-in test images")
    p.add_argument("--iapr", default=IAPR, help="the iaprtc12 npz (default: ../shared/data/iaprtc12/ beside the repo)")
    p.add_argument("--iapr-train", type=int, default=2000, help="iaprtc12 training images (its size or more: all)")
    p.add_argument("--iapr-test", type=int, default=500, help="iaprtc12 test images (its size or more: all)")
    p.add_argument("--samples", type=int, default=30, help="--presence-samples")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument(
        "--threads", default="auto", help="BLAS threads (core/threads.py; auto: 1 unless the environment says)"
    )
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
    return p


def main(argv=None):
    p = make_parser()
    opts = p.parse_args(argv)
    try:
        opts.seeds = seed_list(opts.seeds)
    except ValueError as exc:
        p.error(f"--seeds: {exc}")
    if "all" in opts.decode:
        opts.decode = list(config.DECODINGS)
    threads.apply(opts.threads)
    os.makedirs(opts.out, exist_ok=True)
    start, parts = time.perf_counter(), []
    for name in opts.datasets:
        dataset = "builtin"
        if name == "iaprtc12":
            path = iapr_subset(opts.iapr_train, opts.iapr_test, opts.out, opts.iapr)
            if path is None:
                parts.append(f"iaprtc12: no data at {opts.iapr}, skipped")
                continue
            dataset = f"npz:{path}"
        per_seed, chosen = {}, {}
        for s in opts.seeds:
            per_seed[s], chosen[s] = run_seed(name, dataset, s, opts, os.path.join(opts.out, name, str(s)))
        text = compare.markdown(per_seed, title=f"**{name}** (k = 3; test set, percent)", columns=COLUMNS)
        text += "\n\n" + goal_line(name, per_seed, chosen)
        compare.save(os.path.join(opts.out, name), per_seed, text, columns=COLUMNS)
        parts.append(text)
    variant = opts.variant or train.make_parser().get_default("variant")
    sizes = (
        f"settings: methods {' '.join(opts.methods)}, CNN-RNN orders {' '.join(opts.orders)}, "
        f"epochs {opts.epochs}, H {opts.hidden}, E {opts.embed}, LSTM {variant}, "
        f"built-in {opts.n_train} train / {opts.n_test} test, "
        f"iaprtc12 {opts.iapr_train} / {opts.iapr_test} (at most), validation {opts.val_fraction}, "
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
