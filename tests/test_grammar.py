"""The path grammar (paths/grammar.py): no label twice, END only from ``min_labels`` labels on,
only END after the longest path. Its two forms, the plain rule and the array form the
searches use, allow the same outputs (the searches themselves: test_beam_search.py,
test_presence.py)."""

import itertools

import numpy as np
import pytest

from minicnnrnn.paths import grammar


@pytest.mark.parametrize("t, L, min_labels", [(0, 3, 0), (0, 3, 1), (2, 3, 1), (3, 3, 0), (3, 3, 3), (1, 4, 2)])
def test_grammar_forbid_says_what_may_follow_says(t, L, min_labels):
    """The array form of the grammar (grammar.forbid) allows exactly the outputs the plain
    form (grammar.may_follow) allows, for every path of t labels out of K = 4."""
    K = 4
    prefixes = [q for q in itertools.permutations(range(K), t)]
    used = np.zeros((len(prefixes), K), dtype=bool)
    for row, q in enumerate(prefixes):
        used[row, list(q)] = True
    lp = grammar.forbid(np.zeros((len(prefixes), K + 1)), used, t, L, min_labels)
    for row, q in enumerate(prefixes):
        assert [lp[row, j] > -np.inf for j in range(K + 1)] == [
            grammar.may_follow(j, q, K, L, min_labels) for j in range(K + 1)
        ]
