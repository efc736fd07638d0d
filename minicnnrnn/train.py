"""Train the CNN-RNN (§3.4) or a Table 3 baseline on fixed CNN features, then evaluate it.

    python -m minicnnrnn.train                  # CNN-RNN on the built-in data, prints the table
    python -m minicnnrnn.train --compare        # CNN-RNN, no-rnn, bce and softmax side by side
    python -m minicnnrnn.train --dataset npz:feats.npz --out runs/mine
    python -m minicnnrnn.train --dataset coco2014 --root /data/coco --features feats/coco

One epoch: shuffle the training images, and for every mini-batch turn the label sets into
ordered paths (label_paths.py), run the model forward and backward (model.py, or
baselines.py), clip the gradients and take an rmsprop step (rmsprop.py). The learning
rate follows a cosine schedule from ``--lr`` down towards 0 over ``--epochs``. After every
epoch ``--out`` gets a checkpoint; at the end the test split is decoded (beam search for the
path models, top-k for the classifiers) and scored with the paper's metrics (metrics.py).

Everything random (initialisation, shuffles, dropout masks) comes from one host
``numpy.random.Generator`` seeded by ``--seed``; its state is saved with each checkpoint,
so ``--resume`` finishes with exactly the result of an uninterrupted run.
"""
import csv
import dataclasses
import io
import json
import math
import os
import time

import numpy as np

from . import backend, baselines, beam_search, checkpoint, cli, fileio, label_paths, loss, metrics
from . import dropout, model, rmsprop
from .errors import UserError

PATH_MODELS = ("cnn-rnn", "no-rnn")
REAL_DATASETS = ("voc2007", "coco2014", "nuswide81", "nuswide1k")


def make_parser():
    p = cli.make_parser("python -m minicnnrnn.train", __doc__.split("\n\n")[0])
    p.add_argument("--model", default="cnn-rnn", choices=baselines.MODELS, help="model to train (Table 3)")
    p.add_argument("--compare", action="store_true", help="train and evaluate all four models")
    p.add_argument("--dataset", default="builtin",
                   help="builtin | npz:PATH | voc2007 | coco2014 | nuswide81 | nuswide1k")
    p.add_argument("--root", help="dataset folder (real datasets)")
    p.add_argument("--features", help="features folder written by `python -m minicnnrnn.extract` (real datasets)")
    p.add_argument("--n-train", type=int, default=4000, help="built-in training images")
    p.add_argument("--n-test", type=int, default=1000, help="built-in test images")
    p.add_argument("--epochs", type=int, default=20, help="passes over the training set")
    p.add_argument("--batch-size", type=int, default=64, help="images per mini-batch")
    p.add_argument("--lr", type=float, default=1e-3, help="initial rmsprop learning rate")
    p.add_argument("--clip", type=float, default=5.0, help="clip gradients to this global norm (0: off)")
    p.add_argument("--dropout", type=float, default=0.5, help="dropout on the projection (paper: 0.5)")
    p.add_argument("--seed", type=int, default=0, help="seed of everything random")
    p.add_argument("--embed", type=int, default=64, help="label embedding size E (§4)")
    p.add_argument("--hidden", type=int, default=512, help="recurrent layer size H (§4)")
    p.add_argument("--variant", default="relu", choices=("relu", "conventional"), help="LSTM of Eq. 1")
    p.add_argument("--label-order", default="freq", choices=label_paths.ORDERS, help="training path order (§3.4)")
    p.add_argument("--beam", type=int, default=3, help="beam size N of the search (§3.3)")
    p.add_argument("--k", type=int, default=3, help="labels per image for the top-k metrics")
    p.add_argument("--min-labels", type=int, default=0, help="shortest predicted path (footnote 1; e.g. = --k)")
    p.add_argument("--out", default=None, help="output folder (default runs/<model>; --compare: one subfolder per model)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    return p


def check_args(args):
    """One-line errors for impossible settings, before any data is loaded."""
    for name in ("embed", "hidden", "batch_size", "beam", "k"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')}: must be positive, got {getattr(args, name)}")
    if args.epochs < 0:
        raise UserError(f"--epochs: must be >= 0, got {args.epochs}")
    if not 0 <= args.dropout < 1:
        raise UserError(f"--dropout: must be in [0, 1), got {args.dropout}")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        raise UserError(f"--lr: must be a positive number, got {args.lr}")


def build_config(args, data):
    """The run's settings (saved in the checkpoint)."""
    K, D = data.train_labels.shape[1], data.train_features.shape[1]
    beam_search.check_options(K, args.beam, min(args.k, K), args.min_labels)
    return {"model": args.model, "K": K, "D": D, "E": args.embed, "H": args.hidden, "variant": args.variant,
            "cnn": data.cnn, "dataset": data.name, "label_order": args.label_order,
            "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "clip": args.clip,
            "dropout": args.dropout, "seed": args.seed, "beam": args.beam, "k": args.k,
            "min_labels": args.min_labels}


# ---------------------------------------------------------------------------
# Data: host arrays of CNN features and 0/1 labels for the train and test splits
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class TrainingData:
    """Features ``(N, D)`` float32 (possibly memory-mapped) and labels ``(N, K)`` 0/1 per split."""
    name: str
    label_names: list
    train_features: "Rows"
    train_labels: np.ndarray
    test_features: "Rows"
    test_labels: np.ndarray
    test_ignore: np.ndarray = None    # (N_test, K) bool: VOC "difficult", left out of the metrics
    cnn: dict = None                  # which CNN made the features (for predict)

    def summary(self):
        (n, D), K = self.train_features.shape, self.train_labels.shape[1]
        return (f"{self.name}: {n} train / {len(self.test_labels)} test images, D = {D}, K = {K}, "
                f"{self.train_labels.sum(1).mean():.2f} labels per training image")


def load_data(args):
    """The dataset named by ``--dataset`` (see the module docstring)."""
    if args.dataset == "builtin":
        from .data import features, tinyscenes
        if min(args.n_train, args.n_test) < 1:
            raise UserError(f"--n-train/--n-test: need at least one image, got {args.n_train}/{args.n_test}")
        (train_f, train_y), (test_f, test_y) = (features.builtin_features(split, n, layer="fc7")
                                                for split, n in (("train", args.n_train), ("test", args.n_test)))
        data = TrainingData("builtin", list(tinyscenes.LABEL_NAMES), Rows(train_f), train_y, Rows(test_f), test_y,
                            cnn={"weights": "builtin", "layer": "fc7"})
    elif args.dataset.startswith("npz:"):
        data = load_npz(args.dataset[4:])
    elif args.dataset in REAL_DATASETS:
        data = load_real(args.dataset, args.root, args.features)
    else:
        raise UserError(f"--dataset: unknown dataset {args.dataset!r}; use builtin, npz:PATH or one of "
                        f"{', '.join(REAL_DATASETS)}")
    return drop_unlabelled(data)


def load_npz(path):
    """Precomputed features in one .npz: train_features, train_labels, test_features, test_labels, label_names."""
    names = ("train_features", "train_labels", "test_features", "test_labels", "label_names")
    a = fileio.load_npz(path, required=names)
    for split in ("train", "test"):
        f, y = a[f"{split}_features"], a[f"{split}_labels"]
        if f.ndim != 2 or y.ndim != 2 or len(f) != len(y) or len(f) == 0:
            raise UserError(f"{path}: {split}_features {f.shape} and {split}_labels {y.shape} must be "
                            f"(N, D) and (N, K) with the same N > 0")
        if not np.isin(y, (0, 1)).all():
            raise UserError(f"{path}: {split}_labels must hold only 0 and 1")
        if not np.isfinite(f).all():
            raise UserError(f"{path}: {split}_features holds NaN or inf values")
    if a["train_features"].shape[1] != a["test_features"].shape[1]:
        raise UserError(f"{path}: train and test features differ in size D "
                        f"({a['train_features'].shape[1]} vs {a['test_features'].shape[1]})")
    K = a["train_labels"].shape[1]
    if a["test_labels"].shape[1] != K or a["label_names"].shape != (K,):
        raise UserError(f"{path}: train_labels, test_labels and label_names disagree on the number of "
                        f"labels ({K}, {a['test_labels'].shape[1]}, {a['label_names'].shape})")
    return TrainingData(f"npz:{os.path.basename(path)}", [str(n) for n in a["label_names"]],
                        Rows(a["train_features"]), a["train_labels"].astype(np.uint8),
                        Rows(a["test_features"]), a["test_labels"].astype(np.uint8),
                        cnn={"weights": None, "layer": None, "features": os.path.abspath(path)})


def load_real(name, root, folder):
    """A benchmark's labels (``datasets.load``) joined by image path with an ``extract`` features folder."""
    from . import datasets
    if not root or not folder:
        raise UserError(f"--dataset {name}: needs --root (the dataset folder) and --features (a folder "
                        f"written by `python -m minicnnrnn.extract --dataset {name} --root ROOT`)")
    for needed in ("features.npy", "images.txt", "meta.json"):
        if not os.path.exists(os.path.join(folder, needed)):
            raise UserError(f"{os.path.join(folder, needed)}: not found (--features must be an extract folder)")
    try:
        feats = np.load(os.path.join(folder, "features.npy"), mmap_mode="r")
        with open(os.path.join(folder, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as exc:
        raise UserError(f"{folder}: unreadable features folder ({type(exc).__name__}: {exc})") from None
    with open(os.path.join(folder, "images.txt"), encoding="utf-8") as f:
        paths = [os.path.realpath(line.rstrip("\n")) for line in f if line.strip()]
    if feats.ndim != 2 or len(feats) != len(paths):
        raise UserError(f"{folder}: features.npy {feats.shape} does not have one row per line of "
                        f"images.txt ({len(paths)})")
    row_of = {p: i for i, p in enumerate(paths)}
    ds = datasets.load(name, root, check_images=False)
    parts = {}
    for split_name, split in ds.splits.items():
        rows = np.array([row_of.get(os.path.realpath(p), -1) for p in split.paths], dtype=np.int64)
        if not (rows >= 0).any():
            raise UserError(f"{folder}: no {split_name} image of {name} in {root} has features "
                            f"(were they extracted from another folder?)")
        if (rows < 0).any():
            print(f"note: {int((rows < 0).sum())} {split_name} images have no features and are left out")
            split, rows = split.subset(rows >= 0), rows[rows >= 0]
        parts[split_name] = (Rows(feats, rows), split)
    (train_f, train), (test_f, test) = parts["train"], parts["test"]
    return TrainingData(name, list(ds.label_names), train_f, train.labels, test_f, test.labels,
                        test.ignore, cnn={"weights": meta.get("weights"), "layer": meta.get("layer", "fc7")})


class Rows:
    """Rows ``array[rows]`` (default all) of a feature matrix, read as float32 only when a batch
    asks for them: a memory-mapped features file is never loaded whole."""

    def __init__(self, array, rows=None):
        self.array = array
        self.rows = np.arange(len(array)) if rows is None else np.asarray(rows)
        self.shape = (len(self.rows),) + tuple(array.shape[1:])

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return np.asarray(self.array[self.rows[index]], dtype=np.float32)


def drop_unlabelled(data):
    """Training images without any label have no path to learn; leave them out (with a note)."""
    keep = data.train_labels.sum(axis=1) > 0
    if keep.all():
        return data
    print(f"note: {int((~keep).sum())} training images without labels are left out")
    features = Rows(data.train_features.array, data.train_features.rows[keep])
    return dataclasses.replace(data, train_features=features, train_labels=data.train_labels[keep])


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
    """Loss and gradients of one mini-batch. I: (N, D) device; labels: (N, K) host 0/1.

    Dropout masks (0 or 2 for p = 0.5) are drawn on the host from ``rng`` (dropout.make_mask).
    """
    E, p = cfg["E"], cfg["dropout"]
    if cfg["model"] not in PATH_MODELS:
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
    """Decode a set of images. features: (n, D) host. Returns host (pred01 (n, K) uint8, scores (n, K)).

    Path models: beam search (§3.3) for the most probable path of at most k labels (and at
    least --min-labels); scores are the search's per-label confidences. Classifiers: the k
    most probable labels; scores are sigmoid or softmax probabilities.
    """
    K, k = cfg["K"], min(cfg["k"], cfg["K"])
    pred, scores = np.zeros((len(features), K), np.uint8), np.zeros((len(features), K), np.float32)
    for s in range(0, len(features), batch_size):
        I = backend.to_device(features[s:s + batch_size])
        if cfg["model"] in PATH_MODELS:
            step_fn = baselines.no_rnn_step if cfg["model"] == "no-rnn" else None
            res = beam_search.beam_search(params, I, cfg["beam"], max_labels=k, min_labels=cfg["min_labels"],
                                          variant=cfg["variant"], step_fn=step_fn, batch_size=batch_size)
            paths = backend.to_host(res.paths)
            rows, cols = np.nonzero(paths >= 0)
            pred[s + rows, paths[rows, cols]] = 1
            scores[s:s + len(paths)] = backend.to_host(res.scores)
        else:
            raw, _ = baselines.classifier_forward(params, I)
            conf = backend.to_host(baselines.classifier_confidence(cfg["model"], raw))
            pred[s:s + len(conf)] = metrics.topk_predictions(conf, k)
            scores[s:s + len(conf)] = conf
    return pred, scores


# ---------------------------------------------------------------------------
# Training loop with checkpoints
# ---------------------------------------------------------------------------

def learning_rate(cfg, epoch):
    """Cosine schedule: lr · ½(1 + cos(π · epoch / epochs)) for epoch = 0 .. epochs-1."""
    return cfg["lr"] * 0.5 * (1.0 + math.cos(math.pi * epoch / max(cfg["epochs"], 1)))


def run_epoch(cfg, params, opt, data, order, rng, epoch):
    """One pass over the shuffled training set. Returns the epoch's log row (a dict)."""
    from tqdm import tqdm
    opt.lr = learning_rate(cfg, epoch)
    n, B = len(data.train_labels), cfg["batch_size"]
    perm = rng.permutation(n)
    total, norms, start = 0.0, [], time.perf_counter()
    bar = tqdm(total=n, unit="img", desc=f"{cfg['model']} epoch {epoch + 1}/{cfg['epochs']}",
               leave=False, dynamic_ncols=True, mininterval=0.5)
    try:
        for step, s in enumerate(range(0, n, B)):
            idx = np.sort(perm[s:s + B])      # sorted rows read memory-mapped features in order
            I = backend.to_device(data.train_features[idx])
            value, grads = batch_loss(cfg, params, I, data.train_labels[idx], order, rng)
            norm = rmsprop.clip_by_global_norm(grads, cfg["clip"])
            if not (math.isfinite(value) and math.isfinite(norm)):
                raise FloatingPointError(f"loss {value} (gradient norm {norm}) at epoch {epoch + 1}, "
                                         f"step {step + 1}")
            opt.step(params, grads)
            total += value * len(idx)
            norms.append(norm)
            bar.update(len(idx))
            bar.set_postfix(loss=f"{value:.3f}", lr=f"{opt.lr:.2g}")
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    return {"epoch": epoch + 1, "loss": total / n, "grad_norm": float(np.mean(norms)), "lr": opt.lr,
            "seconds": round(seconds, 3), "images_per_s": round(n / max(seconds, 1e-9), 1)}


def fit(cfg, data, out, resume=False):
    """Train (or continue) a model; returns (params on the device, history)."""
    ckpt_path = os.path.join(out, "checkpoint.npz")
    if resume:
        state, rng = checkpoint.resume(ckpt_path, cfg, ("model", "K", "D", "E", "H", "variant", "dataset",
                                                        "label_order", "seed", "batch_size"))
        params = backend.params_to_device(state["params"])
        order, first_epoch, history = state["label_order"], state["epoch"], state["extra"].get("history", [])
    else:
        rng = np.random.default_rng(cfg["seed"])
        order = label_paths.label_order(data.train_labels, cfg["label_order"], cfg["seed"])
        params = backend.params_to_device(init_params(cfg, rng))
        first_epoch, history = 0, []
    opt = rmsprop.RMSprop(params, lr=cfg["lr"])
    if resume:
        opt.load_state_dict(state["opt"])
    for epoch in range(first_epoch, cfg["epochs"]):
        try:
            row = run_epoch(cfg, params, opt, data, order, rng, epoch)
        except FloatingPointError as exc:
            kept = f"kept {ckpt_path} (epoch {epoch})" if epoch > 0 else "no checkpoint was written"
            raise UserError(f"training diverged: {exc}; {kept}; try a lower --lr") from None
        history.append(row)
        print(f"{cfg['model']} epoch {row['epoch']}/{cfg['epochs']}: loss {row['loss']:.4f}  "
              f"lr {row['lr']:.2e}  {row['seconds']:.1f}s  {row['images_per_s']:.0f} img/s", flush=True)
        checkpoint.save(ckpt_path, {
            "params": backend.params_to_host(params), "opt": opt.state_dict(), "config": cfg,
            "label_names": data.label_names, "label_order": order, "epoch": epoch + 1,
            "rng": checkpoint.rng_state(rng), "extra": {"history": history}})
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


def train_and_evaluate(cfg, data, out, resume=False):
    """fit + predict on the test split + OUT/metrics.json. Returns the metrics (percent)."""
    params, _ = fit(cfg, data, out, resume)
    pred, scores = predict(cfg, params, data.test_features)
    result = metrics.evaluate(pred, scores, data.test_labels, data.test_ignore)
    fileio.save_json(os.path.join(out, "metrics.json"), result)
    return result


TABLE_NAMES = {"cnn-rnn": "CNN-RNN", "no-rnn": "No RNN", "bce": "Binary cross-entropy", "softmax": "Softmax"}


def main(argv=None):
    args = cli.parse(make_parser(), argv)
    check_args(args)
    start = time.perf_counter()
    data = load_data(args)
    print(data.summary(), flush=True)
    models = ("softmax", "bce", "no-rnn", "cnn-rnn") if args.compare else (args.model,)
    rows = {}
    for name in models:
        args.model = name
        cfg = build_config(args, data)
        base = args.out or os.path.join("runs", "compare" if args.compare else name)
        out = os.path.join(base, name) if args.compare else base
        rows[TABLE_NAMES[name]] = train_and_evaluate(cfg, data, out, args.resume)
        print(f"{name}: outputs in {out}", flush=True)
    k = min(args.k, data.train_labels.shape[1])
    print()
    print(metrics.format_table(rows, title=f"{data.name}: test set, k = {k} (percent)"))
    print(f"total time {time.perf_counter() - start:.0f} s (data, training and evaluation)")
    return 0


if __name__ == "__main__":
    cli.run(main)
