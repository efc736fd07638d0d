"""The extraction engine: a CNN over a list of image files into a features folder.

:func:`extract` is what ``python -m minicnnrnn.extract`` (and each task of
``scale_out``) runs. The folder (docs/DESIGN.md, "Features folder"), written when the run
completes:

* ``features.npy``: float32 (N, D), one row per readable image (a conv or pool
  output is flattened in (H, W, C) order);
* ``images.txt``: the absolute path of each row's image, same order;
* ``meta.json``: weights file and its SHA-256, layer, preprocessing, counts;
* ``skipped.txt``: images that could not be read, with the reason. Their rows are
  *removed* (features.npy and images.txt list only readable images); ``strict``
  stops at the first unreadable image instead.

Memory stays bounded for any dataset size: images are decoded one batch ahead
by a few threads (:func:`images.decoded_batches`), and rows
(:func:`minicnnrnn.cnn.backbones.feature_rows`) go straight into a memory-mapped ``.npy``
(``numpy.lib.format.open_memmap``). While running, the folder holds
``features.partial.npy`` and ``progress.json`` (rows done, written atomically
after every batch); rerunning the same command resumes after the last finished
batch. A different image list, weights file, layer or resize mode in the same
folder is refused unless ``overwrite`` is given. A run in which no image at all
could be read stops with an error and leaves no partial files behind.
"""

import json
import os
import sys

import numpy
from tqdm import tqdm

from minicnnrnn.cnn import backbones
from minicnnrnn.core import backend, fileio
from minicnnrnn.core import progress as report
from minicnnrnn.core.errors import UserError
from minicnnrnn.features import images, network, shards

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
    params, meta = network.load(weights)
    weights_name, weights_sha = network.fingerprint(weights)
    layer = layer or backbones.default_layer(meta)
    resize = resize or meta["preprocess"]["resize"]
    dim = network.feature_dim(meta, layer)
    identity = {
        "format": FORMAT,
        "images_sha256": shards.list_sha256(paths),
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
        for first, results in images.decoded_batches(paths, meta, batch_size, resize, workers, progress["done"]):
            good = []
            for index, (image, why) in enumerate(results, start=first):
                if image is not None:
                    good.append(image)
                elif strict:
                    raise UserError(f"{why} {images.STRICT_HINT}")
                else:
                    tqdm.write(f"warning: skipped {why}", file=sys.stderr)
                    progress["skipped"].append([index, paths[index], why])
            if good:
                h = backbones.feature_rows(device_params, meta, numpy.stack(good), layer, kernel_cache)
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
