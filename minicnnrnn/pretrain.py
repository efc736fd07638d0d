"""Pretrain the small built-in CNN on the Tiny Scenes *pretrain* split.

This plays the part of the ImageNet training of VGG16 in the paper (§4): a CNN
learns to see on pictures the CNN-RNN never meets, and is then kept fixed; its
fc7 activations become the image representation ``I`` of Eq. 4. As ImageNet's
classes are not COCO's labels, the default ``--task attributes`` is a *source
task* that never names one of the 20 target labels (other object kinds, where
objects are, which colours: :mod:`minicnnrnn.tinyscenes.source_task`).
``--task labels`` trains on the 20 target labels themselves instead (the
in-domain setting this project shipped before; see docs/training.md for what the
difference does to the comparison of methods).

The network is a VGG in miniature, built by :mod:`minicnnrnn.cnn.vgg` from a config
list (3x3 convolutions + ReLU, 2x2 max-pools, then fc6, fc7 and a K-way
classifier), trained with one independent sigmoid per output (binary
cross-entropy, the "Binary cross-entropy" model of Table 3) by our hand-written
backward pass and Adam. Each epoch ends with an atomic checkpoint; running an
interrupted command again resumes from it (the checkpoint is removed when the
run completes). The result is a weights file (see
docs/DESIGN.md) plus a ``.json`` record: its SHA-256, the command, the time
taken and the mAP on held-out pretrain pictures (never a train or test picture).

    python -m minicnnrnn.pretrain --out minicnnrnn/weights/tinyscenes_cnn.npz

rebuilds the shipped weights (defaults = the shipped settings).
"""

import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time

import numpy as np

from minicnnrnn.cnn import preprocess, vgg
from minicnnrnn.core import backend, cli, fileio, progress
from minicnnrnn.core.errors import UserError
from minicnnrnn.evaluation import metrics
from minicnnrnn.layers import loss
from minicnnrnn.tinyscenes import features, scenes, source_task
from minicnnrnn.training import optim

CONFIG = [8, "M", 16, "M", 32, "M", 64, "M"]
FC = [256, 256]
DEFAULT_OUT = os.path.join("runs", "pretrain", "tinyscenes_cnn.npz")
# The settings that define a run: a checkpoint is only resumed when they all agree.
RUN_KEYS = ("task", "epochs", "n_pretrain", "n_heldout", "size", "batch_size", "lr", "weight_decay", "dropout", "seed")


def make_optimizer(params, weight_decay):
    """Adam (:class:`minicnnrnn.training.optim.Adam`) with the L2 penalty ``weight_decay`` on
    the weight matrices (``.../W``) only; the biases are not decayed."""
    return optim.Adam(params, weight_decay, decayed=[k for k in params if k.endswith("/W")])


# What the CNN learns to answer: (number of outputs, their names).
TASKS = {
    "attributes": (source_task.A, source_task.ATTRIBUTE_NAMES),
    "labels": (scenes.K, scenes.LABEL_NAMES),
}


def load_task(task, n, size, cache_dir=None):
    """The first ``n`` pretrain pictures and what ``task`` asks of them.

    Returns ``(images (n, S, S, 3) uint8, targets (n, C) uint8)`` with C = A (86 source-task
    answers) for "attributes" or K (20 target labels) for "labels".
    """
    if task == "attributes":
        return source_task.load(n, size, cache_dir)
    return scenes.load("pretrain", n, size, cache_dir)


def make_meta(images, size, task="attributes"):
    """The weights file's meta, with per-channel mean and std measured on (the first 2000) pictures."""
    sample = images[:2000].reshape(-1, 3).astype(np.float64) / 255.0
    preprocess = {
        "channel_order": "RGB",
        "scale": 1 / 255,
        "mean": [round(float(m), 4) for m in sample.mean(0)],
        "std": [round(float(s), 4) for s in sample.std(0)],
        "resize": "warp",
    }
    outputs, names = TASKS[task]
    source = f"python -m minicnnrnn.pretrain --task {task} on the Tiny Scenes pretrain split"
    meta = vgg.make_meta(CONFIG, FC, outputs, size, preprocess, source=source)
    meta["label_names"] = list(names)  # the outputs' names: source-task answers or target labels
    return meta


def train_epoch(params, meta, opt, images, labels, rng, args, step, total_steps):
    """One pass over the pictures in a random order. Returns (mean loss, step count after it).

    images: (N, S, S, 3) uint8, labels: (N, C) uint8 targets, both host. Pictures are
    mirrored left-right at random (every scene makes sense mirrored).
    """
    order = rng.permutation(len(images))
    total, batches = 0.0, 0
    for start in range(0, len(order) - args.batch_size + 1, args.batch_size):  # drop the ragged end
        rows = np.sort(order[start : start + args.batch_size])
        x = preprocess.normalise(images[rows], meta["preprocess"])
        flip = rng.random(len(rows)) < 0.5
        x[flip] = x[flip, :, ::-1]
        outs, cache = vgg.vgg_forward(
            params, meta, backend.to_device(x), outputs=("logits",), train=True, rng=rng, dropout_p=args.dropout
        )
        value, dlogits = loss.sigmoid_cross_entropy(outs["logits"], backend.to_device(labels[rows]))
        if not math.isfinite(value):
            raise UserError(f"--lr: training diverged (loss {value}) at step {step}; try a smaller --lr")
        opt.step(params, vgg.vgg_backward(dlogits, cache)[1], optim.cosine_schedule(args.lr, step, total_steps))
        total, batches, step = total + value, batches + 1, step + 1
    return total / max(1, batches), step


def evaluate(params, meta, images, labels):
    """(mAP, per-output APs (C,)) of the logits; non-interpolated AP per output, averaged.

    images: (N, S, S, 3) uint8, labels: (N, C) uint8, both host.
    """
    scores = features.run_cnn(params, meta, images, layer="logits")
    aps = metrics.average_precision(scores, labels, mode="sklearn")
    return float(np.nanmean(aps)), aps


def save_checkpoint(path, params, opt, meta, state):
    """Everything needed to continue: parameters, Adam moments, meta and the run state (atomic)."""
    arrays = {f"params/{k}": backend.to_host(v) for k, v in params.items()}
    arrays.update({f"opt/{k}": v for k, v in opt.state_dict().items()})
    fileio.save_npz(path, meta=np.array(json.dumps(meta)), state=np.array(json.dumps(state)), **arrays)


def load_checkpoint(path, settings):
    """(params, optimizer state, meta, state) from a checkpoint made with the same settings, or a UserError."""
    arrays = fileio.load_npz(path, required=("meta", "state"))
    try:
        meta, state = json.loads(str(arrays["meta"])), json.loads(str(arrays["state"]))
    except ValueError:
        raise UserError(f"{path}: corrupt checkpoint (unreadable meta/state); delete it or pass --restart") from None
    if state.get("settings") != settings:
        raise UserError(
            f"{path}: checkpoint was made with other settings ({state.get('settings')}); "
            f"pass --restart to start over or choose another --checkpoint"
        )
    params = {k[len("params/") :]: v for k, v in arrays.items() if k.startswith("params/")}
    opt_state = {k[len("opt/") :]: v for k, v in arrays.items() if k.startswith("opt/")}
    return params, opt_state, meta, state


def build_parser():
    p = cli.make_parser(
        "python -m minicnnrnn.pretrain",
        "Train the small built-in VGG-style CNN on the Tiny Scenes pretrain split "
        "(per-output sigmoid cross-entropy, Adam) and write a weights file + .json record.",
    )
    p.add_argument(
        "--task",
        choices=sorted(TASKS),
        default="attributes",
        help="what the CNN learns: 'attributes', a source task that names no target label (the paper's "
        "transfer setting, the shipped file), or 'labels', the 20 target labels themselves",
    )
    p.add_argument("--epochs", type=cli.positive_int, default=8, help="passes over the pretrain split")
    p.add_argument("--n-pretrain", type=cli.positive_int, default=12000, help="pretrain pictures")
    p.add_argument(
        "--n-heldout",
        type=cli.positive_int,
        default=2000,
        help="pretrain pictures held out (after the first --n-pretrain) for the reported mAP",
    )
    p.add_argument("--size", type=cli.positive_int, default=64, help="picture side in pixels (input_size of the CNN)")
    p.add_argument("--batch-size", type=cli.positive_int, default=16)
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (cosine-decayed to 0)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="L2 penalty on weight matrices")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout after fc6 and fc7 while training")
    p.add_argument("--seed", type=cli.non_negative_int, default=0, help="initialisation, shuffling, flips and dropout")
    p.add_argument("--out", default=DEFAULT_OUT, help="weights .npz to write (its .json record goes beside it)")
    p.add_argument(
        "--checkpoint",
        default=None,
        help="per-epoch checkpoint (default: runs/pretrain/<out name>.checkpoint.npz); "
        "an existing one made with the same settings is resumed, and removed once the run ends",
    )
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--cache-dir", default=None, help="dataset cache (default $MINICNNRNN_CACHE or ~/.cache/minicnnrnn)")
    return p


def _check_args(args):
    """The checks argparse's types do not make (counts and the seed use cli.positive_int / non_negative_int)."""
    if args.size < 16:
        raise UserError(f"--size: must be at least 16 (four 2x2 pools), got {args.size}")
    if args.batch_size > args.n_pretrain:
        raise UserError(f"--batch-size: {args.batch_size} is larger than --n-pretrain {args.n_pretrain}")
    if not 0.0 <= args.dropout < 1.0:
        raise UserError(f"--dropout: must be in [0, 1), got {args.dropout}")
    if not 0 < args.lr < math.inf:  # also refuses nan
        raise UserError(f"--lr: must be a positive number, got {args.lr}")
    if not 0 <= args.weight_decay < math.inf:
        raise UserError(f"--weight-decay: must be zero or a positive number, got {args.weight_decay}")
    if not args.out.endswith(".npz"):
        raise UserError(f"--out: weights file name must end in .npz, got {args.out!r}")


def _check_writable(path, option):
    """Fail before training, not after it, when ``path`` cannot be written (creates its folder)."""
    if os.path.isdir(path):
        raise UserError(f"{option} {path}: is a folder, expected a file name")
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tempfile.TemporaryFile(dir=os.path.dirname(os.path.abspath(path))).close()
    except OSError as exc:
        raise UserError(f"{option} {path}: cannot write there ({exc.strerror}: {exc.filename})") from None


def main(argv=None):
    args = cli.parse(build_parser(), argv, big_matrices=True)
    _check_args(args)
    settings = {k: getattr(args, k) for k in RUN_KEYS}
    checkpoint = args.checkpoint or os.path.join(
        "runs", "pretrain", os.path.splitext(os.path.basename(args.out))[0] + ".checkpoint.npz"
    )
    _check_writable(args.out, "--out")
    _check_writable(checkpoint, "--checkpoint")
    t0, load_at_start = time.perf_counter(), (os.getloadavg() if hasattr(os, "getloadavg") else ())
    # one stream of pretrain pictures: the first n_pretrain train the CNN, the next n_heldout score it
    all_images, all_targets = load_task(args.task, args.n_pretrain + args.n_heldout, args.size, args.cache_dir)
    images, targets = all_images[: args.n_pretrain], all_targets[: args.n_pretrain]
    held_images, held_targets = all_images[args.n_pretrain :], all_targets[args.n_pretrain :]
    data_seconds = time.perf_counter() - t0
    print(
        f"data: {len(images)} pretrain + {len(held_images)} held-out pictures of {args.size}x{args.size}, "
        f"task {args.task} ({targets.shape[1]} outputs) "
        f"({data_seconds:.1f} s, generated or from cache)"
    )

    rng = np.random.default_rng(args.seed)
    if os.path.exists(checkpoint) and not args.restart:
        host_params, opt_state, meta, state = load_checkpoint(checkpoint, settings)
        params = backend.params_to_device(host_params)
        opt = make_optimizer(params, args.weight_decay)
        try:
            opt.load_state_dict(opt_state)
        except (KeyError, ValueError) as exc:
            raise UserError(f"{checkpoint}: optimizer state does not fit ({exc}); pass --restart") from None
        rng.bit_generator.state = state["rng"]
        print(f"resuming {checkpoint} after epoch {state['epoch']}")
    else:
        meta = make_meta(images, args.size, args.task)
        params = backend.params_to_device(vgg.init_params(meta, rng))
        opt = make_optimizer(params, args.weight_decay)
        state = {"settings": settings, "epoch": 0, "step": 0, "train_seconds": 0.0, "history": []}
    n_params = sum(int(v.size) for v in params.values())
    print(f"network: config {meta['config']}, fc {meta['fc']}, {n_params} parameters, backend {backend.name()}")

    steps_per_epoch = args.n_pretrain // args.batch_size
    while state["epoch"] < args.epochs:
        t = time.perf_counter()
        mean_loss, state["step"] = train_epoch(
            params, meta, opt, images, targets, rng, args, state["step"], steps_per_epoch * args.epochs
        )
        backend.synchronize()
        seconds = time.perf_counter() - t
        held_map, _ = evaluate(params, meta, held_images, held_targets)
        state["epoch"] += 1
        state["train_seconds"] += seconds
        state["rng"] = rng.bit_generator.state
        state["history"].append(
            {
                "epoch": state["epoch"],
                "loss": round(mean_loss, 5),
                "heldout_mAP": round(held_map, 5),
                "seconds": round(seconds, 1),
            }
        )
        save_checkpoint(checkpoint, params, opt, meta, state)
        progress.say(
            f"epoch {state['epoch']}/{args.epochs}: loss {mean_loss:.4f}  held-out mAP {100 * held_map:.2f}%  "
            f"{seconds:.0f} s ({len(images) / seconds:.0f} pictures/s)"
        )

    held_map, aps = evaluate(params, meta, held_images, held_targets)
    vgg.save(args.out, params, meta)
    record = {
        "file": os.path.basename(args.out),
        "sha256": features.file_sha256(args.out),
        "command": "python -m minicnnrnn.pretrain " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        "settings": settings,
        "backend": backend.name(),
        "dataset": {
            "name": "tinyscenes",
            "generator_version": scenes.GENERATOR_VERSION,
            "pretrain_pictures": args.n_pretrain,
            "heldout_pictures": args.n_heldout,
            "task": args.task,
            "source_version": source_task.SOURCE_VERSION,
            "size": args.size,
        },
        "parameters": n_params,
        "heldout_mAP": round(held_map, 5),
        "heldout_AP": {name: round(float(a), 4) for name, a in zip(meta["label_names"], aps)},
        "train_seconds": round(state["train_seconds"], 1),
        "data_seconds": round(data_seconds, 1),
        "wall_seconds_this_invocation": round(time.perf_counter() - t0, 1),
        "load_average_at_start": [round(v, 2) for v in load_at_start],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores visible, numpy {np.__version__}",
        "history": state["history"],
    }
    fileio.save_json(features.sidecar_path(args.out), record)
    os.remove(checkpoint)  # the run is complete: running the command again trains afresh
    print(
        f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB) and {features.sidecar_path(args.out)}: "
        f"held-out mAP {100 * held_map:.2f}% ({args.task}), training {state['train_seconds']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    cli.run(main)
