"""Split an image list into N shards and merge the shards' feature folders back.

``extract --shard I/N`` extracts shard I (0 <= I < N) of the image list: the
contiguous slice ``[I*n // N, (I+1)*n // N)`` of the n paths, in order. The slice
depends only on the list, I and N, so any machine computes the same shard, and a
shard folder resumes like any other ``extract`` run (its identity is its own
slice). :func:`merge` concatenates shards 0..N-1 in order, so the merged folder
holds the same rows, in the same order, as one ``extract`` over the whole list
(up to float rounding of a different batch split).

Each shard's ``meta.json`` records ``source["shard"] = {"index", "count", "start",
"stop", "images", "images_sha256"}`` (the last two of the *whole* list), which
merge uses to refuse shards from different lists or a missing shard.
"""

import argparse
import hashlib
import json
import os

import numpy

from minicnnrnn.core import fileio
from minicnnrnn.core.errors import UserError

SAME_RUN_KEYS = ("format", "weights_sha256", "layer", "resize", "dim")


def parse_shard(text):
    """argparse type of ``--shard``: 'I/N' -> (I, N) with 0 <= I < N."""
    try:
        index, count = (int(t) for t in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N such as 0/4, got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"need 0 <= I < N, got {text!r}")
    return index, count


def list_sha256(paths):
    """The image list's fingerprint, as extract computes it (SHA-256 of the newline-joined paths)."""
    return hashlib.sha256("\n".join(paths).encode()).hexdigest()


def bounds(n, index, count):
    """(start, stop) of shard `index` of `count` over n items: contiguous, sizes differ by at most 1."""
    return index * n // count, (index + 1) * n // count


def select(paths, index, count):
    """(the shard's paths, its record for meta.json's source["shard"])."""
    start, stop = bounds(len(paths), index, count)
    record = {"index": index, "count": count, "start": start, "stop": stop}
    record.update(images=len(paths), images_sha256=list_sha256(paths))
    return paths[start:stop], record


def shard_folder(out, index, count):
    """Where a scale-out run keeps shard `index`: OUT/shards/I-of-N."""
    return os.path.join(out, "shards", f"{index:04d}-of-{count:04d}")


def _read_meta(folder):
    path = os.path.join(folder, "meta.json")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise UserError(f"{folder}: no meta.json; this shard has not finished (rerun its extract)") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable ({type(exc).__name__})") from None
    shard = meta.get("source", {}).get("shard") if isinstance(meta, dict) else None
    if not isinstance(shard, dict):
        raise UserError(f"{folder}: not a shard (its meta.json has no source.shard; was it run with --shard?)")
    return meta


def merge(folders, out):
    """Concatenate finished shard folders (any order given) into the features folder `out`.

    Checks that they are shards 0..N-1 of one image list, made with the same weights,
    layer and resize mode. Returns the merged meta.json record.
    """
    if not folders:
        raise UserError("merge: no shard folders given")
    metas = sorted(((_read_meta(f), f) for f in folders), key=lambda mf: mf[0]["source"]["shard"]["index"])
    first, _ = metas[0]
    whole = first["source"]["shard"]
    for meta, folder in metas:
        shard = meta["source"]["shard"]
        for key in SAME_RUN_KEYS:
            if meta.get(key) != first.get(key):
                raise UserError(f"{folder}: a different {key} ({meta.get(key)!r:.40}) from {metas[0][1]}")
        if (shard["count"], shard["images_sha256"]) != (whole["count"], whole["images_sha256"]):
            raise UserError(f"{folder}: a shard of a different image list or shard count than {metas[0][1]}")
    indices = [m["source"]["shard"]["index"] for m, _ in metas]
    if indices != list(range(whole["count"])):
        missing = sorted(set(range(whole["count"])) - set(indices))
        what = f"missing shard(s) {missing[:5]}" if missing else f"shard {indices} given twice"
        raise UserError(f"merge: {what} of {whole['count']}")
    rows = [numpy.load(os.path.join(f, "features.npy"), mmap_mode="r") for _, f in metas]
    total = sum(len(r) for r in rows)
    os.makedirs(out, exist_ok=True)
    tmp = os.path.join(out, ".features.npy.tmp")
    merged = numpy.lib.format.open_memmap(tmp, mode="w+", dtype=numpy.float32, shape=(total, first["dim"]))
    at = 0
    for r in rows:
        for s in range(0, len(r), 4096):
            merged[at + s : at + min(s + 4096, len(r))] = r[s : s + 4096]
        at += len(r)
    merged.flush()
    del merged, rows
    os.replace(tmp, os.path.join(out, "features.npy"))
    for name in ("images.txt", "skipped.txt"):
        parts = []
        for _, f in metas:
            with open(os.path.join(f, name), encoding="utf-8") as fh:
                parts.append(fh.read())
        fileio.save_text(os.path.join(out, name), "".join(parts))
    source = {k: v for k, v in first["source"].items() if k != "shard"}
    record = dict(
        first,
        images_sha256=whole["images_sha256"],
        images=whole["images"],
        count=total,
        skipped=sum(m["skipped"] for m, _ in metas),
        source=dict(source, shards=whole["count"]),
    )
    fileio.save_json(os.path.join(out, "meta.json"), record)
    return record
