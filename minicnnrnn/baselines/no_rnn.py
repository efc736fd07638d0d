"""The no-RNN baseline of Table 3: the CNN-RNN with its recurrent layer replaced by a linear one.

§4.3: "we also replace the recurrent layer with a linear embedding layer". Everything of
the CNN-RNN stays except Eq. 1; the LSTM output becomes a linear function of the previous
label's embedding alone::

    w(t) = U_l[inputs[t]]                           # Eq. 2, as in the CNN-RNN
    o(t) = w(t) @ U_e + b_e                         # replaces Eq. 1: no state r(t)
    x_t  = ReLU(o(t) @ U_o_x + I @ U_I_x + b_x)     # Eq. 4, dropout as in the CNN-RNN
    s(t) = x_t @ U_l[:K+1].T                        # Eq. 5, tied scores

with ``U_e: (E, H)`` and ``b_e: (H,)``. It is trained on the same label paths with the
same loss (:func:`path_loss`) and decoded by the same searches of ``paths/`` through its
own one-step decoder (:func:`make_step`); each prediction then depends on the image and
on the previous label only (a first-order chain), not on the whole path.
"""

import numpy

from minicnnrnn.core.backend import xp
from minicnnrnn.layers import dense, loss
from minicnnrnn.paths.tokens import n_labels, start_token
from minicnnrnn.rnn import embedding, model, projection


def init_no_rnn(K, D, E, H, rng, dtype=numpy.float32):
    """no-rnn parameters: those of ``model.init_params`` without the LSTM, plus U_e, b_e.

    Returns host arrays: U_l (K+2, E), U_e (E, H), b_e (H,), U_o_x (H, E), U_I_x (D, E), b_x (E,).
    """
    # The LSTM's weights are dropped, so its variant does not matter (the draws are the same).
    params = model.init_params(K, D, E, H, rng, "relu", dtype=dtype)
    for name in ("U_r", "U_w", "b_lstm"):
        params.pop(name)
    params["U_e"] = (rng.standard_normal((E, H)) / numpy.sqrt(E)).astype(dtype)
    params["b_e"] = numpy.zeros(H, dtype=dtype)
    return params


def no_rnn_forward(params, I, inputs, dropout_mask=None):
    """Scores of every step of a batch of label paths without recurrence.

    params: no-rnn dict (backend arrays); I: (N, D); inputs: (T, N) tokens;
    dropout_mask: None or (T, N, E). Padded steps need no mask here: nothing carries
    over between steps, and the loss ignores them.
    Returns (scores (T, N, K+1), cache).
    """
    U_l = params["U_l"]
    T, N = inputs.shape
    E = U_l.shape[1]
    w, embed_cache = embedding.embed_forward(inputs, U_l)  # Eq. 2
    o, linear_cache = dense.dense_forward(w.reshape(T * N, E), params["U_e"], params["b_e"])  # not Eq. 1
    x, proj_cache = projection.projection_forward(o.reshape(T, N, -1), I, params, dropout_mask)  # Eq. 4
    scores, score_cache = embedding.tied_scores_forward(x, U_l, U_l.shape[0] - 1)  # Eq. 5
    return scores, (embed_cache, linear_cache, proj_cache, score_cache)


def no_rnn_backward(dscores, cache):
    """Backward of :func:`no_rnn_forward`. dscores: (T, N, K+1). Returns grads like params."""
    embed_cache, linear_cache, proj_cache, score_cache = cache
    dx, score_grads = embedding.tied_scores_backward(dscores, score_cache)
    do, _dI, grads = projection.projection_backward(dx, proj_cache)
    T, N, H = do.shape
    dw, linear_grads = dense.dense_backward(do.reshape(T * N, H), linear_cache)
    grads["U_e"], grads["b_e"] = linear_grads["W"], linear_grads["b"]
    grads["U_l"] = score_grads["U_l"] + embedding.embed_backward(dw.reshape(T, N, -1), embed_cache)["U_l"]
    return grads


def path_loss(params, I, inputs, targets, mask, dropout_mask=None):
    """Softmax cross-entropy of a batch of paths and its gradients: ``model.path_loss`` with
    the no-rnn scores. Shapes as in :func:`no_rnn_forward`; targets, mask: (T, N).
    Returns (loss: float, grads: dict like params)."""
    scores, cache = no_rnn_forward(params, I, inputs, dropout_mask)
    value, dscores = loss.softmax_cross_entropy(scores, targets, mask)
    return value, no_rnn_backward(dscores, cache)


def make_step(params, I):
    """The one-step decoder of the no-rnn model (Eq. 2, a linear layer in place of Eq. 1, Eq. 4,
    Eq. 5 and the softmax), for the searches of ``paths/`` (no dropout).

    params: no-rnn dict (backend arrays); I: (n, D) image features. Returns
    ``step(prev_tokens, state, rows) -> (log_probs (R, K + 1), state)`` with the contract of
    ``model.make_step``; there is no recurrent state, so ``state`` is always the empty tuple.
    """
    U_l = params["U_l"]
    START = start_token(n_labels(U_l))
    image = projection.image_and_bias(I, params)  # (n, E): Eq. 4's image term, once per image

    def step(prev_tokens, state, rows):
        if prev_tokens is None:
            prev_tokens = xp.full(rows.shape[0], START, dtype=xp.int64)
        o = U_l[prev_tokens] @ params["U_e"] + params["b_e"]
        x = xp.maximum(o @ params["U_o_x"] + image[rows], 0)
        return loss.log_softmax(x @ U_l[: U_l.shape[0] - 1].T), ()

    return step
