"""What ``python -m minicnnrnn.train`` learns from: CNN features and 0/1 labels per split.

    data = train_data.load(args)            # --dataset builtin | npz:PATH | voc2007 | coco2014 | ...
    data.train_features[rows]               # (n, D) float32, normalised (see below)
    data.train_labels                       # (N, K) uint8

Three kinds of ``--dataset``:

* ``builtin``: Tiny Scenes pictures through the shipped CNN, fc7 (``minicnnrnn.tinyscenes``);
* ``npz:PATH``: one ``.npz`` with ``train_features (N, D)``, ``train_labels (N, K)``,
  ``test_features``, ``test_labels`` and ``label_names (K,)``;
* ``voc2007``, ``coco2014``, ``nuswide81``, ``nuswide1k``: labels from
  ``datasets.load(name, --root)`` joined by image path with an ``extract`` features
  folder (``--features``: ``features.npy``, ``images.txt``, ``meta.json``).

Feature normalisation (``--feature-norm``)
------------------------------------------

The image feature ``I`` enters the model only through ``I @ U_I_x`` (Eq. 4). rmsprop moves
every entry of ``U_I_x`` by about the learning rate η per step whatever the size of its
gradient, so one step can change ``I @ U_I_x`` by up to ``η · Σ_d |I_d|``: the L1 norm
of the feature. CNN features are ReLU outputs (all ≥ 0, so the changes add up) and their
L1 norm grows with their size and with D: about 100 for the built-in fc7 (D = 256), tens
of thousands for VGG16 fc7 (D = 4096) that a user's extraction may give. At that scale a
few steps push the Eq. 4 ReLU units all to one side: dead (zero gradient, the model stops
learning) or huge. Normalising ``I`` bounds the step's effect whatever the CNN:

* ``l2`` (default): every image's feature divided by its L2 norm, ``I / ‖I‖₂``, as
  CNN-SVM (the paper's ref. [27]) does with fc features. Then ``Σ|I_d| ≤ √D``.
* ``scale``: all features divided by one number, the mean ``‖I‖₂`` of the training images
  (computed once on the training split, stored in the checkpoint). Keeps the relative
  magnitudes of images; the average image has norm 1.
* ``none``: features as extracted.

The choice and its statistic are saved in the checkpoint's config (``feature_norm``),
and ``predict`` applies exactly the same :func:`normalise` to the features it computes.
Everything here is host NumPy: features are read, normalised and only then moved to the
device, one mini-batch at a time.
"""

import dataclasses
import json
import os

import numpy as np

from minicnnrnn import datasets
from minicnnrnn.core import fileio, limits
from minicnnrnn.core.errors import UserError
from minicnnrnn.tinyscenes import features, scenes
from minicnnrnn.training import schema
from minicnnrnn.training.config import FEATURE_NORMS

REAL_DATASETS = ("voc2007", "coco2014", "nuswide81", "nuswide1k")
_CHUNK = 4096  # rows read at once when computing a statistic of a memory-mapped matrix


# ---------------------------------------------------------------------------
# Feature normalisation, shared by train and predict
# ---------------------------------------------------------------------------


def fit_feature_norm(mode, features):
    """The normalisation ``mode`` for a training set. features: (N, D) host rows (``Rows``).

    Returns a JSON-able dict: ``{"mode": "l2"}``, ``{"mode": "none"}`` or
    ``{"mode": "scale", "scale": mean L2 norm of the training rows}``.
    """
    if mode not in FEATURE_NORMS:
        raise UserError(f"--feature-norm: unknown normalisation {mode!r}; use one of {', '.join(FEATURE_NORMS)}")
    if mode != "scale":
        return {"mode": mode}
    total = 0.0
    for start in range(0, len(features), _CHUNK):
        block = np.asarray(features[start : start + _CHUNK], np.float64)
        total += float(np.sqrt((block * block).sum(axis=1)).sum())
    mean_norm = total / max(len(features), 1)
    if not mean_norm > 0:
        raise UserError("--feature-norm scale: the training features are all zero")
    return {"mode": "scale", "scale": mean_norm}


def normalise(block, norm):
    """Apply a :func:`fit_feature_norm` result to host features. block: (n, D) -> (n, D) float32.

    ``norm`` None (a checkpoint from before this option) means ``none``. An all-zero row
    stays zero under ``l2``.
    """
    block = np.asarray(block, dtype=np.float32)
    mode = (norm or {"mode": "none"})["mode"]
    if mode == "none":
        return block
    if mode == "scale":
        return block / np.float32(norm["scale"])
    if mode == "l2":
        length = np.sqrt(np.einsum("nd,nd->n", block, block, dtype=np.float64))[:, None]
        return (block / np.maximum(length, 1e-12)).astype(np.float32)
    raise UserError(f"unknown feature normalisation {mode!r} (expected one of {', '.join(FEATURE_NORMS)})")


# ---------------------------------------------------------------------------
# The data of one run
# ---------------------------------------------------------------------------


class Rows:
    """Rows ``array[rows]`` (default all) of a feature matrix, read as float32 and normalised
    (``norm``, see :func:`normalise`) only when a batch asks for them: a memory-mapped
    features file is never loaded whole."""

    def __init__(self, array, rows=None, norm=None):
        self.array = array
        self.rows = np.arange(len(array)) if rows is None else np.asarray(rows)
        self.norm = norm
        self.shape = (len(self.rows),) + tuple(array.shape[1:])

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return normalise(self.array[self.rows[index]], self.norm)


@dataclasses.dataclass
class TrainingData:
    """Features ``(N, D)`` (``Rows``) and labels ``(N, K)`` uint8 0/1 per split."""

    name: str
    label_names: list
    train_features: Rows
    train_labels: np.ndarray
    test_features: Rows
    test_labels: np.ndarray
    test_ignore: np.ndarray = None  # (N_test, K) bool: VOC "difficult", left out of the metrics
    cnn: dict = None  # which CNN made the features (for predict)
    test_areas: np.ndarray = None  # (N_test, K) float32: object size per label (Fig. 8; COCO), or None
    val_features: Rows = None  # held out of the training images for model selection (training/selection.py)
    val_labels: np.ndarray = None

    def summary(self):
        (n, D), K = self.train_features.shape, self.train_labels.shape[1]
        val = "" if self.val_labels is None else f" / {len(self.val_labels)} validation"
        return (
            f"{self.name}: {n} train{val} / {len(self.test_labels)} test images, D = {D}, K = {K}, "
            f"{self.train_labels.sum(1).mean():.2f} labels per training image"
        )

    def with_norm(self, norm):
        """The same data with every split's features normalised by ``norm``."""
        train, test, val = self.train_features, self.test_features, self.val_features
        return dataclasses.replace(
            self,
            train_features=Rows(train.array, train.rows, norm),
            test_features=Rows(test.array, test.rows, norm),
            val_features=None if val is None else Rows(val.array, val.rows, norm),
        )


def load(args):
    """The dataset named by ``--dataset`` (raw features; see :meth:`TrainingData.with_norm`)."""
    is_real = args.dataset in REAL_DATASETS
    if not is_real and (args.root or args.features):
        raise UserError(
            f"--root/--features: only used with a real dataset ({', '.join(REAL_DATASETS)}), "
            f"not with --dataset {args.dataset}"
        )
    if args.dataset == "builtin":
        data = load_builtin(args.n_train, args.n_test)
    elif args.dataset.startswith("npz:"):
        if not args.dataset[4:]:
            raise UserError("--dataset npz:PATH: no path given after 'npz:'")
        data = load_npz(args.dataset[4:])
    elif is_real:
        data = load_real(args.dataset, args.root, args.features)
    else:
        raise UserError(
            f"--dataset: unknown dataset {args.dataset!r}; use builtin, npz:PATH or one of {', '.join(REAL_DATASETS)}"
        )
    return drop_unlabelled(data)


def load_builtin(n_train, n_test):
    """Tiny Scenes fc7 features of the shipped CNN (D = 256, K = 20), generated and cached on first use."""

    if min(n_train, n_test) < 1:
        raise UserError(f"--n-train/--n-test: need at least one image, got {n_train}/{n_test}")
    (train_f, train_y), (test_f, test_y) = (
        features.builtin_features(split, n, layer="fc7") for split, n in (("train", n_train), ("test", n_test))
    )
    return TrainingData(
        "builtin",
        list(scenes.LABEL_NAMES),
        Rows(train_f),
        train_y,
        Rows(test_f),
        test_y,
        cnn={"weights": "builtin", "layer": "fc7"},
    )


def label_text(name):
    """A label name from an array as text: bytes (a ``S`` array) decoded, not ``"b'cat'"``."""
    if isinstance(name, bytes):
        return name.decode("utf-8", errors="replace")
    return str(name)


def load_npz(path):
    """Precomputed features in one .npz: train_features, train_labels, test_features, test_labels, label_names."""

    names = ("train_features", "train_labels", "test_features", "test_labels", "label_names")
    a = fileio.load_npz(path, required=names)
    names = [label_text(n) for n in a["label_names"].reshape(-1)]
    schema.check_unique_names(names, path)
    for split in ("train", "test"):
        f, y = a[f"{split}_features"], a[f"{split}_labels"]
        schema.check_features(f, f"{path}: {split}_features")
        if f.ndim != 2 or y.ndim != 2 or len(f) != len(y) or len(f) == 0:
            raise UserError(
                f"{path}: {split}_features {f.shape} and {split}_labels {y.shape} must be "
                f"(N, D) and (N, K) with the same N > 0"
            )
        if not np.issubdtype(f.dtype, np.number) or not np.isin(y, (0, 1)).all():
            raise UserError(f"{path}: {split}_features must be numbers and {split}_labels only 0 and 1")
        limits.check_finite(f, f"{path}: {split}_features")  # finite in float32: 1e300 is not
    if a["train_features"].shape[1] != a["test_features"].shape[1]:
        raise UserError(
            f"{path}: train and test features differ in size D "
            f"({a['train_features'].shape[1]} vs {a['test_features'].shape[1]})"
        )
    K = a["train_labels"].shape[1]
    if a["test_labels"].shape[1] != K or a["label_names"].shape != (K,):
        raise UserError(
            f"{path}: train_labels, test_labels and label_names disagree on the number of "
            f"labels ({K}, {a['test_labels'].shape[1]}, {a['label_names'].shape})"
        )
    return TrainingData(
        f"npz:{os.path.basename(path)}",
        names,
        Rows(a["train_features"]),
        a["train_labels"].astype(np.uint8),
        Rows(a["test_features"]),
        a["test_labels"].astype(np.uint8),
        cnn={"weights": None, "layer": None, "features": os.path.abspath(path)},
    )


def read_features_folder(folder):
    """An ``extract`` folder: (features (N, D) memory-mapped, [N real image paths], meta dict)."""
    for needed in ("features.npy", "images.txt", "meta.json"):
        if not os.path.lexists(os.path.join(folder, needed)):
            raise UserError(
                f"{os.path.join(folder, needed)}: not found (--features must be a folder written by "
                f"`python -m minicnnrnn.extract`)"
            )
    fileio.require_regular(os.path.join(folder, "features.npy"), "features file")  # np.load maps it by name
    try:
        feats = np.load(os.path.join(folder, "features.npy"), mmap_mode="r", allow_pickle=False)
        with fileio.open_regular(os.path.join(folder, "meta.json"), "meta.json", text=True) as f:
            meta = json.load(f)
        with fileio.open_regular(os.path.join(folder, "images.txt"), "image list", text=True) as f:
            paths = [os.path.realpath(line.rstrip("\n")) for line in f if line.strip()]
    except UserError:
        raise
    except Exception as exc:  # a damaged .npy header raises SyntaxError or tokenize.TokenError too
        raise UserError(f"{folder}: unreadable features folder ({type(exc).__name__}: {exc})") from None
    if feats.ndim != 2 or not np.issubdtype(feats.dtype, np.number) or len(feats) != len(paths):
        raise UserError(
            f"{folder}: features.npy {feats.shape} {feats.dtype} is not a numeric matrix with one "
            f"row per line of images.txt ({len(paths)})"
        )
    if not isinstance(meta, dict):
        raise UserError(f"{os.path.join(folder, 'meta.json')}: expected a JSON object")
    schema.check_features(feats, os.path.join(folder, "features.npy"))
    limits.check_finite(feats, os.path.join(folder, "features.npy"))
    return feats, paths, meta


def load_real(name, root, folder):
    """A benchmark's labels (``datasets.load``) joined by image path with an ``extract`` features folder."""

    if not root or not folder:
        raise UserError(
            f"--dataset {name}: needs --root (the dataset folder) and --features (a folder "
            f"written by `python -m minicnnrnn.extract --dataset {name} --root ROOT`)"
        )
    feats, paths, meta = read_features_folder(folder)
    row_of = {p: i for i, p in enumerate(paths)}
    ds = datasets.load(name, root, check_images=False)
    parts = {}
    for split_name, split in ds.splits.items():
        rows = np.array([row_of.get(os.path.realpath(p), -1) for p in split.paths], dtype=np.int64)
        if not (rows >= 0).any():
            raise UserError(
                f"{folder}: no {split_name} image of {name} in {root} has features "
                f"(were they extracted from another folder?)"
            )
        if (rows < 0).any():
            print(f"note: {int((rows < 0).sum())} {split_name} images have no features and are left out")
            split, rows = split.subset(rows >= 0), rows[rows >= 0]
        parts[split_name] = (Rows(feats, rows), split)
    (train_f, train), (test_f, test) = parts["train"], parts["test"]
    return TrainingData(
        name,
        list(ds.label_names),
        train_f,
        train.labels,
        test_f,
        test.labels,
        test.ignore,
        cnn={"weights": meta.get("weights"), "layer": meta.get("layer", "fc7")},
        test_areas=test.label_areas(),
    )


def drop_unlabelled(data):
    """Training images without any label have no path to learn; leave them out (with a note)."""
    keep = data.train_labels.sum(axis=1) > 0
    if not keep.any():
        raise UserError(f"{data.name}: no training image has a label")
    if keep.all():
        return data
    print(f"note: {int((~keep).sum())} training images without labels are left out")
    features = Rows(data.train_features.array, data.train_features.rows[keep])
    return dataclasses.replace(data, train_features=features, train_labels=data.train_labels[keep])
