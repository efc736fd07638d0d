"""Reliability bins and expected calibration error (evaluation/calibration.py) on constructed inputs."""

import numpy as np
import pytest

from minicnnrnn.evaluation import calibration


def _entries(groups):
    """(1, n) prob and truth: for each (p, n, positives), n entries of probability p, the first
    ``positives`` of them positive."""
    prob = np.concatenate([np.full(n, p) for p, n, _ in groups])
    truth = np.concatenate([np.arange(n) < pos for _, n, pos in groups]).astype(np.uint8)
    return prob[None, :], truth[None, :]


def test_perfectly_calibrated_entries_have_zero_ece():
    prob, truth = _entries([(0.05, 100, 5), (0.25, 40, 10), (0.75, 8, 6), (1.0, 3, 3)])
    bins = calibration.reliability_bins(prob, truth)
    assert calibration.expected_calibration_error(prob, truth) == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_array_equal(bins.count, [100, 0, 40, 0, 0, 0, 0, 8, 0, 3])  # 1.0 in the last bin
    np.testing.assert_allclose(bins.frequency[[0, 2, 7, 9]], [0.05, 0.25, 0.75, 1.0])
    assert np.isnan(bins.frequency[1]) and np.isnan(bins.confidence[1])


def test_known_miscalibration():
    # every entry 0.8, half of them positive: ECE = |0.5 - 0.8| = 0.3
    prob, truth = _entries([(0.8, 10, 5)])
    assert calibration.expected_calibration_error(prob, truth) == pytest.approx(0.3)
    # 100 entries at 0.9 with 60 positives (gap 0.3), 300 at 0.1 with 30 (gap 0): 1/4 * 0.3
    prob, truth = _entries([(0.9, 100, 60), (0.1, 300, 30)])
    assert calibration.expected_calibration_error(prob, truth) == pytest.approx(0.075)
    # over-confident in both directions: 0.95 with no positives, 0.02 all positive
    prob, truth = _entries([(0.95, 10, 0), (0.02, 10, 10)])
    assert calibration.expected_calibration_error(prob, truth, n_bins=4) == pytest.approx((0.95 + 0.98) / 2)


def test_sampled_from_its_own_probabilities_is_nearly_calibrated():
    rng = np.random.default_rng(0)
    prob = rng.random((2000, 50))
    truth = rng.random(prob.shape) < prob
    assert calibration.expected_calibration_error(prob, truth) < 0.01
    assert calibration.expected_calibration_error(prob**3, truth) > 0.1  # a distorted copy is not


def test_ignored_entries_and_bad_input():
    prob = np.array([[0.9, 0.9], [0.1, 0.1]])
    truth = np.array([[1, 0], [0, 0]])
    ignore = np.array([[False, True], [False, False]])
    assert calibration.expected_calibration_error(prob, truth, ignore=ignore) == pytest.approx((0.1 + 2 * 0.1) / 3)
    assert calibration.expected_calibration_error(prob, truth, ignore=np.ones((2, 2), bool)) == 0.0
    with pytest.raises(ValueError, match="prob"):
        calibration.reliability_bins(prob + 0.5, truth)
    with pytest.raises(ValueError, match="shape"):
        calibration.reliability_bins(prob, truth[:1])
    with pytest.raises(ValueError, match="n_bins"):
        calibration.reliability_bins(prob, truth, n_bins=0)


def test_plot_writes_a_png(tmp_path):
    rng = np.random.default_rng(1)
    prob = rng.random((100, 5))
    truth = rng.random(prob.shape) < prob
    curves = {
        "bce": calibration.reliability_bins(prob, truth),
        "cnn-rnn": calibration.reliability_bins(prob**2, truth),
    }
    out = tmp_path / "reliability.png"
    calibration.plot_reliability(curves, out, title="test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
