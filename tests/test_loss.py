"""Masked softmax cross-entropy and sigmoid binary cross-entropy (§3.4)."""

import numpy as np

from minicnnrnn.layers import loss


def test_log_softmax_is_stable_and_normalised():
    s = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    logp = loss.log_softmax(s)
    assert np.all(np.isfinite(logp))
    np.testing.assert_allclose(np.exp(logp).sum(axis=-1), 1.0)
    np.testing.assert_allclose(logp[1], s[1] - np.log(np.exp(s[1]).sum()))


def test_softmax_cross_entropy_value(rng):
    scores = rng.standard_normal((2, 3, 4))
    targets = np.array([[0, 1, 2], [3, 7, 0]])  # 7: a padded step's junk target
    mask = np.array([[1, 1, 1], [1, 0, 1]])
    value, _ = loss.softmax_cross_entropy(scores, targets, mask)
    p = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
    expected = -sum(np.log(p[t, n, targets[t, n]]) for t in range(2) for n in range(3) if mask[t, n]) / 3
    assert isinstance(value, float)
    np.testing.assert_allclose(value, expected)


def test_softmax_cross_entropy_gradient_and_mask(rng):
    scores = 3 * rng.standard_normal((3, 2, 5))
    targets = np.array([[0, 4], [1, -1], [2, 3]])
    mask = np.array([[1, 1], [1, 0], [0, 1]])
    _, ds = loss.softmax_cross_entropy(
        scores, targets, mask
    )  # values: gradcheck's "softmax cross-entropy, masked" case
    assert np.all(ds[mask == 0] == 0)


def test_softmax_cross_entropy_huge_scores():
    scores = np.array([[[1e4, -1e4, 0.0]]])
    value, ds = loss.softmax_cross_entropy(scores, np.array([[1]]), np.array([[1]]))
    np.testing.assert_allclose(value, 2e4)
    assert np.all(np.isfinite(ds))


def test_sigmoid_cross_entropy_value_and_stability(rng):
    s = rng.standard_normal((3, 4))
    y = (rng.random((3, 4)) < 0.5).astype(float)
    value, _ = loss.sigmoid_cross_entropy(s, y)
    p = 1 / (1 + np.exp(-s))
    np.testing.assert_allclose(value, -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum() / 3)
    big, ds = loss.sigmoid_cross_entropy(np.array([[800.0, -800.0]]), np.array([[0.0, 1.0]]))
    np.testing.assert_allclose(big, 1600.0)
    np.testing.assert_allclose(ds, [[1.0, -1.0]])


def test_sigmoid_cross_entropy_gradient_and_ignore_mask(rng):
    s = 3 * rng.standard_normal((3, 4))
    y = (rng.random((3, 4)) < 0.5).astype(float)
    mask = np.ones((3, 4))
    mask[0, 1] = 0
    _, ds = loss.sigmoid_cross_entropy(s, y, mask)  # values: gradcheck's "sigmoid cross-entropy" case
    assert ds[0, 1] == 0
    flipped = y.copy()
    flipped[0, 1] = 1 - flipped[0, 1]
    assert loss.sigmoid_cross_entropy(s, flipped, mask)[0] == loss.sigmoid_cross_entropy(s, y, mask)[0]


def test_softmax_cross_entropy_out_may_overwrite_scores(rng):
    """out=scores (what model.path_loss does) gives the same loss and gradient, in place."""
    scores = rng.standard_normal((3, 4, 6)).astype(np.float32)
    targets = rng.integers(0, 6, (3, 4))
    mask = np.array([[1, 1, 1, 1], [1, 0, 1, 1], [0, 0, 1, 1]])
    value, ds = loss.softmax_cross_entropy(scores, targets, mask)
    value_in_place, ds_in_place = loss.softmax_cross_entropy(scores, targets, mask, out=scores)
    assert ds_in_place is scores and ds.dtype == np.float32
    assert value_in_place == value
    np.testing.assert_array_equal(ds_in_place, ds)


def test_softmax_cross_entropy_gradient_is_softmax_minus_one_hot(rng):
    scores = rng.standard_normal((2, 5))  # (N, C): no time axis
    targets = np.array([3, 0])
    _, ds = loss.softmax_cross_entropy(scores, targets, np.ones(2))
    p = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
    np.testing.assert_allclose(ds, (p - np.eye(5)[targets]) / 2, rtol=1e-12, atol=1e-15)
