"""The recurrent layer of CNN-RNN: the LSTM of Eq. 1, forward and backward by hand.

For one time step, with ``w = w_k(t)`` the embedding of the previous label and
``r_prev = r(t-1)`` the previous state (row vectors, a batch of N at once)::

    z = r_prev @ U_r + w @ U_w (+ b_lstm)         # (N, 4H): all four gates at once
    x_t, i_t, f_t, o_t = split(delta(z))          # Eq. 1: each (N, H), order [x | i | f | o]
    r(t) = f_t * r(t-1) + i_t * x_t               # Eq. 1: the new state
    o(t) = r(t) * o_t                             # Eq. 1: the output

``U_r: (H, 4H)`` holds the paper's ``U_r, U_{i_r}, U_{f_r}, U_{o_r}`` side by side and
``U_w: (E, 4H)`` holds ``U_w, U_{i_w}, U_{f_w}, U_{o_w}``; ``b_lstm: (4H,)`` is optional
(the paper writes no bias; leave it out of ``params`` to get Eq. 1 verbatim).

Three variants:

* ``"relu"`` (the paper, §3.1): delta = ReLU for all four gates, ``o(t) = r(t) * o_t``.
* ``"bounded"``: delta = ReLU capped at 1, ``min(max(z, 0), 1)``, for all four, and
  ``o(t) = r(t) * o_t``. Every gate and the candidate lie in [0, 1], so
  ``0 <= r(t) <= r(t-1) + 1``: the state can grow by at most 1 per step, ``r(t) <= t``.
  The paper's ReLU has no such bound: a forget gate above 1 grows the state, a larger
  state grows the gates, and on long paths that feeds on itself (docs/training.md,
  "Stability"). Below the cap it is the paper's ReLU.
* ``"conventional"``: sigmoid gates ``i, f, o``, tanh candidate ``x``, and
  ``o(t) = tanh(r(t)) * o_t`` (the usual LSTM of Hochreiter & Schmidhuber / Graves).

Initial state: ``r(0) = 0`` unless the caller passes ``r0``. The gradient with
respect to ``r0`` is not returned: the model always starts from zero.

Padding: paths in a batch have different lengths, so the sequence functions take
``mask: (T, N)``. Where ``mask[t, n] == 0`` the step is skipped: the state is carried
over unchanged (``r(t) = r(t-1)``) and the output is ``o(t) = 0``.

How this file reads: first the plain version, Eq. 1 for one step and a sequence as a
Python loop over those steps (:func:`lstm_step_forward` / :func:`lstm_step_backward`,
:func:`lstm_forward_plain` / :func:`lstm_backward_plain`). Below it, the fast version
that training runs (:func:`lstm_forward` / :func:`lstm_backward`): the same numbers
(``tests/test_lstm.py`` checks values and gradients against the plain loop), with the
input products batched over all steps, gates computed in place and large temporaries
kept in ``core/scratch.py``.
"""

import collections

from minicnnrnn.core.backend import xp
from minicnnrnn.core.scratch import scratch_array

VARIANTS = ("relu", "bounded", "conventional")
RELU_LIKE = ("relu", "bounded")  # o(t) = r(t) * o_t, no squashing of the state


# What a forward keeps for its backward, readable by name (``cache.r`` is every state r(t)).
StepCache = collections.namedtuple("StepCache", ["w", "r_prev", "g", "squashed_r", "params", "variant"])
StepCache.__doc__ = """Cache of :func:`lstm_step_forward`: w (N, E), r_prev (N, H) r(t-1), g (N, 4H) the gate
values [x | i | f | o] after their nonlinearities, squashed_r (N, H) what multiplies o_t (r(t),
or tanh(r(t)) for "conventional"), params, variant."""
SequenceCache = collections.namedtuple(
    "SequenceCache", ["w_seq", "m", "g", "r", "squashed", "params", "variant", "zero_start"]
)
SequenceCache.__doc__ = """Cache of :func:`lstm_forward`: w_seq (T, N, E), m (T, N, 1) the mask, g (T, N, 4H)
the gate values, r (T + 1, N, H) the states r(0) .. r(T), squashed (T, N, H) what multiplies
o_t, params, variant, zero_start (r(0) = 0)."""


def check_variant(variant):
    """Raise ValueError unless ``variant`` is one of :data:`VARIANTS`."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown LSTM variant {variant!r}; choose one of {VARIANTS}")


def _split(g):
    """(..., 4H) -> the four (..., H) views x, i, f, o (no copies)."""
    H = g.shape[-1] // 4
    return g[..., :H], g[..., H : 2 * H], g[..., 2 * H : 3 * H], g[..., 3 * H :]


def _gates(z, variant):
    """Eq. 1's delta: pre-activations (N, 4H) -> gate values (N, 4H), order [x | i | f | o]."""
    if variant == "relu":
        return xp.maximum(z, 0)
    if variant == "bounded":
        return xp.clip(z, 0, 1)
    H = z.shape[-1] // 4
    # sigmoid(a) = (1 + tanh(a / 2)) / 2: no overflow for large |a|.
    return xp.concatenate([xp.tanh(z[..., :H]), (xp.tanh(z[..., H:] * 0.5) + 1.0) * 0.5], axis=-1)


def _output(r, o_gate, variant):
    """Eq. 1 output o(t) from state r(t) and output gate o_t. Returns (o, squashed r)."""
    if variant in RELU_LIKE:
        return r * o_gate, r
    tanh_r = xp.tanh(r)
    return tanh_r * o_gate, tanh_r


def _gates_backward(dg, g, variant):
    """Gradient w.r.t. gate values (N, 4H) -> w.r.t. pre-activations, from the gate values g.

    ReLU' = [g > 0]; capped ReLU' = [0 < g < 1]; tanh' = 1 - g^2 for the candidate x;
    sigmoid' = g (1 - g) for i, f, o.
    """
    if variant == "relu":
        return dg * (g > 0)
    if variant == "bounded":
        return dg * ((g > 0) & (g < 1))
    H = g.shape[-1] // 4
    x, ifo = g[..., :H], g[..., H:]
    return xp.concatenate([dg[..., :H] * (1.0 - x**2), dg[..., H:] * ifo * (1.0 - ifo)], axis=-1)


# ---------------------------------------------------------------------------
# The plain version: one step of Eq. 1, and a sequence as a loop over steps.
# ---------------------------------------------------------------------------


def lstm_step_forward(w, r_prev, params, variant="relu"):
    """One step of Eq. 1.

    w: (N, E) label embeddings w_k(t); r_prev: (N, H) states r(t-1) (zeros at t = 1);
    params: U_r (H, 4H), U_w (E, 4H), optional b_lstm (4H,); variant: one of :data:`VARIANTS`.
    Returns ((o, r), cache) with o: (N, H) the output o(t) and r: (N, H) the state r(t).
    """
    check_variant(variant)
    z = w @ params["U_w"] + r_prev @ params["U_r"]
    if "b_lstm" in params:
        z = z + params["b_lstm"]
    g = _gates(z, variant)
    x, i, f, o_gate = _split(g)
    r = f * r_prev + i * x  # Eq. 1: the new state
    o, squashed_r = _output(r, o_gate, variant)  # Eq. 1: the output
    return (o, r), StepCache(w, r_prev, g, squashed_r, params, variant)


def lstm_step_backward(do, dr, cache):
    """Backward of :func:`lstm_step_forward`.

    do: (N, H) gradient w.r.t. o(t); dr: (N, H) gradient w.r.t. r(t) (pass zeros
    for the last step). Returns (dw (N, E), dr_prev (N, H), grads) with grads
    holding U_r, U_w (and b_lstm if the forward had one).
    """
    w, r_prev, g, squashed_r, params, variant = cache
    x, i, f, o_gate = _split(g)
    d_o_gate = do * squashed_r  # o(t) = squashed_r * o_t
    do_r = do * o_gate  # ... and its path into r(t)
    if variant == "conventional":
        do_r = do_r * (1.0 - squashed_r**2)  # through tanh(r(t))
    dr = dr + do_r
    # r(t) = f * r(t-1) + i * x
    dz = _gates_backward(xp.concatenate([dr * i, dr * x, dr * r_prev, d_o_gate], axis=-1), g, variant)
    dr_prev = dr * f + dz @ params["U_r"].T  # r(t-1) feeds the state update and the gates
    dw = dz @ params["U_w"].T
    grads = {"U_w": w.T @ dz, "U_r": r_prev.T @ dz}
    if "b_lstm" in params:
        grads["b_lstm"] = dz.sum(axis=0)
    return dw, dr_prev, grads


def lstm_forward_plain(w_seq, mask, params, variant="relu"):
    """Eq. 1 over a padded batch of paths, one :func:`lstm_step_forward` per time step.

    w_seq: (T, N, E); mask: (T, N) 1 real / 0 padding. Returns (o_seq (T, N, H), cache).
    A padded row keeps its state, r(t) = r(t-1), and outputs o(t) = 0. This is the
    readable reference for :func:`lstm_forward`, which computes the same numbers faster.
    """
    T, N, _ = w_seq.shape
    H = params["U_r"].shape[0]
    m = xp.asarray(mask).astype(w_seq.dtype)[:, :, None]  # (T, N, 1)
    r = xp.zeros((N, H), dtype=w_seq.dtype)  # r(0) = 0
    outputs, caches = [], []
    for t in range(T):
        (o, r_new), step_cache = lstm_step_forward(w_seq[t], r, params, variant)
        r = m[t] * r_new + (1.0 - m[t]) * r  # padded rows carry r(t-1) over
        outputs.append(o * m[t])
        caches.append(step_cache)
    return xp.stack(outputs), (m, caches)


def lstm_backward_plain(do_seq, cache):
    """Backpropagation through time for :func:`lstm_forward_plain`, one step at a time.

    do_seq: (T, N, H). Returns (dw_seq (T, N, E), grads) as :func:`lstm_backward`.
    """
    m, caches = cache
    dr = xp.zeros_like(do_seq[0])  # dL/dr(t) arriving from step t + 1
    dws, grads = [], {}
    for t in reversed(range(len(caches))):
        # o(t) * m and r(t) = m r_new + (1 - m) r(t-1): the step sees the masked gradients.
        dw, dr_prev, step_grads = lstm_step_backward(do_seq[t] * m[t], dr * m[t], caches[t])
        dr = dr_prev + dr * (1.0 - m[t])
        dws.append(dw)
        for k, g in step_grads.items():
            grads[k] = grads[k] + g if k in grads else g
    return xp.stack(dws[::-1]), grads


# ---------------------------------------------------------------------------
# The fast version that training runs: the same numbers as the plain loop.
# ---------------------------------------------------------------------------


# The pieces of a step again, now in place (no temporaries), for the sequence below.


def _activate(z, variant, zeros=None):
    """Pre-activations (N, 4H) -> gate values, in place (Eq. 1: delta).

    zeros: optional (4H,) array of zeros for the ReLU: NumPy's ``maximum`` with an array
    operand (broadcast over the rows) runs about 2.5x faster than with the scalar 0, and
    gives the same bits, -0.0 and NaN included (tests/test_lstm.py).
    """
    if variant == "relu":
        xp.maximum(z, 0 if zeros is None else zeros, out=z)
        return z
    if variant == "bounded":
        xp.clip(z, 0, 1, out=z)
        return z
    H = z.shape[-1] // 4
    x, ifo = z[..., :H], z[..., H:]  # candidate | the three gates
    xp.tanh(x, out=x)
    # sigmoid(a) = (1 + tanh(a / 2)) / 2: no overflow for large |a|.
    ifo *= 0.5
    xp.tanh(ifo, out=ifo)
    ifo += 1.0
    ifo *= 0.5
    return z


def lstm_cell_inplace(z, r_prev, variant, out=None):
    """Eq. 1 after its products, for decoding (no cache: nothing runs backward).

    z: (N, 4H) pre-activations, overwritten by the gate values; r_prev: (N, H) r(t-1);
    out: None or an (N, H) array to write r(t) into.
    Returns (o, r): o (N, H) the output o(t), a view into z; r (N, H) the new state (out, or fresh).
    """
    x, i, f, o_gate = _split(_activate(z, variant))
    r = xp.multiply(f, r_prev, out=out)
    i *= x
    r += i  # r(t) = f r(t-1) + i x
    o_gate *= r if variant in RELU_LIKE else xp.tanh(r, out=x)  # o(t) = r(t) o_t (or tanh(r(t)) o_t)
    return o_gate, r


def _activate_backward(dg, g, variant):
    """Gradient w.r.t. gate values -> gradient w.r.t. pre-activations, in place.

    Uses the gate values ``g`` (not the pre-activations): ReLU' = [g > 0],
    capped ReLU' = [0 < g < 1], tanh' = 1 - g^2, sigmoid' = g (1 - g).
    """
    if variant == "relu":
        dg *= g > 0
        return dg
    if variant == "bounded":
        dg *= (g > 0) & (g < 1)
        return dg
    H = g.shape[-1] // 4
    dg[..., :H] *= 1.0 - g[..., :H] ** 2
    dg[..., H:] *= g[..., H:] * (1.0 - g[..., H:])
    return dg


def _cell_backward(do, dr, g, r_prev, squashed_r, variant, dz, m=None, scratch=None):
    """Backward through the output, the state update and the gates of one step.

    do: (N, H) gradient w.r.t. o(t); dr: (N, H) gradient w.r.t. r(t) arriving from
    step t + 1; g: (N, 4H) gate values; r_prev: (N, H) r(t-1); squashed_r: (N, H) r(t)
    (relu, bounded) or tanh(r(t)) (conventional); m: optional (N, 1) mask of this step
    (0 or 1); scratch: optional pair of (N, H) arrays for the temporaries.
    Writes the pre-activation gradient into ``dz: (N, 4H)`` and returns the
    gradient w.r.t. r(t-1) *without* the path through ``U_r`` (the caller adds
    ``dz @ U_r.T``, batched over time in the sequence case). ``dr`` is updated in place
    and returned as that gradient (pass a buffer of your own).
    """
    x, i, f, o_gate = _split(g)
    dx, di, df, do_gate = _split(dz)
    tmp, dr_m = (scratch[0], scratch[1]) if scratch is not None else (xp.empty_like(dr), xp.empty_like(dr))
    xp.multiply(do, squashed_r, out=do_gate)  # o(t) = squashed_r * o_t
    do_r = xp.multiply(do, o_gate, out=tmp)  # ... and its path into r(t)
    if variant == "conventional":
        do_r *= 1.0 - squashed_r**2  # through tanh(r(t))
    dr += do_r
    if m is None:
        dr_m = dr
    else:
        # r(t) = r(t-1) + m * (f * r(t-1) + i * x - r(t-1)): the step sees dr * m,
        # masked rows pass dr * (1 - m) on to r(t-1) unchanged.
        xp.multiply(dr, m, out=dr_m)
        dr *= 1.0 - m
    xp.multiply(dr_m, i, out=dx)  # r(t) = f * r(t-1) + i * x
    xp.multiply(dr_m, x, out=di)
    xp.multiply(dr_m, r_prev, out=df)
    if m is None:
        dr *= f
    else:
        dr += xp.multiply(dr_m, f, out=tmp)  # dL/dr(t-1) = dr m f + dr (1 - m)
    _activate_backward(dz, g, variant)
    return dr


def _weight_grads(inputs, states, dz, params, zero_rows=0):
    """Gradients of U_w, U_r (and b_lstm) from (M, E) inputs, (M, H) previous states
    and (M, 4H) pre-activation gradients, M = all rows of all steps at once.

    The first ``zero_rows`` rows of ``states`` are known to be zero (r(0) = 0): they
    add nothing to U_r's gradient, so its product leaves them out.
    """
    grads = {"U_w": inputs.T @ dz, "U_r": states[zero_rows:].T @ dz[zero_rows:]}
    if "b_lstm" in params:
        grads["b_lstm"] = dz.sum(axis=0)
    return grads


def lstm_forward(w_seq, mask, params, variant="relu", r0=None):
    """Eq. 1 over a time-major batch of label paths: the fast version of :func:`lstm_forward_plain`.

    w_seq: (T, N, E) label embeddings; mask: (T, N), 1 for real steps and 0 for
    padding (bool, int or float); params as in :func:`lstm_step_forward`;
    r0: optional (N, H) initial state, default r(0) = 0.
    Returns (o_seq (T, N, H), cache); o_seq is 0 at padded steps.
    """
    check_variant(variant)
    T, N, E = w_seq.shape
    H = params["U_r"].shape[0]
    dtype = w_seq.dtype
    m = xp.asarray(mask).astype(dtype)[:, :, None]  # (T, N, 1)
    # All input contributions at once: one (T*N, E) @ (E, 4H) product. The
    # buffer then becomes the gate values in place, step by step.
    g = (w_seq.reshape(T * N, E) @ params["U_w"]).reshape(T, N, 4 * H)
    if "b_lstm" in params:
        g += params["b_lstm"]
    r = xp.empty((T + 1, N, H), dtype=dtype)  # r[t] = r(t); r[0] = r(0)
    r[0] = 0 if r0 is None else r0
    o_seq = xp.empty((T, N, H), dtype=dtype)
    squashed = xp.empty((T, N, H), dtype=dtype) if variant == "conventional" else r[1:]
    recurrent = scratch_array("r @ U_r", (N, 4 * H), dtype)
    zeros = xp.zeros(4 * H, dtype=dtype)  # for the ReLU (_activate)
    cell = scratch_array("lstm cell forward", (2, N, H), dtype)  # the step's temporaries
    r_new, ix = cell[0], cell[1]
    for t in range(T):
        if t > 0 or r0 is not None:  # r(0) = 0 adds nothing: skip that product
            xp.matmul(r[t], params["U_r"], out=recurrent)
            g[t] += recurrent
        _activate(g[t], variant, zeros)
        x, i, f, o_gate = _split(g[t])
        xp.multiply(f, r[t], out=r_new)
        r_new += xp.multiply(i, x, out=ix)
        # Padded rows keep r(t-1): r(t) = r(t-1) + m (r_new - r(t-1)).
        r_new -= r[t]
        r_new *= m[t]
        xp.add(r[t], r_new, out=r[t + 1])
        if variant == "conventional":
            xp.tanh(r[t + 1], out=squashed[t])
        xp.multiply(squashed[t], o_gate, out=o_seq[t])  # Eq. 1: o(t) = r(t) o_t (or tanh(r(t)) o_t)
        o_seq[t] *= m[t]
    return o_seq, SequenceCache(w_seq, m, g, r, squashed, params, variant, r0 is None)


def lstm_backward(do_seq, cache):
    """Backpropagation through time for :func:`lstm_forward` (fast; see :func:`lstm_backward_plain`).

    do_seq: (T, N, H) gradient w.r.t. o_seq. Returns (dw_seq (T, N, E), grads) with
    grads holding U_r, U_w (and b_lstm if used). Gradients are summed over all
    steps and rows; padded steps contribute nothing.
    """
    w_seq, m, g, r, squashed, params, variant, zero_start = cache
    T, N, E = w_seq.shape
    H = r.shape[-1]
    dz = scratch_array("dz", g.shape, g.dtype)  # (T, N, 4H) gate gradients
    dr = xp.zeros((N, H), dtype=g.dtype)  # dL/dr(t) from step t + 1, updated in place
    recurrent_T = scratch_array("U_r @ dz.T", (H, N), g.dtype)
    cell = scratch_array("lstm cell backward", (2, N, H), g.dtype)  # the step's temporaries
    do_masked = xp.multiply(do_seq, m, out=scratch_array("do * m", do_seq.shape, g.dtype))  # all steps at once
    for t in reversed(range(T)):
        _cell_backward(do_masked[t], dr, g[t], r[t], squashed[t], variant, dz[t], m[t], cell)
        if t == 0:
            break  # dL/dr(0) is not returned: skip its product
        # r(t-1) also feeds the gates of step t: dr += dz(t) @ U_r.T. Written as
        # (U_r @ dz(t).T).T, the same numbers, because OpenBLAS runs that memory
        # layout about 20% faster (1.45 vs 1.86 ms at the paper's sizes).
        xp.matmul(params["U_r"], dz[t].T, out=recurrent_T)
        dr += recurrent_T.T
    # Everything that does not feed the recursion is done once, over all steps.
    dz_flat = dz.reshape(T * N, 4 * H)
    dw_seq = (dz_flat @ params["U_w"].T).reshape(T, N, E)
    grads = _weight_grads(
        w_seq.reshape(T * N, E), r[:T].reshape(T * N, H), dz_flat, params, zero_rows=N if zero_start else 0
    )
    return dw_seq, grads
