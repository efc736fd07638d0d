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

from minicnnrnn.core.backend import xp


def embed_forward(tokens, U_l):
    """Eq. 2: look up the embedding of each token.

    tokens: integer array of any shape S (e.g. (T, N)); U_l: (V, E).
    Returns (w, cache) with w: S + (E,).
    """
    return U_l[tokens], (tokens, U_l.shape, U_l.dtype)


def embed_backward(dw, cache):
    """Backward of :func:`embed_forward`: scatter-add ``dw`` into the rows of U_l.

    dw: S + (E,). Returns grads = {"U_l": dU_l (V, E)} (tokens have no gradient). A token that appears several times
    receives the sum of its gradients. The scatter is Eq. 2 read backwards, a
    one-hot matrix product, over only the U distinct tokens of the batch: a
    (U, M) @ (M, E) product instead of (V, M) @ (M, E), which matters when the
    vocabulary is large (V = 1002 but U <= M = T * N). A product, unlike
    ``add.at``, sums repeated tokens in a fixed order on NumPy and CuPy alike,
    so the result is deterministic.
    """
    tokens, (V, E), dtype = cache
    flat = tokens.reshape(-1)  # (M,)
    present, which = xp.unique(flat, return_inverse=True)  # flat == present[which]
    one_hot = (which.reshape(-1, 1) == xp.arange(present.shape[0])).astype(dtype)  # (M, U)
    dU_l = xp.zeros((V, E), dtype=dtype)
    dU_l[present] = one_hot.T @ dw.reshape(flat.shape[0], E)
    return {"U_l": dU_l}


def tied_scores_forward(x, U_l, n_out):
    """Eq. 5: scores of the first ``n_out`` tokens (labels and END) against x.

    x: (..., E) joint-space vectors (e.g. (T, N, E)); U_l: (V, E); n_out <= V
    (``K + 1`` in the model). Returns (s, cache) with s: (..., n_out).
    """
    E = x.shape[-1]
    # One (T*N, E) product rather than T batched (N, E) ones: fewer, larger BLAS calls.
    s = (x.reshape(-1, E) @ U_l[:n_out].T).reshape(x.shape[:-1] + (n_out,))
    return s, (x, U_l, n_out)


def tied_scores_backward(ds, cache):
    """Backward of :func:`tied_scores_forward`.

    ds: (..., n_out). Returns (dx (..., E), {"U_l": dU_l (V, E)}); rows ``n_out ..`` of dU_l
    (START) are zero because START is never scored.
    """
    x, U_l, n_out = cache
    E = x.shape[-1]
    ds_rows, x_rows = ds.reshape(-1, n_out), x.reshape(-1, E)
    dx = (ds_rows @ U_l[:n_out]).reshape(x.shape)
    dU_l = xp.zeros_like(U_l)
    xp.matmul(ds_rows.T, x_rows, out=dU_l[:n_out])
    return dx, {"U_l": dU_l}
