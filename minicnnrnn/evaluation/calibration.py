"""Calibration of per-label probabilities: reliability diagram and expected calibration error.

A model's probability for "label l is on image n" is *calibrated* when, among all the
(image, label) entries it gives probability about p, a share of about p is truly positive.
Calibration is what makes "the top k of the probabilities" the best guess of k labels
(docs/inference.md): the top k maximise the expected number of correct labels under the
model's own probabilities, which is the real expectation only if those are calibrated.

Every (image, label) pair is one entry: ``prob: (N, K)`` in [0, 1] (BCE's sigmoids, or a
path model's P(l in path | I)), ``truth: (N, K)`` 0/1, ``ignore: (N, K)`` bool or None
(entries left out, as in ``metrics.py``). The entries are put into B **equal-width bins**
``[0, 1/B), [1/B, 2/B), ..., [(B-1)/B, 1]`` (1.0 goes to the last bin); bin b has
``n_b`` entries with mean probability ``conf_b`` and positive share ``freq_b``::

    ECE = sum_b (n_b / n) |freq_b - conf_b|

Why equal width: the reliability diagram then has one fixed x-axis for every model, so two
models' curves can be read against each other and against the diagonal (equal-mass bins
would put each model's bins elsewhere). The cost: with K labels and a few positives per
image almost every entry is a negative with a probability near 0, so the first bin holds
most entries and dominates the ECE, which is small for every sensible model. Compare ECEs
only on the same data, and read the diagram's upper bins (the labels a model predicts).
"""

import collections

import numpy as np

from minicnnrnn.core import fileio

DEFAULT_BINS = 10

Reliability = collections.namedtuple("Reliability", "edges count confidence frequency")
Reliability.__doc__ = """Reliability diagram of B bins: edges (B + 1,); count (B,) entries per bin;
confidence (B,) their mean probability; frequency (B,) their share of positives (NaN where empty)."""


def reliability_bins(prob, truth, n_bins=DEFAULT_BINS, ignore=None):
    """Bin the entries of ``prob`` (N, K) by probability and measure each bin (module docstring).

    truth: (N, K) 0/1; n_bins: B equal-width bins on [0, 1]; ignore: (N, K) bool or None.
    Returns a :class:`Reliability` of host float64 arrays.
    """
    prob, truth = np.asarray(prob, dtype=np.float64), np.asarray(truth)
    if prob.shape != truth.shape:
        raise ValueError(f"prob: shape {prob.shape} differs from truth's {truth.shape}")
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins: must be a positive integer, got {n_bins}")
    keep = np.ones(prob.shape, bool) if ignore is None else ~np.asarray(ignore, dtype=bool)
    p, y = prob[keep], truth[keep].astype(np.float64)
    if not np.all((p >= 0) & (p <= 1)):  # also refuses NaN
        raise ValueError("prob: every entry must be a probability in [0, 1]")
    which = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)  # 1.0 belongs to the last bin
    count = np.bincount(which, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):  # empty bins: NaN, on purpose
        confidence = np.bincount(which, weights=p, minlength=n_bins) / count
        frequency = np.bincount(which, weights=y, minlength=n_bins) / count
    return Reliability(np.linspace(0.0, 1.0, n_bins + 1), count, confidence, frequency)


def expected_calibration_error(prob, truth, n_bins=DEFAULT_BINS, ignore=None):
    """ECE = sum_b (n_b / n) |freq_b - conf_b| over B equal-width bins (module docstring).

    prob, truth, ignore: (N, K) as in :func:`reliability_bins`. Returns a float in [0, 1]
    (0.0 when no entry counts).
    """
    return ece_of(reliability_bins(prob, truth, n_bins, ignore))


def ece_of(bins):
    """The ECE of a :class:`Reliability` already computed (empty bins weigh nothing)."""
    total = bins.count.sum()
    if total == 0:
        return 0.0
    used = bins.count > 0
    gap = np.abs(bins.frequency[used] - bins.confidence[used])
    return float((bins.count[used] / total * gap).sum())


def plot_reliability(curves, path, title=None):
    """Write a reliability diagram of one or more models to a PNG file.

    curves: dict name -> :class:`Reliability` (same bins); path: the PNG to write; title:
    optional. Top panel: positive share against mean probability per bin, with the
    diagonal of perfect calibration and each model's ECE in the legend; bottom panel: the
    entries per bin on a log scale (most entries sit in the first bin).
    """
    import matplotlib  # slow to import: only when there is a diagram to draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="calibrated")
    for name, bins in curves.items():
        used = bins.count > 0
        top.plot(bins.confidence[used], bins.frequency[used], marker="o", label=f"{name} (ECE {ece_of(bins):.4f})")
        centres = (bins.edges[:-1] + bins.edges[1:]) / 2
        bottom.step(centres, np.maximum(bins.count, 0.5), where="mid", label=name)
    top.set_ylabel("share of positives")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.legend(loc="upper left", fontsize="small")
    bottom.set_yscale("log")
    bottom.set_xlabel("predicted probability (bin mean)")
    bottom.set_ylabel("entries")
    if title:
        top.set_title(title)
    fig.tight_layout()
    fileio.save_figure(path, fig, dpi=100)
    plt.close(fig)
