"""Gradient checks of the RNN half (§3): LSTM (Eq. 1), embedding and tied scores
(Eq. 2, 5), projection (Eq. 4), the losses and the whole path loss.

Each case builds a small float64 problem on the host (so every backend sees the
same numbers), runs the forward and backward, and returns the largest relative
error against centred finite differences (:mod:`minicnnrnn.core.numgrad`).
"""

import numpy

from minicnnrnn.core import backend
from minicnnrnn.core.numgrad import check
from minicnnrnn.gradcheck.cases_layers import dot, randn
from minicnnrnn.layers import dropout, loss
from minicnnrnn.paths import tokens
from minicnnrnn.rnn import embedding, lstm, model, projection


def _lstm_params(rng, E, H, variant):
    params = model.init_params(3, 2, E, H, rng, variant, dtype=numpy.float64)
    params = {k: params[k] for k in ("U_r", "U_w", "b_lstm")}
    # Random biases so that no gate sits exactly at its init value; wider for the capped
    # ReLU, so that some gates sit above its cap of 1 and its zero slope there is checked too.
    params["b_lstm"] += rng.standard_normal(4 * H) * (0.8 if variant == "bounded" else 0.3)
    return backend.params_to_device(params, numpy.float64)


def _path_mask(lengths, T):
    """(T, N) mask with 1 for the first ``lengths[n]`` steps of column n."""
    return backend.to_device((numpy.arange(T)[:, None] < numpy.asarray(lengths)[None, :]), numpy.float64)


def lstm_step_case(variant, bias=True):
    """Case function checking lstm.lstm_step_forward/step_backward for one variant
    (``bias`` False: without ``b_lstm``, the paper's Eq. 1 as printed)."""

    def case(rng):
        N, E, H = 3, 4, 5
        params = _lstm_params(rng, E, H, variant)
        if not bias:
            params.pop("b_lstm")
        w, r_prev = randn(rng, N, E), randn(rng, N, H)
        Go, Gr = randn(rng, N, H), randn(rng, N, H)

        def f():
            (o, r), _ = lstm.lstm_step_forward(w, r_prev, params, variant)
            return dot(o, Go) + dot(r, Gr)

        _, cache = lstm.lstm_step_forward(w, r_prev, params, variant)
        dw, dr_prev, grads = lstm.lstm_step_backward(Go, Gr, cache)
        return check(f, dict(params, w=w, r_prev=r_prev), dict(grads, w=dw, r_prev=dr_prev))

    return case


def lstm_sequence_case(variant):
    """Case function checking lstm.lstm_forward/backward (BPTT) with a padding mask."""

    def case(rng):
        T, N, E, H = 4, 3, 4, 5
        params = _lstm_params(rng, E, H, variant)
        w_seq, G = randn(rng, T, N, E), randn(rng, T, N, H)
        mask = _path_mask([4, 2, 3], T)
        r0 = randn(rng, N, H, scale=0.5)

        def f():
            return dot(lstm.lstm_forward(w_seq, mask, params, variant, r0)[0], G)

        _, cache = lstm.lstm_forward(w_seq, mask, params, variant, r0)
        dw_seq, grads = lstm.lstm_backward(G, cache)
        return check(f, dict(params, w_seq=w_seq), dict(grads, w_seq=dw_seq))

    return case


def lstm_plain_sequence_case(rng):
    """The plain loop over steps (lstm.lstm_forward_plain/backward_plain), which the fast
    sequence is tested against, checked on its own; the last path ends early."""
    T, N, E, H = 4, 3, 4, 5
    params = _lstm_params(rng, E, H, "bounded")
    w_seq, G = randn(rng, T, N, E), randn(rng, T, N, H)
    mask = _path_mask([4, 4, 3], T)

    def f():
        return dot(lstm.lstm_forward_plain(w_seq, mask, params, "bounded")[0], G)

    dw_seq, grads = lstm.lstm_backward_plain(G, lstm.lstm_forward_plain(w_seq, mask, params, "bounded")[1])
    return check(f, dict(params, w_seq=w_seq), dict(grads, w_seq=dw_seq))


def embedding_tied_case(rng):
    """Embedding lookup and tied scores sharing one U_l: L = <s(U_l[tokens] * y), G>."""
    V, E, T, N = 6, 4, 3, 2
    U_l = randn(rng, V, E)
    tokens = backend.to_device(numpy.array([[5, 0], [1, 1], [3, 5]]))  # repeats, START row 5
    y, G = randn(rng, T, N, E), randn(rng, T, N, V - 1)

    def forward():
        w, e_cache = embedding.embed_forward(tokens, U_l)
        s, s_cache = embedding.tied_scores_forward(w * y, U_l, V - 1)
        return w, s, e_cache, s_cache

    w, s, e_cache, s_cache = forward()
    dx, score_grads = embedding.tied_scores_backward(G, s_cache)
    dU_scores, dU_embed = score_grads["U_l"], embedding.embed_backward(dx * y, e_cache)["U_l"]
    return check(lambda: dot(forward()[1], G), {"U_l": U_l}, {"U_l": dU_scores + dU_embed})


def projection_case(rng):
    """Eq. 4 with bias and an inverted-dropout mask."""
    T, N, H, D, E = 3, 2, 4, 5, 3
    params = {"U_o_x": randn(rng, H, E), "U_I_x": randn(rng, D, E), "b_x": randn(rng, E)}
    o, I, G = randn(rng, T, N, H), randn(rng, N, D), randn(rng, T, N, E)
    mask = dropout.make_mask((T, N, E), 0.3, rng, numpy.float64)

    def f():
        return dot(projection.projection_forward(o, I, params, mask)[0], G)

    _, cache = projection.projection_forward(o, I, params, mask)
    do, dI, grads = projection.projection_backward(G, cache)
    return check(f, dict(params, o=o, I=I), dict(grads, o=do, I=dI))


def softmax_loss_case(rng):
    """Masked softmax cross-entropy; a padded step carries an out-of-range target."""
    T, N, C = 3, 4, 5
    scores = randn(rng, T, N, C, scale=3.0)
    targets = backend.to_device(numpy.array([[0, 1, 2, 3], [4, 4, 0, 1], [2, 99, 3, 0]]))
    mask = _path_mask([3, 2, 3, 1], T)
    _, dscores = loss.softmax_cross_entropy(scores, targets, mask)
    return check(lambda: loss.softmax_cross_entropy(scores, targets, mask)[0], {"scores": scores}, {"scores": dscores})


def sigmoid_loss_case(rng):
    """Sigmoid binary cross-entropy with an ignore mask."""
    N, K = 3, 4
    scores = randn(rng, N, K, scale=3.0)
    y = backend.to_device(rng.random((N, K)) < 0.5, numpy.float64)
    mask = backend.to_device(rng.random((N, K)) < 0.8, numpy.float64)
    _, dscores = loss.sigmoid_cross_entropy(scores, y, mask)
    return check(lambda: loss.sigmoid_cross_entropy(scores, y, mask)[0], {"scores": scores}, {"scores": dscores})


def path_loss_case(variant):
    """Case function: the whole path loss (Eq. 1, 2, 4, 5 + softmax) w.r.t. every parameter."""

    def case(rng):
        K, D, E, H, T, N = 4, 5, 3, 4, 3, 3
        params = backend.params_to_device(model.init_params(K, D, E, H, rng, variant, numpy.float64))
        I = randn(rng, N, D)
        S, END = tokens.start_token(K), tokens.end_token(K)
        inputs = backend.to_device(numpy.array([[S, S, S], [2, 0, 1], [3, 0, 1]]))
        targets = backend.to_device(numpy.array([[2, 0, 1], [3, END, END], [END, 0, 0]]))
        mask = _path_mask([3, 2, 2], T)
        drop = dropout.make_mask((T, N, E), 0.25, rng, numpy.float64)

        def f():
            return model.path_loss(params, I, inputs, targets, mask, variant, drop)[0]

        _, grads = model.path_loss(params, I, inputs, targets, mask, variant, drop)
        return check(f, params, grads)

    return case


CASES = [
    ("lstm step (relu)", lstm_step_case("relu")),
    ("lstm step (bounded)", lstm_step_case("bounded")),
    ("lstm step (conventional)", lstm_step_case("conventional")),
    ("lstm step, no bias (bounded)", lstm_step_case("bounded", bias=False)),
    ("lstm sequence, masked (relu)", lstm_sequence_case("relu")),
    ("lstm sequence, masked (bounded)", lstm_sequence_case("bounded")),
    ("lstm sequence, masked (conventional)", lstm_sequence_case("conventional")),
    ("lstm sequence, plain loop (bounded)", lstm_plain_sequence_case),
    ("embedding + tied scores", embedding_tied_case),
    ("projection + dropout", projection_case),
    ("softmax cross-entropy, masked", softmax_loss_case),
    ("sigmoid cross-entropy", sigmoid_loss_case),
    ("path loss end to end (relu)", path_loss_case("relu")),
    ("path loss end to end (bounded)", path_loss_case("bounded")),
    ("path loss end to end (conventional)", path_loss_case("conventional")),
]
