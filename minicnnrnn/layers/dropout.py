"""Inverted dropout: zero each unit with probability p and scale the rest by 1/(1-p).

Scaling at training time keeps the expected activation unchanged, so nothing
changes at test time (the layer is simply skipped). VGG16 uses p = 0.5 after
fc6 and fc7; the paper uses dropout on the joint embedding (Eq. 4).

The mask is drawn on the host from a ``numpy.random.Generator`` and then moved
to the device, so a seed gives the same mask on NumPy and on CuPy.
"""

import numpy

from minicnnrnn.core import backend


def make_mask(shape, p, rng, dtype=numpy.float32):
    """A dropout mask on the selected backend.

    shape: the activation's shape, e.g. (N, D); p: drop probability in [0, 1);
    rng: numpy.random.Generator. Returns an array of `shape` holding 0 (dropped)
    or 1/(1-p) (kept).
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    keep = rng.random(shape) >= p
    return backend.to_device(keep * (1.0 / (1.0 - p)), dtype)


def dropout_forward(x, mask):
    """Apply a mask from :func:`make_mask`.

    x: any shape; mask: same shape, or None for no dropout (evaluation).
    Returns (out, cache) with out = x * mask.
    """
    if mask is None:
        return x, None
    return x * mask, mask


def dropout_backward(dout, cache):
    """Gradient through dropout: the same mask multiplies the upstream gradient.

    dout: same shape as the forward output. Returns dx.
    """
    mask = cache
    if mask is None:
        return dout
    return dout * mask
