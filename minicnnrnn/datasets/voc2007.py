"""PASCAL VOC 2007 classification (§4.4) from the devkit layout.

Files read (``root`` may be ``VOCdevkit``, ``VOCdevkit/VOC2007`` or a folder
holding ``VOCdevkit``)::

    VOC2007/ImageSets/Main/<split>.txt           image ids of a split
    VOC2007/ImageSets/Main/<class>_<split>.txt   "<id> <v>", v = 1 / -1 / 0
    VOC2007/JPEGImages/<id>.jpg
    VOC2007/Annotations/<id>.xml                 (only with check_xml=True)

v = 1: the image holds a non-difficult object of the class; -1: no object of
the class; 0: only objects marked "difficult". Like the devkit's
classification evaluation, 0 is neither positive nor negative: it becomes
``labels = 0`` and ``ignore = True`` for that entry. The paper trains on
trainval (5,011 images) and tests on test (4,952); they become "train" and
"test". The label order is the devkit's class order below.
"""

import os
import xml.etree.ElementTree as ET

import numpy as np

from minicnnrnn.core.errors import UserError
from minicnnrnn.datasets.base import MultiLabelDataset, Split, drop_missing_images, require

CLASSES = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]
# Column headers of the paper's Table 4, in the same order.
SHORT_NAMES = [
    "plane",
    "bike",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "table",
    "dog",
    "horse",
    "motor",
    "person",
    "plant",
    "sheep",
    "sofa",
    "train",
    "tv",
]
SPLITS = {"train": "trainval", "test": "test"}


def find_year_folder(root):
    """The VOC2007 folder (the one holding ImageSets) under ``root``."""
    for candidate in (root, os.path.join(root, "VOC2007"), os.path.join(root, "VOCdevkit", "VOC2007")):
        if os.path.isdir(os.path.join(candidate, "ImageSets", "Main")):
            return candidate
    raise UserError(f"{root}: no VOC2007/ImageSets/Main found (point --root at VOCdevkit or VOC2007)")


def _read_split_file(path):
    """Rows of a split file as a list of lists of strings (whitespace-separated). The devkit's
    files are plain ASCII; any other byte (a damaged or edited file) is a one-line error
    naming the file and the line."""
    try:
        with open(require(path, "VOC split file"), "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the VOC split file ({exc.strerror or exc})") from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(
            f"{path}: line {line}: byte 0x{raw[exc.start]:02x} is not ASCII (a VOC split file holds "
            "only image ids and 1/-1/0)"
        ) from None
    return [line.split() for line in text.splitlines() if line.strip()]


def read_split(year_folder, split):
    """Image ids (N,) and the devkit values (N, 20) int8 in {1, -1, 0} of one split."""
    main = os.path.join(year_folder, "ImageSets", "Main")
    ids = [row[0] for row in _read_split_file(os.path.join(main, f"{split}.txt"))]
    values = np.empty((len(ids), len(CLASSES)), dtype=np.int8)
    for c, name in enumerate(CLASSES):
        path = os.path.join(main, f"{name}_{split}.txt")
        rows = _read_split_file(path)
        if [row[0] for row in rows] != ids:
            raise UserError(f"{path}: image ids differ from {split}.txt")
        for i, row in enumerate(rows):
            if len(row) != 2 or row[1] not in ("1", "-1", "0"):
                raise UserError(f"{path}: line {i + 1}: expected '<id> 1|-1|0', got {' '.join(row)!r}")
        values[:, c] = [int(row[1]) for row in rows]
    return ids, values


def values_from_xml(path):
    """The devkit values (20,) of one annotation file: 1 if a non-difficult object, 0 if only difficult."""
    try:
        tree = ET.parse(path)
    except (OSError, ET.ParseError) as exc:
        raise UserError(f"{path}: unreadable annotation ({exc})") from None
    values = np.full(len(CLASSES), -1, dtype=np.int8)
    for obj in tree.getroot().iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in CLASSES:
            raise UserError(f"{path}: object class {name!r} is not one of the 20 VOC classes")
        c = CLASSES.index(name)
        difficult = obj.findtext("difficult", "0").strip() == "1"
        values[c] = max(values[c], 0 if difficult else 1)
    return values


def check_annotations(year_folder, ids, values):
    """Raise a UserError naming the first image whose XML disagrees with the split files."""
    for i, image_id in enumerate(ids):
        path = os.path.join(year_folder, "Annotations", f"{image_id}.xml")
        from_xml = values_from_xml(require(path, "annotation"))
        if not np.array_equal(from_xml, values[i]):
            raise UserError(
                f"{path}: objects disagree with ImageSets/Main "
                f"(xml {from_xml.tolist()} vs split files {values[i].tolist()})"
            )


def load(root, check_images=True, check_xml=False):
    """VOC 2007 as a MultiLabelDataset (module docstring); ``check_xml`` cross-checks Annotations/."""
    year_folder = find_year_folder(root)
    notes, splits = [], {}
    for name, devkit_split in SPLITS.items():
        ids, values = read_split(year_folder, devkit_split)
        if check_xml:
            check_annotations(year_folder, ids, values)
        paths = [os.path.join(year_folder, "JPEGImages", f"{i}.jpg") for i in ids]
        split = Split(paths, (values == 1).astype(np.uint8), values == 0)
        splits[name] = drop_missing_images(split, name, notes, check_images)
    return MultiLabelDataset("voc2007", list(CLASSES), splits, notes)
