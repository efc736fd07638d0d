"""A fully connected (dense, affine) layer: out = x @ W + b.

This is VGG16's fc6, fc7 and its classifier, in the row-vector convention of
DESIGN.md: a batch of N vectors is (N, D_in) and W maps it by x @ W. When a
feature map (N, H, W, C) enters the first fc layer it is flattened in (H, W, C)
order, which is what `x.reshape(N, -1)` gives for an NHWC array.
"""

from minicnnrnn.core.backend import xp


def dense_forward(x, W, b):
    """Affine map of a batch.

    x: (N, D_in), W: (D_in, D_out), b: (D_out,). Returns (out (N, D_out), cache).
    """
    out = x @ W + b
    return out, (x, W)


def dense_backward(dout, cache):
    """Gradients of the affine map.

    dout: (N, D_out). Returns (dx (N, D_in), {"W": (D_in, D_out), "b": (D_out,)}).
    """
    x, W = cache
    dx = dout @ W.T
    grads = {"W": x.T @ dout, "b": xp.sum(dout, axis=0)}
    return dx, grads
