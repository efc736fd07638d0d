"""The fully connected layer: gradient check and torch.nn.functional.linear as an oracle."""

import numpy as np

from minicnnrnn import gradcheck
from minicnnrnn.core import backend
from minicnnrnn.core.numgrad import TOLERANCE
from minicnnrnn.layers import dense


def test_dense_gradients_match_finite_differences():
    assert dict(gradcheck.all_cases())["dense"](np.random.default_rng(0)) < TOLERANCE


def test_dense_matches_torch(torch, rng):
    x = rng.standard_normal((4, 7)).astype(np.float32)
    W = rng.standard_normal((7, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    out, cache = dense.dense_forward(*map(backend.to_device, (x, W, b)))
    G = rng.standard_normal(out.shape).astype(np.float32)
    dx, grads = dense.dense_backward(backend.to_device(G), cache)
    xt, Wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, W.T.copy(), b))
    ref = torch.nn.functional.linear(xt, Wt, bt)  # torch stores W as (D_out, D_in)
    (ref * torch.tensor(G)).sum().backward()
    np.testing.assert_allclose(backend.to_host(out), ref.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(backend.to_host(dx), xt.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(backend.to_host(grads["W"]), Wt.grad.numpy().T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(backend.to_host(grads["b"]), bt.grad.numpy(), rtol=1e-5, atol=1e-5)
    assert out.dtype == np.float32
