"""NUS-WIDE (§4.2): 81 human-annotated concepts and 1,000 Flickr tags.

Files read, under ``root`` (the layout of the distribution, unzipped)::

    Concepts81.txt (or ConceptsList/Concepts81.txt)    the 81 concept names
    Groundtruth/TrainTestLabels/Labels_<c>_Train.txt   one 0/1 per line and image
        ... or the same files inside Groundtruth.zip (read without unpacking)
    NUS_WID_Tags/TagList1k.txt                          the 1,000 tag names
    NUS_WID_Tags/Train_Tags1k.dat, Test_Tags1k.dat      one row of 1,000 0/1 per image
    ImageList/TrainImagelist.txt, TestImagelist.txt     rows -> "actor\\0001_2124494179.jpg"
    Flickr/actor/0001_2124494179.jpg                    the images

Row i of every label file of a split is the image on line i of that split's
image list (161,789 train, 107,859 test). Blank lines carry no row.

Two problems of real copies are handled explicitly:

* Many images were never downloaded (dead Flickr links): they are dropped and
  counted in ``notes`` (``check_images=True``).
* A label value other than 0 or 1 (the original ``Labels_lake_Train.txt`` holds
  ``-1130179`` on line 78373, image row 78372 counting from 0) is reported by
  file, line and value. With ``corrupt="ignore"`` (default) that one entry is
  marked ``ignore`` (neither positive nor negative, like VOC "difficult") and the
  rest is used; ``corrupt="error"`` stops with a UserError instead.

Labels are uint8 throughout (269,648 x 1,000 tags = 270 MB) and the big tag
files are parsed in vectorised blocks, never as Python lists of numbers.
"""

import os
import zipfile

import numpy as np

from minicnnrnn.core.errors import UserError
from minicnnrnn.datasets.base import MultiLabelDataset, Split, drop_missing_images, note, require

SPLITS = {"train": "Train", "test": "Test"}
_SEPARATORS = np.frombuffer(b" \t\r\n,", dtype=np.uint8)
_BLOCK_BYTES = 1 << 24


def _parse_block(block, source, ncols, first_line, first_row, bad):
    """Parse complete lines ``block`` (bytes ending in b"\\n") into (rows, ncols) uint8.

    Appends ``(line number, row, column, token)`` of every value other than 0/1
    to ``bad`` and stores 0 there. ``first_line``, ``first_row``: file line
    number and data row of the block's first line.
    """
    a = np.frombuffer(block, dtype=np.uint8)
    is_newline = a == ord("\n")
    in_token = ~np.isin(a, _SEPARATORS)
    starts = in_token.copy()
    starts[1:] &= ~in_token[:-1]
    line_of_byte = np.cumsum(is_newline) - is_newline
    per_line = np.bincount(line_of_byte[starts], minlength=int(is_newline.sum()))
    lines = np.flatnonzero(per_line)  # non-blank lines of the block
    wrong = lines[per_line[lines] != ncols]
    if wrong.size:
        line = wrong[0]
        raise UserError(f"{source}: line {first_line + line}: expected {ncols} values, found {per_line[line]}")
    chars = a[in_token]
    if chars.size == starts.sum() and np.all((chars == ord("0")) | (chars == ord("1"))):
        return (chars - ord("0")).astype(np.uint8).reshape(-1, ncols)
    # Slow path, only for blocks holding something other than single 0/1 digits.
    rows = []
    for line, text in enumerate(block.split(b"\n")):
        tokens = text.replace(b",", b" ").split()
        if not tokens:
            continue
        row = np.zeros(ncols, dtype=np.uint8)
        for col, token in enumerate(tokens):
            try:
                value = float(token)
            except ValueError:
                value = None
            if value in (0.0, 1.0):
                row[col] = int(value)
            else:
                bad.append((first_line + line, first_row + len(rows), col, token.decode("ascii", "replace")))
        rows.append(row)
    return np.array(rows, dtype=np.uint8).reshape(-1, ncols)


def read_01_matrix(f, source, ncols):
    """Read a whitespace-separated 0/1 table from binary file ``f``.

    Returns (values (N, ncols) uint8, bad list of (line, row, column, token));
    line numbers count from 1, rows from 0. Raises a UserError naming ``source``
    for ragged rows.
    """
    blocks, bad, line, row, rest = [], [], 1, 0, b""
    while True:
        data = f.read(_BLOCK_BYTES)
        buf = rest + data
        if not data:
            if buf.strip():
                blocks.append(_parse_block(buf + b"\n", source, ncols, line, row, bad))
            break
        cut = buf.rfind(b"\n") + 1
        block, rest = buf[:cut], buf[cut:]
        if block:
            blocks.append(_parse_block(block, source, ncols, line, row, bad))
            line += block.count(b"\n")
            row += len(blocks[-1])
    values = np.concatenate(blocks) if blocks else np.zeros((0, ncols), dtype=np.uint8)
    return values, bad


def _report_bad(bad, source, ignore, column, corrupt, notes):
    """Report corrupt values by file and line; mark them ignored (or raise)."""
    for line, row, col, token in bad:
        message = f"{source}: line {line} (image row {row}): value {token!r} is not 0 or 1"
        if corrupt == "error":
            raise UserError(message + " (pass corrupt='ignore' to skip this entry)")
        note(notes, message + "; that entry is ignored (neither positive nor negative)")
        ignore[row, col if column is None else column] = True


class _LabelSource:
    """Opens ``TrainTestLabels/Labels_<c>_<Split>.txt`` from a folder or from Groundtruth.zip."""

    def __init__(self, root):
        folders = [os.path.join(root, "Groundtruth", "TrainTestLabels"), os.path.join(root, "TrainTestLabels")]
        self.folder = next((d for d in folders if os.path.isdir(d)), None)
        self.zip = None
        if self.folder is None:
            path = os.path.join(root, "Groundtruth.zip")
            if not os.path.isfile(path):
                path = os.path.join(root, "Groundtruth", "Groundtruth.zip")
            if not os.path.isfile(path):
                raise UserError(f"{root}: neither Groundtruth/TrainTestLabels/ nor Groundtruth.zip found")
            try:
                self.zip = zipfile.ZipFile(path)
            except (OSError, zipfile.BadZipFile) as exc:
                raise UserError(f"{path}: not a readable zip file ({exc})") from None
            self.members = {m.rsplit("/", 1)[-1]: m for m in self.zip.namelist() if "TrainTestLabels/" in m}
            self.zip_path = path

    def open(self, filename):
        """(binary file object, name for messages)."""
        if self.zip is None:
            path = require(os.path.join(self.folder, filename), "label file")
            return open(path, "rb"), path
        if filename not in self.members:
            raise UserError(f"{self.zip_path}: no TrainTestLabels/{filename} inside")
        return self.zip.open(self.members[filename]), f"{self.zip_path}:{self.members[filename]}"


def _read_names(root, candidates, what):
    for rel in candidates:
        path = os.path.join(root, rel)
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                return [line.strip() for line in f if line.strip()]
    raise UserError(f"{root}: {what} not found (looked for {', '.join(candidates)})")


def read_concept_labels(root, corrupt="ignore"):
    """The 81-concept ground truth without images.

    Returns (names (81,), {"train": (labels (N, 81) uint8, ignore (N, 81) bool), "test": ...}, notes).
    """
    names = _read_names(root, ["Concepts81.txt", os.path.join("ConceptsList", "Concepts81.txt")], "Concepts81.txt")
    source, notes, out = _LabelSource(root), [], {}
    for split, suffix in SPLITS.items():
        columns, n_rows = [], None
        ignore = None
        for c, concept in enumerate(names):
            f, where = source.open(f"Labels_{concept}_{suffix}.txt")
            with f:
                values, bad = read_01_matrix(f, where, 1)
            if n_rows is not None and len(values) != n_rows:
                raise UserError(f"{where}: {len(values)} rows, but the other {suffix} files have {n_rows}")
            n_rows = len(values)
            columns.append(values[:, 0])
            if bad:
                ignore = np.zeros((n_rows, len(names)), dtype=bool) if ignore is None else ignore
                _report_bad(bad, where, ignore, c, corrupt, notes)
        labels = np.stack(columns, axis=1)
        out[split] = (labels, ignore if ignore is not None else np.zeros(labels.shape, dtype=bool))
    return names, out, notes


def read_image_list(root, suffix, images=None):
    """Absolute image paths of ``ImageList/<Suffix>Imagelist.txt`` (Windows separators accepted)."""
    path = require(os.path.join(root, "ImageList", f"{suffix}Imagelist.txt"), "NUS-WIDE image list")
    folder = images or os.path.join(root, "Flickr")
    paths = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            rel = line.strip().replace("\\", "/")
            if rel:
                # Imagelist.txt has "C:\ImageData\Flickr\actor\..."; keep what follows Flickr/.
                rel = rel.rsplit("Flickr/", 1)[-1]
                paths.append(os.path.join(folder, *rel.split("/")))
    return paths


def _make_dataset(name, root, names, labelled, notes, check_images, images):
    """Join label rows with the image lists, drop missing images."""
    splits = {}
    for split, suffix in SPLITS.items():
        labels, ignore = labelled[split]
        paths = read_image_list(root, suffix, images)
        if len(paths) != len(labels):
            raise UserError(
                f"{os.path.join(root, 'ImageList', suffix + 'Imagelist.txt')}: {len(paths)} "
                f"images, but the {suffix} label files have {len(labels)} rows"
            )
        ignore = ignore if ignore is not None and ignore.any() else None
        splits[split] = drop_missing_images(Split(paths, labels, ignore), split, notes, check_images)
    return MultiLabelDataset(name, names, splits, notes)


def load_concepts(root, check_images=True, corrupt="ignore", images=None):
    """NUS-WIDE with the 81 concepts (Table 1) as a MultiLabelDataset."""
    names, labelled, notes = read_concept_labels(root, corrupt)
    return _make_dataset("nuswide81", root, names, labelled, notes, check_images, images)


def read_tag_labels(root, corrupt="ignore"):
    """The 1,000-tag labels: (names (1000,), {"train": (labels, ignore), "test": ...}, notes)."""
    tag_folder = os.path.join(root, "NUS_WID_Tags")
    tag_folder = tag_folder if os.path.isdir(tag_folder) else root
    names = _read_names(tag_folder, ["TagList1k.txt"], "NUS_WID_Tags/TagList1k.txt")
    notes, out = [], {}
    for split, suffix in SPLITS.items():
        path = require(os.path.join(tag_folder, f"{suffix}_Tags1k.dat"), "NUS-WIDE tag file")
        with open(path, "rb") as f:
            labels, bad = read_01_matrix(f, path, len(names))
        ignore = np.zeros(labels.shape, dtype=bool) if bad else None
        if bad:
            _report_bad(bad, path, ignore, None, corrupt, notes)
        out[split] = (labels, ignore)
    return names, out, notes


def load_tags(root, check_images=True, corrupt="ignore", images=None):
    """NUS-WIDE with the 1,000 tags (Table 2) as a MultiLabelDataset."""
    names, labelled, notes = read_tag_labels(root, corrupt)
    return _make_dataset("nuswide1k", root, names, labelled, notes, check_images, images)
