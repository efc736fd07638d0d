"""P(label in path) (paths/presence.py): exact enumeration against a brute-force sum over all
complete paths, and seeded ancestral sampling against exact."""

import itertools

import numpy as np
import pytest
from conftest import dev

from minicnnrnn.baselines import no_rnn
from minicnnrnn.paths import presence
from minicnnrnn.rnn import model

K, D, E, H = 4, 5, 6, 7


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    params = model.init_params(K, D, E, H, rng, "relu")
    params = {k: v.astype(np.float64) for k, v in params.items()}
    params["U_l"] *= 3.0  # peaked step distributions: the ranking is not trivial
    I = rng.standard_normal((3, D))
    return params, I


def _step(params, I):
    """The CNN-RNN's one-step decoder of the images I, on the backend."""
    return model.make_step(dev(params), dev(I), "relu")


def _brute_force(params, I, max_labels, min_labels):
    """sum over every complete path of P(path) [l on path], one path at a time."""
    out = np.zeros((len(I), K))
    for i in range(len(I)):
        step = model.make_step(params, I[i : i + 1], "relu")
        for length in range(min_labels, max_labels + 1):
            for path in itertools.permutations(range(K), length):
                prev, state, logp = None, None, 0.0
                for t, label in enumerate(list(path) + [K]):
                    lp, state = step(prev, state, np.zeros(1, dtype=np.int64))
                    lp = lp[0].copy()
                    lp[list(path[:t])] = -np.inf
                    if t < min_labels:
                        lp[K] = -np.inf
                    if t == max_labels:
                        lp[:K] = -np.inf
                    lp -= np.log(np.exp(lp).sum())
                    logp += lp[label]
                    prev = np.array([label])
                out[i, list(path)] += np.exp(logp)
    return out


@pytest.mark.parametrize("max_labels, min_labels", [(K, 0), (2, 0), (3, 1)])
def test_exact_equals_the_sum_over_all_paths(setup, max_labels, min_labels):
    params, I = setup
    p, err, method = presence.presence(_step(params, I), len(I), max_labels=max_labels, min_labels=min_labels)
    assert method == "exact" and not err.any()
    np.testing.assert_allclose(p, _brute_force(params, I, max_labels, min_labels), rtol=1e-10, atol=1e-12)
    assert (p >= 0).all() and (p <= 1 + 1e-12).all()
    assert (p.sum(axis=1) >= min_labels - 1e-9).all() and (p.sum(axis=1) <= max_labels + 1e-9).all()


@pytest.mark.parametrize("max_labels, min_labels", [(K, 0), (3, 1)])
def test_sampling_agrees_with_exact_within_its_error(setup, max_labels, min_labels):
    params, I = setup
    exact, _, _ = presence.presence(_step(params, I), len(I), max_labels=max_labels, min_labels=min_labels)
    est, err, method = presence.presence(
        _step(params, I), len(I), max_labels=max_labels, min_labels=min_labels, samples=400, seed=3, exact_limit=0
    )
    assert method == "sampled" and (err > 0).any()
    z = np.abs(est - exact) / np.maximum(err, 1e-12)
    assert z.max() < 5 and np.abs(est - exact).max() < 0.03
    again, _, _ = presence.presence(_step(params, I), len(I), max_labels=max_labels, samples=400, seed=3, exact_limit=0)
    np.testing.assert_array_equal(
        again, presence.presence(_step(params, I), len(I), max_labels=max_labels, samples=400, seed=3, exact_limit=0)[0]
    )


def test_no_rnn_step_and_sizes():
    rng = np.random.default_rng(1)
    params = no_rnn.init_no_rnn(K, D, E, H, rng)
    I = rng.standard_normal((2, D)).astype(np.float32)
    exact, _, _ = presence.presence(no_rnn.make_step(dev(params), dev(I)), len(I), max_labels=3)
    est, _, _ = presence.presence(
        no_rnn.make_step(dev(params), dev(I)), len(I), max_labels=3, samples=300, exact_limit=0
    )
    assert np.abs(est - exact).max() < 0.05
    assert presence.n_prefixes(20, 3) == 401 and presence.n_prefixes(K, K) == 1 + 4 + 12 + 24
