"""Depthwise and pointwise convolutions, ReLU6 and global average pooling against
direct loops (and torch when installed); the gradients are checked in the gradcheck cases."""

import numpy as np
import pytest

from minicnnrnn import gradcheck
from minicnnrnn.core import numgrad
from minicnnrnn.layers import activations, depthwise, pointwise, pool

NEW_CASES = [c for c in gradcheck.all_cases() if c[0].split()[0] in ("depthwise", "pointwise", "relu6", "global")]
WHOLE_NET = [c for c in gradcheck.all_cases() if "EfficientNet" in c[0]]


def direct_depthwise(x, W, b, stride, pads):
    """The defining sum, one output value at a time."""
    xp_ = np.pad(x, ((0, 0), (pads[0], pads[1]), (pads[2], pads[3]), (0, 0)))
    k = W.shape[0]
    N, H, Wd, C = xp_.shape
    Ho, Wo = (H - k) // stride + 1, (Wd - k) // stride + 1
    out = np.zeros((N, Ho, Wo, C))
    for y in range(Ho):
        for x_ in range(Wo):
            window = xp_[:, y * stride : y * stride + k, x_ * stride : x_ * stride + k, :]
            out[:, y, x_, :] = (window * W).sum(axis=(1, 2)) + b
    return out


@pytest.mark.parametrize(
    "size, k, stride, expected", [(224, 3, 2, (0, 1)), (56, 5, 2, (1, 2)), (14, 5, 1, (2, 2)), (7, 3, 1, (1, 1))]
)
def test_same_pads_follow_tensorflow(size, k, stride, expected):
    assert depthwise.same_pads(size, k, stride) == expected


@pytest.mark.parametrize("k, stride, shape", [(3, 1, (2, 6, 5, 4)), (5, 2, (1, 9, 8, 3)), (3, 2, (2, 8, 8, 2))])
def test_depthwise_matches_direct_sum(rng, k, stride, shape):
    x = rng.standard_normal(shape)
    W, b = rng.standard_normal((k, k, shape[3])), rng.standard_normal(shape[3])
    pads = depthwise.same_pads_2d(shape, k, stride)
    out, _ = depthwise.depthwise_forward(x, W, b, stride)
    np.testing.assert_allclose(out, direct_depthwise(x, W, b, stride, pads), rtol=1e-12, atol=1e-12)
    taps, _ = depthwise.depthwise_forward_plain(x, W, b, stride)
    np.testing.assert_allclose(taps, out, rtol=1e-12, atol=1e-12)
    assert out.shape[1:3] == (-(-shape[1] // stride), -(-shape[2] // stride))


def test_depthwise_matches_torch_grouped_conv(rng, torch):
    x = rng.standard_normal((2, 11, 10, 6)).astype(np.float32)
    W, b = rng.standard_normal((5, 5, 6)).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    out, _ = depthwise.depthwise_forward(x, W, b, 2, pads=(2, 2, 2, 2))
    ref = torch.nn.functional.conv2d(
        torch.from_numpy(x.transpose(0, 3, 1, 2)),
        torch.from_numpy(np.ascontiguousarray(W.transpose(2, 0, 1)[:, None])),
        torch.from_numpy(b),
        stride=2,
        padding=2,
        groups=6,
    )
    np.testing.assert_allclose(out, ref.numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)


def test_pointwise_is_a_dense_layer_per_pixel(rng):
    x, W, b = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((5, 7)), rng.standard_normal(7)
    out, _ = pointwise.pointwise_forward(x, W, b)
    np.testing.assert_allclose(out, np.einsum("nhwc,cf->nhwf", x, W) + b)


def test_relu6_and_global_average():
    x = np.array([-1.0, 0.0, 3.0, 6.0, 7.5])
    out, cache = activations.relu6_forward(x)
    np.testing.assert_array_equal(out, [0, 0, 3, 6, 6])
    np.testing.assert_array_equal(activations.relu6_backward(np.ones(5), cache), [0, 0, 1, 0, 0])
    m = np.arange(24.0).reshape(1, 2, 3, 4)
    avg, shape = pool.global_avg_pool_forward(m)
    np.testing.assert_allclose(avg, m.mean(axis=(1, 2)))
    np.testing.assert_allclose(pool.global_avg_pool_backward(np.ones((1, 4)), shape), np.full(m.shape, 1 / 6))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="depthwise"):
        depthwise.depthwise_forward(np.zeros((1, 4, 4, 3)), np.zeros((3, 3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="pointwise"):
        pointwise.pointwise_forward(np.zeros((1, 4, 4, 3)), np.zeros((2, 5)), np.zeros(5))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name, case", NEW_CASES, ids=[n for n, _ in NEW_CASES])
def test_gradients_match_finite_differences(name, case, seed):
    assert case(np.random.default_rng(seed)) < numgrad.TOLERANCE


@pytest.mark.parametrize("name, case", WHOLE_NET, ids=[n for n, _ in WHOLE_NET])
def test_whole_network_gradients_match_finite_differences(name, case):
    """Every parameter of a three-block EfficientNet (one seed: it takes a few seconds)."""
    assert case(np.random.default_rng(0)) < numgrad.TOLERANCE
