"""Train the CNN-RNN (§3.4) or a Table 3 baseline on fixed CNN features, then evaluate it.

    python -m minicnnrnn.train                  # CNN-RNN on the built-in data, prints the table
    python -m minicnnrnn.train --compare        # CNN-RNN, no-rnn, bce and softmax side by side
    python -m minicnnrnn.train --dataset npz:feats.npz --out runs/mine
    python -m minicnnrnn.train --dataset voc2007 --root VOCdevkit --features feats/voc2007

One epoch: shuffle the training images, and for every mini-batch turn the label sets into
ordered paths (label_paths.py), run the model forward and backward (model.py, or
baselines.py), clip the gradients and take an rmsprop step (optim.py). The learning
rate follows a cosine schedule from ``--lr`` down towards 0 over ``--epochs``. After every
epoch ``--out`` gets a checkpoint; at the end the test split is decoded (beam search, §3.3,
for the path models; top-k for the classifiers) and scored with the paper's metrics (§4.1)
by the benchmark's protocol (protocols.py: k, minimum path length, AP flavour; Tables 1-4).

The data (``--dataset``) and the feature normalisation that train and predict share are
in train_data.py. Everything random (initialisation, shuffles, dropout masks) comes from
one host ``numpy.random.Generator`` seeded by ``--seed``; its state is saved with each
checkpoint, so ``--resume`` finishes with exactly the result of an uninterrupted run.
"""

import csv
import io
import math
import os
import time

import numpy as np

from minicnnrnn.core import backend, cli, fileio
from minicnnrnn.core.errors import UserError
from minicnnrnn.evaluation import metrics, protocols
from minicnnrnn.layers import dropout, loss
from minicnnrnn.rnn import baselines, beam_search, label_paths, model
from minicnnrnn.training import checkpoint, optim
from minicnnrnn.training import data as train_data

TABLE_NAMES = {"cnn-rnn": "CNN-RNN", "no-rnn": "No RNN", "bce": "Binary cross-entropy", "softmax": "Softmax"}
# Settings a --resume must share with the checkpoint (the others may change, e.g. --epochs).
RESUME_KEYS = ("model", "K", "D", "E", "H", "variant", "dataset", "label_order", "seed", "batch_size", "feature_norm")


def make_parser():
    p = cli.make_parser("python -m minicnnrnn.train", __doc__.split("\n\n")[0])
    p.add_argument("--model", default="cnn-rnn", choices=baselines.MODELS, help="model to train (Table 3)")
    p.add_argument("--compare", action="store_true", help="train and evaluate all four models")
    p.add_argument(
        "--dataset", default="builtin", help="builtin | npz:PATH | voc2007 | coco2014 | nuswide81 | nuswide1k"
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
    p.add_argument("--epochs", type=cli.non_negative_int, default=20, help="passes over the training set")
    p.add_argument("--batch-size", type=cli.positive_int, default=64, help="images per mini-batch")
    p.add_argument("--lr", type=float, default=1e-3, help="initial rmsprop learning rate")
    p.add_argument(
        "--recurrent-lr-scale",
        type=float,
        default=None,
        help="learning rate of the LSTM's U_r relative to --lr; default 0.01 for --variant relu "
        "(its state is unbounded, docs/training.md) and 1 for conventional",
    )
    p.add_argument("--clip", type=float, default=5.0, help="clip gradients to this global norm (0: off)")
    p.add_argument("--dropout", type=float, default=0.5, help="dropout on the projection (paper: 0.5)")
    p.add_argument("--seed", type=cli.non_negative_int, default=0, help="seed of everything random")
    p.add_argument("--embed", type=cli.positive_int, default=64, help="label embedding size E (§4)")
    p.add_argument("--hidden", type=cli.positive_int, default=512, help="recurrent layer size H (§4)")
    p.add_argument("--variant", default="relu", choices=("relu", "conventional"), help="LSTM of Eq. 1")
    p.add_argument("--label-order", default="freq", choices=label_paths.ORDERS, help="training path order (§3.4)")
    p.add_argument("--beam", type=cli.positive_int, default=3, help="beam size N of the search (§3.3)")
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
        "--out", default=None, help="output folder (default runs/<model>; --compare: one subfolder per model)"
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    return p


def check_args(args):
    """One-line errors for impossible settings, before any data is loaded."""
    if not 0 <= args.dropout < 1:
        raise UserError(f"--dropout: must be in [0, 1), got {args.dropout}")
    for name in ("lr", "recurrent_lr_scale"):
        value = getattr(args, name)
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise UserError(f"--{name.replace('_', '-')}: must be a positive number, got {value}")
    if not (args.clip >= 0 and math.isfinite(args.clip)):
        raise UserError(f"--clip: must be a number >= 0, got {args.clip}")


def build_config(args, data, norm):
    """The run's settings (saved in the checkpoint). Evaluation settings not given on the
    command line come from the dataset's protocol (:func:`protocols.protocol_for`)."""
    K, D = data.train_labels.shape[1], data.train_features.shape[1]
    proto = protocols.protocol_for(data.name)
    k = min(proto["k"] if args.k is None else args.k, K)
    min_labels = min(proto["min_labels"], k) if args.min_labels is None else args.min_labels
    beam_search.check_options(K, args.beam, k, min_labels)
    scale = args.recurrent_lr_scale
    if scale is None:
        scale = 0.01 if args.variant == "relu" else 1.0
    return {
        "model": args.model,
        "K": K,
        "D": D,
        "E": args.embed,
        "H": args.hidden,
        "variant": args.variant,
        "cnn": data.cnn,
        "dataset": data.name,
        "feature_norm": norm,
        "label_order": args.label_order,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "recurrent_lr_scale": scale,
        "clip": args.clip,
        "dropout": args.dropout,
        "seed": args.seed,
        "beam": args.beam,
        "k": k,
        "min_labels": min_labels,
        "ap_mode": args.ap_mode or proto["ap_mode"],
    }


# ---------------------------------------------------------------------------
# The four models behind one interface: init, loss + gradients of a batch, predict
# ---------------------------------------------------------------------------


def init_params(cfg, rng):
    """Fresh host parameters for ``cfg["model"]``."""
    K, D, E, H = cfg["K"], cfg["D"], cfg["E"], cfg["H"]
    if cfg["model"] == "cnn-rnn":
        return model.init_params(K, D, E, H, rng, cfg["variant"])
    if cfg["model"] == "no-rnn":
        return baselines.init_no_rnn(K, D, E, H, rng)
    return baselines.init_classifier(K, D, E, rng)


def batch_loss(cfg, params, I, labels, order, rng):
    """Loss and gradients of one mini-batch (§3.4). I: (N, D) device; labels: (N, K) host 0/1.

    Path models: softmax cross-entropy over the ordered label paths (T, N), summed over
    the real steps and divided by N. Classifiers: their own loss (baselines.py).
    Dropout masks (0 or 1/(1-p)) are drawn on the host from ``rng`` (dropout.make_mask).
    """
    E, p = cfg["E"], cfg["dropout"]
    if cfg["model"] not in baselines.PATH_MODELS:
        mask = dropout.make_mask((I.shape[0], E), p, rng)
        return baselines.classifier_loss(cfg["model"], params, I, backend.to_device(labels), mask)
    inputs, targets, steps = (backend.to_device(a) for a in label_paths.make_paths(labels, order))
    mask = dropout.make_mask(inputs.shape + (E,), p, rng)
    if cfg["model"] == "cnn-rnn":
        return model.path_loss(params, I, inputs, targets, steps, cfg["variant"], mask)
    scores, cache = baselines.no_rnn_forward(params, I, inputs, mask)
    value, dscores = loss.softmax_cross_entropy(scores, targets, steps)
    return value, baselines.no_rnn_backward(dscores, cache)


def predict(cfg, params, features, batch_size=512):
    """Decode a set of images. features: (n, D) host rows, already normalised (``train_data.Rows``).
    Returns host (pred01 (n, K) uint8, scores (n, K) float32).

    Path models: beam search (§3.3) for the most probable path (Eq. 6) of at most k labels
    (and at least ``min_labels``); scores are the search's per-label confidences.
    Classifiers: the k most probable labels; scores are sigmoid or softmax probabilities.
    """
    K, k = cfg["K"], min(cfg["k"], cfg["K"])
    pred, scores = np.zeros((len(features), K), np.uint8), np.zeros((len(features), K), np.float32)
    for s in range(0, len(features), batch_size):
        I = backend.to_device(features[s : s + batch_size])
        if cfg["model"] in baselines.PATH_MODELS:
            step_fn = baselines.no_rnn_step if cfg["model"] == "no-rnn" else None
            res = beam_search.beam_search(
                params,
                I,
                cfg["beam"],
                max_labels=k,
                min_labels=cfg["min_labels"],
                variant=cfg["variant"],
                step_fn=step_fn,
                batch_size=batch_size,
            )
            paths = backend.to_host(res.paths)
            rows, cols = np.nonzero(paths >= 0)
            pred[s + rows, paths[rows, cols]] = 1
            scores[s : s + len(paths)] = backend.to_host(res.scores)
        else:
            raw, _ = baselines.classifier_forward(params, I)
            conf = backend.to_host(baselines.classifier_confidence(cfg["model"], raw))
            pred[s : s + len(conf)] = metrics.topk_predictions(conf, k)
            scores[s : s + len(conf)] = conf
    return pred, scores


# ---------------------------------------------------------------------------
# Training loop with checkpoints
# ---------------------------------------------------------------------------


def learning_rate(cfg, epoch):
    """Cosine schedule: lr · ½(1 + cos(π · epoch / epochs)) for epoch = 0 .. epochs-1."""
    return cfg["lr"] * 0.5 * (1.0 + math.cos(math.pi * epoch / max(cfg["epochs"], 1)))


def make_optimizer(cfg, params):
    """rmsprop with the paper's momentum and weight decay; the ReLU LSTM's U_r learns slower."""
    scale = {"U_r": cfg["recurrent_lr_scale"]} if "U_r" in params else {}
    return optim.RMSprop(params, lr=cfg["lr"], lr_scale=scale)


def run_epoch(cfg, params, opt, data, order, rng, epoch):
    """One pass over the shuffled training set. Returns the epoch's log row (a dict)."""
    from tqdm import tqdm

    opt.lr = learning_rate(cfg, epoch)
    n, B = len(data.train_labels), cfg["batch_size"]
    perm = rng.permutation(n)
    total, norms, start = 0.0, [], time.perf_counter()
    bar = tqdm(
        total=n,
        unit="img",
        desc=f"{cfg['model']} epoch {epoch + 1}/{cfg['epochs']}",
        leave=False,
        dynamic_ncols=True,
        mininterval=0.5,
    )
    try:
        for step, s in enumerate(range(0, n, B)):
            idx = np.sort(perm[s : s + B])  # sorted rows read memory-mapped features in order
            I = backend.to_device(data.train_features[idx])
            value, grads = batch_loss(cfg, params, I, data.train_labels[idx], order, rng)
            norm = optim.clip_by_global_norm(grads, cfg["clip"])
            if not (math.isfinite(value) and math.isfinite(norm)):
                raise FloatingPointError(f"loss {value} (gradient norm {norm}) at epoch {epoch + 1}, step {step + 1}")
            opt.step(params, grads)
            total += value * len(idx)
            norms.append(norm)
            bar.update(len(idx))
            bar.set_postfix(loss=f"{value:.3f}", lr=f"{opt.lr:.2g}")
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    return {
        "epoch": epoch + 1,
        "loss": total / n,
        "grad_norm": float(np.mean(norms)),
        "lr": opt.lr,
        "seconds": round(seconds, 3),
        "images_per_s": round(n / max(seconds, 1e-9), 1),
    }


def fit(cfg, data, out, resume=False):
    """Train (or continue) a model; returns (params on the device, history)."""
    ckpt_path = os.path.join(out, "checkpoint.npz")
    if resume:
        state, rng = checkpoint.resume(ckpt_path, cfg, RESUME_KEYS)
        params = backend.params_to_device(state["params"])
        order, first_epoch, history = state["label_order"], state["epoch"], state["extra"].get("history", [])
    else:
        rng = np.random.default_rng(cfg["seed"])
        order = label_paths.label_order(data.train_labels, cfg["label_order"], cfg["seed"])
        params = backend.params_to_device(init_params(cfg, rng))
        first_epoch, history = 0, []
    opt = make_optimizer(cfg, params)
    if resume:
        try:
            opt.load_state_dict(state["opt"])
        except (KeyError, ValueError) as exc:
            raise UserError(f"{ckpt_path}: optimizer state does not fit this model ({exc})") from None
    for epoch in range(first_epoch, cfg["epochs"]):
        try:
            row = run_epoch(cfg, params, opt, data, order, rng, epoch)
        except FloatingPointError as exc:
            kept = f"kept {ckpt_path} (epoch {epoch})" if epoch > 0 else "no checkpoint was written"
            raise UserError(f"training diverged: {exc}; {kept}; try a lower --lr") from None
        history.append(row)
        print(
            f"{cfg['model']} epoch {row['epoch']}/{cfg['epochs']}: loss {row['loss']:.4f}  "
            f"lr {row['lr']:.2e}  {row['seconds']:.1f}s  {row['images_per_s']:.0f} img/s",
            flush=True,
        )
        checkpoint.save(
            ckpt_path,
            {
                "params": backend.params_to_host(params),
                "opt": opt.state_dict(),
                "config": cfg,
                "label_names": data.label_names,
                "label_order": order,
                "epoch": epoch + 1,
                "rng": checkpoint.rng_state(rng),
                "extra": {"history": history},
            },
        )
        write_log(out, history)
    return params, history


def write_log(out, history):
    """OUT/log.csv (one row per epoch) and OUT/loss.png (the training-loss curve)."""
    text = io.StringIO()
    fields = ["epoch", "loss", "grad_norm", "lr", "seconds", "images_per_s"]
    writer = csv.DictWriter(text, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: row[k] for k in fields} for row in history)
    fileio.save_text(os.path.join(out, "log.csv"), text.getvalue())
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([r["epoch"] for r in history], [r["loss"] for r in history], marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss per image")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "loss.png"), dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------
# Evaluation and the command
# ---------------------------------------------------------------------------


def evaluate(cfg, params, data):
    """Decode and score the test split (§4.1). Returns ``{"metrics": {the 8 keys of
    metrics.METRIC_KEYS}, "per_class_ap": [K]}`` in percent (NaN AP: a class without
    test positives). AP is ``cfg["ap_mode"]``; VOC "difficult" entries are ignored."""
    pred, scores = predict(cfg, params, data.test_features)
    result, ap = metrics.evaluate_with_ap(pred, scores, data.test_labels, data.test_ignore, ap_mode=cfg["ap_mode"])
    return {"metrics": result, "per_class_ap": [float(a) for a in ap]}


def train_and_evaluate(cfg, data, out, resume=False):
    """fit + evaluate; writes OUT/metrics.json and OUT/per_class_AP.json. Returns the evaluate() result."""
    params, _ = fit(cfg, data, out, resume)
    result = evaluate(cfg, params, data)
    fileio.save_json(os.path.join(out, "metrics.json"), result["metrics"])
    per_class = {
        name: (ap if math.isfinite(ap) else None)  # JSON has no NaN: null = no positives
        for name, ap in zip(data.label_names, result["per_class_ap"])
    }
    fileio.save_json(os.path.join(out, "per_class_AP.json"), {"ap_mode": cfg["ap_mode"], "AP": per_class})
    return result


def results_table(data, cfg, results):
    """The text printed at the end: our metrics table, and for a real benchmark its table
    in the paper's layout (protocols.report: Tables 1-3, or Table 4's per-class AP)."""
    ours = {TABLE_NAMES[name]: result for name, result in results.items()}
    top_k = metrics.format_table(
        {n: r["metrics"] for n, r in ours.items()}, title=f"{data.name}: test set, k = {cfg['k']} (percent)"
    )
    if data.name not in train_data.REAL_DATASETS:
        return top_k
    proto = protocols.protocol_for(data.name)
    parts = []
    if (cfg["k"], cfg["min_labels"], cfg["ap_mode"]) != (proto["k"], proto["min_labels"], proto["ap_mode"]):
        parts.append(
            f"note: k = {cfg['k']}, min-labels = {cfg['min_labels']}, AP {cfg['ap_mode']} differ from the "
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
    models = ("softmax", "bce", "no-rnn", "cnn-rnn") if args.compare else (args.model,)
    base = args.out or os.path.join("runs", "compare" if args.compare else args.model)
    outs = {name: os.path.join(base, name) if args.compare else base for name in models}
    if args.resume:
        for out in outs.values():
            checkpoint.require_resumable(os.path.join(out, "checkpoint.npz"))
    data = train_data.load(args)
    norm = train_data.fit_feature_norm(args.feature_norm, data.train_features)
    data = data.with_norm(norm)
    print(data.summary(), flush=True)
    results = {}
    for name in models:
        args.model = name
        cfg = build_config(args, data, norm)
        results[name] = train_and_evaluate(cfg, data, outs[name], args.resume)
        print(f"{name}: outputs in {outs[name]}", flush=True)
    print()
    print(results_table(data, cfg, results))
    print(f"total time {time.perf_counter() - start:.0f} s (data, training and evaluation)")
    return 0


if __name__ == "__main__":
    cli.run(main)
