"""Winograd F(2x2, 3x3): a 3x3 stride-1 convolution with 2.25x fewer multiplications.

A direct 3x3 convolution spends 9 multiplications per output pixel and channel
pair. Winograd's minimal filtering algorithm (as applied to CNNs by Lavin and
Gray, 2016) computes a 2x2 block of outputs from the 4x4 input tile that covers
it with 16 multiplications instead of 4 * 9 = 36:

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (* is elementwise)

with d a 4x4 input tile, g a 3x3 kernel, Y the 2x2 output block and

    B^T = [[1, 0, -1, 0],   G = [[1,   0,   0  ],   A^T = [[1, 1,  1,  0],
           [0, 1,  1, 0],        [1/2, 1/2, 1/2],          [0, 1, -1, -1]]
           [0, -1, 1, 0],        [1/2,-1/2, 1/2],
           [0, 1,  0, -1]]       [0,   0,   1  ]]

Summed over input channels, the elementwise product becomes, for each of the
16 positions (a, b) of the 4x4 tile, one matrix product

    M[a, b] = V[a, b] @ U[a, b],   V: (tiles, C_in),  U: (C_in, C_out),

so the work is 16 matrix products with K = C_in (plus cheap additions for the
transforms) instead of im2col's one product with K = 9 * C_in.

The transforms B^T d B and A^T M A only add and subtract, so they are written as
a few whole-array operations on strided views (no per-tile Python loop). Two
layout choices keep those operations on contiguous memory, where NumPy is about
twice as fast: the padded input is stored with its even and odd columns apart,
so the four columns of every tile are plain slices; and the output transform
works on contiguous arrays, writing each interleaved output pixel only once
(with the ReLU fused into that write when asked).

The picture is processed in blocks of tile rows (a hundred to a thousand or so
tiles, see _plan_blocks), and the blocks are shared among CPU threads;
on the GPU one block usually covers the batch.
"""

import queue
from concurrent.futures import ThreadPoolExecutor

import numpy

from minicnnrnn.core import backend, threads
from minicnnrnn.core.backend import xp

# The RGB input layer (3 channels) gains nothing: im2col is used below this.
MIN_CHANNELS = 8
# Tiles per block on the CPU: TILES_PER_CHANNEL * C (each kernel entry a block
# reads is then used that many times), at least MIN_TILES (to keep the Python
# overhead per tile small), and at most BLOCK_BYTES_CPU of transformed input.
# Measured on a 2-core Zen 4 CPU (one thread, VGG16's layers, 2 images): since the
# transforms take each block in a few whole-block calls, blocks of 2 * C tiles
# (the transforms' arrays stay in the L2 cache) beat 4 * C by about 10%; smaller
# ones lose again in the matrix products and the per-call overhead.
TILES_PER_CHANNEL = 2
MIN_TILES = 128
BLOCK_BYTES_CPU = 32 * 2**20
# On the GPU a block is as large as this (usually the whole batch).
BLOCK_BYTES_GPU = 256 * 2**20


# CPU threads working on blocks in parallel: $MINICNNRNN_THREADS, at most the cores.
WORKERS = threads.env_workers(strict=False)

_G = numpy.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
_GG = {}  # (array type, dtype) -> kron(G, G) on that backend: copied to a GPU once, not once per layer


def transform_kernels(W):
    """U[a, b] = (G g G^T)[a, b] for every kernel g = W[:, :, c, f].

    W: (3, 3, C_in, C_out). Returns U: (16, C_in, C_out), position a*4 + b first.
    kron(G, G)[a*4 + b, i*3 + j] = G[a, i] * G[b, j], so this is one matrix product.
    """
    key = (type(W), W.dtype)
    if key not in _GG:
        _GG[key] = xp.asarray(numpy.kron(_G, _G), dtype=W.dtype)
    GG = _GG[key]
    return (GG @ W.reshape(9, -1)).reshape(16, W.shape[2], W.shape[3])


def _apply_bt(z, out):
    """B^T applied along a list of 4 arrays z (rows or columns of a tile), into out[0..3]."""
    xp.subtract(z[0], z[2], out=out[0])
    xp.add(z[1], z[2], out=out[1])
    xp.subtract(z[2], z[1], out=out[2])
    xp.subtract(z[1], z[3], out=out[3])


def _apply_at(m, out0, out1):
    """A^T applied along a list of 4 arrays m: out0 = m0 + m1 + m2, out1 = m1 - m2 - m3."""
    xp.add(m[0], m[1], out=out0)
    out0 += m[2]
    xp.subtract(m[1], m[2], out=out1)
    out1 -= m[3]


def _store(result, out, relu):
    """Write a finished contiguous result into its strided place in the output (ReLU fused)."""
    if relu:
        xp.maximum(result, 0, out=out)
    else:
        out[...] = result


def _pad_split_columns(x, top, bottom, left, right):
    """Zero-pad x and store its even and odd columns apart.

    x: (N, H, W, C) -> (N, H + top + bottom, 2, (W + left + right) // 2, C) where
    [:, y, q, m] is padded pixel (y, 2*m + q). The padded width must be even.
    """
    N, H, W, C = x.shape
    Hp, Wp = H + top + bottom, W + left + right
    xs = xp.zeros((N, Hp, 2, Wp // 2, C), dtype=x.dtype)
    for q in range(2):
        first = (q - left) % 2  # first input column with padded parity q
        count = len(range(first, W, 2))
        m0 = (first + left) // 2
        xs[:, top : top + H, q, m0 : m0 + count] = x[:, :, first::2]
    return xs


class _Buffers:
    """Scratch arrays reused by every block of one convolution (avoids re-allocating)."""

    def __init__(self, rows, Tw, C, F, dtype):
        """rows: images x tile rows per block; Tw: tiles per row."""
        self.T = xp.empty(4 * rows * 2 * (Tw + 1) * C, dtype)
        self.V = xp.empty(16 * rows * Tw * C, dtype)
        self.M = xp.empty(16 * rows * Tw * F, dtype)
        self.S = xp.empty(8 * rows * Tw * F, dtype)
        self.R = xp.empty(4 * rows * Tw * F, dtype)


def _block(d, U, b, out, buf, relu):
    """Convolve one block of tile rows.

    d: (n, 2r+2, 2, tw+1, C) padded input rows with split columns (see
    _pad_split_columns); out: (n, 2r, 2tw, F) the block's output rows.
    """
    n, rows, _, half, C = d.shape
    r, tw = (rows - 2) // 2, half - 1
    P, F = n * r * tw, U.shape[2]
    # V = B^T d B for every tile: first along the tile's rows, then along its columns.
    # Tile column x covers padded columns 2x .. 2x+3 = (even x, odd x, even x+1, odd x+1).
    T = buf.T[: 4 * n * r * 2 * half * C].reshape(4, n, r, 2, half, C)
    _apply_bt([d[:, a : a + 2 * r : 2] for a in range(4)], T)
    V = buf.V[: 16 * P * C].reshape(4, 4, n, r, tw, C)
    _apply_bt([T[:, :, :, k % 2, k // 2 : k // 2 + tw] for k in range(4)], V.transpose(1, 0, 2, 3, 4, 5))
    # The 16 matrix products over input channels.
    M = buf.M[: 16 * P * F].reshape(16, P, F)
    xp.matmul(V.reshape(16, P, C), U, out=M)
    # Position (1, 1) of a tile enters all four outputs of A^T M A with weight 1:
    # adding the bias there is a quarter of the work of adding it to the output.
    M[5] += b
    M = M.reshape(4, 4, n, r, tw, F)
    # Y = A^T M A: along the tile's rows into S, then along its columns into R,
    # then each of the 2x2 output pixels goes to its interleaved place.
    S = buf.S[: 8 * P * F].reshape(2, 4, n, r, tw, F)
    _apply_at(M, S[0], S[1])
    R = buf.R[: 4 * P * F].reshape(2, 2, n, r, tw, F)
    _apply_at(S.transpose(1, 0, 2, 3, 4, 5), R[:, 0], R[:, 1])
    for i in range(2):
        _store(R[i, 0], out[:, i::2, 0::2], relu)
        _store(R[i, 1], out[:, i::2, 1::2], relu)


def _plan_blocks(N, Th, Tw, tiles, workers):
    """(images, tile rows) per block, for blocks of about `tiles` tiles.

    A layer that fits in one block is done in one block; a larger one is cut
    into a multiple of `workers` blocks, so that the threads get about equal shares.
    """
    if N * Th * Tw <= tiles:
        return N, Th
    count = max(workers, N * Th * Tw // tiles // workers * workers)
    if count <= N:
        return -(-N // count), Th
    return 1, -(-Th // -(-count // N))


_limiter = []


def _blas_limiter():
    """threadpoolctl's controller (made once), or None if threadpoolctl is not installed."""
    if not _limiter:
        try:
            from threadpoolctl import ThreadpoolController

            _limiter.append(ThreadpoolController())
        except ImportError:
            _limiter.append(None)
    return _limiter[0]


def _run(blocks, job, make_buffers):
    """Call job(block, buffers) for every block: on WORKERS threads on the CPU, in order on the GPU.

    NumPy's element-wise operations use one core, so the transforms run in
    parallel only if blocks do; each thread then uses a single-threaded BLAS for
    its own matrix products. Without threadpoolctl (to pin BLAS to one thread)
    the blocks run one after the other.
    """
    workers = min(WORKERS, len(blocks)) if not backend.is_cupy() and _blas_limiter() else 1
    if workers <= 1:
        buf = make_buffers()
        for block in blocks:
            job(block, buf)
        return

    todo = queue.SimpleQueue()  # shared: a thread slowed down by other programs takes fewer
    for block in blocks:
        todo.put(block)

    def worker(_):
        buf = make_buffers()
        while True:
            try:
                block = todo.get_nowait()
            except queue.Empty:
                return
            job(block, buf)

    with _blas_limiter().limit(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        list(pool.map(worker, range(workers)))


def conv3x3(x, W, b, pad=1, relu=False, U=None):
    """3x3 stride-1 convolution by Winograd F(2x2, 3x3).

    x: (N, H, W, C_in), W: (3, 3, C_in, C_out), b: (C_out,), pad: int;
    relu: apply ReLU to the output (fused, for inference);
    U: transform_kernels(W) if already computed (weights reused for many batches).
    Returns out: (N, H + 2*pad - 2, W + 2*pad - 2, C_out), equal to
    conv.conv_forward_im2col(x, W, b, 1, pad) up to float rounding.
    """
    N, H, Wd, C = x.shape
    F = W.shape[3]
    Ho, Wo = H + 2 * pad - 2, Wd + 2 * pad - 2
    Th, Tw = (Ho + 1) // 2, (Wo + 1) // 2
    # Pad so that Th x Tw tiles of 2x2 outputs cover the picture exactly (extra rows/cols are cropped).
    xs = _pad_split_columns(x, pad, 2 * Th + 2 - H - pad, pad, 2 * Tw + 2 - Wd - pad)
    U = transform_kernels(W) if U is None else U
    out = xp.empty((N, 2 * Th, 2 * Tw, F), dtype=x.dtype)
    tile_bytes = 16 * max(C, F) * x.itemsize  # one tile's transformed input (or output)
    if backend.is_cupy():
        nb, rb = _plan_blocks(N, Th, Tw, max(1, BLOCK_BYTES_GPU // tile_bytes), 1)
    else:
        tiles = max(MIN_TILES, min(TILES_PER_CHANNEL * max(C, F), BLOCK_BYTES_CPU // tile_bytes))
        nb, rb = _plan_blocks(N, Th, Tw, tiles, WORKERS)
    blocks = [(n, t) for n in range(0, N, nb) for t in range(0, Th, rb)]
    # A layer too small to give every thread a block of tiles gives each thread a
    # share of the output channels instead (the input transform is then repeated).
    shares = WORKERS if not backend.is_cupy() and len(blocks) < WORKERS else 1
    cuts = [F * i // shares for i in range(shares + 1)]
    jobs = [(n, t, f0, f1) for n, t in blocks for f0, f1 in zip(cuts, cuts[1:])]

    def job(block, buf):
        n, t, f0, f1 = block
        _block(
            xs[n : n + nb, 2 * t : 2 * t + 2 * rb + 2],
            U[:, :, f0:f1],
            b[f0:f1],
            out[n : n + nb, 2 * t : 2 * t + 2 * rb, :, f0:f1],
            buf,
            relu,
        )

    _run(jobs, job, lambda: _Buffers(nb * rb, Tw, C, F, x.dtype))
    return out[:, :Ho, :Wo]
