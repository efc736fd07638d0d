"""Train the CNN-RNN (§3.4) or a Table 3 baseline on fixed CNN features, then evaluate it.

    python -m minicnnrnn.train                  # CNN-RNN on the built-in data, prints the table
    python -m minicnnrnn.train --compare        # CNN-RNN, no-rnn, bce, softmax, WARP and KNN side by side
    python -m minicnnrnn.train --dataset npz:feats.npz --out runs/mine
    python -m minicnnrnn.train --dataset voc2007 --root VOCdevkit --features feats/voc2007

This file is the command: it parses the arguments, loads the data, and prints. The work
is in ``minicnnrnn/training/``: the run's settings (config.py, :class:`RunConfig`), the
four models behind one table (models.py), the loop with its checkpoints and the
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

import contextlib
import math
import os
import time

from minicnnrnn.core import cli, fileio
from minicnnrnn.core.errors import UserError
from minicnnrnn.evaluation import metrics, operating_points, protocols
from minicnnrnn.paths import label_paths
from minicnnrnn.rnn import lstm
from minicnnrnn.training import checkpoint, config, kinds, loop, selection
from minicnnrnn.training import data as train_data
from minicnnrnn.training.config import RunConfig


def make_parser():
    p = cli.make_parser("python -m minicnnrnn.train", __doc__.split("\n\n")[0])
    p.add_argument("--model", default="cnn-rnn", choices=tuple(kinds.KINDS), help="model to train (Table 3)")
    p.add_argument("--compare", action="store_true", help="train and evaluate all six models")
    p.add_argument(
        "--dataset", default=RunConfig.dataset, help="builtin | npz:PATH | voc2007 | coco2014 | nuswide81 | nuswide1k"
    )
    p.add_argument("--root", help="dataset folder (real datasets)")
    p.add_argument("--features", help="features folder written by `python -m minicnnrnn.extract` (real datasets)")
    p.add_argument("--n-train", type=cli.positive_int, default=4000, help="built-in training images")
    p.add_argument("--n-test", type=cli.positive_int, default=1000, help="built-in test images")
    p.add_argument(
        "--feature-norm",
        default="l2",
        choices=train_data.FEATURE_NORMS,
        help="normalise the CNN features: l2 = each image to unit length, scale = divide by the "
        "training images' mean length, none (docs/training.md)",
    )
    p.add_argument("--epochs", type=cli.non_negative_int, default=RunConfig.epochs, help="passes over the training set")
    p.add_argument("--batch-size", type=cli.positive_int, default=RunConfig.batch_size, help="images per mini-batch N")
    p.add_argument(
        "--lr",
        type=float,
        default=RunConfig.lr,
        help="initial rmsprop learning rate (halved after a diverged epoch, which is run again; at most 3 times)",
    )
    p.add_argument(
        "--recurrent-lr-scale",
        type=float,
        default=None,
        help="learning rate of the LSTM's U_r relative to --lr; default 0.01 for the ReLU variants "
        "(bounded, relu; docs/training.md) and 1 for conventional",
    )
    p.add_argument(
        "--gate-lr-scale",
        type=float,
        default=None,
        help="learning rate of the LSTM's U_w and b_lstm relative to --lr; default 0.1 for the ReLU "
        "variants (bounded, relu; docs/training.md) and 1 for conventional",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="hold out this fraction of the training images (seeded by --seed) and keep the epoch "
        "with the best validation O-F1 + C-F1 (0: keep the last epoch)",
    )
    p.add_argument(
        "--tune-decoding",
        action="store_true",
        help="path models: also choose the beam width (--beam or 5) and the shortest path "
        "(0 .. k labels) on the validation split, after training",
    )
    p.add_argument("--clip", type=float, default=RunConfig.clip, help="clip gradients to this global norm (0: off)")
    p.add_argument("--dropout", type=float, default=RunConfig.dropout, help="dropout on the projection (paper: 0.5)")
    p.add_argument("--seed", type=cli.non_negative_int, default=RunConfig.seed, help="seed of everything random")
    p.add_argument("--embed", type=cli.positive_int, default=64, help="label embedding size E (§4)")
    p.add_argument("--hidden", type=cli.positive_int, default=512, help="recurrent layer size H (§4)")
    p.add_argument(
        "--variant",
        default="bounded",
        choices=lstm.VARIANTS,
        help="LSTM of Eq. 1: bounded (ReLU gates capped at 1, so the state grows at most 1 per step; "
        "the default), relu (the paper's uncapped ReLU) or conventional (sigmoid / tanh)",
    )
    p.add_argument(
        "--label-order", default=RunConfig.label_order, choices=label_paths.ORDERS, help="training path order (§3.4)"
    )
    p.add_argument("--beam", type=cli.positive_int, default=RunConfig.beam, help="beam width B of the search (§3.3)")
    p.add_argument(
        "--k",
        type=cli.positive_int,
        default=None,
        help="labels per image for the top-k metrics; default: the dataset's protocol (3; 10 for nuswide1k)",
    )
    p.add_argument(
        "--min-labels",
        type=cli.non_negative_int,
        default=None,
        help="shortest predicted path (footnote 1); default: the dataset's protocol (k for NUS-WIDE, else 0)",
    )
    p.add_argument(
        "--ap-mode",
        default=None,
        choices=("voc07", "sklearn"),
        help="AP for mAP: VOC 2007 11-point or non-interpolated; default: voc07 for voc2007, else sklearn",
    )
    p.add_argument(
        "--presence-samples",
        type=cli.positive_int,
        default=RunConfig.presence_samples,
        help="sampled paths per test image for the path models' ranking scores P(label in path), "
        "where exact enumeration is too costly (docs/training.md)",
    )
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


def check_args(args):
    """One-line errors for impossible settings, before any data is loaded."""
    if not 0 <= args.dropout < 1:
        raise UserError(f"--dropout: must be in [0, 1), got {args.dropout}")
    if not 0 <= args.val_fraction < 1:
        raise UserError(f"--val-fraction: must be in [0, 1), got {args.val_fraction}")
    if args.tune_decoding and args.val_fraction == 0:
        raise UserError("--tune-decoding: needs a validation split (--val-fraction > 0)")
    for name in ("lr", "recurrent_lr_scale", "gate_lr_scale"):
        value = getattr(args, name)
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise UserError(f"--{name.replace('_', '-')}: must be a positive number, got {value}")
    if not (args.clip >= 0 and math.isfinite(args.clip)):
        raise UserError(f"--clip: must be a number >= 0, got {args.clip}")


LPI = "L/img"  # the table's labels-per-image column


def matched_rows(data, cfg, results):
    """BCE at matched operating points (evaluation/operating_points.py), when both bce and
    cnn-rnn ran: {row title: evaluate()-like result} in the printing order."""
    if "scores" not in results.get("bce", {}) or "pred" not in results.get("cnn-rnn", {}):
        return {}
    scores = results["bce"]["scores"]
    picks = {
        "BCE at CNN-RNN's counts": operating_points.top_per_image(scores, results["cnn-rnn"]["pred"].sum(axis=1)),
        f"BCE >= 0.5 (at most {cfg.k})": operating_points.thresholded(scores, 0.5, cap=cfg.k),
    }
    rows = {}
    for title, pred in picks.items():
        result, _ = metrics.evaluate_with_ap(pred, scores, data.test_labels, data.test_ignore, ap_mode=cfg.ap_mode)
        rows[title] = {"metrics": result, "labels_per_image": float(pred.sum(axis=1).mean())}
    return rows


def results_table(data, cfg, results):
    """The text printed at the end: our metrics table (with the labels per image, and BCE at
    the CNN-RNN's operating points), and for a real benchmark its table in the paper's
    layout (protocols.report: Tables 1-3, or Table 4's per-class AP).
    cfg: a RunConfig of the runs (k, min_labels and ap_mode are the same for all models)."""
    ours = {kinds.KINDS[name].title: result for name, result in results.items()}
    rows = {n: dict(r["metrics"], **{LPI: r.get("labels_per_image")}) for n, r in ours.items()}
    rows.update(
        {n: dict(r["metrics"], **{LPI: r["labels_per_image"]}) for n, r in matched_rows(data, cfg, results).items()}
    )
    top_k = metrics.format_table(
        rows, columns=metrics.METRIC_KEYS + (LPI,), title=f"{data.name}: test set, k = {cfg.k} (percent)"
    )
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
    check_args(args)
    start = time.perf_counter()
    names = ("knn", "warp", "softmax", "bce", "no-rnn", "cnn-rnn") if args.compare else (args.model,)
    base = args.out or os.path.join("runs", "compare" if args.compare else args.model)
    outs = {name: os.path.join(base, name) if args.compare else base for name in names}
    if args.resume and args.overwrite:
        raise UserError("--overwrite: give either --resume (continue the run in --out) or --overwrite, not both")
    with contextlib.ExitStack() as locks:
        for out in outs.values():  # one run at a time per folder; a killed run's lock is stale
            locks.enter_context(fileio.folder_lock(out))
            if args.resume:
                checkpoint.require_resumable(os.path.join(out, "checkpoint.npz"))
            checkpoint.check_fresh_out(out, args.resume, args.overwrite)
        return _train(args, names, outs, start)


def _train(args, names, outs, start):
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
    if results:
        print()
        print(results_table(data, cfg, results))
    print(f"total time {time.perf_counter() - start:.0f} s (data, training and evaluation)")
    if failures:
        raise UserError("; ".join(failures))
    return 0


if __name__ == "__main__":
    cli.run(main)
