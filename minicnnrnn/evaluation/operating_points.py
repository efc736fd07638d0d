"""Classifiers at matched operating points, for a fair comparison with the path models.

A path model predicts as many labels per image as its path holds (the CNN-RNN: about 2.4
on the built-in data), a top-k classifier always k. Precision and recall move with the
number of labels, so ``train --compare`` also scores the BCE classifier's own confidences

* at the path model's per-image label counts (:func:`top_per_image`): image i gets its
  ``counts[i]`` most confident labels, exactly as many as the CNN-RNN predicted for it;
* thresholded (:func:`thresholded`): every label with sigmoid >= 0.5, at most k.

Shapes: scores (N, K) confidences; counts (N,) ints; returns (N, K) uint8 0/1.
"""

import numpy as np

from minicnnrnn.core import ranking


def top_per_image(scores, counts):
    """The ``counts[i]`` highest-scoring labels of image i (ties: lower label index).

    scores: (N, K); counts: (N,) ints in 0..K. Returns pred01 (N, K) uint8.
    """
    scores = np.asarray(scores)
    counts = np.asarray(counts, dtype=np.int64)
    if counts.shape != scores.shape[:1] or (counts < 0).any() or (counts > scores.shape[1]).any():
        raise ValueError(f"counts: expected ({scores.shape[0]},) ints in 0..{scores.shape[1]}, got {counts.shape}")
    rank = np.empty(scores.shape, dtype=np.int64)  # rank of each label within its image, 0 = best
    np.put_along_axis(rank, ranking.ranked(scores), np.arange(scores.shape[1])[None], axis=1)
    return (rank < counts[:, None]).astype(np.uint8)


def thresholded(scores, threshold=0.5, cap=None):
    """Every label with score >= ``threshold``, at most ``cap`` per image (the most confident).

    scores: (N, K); cap: None (no cap) or an int. Returns pred01 (N, K) uint8.
    """
    scores = np.asarray(scores)
    counts = (scores >= threshold).sum(axis=1)
    if cap is not None:
        counts = np.minimum(counts, int(cap))
    return top_per_image(scores, counts)
