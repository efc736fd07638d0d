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
import codecs
import hashlib
import json
import os
import sys

import numpy

from minicnnrnn.core import fileio, limits
from minicnnrnn.core.errors import UserError

SAME_RUN_KEYS = ("format", "weights_sha256", "layer", "resize", "dim")
MAX_META_CHARS = 1 << 20  # a shard's meta.json is a few hundred bytes; more is not one


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
    """A shard folder's meta.json, checked as a schema: (meta, None) or (None, one-line problem)."""
    path = os.path.join(folder, "meta.json")
    if not os.path.exists(path):
        return None, f"{folder}: no meta.json; this shard has not finished (rerun its extract --shard)"
    try:
        with fileio.open_regular(path, "shard's meta.json", text=True) as f:
            meta = json.loads(f.read(MAX_META_CHARS))
    except UserError as exc:
        return None, str(exc)
    except (OSError, ValueError, RecursionError) as exc:
        return None, f"{path}: unreadable ({type(exc).__name__})"
    source = meta.get("source") if isinstance(meta, dict) else None
    shard = source.get("shard") if isinstance(source, dict) else None
    if not isinstance(shard, dict):
        return None, f"{folder}: not a shard (its meta.json has no source.shard; was it run with --shard?)"
    counts = {"dim": meta.get("dim"), "count": meta.get("count"), "skipped": meta.get("skipped")}
    counts.update((f"source.shard.{key}", shard.get(key)) for key in ("index", "count", "start", "stop", "images"))
    bad = [key for key, value in counts.items() if type(value) is not int or value < 0]  # bool is no count
    if bad or not isinstance(shard.get("images_sha256"), str):
        what = ", ".join(bad) or "source.shard.images_sha256"
        return None, f"{path}: damaged ({what} has the wrong type or is negative; rerun its extract)"
    index, count, start, stop, n = (shard[key] for key in ("index", "count", "start", "stop", "images"))
    if not index < count or (start, stop) != bounds(n, index, count) or meta["dim"] < 1:
        return None, f"{path}: damaged (shard {index} of {count} cannot span rows {start}..{stop} of {n})"
    if meta["count"] + meta["skipped"] != stop - start:
        return None, (
            f"{path}: damaged ({meta['count']} rows + {meta['skipped']} skipped for the {stop - start} "
            "images of this shard; rerun its extract)"
        )
    return meta, None


def _line_count(path):
    """Lines of a UTF-8 text file read through :func:`fileio.open_regular` (a block at a time);
    a UserError naming it when it is not UTF-8 text."""
    lines, decoder = 0, codecs.getincrementaldecoder("utf-8")()
    with fileio.open_regular(path, "shard file") as f:
        try:
            for block in iter(lambda: f.read(1 << 20), b""):
                lines += decoder.decode(block).count("\n")
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise UserError(f"{path}: not UTF-8 text (damaged); rerun its extract") from None
    return lines


def _check_files(folder, meta):
    """(features.npy as a read-only memory map, None) or (None, one-line problem): the rows
    match meta.json (shape, float32), and images.txt and skipped.txt have a line per image."""
    path = os.path.join(folder, "features.npy")
    try:
        fileio.require_regular(path, "shard's features.npy")
        rows = numpy.load(path, mmap_mode="r", allow_pickle=False)
        for name, want in (("images.txt", meta["count"]), ("skipped.txt", meta["skipped"])):
            got = _line_count(os.path.join(folder, name))
            if got != want:
                return None, f"{folder}: {name} has {got} lines for the {want} its meta.json records; rerun its extract"
    except UserError as exc:
        return None, str(exc)
    except Exception as exc:  # a damaged .npy header: ValueError, SyntaxError, EOFError, ...
        return None, f"{path}: unreadable ({type(exc).__name__})"
    if rows.shape != (meta["count"], meta["dim"]) or rows.dtype != numpy.float32:
        return None, (
            f"{path}: {rows.dtype} {rows.shape}, but its meta.json records float32 "
            f"({meta['count']}, {meta['dim']}); rerun its extract"
        )
    return rows, None


def _check_out(folders, out):
    """Refuse an --out that is (or lies inside) a shard: merging never writes into a shard."""
    target = os.path.realpath(out)
    for folder in folders:
        shard = os.path.realpath(folder)
        if target == shard or target.startswith(shard + os.sep):
            raise UserError(f"--out {out}: is the shard folder {folder}; give the merged folder another name")
    meta_path = os.path.join(out, "meta.json")
    if os.path.isfile(meta_path):
        meta, _ = _read_meta(out)
        if meta is not None:
            raise UserError(f"--out {out}: holds a shard (its meta.json has source.shard); choose another --out")


def _refuse(problems):
    """One line on stderr for each damaged shard; the last is the UserError (exit 2)."""
    for line in problems[:-1]:
        print(f"error: {line}", file=sys.stderr)
    more = f" ({len(problems)} damaged shards, each named above)" if len(problems) > 1 else ""
    raise UserError(problems[-1] + more)


def _checked_shards(folders):
    """[(meta, folder, rows)] sorted by shard index, every shard checked (the problems of all
    damaged shards reported together); UserError unless they are shards 0..N-1 of one run."""
    shards, problems = [], []
    for folder in folders:
        meta, problem = _read_meta(folder)
        rows = None
        if meta is not None:
            rows, problem = _check_files(folder, meta)
        if problem:
            problems.append(problem)
        else:
            shards.append((meta, folder, rows))
    if problems:
        _refuse(problems)
    shards.sort(key=lambda mfr: mfr[0]["source"]["shard"]["index"])
    first, first_folder, _ = shards[0]
    whole = first["source"]["shard"]
    for meta, folder, _ in shards:
        shard = meta["source"]["shard"]
        for key in SAME_RUN_KEYS:
            if meta.get(key) != first.get(key):
                raise UserError(f"{folder}: a different {key} ({meta.get(key)!r:.40}) from {first_folder}")
        if (shard["count"], shard["images_sha256"], shard["images"]) != (
            whole["count"],
            whole["images_sha256"],
            whole["images"],
        ):
            raise UserError(f"{folder}: a shard of a different image list or shard count than {first_folder}")
    indices = [m["source"]["shard"]["index"] for m, _, _ in shards]
    if indices != list(range(whole["count"])):
        missing = sorted(set(range(whole["count"])) - set(indices))
        what = f"missing shard(s) {missing[:5]}" if missing else f"shard {indices} given twice"
        raise UserError(f"merge: {what} of {whole['count']}")
    return shards


def _copy_rows(shards, merged):
    """Copy every shard's rows into ``merged`` in order, a block at a time; the folders of
    shards holding NaN, inf or values beyond float32's range (none are copied past)."""
    at, damaged = 0, []
    for _, folder, rows in shards:
        for s in range(0, len(rows), 4096):
            block = rows[s : s + 4096]
            if not limits.all_finite(block):
                damaged.append(f"{folder}: features.npy holds NaN or infinite values (row {s} on); rerun its extract")
                break
            merged[at + s : at + s + len(block)] = block
        at += len(rows)
    return damaged


def merge(folders, out):
    """Concatenate finished shard folders (any order given) into the features folder `out`.

    Every shard is checked before anything is written (its meta.json as a schema, its
    row count against its image list, its files' line counts), and its values while
    copied (finite in float32); each damaged shard is one line. The shards must be
    0..N-1 of one image list, made with the same weights, layer and resize mode. `out`
    is locked (``fileio.folder_lock``, as ``extract`` and ``train`` lock theirs), may
    not be a shard, and gets features.npy through a temp file whose space is reserved
    first (a full disk is one line, not a SIGBUS), renamed only when every row is in.
    Returns the merged meta.json record.
    """
    if not folders:
        raise UserError("merge: no shard folders given")
    folders = [os.fspath(f) for f in folders]
    _check_out(folders, out)
    shards = _checked_shards(folders)
    first = shards[0][0]
    whole = first["source"]["shard"]
    total = sum(len(rows) for _, _, rows in shards)
    with fileio.folder_lock(out):
        with fileio.atomic_memmap(os.path.join(out, "features.npy"), (total, first["dim"])) as merged:
            damaged = _copy_rows(shards, merged)
            if damaged:
                _refuse(damaged)  # the temp file goes; an earlier features.npy stays
        for name in ("images.txt", "skipped.txt"):
            parts = []
            for _, folder, _ in shards:
                with fileio.open_regular(os.path.join(folder, name), "shard file", text=True) as fh:
                    parts.append(fh.read())
            fileio.save_text(os.path.join(out, name), "".join(parts))
        source = {k: v for k, v in first["source"].items() if k != "shard"}
        record = dict(
            first,
            images_sha256=whole["images_sha256"],
            images=whole["images"],
            count=total,
            skipped=sum(m["skipped"] for m, _, _ in shards),
            source=dict(source, shards=whole["count"]),
        )
        fileio.save_json(os.path.join(out, "meta.json"), record)
    return record
