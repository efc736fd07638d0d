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

import os

from minicnnrnn.core.errors import UserError
from minicnnrnn.datasets import coco, nuswide, voc2007

NAMES = ("voc2007", "coco2014", "nuswide81", "nuswide1k")


def load(name, root, **options):
    """Load benchmark ``name`` from the folder ``root`` (see the module docstring)."""
    loaders = {
        "voc2007": voc2007.load,
        "coco2014": coco.load,
        "nuswide81": nuswide.load_concepts,
        "nuswide1k": nuswide.load_tags,
    }
    if name not in loaders:
        raise UserError(f"--dataset: unknown dataset {name!r} (choose from {', '.join(NAMES)})")
    if not os.path.isdir(root):
        raise UserError(f"{root}: dataset folder not found")
    return loaders[name](os.path.abspath(root), **options)
