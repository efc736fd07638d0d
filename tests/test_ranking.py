"""core/ranking.py: one stable argsort and one top-k for every ranking in the package."""

import numpy as np

from minicnnrnn.core import ranking


def test_ties_keep_the_lower_index_first():
    scores = np.array([[0.5, 0.9, 0.5, 0.9, 0.1]])
    assert ranking.ranked(scores).tolist() == [[1, 3, 0, 2, 4]]
    assert ranking.top_k(scores, 3).tolist() == [[1, 3, 0]]
    assert ranking.stable_argsort(np.array([2, 1, 2, 1])).tolist() == [1, 3, 0, 2]


def test_top_k_agrees_with_a_plain_python_sort():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(50, 9)).astype(np.float32)  # many ties
    for row, got in zip(scores, ranking.top_k(scores, 4)):
        expected = sorted(range(9), key=lambda j: (-row[j], j))[:4]
        assert got.tolist() == expected
    assert ranking.top_k(scores[0], 2).tolist() == sorted(range(9), key=lambda j: (-scores[0, j], j))[:2]
