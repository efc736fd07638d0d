"""The CNN-RNN model of §3.2: tokens, parameters and the loss of a batch of label paths.

A path for an image with ordered labels ``(a, b)`` is fed as inputs
``[START, a, b]`` and trained to predict targets ``[a, b, END]``. One batch is
time-major: ``inputs, targets, mask: (T, N)``, padded with mask 0 to the longest path.

The forward pass of a batch chains the four layers::

    w = U_l[inputs]                                  # Eq. 2  (T, N, E)   embedding.py
    o = LSTM(w, mask)                                # Eq. 1  (T, N, H)   lstm.py
    x = ReLU(o @ U_o_x + I @ U_I_x + b_x)            # Eq. 4  (T, N, E)   projection.py
    s = x @ U_l[:K+1].T                              # Eq. 5  (T, N, K+1) embedding.py

and the backward pass runs the same chain in reverse. ``U_l`` appears twice, so
its gradient is the sum of the embedding part and the score part. (The paper's ``x_t``
names two things: in Eq. 1 the candidate update of the LSTM, the gate block ``x`` of
``lstm.py``; in Eq. 4 the joint-space vector ``x`` above. Only the second leaves the LSTM.)

The model has two faces, both here: the teacher-forced path above, for training
(:func:`path_forward`, :func:`path_backward`, :func:`path_loss`), and the one-step decoder
(:func:`make_step`, below its readable version :func:`make_step_plain`) that the searches of
``paths/`` run, feeding the model its own labels.

Parameters (a plain dict, names from the paper):

====== ============ ==========================================
U_l    (K + 2, E)   label embeddings, rows 0..K-1 labels, K END, K+1 START
U_r    (H, 4H)      recurrent weights of the gates [x | i | f | o]
U_w    (E, 4H)      input weights of the gates
b_lstm (4H,)        gate biases (not in the paper's Eq. 1; see init_params)
U_o_x  (H, E)       Eq. 4, recurrent output -> joint space
U_I_x  (D, E)       Eq. 4, image feature -> joint space
b_x    (E,)         Eq. 4 bias
====== ============ ==========================================
"""

import numpy

from minicnnrnn.core import backend
from minicnnrnn.core.backend import xp
from minicnnrnn.layers import loss
from minicnnrnn.paths import tokens
from minicnnrnn.rnn import embedding, lstm, projection


def init_params(K, D, E, H, rng, variant, dtype=numpy.float32):
    """Fresh parameters, drawn on the host from ``rng`` (a numpy Generator).

    K labels, D image feature size, E embedding size (paper: 64), H LSTM size
    (paper: 512). Returns a dict of host numpy arrays of ``dtype``.

    The initialisation keeps the ReLU LSTM of Eq. 1 from blowing up. Its gates are
    not squashed into (0, 1): a forget gate above 1 makes the state grow, and a
    larger state pushes the gates further from their bias, so once the state is
    large it feeds on itself (tutorial 01 shows it). Hence

    * gate biases ``b_lstm`` of 0.5 for i, f and o (ReLU variants; 0 for the
      candidate x): every gate starts near 0.5, so the state decays by about half
      per step and settles near the size of ``i_t * x_t``, and every ReLU gate is
      active, so gradients reach all of them. The conventional variant uses the
      usual forget-gate bias of 1 and 0 elsewhere;
    * small LSTM weights, ``U_w ~ N(0, 0.25^2 / E)`` and ``U_r ~ N(0, 0.5^2 / H)``:
      with embeddings of norm about 1 the pre-activations start within about
      +-0.2 of their biases, so no forget gate starts near 1. (Measured on
      random 60-step paths: the state stays below 0.15 rms for E from 4 to 64 and
      H from 8 to 512; with ``N(0, 1 / fan_in)`` weights it overflows for most of
      those sizes. Very small E, like 2, can still blow up: the norm of an
      embedding is then far from 1.)
    * ``U_l, U_o_x, U_I_x ~ N(0, 1 / fan_in)`` (fan_in = E, H, D): embeddings and
      the Eq. 5 score vectors have norm about 1, and Eq. 4 starts with unit-size
      pre-activations for unit-size inputs; ``b_x = 0.1`` nudges the Eq. 4 ReLU
      units to the active side.
    """
    lstm.check_variant(variant)

    def normal(fan_in, *shape, gain=1.0):
        return rng.standard_normal(shape) * (gain / numpy.sqrt(fan_in))

    b_lstm = numpy.zeros(4 * H)
    if variant in lstm.RELU_LIKE:
        b_lstm[H:] = 0.5
    else:
        b_lstm[2 * H : 3 * H] = 1.0
    params = {
        "U_l": normal(E, tokens.n_tokens(K), E),
        "U_r": normal(H, H, 4 * H, gain=0.5),
        "U_w": normal(E, E, 4 * H, gain=0.25),
        "b_lstm": b_lstm,
        "U_o_x": normal(H, H, E),
        "U_I_x": normal(D, D, E),
        "b_x": numpy.full(E, 0.1),
    }
    return {k: v.astype(dtype) for k, v in params.items()}


def path_forward(params, I, inputs, mask, variant, dropout_mask=None):
    """Scores of every step of a batch of label paths (Eq. 1, 2, 4, 5).

    params: dict as above (backend arrays); I: (N, D) image features;
    inputs: (T, N) integer tokens (START then labels); mask: (T, N) 1 real / 0 pad;
    variant: one of lstm.VARIANTS; dropout_mask: None or (T, N, E) scaled mask
    for the Eq. 4 output (see layers.dropout.make_mask).
    Returns (scores (T, N, K + 1), cache).
    """
    U_l = params["U_l"]
    n_out = U_l.shape[0] - 1  # K labels + END
    w, embed_cache = embedding.embed_forward(inputs, U_l)  # Eq. 2
    o, lstm_cache = lstm.lstm_forward(w, mask, params, variant)  # Eq. 1
    x, proj_cache = projection.projection_forward(o, I, params, dropout_mask)  # Eq. 4
    scores, score_cache = embedding.tied_scores_forward(x, U_l, n_out)  # Eq. 5
    return scores, (embed_cache, lstm_cache, proj_cache, score_cache)


def path_backward(dscores, cache, image_grad=False):
    """Backward of :func:`path_forward`.

    dscores: (T, N, K + 1). Returns grads, a dict with one entry per parameter. The CNN
    feature I is fixed in training (§3.4), so its gradient is skipped; ``image_grad=True``
    returns ``(grads, dI (N, D))`` instead, for a model whose image input is itself
    learned (the concepts of rnn/semantic.py).
    """
    embed_cache, lstm_cache, proj_cache, score_cache = cache
    dx, score_grads = embedding.tied_scores_backward(dscores, score_cache)  # Eq. 5
    do, dI, grads = projection.projection_backward(dx, proj_cache, image_grad)  # Eq. 4
    dw, lstm_grads = lstm.lstm_backward(do, lstm_cache)  # Eq. 1
    embed_grads = embedding.embed_backward(dw, embed_cache)  # Eq. 2
    grads.update(lstm_grads)
    score_grads["U_l"] += embed_grads["U_l"]  # Eq. 2 and Eq. 5 share U_l: both uses add up
    grads["U_l"] = score_grads["U_l"]
    return (grads, dI) if image_grad else grads


def path_loss(params, I, inputs, targets, mask, variant, dropout_mask=None):
    """Softmax cross-entropy of a batch of paths and its gradients (§3.4).

    Shapes as in :func:`path_forward`; targets: (T, N) tokens to predict.
    Returns (loss: float, grads: dict like params).
    """
    scores, cache = path_forward(params, I, inputs, mask, variant, dropout_mask)
    # The scores are not needed afterwards: their gradient overwrites them.
    value, dscores = loss.softmax_cross_entropy(scores, targets, mask, out=scores)
    return value, path_backward(dscores, cache)


def make_step_plain(params, I, variant):
    """The one-step decoder of the CNN-RNN (Eq. 2, 1, 4, 5 and the softmax), for ``paths/``.

    params: dict as above (backend arrays); I: (n, D) image features on the backend;
    variant: the LSTM variant the params were trained with (one of lstm.VARIANTS).
    The image term ``I @ U_I_x + b_x`` of Eq. 4 is computed here, once per image.
    Returns ``step(prev_tokens, state, rows) -> (log_probs (R, K + 1), new_state)`` for R rows
    (paths) at once:

    * prev_tokens: (R,) int, the previous label of each row, or None at the first step (the
      step then feeds START itself, so a search needs no K before it sees the output width);
    * state: None at the first step (r(0) = 0), else the tuple ``(r,)``, r: (R, H);
    * rows: (R,) int, the image of each row (an index into I);
    * log_probs: a fresh array (the searches mask it in place); new_state: a tuple of
      arrays whose first axis is the R rows (the searches reorder them as paths move).
    """
    U_l = params["U_l"]
    n_out = U_l.shape[0] - 1  # K labels + END
    START = tokens.start_token(tokens.n_labels(U_l))
    image = projection.image_and_bias(I, params)  # (n, E)

    def step(prev_tokens, state, rows):
        if prev_tokens is None:
            prev_tokens = xp.full(rows.shape[0], START, dtype=xp.int64)
        w, _ = embedding.embed_forward(prev_tokens, U_l)  # Eq. 2
        r_prev = xp.zeros((w.shape[0], params["U_r"].shape[0]), dtype=w.dtype) if state is None else state[0]
        (o, r), _ = lstm.lstm_step_forward(w, r_prev, params, variant)  # Eq. 1
        x, _ = projection.projection_forward(o, None, params, image=image[rows])  # Eq. 4
        s, _ = embedding.tied_scores_forward(x, U_l, n_out)  # Eq. 5
        return loss.log_softmax(s), (r,)

    return step


# Rows of the LSTM cell's element-wise work done at once on the CPU: 64 rows of (4H = 2048)
# float32 gates are 512 KB, half a core's L2 cache on the project's machine (see make_step).
CELL_ROWS = 64


def make_step(params, I, variant):
    """The fast version of :func:`make_step_plain`, the one the searches run: same contract.

    Decoding is a matrix-product-bound loop (``benchmarks/bench_beam.py`` counts its FLOPs), so
    a step does little besides its three products:

    * Eq. 2 and both products of Eq. 1 are one product ``[w | r(t-1) | 1] @ [U_w; U_r; b_lstm]``
      (R, E + H + 1) @ (E + H + 1, 4H): one large product instead of two and two additions;
    * the gates, the new state and the output are computed in place in that product's buffer,
      which (like the input buffer) is allocated once and reused while R does not grow;
    * on the CPU that element-wise work runs on ``CELL_ROWS`` rows at a time: the (R, 4H) gates
      of a whole step (12 MB at R = 1536, H = 512) do not fit in a core's cache, a block does,
      so the cell's passes over it read the cache rather than memory; the result is the same
      bit for bit (``tests/test_model.py``);
    * ``U_l[:K+1].T`` of Eq. 5 is laid out once, and the log-softmax works in place.

    Only the sums' order differs from :func:`make_step_plain`, so both give the same
    log-probabilities to float rounding (``tests/test_model.py`` checks it).
    """
    lstm.check_variant(variant)
    U_l = params["U_l"]
    n_out = U_l.shape[0] - 1  # K labels + END
    E, H = U_l.shape[1], params["U_r"].shape[0]
    START = tokens.start_token(tokens.n_labels(U_l))
    image = projection.image_and_bias(I, params)  # (n, E)
    bias = params["b_lstm"] if "b_lstm" in params else xp.zeros(4 * H, dtype=U_l.dtype)
    weights = xp.concatenate([params["U_w"], params["U_r"], bias[None]])  # (E + H + 1, 4H)
    score_weights = xp.ascontiguousarray(U_l[:n_out].T)  # (E, K + 1)
    buffers = {}  # "in": (R, E + H + 1) [w | r(t-1) | 1]; "z": (R, 4H); "exp": (R, K + 1); grown with R

    def step(prev_tokens, state, rows):
        R = rows.shape[0]
        if "in" not in buffers or buffers["in"].shape[0] < R:
            buffers["in"] = xp.empty((R, E + H + 1), dtype=U_l.dtype)
            buffers["in"][:, -1] = 1  # the bias row of the weights
            buffers["z"] = xp.empty((R, 4 * H), dtype=U_l.dtype)
            buffers["exp"] = xp.empty((R, n_out), dtype=U_l.dtype)
        inp, z = buffers["in"][:R], buffers["z"][:R]
        inp[:, :E] = U_l[START] if prev_tokens is None else U_l[prev_tokens]  # Eq. 2
        inp[:, E : E + H] = 0 if state is None else state[0]  # r(0) = 0
        xp.matmul(inp, weights, out=z)  # Eq. 1 pre-activations
        r = xp.empty((R, H), dtype=U_l.dtype)  # fresh: a search may keep the old states
        block = max(R, 1) if backend.is_cupy() else CELL_ROWS  # R = 0: a step that only reads K
        for b in range(0, R, block):  # Eq. 1, element-wise, one cache-sized block of rows at a time
            lstm.lstm_cell_inplace(z[b : b + block], inp[b : b + block, E : E + H], variant, out=r[b : b + block])
        a = z[:, 3 * H :] @ params["U_o_x"]  # Eq. 4 (the cell left o(t) in z's last H columns)
        a += image[rows]
        xp.maximum(a, 0, out=a)
        s = a @ score_weights  # Eq. 5, (R, K + 1): fresh, the searches mask it in place
        s -= s.max(axis=1, keepdims=True)  # log-softmax in place, exp into a reused buffer
        s -= xp.log(xp.exp(s, out=buffers["exp"][:R]).sum(axis=1, keepdims=True))
        return s, (r,)

    return step
