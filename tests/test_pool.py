"""Max-pooling, ReLU and dropout: gradient checks, tie handling, torch max_pool2d as an oracle."""

import numpy as np
import pytest

from minicnnrnn import gradcheck
from minicnnrnn.core import backend
from minicnnrnn.core.numgrad import TOLERANCE
from minicnnrnn.layers import activations, dropout, pool


@pytest.mark.parametrize("name", ["max-pool 2x2 stride 2", "relu", "dropout"])
def test_gradients_match_finite_differences(name):
    assert dict(gradcheck.all_cases())[name](np.random.default_rng(0)) < TOLERANCE


def test_pool_forward_by_hand():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    out, _ = pool.max_pool_forward(backend.to_device(x))
    assert backend.to_host(out)[0, :, :, 0].tolist() == [[5, 7], [13, 15]]


@pytest.mark.parametrize("shape", [(2, 6, 8, 3), (1, 7, 5, 4), (1, 1, 3, 2)])
def test_rows_first_pool_equals_the_plain_one(rng, shape):
    x = backend.to_device(rng.standard_normal(shape).astype(np.float32))
    plain, (_, plain_out) = pool.max_pool_forward(x)
    fast, (cached_x, fast_out) = pool.max_pool_forward_rows_first(x)
    np.testing.assert_array_equal(backend.to_host(fast), backend.to_host(plain))
    assert cached_x is x and fast_out is fast  # the same cache: max_pool_backward takes either


def test_pool_tie_sends_gradient_to_first_member_only():
    x = backend.to_device(np.zeros((1, 2, 2, 1)))
    out, cache = pool.max_pool_forward(x)
    dx = backend.to_host(pool.max_pool_backward(backend.to_device(np.ones((1, 1, 1, 1))), cache))
    assert dx[0, :, :, 0].tolist() == [[1, 0], [0, 0]]


@pytest.mark.parametrize("shape", [(2, 6, 8, 3), (1, 7, 5, 4)])
def test_pool_matches_torch(torch, rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    out, cache = pool.max_pool_forward(backend.to_device(x))
    G = rng.standard_normal(out.shape).astype(np.float32)
    dx = backend.to_host(pool.max_pool_backward(backend.to_device(G), cache))
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    ref = torch.nn.functional.max_pool2d(xt, 2, 2)
    (ref * torch.tensor(G.transpose(0, 3, 1, 2))).sum().backward()
    np.testing.assert_array_equal(backend.to_host(out), ref.detach().numpy().transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(dx, xt.grad.numpy().transpose(0, 2, 3, 1))


def test_relu_values_and_gradient():
    x = backend.to_device(np.array([[-1.0, 0.0, 2.0]], dtype=np.float32))
    out, cache = activations.relu_forward(x)
    assert backend.to_host(out).tolist() == [[0.0, 0.0, 2.0]]
    dx = activations.relu_backward(backend.to_device(np.array([[5.0, 5.0, 5.0]], np.float32)), cache)
    assert backend.to_host(dx).tolist() == [[0.0, 0.0, 5.0]]
    assert out.dtype == np.float32


def test_dropout_mask_is_inverted_and_seeded():
    a = backend.to_host(dropout.make_mask((200, 100), 0.25, np.random.default_rng(3)))
    b = backend.to_host(dropout.make_mask((200, 100), 0.25, np.random.default_rng(3)))
    c = backend.to_host(dropout.make_mask((200, 100), 0.25, np.random.default_rng(4)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert set(np.unique(a).tolist()) == {0.0, np.float32(1 / 0.75)}
    assert abs((a == 0).mean() - 0.25) < 0.02  # 20000 draws: std of the rate is 0.003
    assert abs(a.mean() - 1.0) < 0.03  # inverted: the expected activation is kept
    assert a.dtype == np.float32


def test_dropout_none_mask_is_identity_and_bad_p_raises():
    x = backend.to_device(np.ones((2, 3)))
    out, cache = dropout.dropout_forward(x, None)
    assert out is x and dropout.dropout_backward(x, cache) is x
    with pytest.raises(ValueError, match="dropout probability"):
        dropout.make_mask((2, 3), 1.0, np.random.default_rng(0))
