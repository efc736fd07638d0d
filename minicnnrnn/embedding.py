"""One matrix, two jobs: the label embedding (Eq. 2) and the tied label scores (Eq. 5).

``U_l: (K + 2, E)``; row ``k`` is the embedding ``w_k`` of token ``k`` (labels
``0 .. K-1``, END ``= K``, START ``= K + 1``).

* Eq. 2, ``w_k = U_l . e_k``: multiplying by a one-hot vector picks row ``k``, so the
  forward is a row lookup ``U_l[tokens]``.
* Eq. 5, ``s(t) = U_l^T x_t``: the score of output ``k`` is the dot product of the
  joint-space vector ``x_t`` with the same row ``w_k``. Only the ``K + 1`` outputs
  (labels and END) are scored; START is an input, never an output.

Because both uses read ``U_l``, its gradient is the sum of two parts: one from the
embedding lookups (rows of the tokens fed in) and one from the scores (rows of
every output). ``model.path_backward`` adds them.
"""
from .backend import xp


def embed_forward(tokens, U_l):
    """Eq. 2: look up the embedding of each token.

    tokens: integer array of any shape S (e.g. (T, N)); U_l: (V, E).
    Returns (w, cache) with w: S + (E,).
    """
    return U_l[tokens], (tokens, U_l.shape, U_l.dtype)


def embed_backward(dw, cache):
    """Backward of :func:`embed_forward`: scatter-add ``dw`` into the rows of U_l.

    dw: S + (E,). Returns dU_l: (V, E). A token that appears several times
    receives the sum of its gradients. The scatter is written as a one-hot
    matrix product (Eq. 2 read backwards), which is deterministic and the same
    code on NumPy and CuPy.
    """
    tokens, (V, E), dtype = cache
    flat = tokens.reshape(-1)
    one_hot = (flat[:, None] == xp.arange(V)[None, :]).astype(dtype)   # (M, V)
    return one_hot.T @ dw.reshape(flat.shape[0], E)


def tied_scores_forward(x, U_l, n_out):
    """Eq. 5: scores of the first ``n_out`` tokens (labels and END) against x.

    x: (..., E) joint-space vectors (e.g. (T, N, E)); U_l: (V, E); n_out <= V
    (``K + 1`` in the model). Returns (s, cache) with s: (..., n_out).
    """
    s = x @ U_l[:n_out].T
    return s, (x, U_l, n_out)


def tied_scores_backward(ds, cache):
    """Backward of :func:`tied_scores_forward`.

    ds: (..., n_out). Returns (dx (..., E), dU_l (V, E)); rows ``n_out ..`` of dU_l
    (START) are zero because START is never scored.
    """
    x, U_l, n_out = cache
    E = x.shape[-1]
    dx = ds @ U_l[:n_out]
    dU_l = xp.zeros_like(U_l)
    dU_l[:n_out] = ds.reshape(-1, n_out).T @ x.reshape(-1, E)
    return dx, dU_l
