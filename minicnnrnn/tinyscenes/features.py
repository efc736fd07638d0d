"""The shipped small CNN and the image representation ``I`` it gives Tiny Scenes pictures.

In the paper (§3.2, §4) the image representation ``I`` of Eq. 4 is the fc7
activation of a VGG16 trained on ImageNet and then kept fixed. The built-in
dataset has its own stand-in: a small VGG-style network trained by
``python -m minicnnrnn.pretrain`` on the *pretrain* split (pictures the CNN-RNN
never sees) and shipped as ``minicnnrnn/weights/tinyscenes_cnn.npz``. Its fc7
activations of the *train* and *test* splits are the default features of
``python -m minicnnrnn.train``.

* :func:`load_builtin_cnn` reads the shipped weights and checks them against the
  SHA-256 recorded in ``tinyscenes_cnn.json``;
* :func:`builtin_features` runs that CNN over a split and caches the result on
  disk (keyed by the weights' checksum, the dataset key, the layer and backend);
* :func:`run_cnn` runs any layer of a CNN over uint8 pictures batch by batch
  (:func:`minicnnrnn.cnn.backbones.feature_rows` on each; shared with
  :mod:`minicnnrnn.pretrain`).
"""

import hashlib
import json
import os

import numpy as np

from minicnnrnn.cnn import backbones, preprocess, vgg
from minicnnrnn.core import backend, progress
from minicnnrnn.core.errors import UserError
from minicnnrnn.tinyscenes import cache, scenes

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")
WEIGHTS_PATH = os.path.join(WEIGHTS_DIR, "tinyscenes_cnn.npz")


def sidecar_path(weights_path):
    """``x.npz`` -> ``x.json``: the record of how a weights file was made, with its checksum."""
    return os.path.splitext(weights_path)[0] + ".json"


def file_sha256(path):
    """SHA-256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_builtin_cnn(path=WEIGHTS_PATH):
    """The shipped CNN: ``(params {name: host float32 array}, meta dict)``.

    The file's SHA-256 must equal the one in its ``.json`` record; a missing,
    truncated or altered file raises a one-line UserError instead of silently
    giving wrong features.
    """
    record_path = sidecar_path(path)
    if not os.path.exists(path):
        raise UserError(
            f"{path}: built-in CNN weights are missing; reinstall minicnnrnn or run "
            f"`python -m minicnnrnn.pretrain --out {path}`"
        )
    try:
        with open(record_path, encoding="utf-8") as f:
            expected = json.load(f)["sha256"]
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{record_path}: cannot read the weights' checksum record ({type(exc).__name__})") from None
    actual = file_sha256(path)
    if actual != expected:
        raise UserError(
            f"{path}: damaged built-in CNN weights (sha256 {actual[:12]}... but "
            f"{os.path.basename(record_path)} records {expected[:12]}...); reinstall minicnnrnn"
        )
    params, meta = vgg.load(path)
    return {k: v.astype(np.float32) for k, v in params.items()}, meta


def run_cnn(params, meta, images, layer="fc7", batch_size=256, desc=None):
    """One layer's activations for uint8 pictures, computed batch by batch on the selected backend.

    params: {name: array} on the backend (see ``backend.params_to_device``);
    images: (N, S, S, 3) uint8 (host). Returns (N, D) float32 on the host, a
    conv/pool output flattened in (H, W, C) order. desc: show progress under this name.
    """
    out = None
    bar = progress.bar(len(images), desc, "pic", plain_lines=True) if desc else progress.PlainLines(0, every=None)
    for start in range(0, len(images), batch_size):
        x = preprocess.normalise(images[start : start + batch_size], meta["preprocess"])
        h = backbones.feature_rows(params, meta, x, layer)
        if out is None:
            out = np.empty((len(images), h.shape[1]), dtype=np.float32)
        out[start : start + len(x)] = h
        bar.update(len(x))
    bar.close()
    return out


def builtin_features(split, n, layer="fc7", batch_size=256, cache_dir=None, weights=WEIGHTS_PATH):
    """The shipped CNN's ``layer`` activations of the first ``n`` pictures of a Tiny Scenes split.

    split: "pretrain", "train" or "test". Returns ``(features (n, D) float32,
    labels (n, K) uint8)``, both host arrays. Pictures and features are cached
    (see :mod:`minicnnrnn.tinyscenes.cache`); features are recomputed whenever the
    weights (their checksum), the pictures, the layer or the backend change.
    """
    params, meta = load_builtin_cnn(weights)
    size = meta["input_size"]
    key = cache.make_key(
        "features",
        weights=file_sha256(weights)[:16],
        layer=layer,
        backend=backend.name(),
        data=scenes.dataset_key(split, n, size),
    )
    hit = cache.load(key, ("features", "labels"), cache_dir)
    if hit is not None:
        return hit["features"], hit["labels"]
    images, labels = scenes.load(split, n, size=size, cache_dir=cache_dir)
    progress.say(f"running the built-in CNN on {n} {split} pictures ({layer}; once: cached like the pictures)")
    features = run_cnn(backend.params_to_device(params), meta, images, layer, batch_size, f"CNN on {split} pictures")
    cache.save(key, cache_dir, features=features, labels=labels)
    return features, labels
