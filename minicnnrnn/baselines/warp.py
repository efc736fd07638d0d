"""WARP: a linear label ranker trained with the Weighted Approximate-Rank Pairwise loss.

The baseline of Tables 1-3 ("WARP", Gong et al. 2013, the paper's ref. [9], after
Weston et al. 2011): every label gets a linear score of the image feature and the
labels are ranked by it; the top k are predicted (§4.1, like bce and softmax)::

    s = I @ W + b                                   # (N, K) one score per label

The loss (Weston et al. 2011, WSABIE) asks every positive label p of an image to
score at least 1 above every negative label q, and weighs each violation by how badly
p is ranked. The rank of p is not computed (that needs every score); it is estimated
by sampling: negatives are drawn at random (here without replacement) until one
violates the margin, ``1 + s_q - s_p > 0``. If that took ``t`` draws, about
``(K - |Y|) / t`` negatives outrank p, so::

    r       = floor((K - |Y|) / t)                  # estimated rank of p
    L(r)    = sum_{j=1..r} 1/j                      # rank weight: large when p is far down
    loss    = (1/N) sum_{(n, p)} L(r_np) * max(0, 1 - s_np + s_nq)

with q the sampled violator of the pair (n, p) (pairs without a violator contribute 0).
The sample is drawn on the host from the run's Generator (:func:`warp_sample`); for a
fixed sample the loss is a plain function of the scores, whose gradient
:func:`warp_loss` computes by hand (gradient-checked by ``gradcheck/cases_baselines.py``)::

    dL/ds_np = -L(r) / N,   dL/ds_nq = +L(r) / N      (for a violated pair)

Parameters ``W: (D, K)``, ``b: (K,)`` (host arrays from :func:`init_warp`).
"""

import numpy as np

from minicnnrnn.core import backend
from minicnnrnn.layers import dense


def init_warp(K, D, rng, dtype=np.float32):
    """Small random W (D, K) (std 0.01) and zero b (K,): host arrays."""
    return {"W": (0.01 * rng.standard_normal((D, K))).astype(dtype), "b": np.zeros(K, dtype=dtype)}


def warp_scores(params, I):
    """Label scores s = I @ W + b. I: (N, D) -> (scores (N, K), cache)."""
    return dense.dense_forward(I, params["W"], params["b"])


def rank_weights(K):
    """L(r) = sum_{j=1..r} 1/j for r = 0..K: (K + 1,) float64, L(0) = 0."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, K + 1))])


def warp_sample(scores, y, rng):
    """Sample one margin violator per (image, positive label) pair, and its rank weight.

    scores: (N, K) host or device; y: (N, K) 0/1 host; rng: numpy Generator (one
    ``rng.random((pairs, K))`` draw: the random order in which negatives are tried).
    Returns host arrays (rows, pos, neg, weight), one entry per pair that has a
    violator: image row, positive label, sampled violating negative, L(r).
    """
    s = backend.to_host(scores).astype(np.float64)
    y = np.asarray(y) > 0
    rows, pos = np.nonzero(y)
    K = y.shape[1]
    keys = rng.random((len(rows), K))  # the order of the draws: smallest key first
    negative = ~y[rows]
    violates = negative & (1.0 + s[rows] - s[rows, pos][:, None] > 0)
    found = violates.any(axis=1)
    first = np.where(violates, keys, np.inf).argmin(axis=1)  # the first violator drawn
    trials = (negative & (keys <= keys[np.arange(len(rows)), first][:, None])).sum(axis=1)
    n_neg = negative.sum(axis=1)
    rank = np.floor(n_neg / np.maximum(trials, 1)).astype(np.int64)
    weight = rank_weights(K)[rank]
    keep = found
    return rows[keep], pos[keep], first[keep], weight[keep]


def warp_loss(scores, sample, N):
    """The WARP loss of a fixed sample and its gradient with respect to the scores.

    scores: (N, K) host or device; sample: :func:`warp_sample`'s (rows, pos, neg, weight);
    N: images in the batch. The scatter of the pairs' terms is done on the host (a pair
    list is small; a negative can be the violator of several pairs: ``np.add.at`` sums).
    Returns (loss: float, dscores (N, K) on the backend, in the scores' dtype).
    """
    rows, pos, neg, weight = sample
    s = backend.to_host(scores).astype(np.float64)
    margin = 1.0 + s[rows, neg] - s[rows, pos]  # (P,)
    g = weight * (margin > 0) / N
    value = float((g * margin).sum())
    dscores = np.zeros(s.shape)
    np.add.at(dscores, (rows, pos), -g)
    np.add.at(dscores, (rows, neg), g)
    return value, backend.to_device(dscores, scores.dtype)


def warp_batch_loss(params, I, y, rng):
    """Scores, one sample of violators and the loss of a mini-batch (§3.4's loop, WARP's loss).

    I: (N, D) on the backend; y: (N, K) host 0/1. Returns (loss, grads {"W", "b"}).
    """
    scores, cache = warp_scores(params, I)
    value, dscores = warp_loss(scores, warp_sample(scores, y, rng), I.shape[0])
    _dI, g = dense.dense_backward(dscores, cache)
    return value, {"W": g["W"], "b": g["b"]}
