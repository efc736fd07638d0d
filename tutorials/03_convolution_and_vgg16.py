# %% [markdown]
# # Tutorial 03: convolution, max-pooling and VGG16, from scratch
#
# The paper (§4) describes every image by the fc7 activations of VGG16, a stack of
# thirteen 3x3 convolutions, five max-pools and three fully connected layers. This
# tutorial builds the two layers that make VGG16 different from a plain network:
#
# 1. a 2-D convolution as **im2col** + one matrix product, and its backward pass,
#    checked with finite differences;
# 2. 2x2 **max-pooling** and its backward pass;
# 3. VGG16 **layer by layer**: shapes, parameter counts and FLOPs;
# 4. a **fast** 3x3 convolution (Winograd F(2x2, 3x3)) and why we chose it.
#
# Layout, as everywhere in minicnnrnn: feature maps are NHWC `(N, H, W, C)`,
# kernels HWIO `(KH, KW, C_in, C_out)`. Run it with
# `python tutorials/03_convolution_and_vgg16.py`.

# %%
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from minicnnrnn.cnn import vgg
from minicnnrnn.core import numgrad
from minicnnrnn.layers import conv, pool, winograd

FAST = os.environ.get("MINICNNRNN_TUTORIAL_FAST") == "1"
OUT = os.environ.get("MINICNNRNN_TUTORIAL_OUT", "tutorials/output")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Convolution, the slow and obvious way
# Output pixel (y, x) of channel f is the dot product of kernel f with the window of
# the zero-padded input whose top-left corner is (s*y, s*x):
#
#     out[n, y, x, f] = b[f] + sum_{i, j, c} xpad[n, s*y + i, s*x + j, c] * W[i, j, c, f]


# %%
def conv_loops(x, W, b, s, p):
    N, H, Wd, C = x.shape
    kh, kw, _, F = W.shape
    xpad = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    Ho, Wo = (H + 2 * p - kh) // s + 1, (Wd + 2 * p - kw) // s + 1
    out = np.empty((N, Ho, Wo, F))
    for n in range(N):
        for y in range(Ho):
            for x_ in range(Wo):
                window = xpad[n, s * y : s * y + kh, s * x_ : s * x_ + kw, :]  # (kh, kw, C)
                out[n, y, x_] = np.tensordot(window, W, axes=3) + b  # (F,)
    return out


x = rng.standard_normal((2, 6, 7, 3))
W = rng.standard_normal((3, 3, 3, 4))
b = rng.standard_normal(4)
slow = conv_loops(x, W, b, s=1, p=1)
print("output shape", slow.shape)

# %% [markdown]
# ## im2col: all windows at once, then one matrix product
# Copy each window into one row of a matrix `cols: (N*Ho*Wo, KH*KW*C)` and flatten
# the kernels to `(KH*KW*C, F)`. The convolution is then `cols @ W + b`: a dense layer
# applied to every window. We fill `cols` with one strided copy per kernel tap (i, j):
# tap (i, j) of every window is the input shifted by (i, j) and sampled every s pixels.


# %%
def my_im2col(x, kh, kw, s, p):
    N, H, Wd, C = x.shape
    xpad = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    Ho, Wo = (H + 2 * p - kh) // s + 1, (Wd + 2 * p - kw) // s + 1
    cols = np.empty((N, Ho, Wo, kh, kw, C))
    for i in range(kh):
        for j in range(kw):
            cols[:, :, :, i, j, :] = xpad[:, i : i + s * Ho : s, j : j + s * Wo : s, :]
    return cols.reshape(N * Ho * Wo, kh * kw * C), (Ho, Wo)


def my_conv(x, W, b, s, p):
    cols, (Ho, Wo) = my_im2col(x, W.shape[0], W.shape[1], s, p)
    return (cols @ W.reshape(-1, W.shape[3]) + b).reshape(x.shape[0], Ho, Wo, -1)


for s, p in [(1, 1), (2, 0)]:
    mine = my_conv(x, W, b, s, p)
    assert np.allclose(mine, conv_loops(x, W, b, s, p))
    assert np.allclose(mine, conv.conv_forward(x, W, b, s, p, method="im2col")[0])
print("im2col convolution == the loops == minicnnrnn.layers.conv (stride 1 pad 1, stride 2 pad 0)")

# %% [markdown]
# ## The backward pass
# With `out = cols @ Wm + b` and an upstream gradient `dout` (same shape as out,
# flattened to `(N*Ho*Wo, F)`), the rules of a dense layer give
#
#     db = sum of dout over rows,   dWm = cols.T @ dout,   dcols = dout @ Wm.T
#
# and `dx` is the adjoint of the copy: every entry of `dcols` is *added* back to the
# input pixel it was copied from (overlapping windows receive several
# contributions). That is **col2im**: the same loop as im2col with `+=` reversed.


# %%
def my_conv_backward(dout, x, W, s, p):
    N, H, Wd, C = x.shape
    kh, kw, _, F = W.shape
    cols, (Ho, Wo) = my_im2col(x, kh, kw, s, p)
    d2 = dout.reshape(-1, F)
    db, dW = d2.sum(axis=0), (cols.T @ d2).reshape(W.shape)
    dcols = (d2 @ W.reshape(-1, F).T).reshape(N, Ho, Wo, kh, kw, C)
    dxpad = np.zeros((N, H + 2 * p, Wd + 2 * p, C))
    for i in range(kh):
        for j in range(kw):
            dxpad[:, i : i + s * Ho : s, j : j + s * Wo : s, :] += dcols[:, :, :, i, j, :]
    return dxpad[:, p : p + H, p : p + Wd, :], dW, db


# %% [markdown]
# Check it the honest way: finite differences of the scalar `L = sum(out * G)` for a
# random G. Its gradient w.r.t. the output is exactly G, so the analytic gradients
# are `my_conv_backward(G, ...)`.

# %%
for s, p in [(1, 1), (2, 0)]:
    G = rng.standard_normal(my_conv(x, W, b, s, p).shape)
    dx, dW, db = my_conv_backward(G, x, W, s, p)

    def L(_, s=s, p=p, G=G):  # bind this pass's stride, padding and G
        return float(np.sum(my_conv(x, W, b, s, p) * G))

    errors = [
        numgrad.rel_error(dx, numgrad.numerical_gradient(L, x)),
        numgrad.rel_error(dW, numgrad.numerical_gradient(L, W)),
        numgrad.rel_error(db, numgrad.numerical_gradient(L, b)),
    ]
    pdx, pgrads = conv.conv_backward(G, conv.conv_forward(x, W, b, s, p)[1])
    assert np.allclose(pdx, dx) and np.allclose(pgrads["W"], dW) and np.allclose(pgrads["b"], db)
    print(
        f"stride {s} pad {p}: max relative error vs finite differences "
        f"dx {errors[0]:.1e}, dW {errors[1]:.1e}, db {errors[2]:.1e}; package agrees"
    )
    assert max(errors) < 1e-6

# %% [markdown]
# ## 2. Max-pooling
# A 2x2 max-pool with stride 2 keeps the largest of each non-overlapping 2x2 window.
# With even sizes the windows are a reshape: `(N, H/2, 2, W/2, 2, C)`, max over the
# two axes of size 2. The gradient goes to the window's largest entry only.

# %%
xp_ = rng.permutation(2 * 4 * 6 * 3).reshape(2, 4, 6, 3) * 0.1  # distinct values: no ties
windows = xp_.reshape(2, 2, 2, 3, 2, 3)
pooled = windows.max(axis=(2, 4))
assert np.array_equal(pooled, pool.max_pool_forward(xp_)[0])
Gp = rng.standard_normal(pooled.shape)
winner = windows == pooled[:, :, None, :, None, :]  # one True per window
dxp = (winner * Gp[:, :, None, :, None, :]).reshape(xp_.shape)
assert np.allclose(dxp, pool.max_pool_backward(Gp, pool.max_pool_forward(xp_)[1]))
err = numgrad.rel_error(
    dxp, numgrad.numerical_gradient(lambda _: float(np.sum(pool.max_pool_forward(xp_)[0] * Gp)), xp_)
)
print(f"max-pool: reshape version == package; backward vs finite differences {err:.1e}")

# %% [markdown]
# ## 3. VGG16 layer by layer
# `vgg.VGG16_CONFIG` is torchvision's configuration "D": numbers are 3x3
# convolutions (padding 1, then ReLU) with that many output channels, "M" a max-pool.
# After five pools a 224x224 image is a 7x7x512 map, flattened in (H, W, C) order
# into fc6. FLOPs count 2 per multiply-add.

# %%
meta = vgg.make_meta()
table = vgg.layer_table(meta)
print(f"{'layer':<8} {'output':>16} {'parameters':>12} {'GFLOP':>7}")
for name, shape, n_params, flops in table:
    print(f"{name:<8} {str(shape):>16} {n_params:>12,} {flops / 1e9:>7.2f}")
total_params, total_flops = sum(r[2] for r in table), sum(r[3] for r in table)
conv_flops = sum(r[3] for r in table if r[0].startswith("conv"))
fc_params = sum(r[2] for r in table if not r[0].startswith(("conv", "pool")))
print(
    f"total: {total_params:,} parameters ({total_params * 4 / 2**20:.0f} MB in float32), "
    f"{total_flops / 1e9:.1f} GFLOP per image"
)
print(
    f"the convolutions do {conv_flops / total_flops:.1%} of the work; "
    f"the fc layers hold {fc_params / total_params:.1%} of the parameters"
)

fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
names = [r[0] for r in table]
axes[0].bar(names, [r[3] / 1e9 for r in table], color="tab:blue")
axes[0].set_ylabel("GFLOP per image")
axes[1].bar(names, [r[2] / 1e6 for r in table], color="tab:orange")
axes[1].set_ylabel("parameters (millions)")
axes[1].tick_params(axis="x", rotation=90)
fig.suptitle("VGG16: where the work and the weights are")
fig.tight_layout()
fig.savefig(os.path.join(OUT, "03_vgg16_layers.png"), dpi=100)
print("saved", os.path.join(OUT, "03_vgg16_layers.png"))

# %% [markdown]
# ## 4. A faster 3x3 convolution: Winograd F(2x2, 3x3)
# Almost all of VGG16's 31 GFLOP are 3x3 convolutions. im2col spends them in one
# big matrix product (efficient), but first copies the input 9 times, and on a
# 2-core CPU that copy takes about as long as the product. Options we measured:
# plain im2col reaches ~0.6x torch-CPU's speed; three shifted copies with K = 3C
# ~0.8x. To beat a tuned direct convolution we need *fewer multiplications*.
#
# Winograd's minimal filtering computes 2 outputs of a 3-tap filter from 4 inputs
# with 4 multiplications instead of 6. In 1-D, with d = (d0..d3) and g = (g0, g1, g2):

# %%
d1, g1 = rng.standard_normal(4), rng.standard_normal(3)
m1 = (d1[0] - d1[2]) * g1[0]
m2 = (d1[1] + d1[2]) * (g1[0] + g1[1] + g1[2]) / 2
m3 = (d1[2] - d1[1]) * (g1[0] - g1[1] + g1[2]) / 2
m4 = (d1[1] - d1[3]) * g1[2]
direct = [d1[0] * g1[0] + d1[1] * g1[1] + d1[2] * g1[2], d1[1] * g1[0] + d1[2] * g1[1] + d1[3] * g1[2]]
assert np.allclose([m1 + m2 + m3, m2 - m3 - m4], direct)
print("1-D F(2, 3): 4 multiplications give the same 2 outputs as 6")

# %% [markdown]
# In matrix form `y = A^T [(G g) * (B^T d)]`. Nesting it in both directions gives
# F(2x2, 3x3): a 2x2 output block from a 4x4 input tile with 16 multiplications
# instead of 36 (2.25x fewer):
#
#     Y = A^T [ (G g G^T) * (B^T d B) ] A
#
# Summing over input channels turns the 16 elementwise products into 16 matrix
# products `V[a, b] @ U[a, b]` with `V: (tiles, C_in)` and `U: (C_in, C_out)`, so the
# BLAS still does the heavy work. The transforms are additions only; the package
# (`minicnnrnn/layers/winograd.py`) writes them as a few whole-array operations on
# slices, keeps those slices contiguous (the padded input stores even and odd
# columns apart), processes the picture in cache-sized blocks of tile rows, and
# shares the blocks among the CPU cores (NumPy's element-wise operations use one
# core each). What is left is mostly the matrix products.
#
# Why not a larger tile, F(4x4, 3x3) (4x fewer multiplications)? Its transforms
# have coefficients like 4 and -5, which in NumPy cost extra passes over memory, and
# the float32 rounding error of Winograd grows with the tile size. F(2x2, 3x3) only
# has 1/2 in G, and on VGG16 it rounds as well as im2col does (we measured both at
# ~1e-6 relative to a float64 forward at fc7).
# Here is one tile by the formula, against the direct convolution:

# %%
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], float)
Gm = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], float)
tile, kern = rng.standard_normal((4, 4)), rng.standard_normal((3, 3))
Y = AT @ ((Gm @ kern @ Gm.T) * (BT @ tile @ BT.T)) @ AT.T
Y_direct = [[np.sum(tile[i : i + 3, j : j + 3] * kern) for j in range(2)] for i in range(2)]
assert np.allclose(Y, Y_direct)
print("2-D F(2x2, 3x3) on one tile == direct convolution")

# %% [markdown]
# The package's version against im2col, on one VGG-like layer (smaller in fast mode),
# first for agreement in float64, then for speed in float32. Float32 results differ
# by rounding only (relative 1e-6 to 1e-7).

# %%
side, C = (28, 64) if FAST else (112, 128)
xw = rng.standard_normal((1, side, side, C))
Ww = rng.standard_normal((3, 3, C, C)) / np.sqrt(9 * C)
bw = rng.standard_normal(C)
ref = conv.conv_forward_im2col(xw, Ww, bw, 1, 1)
err = np.abs(winograd.conv3x3(xw, Ww, bw, 1) - ref).max() / np.abs(ref).max()
print(f"float64 Winograd vs im2col: max relative difference {err:.1e}")
xw, Ww, bw = xw.astype(np.float32), Ww.astype(np.float32), bw.astype(np.float32)


def best_time(fn, repeats=3 if FAST else 5):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


t_im2col = best_time(lambda: conv.conv_forward(xw, Ww, bw, 1, 1, method="im2col"))
t_wino = best_time(lambda: conv.conv_forward(xw, Ww, bw, 1, 1, method="winograd"))
gflop = conv.flops(xw.shape, Ww.shape, 1, 1) / 1e9
print(
    f"{side}x{side}x{C} -> {C}: im2col {t_im2col * 1e3:.1f} ms ({gflop / t_im2col:.0f} GFLOP/s), "
    f"Winograd {t_wino * 1e3:.1f} ms ({gflop / t_wino:.0f} direct-equivalent GFLOP/s): "
    f"{t_im2col / t_wino:.1f}x faster"
)

# %% [markdown]
# The backward pass keeps using im2col/col2im: it is the readable reference, it runs
# only when training small CNNs, and `tests/test_conv.py` checks both forward paths
# against each other and against `torch.nn.functional.conv2d`.
# For the whole network, `python benchmarks/bench_vgg16.py` times VGG16 at batch 1
# and 8 against torch-CPU and this machine's sgemm peak (see docs/vgg16.md).
