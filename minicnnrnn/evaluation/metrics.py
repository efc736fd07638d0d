"""Evaluation metrics of §4.1: precision/recall/F1 at top-k, MAP@10 and average precision.

Everything here works on host NumPy arrays (move device arrays with
``backend.to_host`` first). Shapes used throughout:

* ``truth: (N, K)`` 0/1 ground truth of N images over K labels;
* ``pred01: (N, K)`` 0/1 predicted labels (top-k of a score, or the RNN's path,
  which may hold fewer than k labels, §4.3);
* ``scores: (N, K)`` real-valued confidence used for rankings (MAP@10, AP);
* ``ignore: (N, K)`` bool or None: entries that count neither as positive nor as
  negative (PASCAL VOC "difficult", value 0 in the split files). Ignored entries
  are left out of every count below.

Definitions (TP = true positive; sums run over non-ignored entries):

* per class c: ``P_c = TP_c / #predicted_c`` (0 when the class is never
  predicted: the paper's "zero prediction ... zero precision"), ``R_c = TP_c / #truth_c``.
* ``C-P = mean_c P_c``, ``C-R = mean_c R_c`` over the classes with at least one
  ground-truth positive in the evaluated set (for a class without positives
  recall and AP are undefined, so it is left out of all per-class averages:
  C-P, C-R and mAP; on COCO, NUS-WIDE and VOC every class has test positives).
* ``O-P = sum TP / sum predicted``, ``O-R = sum TP / sum truth`` over all entries.
* ``C-F1 = 2 C-P C-R / (C-P + C-R)`` and likewise O-F1: the harmonic mean of the
  averaged precision and recall, NOT the mean of per-class F1 scores. (The paper
  says "geometrical average", but its numbers are harmonic means: Table 1's
  C-P 40.5, C-R 30.4 give 34.7 harmonic and 35.1 geometric; it prints 34.7.)
* MAP@10, AP and mAP: see :func:`map_at_n` and :func:`average_precision`.
* Undefined is NaN, never 0: when no evaluated image has a label, C-P, C-R, C-F1,
  O-R, O-F1, MAP@10 and mAP are NaN (``metrics.json`` writes them as ``null``, tables
  print ``-``); a model's score cannot look like a measured 0 there. O-P stays 0 when
  nothing is predicted (the paper's zero-prediction rule).

Ties in a ranking are broken by label / image index (a stable sort), so every
result is deterministic.
"""

import numpy as np

from minicnnrnn.core import ranking

METRIC_KEYS = ("C-P", "C-R", "C-F1", "O-P", "O-R", "O-F1", "MAP@10", "mAP")

# Recall levels of the VOC 2007 11-point AP, exactly as the devkit's Matlab
# `0:0.1:1` makes them: Matlab computes the first half as k*0.1, so its fourth
# level is 3*0.1 = 0.30000000000000004, not 0.3. A class whose recall hits
# exactly 3/10 is scored as the devkit scores it only with this value.
VOC07_RECALL_LEVELS = np.array([0.0, 0.1, 0.2, 3 * 0.1, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])

_CHUNK = 4096  # rows sorted at once: bounds memory on NUS-WIDE-1k (108k x 1000 scores)


def _check(name, a, like):
    a = np.asarray(a)
    if a.shape != like.shape:
        raise ValueError(f"{name}: shape {a.shape} differs from truth's {like.shape}")
    return a


def _valid_mask(truth, ignore):
    """(N, K) bool: entries that count (not ignored)."""
    if ignore is None:
        return np.ones(truth.shape, dtype=bool)
    return ~_check("ignore", ignore, truth).astype(bool)


def _ranked(scores, rows):
    """Label indices of ``scores[rows]`` from best to worst (stable: ties by index)."""
    return ranking.ranked(scores[rows])


def topk_predictions(scores, k):
    """Predict the k highest-scoring labels of every image (§4.1).

    scores: (N, K) -> (N, K) uint8 with exactly min(k, K) ones per row.
    Ties are broken towards the lower label index.
    """
    scores = np.asarray(scores)
    n, num_labels = scores.shape
    k = min(int(k), num_labels)
    pred = np.zeros((n, num_labels), dtype=np.uint8)
    for start in range(0, n, _CHUNK):
        rows = slice(start, start + _CHUNK)
        top = _ranked(scores, rows)[:, :k]
        np.put_along_axis(pred[rows], top, 1, axis=1)
    return pred


def _safe_div(num, den):
    """num / den elementwise, 0 where den == 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _harmonic(p, r):
    """2 p r / (p + r); 0 when both are 0, NaN when either is undefined (NaN)."""
    if np.isnan(p) or np.isnan(r):
        return float("nan")
    return float(_safe_div(2 * p * r, p + r))


def per_class_counts(pred01, truth, ignore=None):
    """Per-class counts: (tp, n_pred, n_true), each (K,) int64, over non-ignored entries."""
    truth = np.asarray(truth)
    valid = _valid_mask(truth, ignore)
    pred = (_check("pred01", pred01, truth) > 0) & valid
    true = (truth > 0) & valid
    tp = (pred & true).sum(axis=0, dtype=np.int64)
    return tp, pred.sum(axis=0, dtype=np.int64), true.sum(axis=0, dtype=np.int64)


def precision_recall_f1(pred01, truth, ignore=None):
    """C-P, C-R, C-F1, O-P, O-R, O-F1 as fractions in [0, 1], NaN where undefined (module docstring).

    pred01, truth: (N, K) 0/1; ignore: (N, K) bool or None. Returns a dict.
    """
    tp, n_pred, n_true = per_class_counts(pred01, truth, ignore)
    present = n_true > 0
    undefined = float("nan")  # no class has a positive: the class averages are over no class
    cp = float(_safe_div(tp, n_pred)[present].mean()) if present.any() else undefined
    cr = float(_safe_div(tp, n_true)[present].mean()) if present.any() else undefined
    op = float(_safe_div(tp.sum(), n_pred.sum()))
    orr = float(_safe_div(tp.sum(), n_true.sum())) if n_true.sum() else undefined
    return {"C-P": cp, "C-R": cr, "C-F1": _harmonic(cp, cr), "O-P": op, "O-R": orr, "O-F1": _harmonic(op, orr)}


def map_at_n(scores, truth, n=10, ignore=None):
    """MAP@N (§4.1, after the paper's ref. [34]) as a fraction in [0, 1].

    scores, truth: (N_img, K). For image i, rank its labels by score, let
    ``rel_j`` be 1 if the j-th ranked label is a ground-truth label, ``P(j)`` the
    fraction of ground-truth labels among the top j, and ``G_i`` its number of
    ground-truth labels. Then

        AP@N_i = (1 / min(N, G_i)) * sum_{j=1..N} P(j) * rel_j
        MAP@N  = mean of AP@N_i over the images with G_i > 0 (NaN when there is none).

    Normalising by min(N, G_i) (not G_i) makes a perfect top-N ranking score 1
    even for images with more than N labels. Ignored labels are removed from the
    image's ranking before the cut at N.
    """
    truth = np.asarray(truth)
    scores = _check("scores", scores, truth).astype(np.float64)
    valid = _valid_mask(truth, ignore)
    rel_all = (truth > 0) & valid
    # Ignored labels go to the end of the ranking, where their rel is 0:
    # the ranks of all the other labels are then as if they were removed.
    scores = np.where(valid, scores, -np.inf)
    n_true = rel_all.sum(axis=1)
    total, count = 0.0, 0
    for start in range(0, truth.shape[0], _CHUNK):
        rows = slice(start, start + _CHUNK)
        top = _ranked(scores, rows)[:, :n]
        rel = np.take_along_axis(rel_all[rows], top, axis=1).astype(np.float64)
        prec_at_j = np.cumsum(rel, axis=1) / np.arange(1, top.shape[1] + 1)
        g = n_true[rows]
        keep = g > 0
        ap = (prec_at_j * rel).sum(axis=1)[keep] / np.minimum(n, g[keep])
        total += ap.sum()
        count += int(keep.sum())
    return float(total / count) if count else float("nan")  # no image has a label: undefined


def _ap_one_class(score, positive, mode):
    """AP of one class from scores (M,) and 0/1 positives (M,) of the non-ignored images.

    mode "voc07": the VOC 2007 devkit's 11-point interpolated AP; images are
    ranked one by one (stable sort, as Matlab's sort), no grouping of ties.
    mode "sklearn": non-interpolated AP = sum_n (R_n - R_{n-1}) P_n over the
    distinct score thresholds (tied scores form one threshold), as
    scikit-learn's ``average_precision_score``.
    Returns NaN when there is no positive (AP undefined).
    """
    n_pos = int(positive.sum())
    if n_pos == 0:
        return float("nan")
    order = ranking.ranked(score)
    hits = positive[order].astype(np.float64)
    tp = np.cumsum(hits)
    fp = np.cumsum(1.0 - hits)
    if mode == "sklearn":
        # Keep only the last rank of each run of tied scores.
        s = score[order]
        last = np.r_[s[1:] != s[:-1], True]
        tp, fp = tp[last], fp[last]
    recall = tp / n_pos
    precision = tp / (tp + fp)
    if mode == "sklearn":
        return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    if mode == "voc07":
        ap = 0.0
        for t in VOC07_RECALL_LEVELS:
            reached = precision[recall >= t]
            ap += (reached.max() if reached.size else 0.0) / 11.0
        return float(ap)
    raise ValueError(f"unknown AP mode {mode!r} (use 'voc07' or 'sklearn')")


def average_precision(scores, truth, ignore=None, mode="sklearn"):
    """Per-class average precision, (K,) fractions; NaN for a class without positives.

    scores, truth: (N, K); ignore: (N, K) bool or None (e.g. VOC difficult):
    ignored images are neither positives nor negatives for that class, which is
    what the VOC devkit does for classification (gt value 0).
    mode: "voc07" (11-point interpolated, Table 4) or "sklearn" (non-interpolated).
    """
    truth = np.asarray(truth)
    scores = _check("scores", scores, truth)
    valid = _valid_mask(truth, ignore)
    aps = np.empty(truth.shape[1])
    for c in range(truth.shape[1]):
        keep = valid[:, c]
        aps[c] = _ap_one_class(scores[keep, c].astype(np.float64), truth[keep, c] > 0, mode)
    return aps


def _mean_of_defined(aps):
    """Mean of the per-class APs (K,) that are defined (not NaN); NaN when none is (no
    class has a test positive: mAP is undefined, not 0; metrics.json writes it as null)."""
    return float(np.nanmean(aps)) if np.isfinite(aps).any() else float("nan")


def mean_average_precision(scores, truth, ignore=None, mode="sklearn"):
    """mAP: mean of the per-class APs over classes with at least one positive, fraction.

    scores, truth: (N, K); ignore, mode: as :func:`average_precision`.
    """
    return _mean_of_defined(average_precision(scores, truth, ignore, mode))


def evaluate_with_ap(pred01, scores, truth, ignore=None, ap_mode="sklearn", map_n=10):
    """:func:`evaluate` and the per-class APs (K,) in percent (NaN: class without positives)."""
    truth = np.asarray(truth)
    out = precision_recall_f1(pred01, truth, ignore)
    out["MAP@10"] = map_at_n(scores, truth, map_n, ignore)
    aps = average_precision(scores, truth, ignore, ap_mode)
    out["mAP"] = _mean_of_defined(aps)
    return {key: 100.0 * float(out[key]) for key in METRIC_KEYS}, 100.0 * aps


def evaluate(pred01, scores, truth, ignore=None, ap_mode="sklearn", map_n=10):
    """All the metrics of Tables 1-3 plus mAP, in percent as the paper prints them.

    pred01: (N, K) 0/1 predicted labels (e.g. ``topk_predictions(scores, 3)`` or
    the RNN's beam-search output); scores: (N, K) ranking scores for MAP@10 and
    mAP; truth: (N, K) 0/1; ignore: (N, K) bool or None; ap_mode: "sklearn" or
    "voc07" (see :func:`average_precision`).
    Returns ``{"C-P", "C-R", "C-F1", "O-P", "O-R", "O-F1", "MAP@10", "mAP"}`` -> float.
    """
    return evaluate_with_ap(pred01, scores, truth, ignore, ap_mode, map_n)[0]


def _cell(value, width):
    if value is None or not np.isfinite(value):
        return "-".rjust(width)
    return f"{value:.1f}".rjust(width)


def format_table(rows, columns=METRIC_KEYS, title=None):
    """A text table in the layout of the paper's Tables 1-4.

    rows: {method name: {column: value in percent}}; a missing or NaN value
    prints as "-" (as the paper does for numbers a method did not report).
    """
    name_width = max([len("Method")] + [len(name) for name in rows])
    widths = [max(6, len(c)) for c in columns]
    lines = [] if title is None else [title]
    header = "Method".ljust(name_width) + "".join(" " + c.rjust(w) for c, w in zip(columns, widths))
    lines += [header, "-" * len(header)]
    for name, metrics in rows.items():
        cells = "".join(" " + _cell(metrics.get(c), w) for c, w in zip(columns, widths))
        lines.append(name.ljust(name_width) + cells)
    return "\n".join(lines)
