"""Images in: :class:`FeatureExtractor`, the CNN of §4 as a scikit-learn transformer.

    extractor = FeatureExtractor("builtin")                         # the shipped Tiny Scenes CNN, fc7
    extractor = FeatureExtractor("efficientnet-lite0", weights="efficientnet_lite0.npz")
    I = extractor.transform(["a.jpg", "b.png"])                     # (n, D) float32, the paper's I
    make_pipeline(FeatureExtractor("builtin"), CNNRNNClassifier()).fit(paths, Y).predict(paths)

The CNN is read and checked by ``features.network.load`` (as ``extract`` and ``predict``
read it) and run by the one images-to-features function, ``cnn.backbones.feature_rows``;
the layer defaults to ``backbones.default_layer``. An image file is read with
``preprocess.load_image``, and a picture given as an (H, W, 3) uint8 array is resized and
normalised by the same ``preprocess`` functions. The features come back raw: the
classifier that follows fits its own normalisation.
"""

import os

import numpy as np
from PIL import Image

from minicnnrnn.cnn import backbones, efficientnet, preprocess, vgg
from minicnnrnn.core import backend
from minicnnrnn.estimators import base, engine
from minicnnrnn.features import network

# backbone name -> the weights file format it must have (None: the shipped CNN, no file)
BACKBONES = {"builtin": None, "vgg16": vgg.FORMAT, "efficientnet-lite0": efficientnet.FORMAT}


class FeatureExtractor(base.BaseEstimator):
    """Image files (or (H, W, 3) uint8 arrays) -> (n, D) CNN features.

    backbone: "builtin" (the shipped Tiny Scenes CNN, 64x64 drawings), "vgg16" or
    "efficientnet-lite0" (photos; ``weights``: the .npz written by ``python -m
    minicnnrnn.convert``); layer: the output taken (None: fc7 for VGG, the 1280-d pool for
    EfficientNet); batch_size: images per CNN batch. Stateless: ``fit`` only checks the settings."""

    def __init__(self, backbone="builtin", *, weights=None, layer=None, batch_size=16, backend=None, threads=None):
        self.backbone = backbone
        self.weights = weights
        self.layer = layer
        self.batch_size = batch_size
        self.backend = backend
        self.threads = threads

    def _cnn(self):
        """(params on the device, meta, layer) of the chosen CNN, checked against ``backbone``."""
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone: {self.backbone!r} is not one of {', '.join(BACKBONES)}")
        if (self.backbone == "builtin") != (self.weights is None):
            raise ValueError(
                "weights: the builtin backbone has its own weights (give none); vgg16 and "
                "efficientnet-lite0 need the .npz written by `python -m minicnnrnn.convert`"
            )
        weights = None if self.weights is None else os.fspath(self.weights)
        params, meta = network.load(weights, where=f"weights {weights}")
        if BACKBONES[self.backbone] not in (None, meta.get("format")):
            raise ValueError(f"weights: {weights} holds a {meta.get('format')} network, not {self.backbone}")
        layer = self.layer or backbones.default_layer(meta)
        network.feature_dim(meta, layer)  # an unknown layer is one line naming the layers there are
        return backend.params_to_device(params, np.float32), meta, layer

    def fit(self, X=None, y=None):
        """Check the backbone, weights and layer (loads the CNN once). Returns self."""
        with engine.session(self.backend, self.threads):
            self._cnn()
        return self

    def transform(self, images):
        """images: a list of file paths and/or (H, W, 3) uint8 arrays, or one (n, H, W, 3)
        uint8 array -> (n, D) float32 NumPy features (a conv map flattened in (H, W, C) order)."""
        if isinstance(images, (str, os.PathLike)):
            raise ValueError("images: give a list of paths, not one path")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {self.batch_size}")
        with engine.session(self.backend, self.threads):
            params, meta, layer = self._cnn()
            rows = []
            for start in range(0, len(images), self.batch_size):
                batch = np.stack([_prepare(item, meta) for item in images[start : start + self.batch_size]])
                rows.append(backbones.feature_rows(params, meta, batch, layer).astype(np.float32))
        if not rows:
            raise ValueError("images: no image given")
        return np.concatenate(rows)

    def fit_transform(self, images, y=None):
        """The same as ``transform(images)`` -> (n, D) float32 features; fit only checks the settings."""
        return self.fit(images, y).transform(images)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # image files, not a feature matrix
        tags.requires_fit = False
        return tags


def _prepare(item, meta):
    """One image (a file path, or an (H, W, 3) uint8 array) -> the (S, S, 3) float32 input
    of the CNN, resized and normalised as ``meta["preprocess"]`` records."""
    if isinstance(item, (str, os.PathLike)):
        return preprocess.load_image(item, meta)
    pixels = np.asarray(item)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"images: an array must be (H, W, 3) uint8 RGB, got {pixels.shape} {pixels.dtype}")
    pre = meta["preprocess"]
    image = preprocess.resize_image(Image.fromarray(pixels), meta["input_size"], pre["resize"], "image array")
    return preprocess.normalise(np.asarray(image, dtype=np.uint8), pre)
