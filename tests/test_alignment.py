"""Orderless training (paths/alignment.py): the Hungarian alignment is the minimal-loss one,
PLA keeps correct predictions in place, and training with pla/mla runs."""

import itertools

import numpy as np
from conftest import dev

from minicnnrnn.paths import alignment, label_paths
from minicnnrnn.rnn import model


def test_mla_is_the_cheapest_assignment_and_pla_keeps_hits():
    rng = np.random.default_rng(0)
    T, N, K = 4, 6, 7
    logp = np.log(rng.dirichlet(np.ones(K), size=(T, N)))
    labels = (rng.random((N, K)) < 0.45).astype(np.uint8)
    labels[0] = 0
    labels[1, :4] = 1
    labels[np.cumsum(labels, axis=1) > T] = 0  # at most T labels: the rollout's length
    pred = np.stack([rng.permutation(K)[:T] for _ in range(N)], axis=1)
    mla = alignment.align(labels, pred, logp, "mla")
    pla = alignment.align(labels, pred, logp, "pla")
    for n in range(N):
        truth = np.flatnonzero(labels[n])
        m = truth.size
        assert sorted(mla[n]) == sorted(pla[n]) == sorted(truth)

        def cost(seq, n=n, m=m):
            return -sum(logp[t, n, seq[t]] for t in range(m))

        assert np.isclose(cost(mla[n]), min(cost(p) for p in itertools.permutations(truth)))
        for t in range(m):
            if pred[t, n] in truth:
                assert pla[n][t] == pred[t, n]


def test_paths_from_sequences_matches_make_paths():
    labels = np.array([[1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 1, 0]], dtype=np.uint8)
    order = np.array([2, 0, 3, 1])
    seqs = [order[np.isin(order, np.flatnonzero(row))] for row in labels]
    for a, b in zip(label_paths.paths_from_sequences(seqs, 4), label_paths.make_paths(labels, order)):
        np.testing.assert_array_equal(a, b)


def test_rollout_is_greedy_without_repeats():
    rng = np.random.default_rng(1)
    params = model.init_params(5, 3, 4, 6, rng, "relu", dtype=np.float64)
    pred, logp = alignment.rollout(model.make_step(dev(params), dev(rng.standard_normal((4, 3))), "relu"), 4, 5)
    assert pred.shape == (5, 4) and logp.shape == (5, 4, 5)
    assert all(len(set(pred[:, n])) == 5 for n in range(4))
    assert (pred[0] == logp[0].argmax(axis=1)).all()


def test_overflowing_rollout_steps_fall_back_to_the_labels_left():
    """From the first non-finite step of a rollout on (a free-running ReLU LSTM can overflow)
    the model has no opinion: the aligned steps before it follow the model, the rest take the
    labels left in label order; always a permutation of the image's labels, never an error."""
    labels = np.array([[1, 0, 1, 1, 0]])
    logp = np.log(np.full((3, 1, 5), 0.2))
    logp[0, 0, 3] = np.log(0.9)  # step 0 clearly prefers label 3
    logp[1:] = np.nan  # steps 1 and 2 overflowed
    pred = np.array([[3], [0], [0]])
    for how in ("mla", "pla"):
        (seq,) = alignment.align(labels, pred, logp, how)
        assert seq.tolist() == [3, 0, 2], how
    (seq,) = alignment.align(labels, pred, np.full((3, 1, 5), np.nan), "mla")
    assert seq.tolist() == [0, 2, 3]
