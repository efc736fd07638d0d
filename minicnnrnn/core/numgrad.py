"""Numerical gradients: the yardstick for every hand-written backward.

For a scalar function f and an array x (float64, modified in place and restored)::

    df/dx[j] ~ (f(x + h e_j) - f(x - h e_j)) / (2 h)

A layer with an array output ``y = layer(x)`` is checked through the scalar
``L = sum(y * G)`` with a fixed random ``G``: its analytic gradient is exactly what
the layer's backward returns when given ``dy = G``. The cases that use these
helpers live beside the code they check (``gradcheck/cases_rnn.py``,
``gradcheck/cases_cnn.py``); ``python -m minicnnrnn.gradcheck`` runs them all.
"""

import numpy

from minicnnrnn.core import backend
from minicnnrnn.core.backend import xp

TOLERANCE = 1e-6


def numerical_gradient(f, x, h=1e-5):
    """Centred finite differences of the scalar ``f(x)`` w.r.t. every entry of x.

    x: contiguous float64 array (on the backend, or a host array that ``f`` moves itself),
    perturbed in place and restored.
    Returns an array shaped like x.
    """
    grad = numpy.zeros_like(x) if isinstance(x, numpy.ndarray) else xp.zeros_like(x)  # host or device x
    flat, grad_flat = x.reshape(-1), grad.reshape(-1)  # views of x and grad
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
    scale = max(
        float(
            numpy.abs(backend.to_host(analytic[name])).max(initial=0.0)
            + numpy.abs(backend.to_host(numeric[name])).max(initial=0.0)
        )
        for name in analytic
    )
    return max(rel_error(analytic[name], numeric[name], scale) for name in analytic)
