"""Metrics (§4.1) against hand-computed cases for every pitfall, and against scikit-learn."""

import numpy as np
import pytest

from minicnnrnn.evaluation import metrics


def _random_case(rng, n=60, k=7, density=0.3):
    truth = (rng.random((n, k)) < density).astype(np.uint8)
    truth[0] = 1  # every class has a positive
    scores = np.round(rng.normal(size=(n, k)) + truth, 1)  # rounding makes ties
    return truth, scores


# ---------------------------------------------------------------- top-k


def test_topk_exactly_k_per_row_and_ties_to_lower_index():
    scores = np.array([[0.1, 0.9, 0.5, 0.9], [1.0, 1.0, 1.0, 1.0]])
    pred = metrics.topk_predictions(scores, 2)
    assert pred.dtype == np.uint8
    np.testing.assert_array_equal(pred, [[0, 1, 0, 1], [1, 1, 0, 0]])
    assert metrics.topk_predictions(scores, 10).sum() == 8  # k > K: all labels


# ---------------------------------------------------------------- P / R / F1


def test_precision_recall_f1_hand_case():
    truth = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    pred = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 0]])
    # class 0: tp 2, pred 2, true 2 -> P 1, R 1
    # class 1: tp 1, pred 2, true 2 -> P .5, R .5
    # class 2: tp 0, pred 0, true 1 -> P 0 (never predicted), R 0
    out = metrics.precision_recall_f1(pred, truth)
    assert out["C-P"] == pytest.approx(0.5)
    assert out["C-R"] == pytest.approx(0.5)
    assert out["C-F1"] == pytest.approx(0.5)
    assert out["O-P"] == pytest.approx(3 / 4)
    assert out["O-R"] == pytest.approx(3 / 5)
    assert out["O-F1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)


def test_c_f1_is_harmonic_mean_of_cp_cr_not_mean_of_per_class_f1():
    truth = np.array([[1, 1], [1, 0], [1, 0], [1, 0]])
    pred = np.array([[1, 1], [0, 1], [0, 1], [0, 1]])
    # class 0: P 1, R 1/4 -> F1 0.4;  class 1: P 1/4, R 1 -> F1 0.4
    # C-P = C-R = 0.625 -> C-F1 = 0.625, while the mean of per-class F1 is 0.4
    out = metrics.precision_recall_f1(pred, truth)
    assert out["C-P"] == pytest.approx(0.625) and out["C-R"] == pytest.approx(0.625)
    assert out["C-F1"] == pytest.approx(0.625)


def test_fewer_than_k_predictions_count_only_what_was_predicted():
    # An RNN path may stop early: row 0 predicts one label, row 1 none.
    truth = np.array([[1, 1, 0], [0, 1, 1]])
    pred = np.array([[1, 0, 0], [0, 0, 0]])
    out = metrics.precision_recall_f1(pred, truth)
    assert out["O-P"] == pytest.approx(1.0)  # 1 correct of 1 predicted, not of k
    assert out["O-R"] == pytest.approx(1 / 4)
    assert out["C-P"] == pytest.approx(1 / 3)  # classes 1 and 2 never predicted: precision 0


def test_class_without_positives_is_left_out_of_class_averages():
    truth = np.array([[1, 0], [1, 0]])
    pred = np.array([[1, 1], [1, 0]])
    out = metrics.precision_recall_f1(pred, truth)
    assert out["C-P"] == pytest.approx(1.0) and out["C-R"] == pytest.approx(1.0)
    assert out["O-P"] == pytest.approx(2 / 3)  # its false positive still counts overall


def test_ignored_entries_are_neither_positive_nor_negative():
    truth = np.array([[1, 0], [0, 1], [0, 0]])
    pred = np.array([[1, 1], [0, 1], [1, 0]])
    ignore = np.array([[False, True], [False, False], [True, False]])
    out = metrics.precision_recall_f1(pred, truth, ignore)
    # left: class 0 rows 0,1 (tp 1, pred 1), class 1 rows 1,2 (tp 1, pred 1)
    assert out["O-P"] == pytest.approx(1.0) and out["C-P"] == pytest.approx(1.0)


# ---------------------------------------------------------------- MAP@10


def test_map_at_n_hand_case():
    # image 0: truth {0, 2}; ranking 0, 1, 2 -> (1/1 + 2/3) / 2
    # image 1: 12 labels, all true, n = 10 -> 1 (normalised by min(10, 12))
    # image 2: no truth -> left out
    scores = np.zeros((3, 12))
    scores[0, :3] = [3, 2, 1]
    scores[1] = np.arange(12)
    truth = np.zeros((3, 12), dtype=np.uint8)
    truth[0, [0, 2]] = 1
    truth[1] = 1
    assert metrics.map_at_n(scores, truth, 10) == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)


def test_map_at_n_cut_and_ignore():
    scores = np.array([[5.0, 4, 3, 2, 1]])
    truth = np.array([[0, 0, 1, 1, 0]])
    # top-2 holds no true label -> 0; ignoring labels 0 and 1 puts both true ones in the top 2 -> 1
    assert metrics.map_at_n(scores, truth, 2) == 0.0
    ignore = np.array([[True, True, False, False, False]])
    assert metrics.map_at_n(scores, truth, 2, ignore) == pytest.approx(1.0)


# ---------------------------------------------------------------- AP


def test_voc07_eleven_point_hand_case():
    score = np.array([4.0, 3, 2, 1])
    truth = np.array([1, 0, 1, 0])[:, None]
    # recall .5 at precision 1, recall 1 at precision 2/3: levels 0..0.5 -> 1, 0.6..1 -> 2/3
    ap = metrics.average_precision(score[:, None], truth, mode="voc07")
    assert ap[0] == pytest.approx((6 + 5 * 2 / 3) / 11)


def test_voc07_recall_level_point_three_as_the_matlab_devkit():
    # 10 positives: 3 hits, 8 misses, 7 hits. Recall is exactly 3/10 after rank 3;
    # Matlab's 0:0.1:1 level is 0.30000000000000004, so that point does not count.
    hits = np.array([1] * 3 + [0] * 8 + [1] * 7)
    score = -np.arange(hits.size, dtype=float)
    ap = metrics.average_precision(score[:, None], hits[:, None], mode="voc07")[0]
    assert ap == pytest.approx((3 + 8 * 10 / 18) / 11)


def test_difficult_is_ignored_for_ap():
    scores = np.array([[0.9], [0.8], [0.7], [0.1]])
    truth = np.array([[0], [1], [0], [1]])
    ignore = np.array([[True], [False], [False], [False]])
    for mode in ("voc07", "sklearn"):
        with_ignore = metrics.average_precision(scores, truth, ignore, mode)
        removed = metrics.average_precision(scores[1:], truth[1:], None, mode)
        assert with_ignore[0] == pytest.approx(removed[0])
        assert with_ignore[0] > metrics.average_precision(scores, truth, None, mode)[0]


def test_ap_nan_without_positives_and_map_skips_it():
    scores = np.array([[0.9, 0.1], [0.2, 0.8]])
    truth = np.array([[1, 0], [0, 0]])
    ap = metrics.average_precision(scores, truth)
    assert ap[0] == 1.0 and np.isnan(ap[1])
    assert metrics.mean_average_precision(scores, truth) == 1.0


def test_sklearn_ap_groups_ties_voc07_does_not():
    # Tied scores: one positive and one negative at the same score.
    scores = np.array([[1.0], [1.0], [0.0]])
    truth = np.array([[0], [1], [1]])
    # sklearn: threshold 1 -> P 1/2, R 1/2; threshold 0 -> P 2/3, R 1: AP = .5*.5 + .5*2/3
    assert metrics.average_precision(scores, truth)[0] == pytest.approx(0.25 + 1 / 3)
    # voc07 ranks the tied pair one by one (stable, by index). Positive first: precision 1 at
    # recall 1/2 counts for levels 0..0.5, 2/3 for 0.6..1. Grouped, it would be 2/3 throughout.
    first = np.array([[1], [0], [1]])
    assert metrics.average_precision(scores, first, mode="voc07")[0] == pytest.approx((6 + 5 * 2 / 3) / 11)


# ---------------------------------------------------------------- evaluate / table


def test_evaluate_keys_percent_and_table(rng):
    truth, scores = _random_case(rng)
    pred = metrics.topk_predictions(scores, 3)
    out = metrics.evaluate(pred, scores, truth)
    assert tuple(out) == metrics.METRIC_KEYS
    prf = metrics.precision_recall_f1(pred, truth)
    assert out["O-F1"] == pytest.approx(100 * prf["O-F1"])
    assert all(0 <= v <= 100 for v in out.values())
    table = metrics.format_table({"CNN-RNN": out, "WARP": {"O-F1": 60.7, "mAP": float("nan")}})
    lines = table.splitlines()
    assert lines[0].split() == ["Method", *metrics.METRIC_KEYS]
    assert lines[2].startswith("CNN-RNN") and f"{out['C-P']:.1f}" in lines[2]
    assert lines[3].split() == ["WARP", "-", "-", "-", "-", "-", "60.7", "-", "-"]


# ---------------------------------------------------------------- scikit-learn oracle


def test_against_sklearn(rng):
    skm = pytest.importorskip("sklearn.metrics")
    truth, scores = _random_case(rng)
    pred = metrics.topk_predictions(scores, 3)
    out = metrics.precision_recall_f1(pred, truth)
    assert out["C-P"] == pytest.approx(skm.precision_score(truth, pred, average="macro", zero_division=0))
    assert out["C-R"] == pytest.approx(skm.recall_score(truth, pred, average="macro", zero_division=0))
    assert out["O-P"] == pytest.approx(skm.precision_score(truth, pred, average="micro"))
    assert out["O-R"] == pytest.approx(skm.recall_score(truth, pred, average="micro"))
    assert out["O-F1"] == pytest.approx(skm.f1_score(truth, pred, average="micro"))
    ours = metrics.average_precision(scores, truth, mode="sklearn")
    theirs = [skm.average_precision_score(truth[:, c], scores[:, c]) for c in range(truth.shape[1])]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    # With untied scores and N >= K, MAP@N equals sklearn's label-ranking AP.
    untied = rng.permuted(np.tile(np.arange(truth.shape[1], dtype=float), (truth.shape[0], 1)), axis=1)
    has = truth.sum(1) > 0
    assert metrics.map_at_n(untied, truth, n=truth.shape[1]) == pytest.approx(
        skm.label_ranking_average_precision_score(truth[has], untied[has])
    )


# ---------------------------------------------------------------- per-benchmark protocols


def test_protocols_follow_the_paper():
    from minicnnrnn.evaluation import protocols

    assert protocols.protocol_for("coco2014")["k"] == 3 and protocols.protocol_for("coco2014")["min_labels"] == 0
    assert protocols.protocol_for("nuswide81")["min_labels"] == 3
    assert protocols.protocol_for("nuswide1k")["k"] == 10
    assert protocols.protocol_for("voc2007")["ap_mode"] == "voc07"
    assert protocols.protocol_for("builtin")["paper"] is None


def test_voc_protocol_report(rng):
    from minicnnrnn.evaluation import protocols

    truth = (rng.random((40, 20)) < 0.3).astype(np.uint8)
    truth[0] = 1
    ignore = rng.random((40, 20)) < 0.1
    scores = rng.normal(size=truth.shape) + truth
    result = protocols.evaluate_protocol("voc2007", scores, truth, ignore)
    ap = metrics.average_precision(scores, truth, ignore, mode="voc07")
    np.testing.assert_allclose(result["per_class_ap"], 100 * ap)
    assert result["metrics"]["mAP"] == pytest.approx(100 * ap.mean())
    lines = protocols.report("voc2007", {"ours": result}).splitlines()
    assert lines[0].startswith("Table 4") and lines[1].split()[1:] == protocols.VOC_SHORT_NAMES + ["mAP"]
    assert lines[3].split()[1] == f"{100 * ap[0]:.1f}"
    assert lines[-1].split() == ["CNN-RNN", "(paper)"] + [
        f"{v:.1f}" for v in protocols.PAPER_RESULTS["voc2007"]["CNN-RNN"].values()
    ]


def test_pr_protocol_uses_k_and_given_predictions(rng):
    from minicnnrnn.evaluation import protocols

    truth, scores = _random_case(rng, n=30, k=12)
    r10 = protocols.evaluate_protocol("nuswide1k", scores, truth)["metrics"]
    assert r10 == metrics.evaluate(metrics.topk_predictions(scores, 10), scores, truth)
    rnn = np.zeros_like(truth)
    rnn[:, 0] = 1  # a model that always says one label
    r = protocols.evaluate_protocol("coco2014", scores, truth, pred01=rnn)["metrics"]
    assert r["O-P"] == pytest.approx(100 * truth[:, 0].mean())
    table = protocols.report("coco2014", {"ours": r})
    assert "Table 3" in table and "No RNN (paper)" in table and "61.2" in table
