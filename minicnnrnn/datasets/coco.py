"""MS-COCO (§4.3) image-level labels from the instance annotations.

Files read (``root`` is the COCO folder)::

    annotations/instances_train2014.json   "images", "annotations", "categories"
    annotations/instances_val2014.json
    train2014/<file_name>, val2014/<file_name>   (or images/train2014/...)

The paper trains on train2014 (82,783 images) and tests on val2014 (40,504):
"train" and "test" here. The 80 labels are the category names in increasing
category id (ids run 1..90 with gaps, so they are not column numbers). An image
is labelled with a category if it has at least one annotation of it: a
category is counted once per image however many instances it has, and crowd
annotations (iscrowd = 1) count too, since the object is in the image.

Each annotation's ``area`` (as a fraction of its image's ``width * height``) and
``bbox`` (``[x, y, w, h]`` in pixels) are kept in ``Split.objects`` (recall against
object size, the paper's Fig. 8).

Images without any annotation (702 in train2014, 367 in val2014) are kept as
all-zero rows by default, because the paper's image counts include them
(unlabelled=``"keep"``); ``unlabelled="drop"`` leaves them out. Either way
their number is reported in ``notes``.

Other releases with the same format load with ``year="2017"``; when no year is
given and only one year's files are present, that year is used (and noted).
"""

import glob
import json
import os
import re

import numpy as np

from minicnnrnn.core.errors import UserError
from minicnnrnn.datasets.base import MultiLabelDataset, Split, drop_missing_images, note

SPLITS = {"train": "train", "test": "val"}


def _years_present(annotations):
    found = set()
    for path in glob.glob(os.path.join(annotations, "instances_train*.json")):
        match = re.fullmatch(r"instances_train(\d{4})\.json", os.path.basename(path))
        if match and os.path.isfile(os.path.join(annotations, f"instances_val{match.group(1)}.json")):
            found.add(match.group(1))
    return sorted(found)


def choose_year(root, year, notes):
    """The release year whose train and val files exist; ``year=None`` prefers 2014."""
    annotations = os.path.join(root, "annotations")
    if not os.path.isdir(annotations):
        raise UserError(f"{annotations}: folder not found (point --root at the COCO folder)")
    present = _years_present(annotations)
    if year is not None:
        if str(year) not in present:
            raise UserError(
                f"{annotations}: no instances_train{year}.json + instances_val{year}.json "
                f"(found years: {', '.join(present) or 'none'})"
            )
        return str(year)
    if "2014" in present:
        return "2014"
    if len(present) == 1:
        note(notes, f"no 2014 annotations in {annotations}; using the {present[0]} release found there")
        return present[0]
    raise UserError(
        f"{annotations}: no instances_train2014.json + instances_val2014.json "
        f"(found years: {', '.join(present) or 'none'}; choose one with year=...)"
    )


def read_instances(path):
    """The parsed JSON of an ``instances_*.json`` file, checked for the three needed lists."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable COCO annotation file ({exc})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise UserError(f"{path}: missing the {key!r} list of a COCO instances file")
    return data


def category_names(data):
    """(category ids sorted, their names): the label order."""
    cats = sorted(data["categories"], key=lambda c: c["id"])
    return [c["id"] for c in cats], [c["name"] for c in cats]


def image_labels(data, cat_ids, path):
    """(image file names (N,), labels (N, K) uint8): category present in image -> 1, once per image."""
    images = sorted(data["images"], key=lambda im: im["id"])
    row_of = {im["id"]: row for row, im in enumerate(images)}
    col_of = {cid: col for col, cid in enumerate(cat_ids)}
    rows, cols = [], []
    for ann in data["annotations"]:
        if ann["image_id"] not in row_of or ann["category_id"] not in col_of:
            raise UserError(f"{path}: annotation {ann.get('id')} refers to an unknown image or category")
        rows.append(row_of[ann["image_id"]])
        cols.append(col_of[ann["category_id"]])
    labels = np.zeros((len(images), len(cat_ids)), dtype=np.uint8)
    labels[rows, cols] = 1  # repeated (image, category) pairs set the same entry
    return [im["file_name"] for im in images], labels


def image_objects(data, cat_ids):
    """Per image (in :func:`image_labels` order) the list of its objects:
    ``{"label": column, "area": area / (width * height), "bbox": [x, y, w, h]}``.
    An image without ``width``/``height`` gets area fractions from its boxes' extent."""
    images = sorted(data["images"], key=lambda im: im["id"])
    row_of = {im["id"]: row for row, im in enumerate(images)}
    col_of = {cid: col for col, cid in enumerate(cat_ids)}
    objects = [[] for _ in images]
    for ann in data["annotations"]:
        row = row_of[ann["image_id"]]
        image = images[row]
        bbox = [float(v) for v in ann.get("bbox", (0, 0, 0, 0))]
        pixels = float(image.get("width", 0)) * float(image.get("height", 0))
        area = float(ann.get("area", bbox[2] * bbox[3]))
        objects[row].append(
            {"label": col_of[ann["category_id"]], "area": area / pixels if pixels > 0 else 0.0, "bbox": bbox}
        )
    return objects


def _image_folder(root, folder):
    nested = os.path.join(root, "images", folder)
    return (
        nested
        if not os.path.isdir(os.path.join(root, folder)) and os.path.isdir(nested)
        else os.path.join(root, folder)
    )


def load(root, year=None, unlabelled="keep", check_images=True):
    """MS-COCO as a MultiLabelDataset (module docstring)."""
    if unlabelled not in ("keep", "drop"):
        raise UserError(f"unlabelled: expected 'keep' or 'drop', got {unlabelled!r}")
    notes, splits, names = [], {}, None
    year = choose_year(root, year, notes)
    for split_name, coco_split in SPLITS.items():
        path = os.path.join(root, "annotations", f"instances_{coco_split}{year}.json")
        data = read_instances(path)
        try:
            cat_ids, split_names = category_names(data)
            files, labels = image_labels(data, cat_ids, path)
            objects = image_objects(data, cat_ids)
        except (KeyError, TypeError, AttributeError) as exc:  # an entry without "id", "file_name", ...
            raise UserError(
                f"{path}: malformed entry ({type(exc).__name__}: {exc}); expected an original COCO instances file"
            ) from None
        if names is not None and split_names != names:
            raise UserError(f"{path}: categories differ from the train file's")
        names = split_names
        folder = _image_folder(root, f"{coco_split}{year}")
        split = Split([os.path.join(folder, f) for f in files], labels, objects=objects)
        empty = labels.sum(axis=1) == 0
        if empty.any():
            action = "kept as all-zero rows" if unlabelled == "keep" else "left out"
            note(notes, f"{split_name}: {int(empty.sum())} of {len(files)} images have no annotation; {action}")
            if unlabelled == "drop":
                split = split.subset(~empty)
        splits[split_name] = drop_missing_images(split, split_name, notes, check_images)
    return MultiLabelDataset(f"coco{year}", names, splits, notes)
