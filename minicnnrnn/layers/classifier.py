"""The classifier network: the image half of Eq. 4 followed by one score per label.

One hidden layer in the E-dimensional joint space of Eq. 4, then a score for each of the K
labels, read from the label's row of ``U_l`` as Eq. 5 reads its scores::

    h = I @ U_I_x + b_x                             # (N, E) the image half of Eq. 4
    x = dropout(ReLU(h))                            # (N, E) the image in the joint space
    s = x @ U_l.T + b_l                             # (N, K) one score per label

Parameters (a plain dict with the paper's names): ``U_I_x: (D, E)``, ``b_x: (E,)``,
``U_l: (K, E)`` (labels only: no END/START rows, nothing is embedded), ``b_l: (K,)``.

Two models use this one network: the bce and softmax baselines of Table 3
(``baselines/classifiers.py``, which add their losses) and the concept layer of the
semantic interface (``rnn/semantic.py``, which feeds ``sigmoid(s)`` to the RNN as its
image). It lives here, among the generic layers, so that neither of those rooms imports
the other.
"""

import numpy

from minicnnrnn.layers import activations, dense, dropout

# The parameters of the network, in the order the initialiser draws them.
PARAMS = ("U_I_x", "b_x", "U_l", "b_l")


def init_classifier(K, D, E, rng, dtype=numpy.float32):
    """Fresh host parameters, drawn from ``rng`` like the CNN-RNN's (unit-size activations).

    Returns {"U_I_x": (D, E) ~ N(0, 1/D), "b_x": (E,) of 0.1 (every ReLU starts open),
    "U_l": (K, E) ~ N(0, 1/E), "b_l": (K,) of zeros}.
    """
    params = {
        "U_I_x": rng.standard_normal((D, E)) / numpy.sqrt(D),
        "b_x": numpy.full(E, 0.1),
        "U_l": rng.standard_normal((K, E)) / numpy.sqrt(E),
        "b_l": numpy.zeros(K),
    }
    return {k: v.astype(dtype) for k, v in params.items()}


def classifier_forward(I, params, dropout_mask=None):
    """Label scores of a batch of images (the module docstring's three lines).

    I: (N, D) image features; params: the dict of :data:`PARAMS` (backend arrays);
    dropout_mask: None (no dropout: inference) or (N, E) of 0 and 1/(1-p).
    Returns (scores (N, K), cache).
    """
    h, dense_cache = dense.dense_forward(I, params["U_I_x"], params["b_x"])  # image half of Eq. 4
    a, relu_cache = activations.relu_forward(h)
    x, drop_cache = dropout.dropout_forward(a, dropout_mask)
    s = x @ params["U_l"].T + params["b_l"]  # label l's score: x . U_l[l] (+ b_l[l]), as Eq. 5 scores
    return s, (dense_cache, relu_cache, drop_cache, (x, params["U_l"]))


def classifier_backward(dscores, cache):
    """Backward of :func:`classifier_forward`. dscores: (N, K).

    Returns grads {"U_I_x": (D, E), "b_x": (E,), "U_l": (K, E), "b_l": (K,)}; the image
    feature is a fixed input (the CNN is not trained here), so it gets no gradient.
    """
    dense_cache, relu_cache, drop_cache, (x, U_l) = cache
    dx = dscores @ U_l
    da = dropout.dropout_backward(dx, drop_cache)
    dh = activations.relu_backward(da, relu_cache)
    _dI, dense_grads = dense.dense_backward(dh, dense_cache)
    dU_l, db_l = dscores.T @ x, dscores.sum(axis=0)
    return {"U_I_x": dense_grads["W"], "b_x": dense_grads["b"], "U_l": dU_l, "b_l": db_l}
