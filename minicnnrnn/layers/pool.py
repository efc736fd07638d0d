"""2x2 max-pooling with stride 2, and global average pooling, on NHWC feature maps, forward and backward.

Each output pixel is the largest of a 2x2 window; VGG16 halves the spatial size
this way after every block of convolutions. An odd last row or column is
dropped (floor), as in PyTorch.

The four members of a window are the strided views x[:, a::2, b::2] for
(a, b) in (0, 0), (0, 1), (1, 0), (1, 1); working on these views avoids any
reshaping copy. The backward pass sends each output's gradient to the member
that won; on a tie the first member in that order wins (PyTorch does the same),
so exactly one input receives it.

Global average pooling (EfficientNet's last step before its classifier) averages
each channel over the whole map: (N, H, W, C) -> (N, C).
"""

from minicnnrnn.core.backend import xp

_WINDOW = ((0, 0), (0, 1), (1, 0), (1, 1))


def _members(x, Ho, Wo):
    """The four (N, Ho, Wo, C) strided views of the 2x2 windows of x."""
    return [x[:, a : 2 * Ho : 2, b : 2 * Wo : 2, :] for a, b in _WINDOW]


def max_pool_forward(x):
    """Max over non-overlapping 2x2 windows.

    x: (N, H, W, C). Returns (out (N, H // 2, W // 2, C), cache).
    The cache holds x and out; backward finds the winners again from them,
    so inference keeps no extra array.
    """
    N, H, W, C = x.shape
    Ho, Wo = H // 2, W // 2
    m = _members(x, Ho, Wo)
    out = xp.maximum(xp.maximum(m[0], m[1]), xp.maximum(m[2], m[3]))
    return out, (x, out)


def max_pool_forward_rows_first(x):
    """The same as :func:`max_pool_forward`, in two passes (the faster version, used by VGG).

    x: (N, H, W, C). Returns (out (N, H // 2, W // 2, C), cache (x, out)).
    First the larger of each pair of rows: those are whole contiguous rows, a
    fast elementwise pass; then the larger of each pair of columns of that
    half-size array. Max is exact, so the result equals max_pool_forward's.
    """
    N, H, W, C = x.shape
    Ho, Wo = H // 2, W // 2
    rows = xp.maximum(x[:, 0 : 2 * Ho : 2, : 2 * Wo], x[:, 1 : 2 * Ho : 2, : 2 * Wo])
    out = xp.maximum(rows[:, :, 0::2], rows[:, :, 1::2])
    return out, (x, out)


def max_pool_backward(dout, cache):
    """Gradient of max-pooling: each dout entry goes to its window's winner.

    dout: (N, Ho, Wo, C). Returns dx: (N, H, W, C), zero except at the winners.
    """
    x, out = cache
    Ho, Wo = out.shape[1:3]
    dx = xp.zeros_like(x)
    taken = xp.zeros(out.shape, dtype=bool)
    for (a, b), member in zip(_WINDOW, _members(x, Ho, Wo)):
        wins = (member == out) & ~taken  # first winner only, on ties
        taken |= wins
        dx[:, a : 2 * Ho : 2, b : 2 * Wo : 2, :] = dout * wins
    return dx


def global_avg_pool_forward(x):
    """Global average pooling: the mean of each channel over all pixels.

    x: (N, H, W, C). Returns (out (N, C), cache = x.shape).
    """
    return x.mean(axis=(1, 2)), x.shape


def global_avg_pool_backward(dout, cache):
    """Gradient of global average pooling: each pixel gets dout / (H * W).

    dout: (N, C). Returns dx: (N, H, W, C).
    """
    N, H, W, C = cache
    return xp.broadcast_to(dout[:, None, None, :] / (H * W), (N, H, W, C)).copy()
