"""Decisions from the model's own path distribution (paths/decisions.py): marginal top-k,
expected-F1 sets against brute force over all subsets, and the path sampler that
paths/presence.py shares."""

import itertools

import numpy as np
import pytest
from conftest import dev

from minicnnrnn.paths import decisions, presence
from minicnnrnn.rnn import model

K, D, E, H = 4, 5, 6, 7


def _f1(A, y):
    """F1 of one predicted set against one sampled set, F1(∅, ∅) = 1."""
    if not A and not y:
        return 1.0
    return 2 * len(A & y) / (len(A) + len(y))


def _brute_force(sets, min_size, max_size):
    """max over all subsets A with min_size <= |A| <= max_size of the mean F1 over the samples."""
    K = sets.shape[1]
    ys = [set(np.nonzero(s)[0]) for s in sets]
    best = -1.0
    for m in range(min_size, max_size + 1):
        for A in itertools.combinations(range(K), m):
            best = max(best, np.mean([_f1(set(A), y) for y in ys]))
    return best


def test_top_k_marginal_is_stable():
    p = np.array([[0.1, 0.5, 0.5, 0.2], [0.3, 0.3, 0.3, 0.3]])
    np.testing.assert_array_equal(decisions.top_k_marginal(p, 2), [[1, 2], [0, 1]])
    assert decisions.top_k_marginal(p, 9).shape == (2, 4)


def test_ordered_labels():
    pred = np.array([[0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 1]])
    p = np.array([[0.1, 0.2, 0.7, 0.0], [0.1, 0.2, 0.3, 0.4], [0.5, 0.0, 0.0, 0.5]])
    labels, lengths = decisions.ordered_labels(pred, p)
    np.testing.assert_array_equal(labels, [[2, 1], [-1, -1], [0, 3]])
    np.testing.assert_array_equal(lengths, [2, 0, 2])


@pytest.mark.parametrize("min_size,max_size", [(0, None), (1, None), (1, 2), (2, 3)])
def test_expected_f1_matches_brute_force(min_size, max_size):
    rng = np.random.default_rng(5)
    n, S, K5 = 12, 9, 5
    sets = rng.random((n, S, K5)) < rng.uniform(0.05, 0.6, size=(n, 1, K5))
    sets[0] = False  # every sample empty: the empty set wins where it may compete
    sets[1, :, :] = False
    sets[1, :, 2] = True  # every sample is {2}
    pred, value = decisions.expected_f1_sets(sets, max_size, min_size)
    top = K5 if max_size is None else max_size
    for i in range(n):
        chosen = set(np.nonzero(pred[i])[0])
        brute = _brute_force(sets[i], min_size, top)
        assert value[i] == pytest.approx(brute, abs=1e-12)
        assert np.mean([_f1(chosen, set(np.nonzero(y)[0])) for y in sets[i]]) == pytest.approx(brute, abs=1e-12)
        assert min_size <= len(chosen) <= top
    assert pred[0].sum() == min_size  # all samples empty: the smallest allowed set
    if min_size <= 1:
        np.testing.assert_array_equal(pred[1], [0, 0, 1, 0, 0])


def test_expected_f1_predicts_more_labels_when_paths_are_long():
    """Paths that always hold 3 of 4 labels, each left out equally often: the best set is
    the three most frequent (or all four: F1 2*3/(4+3) = 0.857 > 3 labels' mean 0.75)."""
    sets = np.ones((1, 4, 4), dtype=bool)
    sets[0, np.arange(4), np.arange(4)] = False
    pred, value = decisions.expected_f1_sets(sets)
    assert pred.sum() == 4 and value[0] == pytest.approx(6 / 7)


@pytest.fixture(scope="module")
def step():
    rng = np.random.default_rng(0)
    params = model.init_params(K, D, E, H, rng, "relu")
    params = {k: v.astype(np.float64) for k, v in params.items()}
    params["U_l"] *= 3.0  # peaked step distributions
    I = rng.standard_normal((5, D))
    return model.make_step(dev(params), dev(I), "relu")


@pytest.mark.parametrize("max_labels,min_labels", [(None, 0), (3, 1), (2, 2)])
def test_sampler_gives_presence_samples_bit_for_bit(step, monkeypatch, max_labels, min_labels):
    """The same seed gives presence.sampled_presence's numbers exactly, over several blocks."""
    monkeypatch.setattr(decisions, "_ROWS", 40)  # 20 samples: blocks of 2 images
    got = decisions.sampled_marginals(step, 5, samples=20, seed=4, max_labels=max_labels, min_labels=min_labels)
    want, err = presence.sampled_presence(step, 5, max_labels, min_labels, 20, 4)
    np.testing.assert_array_equal(got.presence, want)
    np.testing.assert_array_equal(got.stderr, err)
    sizes = got.f1_sets.sum(axis=1)
    assert (sizes >= min_labels).all() and (sizes <= (max_labels or K)).all()
    assert (got.expected_f1 > 0).all() and (got.expected_f1 <= 1).all()


def test_blocks_are_bounded_by_entries_not_only_rows(monkeypatch):
    """The block of images shrinks as K grows, so one block's (rows, K + 1) arrays stay
    within _ELEMENTS entries (the memory bound of docs/limits.md)."""
    assert decisions.block_images(100, 20) == decisions._ROWS // 100
    for K in (291, 5000, 10**6):
        b = decisions.block_images(100, K)
        assert b >= 1 and (b == 1 or b * 100 * (K + 1) <= decisions._ELEMENTS)
    assert decisions.block_images(100, 5000) < decisions.block_images(100, 291)


def test_sampled_sets_follow_the_grammar_and_the_model(step):
    """Each sampled set obeys the path rules, and label frequencies estimate the exact presence."""
    sums, sets = decisions.sample_paths(step, K, np.arange(5), 600, np.random.default_rng(1), 3, 1)
    assert sets.shape == sums.shape == (5, 600, K)
    sizes = sets.sum(axis=2)
    assert sizes.min() >= 1 and sizes.max() <= 3
    exact = presence.exact_presence(step, 5, 3, 1)
    for estimate in (sets, sums):  # counts, and the Rao-Blackwell sums of paths/presence.py
        err = estimate.std(axis=1, ddof=1) / np.sqrt(600)
        assert (np.abs(estimate.mean(axis=1) - exact) < 5 * err + 1e-9).all()


@pytest.mark.parametrize("min_labels, max_labels", [(0, 3), (1, None)])
def test_the_prefix_sharing_sampler_draws_the_same_paths(step, min_labels, max_labels):
    """sample_paths_shared (the step once per distinct prefix) draws the same paths as the
    plain sampler from the same uniforms, with the same per-path sums to float32 rounding."""
    images = np.array([0, 3, 1, 4])
    plain = decisions.sample_paths(step, K, images, 200, np.random.default_rng(7), max_labels, min_labels)
    shared = decisions.sample_paths_shared(step, K, images, 200, np.random.default_rng(7), max_labels, min_labels)
    np.testing.assert_array_equal(shared.sets, plain.sets)
    np.testing.assert_allclose(shared.presence_sums, plain.presence_sums, rtol=1e-5, atol=1e-6)
    assert shared.sets.any(axis=2).any()  # the check is not vacuous: paths carry labels
