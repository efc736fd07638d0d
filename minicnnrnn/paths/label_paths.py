"""Training targets of the CNN-RNN: each image's label set as an ordered prediction path (§3.4).

The RNN predicts a label *sequence*, but an image's ground truth is a *set*. Training
therefore fixes one order for the labels and turns every set into a path that ends with
the END token. The paper orders labels by their frequency in the training set, most
frequent first ("easier objects should be predicted first to help predict more difficult
objects"); it also tried one fixed random order and found no notable difference.

An image with ordered labels ``(a, b)`` becomes (tokens as in docs/DESIGN.md: labels
``0 .. K-1``, ``END = K``, ``START = K + 1``)::

    inputs  = [START, a,   b  ]     # what the RNN reads at step t (label of step t-1)
    targets = [a,     b,   END]     # what it must predict at step t
    mask    = [1,     1,   1  ]     # 0 on padding

and a mini-batch is padded with ``mask == 0`` to its longest path. An image without
labels gives the one-step path ``inputs = [START], targets = [END]``.

Everything here works on host NumPy arrays (it is bookkeeping, not compute); the training
loop moves the results to the device.
"""

import numpy as np

from minicnnrnn.core.errors import UserError
from minicnnrnn.paths.tokens import end_token, start_token

ORDERS = ("freq", "rare", "random", "pla", "mla")  # pla, mla: each image in the model's order (alignment.py)


def label_order(train_labels, how="freq", seed=0):
    """The fixed order in which labels appear in every training path.

    train_labels: (N, K) 0/1 labels of the training set.
    how: "freq" (most frequent first, as in the paper), "rare" (least frequent first) or
         "random" (one fixed permutation drawn from ``seed``; the paper's "fixed random order");
         "pla" and "mla" order each image's path anew by the model's predictions
         (``paths/alignment.py``): their fixed order is "freq", kept for the record.
    Returns order: (K,) int64, a permutation of 0..K-1; ``order[0]`` comes first in a path.
    Ties in frequency are broken by label index, so the order is deterministic.
    """
    labels = np.asarray(train_labels)
    K = labels.shape[1]
    if how == "random":
        return np.random.default_rng(seed).permutation(K).astype(np.int64)
    counts = (labels > 0).sum(axis=0)
    if how in ("freq", "pla", "mla"):
        key = -counts
    elif how == "rare":
        key = counts
    else:
        raise UserError(f"--label-order: unknown order {how!r}; choose one of: {', '.join(ORDERS)}")
    return np.argsort(key, kind="stable").astype(np.int64)


def ordered_labels(labels, order):
    """Each image's positive labels listed in path order.

    labels: (N, K) 0/1; order: (K,) permutation from :func:`label_order`.
    Returns (rows, tokens, positions), three (P,) int64 arrays over the P positive entries:
    image ``rows[p]`` has label ``tokens[p]`` at step ``positions[p]`` of its path.
    """
    labels = np.asarray(labels)
    # Reordering the columns puts each row's positives in path order; nonzero() then lists
    # them row by row, left to right.
    rows, ranks = np.nonzero(labels[:, order] > 0)
    tokens = order[ranks]
    lengths = np.bincount(rows, minlength=labels.shape[0])
    first = np.cumsum(lengths) - lengths  # index of each row's first positive
    positions = np.arange(rows.size) - first[rows]
    return rows.astype(np.int64), tokens.astype(np.int64), positions.astype(np.int64)


def make_paths(labels, order):
    """Turn a mini-batch of label sets into padded, time-major RNN paths.

    labels: (N, K) 0/1 labels; order: (K,) label order (:func:`label_order`).
    Returns
      inputs:  (T, N) int64, START then the labels in order (the embedding lookups of Eq. 2);
      targets: (T, N) int64, the labels in order then END (what softmax(s(t)) must predict);
      mask:    (T, N) float32, 1 on the path (its END step included), 0 on padding;
    where T = 1 + the largest number of labels of an image in the batch.
    Padded entries hold END in both inputs and targets (a valid token that the mask hides).
    """
    labels = np.asarray(labels)
    N, K = labels.shape
    if order.shape != (K,):
        raise ValueError(f"order has shape {order.shape}, expected ({K},)")
    rows, tokens, positions = ordered_labels(labels, order)
    lengths = np.bincount(rows, minlength=N)  # labels per image
    T = int(lengths.max(initial=0)) + 1
    END, START = end_token(K), start_token(K)

    inputs = np.full((T, N), END, dtype=np.int64)
    targets = np.full((T, N), END, dtype=np.int64)
    inputs[0] = START
    inputs[positions + 1, rows] = tokens  # step t reads the label of step t-1
    targets[positions, rows] = tokens
    steps = np.arange(T)[:, None]
    mask = (steps <= lengths[None, :]).astype(np.float32)  # label steps and the END step
    return inputs, targets, mask


def path_to_labels(tokens, K):
    """Inverse of a path: the label set of a token sequence (END, START and padding dropped).

    tokens: (L,) ints. Returns (K,) uint8 0/1.
    """
    out = np.zeros(K, dtype=np.uint8)
    tokens = np.asarray(tokens, dtype=np.int64)
    out[tokens[(tokens >= 0) & (tokens < K)]] = 1
    return out


def paths_from_sequences(sequences, K):
    """Padded, time-major paths (as :func:`make_paths`) of label sequences given one by one.

    sequences: N int arrays, image n's labels in the order of its path (distinct labels in
    0..K-1). Returns (inputs, targets, mask) (T, N) with T = 1 + the longest sequence.
    """
    N = len(sequences)
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    T = int(lengths.max(initial=0)) + 1
    END, START = end_token(K), start_token(K)
    inputs = np.full((T, N), END, dtype=np.int64)
    targets = np.full((T, N), END, dtype=np.int64)
    inputs[0] = START
    for n, seq in enumerate(sequences):
        seq = np.asarray(seq, dtype=np.int64)
        inputs[1 : 1 + seq.size, n] = seq
        targets[: seq.size, n] = seq
    mask = (np.arange(T)[:, None] <= lengths[None, :]).astype(np.float32)
    return inputs, targets, mask


def sampling_bound(labels, k):
    """The longest path that P(label in path) and the marginal decodings sample (``--max-path``'s
    default): twice the longest path of ``labels`` (N, K) 0/1 (the training sets) plus k, at
    most K. A model never saw a longer path, so little of its mass lies beyond, and the bound
    keeps the sampling's cost from growing with K (docs/limits.md)."""
    labels = np.asarray(labels)
    return min(labels.shape[1], 2 * int(labels.sum(axis=1).max(initial=0)) + int(k))
