"""Gradient checks: every hand-written backward against centred finite differences.

For a scalar function f and an array x (float64, modified in place and restored)::

    df/dx[j] ~ (f(x + h e_j) - f(x - h e_j)) / (2 h)

A layer with an array output ``y = layer(x)`` is checked through the scalar
``L = sum(y * G)`` with a fixed random ``G``: its analytic gradient is exactly what
the layer's backward returns when given ``dy = G``.

Run ``python -m minicnnrnn.gradcheck`` to print one row per case with the largest
relative error over all of its inputs and parameters; it exits with status 1 if
any row exceeds 1e-6. The CNN layers' cases live in ``gradcheck_cnn.py``.
"""
import sys

import numpy

from . import backend, cli, embedding, loss, lstm, model, projection
from .backend import xp
from .errors import UserError

TOLERANCE = 1e-6


def numerical_gradient(f, x, h=1e-5):
    """Centred finite differences of the scalar ``f(x)`` w.r.t. every entry of x.

    x: contiguous float64 array (on the backend), perturbed in place and restored.
    Returns an array shaped like x.
    """
    grad = xp.zeros_like(x)
    flat, grad_flat = x.reshape(-1), grad.reshape(-1)      # views of x and grad
    for j in range(flat.size):
        old = flat[j].item()
        flat[j] = old + h
        plus = f(x)
        flat[j] = old - h
        minus = f(x)
        flat[j] = old
        grad_flat[j] = (plus - minus) / (2 * h)
    return grad


def rel_error(a, b, scale=None, floor=1e-3):
    """Largest elementwise relative error between two gradients, as a float.

    Entry j contributes ``|a_j - b_j| / max(|a_j| + |b_j|, floor * scale)``, where
    ``scale`` defaults to the largest ``|a_j| + |b_j|``. Why the floor: finite
    differences carry an absolute rounding error of roughly 1e-16 |f| / h, the
    same for every entry, so an entry 1000 times smaller than the gradient's
    scale cannot be resolved relative to itself. Such entries are compared
    relative to the scale instead (at a 1e-6 tolerance: to 1e-9 of it).
    """
    a, b = backend.to_host(a), backend.to_host(b)
    size = numpy.abs(a) + numpy.abs(b)
    if scale is None:
        scale = size.max(initial=0.0)
    if scale == 0:
        return 0.0
    return float(numpy.max(numpy.abs(a - b) / numpy.maximum(size, floor * scale), initial=0.0))


def check(loss_fn, arrays, analytic, h=1e-5):
    """Max relative error between ``analytic[name]`` and the finite-difference
    gradient of the scalar ``loss_fn()`` w.r.t. each ``arrays[name]`` (perturbed in
    place). The scale of :func:`rel_error` is the largest entry over all of them:
    one loss, one rounding error."""
    numeric = {name: numerical_gradient(lambda _: loss_fn(), arrays[name], h) for name in analytic}
    scale = max(float(numpy.abs(backend.to_host(analytic[name])).max(initial=0.0)
                      + numpy.abs(backend.to_host(numeric[name])).max(initial=0.0)) for name in analytic)
    return max(rel_error(analytic[name], numeric[name], scale) for name in analytic)


# ---------------------------------------------------------------------------
# Small random problems (float64, drawn on the host so every backend agrees).
# ---------------------------------------------------------------------------

def _randn(rng, *shape, scale=1.0):
    return backend.to_device(rng.standard_normal(shape) * scale, numpy.float64)


def _dot(y, G):
    """The scalar L = sum(y * G) used to check an array-valued layer."""
    return float((y * G).sum())


def _lstm_params(rng, E, H, variant):
    params = model.init_params(3, 2, E, H, rng, variant, dtype=numpy.float64)
    params = {k: params[k] for k in ("U_r", "U_w", "b_lstm")}
    # Random biases so that no gate sits exactly at its init value.
    params["b_lstm"] += rng.standard_normal(4 * H) * 0.3
    return backend.params_to_device(params, numpy.float64)


def _path_mask(lengths, T):
    """(T, N) mask with 1 for the first ``lengths[n]`` steps of column n."""
    return backend.to_device((numpy.arange(T)[:, None] < numpy.asarray(lengths)[None, :]), numpy.float64)


def lstm_step_case(variant):
    """Case function checking lstm.step_forward/step_backward for one variant."""
    def case(rng):
        N, E, H = 3, 4, 5
        params = _lstm_params(rng, E, H, variant)
        w, r_prev = _randn(rng, N, E), _randn(rng, N, H)
        Go, Gr = _randn(rng, N, H), _randn(rng, N, H)

        def f():
            (o, r), _ = lstm.step_forward(w, r_prev, params, variant)
            return _dot(o, Go) + _dot(r, Gr)

        _, cache = lstm.step_forward(w, r_prev, params, variant)
        dw, dr_prev, grads = lstm.step_backward(Go, Gr, cache)
        return check(f, dict(params, w=w, r_prev=r_prev), dict(grads, w=dw, r_prev=dr_prev))
    return case


def lstm_sequence_case(variant):
    """Case function checking lstm.forward/backward (BPTT) with a padding mask."""
    def case(rng):
        T, N, E, H = 4, 3, 4, 5
        params = _lstm_params(rng, E, H, variant)
        w_seq, G = _randn(rng, T, N, E), _randn(rng, T, N, H)
        mask = _path_mask([4, 2, 3], T)
        r0 = _randn(rng, N, H, scale=0.5)

        def f():
            return _dot(lstm.forward(w_seq, mask, params, variant, r0)[0], G)

        _, cache = lstm.forward(w_seq, mask, params, variant, r0)
        dw_seq, grads = lstm.backward(G, cache)
        return check(f, dict(params, w_seq=w_seq), dict(grads, w_seq=dw_seq))
    return case


def embedding_tied_case(rng):
    """Embedding lookup and tied scores sharing one U_l: L = <s(U_l[tokens] * y), G>."""
    V, E, T, N = 6, 4, 3, 2
    U_l = _randn(rng, V, E)
    tokens = backend.to_device(numpy.array([[5, 0], [1, 1], [3, 5]]))   # repeats, START row 5
    y, G = _randn(rng, T, N, E), _randn(rng, T, N, V - 1)

    def forward():
        w, e_cache = embedding.embed_forward(tokens, U_l)
        s, s_cache = embedding.tied_scores_forward(w * y, U_l, V - 1)
        return w, s, e_cache, s_cache

    w, s, e_cache, s_cache = forward()
    dx, dU_scores = embedding.tied_scores_backward(G, s_cache)
    dU_embed = embedding.embed_backward(dx * y, e_cache)
    return check(lambda: _dot(forward()[1], G), {"U_l": U_l}, {"U_l": dU_scores + dU_embed})


def projection_case(rng):
    """Eq. 4 with bias and an inverted-dropout mask."""
    T, N, H, D, E = 3, 2, 4, 5, 3
    params = {"U_o_x": _randn(rng, H, E), "U_I_x": _randn(rng, D, E), "b_x": _randn(rng, E)}
    o, I, G = _randn(rng, T, N, H), _randn(rng, N, D), _randn(rng, T, N, E)
    mask = backend.to_device(projection.make_dropout_mask(rng, (T, N, E), 0.3, numpy.float64))

    def f():
        return _dot(projection.forward(o, I, params, mask)[0], G)

    _, cache = projection.forward(o, I, params, mask)
    do, dI, grads = projection.backward(G, cache)
    return check(f, dict(params, o=o, I=I), dict(grads, o=do, I=dI))


def softmax_loss_case(rng):
    """Masked softmax cross-entropy; a padded step carries an out-of-range target."""
    T, N, C = 3, 4, 5
    scores = _randn(rng, T, N, C, scale=3.0)
    targets = backend.to_device(numpy.array([[0, 1, 2, 3], [4, 4, 0, 1], [2, 99, 3, 0]]))
    mask = _path_mask([3, 2, 3, 1], T)
    _, dscores = loss.softmax_cross_entropy(scores, targets, mask)
    return check(lambda: loss.softmax_cross_entropy(scores, targets, mask)[0],
                 {"scores": scores}, {"scores": dscores})


def sigmoid_loss_case(rng):
    """Sigmoid binary cross-entropy with an ignore mask."""
    N, K = 3, 4
    scores = _randn(rng, N, K, scale=3.0)
    y = backend.to_device(rng.random((N, K)) < 0.5, numpy.float64)
    mask = backend.to_device(rng.random((N, K)) < 0.8, numpy.float64)
    _, dscores = loss.sigmoid_cross_entropy(scores, y, mask)
    return check(lambda: loss.sigmoid_cross_entropy(scores, y, mask)[0],
                 {"scores": scores}, {"scores": dscores})


def path_loss_case(variant):
    """Case function: the whole path loss (Eq. 1, 2, 4, 5 + softmax) w.r.t. every parameter."""
    def case(rng):
        K, D, E, H, T, N = 4, 5, 3, 4, 3, 3
        params = backend.params_to_device(model.init_params(K, D, E, H, rng, variant, numpy.float64))
        I = _randn(rng, N, D)
        S, END = model.start_token(K), model.end_token(K)
        inputs = backend.to_device(numpy.array([[S, S, S], [2, 0, 1], [3, 0, 1]]))
        targets = backend.to_device(numpy.array([[2, 0, 1], [3, END, END], [END, 0, 0]]))
        mask = _path_mask([3, 2, 2], T)
        drop = backend.to_device(projection.make_dropout_mask(rng, (T, N, E), 0.25, numpy.float64))

        def f():
            return model.path_loss(params, I, inputs, targets, mask, variant, drop)[0]

        _, grads = model.path_loss(params, I, inputs, targets, mask, variant, drop)
        return check(f, params, grads)
    return case


CASES = [
    ("lstm step (relu)", lstm_step_case("relu")),
    ("lstm step (conventional)", lstm_step_case("conventional")),
    ("lstm sequence, masked (relu)", lstm_sequence_case("relu")),
    ("lstm sequence, masked (conventional)", lstm_sequence_case("conventional")),
    ("embedding + tied scores", embedding_tied_case),
    ("projection + dropout", projection_case),
    ("softmax cross-entropy, masked", softmax_loss_case),
    ("sigmoid cross-entropy", sigmoid_loss_case),
    ("path loss end to end (relu)", path_loss_case("relu")),
    ("path loss end to end (conventional)", path_loss_case("conventional")),
]


def all_cases():
    """This module's cases followed by the CNN layers' cases (gradcheck_cnn.py)."""
    from . import gradcheck_cnn      # imported here: it imports this module's check()
    return list(CASES) + list(gradcheck_cnn.CASES)


def run_cases(cases, seed, out=None):
    """Run each (name, fn) with its own Generator(seed); print a table. Returns the worst error."""
    out = out or sys.stdout
    width = max(len(name) for name, _ in cases)
    print(f"{'case':<{width}}  max rel error", file=out)
    worst = 0.0
    for name, fn in cases:
        err = fn(numpy.random.default_rng(seed))
        worst = max(worst, err)
        status = "ok" if err <= TOLERANCE else "FAIL"
        print(f"{name:<{width}}  {err:.2e}  {status}", file=out, flush=True)
    return worst


def main(argv=None):
    parser = cli.make_parser("python -m minicnnrnn.gradcheck",
                             "Compare every hand-written backward with centred finite differences "
                             f"in float64; exit 1 if any max relative error exceeds {TOLERANCE:g}.")
    parser.add_argument("--seed", type=cli.non_negative_int, default=0, help="seed of the random test problems")
    parser.add_argument("--only", default="", metavar="TEXT",
                        help="run only the cases whose name contains TEXT (any case), e.g. lstm; %(default)r runs every case")
    args = cli.parse(parser, argv)
    cases = [(name, fn) for name, fn in all_cases() if args.only.lower() in name.lower()]
    if not cases:
        raise UserError(f"--only: no case name contains {args.only!r}")
    worst = run_cases(cases, args.seed)
    print(f"worst {worst:.2e} ({backend.name()}, seed {args.seed}): "
          f"{'PASS' if worst <= TOLERANCE else 'FAIL'} (tolerance {TOLERANCE:g})")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    cli.run(main)
