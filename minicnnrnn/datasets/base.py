"""The containers every benchmark loader returns (:class:`MultiLabelDataset`, :class:`Split`)
and the small helpers the loaders share (missing files, notes)."""

import dataclasses
import logging
import os

import numpy as np

from minicnnrnn.core import fileio
from minicnnrnn.core.errors import UserError

log = logging.getLogger("minicnnrnn.datasets")


@dataclasses.dataclass
class Split:
    """One split: ``paths: list[str]`` (N,), ``labels: (N, K) uint8``, ``ignore: (N, K) bool or None``,
    ``objects``: None, or per image the list of its annotated objects (COCO), each a dict
    ``{"label": column k, "area": fraction of the picture, "bbox": [x, y, w, h] in pixels}``."""

    paths: list
    labels: np.ndarray
    ignore: np.ndarray = None
    objects: list = None

    def __len__(self):
        return len(self.paths)

    def subset(self, keep):
        """The rows where ``keep: (N,) bool`` is True."""
        keep = np.asarray(keep, dtype=bool)
        paths = [p for p, k in zip(self.paths, keep) if k]
        ignore = None if self.ignore is None else self.ignore[keep]
        objects = None if self.objects is None else [o for o, k in zip(self.objects, keep) if k]
        return Split(paths, self.labels[keep], ignore, objects)

    def label_areas(self):
        """(N, K) float32: the fraction of each picture that each label's objects cover (the
        sum of their areas, at most 1; 0 for an absent label), or None without ``objects``.
        The object size of Fig. 8."""
        if self.objects is None:
            return None
        areas = np.zeros(self.labels.shape, dtype=np.float32)
        for row, objects in enumerate(self.objects):
            for obj in objects:
                areas[row, obj["label"]] += obj["area"]
        return np.minimum(areas, 1.0)


@dataclasses.dataclass
class MultiLabelDataset:
    """``label_names: list[str]`` (K,), ``splits: {"train": Split, "test": Split}``, ``notes: list[str]``."""

    name: str
    label_names: list
    splits: dict
    notes: list = dataclasses.field(default_factory=list)

    def summary(self):
        """A few lines: sizes, labels per image, notes."""
        lines = [f"{self.name}: {len(self.label_names)} labels"]
        for split_name, split in self.splits.items():
            per_image = split.labels.sum(axis=1).mean() if len(split) else 0.0
            lines.append(f"  {split_name}: {len(split)} images, {per_image:.2f} labels per image")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def note(notes, message):
    """Record ``message`` in ``notes`` and log it."""
    notes.append(message)
    log.warning("dataset note: %s", message)


def require(path, what):
    """``path`` if it is a regular file, else a one-line UserError naming it (missing, a
    folder, or a FIFO or device that would block a reader: core/fileio.open_regular)."""
    fileio.require_regular(path, what)
    return path


def drop_missing_images(split, split_name, notes, check_images=True):
    """Drop the rows whose image file does not exist; report how many (dead links, partial copies)."""
    if not check_images:
        return split
    present = np.fromiter((os.path.isfile(p) for p in split.paths), dtype=bool, count=len(split.paths))
    missing = int((~present).sum())
    if missing == len(split.paths) and missing:
        raise UserError(
            f"{os.path.dirname(split.paths[0])}: none of the {missing} {split_name} images "
            f"exist (wrong --root? pass check_images=False to load labels only)"
        )
    if missing:
        note(
            notes,
            f"{split_name}: {missing} of {len(split.paths)} images are missing on disk "
            f"and were left out (e.g. {split.paths[int(np.argmin(present))]})",
        )
        return split.subset(present)
    return split
