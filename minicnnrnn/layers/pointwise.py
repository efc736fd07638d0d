"""Pointwise (1x1) convolution on NHWC maps, forward and backward.

A 1x1 convolution mixes the channels of each pixel on its own: it is a dense layer
applied to every pixel, ``out[n, y, x, :] = x[n, y, x, :] @ W + b`` with W: (C_in,
C_out). On NHWC maps the pixels are the rows of ``x.reshape(N*H*W, C_in)``, so
both passes are single matrix products (no im2col copy):

    out = X @ W + b,   dW = X.T @ dOut,   db = sum of dOut rows,   dX = dOut @ W.T

EfficientNet uses it to expand a block's channels, to project them back (the
linear bottleneck, no activation after it) and for the 1280-channel head.
"""

from minicnnrnn.core.backend import xp


def pointwise_forward(x, W, b):
    """1x1 convolution.

    x: (N, H, W, C_in); W: (C_in, C_out); b: (C_out,).
    Returns (out (N, H, W, C_out), cache).
    """
    if x.ndim != 4 or W.ndim != 2 or x.shape[3] != W.shape[0] or b.shape != (W.shape[1],):
        raise ValueError(
            f"pointwise: input {tuple(x.shape)}, kernels {tuple(W.shape)}, bias {tuple(b.shape)} do not fit"
        )
    N, H, Wd, C = x.shape
    out = x.reshape(N * H * Wd, C) @ W
    out += b
    return out.reshape(N, H, Wd, W.shape[1]), (x, W)


def pointwise_backward(dout, cache):
    """Gradient of :func:`pointwise_forward`.

    dout: (N, H, W, C_out). Returns (dx (N, H, W, C_in), {"W": (C_in, C_out), "b": (C_out,)}).
    """
    x, W = cache
    N, H, Wd, C = x.shape
    rows = x.reshape(-1, C)
    drows = dout.reshape(-1, W.shape[1])
    dx = (drows @ W.T).reshape(x.shape)
    return dx, {"W": rows.T @ drows, "b": xp.sum(drows, axis=0)}
