"""Label images with a trained model: ``python -m minicnnrnn.predict``.

    python -m minicnnrnn.predict --checkpoint runs/cnn-rnn photo1.jpg photo2.png
    python -m minicnnrnn.predict --checkpoint CKPT --features feats/features.npy --image-list feats/images.txt
    python -m minicnnrnn.predict --checkpoint CKPT --features feats/          # an `extract` folder

``--checkpoint`` takes a run folder, whose best.npz (the epoch ``train`` chose on
validation and scored) it uses (``--last-epoch``: its checkpoint.npz), or a checkpoint
file as given; one line on stderr says which file and epoch (not with ``--quiet``).

For image files it runs the CNN the checkpoint was trained with (``config.cnn``: the
built-in Tiny Scenes CNN or a converted VGG weights file, and its layer, e.g. fc7) on
the images (``preprocess.load_image`` then :func:`minicnnrnn.cnn.backbones.feature_rows`), normalises the features as
training did (``config.feature_norm``, :func:`minicnnrnn.training.data.normalise`), then
decodes each image's most probable prediction path by beam search (§3.3,
:mod:`minicnnrnn.paths.beam_search`), or decides its labels from P(label in path) when the
checkpoint (chosen on validation by ``train``) or ``--decode`` says marginal or marginal-f1,
as the model's row of :data:`minicnnrnn.training.kinds.KINDS` says.
Each image gets one line: its labels in path order with their step probabilities, the
probability of END, and the probability of the whole path (Eq. 6). ``--json`` prints
the same (and every label's confidence score) as JSON instead.

Checkpoints of the ``bce`` and ``softmax`` baselines have no path: they print their
``--top-k`` most probable labels. ``--out FILE.json`` or ``FILE.csv`` writes the
predictions to a file (atomically) instead.

An image that cannot be read is skipped with a warning line, like ``extract`` does; the
exit status is non-zero only when none could be read (``--strict``: stop at the first).
A model knows only the inputs it was trained on (its checkpoint's ``domain``): the
built-in model knows 64x64 Tiny Scenes drawings, so an image that is not one (a real
photo) gets one warning line on stderr and a ``"warning"`` field in the JSON
(docs/inference.md says what to use for real photos).
"""

import csv
import io
import json
import os
import sys

import numpy as np

from minicnnrnn.cnn import backbones, preprocess
from minicnnrnn.core import backend, cli, fileio, progress
from minicnnrnn.core.errors import UserError
from minicnnrnn.features import images, network
from minicnnrnn.paths import grammar
from minicnnrnn.training import checkpoint, config, kinds, selection
from minicnnrnn.training import data as train_data

CHUNK = 4096  # feature rows moved to the device and decoded at once


def make_parser():
    p = cli.make_parser(
        "python -m minicnnrnn.predict", "Predict the labels of images (or of CNN features) with a trained checkpoint."
    )
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files to label")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="a run folder written by `python -m minicnnrnn.train` (its best.npz, the epoch train scored) "
        "or a checkpoint file (best.npz, checkpoint.npz)",
    )
    p.add_argument("--last-epoch", action="store_true", help="with a run folder: its last epoch (checkpoint.npz)")
    p.add_argument("--features", help="predict from a (N, D) features .npy (or an `extract` folder) instead of images")
    p.add_argument("--image-list", help="with --features: a text file naming each row's image, one per line")
    # The search settings a checkpoint's RunConfig records, with the checkpoint's value as
    # default; plain int, so that a bad value is search_options' error naming the flag.
    config.add_options(
        p,
        ("beam", "min_labels", "decode"),
        beam=dict(type=int, default=None, help="beam size B (1 = greedy); default: the checkpoint's, or 3"),
        decode=dict(
            default=None,
            choices=config.DECODINGS[1:],
            help="path models: path (the most probable path, §3.3), marginal (the k labels of highest "
            "P(label in path)) or marginal-f1 (the expected-F1 set); default: the checkpoint's, which "
            "train chose on validation (docs/inference.md)",
        ),
        min_labels=dict(
            type=int,
            default=None,
            help="predict at least this many labels (footnote 1); default: the checkpoint's, or 0",
        ),
    )
    p.add_argument("--max-labels", type=int, default=None, help="predict at most this many labels; default K")
    p.add_argument(
        "--top-k",
        type=int,
        default=None,
        help="bce/softmax checkpoints: labels to print; default: the checkpoint's k, or 3",
    )
    p.add_argument("--batch-size", type=int, default=16, help="images per CNN batch")
    p.add_argument("--json", action="store_true", help="print JSON instead of one line per image")
    p.add_argument("--out", help="write the predictions to FILE.json or FILE.csv (atomically) instead of printing them")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable image instead of skipping it")
    return p


# ---------------------------------------------------------------------------
# Inputs: CNN features of image files, or a precomputed features matrix
# ---------------------------------------------------------------------------


def load_cnn(cnn, ckpt_path):
    """(params on the backend, meta, layer) of the CNN named in a checkpoint's ``config.cnn``."""
    weights = cnn.get("weights")
    if weights is None:
        raise UserError(
            f"{ckpt_path}: this model was trained on precomputed features "
            f"({cnn.get('features', 'unknown file')}), so it cannot read image files; "
            "pass --features with features made the same way"
        )
    params, meta = network.load(None if weights == "builtin" else weights, where=weights)
    return backend.params_to_device(params, np.float32), meta, cnn.get("layer") or backbones.default_layer(meta)


def image_features(paths, cnn, ckpt_path, batch_size, strict=False):
    """Image files -> ((n, D) float32 host features, the n readable paths, their (w, h)
    sizes); the CNN runs batch by batch on the backend (:func:`backbones.feature_rows`),
    unreadable images are skipped with a warning line on stderr (``strict``: the first
    stops the command) and none readable is a UserError."""
    if batch_size < 1:
        raise UserError(f"--batch-size: must be positive, got {batch_size}")
    params, meta, layer = load_cnn(cnn, ckpt_path)
    rows, kept = [], []
    for first, results in images.decoded_batches(paths, meta, batch_size):
        good = []
        for path, (image, why) in zip(paths[first:], results):
            if image is None and strict:
                raise UserError(f"{why} {images.STRICT_HINT}")
            if image is None:
                print(f"warning: skipped {why}", file=sys.stderr)
                continue
            good.append(image)
            kept.append(path)
        if good:
            rows.append(backbones.feature_rows(params, meta, np.stack(good), layer))
    if not kept:
        raise UserError(f"none of the {len(paths)} image(s) could be read (see the warnings above)")
    return np.concatenate(rows), kept, [preprocess.header_size(path) for path in kept]


def matrix_features(path, list_path):
    """(features (n, D) host, names) from a .npy (or an `extract` folder) and an optional list.
    The matrix stays memory-mapped: rows are read when a chunk is decoded."""
    if os.path.isdir(path):
        folder = path
        path = os.path.join(folder, "features.npy")
        if list_path is None and os.path.exists(os.path.join(folder, "images.txt")):
            list_path = os.path.join(folder, "images.txt")
    fileio.require_regular(path, "features file")  # np.load maps it by name: no FIFO, no device
    try:
        feats = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # a damaged header raises ValueError, SyntaxError, tokenize.TokenError, ...
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise UserError(f"{path}: not a readable .npy file ({type(exc).__name__}: {first})") from None
    if not isinstance(feats, np.ndarray):  # np.load gives an NpzFile for a .npz archive
        names = ", ".join(feats.files[:4])
        feats.close()
        raise UserError(
            f"{path}: a .npz archive (arrays {names}); --features takes one (N, D) .npy matrix, "
            "e.g. the features.npy of an `extract` folder"
        )
    if feats.ndim != 2 or feats.dtype.kind not in "iuf":
        raise UserError(
            f"{path}: expected a real-valued (N, D) matrix, got shape {feats.shape} and dtype {feats.dtype}"
        )
    if feats.shape[1] < 1:
        raise UserError(f"{path}: features have D = 0 columns (nothing describes the images)")
    if list_path is None:
        names = [f"{os.path.basename(path)}[{i}]" for i in range(len(feats))]
    else:
        try:
            with fileio.open_regular(list_path, "image list", text=True) as f:
                names = [line.rstrip("\n") for line in f if line.strip()]
        except OSError as exc:
            raise UserError(f"{list_path}: cannot read the image list ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise UserError(f"{list_path}: the image list is not UTF-8 text") from None
        if len(names) != len(feats):
            raise UserError(f"{list_path}: {len(names)} names for the {len(feats)} rows of {path}")
    return feats, names


# ---------------------------------------------------------------------------
# Decoding and printing
# ---------------------------------------------------------------------------


def chunks(features, where, norm):
    """Yield (n, D) float32 blocks of a host (possibly memory-mapped) matrix on the backend,
    normalised exactly as training normalised its features (``norm``: the checkpoint's
    ``config.feature_norm``, see :func:`train_data.normalise`)."""
    for start in range(0, len(features), CHUNK):
        block = np.asarray(features[start : start + CHUNK], dtype=np.float32)
        if not np.isfinite(block).all():
            raise UserError(f"{where}: features hold NaN or inf values")
        yield backend.to_device(train_data.normalise(block, norm))


def image_predictions(decoded, names):
    """One dict per image of a :class:`kinds.Decoded` block (host values): its labels in
    order with their probabilities, for path models the END and whole-path probabilities,
    and every label's confidence score."""
    out = []
    for i in range(len(decoded.labels)):
        n = int(decoded.lengths[i])
        pred = {
            "labels": [names[j] for j in decoded.labels[i, :n]],
            "probabilities": decoded.probabilities[i, :n].tolist(),
        }
        if decoded.end_probability is not None:
            pred["end_probability"] = float(decoded.end_probability[i])
            pred["log_probability"] = float(decoded.log_probability[i])
        pred["scores"] = dict(zip(names, decoded.ranking[i].tolist()))
        out.append(pred)
    return out


def format_line(name, pred):
    """One human-readable line: labels in path order with their step probabilities."""
    labels = ", ".join(f"{label} {p:.3f}" for label, p in zip(pred["labels"], pred["probabilities"])) or "(no labels)"
    if "end_probability" not in pred:
        return f"{name}: {labels}"
    return f"{name}: {labels} | END {pred['end_probability']:.3f} | log P {pred['log_probability']:.3f}"


def search_options(args, cfg):
    """The :class:`kinds.DecodeOptions` from the arguments, else the checkpoint's, checked
    early (before the slow CNN runs). Path models search paths of ``--min-labels`` to
    ``--max-labels`` labels with beam width ``--beam``, decided by ``--decode`` (marginal
    decisions: at most ``--max-labels``, default the run's k); classifiers print ``--top-k`` labels."""
    beam = args.beam if args.beam is not None else cfg.beam
    min_labels = args.min_labels if args.min_labels is not None else cfg.min_labels
    if kinds.KINDS[cfg.model].paths:
        if args.min_labels is None and args.max_labels is not None and 0 < args.max_labels < min_labels:
            # the shortest path comes from the checkpoint: say so, rather than blame a flag not given
            raise UserError(
                f"--max-labels: {args.max_labels} is below the checkpoint's min_labels = {min_labels}; "
                "pass --min-labels as well"
            )
        grammar.check_options(cfg.K, beam, args.max_labels, min_labels)
        decode = args.decode or cfg.decode
        # the marginal decisions need a label budget: --max-labels, else the run's k ("auto" left
        # in a checkpoint, by a run stopped before its decoding was chosen, decodes as the path)
        marginal = decode in ("marginal", "marginal-f1")
        most = args.max_labels if args.max_labels is not None or not marginal else cfg.k
        return kinds.DecodeOptions(
            beam, most, min_labels, decode=decode, samples=cfg.presence_samples, path_limit=cfg.max_path
        )
    top_k = args.top_k if args.top_k is not None else cfg.k
    if not 1 <= top_k <= cfg.K:
        raise UserError(f"--top-k: must be between 1 and K = {cfg.K}, got {top_k}")
    return kinds.DecodeOptions(beam, top_k, min_labels)


def inputs(args, cfg):
    """(features (n, D) host, names, sizes) from --features or from the image files;
    sizes: each image's (w, h), None for feature rows."""
    if args.features:
        if args.images:
            raise UserError("IMAGE: give either image files or --features, not both")
        I, names = matrix_features(args.features, args.image_list)
        sizes = [None] * len(names)
    elif args.image_list:
        raise UserError("--image-list: only used with --features")
    elif not args.images:
        raise UserError("IMAGE: no image files given (or use --features FILE.npy)")
    else:
        I, names, sizes = image_features(args.images, cfg.cnn or {}, args.checkpoint, args.batch_size, args.strict)
    if I.shape[1] != cfg.D:
        raise UserError(
            f"{args.features or args.checkpoint}: features have D = {I.shape[1]} but the model "
            f"expects D = {cfg.D} ({(cfg.cnn or {}).get('layer') or 'layer'} of its CNN)"
        )
    return I, list(names), sizes


def domain_warnings(domain, sizes):
    """One warning text per input outside the model's domain (None inside it). A model
    whose domain fixes an image size (the built-in one: 64x64 Tiny Scenes drawings) warns
    about any image of another size: a real photo gives it confident nonsense."""
    expected = tuple(domain.get("image_size") or ()) or None
    if expected is None:
        return [None] * len(sizes)
    text = (
        f"the model was trained on {domain['name']} ({expected[0]}x{expected[1]}), not on "
        "images like this one; its labels mean little here (for real photos, train on "
        "ImageNet CNN features: docs/inference.md)"
    )
    return [text if size is not None and tuple(size) != expected else None for size in sizes]


def write_out(path, records):
    """--out: the predictions as JSON (the --json list) or CSV (one row per image), atomically."""
    if path.lower().endswith(".json"):
        fileio.save_json(path, records)
        return
    if not path.lower().endswith(".csv"):
        raise UserError(f"--out {path}: give a file name ending in .json or .csv")
    text = io.StringIO()
    fields = ["image", "labels", "probabilities", "end_probability", "log_probability", "warning"]
    writer = csv.DictWriter(text, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for record in records:
        row = dict(record, labels=";".join(record["labels"]))
        row["probabilities"] = ";".join(f"{p:.6g}" for p in record["probabilities"])
        writer.writerow(row)
    fileio.save_text(path, text.getvalue())


def main(argv=None):
    args = cli.parse(make_parser(), argv)
    if args.out:
        fileio.check_target(args.out)  # before the slow part: a folder or device is refused now
        if not args.out.lower().endswith((".json", ".csv")):
            raise UserError(f"--out {args.out}: give a file name ending in .json or .csv")
    args.checkpoint = selection.scored_checkpoint(args.checkpoint, args.last_epoch)
    state = checkpoint.load(args.checkpoint)  # the whole schema check: one line for any damage
    cfg = state["config"]
    options = search_options(args, cfg)
    I, names, sizes = inputs(args, cfg)
    if not progress.is_quiet():  # on stderr: stdout stays the predictions (--json parses); after
        # the inputs are read, so that bad input is still a one-line error
        print(selection.describe_checkpoint(args.checkpoint, state), file=sys.stderr, flush=True)
    params = backend.params_to_device(state["params"], np.float32)

    decode = kinds.KINDS[cfg.model].decode
    preds = []
    for block in chunks(I, args.features or "CNN", cfg.feature_norm):
        preds += image_predictions(decode(cfg, params, block, options), state["label_names"])

    warnings = domain_warnings(state["domain"], sizes)
    outside = [name for name, w in zip(names, warnings) if w]
    if outside:
        first = next(w for w in warnings if w)
        print(f"warning: {len(outside)} of {len(names)} image(s) (first: {outside[0]}): {first}", file=sys.stderr)
    records = [
        {"image": name, **pred, **({"warning": w} if w else {})} for name, pred, w in zip(names, preds, warnings)
    ]
    if args.out:
        write_out(args.out, records)
        print(f"wrote {args.out} ({len(records)} image(s))")
    elif args.json:
        print(json.dumps(records, indent=1))
    else:
        for name, pred in zip(names, preds):
            print(format_line(name, pred))
    return 0


if __name__ == "__main__":
    cli.run(main)
