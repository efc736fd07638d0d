"""Run a fixed CNN over image files and store one feature row per image.

The paper keeps the CNN fixed and uses its fc7 activations as the image
representation I of Eq. 4, so features are computed once and reused by every
training run:

    python -m minicnnrnn.extract --weights vgg16.npz --dataset voc2007 --root VOCdevkit --out feats/voc
    python -m minicnnrnn.extract --weights vgg16.npz --images photos/ --out feats/photos

Output folder (DESIGN.md, "Features folder"), written when the run completes:

* ``features.npy``: float32 (N, D), one row per readable image (a conv or pool
  output is flattened in (H, W, C) order);
* ``images.txt``: the absolute path of each row's image, same order;
* ``meta.json``: weights file and its SHA-256, layer, preprocessing, counts;
* ``skipped.txt``: images that could not be read, with the reason. Their rows are
  *removed* (features.npy and images.txt list only readable images); ``--strict``
  stops at the first unreadable image instead.

Memory stays bounded for any dataset size: images are decoded one batch ahead
by a few threads, and rows go straight into a memory-mapped ``.npy``
(``numpy.lib.format.open_memmap``). While running, the folder holds
``features.partial.npy`` and ``progress.json`` (rows done, written atomically
after every batch); rerunning the same command resumes after the last finished
batch. A different image list, weights file, layer or resize mode in the same
folder is refused unless ``--overwrite`` is given. A run in which no image at all
could be read stops with an error and leaves no partial files behind.

``--shard I/N`` extracts one contiguous slice of the image list (for spreading a
big dataset over machines, :mod:`minicnnrnn.scaleout.shards`); the
``minicnnrnn.scale_out`` command runs all shards on a Dask cluster and merges them.
"""

import concurrent.futures
import hashlib
import json
import os
import sys
import zipfile

import numpy
from tqdm import tqdm

from minicnnrnn import datasets
from minicnnrnn.cnn import backbones, preprocess
from minicnnrnn.core import backend, cli, fileio, limits
from minicnnrnn.core import progress as report
from minicnnrnn.core.errors import UserError
from minicnnrnn.scaleout import shards
from minicnnrnn.tinyscenes import features
from minicnnrnn.weights import keras_h5, torch_pickle

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
FORMAT = "minicnnrnn-features/1"
OUTPUT_FILES = (
    "features.npy",
    "images.txt",
    "meta.json",
    "skipped.txt",
    "progress.json",
    "features.partial.npy",
    ".features.npy.tmp",
)


# ---------------------------------------------------------------- which images


def images_from_args(images):
    """--images: files as given, folders expanded to their image files (sorted). Absolute paths."""
    paths = []
    for item in images:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, f) for f in os.listdir(item) if f.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                raise UserError(f"{item}: folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
            paths += found
        else:
            paths.append(item)
    return [os.path.abspath(p) for p in paths]


def images_from_list(list_file):
    """--image-list: one path per line (blank lines and '#' comments ignored); relative
    paths are taken relative to the list file's folder."""
    try:
        with open(list_file, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{list_file}: cannot read image list ({type(exc).__name__})") from None
    folder = os.path.dirname(os.path.abspath(list_file))
    return [os.path.normpath(os.path.join(folder, p)) for p in lines if p and not p.startswith("#")]


def images_from_dataset(name, root):
    """--dataset/--root: (every image of every split, train first, each once; {split: image count})."""

    data = datasets.load(name, root)
    report.say(data.summary())
    paths = [p for split in data.splits.values() for p in split.paths]
    return list(dict.fromkeys(paths)), {name: len(split) for name, split in data.splits.items()}


# ---------------------------------------------------------------- the run's identity


def _load_weights(path):
    """(params, meta, description, sha256) of --weights, or of the built-in CNN without it."""

    if path is None:
        params, meta = features.load_builtin_cnn()
        return params, meta, "builtin", features.file_sha256(features.WEIGHTS_PATH)
    if os.path.isfile(path) and (torch_pickle.detect(path) or keras_h5.detect(path)):
        raise UserError(
            f"--weights {path}: a PyTorch/Keras weights file; convert it first with "
            f"`python -m minicnnrnn.convert {path} weights.npz`"
        )
    if os.path.isfile(path) and not zipfile.is_zipfile(path):  # an .npz is a zip archive
        raise UserError(f"--weights {path}: not a .npz weights file (python -m minicnnrnn.convert writes one)")
    params, meta = backbones.load(path)
    limits.check_finite_params(params, f"--weights {path}")
    preprocess.check_constants(meta["preprocess"], f"--weights {path}")
    return params, meta, os.path.abspath(path), features.file_sha256(path)


def feature_dim(meta, layer):
    """Length of one image's feature row for ``layer`` (a conv/pool map flattened)."""
    rows = {name: shape for name, shape, _, _ in backbones.layer_table(meta)}
    if layer not in rows:
        raise UserError(f"--layer: {layer!r} is not a layer of this network; choose from {', '.join(rows)}")
    return int(numpy.prod(rows[layer]))


IDENTITY_NAMES = {
    "format": "file format",
    "images_sha256": "image list",
    "weights_sha256": "weights file",
    "layer": "layer",
    "resize": "resize mode",
}


def _check_same_run(record_path, identity, out):
    """Read a previous run's record (progress.json or meta.json) and raise unless it
    describes the same extraction. Returns the record."""
    try:
        with open(record_path, encoding="utf-8") as f:
            record = json.load(f)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise UserError(f"{record_path}: unreadable ({type(exc).__name__}); pass --overwrite to start again") from None
    for key, value in identity.items():
        if record.get(key) != value:
            raise UserError(
                f"{out}: holds an extraction with a different {IDENTITY_NAMES[key]} "
                f"({record.get(key)!r:.60} vs {value!r:.60}); pass --overwrite to replace it "
                "or choose another --out"
            )
    return record


# ---------------------------------------------------------------- the run


def _read(path, meta, resize):
    """(image array, None) or (None, one-line reason)."""
    try:
        return preprocess.load_image(path, meta, resize), None
    except UserError as exc:
        return None, str(exc)


def _batches(paths, start, batch_size, meta, resize, workers):
    """Yield (first index, [(array or None, reason), ...]) per batch, decoding the
    next batch in background threads while the caller computes this one."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        pending = None
        for first in range(start, len(paths), batch_size):
            futures = [pool.submit(_read, p, meta, resize) for p in paths[first : first + batch_size]]
            if pending is not None:
                yield pending[0], [f.result() for f in pending[1]]
            pending = (first, futures)
        if pending is not None:
            yield pending[0], [f.result() for f in pending[1]]


def _new_memmap(path, shape):
    """A new float32 .npy of ``shape`` opened as a memory map, its disk space reserved first
    (fileio.reserve: a full disk is a one-line error, not a SIGBUS while writing rows)."""
    fileio.check_target(path)
    numpy.lib.format.open_memmap(path, mode="w+", dtype=numpy.float32, shape=shape).flush()
    fileio.reserve(path)
    return numpy.lib.format.open_memmap(path, mode="r+")


def _start_or_resume(out, identity, n, dim, overwrite):
    """Open features.partial.npy and the progress record (fresh or resumed)."""
    partial, progress_path = os.path.join(out, "features.partial.npy"), os.path.join(out, "progress.json")
    if overwrite:
        for name in OUTPUT_FILES:
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
    if os.path.exists(progress_path) and os.path.exists(partial):
        progress = _check_same_run(progress_path, identity, out)
        try:
            rows = numpy.lib.format.open_memmap(partial, mode="r+")
        except Exception as exc:  # a damaged header: ValueError, SyntaxError, tokenize.TokenError, ...
            raise UserError(f"{partial}: unreadable ({type(exc).__name__}); pass --overwrite to start again") from None
        if rows.shape != (n, dim) or rows.dtype != numpy.float32:
            raise UserError(
                f"{partial}: shape {rows.shape} does not match this run's ({n}, {dim}); pass --overwrite to start again"
            )
        return rows, progress
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot create the output folder ({exc.strerror}: {exc.filename})") from None
    rows = _new_memmap(partial, (n, dim))
    progress = dict(identity, done=0, rows=0, skipped=[])
    fileio.save_json(progress_path, progress)
    return rows, progress


def _finish(out, rows, progress, paths, meta_record):
    """Write features.npy (only the filled rows), images.txt, skipped.txt, meta.json; drop the partial files."""
    kept = progress["rows"]
    partial = os.path.join(out, "features.partial.npy")
    skipped = {index for index, _, _ in progress["skipped"]}
    kept_paths = [p for i, p in enumerate(paths) if i not in skipped]
    assert len(kept_paths) == kept, "progress record out of step with the image list"
    rows.flush()
    if kept == len(paths):
        del rows
        os.replace(partial, os.path.join(out, "features.npy"))
    else:  # copy the filled rows into a file of the right length, a block at a time
        tmp = os.path.join(out, ".features.npy.tmp")
        final = _new_memmap(tmp, (kept, rows.shape[1]))
        for first in range(0, kept, 4096):
            stop = min(first + 4096, kept)
            final[first:stop] = rows[first:stop]
        final.flush()
        del final, rows
        os.replace(tmp, os.path.join(out, "features.npy"))
        os.remove(partial)
    fileio.save_text(os.path.join(out, "images.txt"), "".join(p + "\n" for p in kept_paths))
    reasons = "".join(f"{p}\t{why.split(': ', 1)[-1]}\n" for _, p, why in progress["skipped"])
    fileio.save_text(os.path.join(out, "skipped.txt"), reasons)
    fileio.save_json(os.path.join(out, "meta.json"), dict(meta_record, count=kept, skipped=len(skipped)))
    os.remove(os.path.join(out, "progress.json"))


def extract(
    paths,
    out,
    weights=None,
    layer=None,
    batch_size=16,
    resize=None,
    strict=False,
    overwrite=False,
    workers=4,
    source=None,
):
    """Extract ``layer`` features of the images ``paths`` into the folder ``out``.

    Returns the meta.json record. Resumes an unfinished run in ``out`` (see the
    module docstring); computes on the selected backend.
    """
    if not paths:
        raise UserError("no images to extract (empty --images / --image-list / dataset)")
    if batch_size < 1:
        raise UserError(f"--batch-size: must be at least 1, got {batch_size}")
    params, meta, weights_name, weights_sha = _load_weights(weights)
    layer = layer or backbones.default_layer(meta)
    resize = resize or meta["preprocess"]["resize"]
    dim = feature_dim(meta, layer)
    identity = {
        "format": FORMAT,
        "images_sha256": hashlib.sha256("\n".join(paths).encode()).hexdigest(),
        "weights_sha256": weights_sha,
        "layer": layer,
        "resize": resize,
    }
    record = dict(
        identity,
        weights=weights_name,
        dim=dim,
        images=len(paths),
        input_size=meta["input_size"],
        preprocess=dict(meta["preprocess"], resize=resize),
        cnn=meta.get("source"),
        source=source or {},
    )
    meta_path = os.path.join(out, "meta.json")
    if os.path.exists(meta_path) and not overwrite:
        _check_same_run(meta_path, identity, out)
        report.say(f"{out}: already complete ({len(paths)} images); nothing to do")
        return record
    rows, progress = _start_or_resume(out, identity, len(paths), dim, overwrite)
    device_params = backend.params_to_device(params)
    kernel_cache = {}  # Winograd-transformed kernels, computed on the first batch and reused
    progress_path = os.path.join(out, "progress.json")
    bar = report.bar(len(paths), "extract", "img", initial=progress["done"], plain_lines=True)
    try:
        for first, results in _batches(paths, progress["done"], batch_size, meta, resize, workers):
            good = []
            for index, (image, why) in enumerate(results, start=first):
                if image is not None:
                    good.append(image)
                elif strict:
                    raise UserError(f"{why} (--strict; rerun without it to skip unreadable images)")
                else:
                    tqdm.write(f"warning: skipped {why}", file=sys.stderr)
                    progress["skipped"].append([index, paths[index], why])
            if good:
                x = backend.to_device(numpy.stack(good))
                outs, _ = backbones.compute(device_params, meta, x, outputs=(layer,), kernel_cache=kernel_cache)
                h = backend.to_host(outs[layer]).reshape(len(good), -1)
                rows[progress["rows"] : progress["rows"] + len(good)] = h
                rows.flush()
            progress["done"], progress["rows"] = first + len(results), progress["rows"] + len(good)
            fileio.save_json(progress_path, progress)  # only after the rows are on disk
            bar.update(len(results))
    finally:
        bar.close()
    if progress["rows"] == 0:
        # Nothing to keep: drop the partial files, so that a rerun after fixing the images starts afresh.
        del rows
        for name in ("features.partial.npy", "progress.json"):
            os.remove(os.path.join(out, name))
        raise UserError(f"none of the {len(paths)} images could be read (first: {progress['skipped'][0][2]})")
    _finish(out, rows, progress, paths, record)
    report.say(
        f"wrote {out}/features.npy ({progress['rows']} x {dim} float32, layer {layer}); "
        f"{len(progress['skipped'])} unreadable image(s) skipped" + (", see skipped.txt" if progress["skipped"] else "")
    )
    return dict(record, count=progress["rows"], skipped=len(progress["skipped"]))


def main(argv=None):
    parser = cli.make_parser(
        "python -m minicnnrnn.extract", "Compute CNN features (one row per image) into a features folder."
    )
    parser.add_argument(
        "--weights", help="converted weights .npz (python -m minicnnrnn.convert); default: the built-in small CNN"
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--images", nargs="+", metavar="PATH", help="image files or folders of images")
    group.add_argument("--image-list", metavar="FILE", help="text file, one image path per line")
    group.add_argument("--dataset", help="voc2007, coco2014, nuswide81 or nuswide1k (needs --root): all splits")
    parser.add_argument("--root", help="dataset folder for --dataset")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--layer",
        help="layer to store: fc7, fc6, conv5_3, pool5, logits, ... (VGG; default fc7); "
        "pool, logits, head, block15, ... (EfficientNet; default pool)",
    )
    parser.add_argument("--batch-size", type=cli.positive_int, default=16, help="images per forward pass")
    parser.add_argument(
        "--resize",
        choices=preprocess.RESIZE_MODES,
        default=None,
        help="crop (shorter side, centre crop) or warp; default: what the weights file records",
    )
    parser.add_argument(
        "--workers", type=cli.positive_int, default=min(4, os.cpu_count() or 1), help="threads decoding images"
    )
    parser.add_argument("--strict", action="store_true", help="stop at the first unreadable image")
    parser.add_argument("--overwrite", action="store_true", help="discard earlier results in --out")
    parser.add_argument(
        "--shard",
        type=shards.parse_shard,
        metavar="I/N",
        help="extract only shard I (0 <= I < N) of the image list, a contiguous slice; "
        "merge the N folders with `python -m minicnnrnn.scale_out --merge` (docs/scale_out.md)",
    )
    args = cli.parse(parser, argv, big_matrices=True)
    if args.dataset:
        if not args.root:
            raise UserError("--root: required with --dataset")
        paths, splits = images_from_dataset(args.dataset, args.root)
        source = {"dataset": args.dataset, "root": os.path.abspath(args.root), "splits": splits}
    elif args.image_list:
        paths, source = images_from_list(args.image_list), {"image_list": os.path.abspath(args.image_list)}
    else:
        paths, source = images_from_args(args.images), {"images": "command line"}
    if args.shard:
        paths, shard = shards.select(paths, *args.shard)
        source = dict(source, shard=shard)
    with fileio.folder_lock(args.out):  # one extraction per folder at a time (a killed run's lock is stale)
        extract(
            paths,
            args.out,
            args.weights,
            args.layer,
            args.batch_size,
            args.resize,
            args.strict,
            args.overwrite,
            args.workers,
            source,
        )
    return 0


if __name__ == "__main__":
    cli.run(main)
