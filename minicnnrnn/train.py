"""Train the CNN-RNN (§3.4) or a Table 3 baseline on fixed CNN features, then evaluate it.

    python -m minicnnrnn.train                  # CNN-RNN on the built-in data, prints the table
    python -m minicnnrnn.train --compare        # CNN-RNN, no-rnn, bce, softmax, WARP, KNN and SR-CNN-RNN side by side
    python -m minicnnrnn.train --dataset npz:feats.npz --out runs/mine
    python -m minicnnrnn.train --dataset voc2007 --root VOCdevkit --features feats/voc2007

This file is the command: it parses the arguments, loads the data, and prints. The work
is in ``minicnnrnn/training/``: the run's settings (config.py, :class:`RunConfig`), the
models behind one table (kinds.py), the loop with its checkpoints and the
evaluation (loop.py), rmsprop and the cosine learning-rate schedule (optim.py), and the
data (``--dataset``) with the feature normalisation that train and predict share
(data.py). One epoch: shuffle the training images, and for every mini-batch turn the
label sets into ordered paths, run the model forward and backward, clip the gradients and
take an rmsprop step. After every epoch ``--out`` gets a checkpoint; at the end the test
split is decoded (beam search, §3.3, for the path models; top-k for the classifiers) and
scored with the paper's metrics (§4.1) by the benchmark's protocol (protocols.py: k,
minimum path length, AP flavour; Tables 1-4).

Everything random (initialisation, shuffles, dropout masks) comes from one host
``numpy.random.Generator`` seeded by ``--seed``; its state is saved with each checkpoint,
so ``--resume`` finishes with exactly the result of an uninterrupted run.
"""

import argparse
import contextlib
import os
import sys
import time

from minicnnrnn.core import cli, fileio
from minicnnrnn.core.errors import UserError
from minicnnrnn.evaluation import metrics, protocols, stats
from minicnnrnn.training import checkpoint, compare, config, kinds, loop, selection
from minicnnrnn.training import data as train_data


def make_parser():
    """train's options: every setting of a run from :class:`RunConfig` (its defaults, types
    and help live there), and the ones that only say where data and outputs are."""
    p = cli.make_parser("python -m minicnnrnn.train", __doc__.split("\n\n")[0])
    config.add_options(p)
    p.add_argument(
        "--compare", action="store_true", help="train and evaluate every model (the six of Table 3 and sr-cnn-rnn)"
    )
    p.add_argument(
        "--seeds",
        type=_seeds,
        help="train over these seeds (0-4, 0,1,2 or 3; each seed its own validation split) and print "
        "mean ± sd and the paired difference to BCE; outputs in OUT/seed-S/, OUT/compare.json and .md",
    )
    p.add_argument(
        "--table-only",
        action="store_true",
        help="print only the final table, as markdown (the rest goes to stderr): for benchmarks/regenerate.py",
    )
    p.add_argument("--root", help="dataset folder (real datasets)")
    p.add_argument("--features", help="features folder written by `python -m minicnnrnn.extract` (real datasets)")
    p.add_argument("--n-train", type=cli.positive_int, default=4000, help="built-in training images")
    p.add_argument("--n-test", type=cli.positive_int, default=1000, help="built-in test images")
    p.add_argument(
        "--out", default=None, help="output folder (default runs/<model>; --compare: one subfolder per model)"
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in --out (without it, such a folder is refused)",
    )
    return p


def _seeds(text):
    try:
        return stats.parse_seeds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def results_table(data, cfg, results):
    """The text printed at the end: our metrics table (with the labels per image, and BCE at
    the CNN-RNN's operating points), and for a real benchmark its table in the paper's
    layout (protocols.report: Tables 1-3, or Table 4's per-class AP).
    cfg: a RunConfig of the runs (k, min_labels and ap_mode are the same for all models)."""
    ours = {kinds.KINDS[name].title: result for name, result in results.items()}
    title = f"{data.name}: test set, k = {cfg.k}, one seed ({cfg.seed}) (percent)"
    top_k = metrics.format_table(compare.method_rows(data, cfg, results), columns=compare.COLUMNS, title=title)
    if data.name not in train_data.REAL_DATASETS:
        return top_k
    proto = protocols.protocol_for(data.name)
    parts = []
    if (cfg.k, cfg.min_labels, cfg.ap_mode) != (proto["k"], proto["min_labels"], proto["ap_mode"]):
        parts.append(
            f"note: k = {cfg.k}, min-labels = {cfg.min_labels}, AP {cfg.ap_mode} differ from the "
            f"protocol's k = {proto['k']}, min-labels = {proto['min_labels']}, AP {proto['ap_mode']}: "
            "the paper's rows are not directly comparable"
        )
    if proto["table"] == "ap":  # Table 4 shows AP only: the top-k metrics first
        parts.append(top_k)
    parts.append(protocols.report(data.name, ours))
    return "\n\n".join(parts)


def main(argv=None):
    args = cli.parse(make_parser(), argv)
    config.check_args(args)  # before any data is loaded
    start = time.perf_counter()
    names = ("knn", "warp", "softmax", "bce", "no-rnn", "cnn-rnn", "sr-cnn-rnn") if args.compare else (args.model,)
    base = args.out or os.path.join("runs", "compare" if args.compare else args.model)
    if args.seeds:
        outs = compare.seed_outputs(base, names, args.seeds)
    else:
        outs = {name: os.path.join(base, name) if args.compare else base for name in names}
    if args.resume and args.overwrite:
        raise UserError("--overwrite: give either --resume (continue the run in --out) or --overwrite, not both")
    with contextlib.ExitStack() as locks:
        for out in outs.values():  # one run at a time per folder; a killed run's lock is stale
            locks.enter_context(fileio.folder_lock(out))
            if args.resume:
                checkpoint.require_resumable(os.path.join(out, "checkpoint.npz"))
            checkpoint.check_fresh_out(out, args.resume, args.overwrite)
        # --table-only: the progress lines go to stderr, so stdout is the table alone
        with contextlib.redirect_stdout(sys.stderr) if args.table_only else contextlib.nullcontext():
            text, failures = _train_seeds(args, names, outs, base) if args.seeds else _train(args, names, outs)
        print(text if not args.table_only or args.seeds else f"```text\n{text.strip()}\n```")
        seconds = time.perf_counter() - start
        where = sys.stderr if args.table_only else sys.stdout
        print(f"total time {seconds:.0f} s (data, training and evaluation)", file=where)
        if failures:
            raise UserError("; ".join(failures))
        return 0


def _train_seeds(args, names, outs, base):
    """--seeds: every model of ``names`` on every seed; the statistics table, saved in ``base``."""
    raw = train_data.load(args)
    print(raw.summary(), flush=True)
    per_seed, failures = compare.run_seeds(args, raw, names, outs, args.seeds)
    text = compare.markdown(per_seed, title=f"{raw.name}: test set, percent")
    compare.save(base, per_seed, text)
    return text, failures


def _train(args, names, outs):
    """Load the data, train and evaluate every model of ``names`` into ``outs``, print the tables."""
    data = selection.split_validation(train_data.load(args), args.val_fraction, args.seed)
    norm = train_data.fit_feature_norm(args.feature_norm, data.train_features)
    data = data.with_norm(norm)
    print(data.summary(), flush=True)
    results, failures = {}, []
    for name in names:
        args.model = name
        cfg = config.from_args(args, data, norm)
        try:
            results[name] = loop.train_and_evaluate(cfg, data, outs[name], args.resume)
        except UserError as exc:
            if not args.compare:
                raise
            failures.append(f"{name}: {exc}")  # the others still run, and their rows are printed
            print(f"{name}: failed ({exc})", flush=True)
            continue
        print(f"{name}: outputs in {outs[name]}", flush=True)
    return ("\n" + results_table(data, cfg, results)) if results else "", failures


if __name__ == "__main__":
    cli.run(main)
