"""Table 3 baselines: losses against hand formulas and torch (their gradients: gradcheck/cases_baselines.py)."""

import numpy as np
import pytest

from minicnnrnn.baselines import classifiers, no_rnn
from minicnnrnn.layers import loss

K, D, E, H, N = 5, 7, 4, 6, 3


def test_no_rnn_has_no_memory(rng):
    """Changing an earlier label of a path does not change the scores after the next one."""
    params = no_rnn.init_no_rnn(K, D, E, H, rng, dtype=np.float64)
    I = rng.standard_normal((2, D))
    inputs = np.array([[K + 1, K + 1], [0, 2], [1, 1]])  # paths (0, 1) and (2, 1)
    scores, _ = no_rnn.no_rnn_forward(params, I[[0, 0]], inputs)
    np.testing.assert_allclose(scores[2, 0], scores[2, 1])  # both read label 1 at step 2
    assert not np.allclose(scores[1, 0], scores[1, 1])
    # the one-step decoder computes the same log-probabilities as the path forward
    step = no_rnn.make_step(params, I)
    lp, state = step(inputs[1], (), np.array([0, 0]))
    np.testing.assert_allclose(lp, loss.log_softmax(scores[1]), rtol=1e-10, atol=1e-12)
    assert state == ()
    first, _ = step(None, None, np.array([0, 0]))  # None: START
    np.testing.assert_allclose(first, loss.log_softmax(scores[0]), rtol=1e-10, atol=1e-12)


def test_label_distribution_cross_entropy_by_hand(torch):
    s = np.array([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0], [1.0, -1.0, 0.0]])
    y = np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0]])  # last image: no labels, no loss
    value, ds = classifiers.label_distribution_cross_entropy(s, y)
    p = np.exp(s) / np.exp(s).sum(1, keepdims=True)
    expected = -(0.5 * np.log(p[0, 0]) + 0.5 * np.log(p[0, 1]) + np.log(p[1, 2])) / 3
    assert value == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(ds[2], 0)
    # torch's soft-label cross-entropy agrees on the images with labels
    ts = torch.tensor(s[:2], requires_grad=True)
    q = torch.tensor(y[:2] / y[:2].sum(1, keepdims=True))
    t_loss = torch.nn.functional.cross_entropy(ts, q, reduction="sum") / 3
    t_loss.backward()
    assert value == pytest.approx(t_loss.item(), rel=1e-12)
    np.testing.assert_allclose(ds[:2], ts.grad.numpy(), rtol=1e-10)


def test_classifier_confidence_is_a_probability(rng):
    s = rng.standard_normal((4, K)) * 5
    bce = classifiers.classifier_confidence("bce", s)
    soft = classifiers.classifier_confidence("softmax", s)
    np.testing.assert_allclose(bce, 1 / (1 + np.exp(-s)), rtol=1e-10)
    np.testing.assert_allclose(soft.sum(1), 1.0)
    # both rank labels like the raw scores
    np.testing.assert_array_equal(np.argsort(bce, 1), np.argsort(s, 1))
    np.testing.assert_array_equal(np.argsort(soft, 1), np.argsort(s, 1))
