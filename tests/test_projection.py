"""Eq. 4 projection into the joint space, with inverted dropout (its finite-difference check:
gradcheck/cases_rnn.py, "projection + dropout")."""

import numpy as np
import pytest

from minicnnrnn.rnn import projection


def make(rng, T=3, N=2, H=4, D=5, E=3):
    params = {"U_o_x": rng.standard_normal((H, E)), "U_I_x": rng.standard_normal((D, E)), "b_x": rng.standard_normal(E)}
    return params, rng.standard_normal((T, N, H)), rng.standard_normal((N, D))


def test_forward_is_eq4(rng):
    params, o, I = make(rng)
    x, _ = projection.projection_forward(o, I, params)
    expected = np.maximum(o @ params["U_o_x"] + (I @ params["U_I_x"])[None] + params["b_x"], 0)
    np.testing.assert_allclose(x, expected)
    np.testing.assert_allclose(projection.image_term(I, params), I @ params["U_I_x"])
    # A single step (N, H) works the same way (beam search).
    x1, _ = projection.projection_forward(o[1], I, params)
    np.testing.assert_allclose(x1, expected[1])


def test_no_dropout_is_a_mask_of_ones(rng):
    """Without a mask the backward is the checked one (with a mask) at a mask of ones."""
    params, o, I = make(rng)
    G = rng.standard_normal((3, 2, 3))
    plain = projection.projection_backward(G, projection.projection_forward(o, I, params)[1])
    ones = projection.projection_backward(G, projection.projection_forward(o, I, params, np.ones(G.shape))[1])
    assert set(plain[2]) == {"U_o_x", "U_I_x", "b_x"}
    for a, b in zip(plain[:2] + tuple(plain[2].values()), ones[:2] + tuple(ones[2].values())):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_no_bias_is_eq4_verbatim(rng):
    params, o, I = make(rng)
    del params["b_x"]
    x, cache = projection.projection_forward(o, I, params)
    np.testing.assert_allclose(x, np.maximum(o @ params["U_o_x"] + I @ params["U_I_x"], 0))
    assert "b_x" not in projection.projection_backward(np.ones_like(x), cache)[2]


def test_dropout_zeroes_units(rng):
    params, o, I = make(rng)
    mask = np.zeros((3, 2, 3))
    mask[0] = 2.0
    x, cache = projection.projection_forward(o, I, params, mask)
    assert np.all(x[1:] == 0)
    do, _, _ = projection.projection_backward(np.ones_like(x), cache)
    assert np.all(do[1:] == 0)


def test_image_gradient_can_be_skipped(rng):
    params, o, I = make(rng)
    x, cache = projection.projection_forward(o, I, params)
    do, dI, grads = projection.projection_backward(np.ones_like(x), cache)
    do2, dI2, grads2 = projection.projection_backward(np.ones_like(x), cache, image_grad=False)
    assert dI2 is None and dI.shape == I.shape
    np.testing.assert_array_equal(do, do2)
    assert all(np.array_equal(grads[k], grads2[k]) for k in grads)


@pytest.mark.parametrize("with_bias", [True, False])
def test_precomputed_image_term(rng, with_bias):
    """Beam search computes I @ U_I_x + b_x once and passes it in as ``image=``."""
    params, o, I = make(rng)
    if not with_bias:
        del params["b_x"]
    image = projection.image_and_bias(I, params)
    np.testing.assert_allclose(image, I @ params["U_I_x"] + params.get("b_x", 0.0))
    x, _ = projection.projection_forward(o, I, params)
    x_pre, _ = projection.projection_forward(o, None, params, image=image)
    np.testing.assert_allclose(x_pre, x, rtol=1e-14, atol=1e-14)
    x1, _ = projection.projection_forward(o[1], None, params, image=image)
    np.testing.assert_allclose(x1, x[1], rtol=1e-14, atol=1e-14)
