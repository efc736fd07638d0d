"""2-D convolution on NHWC feature maps with HWIO kernels, forward and backward.

A convolution layer of VGG16 slides a (KH, KW, C_in) window over the padded
input and, at each position, takes the dot product of the window with each of
C_out kernels:

    out[n, y, x, f] = b[f] + sum_{i, j, c} xpad[n, s*y + i, s*x + j, c] * W[i, j, c, f]

**im2col** turns this into one matrix product. Copy every window into a row of a
"column" matrix ``cols: (N*Ho*Wo, KH*KW*C_in)``; reshape the kernels to
``(KH*KW*C_in, C_out)``; then ``out = cols @ W + b`` (a dense layer applied to
every window). The backward pass is the same three steps in reverse:

    db = sum of dout,   dW = cols.T @ dout,   dcols = dout @ W.T,
    dx = col2im(dcols)  (add every row of dcols back onto the window it came from)

im2col (:func:`im2col`, the readable reference; :func:`im2col_strided`, the same matrix in one
copy, which both passes run) is used for every backward pass. For the
3x3 stride-1 convolutions that make up VGG16 the forward pass by default uses
the faster Winograd algorithm in :mod:`minicnnrnn.layers.winograd` (same result up to
float rounding; tests check that the two agree).

Memory: ``cols`` is KH*KW times larger than the input (115 MB for one 224x224
image with 64 channels), so both passes work through the batch a few images at
a time.
"""

from minicnnrnn.core import backend
from minicnnrnn.core.backend import xp
from minicnnrnn.layers import winograd

# Upper bound on the size of one im2col matrix; larger batches are split.
COLS_BUDGET_BYTES = 64 * 2**20
# Bytes of output rows computed at a time by the forward pass (a slice within the CPU's L2 cache).
ROWS_BUDGET_BYTES = 64 * 2**10


def output_size(size, k, stride, pad):
    """Output length along one axis: floor((size + 2*pad - k) / stride) + 1."""
    return (size + 2 * pad - k) // stride + 1


def im2col(x, kh, kw, stride, pad):
    """Every (kh, kw) window of the padded input as one row.

    x: (N, H, W, C). Returns cols: (N*Ho*Wo, kh*kw*C), rows in (n, y, x) order,
    columns in (i, j, c) order -- the order of W.reshape(kh*kw*C, C_out).
    """
    N, H, W, C = x.shape
    Ho, Wo = output_size(H, kh, stride, pad), output_size(W, kw, stride, pad)
    xpad = xp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    cols = xp.empty((N, Ho, Wo, kh, kw, C), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            # Kernel tap (i, j) sees input pixel (s*y + i, s*x + j) for every output (y, x).
            cols[:, :, :, i, j, :] = xpad[:, i : i + stride * Ho : stride, j : j + stride * Wo : stride, :]
    return cols.reshape(N * Ho * Wo, kh * kw * C)


def im2col_strided(x, kh, kw, stride, pad):
    """The same matrix as :func:`im2col`, copied from a strided view in one pass (the faster version).

    x: (N, H, W, C). Returns cols: (N*Ho*Wo, kh*kw*C), equal to im2col(...).
    Within one kernel row i, a window's kw*C entries are kw*C consecutive
    numbers of the padded input (one picture row), so the view
    (N, Ho, Wo, kh, kw*C) needs no copy; copying it once moves runs of kw*C
    numbers instead of im2col's kh*kw copies of runs of C (3 for RGB: the copies
    were most of conv1_1's time).
    """
    N, H, W, C = x.shape
    Ho, Wo = output_size(H, kh, stride, pad), output_size(W, kw, stride, pad)
    xpad = xp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    sn, sy, sx, sc = xpad.strides
    windows = xp.lib.stride_tricks.as_strided(xpad, (N, Ho, Wo, kh, kw * C), (sn, stride * sy, stride * sx, sy, sc))
    return xp.ascontiguousarray(windows).reshape(N * Ho * Wo, kh * kw * C)


def col2im(dcols, x_shape, kh, kw, stride, pad):
    """The adjoint of :func:`im2col`: add each row's entries back onto its window.

    dcols: (N*Ho*Wo, kh*kw*C); x_shape: (N, H, W, C). Returns dx: x_shape.
    Overlapping windows receive the sum of their contributions.
    """
    N, H, W, C = x_shape
    Ho, Wo = output_size(H, kh, stride, pad), output_size(W, kw, stride, pad)
    dcols = dcols.reshape(N, Ho, Wo, kh, kw, C)
    dxpad = xp.zeros((N, H + 2 * pad, W + 2 * pad, C), dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            dxpad[:, i : i + stride * Ho : stride, j : j + stride * Wo : stride, :] += dcols[:, :, :, i, j, :]
    return dxpad[:, pad : pad + H, pad : pad + W, :]


def _batch_chunks(N, bytes_per_image):
    """Slices of the batch whose im2col matrices stay within COLS_BUDGET_BYTES."""
    step = max(1, COLS_BUDGET_BYTES // max(1, bytes_per_image))
    return [slice(n, min(N, n + step)) for n in range(0, N, step)]


def conv_forward_im2col(x, W, b, stride=1, pad=0, relu=False):
    """Convolution by im2col + one matrix product per chunk of the batch.

    x: (N, H, W, C_in), W: (KH, KW, C_in, C_out), b: (C_out,); relu: apply
    ReLU to the output (fused, for inference). Returns out: (N, Ho, Wo, C_out).
    """
    N, H, Wd, C = x.shape
    kh, kw, _, F = W.shape
    Ho, Wo = output_size(H, kh, stride, pad), output_size(Wd, kw, stride, pad)
    Wmat = W.reshape(kh * kw * C, F)
    out = xp.empty((N, Ho, Wo, F), dtype=x.dtype)
    for part in _batch_chunks(N, Ho * Wo * kh * kw * C * x.itemsize):
        cols, rows = im2col_strided(x[part], kh, kw, stride, pad), out[part].reshape(-1, F)
        # The product, bias and ReLU a cache-sized slice of rows at a time: the
        # bias and the ReLU then re-read rows still in cache, not in memory. (On the
        # GPU one product: large products suit it, and its rounding stays as it was.)
        step = rows.shape[0] if backend.is_cupy() else max(1, ROWS_BUDGET_BYTES // (F * x.itemsize))
        for r in range(0, rows.shape[0], step):
            chunk = rows[r : r + step]  # a view: the product is written in place
            xp.matmul(cols[r : r + step], Wmat, out=chunk)
            chunk += b
            if relu:
                xp.maximum(chunk, 0, out=chunk)
    return out


def uses_winograd(W_shape, stride):
    """True if method "auto" runs this layer by Winograd: 3x3, stride 1, at least MIN_CHANNELS inputs."""
    return tuple(W_shape[:2]) == (3, 3) and stride == 1 and W_shape[2] >= winograd.MIN_CHANNELS


def conv_forward(x, W, b, stride=1, pad=0, method="auto", relu=False, U=None):
    """Convolution layer forward.

    x: (N, H, W, C_in) input feature maps; W: (KH, KW, C_in, C_out) kernels
    (HWIO); b: (C_out,). stride, pad: ints (the same along both axes).
    method: "im2col" (reference), "winograd" (3x3, stride 1 only) or "auto"
    (Winograd where it applies and the input has at least winograd.MIN_CHANNELS
    channels, see :func:`uses_winograd`).
    relu: for inference, return ReLU(conv(x)) computed in place (and no cache).
    U: the Winograd-transformed kernels (winograd.transform_kernels(W)) when the
    caller keeps them between batches; only used on the Winograd path.

    Returns (out (N, Ho, Wo, C_out), cache) with Ho = floor((H + 2*pad - KH) /
    stride) + 1 and likewise Wo. The cache holds only the input, the weights,
    stride and pad, so a forward pass whose cache is dropped keeps nothing;
    backward rebuilds the im2col matrix it needs. With relu=True the cache is None.
    """
    if x.ndim != 4 or W.ndim != 4 or x.shape[3] != W.shape[2]:
        raise ValueError(f"conv: input {tuple(x.shape)} does not match kernels {tuple(W.shape)} (NHWC / HWIO)")
    if method not in ("auto", "im2col", "winograd"):
        raise ValueError(f"conv: unknown method {method!r}")
    fits_winograd = W.shape[:2] == (3, 3) and stride == 1
    if method == "winograd" and not fits_winograd:
        raise ValueError("conv: the Winograd path handles 3x3 kernels with stride 1 only")
    if method == "winograd" or (method == "auto" and uses_winograd(W.shape, stride)):
        out = winograd.conv3x3(x, W, b, pad, relu, U)
    else:
        out = conv_forward_im2col(x, W, b, stride, pad, relu)
    return out, (None if relu else (x, W, stride, pad))


def conv_backward(dout, cache, input_grad=True):
    """Convolution layer backward.

    dout: (N, Ho, Wo, C_out); cache: from conv_forward(..., relu=False).
    Returns (dx (N, H, W, C_in),
    {"W": (KH, KW, C_in, C_out), "b": (C_out,)}); dx is None when input_grad is
    False (the network's first layer: nothing needs the gradient of the images).
    """
    x, W, stride, pad = cache
    N, H, Wd, C = x.shape
    kh, kw, _, F = W.shape
    Ho, Wo = dout.shape[1:3]
    Wmat = W.reshape(kh * kw * C, F)
    dWmat = xp.zeros_like(Wmat)
    dx = xp.empty_like(x) if input_grad else None
    for part in _batch_chunks(N, Ho * Wo * kh * kw * C * x.itemsize):
        cols = im2col_strided(x[part], kh, kw, stride, pad)
        dout2 = dout[part].reshape(-1, F)
        dWmat += cols.T @ dout2
        if input_grad:
            dx[part] = col2im(dout2 @ Wmat.T, x[part].shape, kh, kw, stride, pad)
    grads = {"W": dWmat.reshape(W.shape), "b": xp.sum(dout, axis=(0, 1, 2))}
    return dx, grads


def flops(x_shape, W_shape, stride=1, pad=0):
    """Floating-point operations of a direct convolution (2 per multiply-add).

    x_shape: (N, H, W, C_in); W_shape: (KH, KW, C_in, C_out). Returns an int.
    """
    N, H, Wd, _ = x_shape
    kh, kw, C, F = W_shape
    Ho, Wo = output_size(H, kh, stride, pad), output_size(Wd, kw, stride, pad)
    return 2 * N * Ho * Wo * kh * kw * C * F
