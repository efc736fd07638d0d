"""Label orders and paths (§3.4): hand-made cases and a brute-force check."""

import numpy as np
import pytest

from minicnnrnn.core.errors import UserError
from minicnnrnn.paths import label_paths

# 4 labels; counts: label0 1, label1 3, label2 2, label3 2
LABELS = np.array([[0, 1, 1, 0], [1, 1, 0, 1], [0, 1, 1, 1], [0, 0, 0, 0]], dtype=np.uint8)


def test_freq_rare_and_random_orders():
    np.testing.assert_array_equal(label_paths.label_order(LABELS, "freq"), [1, 2, 3, 0])  # ties by index
    np.testing.assert_array_equal(label_paths.label_order(LABELS, "rare"), [0, 2, 3, 1])
    r1 = label_paths.label_order(LABELS, "random", seed=3)
    r2 = label_paths.label_order(LABELS, "random", seed=3)
    np.testing.assert_array_equal(r1, r2)
    assert sorted(r1) == [0, 1, 2, 3]
    many = {tuple(label_paths.label_order(LABELS, "random", seed=s)) for s in range(20)}
    assert len(many) > 5  # the seed matters
    with pytest.raises(UserError, match="--label-order"):
        label_paths.label_order(LABELS, "alphabetical")


def test_paths_of_a_batch():
    K = 4
    END, START = K, K + 1
    order = label_paths.label_order(LABELS, "freq")  # [1, 2, 3, 0]
    inputs, targets, mask = label_paths.make_paths(LABELS, order)
    assert inputs.shape == targets.shape == mask.shape == (4, 4)  # longest path: 3 labels + END
    # image 0: labels {1, 2} -> path (1, 2)
    assert list(inputs[:, 0]) == [START, 1, 2, END]
    assert list(targets[:, 0]) == [1, 2, END, END]
    assert list(mask[:, 0]) == [1, 1, 1, 0]
    # image 1: labels {0, 1, 3} -> path (1, 3, 0)
    assert list(inputs[:, 1]) == [START, 1, 3, 0]
    assert list(targets[:, 1]) == [1, 3, 0, END]
    assert list(mask[:, 1]) == [1, 1, 1, 1]
    # image 3: no label -> predict END at once
    assert list(inputs[:, 3]) == [START, END, END, END]
    assert list(targets[:, 3]) == [END, END, END, END]
    assert list(mask[:, 3]) == [1, 0, 0, 0]
    assert mask.dtype == np.float32 and inputs.dtype == np.int64


def test_paths_against_a_loop(rng):
    K = 7
    labels = (rng.random((30, K)) < 0.3).astype(np.uint8)
    order = label_paths.label_order(labels, "random", seed=1)
    inputs, targets, mask = label_paths.make_paths(labels, order)
    rank = np.argsort(order)
    assert inputs.shape[0] == labels.sum(1).max() + 1
    for n in range(labels.shape[0]):
        path = sorted(np.flatnonzero(labels[n]), key=lambda k: rank[k])
        L = len(path)
        assert list(targets[: L + 1, n]) == path + [K]
        assert list(inputs[: L + 1, n]) == [K + 1] + path
        assert mask[:, n].sum() == L + 1
        np.testing.assert_array_equal(label_paths.path_to_labels(targets[:, n], K), labels[n])


def test_batch_is_padded_only_to_its_own_longest_path():
    labels = np.array([[1, 0, 0], [0, 1, 0]], dtype=np.uint8)
    inputs, targets, mask = label_paths.make_paths(labels, np.arange(3))
    assert inputs.shape == (2, 2) and mask.all()
