"""Gradient checks of the shared layers (``layers/``): convolutions, pooling, activations,
dense and dropout.

Each case builds a small float64 problem on the host (so every backend sees the
same numbers), runs the layer's forward and backward, and returns the largest
relative error against centred finite differences of ``L = sum(out * G)``.
Inputs of the piecewise-linear layers (ReLU, ReLU6, max-pool) are kept away from their
kinks, where a finite difference would straddle two linear pieces.
"""

import numpy

from minicnnrnn.core import backend
from minicnnrnn.core.numgrad import check
from minicnnrnn.layers import activations, conv, dense, depthwise, dropout, pointwise, pool

F64 = numpy.float64


def randn(rng, *shape, scale=1.0):
    """Normal float64 array of `shape` (standard deviation ``scale``), drawn on the host, on
    the selected backend (so every backend sees the same numbers)."""
    return backend.to_device(rng.standard_normal(shape) * scale, F64)


def dot(y, G):
    """The scalar L = sum(y * G) whose gradient w.r.t. y is G."""
    return float((y * G).sum())


def conv_case(stride, pad, method):
    """Case function for conv.conv_forward/backward with the given stride, padding and forward method."""

    def case(rng):
        x, W, b = randn(rng, 2, 5, 6, 8), randn(rng, 3, 3, 8, 4), randn(rng, 4)
        out, cache = conv.conv_forward(x, W, b, stride, pad, method)
        G = randn(rng, *out.shape)
        dx, grads = conv.conv_backward(G, cache)
        return check(
            lambda: dot(conv.conv_forward(x, W, b, stride, pad, method)[0], G),
            {"x": x, "W": W, "b": b},
            dict(grads, x=dx),
        )

    return case


def pool_case(rng):
    """2x2 max-pool on an odd-sized map (the last row is dropped); entries 0.01 apart, no ties."""
    shape = (2, 5, 4, 3)
    x = backend.to_device(rng.permutation(int(numpy.prod(shape))).reshape(shape) * 0.01, F64)
    out, cache = pool.max_pool_forward(x)
    G = randn(rng, *out.shape)
    return check(lambda: dot(pool.max_pool_forward(x)[0], G), {"x": x}, {"x": pool.max_pool_backward(G, cache)})


def relu_case(rng):
    """ReLU on entries at least 0.1 away from zero."""
    x = rng.standard_normal((4, 7))
    x = backend.to_device(numpy.sign(x) * (0.1 + numpy.abs(x)), F64)
    out, cache = activations.relu_forward(x)
    G = randn(rng, *out.shape)
    return check(lambda: dot(activations.relu_forward(x)[0], G), {"x": x}, {"x": activations.relu_backward(G, cache)})


def dense_case(rng):
    """Affine layer x @ W + b, w.r.t. x, W and b."""
    x, W, b = randn(rng, 3, 5), randn(rng, 5, 4), randn(rng, 4)
    out, cache = dense.dense_forward(x, W, b)
    G = randn(rng, *out.shape)
    dx, grads = dense.dense_backward(G, cache)
    return check(lambda: dot(dense.dense_forward(x, W, b)[0], G), {"x": x, "W": W, "b": b}, dict(grads, x=dx))


def dropout_case(rng):
    """Inverted dropout with a fixed mask (p = 0.4), w.r.t. x."""
    x = randn(rng, 4, 6)
    mask = dropout.make_mask(x.shape, 0.4, rng, F64)
    out, cache = dropout.dropout_forward(x, mask)
    G = randn(rng, *out.shape)
    return check(
        lambda: dot(dropout.dropout_forward(x, mask)[0], G), {"x": x}, {"x": dropout.dropout_backward(G, cache)}
    )


def depthwise_case(k, stride):
    """Depthwise k x k conv with TensorFlow SAME padding (asymmetric for stride 2), w.r.t. x, W and b."""

    def case(rng):
        x, W, b = randn(rng, 2, 7, 6, 3), randn(rng, k, k, 3), randn(rng, 3)
        out, cache = depthwise.depthwise_forward(x, W, b, stride)
        G = randn(rng, *out.shape)
        dx, grads = depthwise.depthwise_backward(G, cache)
        loss = lambda: dot(depthwise.depthwise_forward(x, W, b, stride)[0], G)  # noqa: E731
        return check(loss, {"x": x, "W": W, "b": b}, dict(grads, x=dx))

    return case


def pointwise_case(rng):
    """1x1 convolution, w.r.t. x, W and b."""
    x, W, b = randn(rng, 2, 3, 4, 5), randn(rng, 5, 6), randn(rng, 6)
    out, cache = pointwise.pointwise_forward(x, W, b)
    G = randn(rng, *out.shape)
    dx, grads = pointwise.pointwise_backward(G, cache)
    return check(lambda: dot(pointwise.pointwise_forward(x, W, b)[0], G), {"x": x, "W": W, "b": b}, dict(grads, x=dx))


def relu6_case(rng):
    """ReLU6 on entries at least 0.1 away from its kinks at 0 and 6."""
    x = rng.uniform(-3, 9, (5, 8))
    x = numpy.where(numpy.abs(x) < 0.1, 0.5, numpy.where(numpy.abs(x - 6) < 0.1, 5.5, x))
    x = backend.to_device(x, F64)
    out, cache = activations.relu6_forward(x)
    G = randn(rng, *out.shape)
    return check(lambda: dot(activations.relu6_forward(x)[0], G), {"x": x}, {"x": activations.relu6_backward(G, cache)})


def global_avg_case(rng):
    """Global average pooling (N, H, W, C) -> (N, C)."""
    x = randn(rng, 2, 3, 5, 4)
    out, cache = pool.global_avg_pool_forward(x)
    G = randn(rng, *out.shape)
    dx = pool.global_avg_pool_backward(G, cache)
    return check(lambda: dot(pool.global_avg_pool_forward(x)[0], G), {"x": x}, {"x": dx})


CASES = [
    ("conv 3x3 stride 1 pad 1 (Winograd forward)", conv_case(1, 1, "winograd")),
    ("conv 3x3 stride 1 pad 1 (im2col forward)", conv_case(1, 1, "im2col")),
    ("conv 3x3 stride 2 pad 0 (im2col forward)", conv_case(2, 0, "im2col")),
    ("max-pool 2x2 stride 2", pool_case),
    ("relu", relu_case),
    ("dense", dense_case),
    ("dropout", dropout_case),
    ("depthwise 3x3 stride 1 (SAME padding)", depthwise_case(3, 1)),
    ("depthwise 5x5 stride 2 (asymmetric SAME padding)", depthwise_case(5, 2)),
    ("pointwise 1x1 conv", pointwise_case),
    ("relu6", relu6_case),
    ("global average pool", global_avg_case),
]
