"""One ranking for the whole package: a stable argsort, and the best k by score.

Every ranking of labels, images or neighbours (top-k predictions, AP's order, matched
operating points, nearest neighbours) breaks ties the same way, by the lower index, so
that the same scores give the same result on every machine and backend:

    ranked(scores)    = stable_argsort(-scores)      # best first, ties by index
    top_k(scores, k)  = ranked(scores)[..., :k]
"""

import numpy

from minicnnrnn.core import backend


def stable_argsort(a, axis=-1):
    """Indices that sort ``a`` ascending along ``axis``; equal values keep their index order.
    a: a host (NumPy) array, or a backend array (CuPy's sort is always stable and takes no
    ``kind``)."""
    if backend.is_cupy() and not isinstance(a, numpy.ndarray):
        return a.argsort(axis=axis)
    return numpy.argsort(a, axis=axis, kind="stable")


def ranked(scores, axis=-1):
    """Indices from the highest score to the lowest along ``axis`` (ties: lower index first).
    scores: (..., K) -> (..., K) int."""
    return stable_argsort(-scores, axis)


def top_k(scores, k):
    """The ``k`` best indices along the last axis, best first. scores: (..., K) -> (..., k) int."""
    return ranked(scores)[..., :k]
