"""The rectified linear units ReLU(x) = max(x, 0) and ReLU6(x) = min(max(x, 0), 6), forward and backward.

VGG16 puts a ReLU after every convolution and every hidden fully connected
layer; the paper's Eq. 4 uses the same non-linearity for the joint embedding.
The derivative is 1 where the input was positive and 0 elsewhere (we take 0 at
exactly 0, as PyTorch does). EfficientNet-Lite uses ReLU6, which also clips at 6
(kind to 8-bit quantisation); its derivative is 1 strictly between 0 and 6.
"""

from minicnnrnn.core.backend import xp


def relu_forward(x):
    """ReLU of any array.

    x: any shape. Returns (out, cache) with out = max(x, 0), same shape and dtype.
    The cache is the output itself: out > 0 exactly where x > 0.
    """
    out = xp.maximum(x, 0)
    return out, out


def relu_backward(dout, cache):
    """Gradient through ReLU: dout where the forward output was positive, 0 elsewhere.

    dout: same shape as the forward output. Returns dx, same shape.
    """
    out = cache
    return dout * (out > 0)


def relu6_forward(x):
    """ReLU6 of any array: min(max(x, 0), 6).

    x: any shape. Returns (out, cache), out of the same shape and dtype; the cache is x.
    """
    return xp.clip(x, 0, 6), x


def relu6_backward(dout, cache):
    """Gradient through ReLU6: dout where 0 < x < 6, 0 elsewhere (0 at the kinks, as PyTorch).

    dout: same shape as the forward output. Returns dx, same shape.
    """
    x = cache
    return dout * ((x > 0) & (x < 6))
