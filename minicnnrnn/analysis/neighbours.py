"""Table 5 and Fig. 9 (§4.5): nearest neighbours in the joint label-image space.

The CNN-RNN puts labels and images in one E-dimensional space: a label is its row of
the embedding matrix ``U_l`` (Eq. 2, also its output vector in Eq. 5), an image is
what Eq. 4 adds to every step, the projected image term ``I @ U_I_x + b_x``. Nearness
is the cosine of two vectors.

* :func:`label_neighbours`: for every label, the labels whose rows of ``U_l`` are
  nearest (Table 5: labels that co-occur, or that mean nearly the same, end up close);
* :func:`image_neighbours`: for an image, the labels nearest to its image term
  (Fig. 9), to set beside what the beam search predicts and the truth.
"""

import numpy as np

from minicnnrnn.core import backend, ranking
from minicnnrnn.rnn import projection


def cosine_matrix(A, B):
    """(n, m) cosines of the rows of A (n, E) and B (m, E), host float64 (zero rows: 0)."""
    A, B = (np.asarray(backend.to_host(M), np.float64) for M in (A, B))
    A = A / np.maximum(np.linalg.norm(A, axis=1, keepdims=True), 1e-12)
    B = B / np.maximum(np.linalg.norm(B, axis=1, keepdims=True), 1e-12)
    return A @ B.T


def label_neighbours(U_l, names, n=5):
    """Table 5. U_l: (K or more, E), its first K rows the labels (END/START rows left out);
    names: the K label names. Returns ``[(label, [(neighbour, cosine), ...n])]``, a label
    never its own neighbour; ties by label index."""
    K = len(names)
    sim = cosine_matrix(U_l[:K], U_l[:K])
    np.fill_diagonal(sim, -np.inf)
    rows = []
    for k in range(K):
        order = ranking.top_k(sim[k], min(n, K - 1))
        rows.append((names[k], [(names[j], float(sim[k, j])) for j in order]))
    return rows


def image_neighbours(params, I, names, n=5):
    """Fig. 9. params: a CNN-RNN's (U_I_x, b_x, U_l); I: (N, D) normalised features.
    Returns (N,) lists ``[(label, cosine), ...n]``: the labels nearest to each image term."""
    image = projection.image_and_bias(backend.to_device(np.asarray(I, np.float32)), params)
    sim = cosine_matrix(image, params["U_l"][: len(names)])
    order = ranking.top_k(sim, n)
    return [[(names[j], float(sim[i, j])) for j in row] for i, row in enumerate(order)]
