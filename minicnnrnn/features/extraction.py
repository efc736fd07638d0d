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
``features.partial.npy``, ``progress.json`` (counts of images done, rows kept and
images skipped, written atomically at most every second and after the last batch) and ``skipped.partial.txt``
(the unreadable images, appended batch by batch, so the bookkeeping stays linear in
the list's length); rerunning the same command resumes after the last finished
batch. An image path with a newline or another control character is refused (it
cannot be one line of ``images.txt``). A different image list, weights file, layer or resize mode in the same
folder is refused unless ``overwrite`` is given. A run in which no image at all
could be read stops with an error and leaves no partial files behind.
"""

import json
import os
import re
import sys
import time

import numpy
from tqdm import tqdm

from minicnnrnn.cnn import backbones
from minicnnrnn.core import backend, fileio, limits
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
    "skipped.partial.txt",
)

# progress.json is saved (and the rows flushed) at most this often, and after the last batch:
# a run killed in between redoes at most this many seconds of work when resumed.
SAVE_SECONDS = 1.0
SKIPPED_PARTIAL = "skipped.partial.txt"  # "index<TAB>path<TAB>reason" lines, appended batch by batch
# A newline or tab in a path would break the one-path-per-line files (images.txt, skipped.txt).
CONTROL = re.compile(r"[\x00-\x1f\x7f]")

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
        with fileio.open_regular(record_path, "progress record", text=True) as f:  # a FIFO is refused, not waited on
            record = json.load(f)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
        raise UserError(f"{record_path}: unreadable ({type(exc).__name__}); pass --overwrite to start again") from None
    for key, value in identity.items():
        if record.get(key) != value:
            raise UserError(
                f"{out}: holds an extraction with a different {IDENTITY_NAMES[key]} "
                f"({record.get(key)!r:.60} vs {value!r:.60}); pass --overwrite to replace it "
                "or choose another --out"
            )
    return record


def check_paths(paths):
    """UserError for the first image path that cannot be one line of images.txt: one with a
    control character (a newline would make two lines of one row) or one that is not
    text (a file name of bytes that are not UTF-8)."""
    for path in paths:
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(f"{path!r}: an image path that is not UTF-8 text; rename the file") from None
        if CONTROL.search(path):
            raise UserError(
                f"{path!r}: an image path with a control character (newline, tab, ...) cannot be "
                "one line of images.txt; rename the file"
            )


# ---------------------------------------------------------------- the run


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
        _resume_skipped(out, progress, n)
        return rows, progress
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot create the output folder ({exc.strerror}: {exc.filename})") from None
    rows = fileio.new_memmap(partial, (n, dim))
    progress = dict(identity, done=0, rows=0, skipped=0, skipped_bytes=0)
    fileio.save_text(os.path.join(out, SKIPPED_PARTIAL), "")
    fileio.save_json(progress_path, progress)
    return rows, progress


def _resume_skipped(out, progress, n):
    """Check a resumed run's counts and cut skipped.partial.txt back to what progress.json
    counted: a run killed after appending a batch's lines but before saving progress.json
    redoes that batch, so its lines must not stay twice."""
    counts = [progress.get(key) for key in ("done", "rows", "skipped", "skipped_bytes")]
    path = os.path.join(out, SKIPPED_PARTIAL)
    size = os.path.getsize(path) if os.path.isfile(path) else -1
    valid = all(type(c) is int and c >= 0 for c in counts)  # bool is not a count
    if not valid or counts[1] + counts[2] != counts[0] or counts[0] > n or size < counts[3]:
        raise UserError(f"{out}: progress.json or {SKIPPED_PARTIAL} is damaged; pass --overwrite to start again")
    os.truncate(path, counts[3])


def _skipped_lines(out):
    """The lines of skipped.partial.txt: (image index, path, reason), in the order skipped."""
    with fileio.open_regular(os.path.join(out, SKIPPED_PARTIAL), text=True) as f:
        for line in f:
            try:
                index, path, why = line.rstrip("\n").split("\t", 2)
                index = int(index)
            except ValueError:
                raise UserError(f"{out}: {SKIPPED_PARTIAL} is damaged; pass --overwrite to start again") from None
            yield index, path, why


def _append_skipped(out, progress, lines):
    """Append a batch's skipped images to skipped.partial.txt, on disk (fsync) before
    progress.json counts them: the bookkeeping of a batch costs that batch's lines only."""
    with open(os.path.join(out, SKIPPED_PARTIAL), "ab") as f:
        f.write("".join(lines).encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())
        progress["skipped"], progress["skipped_bytes"] = progress["skipped"] + len(lines), f.tell()


def _save_progress(out, rows, progress, pending):
    """Make the work since the last save durable, in this order: the rows (flushed), the
    skipped images' lines (appended, fsynced), then progress.json, which counts only what is
    on disk. Called at most every SAVE_SECONDS: a batch of missing images takes microseconds,
    and three fsyncs per batch made 100,000 missing paths a matter of minutes."""
    rows.flush()
    if pending:
        _append_skipped(out, progress, pending)
    fileio.save_json(os.path.join(out, "progress.json"), progress)


def _finish(out, rows, progress, paths, meta_record):
    """Write features.npy (only the filled rows), images.txt, skipped.txt, meta.json; drop the partial files."""
    kept = progress["rows"]
    partial = os.path.join(out, "features.partial.npy")
    skipped = {index for index, _, _ in _skipped_lines(out)}
    kept_paths = [p for i, p in enumerate(paths) if i not in skipped]
    assert len(kept_paths) == kept, "progress record out of step with the image list"
    rows.flush()
    if kept == len(paths):
        del rows
        os.replace(partial, os.path.join(out, "features.npy"))
    else:  # copy the filled rows into a file of the right length, a block at a time
        with fileio.atomic_memmap(os.path.join(out, "features.npy"), (kept, rows.shape[1])) as final:
            for first in range(0, kept, 4096):
                final[first : first + 4096] = rows[first : min(first + 4096, kept)]
        del rows
        os.remove(partial)
    fileio.save_text(os.path.join(out, "images.txt"), "".join(p + "\n" for p in kept_paths))
    reasons = "".join(f"{p}\t{why}\n" for _, p, why in _skipped_lines(out))
    fileio.save_text(os.path.join(out, "skipped.txt"), reasons)
    fileio.save_json(os.path.join(out, "meta.json"), dict(meta_record, count=kept, skipped=len(skipped)))
    os.remove(os.path.join(out, "progress.json"))
    os.remove(os.path.join(out, SKIPPED_PARTIAL))


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
    check_paths(paths)
    limits.check_environment()  # junk in a limit stops here, not as every image's skip reason
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
    bar = report.bar(len(paths), "extract", "img", initial=progress["done"], plain_lines=True)
    pending, saved = [], time.monotonic()  # skipped lines not yet on disk; when progress was last saved
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
                    reason = CONTROL.sub(" ", why.split(": ", 1)[-1])
                    pending.append(f"{index}\t{paths[index]}\t{reason}\n")
            if good:
                h = backbones.feature_rows(device_params, meta, numpy.stack(good), layer, kernel_cache)
                rows[progress["rows"] : progress["rows"] + len(good)] = h
            progress["done"], progress["rows"] = first + len(results), progress["rows"] + len(good)
            if time.monotonic() - saved >= SAVE_SECONDS or progress["done"] == len(paths):
                _save_progress(out, rows, progress, pending)
                pending, saved = [], time.monotonic()
            bar.update(len(results))
    finally:
        bar.close()
    if progress["rows"] == 0:
        # Nothing to keep: drop the partial files, so that a rerun after fixing the images starts afresh.
        del rows
        _, first_path, first_why = next(_skipped_lines(out))
        for name in ("features.partial.npy", "progress.json", SKIPPED_PARTIAL):
            os.remove(os.path.join(out, name))
        raise UserError(f"none of the {len(paths)} images could be read (first: {first_path}: {first_why})")
    _finish(out, rows, progress, paths, record)
    report.say(
        f"wrote {out}/features.npy ({progress['rows']} x {dim} float32, layer {layer}); "
        f"{progress['skipped']} unreadable image(s) skipped" + (", see skipped.txt" if progress["skipped"] else "")
    )
    return dict(record, count=progress["rows"], skipped=progress["skipped"])
