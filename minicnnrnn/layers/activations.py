"""The rectified linear unit, ReLU(x) = max(x, 0), forward and backward.

VGG16 puts a ReLU after every convolution and every hidden fully connected
layer; the paper's Eq. 4 uses the same non-linearity for the joint embedding.
The derivative is 1 where the input was positive and 0 elsewhere (we take 0 at
exactly 0, as PyTorch does).
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
