"""The real multi-label benchmarks of §4.2-4.4, read from each dataset's own files.

``load(name, root)`` returns a :class:`MultiLabelDataset`::

    ds = datasets.load("voc2007", "/data/VOCdevkit")
    ds.label_names                  # ["aeroplane", "bicycle", ...]
    ds.splits["train"].paths        # absolute image paths (VOC trainval)
    ds.splits["test"].labels        # (4952, 20) uint8, 1 = label present
    ds.splits["test"].ignore        # (4952, 20) bool: VOC "difficult", or None

Names: ``voc2007`` (PASCAL VOC 2007, trainval -> "train", test -> "test"),
``coco2014`` (MS-COCO, train2014 -> "train", val2014 -> "test"), ``nuswide81``
(NUS-WIDE, 81 human-annotated concepts) and ``nuswide1k`` (NUS-WIDE, 1,000 Flickr
tags). Options a loader understands are passed on as keyword arguments
(``load("coco2014", root, year="2017")``); every loader takes
``check_images=True``: images missing on disk are dropped and counted.

Anything unusual a loader meets (missing images, unlabelled images, a corrupt
label value) is written to ``dataset.notes`` and logged as a warning on the
``minicnnrnn.datasets`` logger (printed to stderr unless logging is configured
otherwise), so a command shows it once and tests can check it.
"""
import dataclasses
import logging
import os

import numpy as np

from ..errors import UserError

NAMES = ("voc2007", "coco2014", "nuswide81", "nuswide1k")
log = logging.getLogger("minicnnrnn.datasets")


@dataclasses.dataclass
class Split:
    """One split: ``paths: list[str]`` (N,), ``labels: (N, K) uint8``, ``ignore: (N, K) bool or None``."""
    paths: list
    labels: np.ndarray
    ignore: np.ndarray = None

    def __len__(self):
        return len(self.paths)

    def subset(self, keep):
        """The rows where ``keep: (N,) bool`` is True."""
        keep = np.asarray(keep, dtype=bool)
        paths = [p for p, k in zip(self.paths, keep) if k]
        ignore = None if self.ignore is None else self.ignore[keep]
        return Split(paths, self.labels[keep], ignore)


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
    """``path`` if it exists, else a one-line UserError naming it."""
    if not os.path.exists(path):
        raise UserError(f"{path}: {what} not found")
    return path


def drop_missing_images(split, split_name, notes, check_images=True):
    """Drop the rows whose image file does not exist; report how many (dead links, partial copies)."""
    if not check_images:
        return split
    present = np.fromiter((os.path.isfile(p) for p in split.paths), dtype=bool, count=len(split.paths))
    missing = int((~present).sum())
    if missing == len(split.paths) and missing:
        raise UserError(f"{os.path.dirname(split.paths[0])}: none of the {missing} {split_name} images "
                        f"exist (wrong --root? pass check_images=False to load labels only)")
    if missing:
        note(notes, f"{split_name}: {missing} of {len(split.paths)} images are missing on disk "
                    f"and were left out (e.g. {split.paths[int(np.argmin(present))]})")
        return split.subset(present)
    return split


def load(name, root, **options):
    """Load benchmark ``name`` from the folder ``root`` (see the module docstring)."""
    from . import coco, nuswide, voc2007
    loaders = {"voc2007": voc2007.load, "coco2014": coco.load,
               "nuswide81": nuswide.load_concepts, "nuswide1k": nuswide.load_tags}
    if name not in loaders:
        raise UserError(f"--dataset: unknown dataset {name!r} (choose from {', '.join(NAMES)})")
    if not os.path.isdir(root):
        raise UserError(f"{root}: dataset folder not found")
    return loaders[name](os.path.abspath(root), **options)
