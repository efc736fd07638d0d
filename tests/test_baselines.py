"""Table 3 baselines: gradients against finite differences, losses against hand formulas and torch."""

import numpy as np
import pytest

from minicnnrnn.core import numgrad
from minicnnrnn.layers import dropout, loss
from minicnnrnn.baselines import no_rnn
from minicnnrnn.paths import label_paths
from minicnnrnn.rnn import projection

K, D, E, H, N = 5, 7, 4, 6, 3


def check_grads(f_and_grads, params):
    _, grads = f_and_grads()
    assert set(grads) == set(params)
    for name, p in params.items():
        num = numgrad.numerical_gradient(lambda _: f_and_grads()[0], p)
        assert numgrad.rel_error(grads[name], num) < 1e-6, name
        assert grads[name].shape == p.shape


def _labels(rng):
    y = (rng.random((N, K)) < 0.4).astype(np.uint8)
    y[0] = 0
    y[0, 1] = 1  # at least one image with a single label
    y[2] = 0  # and one without labels
    y[2, 3] = 1
    return y


def test_no_rnn_gradients(rng):
    params = {k: v.astype(np.float64) for k, v in no_rnn.init_no_rnn(K, D, E, H, rng).items()}
    params["b_e"] += rng.standard_normal(H) * 0.1
    I = rng.standard_normal((N, D))
    y = _labels(rng)
    inputs, targets, mask = label_paths.make_paths(y, label_paths.label_order(y))
    drop = dropout.make_mask(inputs.shape + (E,), 0.5, rng, np.float64)

    def f_and_grads():
        scores, cache = no_rnn.no_rnn_forward(params, I, inputs, drop)
        value, dscores = loss.softmax_cross_entropy(scores, targets, mask)
        return value, no_rnn.no_rnn_backward(dscores, cache)

    check_grads(f_and_grads, params)


def test_no_rnn_has_no_memory(rng):
    """Changing an earlier label of a path does not change the scores after the next one."""
    params = no_rnn.init_no_rnn(K, D, E, H, rng, dtype=np.float64)
    I = rng.standard_normal((2, D))
    inputs = np.array([[K + 1, K + 1], [0, 2], [1, 1]])  # paths (0, 1) and (2, 1)
    scores, _ = no_rnn.no_rnn_forward(params, I[[0, 0]], inputs)
    np.testing.assert_allclose(scores[2, 0], scores[2, 1])  # both read label 1 at step 2
    assert not np.allclose(scores[1, 0], scores[1, 1])
    # the beam-search step computes the same log-probabilities as the path forward
    image = projection.image_term(I[[0, 0]], params) + params["b_x"]
    step, state = no_rnn.no_rnn_step(params, inputs[1], (), image)
    np.testing.assert_allclose(step, loss.log_softmax(scores[1]), rtol=1e-10, atol=1e-12)
    assert state == ()


@pytest.mark.parametrize("kind", ["bce", "softmax"])
def test_classifier_gradients(kind, rng):
    params = {k: v.astype(np.float64) for k, v in no_rnn.init_classifier(K, D, E, rng).items()}
    params["b_l"] += rng.standard_normal(K) * 0.1
    I = rng.standard_normal((N, D))
    y = _labels(rng)
    drop = dropout.make_mask((N, E), 0.5, rng, np.float64)
    check_grads(lambda: no_rnn.classifier_loss(kind, params, I, y, drop), params)


def test_label_distribution_cross_entropy_by_hand(torch):
    s = np.array([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0], [1.0, -1.0, 0.0]])
    y = np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0]])  # last image: no labels, no loss
    value, ds = no_rnn.label_distribution_cross_entropy(s, y)
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
    bce = no_rnn.classifier_confidence("bce", s)
    soft = no_rnn.classifier_confidence("softmax", s)
    np.testing.assert_allclose(bce, 1 / (1 + np.exp(-s)), rtol=1e-10)
    np.testing.assert_allclose(soft.sum(1), 1.0)
    # both rank labels like the raw scores
    np.testing.assert_array_equal(np.argsort(bce, 1), np.argsort(s, 1))
    np.testing.assert_array_equal(np.argsort(soft, 1), np.argsort(s, 1))
