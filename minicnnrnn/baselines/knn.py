"""KNN: labels voted by the nearest training images in feature space (Table 1's baseline).

The KNN row of Table 1 (from NUS-WIDE's authors, the paper's ref. [2]) predicts an
image's labels from the training images most like it. Here "like" is the cosine of the
CNN features (the same I as every other model, after ``--feature-norm``), and each of the
k nearest neighbours votes for its labels with its similarity::

    sim_j   = <I, X_j> / (|I| |X_j|)                 # (n, N_train) cosine similarities
    v_k     = sum_{j in kNN(I)} max(sim_j, 0) y_jk / sum_{j in kNN(I)} max(sim_j, 0)

``v`` is in [0, 1] (the share of the neighbours' similarity that carries label k), used
for the rankings (MAP@10, mAP); the top-k labels by ``v`` are predicted, as for the
other classifiers.

Choosing k: there is nothing to train, but k matters (1 gives noisy votes, a large k
the same frequent labels everywhere). :func:`fit_knn` picks it by leave-one-out on the
training set: for up to 2,000 training images (a fixed random subset), their
neighbours among the other training images vote, and the k in :data:`K_GRID` with the
best mean of C-F1 and O-F1 at the run's top-k wins (ties: the smaller k). The choice is
stored with the training features in the checkpoint (params ``X`` (N, D) unit rows,
``Y`` (N, K) float32 0/1, ``k`` (1,) int64).
"""

import numpy as np

from minicnnrnn.core import backend, ranking
from minicnnrnn.core.backend import xp
from minicnnrnn.evaluation import metrics

K_GRID = (1, 3, 5, 10, 20, 40)
LOO_IMAGES = 2000  # training images used to choose k
_BLOCK = 1024  # query rows compared with the training set at once


def unit_rows(X):
    """Rows scaled to unit length (zero rows stay zero). X: (n, D) on the backend."""
    length = xp.sqrt((X * X).sum(axis=1, keepdims=True))
    return X / xp.maximum(length, 1e-12)


def neighbours(Q, X, k, exclude=None):
    """The k most similar rows of X for each query. Q: (n, D), X: (N, D) unit rows on the
    backend; exclude: None or (n,) row of X to leave out for each query (leave-one-out).
    Returns (index (n, k) int, similarity (n, k)), most similar first (ties: lower index)."""
    sim = Q @ X.T
    if exclude is not None:
        sim[xp.arange(len(Q)), exclude] = -xp.inf
    k = min(k, X.shape[0] - (exclude is not None))
    index = ranking.top_k(sim, k)
    return index, xp.take_along_axis(sim, index, axis=1)


def vote(index, similarity, Y, k):
    """v (n, K): the similarity-weighted label votes of the first k neighbours (module docstring)."""
    w = xp.maximum(similarity[:, :k], 0)
    v = (w[:, :, None] * Y[index[:, :k]]).sum(axis=1)
    return v / xp.maximum(w.sum(axis=1, keepdims=True), 1e-12)


def fit_knn(cfg, features, labels, rng):
    """The KNN "parameters" of a training set and the leave-one-out choice of k.

    features: (N, D) host rows (``train_data.Rows``, normalised); labels: (N, K) 0/1;
    rng: numpy Generator (the subset of training images used to choose k).
    Returns host arrays {"X": (N, D) float32 unit rows, "Y": (N, K) float32, "k": (1,) int64}.
    """
    X = unit_rows(backend.to_device(np.asarray(features[:], np.float32)))
    Y = backend.to_device(np.asarray(labels, np.float32))
    N = X.shape[0]
    queries = np.sort(rng.permutation(N)[: min(LOO_IMAGES, N)])
    grid = [k for k in K_GRID if k < N] or [1]
    votes = {k: [] for k in grid}
    for start in range(0, len(queries), _BLOCK):
        rows = backend.to_device(queries[start : start + _BLOCK])  # a device index for device rows
        index, sim = neighbours(X[rows], X, max(grid), exclude=rows)
        for k in grid:
            votes[k].append(backend.to_host(vote(index, sim, Y, k)))
    truth = np.asarray(labels)[queries]
    best, best_k = -1.0, grid[0]
    for k in grid:
        pred = metrics.topk_predictions(np.concatenate(votes[k]), cfg.k)
        m = metrics.precision_recall_f1(pred, truth)
        value = (np.nan_to_num(m["C-F1"]) + np.nan_to_num(m["O-F1"])) / 2  # undefined (no labels): 0
        if value > best + 1e-12:
            best, best_k = value, k
    return {"X": backend.to_host(X), "Y": np.asarray(labels, np.float32), "k": np.array([best_k], np.int64)}


def knn_scores(params, I):
    """Votes v (n, K) for the images I (n, D) on the backend, with the stored k."""
    k = int(backend.to_host(params["k"])[0])
    out = []
    for start in range(0, I.shape[0], _BLOCK):
        index, sim = neighbours(unit_rows(I[start : start + _BLOCK]), params["X"], k)
        out.append(vote(index, sim, params["Y"], k))
    return xp.concatenate(out) if len(out) > 1 else out[0]
