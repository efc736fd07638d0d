"""The 1000 ImageNet (ILSVRC-2012) class names, and the top-k classes of a row of scores.

An ImageNet backbone's ``logits`` layer (``extract --layer logits``) gives 1000
scores per image, in class-index order; the names ship with the package in
``weights/imagenet_classes.txt`` (one per line, index 0 = "tench").
"""

import os

import numpy

from minicnnrnn.core import ranking

NAMES_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights", "imagenet_classes.txt"
)


def class_names():
    """The 1000 class names, index = class number."""
    with open(NAMES_PATH, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if not line.startswith("#")]


def softmax(logits):
    """Row-wise softmax of (N, K) scores (host arrays), computed stably."""
    z = numpy.asarray(logits, dtype=numpy.float64)
    z = numpy.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def top_k(logits, k=5):
    """[[(class, probability), ...] k most probable first] for each row of (N, K) logits."""
    probs = softmax(logits)
    order = ranking.top_k(probs, k)
    return [[(int(c), float(p[c])) for c in row] for p, row in zip(probs, order)]
