"""Gradient checks of the CNN layers, printed by ``python -m minicnnrnn.gradcheck``.

Each case builds a small float64 problem on the host (so every backend sees the
same numbers), runs the layer's forward and backward, and returns the largest
relative error against centred finite differences of ``L = sum(out * G)``.
Inputs of the piecewise-linear layers (ReLU, max-pool) are kept away from their
kinks, where a finite difference would straddle two linear pieces.
"""

import numpy

from minicnnrnn.cnn import efficientnet, vgg
from minicnnrnn.core import backend
from minicnnrnn.core.numgrad import check
from minicnnrnn.layers import activations, conv, dense, depthwise, dropout, pointwise, pool

F64 = numpy.float64


def _randn(rng, *shape):
    """Standard-normal float64 array of `shape`, drawn on the host, on the selected backend."""
    return backend.to_device(rng.standard_normal(shape), F64)


def _dot(y, G):
    """The scalar L = sum(y * G) whose gradient w.r.t. y is G."""
    return float((y * G).sum())


def conv_case(stride, pad, method):
    """Case function for conv.conv_forward/backward with the given stride, padding and forward method."""

    def case(rng):
        x, W, b = _randn(rng, 2, 5, 6, 8), _randn(rng, 3, 3, 8, 4), _randn(rng, 4)
        out, cache = conv.conv_forward(x, W, b, stride, pad, method)
        G = _randn(rng, *out.shape)
        dx, grads = conv.conv_backward(G, cache)
        return check(
            lambda: _dot(conv.conv_forward(x, W, b, stride, pad, method)[0], G),
            {"x": x, "W": W, "b": b},
            dict(grads, x=dx),
        )

    return case


def pool_case(rng):
    """2x2 max-pool on an odd-sized map (the last row is dropped); entries 0.01 apart, no ties."""
    shape = (2, 5, 4, 3)
    x = backend.to_device(rng.permutation(int(numpy.prod(shape))).reshape(shape) * 0.01, F64)
    out, cache = pool.max_pool_forward(x)
    G = _randn(rng, *out.shape)
    return check(lambda: _dot(pool.max_pool_forward(x)[0], G), {"x": x}, {"x": pool.max_pool_backward(G, cache)})


def relu_case(rng):
    """ReLU on entries at least 0.1 away from zero."""
    x = rng.standard_normal((4, 7))
    x = backend.to_device(numpy.sign(x) * (0.1 + numpy.abs(x)), F64)
    out, cache = activations.relu_forward(x)
    G = _randn(rng, *out.shape)
    return check(lambda: _dot(activations.relu_forward(x)[0], G), {"x": x}, {"x": activations.relu_backward(G, cache)})


def dense_case(rng):
    """Affine layer x @ W + b, w.r.t. x, W and b."""
    x, W, b = _randn(rng, 3, 5), _randn(rng, 5, 4), _randn(rng, 4)
    out, cache = dense.dense_forward(x, W, b)
    G = _randn(rng, *out.shape)
    dx, grads = dense.dense_backward(G, cache)
    return check(lambda: _dot(dense.dense_forward(x, W, b)[0], G), {"x": x, "W": W, "b": b}, dict(grads, x=dx))


def dropout_case(rng):
    """Inverted dropout with a fixed mask (p = 0.4), w.r.t. x."""
    x = _randn(rng, 4, 6)
    mask = dropout.make_mask(x.shape, 0.4, rng, F64)
    out, cache = dropout.dropout_forward(x, mask)
    G = _randn(rng, *out.shape)
    return check(
        lambda: _dot(dropout.dropout_forward(x, mask)[0], G), {"x": x}, {"x": dropout.dropout_backward(G, cache)}
    )


def _with_biases(params, rng):
    """Give every bias small random values (initialisers make them 0), so every term is exercised."""
    for key in params:
        if key.endswith("/b"):
            params[key] += _randn(rng, *params[key].shape) * 0.1
    return params


TINY_META = vgg.make_meta(config=[4, "M", 6, "M"], fc=[5], num_classes=3, input_size=8)


def tiny_vgg_case(rng):
    """A two-block VGG with one hidden fc layer and dropout, logits w.r.t. every parameter and the images."""
    params = _with_biases(backend.params_to_device(vgg.init_params(TINY_META, rng, F64)), rng)
    images = _randn(rng, 2, 8, 8, 3)
    G = _randn(rng, 2, 3)

    def logits():  # the same dropout mask on every call: a fresh Generator with one seed
        outs, cache = vgg.vgg_forward(
            params, TINY_META, images, ("logits",), train=True, rng=numpy.random.default_rng(1), dropout_p=0.3
        )
        return outs["logits"], cache

    _, cache = logits()
    dimages, grads = vgg.vgg_backward(G, cache, input_grad=True)
    # The images are checked like a parameter: the input gradient is what Fig. 10's maps are made of.
    return check(lambda: _dot(logits()[0], G), {**params, "images": images}, {**grads, "images": dimages})


def depthwise_case(k, stride):
    """Depthwise k x k conv with TensorFlow SAME padding (asymmetric for stride 2), w.r.t. x, W and b."""

    def case(rng):
        x, W, b = _randn(rng, 2, 7, 6, 3), _randn(rng, k, k, 3), _randn(rng, 3)
        out, cache = depthwise.depthwise_forward(x, W, b, stride)
        G = _randn(rng, *out.shape)
        dx, grads = depthwise.depthwise_backward(G, cache)
        loss = lambda: _dot(depthwise.depthwise_forward(x, W, b, stride)[0], G)  # noqa: E731
        return check(loss, {"x": x, "W": W, "b": b}, dict(grads, x=dx))

    return case


def pointwise_case(rng):
    """1x1 convolution, w.r.t. x, W and b."""
    x, W, b = _randn(rng, 2, 3, 4, 5), _randn(rng, 5, 6), _randn(rng, 6)
    out, cache = pointwise.pointwise_forward(x, W, b)
    G = _randn(rng, *out.shape)
    dx, grads = pointwise.pointwise_backward(G, cache)
    return check(lambda: _dot(pointwise.pointwise_forward(x, W, b)[0], G), {"x": x, "W": W, "b": b}, dict(grads, x=dx))


def relu6_case(rng):
    """ReLU6 on entries at least 0.1 away from its kinks at 0 and 6."""
    x = rng.uniform(-3, 9, (5, 8))
    x = numpy.where(numpy.abs(x) < 0.1, 0.5, numpy.where(numpy.abs(x - 6) < 0.1, 5.5, x))
    x = backend.to_device(x, F64)
    out, cache = activations.relu6_forward(x)
    G = _randn(rng, *out.shape)
    return check(
        lambda: _dot(activations.relu6_forward(x)[0], G), {"x": x}, {"x": activations.relu6_backward(G, cache)}
    )


def global_avg_case(rng):
    """Global average pooling (N, H, W, C) -> (N, C)."""
    x = _randn(rng, 2, 3, 5, 4)
    out, cache = pool.global_avg_pool_forward(x)
    G = _randn(rng, *out.shape)
    dx = pool.global_avg_pool_backward(G, cache)
    return check(lambda: _dot(pool.global_avg_pool_forward(x)[0], G), {"x": x}, {"x": dx})


TINY_EFFICIENTNET = efficientnet.make_meta(
    efficientnet.blocks_from_stages([(1, 3, 1, 1, 4), (2, 3, 2, 2, 6)], stem=4), stem=4, head=8, num_classes=3
)


def tiny_efficientnet_case(rng):
    """A three-block EfficientNet (one residual block), logits w.r.t. every parameter and the images.

    ReLU6 kinks: with random weights a few pre-activations may sit within h of 0 or 6;
    a small image keeps the chance low and the seed is fixed.
    """
    params = _with_biases(backend.params_to_device(efficientnet.init_params(TINY_EFFICIENTNET, rng, F64)), rng)
    images = _randn(rng, 2, 7, 7, 3)
    G = _randn(rng, 2, 3)

    def logits():
        return efficientnet.efficientnet_forward(params, TINY_EFFICIENTNET, images, ("logits",), train=True)

    _, cache = logits()
    dimages, grads = efficientnet.efficientnet_backward(G, cache, input_grad=True)
    return check(lambda: _dot(logits()[0]["logits"], G), {**params, "images": images}, {**grads, "images": dimages})


def tiny_vgg_from_layer_case(rng):
    """The same VGG backpropagated from its hidden fc layer (``start="fc6"``, the I of a
    two-fc network's fc7), w.r.t. the images and the layers below: Fig. 10's path."""
    params = _with_biases(backend.params_to_device(vgg.init_params(TINY_META, rng, F64)), rng)
    images = _randn(rng, 2, 8, 8, 3)
    G = _randn(rng, 2, 5)

    def fc6():
        outs, cache = vgg.vgg_forward(
            params, TINY_META, images, ("fc6",), train=True, rng=numpy.random.default_rng(1), dropout_p=0.3
        )
        return outs["fc6"], cache

    _, cache = fc6()
    dimages, grads = vgg.vgg_backward(G, cache, input_grad=True, start="fc6")
    below = {k: v for k, v in params.items() if not k.startswith("logits/")}
    return check(lambda: _dot(fc6()[0], G), {**below, "images": images}, {**grads, "images": dimages})


CASES = [
    ("conv 3x3 stride 1 pad 1 (Winograd forward)", conv_case(1, 1, "winograd")),
    ("conv 3x3 stride 1 pad 1 (im2col forward)", conv_case(1, 1, "im2col")),
    ("conv 3x3 stride 2 pad 0 (im2col forward)", conv_case(2, 0, "im2col")),
    ("max-pool 2x2 stride 2", pool_case),
    ("relu", relu_case),
    ("dense", dense_case),
    ("dropout", dropout_case),
    ("tiny VGG end to end (vgg.vgg_backward, train mode)", tiny_vgg_case),
    ("depthwise 3x3 stride 1 (SAME padding)", depthwise_case(3, 1)),
    ("depthwise 5x5 stride 2 (asymmetric SAME padding)", depthwise_case(5, 2)),
    ("pointwise 1x1 conv", pointwise_case),
    ("relu6", relu6_case),
    ("global average pool", global_avg_case),
    ("tiny EfficientNet end to end (efficientnet.efficientnet_backward)", tiny_efficientnet_case),
    ("tiny VGG from fc6 to the pixels (vgg.vgg_backward start=fc6)", tiny_vgg_from_layer_case),
]
