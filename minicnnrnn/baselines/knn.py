"""KNN: labels voted by the nearest training images in feature space (Table 1's baseline).

The KNN row of Table 1 (from NUS-WIDE's authors, the paper's ref. [2]) predicts an
image's labels from the training images most like it. Here "like" is the cosine of the
CNN features (the same I as every other model, after ``--feature-norm``), and each of the
``n_neighbours`` nearest neighbours votes for its labels with its similarity::

    sim_j   = <I, X_j> / (|I| |X_j|)                 # (n, N_train) cosine similarities
    v_l     = sum_{j in NN(I)} max(sim_j, 0) y_jl / sum_{j in NN(I)} max(sim_j, 0)

``v`` is in [0, 1] (the share of the neighbours' similarity that carries label l), used
for the rankings (MAP@10, mAP); the top-k labels by ``v`` are predicted, as for the
other classifiers. (The neighbour count is ``n_neighbours``, never ``k``: in the glossary
``k`` is the number of labels predicted per image.)

Choosing ``n_neighbours``: there is nothing to train, but it matters (1 gives noisy votes,
many the same frequent labels everywhere). :func:`fit_knn` picks it by leave-one-out on the
training set: for up to 2,000 training images (a fixed random subset), their
neighbours among the other training images vote, and the count in :data:`NEIGHBOUR_GRID`
with the best mean of C-F1 and O-F1 at the run's top-k wins (ties: the smaller count). The
choice is stored with the training features in the checkpoint (params ``X`` (N, D) unit
rows, ``Y`` (N, K) float32 0/1, ``n_neighbours`` (1,) int64; checkpoints written before the
rename call it ``k``, and ``training/checkpoint.py`` renames it on loading).
"""

import numpy as np

from minicnnrnn.core import backend, ranking
from minicnnrnn.core.backend import xp
from minicnnrnn.evaluation import metrics

NEIGHBOUR_GRID = (1, 3, 5, 10, 20, 40)
LOO_IMAGES = 2000  # training images used to choose n_neighbours
_BLOCK = 1024  # query rows compared with the training set at once


def unit_rows(X):
    """Rows scaled to unit length (zero rows stay zero). X: (n, D) on the backend."""
    length = xp.sqrt((X * X).sum(axis=1, keepdims=True))
    return X / xp.maximum(length, 1e-12)


def neighbours(Q, X, n_neighbours, exclude=None):
    """The n_neighbours most similar rows of X for each query. Q: (n, D), X: (N, D) unit rows
    on the backend; exclude: None or (n,) row of X to leave out for each query (leave-one-out).
    Returns (index (n, m) int, similarity (n, m)) with m = min(n_neighbours, rows left), most
    similar first (ties: lower index)."""
    sim = Q @ X.T
    if exclude is not None:
        sim[xp.arange(len(Q)), exclude] = -xp.inf
    m = min(n_neighbours, X.shape[0] - (exclude is not None))
    index = ranking.top_k(sim, m)
    return index, xp.take_along_axis(sim, index, axis=1)


def vote(index, similarity, Y, n_neighbours):
    """v (n, K): the similarity-weighted label votes of the first n_neighbours neighbours
    (module docstring)."""
    w = xp.maximum(similarity[:, :n_neighbours], 0)
    v = (w[:, :, None] * Y[index[:, :n_neighbours]]).sum(axis=1)
    return v / xp.maximum(w.sum(axis=1, keepdims=True), 1e-12)


def fit_knn(cfg, features, labels, rng):
    """The KNN "parameters" of a training set and the leave-one-out choice of n_neighbours.

    features: (N, D) host rows (``train_data.Rows``, normalised); labels: (N, K) 0/1;
    rng: numpy Generator (the subset of training images used to choose n_neighbours).
    Returns host arrays {"X": (N, D) float32 unit rows, "Y": (N, K) float32,
    "n_neighbours": (1,) int64}.
    """
    X = unit_rows(backend.to_device(np.asarray(features[:], np.float32)))
    Y = backend.to_device(np.asarray(labels, np.float32))
    N = X.shape[0]
    queries = np.sort(rng.permutation(N)[: min(LOO_IMAGES, N)])
    grid = [n for n in NEIGHBOUR_GRID if n < N] or [1]
    votes = {n: [] for n in grid}
    for start in range(0, len(queries), _BLOCK):
        rows = backend.to_device(queries[start : start + _BLOCK])  # a device index for device rows
        index, sim = neighbours(X[rows], X, max(grid), exclude=rows)
        for n in grid:
            votes[n].append(backend.to_host(vote(index, sim, Y, n)))
    truth = np.asarray(labels)[queries]
    best, best_n = -1.0, grid[0]
    for n in grid:
        pred = metrics.topk_predictions(np.concatenate(votes[n]), cfg.k)
        m = metrics.precision_recall_f1(pred, truth)
        value = (np.nan_to_num(m["C-F1"]) + np.nan_to_num(m["O-F1"])) / 2  # undefined (no labels): 0
        if value > best + 1e-12:
            best, best_n = value, n
    return {"X": backend.to_host(X), "Y": np.asarray(labels, np.float32), "n_neighbours": np.array([best_n], np.int64)}


def knn_scores(params, I):
    """Votes v (n, K) for the images I (n, D) on the backend, with the stored n_neighbours."""
    n_neighbours = int(backend.to_host(params["n_neighbours"])[0])
    out = []
    for start in range(0, I.shape[0], _BLOCK):
        index, sim = neighbours(unit_rows(I[start : start + _BLOCK]), params["X"], n_neighbours)
        out.append(vote(index, sim, params["Y"], n_neighbours))
    return xp.concatenate(out) if len(out) > 1 else out[0]
