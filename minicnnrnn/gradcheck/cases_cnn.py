"""Gradient checks of the whole networks of ``cnn/`` (§4): tiny VGG and EfficientNet end to end.

Each case builds a small float64 problem on the host (so every backend sees the
same numbers), runs the network's forward and backward, and returns the largest
relative error against centred finite differences of ``L = sum(out * G)``, for every
parameter and the images. The layers they are made of are checked in ``cases_layers.py``.
"""

import numpy

from minicnnrnn.cnn import efficientnet, vgg
from minicnnrnn.core import backend
from minicnnrnn.core.numgrad import check
from minicnnrnn.gradcheck.cases_layers import F64, dot, randn


def _with_biases(params, rng):
    """Give every bias small random values (initialisers make them 0), so every term is exercised."""
    for key in params:
        if key.endswith("/b"):
            params[key] += randn(rng, *params[key].shape) * 0.1
    return params


TINY_META = vgg.make_meta(config=[4, "M", 6, "M"], fc=[5], num_classes=3, input_size=8)


def tiny_vgg_case(rng):
    """A two-block VGG with one hidden fc layer and dropout, logits w.r.t. every parameter and the images."""
    params = _with_biases(backend.params_to_device(vgg.init_params(TINY_META, rng, F64)), rng)
    images = randn(rng, 2, 8, 8, 3)
    G = randn(rng, 2, 3)

    def logits():  # the same dropout mask on every call: a fresh Generator with one seed
        outs, cache = vgg.vgg_forward(
            params, TINY_META, images, ("logits",), train=True, rng=numpy.random.default_rng(1), dropout_p=0.3
        )
        return outs["logits"], cache

    _, cache = logits()
    dimages, grads = vgg.vgg_backward(G, cache, input_grad=True)
    # The images are checked like a parameter: the input gradient is what Fig. 10's maps are made of.
    return check(lambda: dot(logits()[0], G), {**params, "images": images}, {**grads, "images": dimages})


TINY_EFFICIENTNET = efficientnet.make_meta(
    efficientnet.blocks_from_stages([(1, 3, 1, 1, 4), (2, 3, 2, 2, 6)], stem=4), stem=4, head=8, num_classes=3
)


def tiny_efficientnet_case(rng):
    """A three-block EfficientNet (one residual block), logits w.r.t. every parameter and the images.

    ReLU6 kinks: with random weights a few pre-activations may sit within h of 0 or 6;
    a small image keeps the chance low and the seed is fixed.
    """
    params = _with_biases(backend.params_to_device(efficientnet.init_params(TINY_EFFICIENTNET, rng, F64)), rng)
    images = randn(rng, 2, 7, 7, 3)
    G = randn(rng, 2, 3)

    def logits():
        return efficientnet.efficientnet_forward(params, TINY_EFFICIENTNET, images, ("logits",), train=True)

    _, cache = logits()
    dimages, grads = efficientnet.efficientnet_backward(G, cache, input_grad=True)
    return check(lambda: dot(logits()[0]["logits"], G), {**params, "images": images}, {**grads, "images": dimages})


def tiny_vgg_from_layer_case(rng):
    """The same VGG backpropagated from its hidden fc layer (``start="fc6"``, the I of a
    two-fc network's fc7), w.r.t. the images and the layers below: Fig. 10's path."""
    params = _with_biases(backend.params_to_device(vgg.init_params(TINY_META, rng, F64)), rng)
    images = randn(rng, 2, 8, 8, 3)
    G = randn(rng, 2, 5)

    def fc6():
        outs, cache = vgg.vgg_forward(
            params, TINY_META, images, ("fc6",), train=True, rng=numpy.random.default_rng(1), dropout_p=0.3
        )
        return outs["fc6"], cache

    _, cache = fc6()
    dimages, grads = vgg.vgg_backward(G, cache, input_grad=True, start="fc6")
    below = {k: v for k, v in params.items() if not k.startswith("logits/")}
    return check(lambda: dot(fc6()[0], G), {**below, "images": images}, {**grads, "images": dimages})


CASES = [
    ("tiny VGG end to end (vgg.vgg_backward, train mode)", tiny_vgg_case),
    ("tiny EfficientNet end to end (efficientnet.efficientnet_backward)", tiny_efficientnet_case),
    ("tiny VGG from fc6 to the pixels (vgg.vgg_backward start=fc6)", tiny_vgg_from_layer_case),
]
