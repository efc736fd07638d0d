"""Convolution: gradient checks, im2col vs Winograd, and torch.nn.functional.conv2d as an oracle."""

import numpy as np
import pytest

from minicnnrnn import gradcheck
from minicnnrnn.core import backend
from minicnnrnn.core.numgrad import TOLERANCE
from minicnnrnn.layers import conv, winograd


@pytest.mark.parametrize("name", [n for n, _ in gradcheck.all_cases() if n.startswith("conv")])
def test_conv_gradients_match_finite_differences(name):
    fn = dict(gradcheck.all_cases())[name]
    assert fn(np.random.default_rng(0)) < TOLERANCE


def _problem(rng, N, H, W, C, F, dtype=np.float32):
    x = rng.standard_normal((N, H, W, C)).astype(dtype)
    K = (rng.standard_normal((3, 3, C, F)) / np.sqrt(9 * C)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    return backend.to_device(x), backend.to_device(K), backend.to_device(b)


def _rel(a, b):
    a, b = backend.to_host(a), backend.to_host(b)
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize(
    "N,H,W,C,F,pad",
    [(2, 7, 7, 8, 5, 1), (1, 8, 10, 16, 4, 0), (3, 9, 6, 8, 8, 2), (1, 2, 3, 8, 3, 1), (2, 12, 12, 32, 16, 1)],
)
def test_winograd_matches_im2col(rng, N, H, W, C, F, pad):
    x, K, b = _problem(rng, N, H, W, C, F, np.float64)
    ref = conv.conv_forward_im2col(x, K, b, 1, pad)
    out = winograd.conv3x3(x, K, b, pad)
    assert out.shape == ref.shape == (N, H + 2 * pad - 2, W + 2 * pad - 2, F)
    assert _rel(out, ref) < 1e-12


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("N,H,W", [(3, 10, 12), (6, 4, 4)])  # blocks of tile rows / of whole images
def test_winograd_blocks_agree_with_one_block(rng, monkeypatch, workers, N, H, W):
    """Many small blocks, on one or several threads, match one block."""
    x, K, b = _problem(rng, N, H, W, 8, 8, np.float64)
    monkeypatch.setattr(winograd, "WORKERS", 1)
    whole = winograd.conv3x3(x, K, b, 1)
    monkeypatch.setattr(winograd, "WORKERS", workers)
    monkeypatch.setattr(winograd, "MIN_TILES", 1)
    monkeypatch.setattr(winograd, "BLOCK_BYTES_CPU", 1)
    monkeypatch.setattr(winograd, "BLOCK_BYTES_GPU", 1)
    assert _rel(winograd.conv3x3(x, K, b, 1), whole) < 1e-14


@pytest.mark.parametrize(
    "N,Th,Tw,tiles,workers",
    [
        (1, 112, 112, 256, 2),
        (1, 28, 28, 1024, 2),
        (8, 7, 7, 2048, 2),
        (3, 5, 6, 8, 3),
        (6, 2, 2, 8, 3),
        (5, 9, 9, 16, 1),
    ],
)
def test_block_plan_covers_the_layer_in_equal_shares(N, Th, Tw, tiles, workers):
    nb, rb = winograd._plan_blocks(N, Th, Tw, tiles, workers)
    count = -(-N // nb) * -(-Th // rb)
    assert 1 <= nb <= N and 1 <= rb <= Th
    if N * Th * Tw <= tiles:
        assert count == 1  # small layer: one block
    else:
        assert nb * rb * Tw >= tiles and count >= workers  # full blocks, work for every thread


@pytest.mark.parametrize("method", ["winograd", "im2col"])
def test_fused_relu_for_inference(rng, method):
    x, K, b = _problem(rng, 2, 6, 6, 8, 4)
    plain, cache = conv.conv_forward(x, K, b, 1, 1, method)
    fused, no_cache = conv.conv_forward(x, K, b, 1, 1, method, relu=True)
    assert cache is not None and no_cache is None
    np.testing.assert_array_equal(backend.to_host(fused), np.maximum(backend.to_host(plain), 0))


def test_im2col_chunks_agree_with_one_chunk(rng, monkeypatch):
    x, K, b = _problem(rng, 3, 6, 5, 4, 5, np.float64)
    whole, cache = conv.conv_forward(x, K, b, 1, 1, "im2col")
    G = backend.to_device(rng.standard_normal(whole.shape))
    dx, grads = conv.conv_backward(G, cache)
    monkeypatch.setattr(conv, "COLS_BUDGET_BYTES", 1)
    assert _rel(conv.conv_forward(x, K, b, 1, 1, "im2col")[0], whole) < 1e-14
    dx1, grads1 = conv.conv_backward(G, cache)
    assert _rel(dx1, dx) < 1e-14 and _rel(grads1["W"], grads["W"]) < 1e-14


@pytest.mark.parametrize(
    "shape,kh,kw,stride,pad", [((2, 7, 6, 3), 3, 3, 1, 1), ((1, 9, 8, 5), 3, 2, 2, 1), ((2, 5, 5, 4), 1, 1, 1, 0)]
)
def test_strided_im2col_equals_the_plain_one(rng, shape, kh, kw, stride, pad):
    x = backend.to_device(rng.standard_normal(shape).astype(np.float32))
    plain = backend.to_host(conv.im2col(x, kh, kw, stride, pad))
    np.testing.assert_array_equal(backend.to_host(conv.im2col_strided(x, kh, kw, stride, pad)), plain)


def test_im2col_forward_in_row_slices_equals_one_product(rng, monkeypatch):
    """The forward pass's cache-sized slices of rows (with bias and ReLU) give the whole product's numbers."""
    x, K, b = _problem(rng, 2, 9, 7, 3, 6)
    cols = conv.im2col(x, 3, 3, 1, 1)
    whole = backend.to_host(cols @ K.reshape(27, 6) + b).reshape(2, 9, 7, 6)
    monkeypatch.setattr(conv, "ROWS_BUDGET_BYTES", 5 * 6 * 4)  # slices of 5 rows
    np.testing.assert_array_equal(backend.to_host(conv.conv_forward_im2col(x, K, b, 1, 1)), whole)
    np.testing.assert_array_equal(
        backend.to_host(conv.conv_forward_im2col(x, K, b, 1, 1, relu=True)), np.maximum(whole, 0)
    )


def test_col2im_is_the_adjoint_of_im2col(rng):
    """<im2col(x), y> == <x, col2im(y)>: the backward of a copy is the matching sum."""
    x = rng.standard_normal((2, 5, 6, 3))
    cols = backend.to_host(conv.im2col(backend.to_device(x), 3, 2, 2, 1))
    y = rng.standard_normal(cols.shape)
    back = backend.to_host(conv.col2im(backend.to_device(y), x.shape, 3, 2, 2, 1))
    assert cols.shape == (2 * 3 * 4, 3 * 2 * 3)  # Ho = 3, Wo = 4
    assert np.isclose(np.sum(cols * y), np.sum(x * back), rtol=1e-12)


def test_bad_arguments_raise():
    x, K, b = _problem(np.random.default_rng(0), 1, 5, 5, 8, 2)
    with pytest.raises(ValueError, match="Winograd"):
        conv.conv_forward(x, K, b, stride=2, method="winograd")
    with pytest.raises(ValueError, match="does not match"):
        conv.conv_forward(x[..., :3], K, b)
    with pytest.raises(ValueError, match="unknown method"):
        conv.conv_forward(x, K, b, method="fft")


def test_flops_of_vgg16_conv1_2():
    assert conv.flops((1, 224, 224, 64), (3, 3, 64, 64), 1, 1) == 2 * 224 * 224 * 9 * 64 * 64


@pytest.mark.parametrize(
    "stride,pad,method,kh,kw",
    [
        (1, 1, "auto", 3, 3),
        (1, 1, "im2col", 3, 3),
        (2, 0, "im2col", 3, 3),
        (1, 0, "winograd", 3, 3),
        (2, 1, "im2col", 2, 4),
        (1, 2, "im2col", 5, 5),
    ],
)
def test_conv_matches_torch(torch, rng, stride, pad, method, kh, kw):
    """Forward and all three gradients against torch.nn.functional.conv2d (NCHW / OIHW)."""
    F = torch.nn.functional
    x = rng.standard_normal((2, 9, 8, 8)).astype(np.float32)
    K = (rng.standard_normal((kh, kw, 8, 6)) * 0.2).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    out, cache = conv.conv_forward(*map(backend.to_device, (x, K, b)), stride, pad, method)
    G = rng.standard_normal(out.shape).astype(np.float32)
    dx, grads = conv.conv_backward(backend.to_device(G), cache)

    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    Kt = torch.tensor(K.transpose(3, 2, 0, 1), requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    ref = F.conv2d(xt, Kt, bt, stride=stride, padding=pad)
    (ref * torch.tensor(G.transpose(0, 3, 1, 2))).sum().backward()
    assert _rel(out, ref.detach().numpy().transpose(0, 2, 3, 1)) < 1e-5
    assert _rel(dx, xt.grad.numpy().transpose(0, 2, 3, 1)) < 1e-5
    assert _rel(grads["W"], Kt.grad.numpy().transpose(2, 3, 1, 0)) < 1e-5
    assert _rel(grads["b"], bt.grad.numpy()) < 1e-5


def test_backward_without_input_gradient(rng):
    x, K, b = _problem(rng, 2, 5, 5, 3, 4, np.float64)
    out, cache = conv.conv_forward(x, K, b, 1, 1)
    G = backend.to_device(rng.standard_normal(out.shape))
    _, full = conv.conv_backward(G, cache)
    dx, grads = conv.conv_backward(G, cache, input_grad=False)
    assert dx is None
    np.testing.assert_array_equal(backend.to_host(grads["W"]), backend.to_host(full["W"]))
