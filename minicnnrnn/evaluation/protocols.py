"""Each benchmark's evaluation protocol (§4.2-4.4) and its table, beside the paper's numbers.

    proto = evaluation.protocol_for("coco2014")     # {"k": 3, "min_labels": 0, "ap_mode": "sklearn", ...}
    result = evaluation.evaluate_protocol("coco2014", scores, truth, pred01=rnn_labels)
    print(evaluation.report("coco2014", {"CNN-RNN (ours)": result}))

Protocols, as the paper states them:

* ``nuswide81``: top k = 3 labels per image (Table 1); for the RNN the beam
  search keeps paths of at least k labels (footnote 1): ``min_labels = 3``.
* ``nuswide1k``: k = 10 (Table 2), ``min_labels = 10``.
* ``coco2014``: k = 3 (Table 3); "we do not set the minimum length" (§4.3), so
  the RNN may output fewer than 3 labels: ``min_labels = 0``.
* ``voc2007``: per-class AP with the VOC 2007 devkit's 11-point interpolation,
  "difficult" entries ignored, printed as Table 4 (20 classes + mAP).

Any other name (the built-in dataset, ``npz:...``) gets k = 3, no minimum
length and scikit-learn's non-interpolated AP, and no paper rows.
"""

import numpy as np

from minicnnrnn.datasets.voc2007 import SHORT_NAMES as VOC_SHORT_NAMES  # Table 4's column headers
from minicnnrnn.evaluation import metrics

_PR_COLUMNS = ("C-P", "C-R", "C-F1", "O-P", "O-R", "O-F1", "MAP@10")  # Tables 1-3
_AP_COLUMNS = VOC_SHORT_NAMES + ["mAP"]  # Table 4
_ = None  # a number the paper does not give; prints as "-"

# The published numbers of Tables 1-4 (public facts; percent), one list per row in column order.
_TABLES = {
    "nuswide81": (
        _PR_COLUMNS,
        {  # Table 1, k = 3
            "Metric Learning [19]": [_, _, _, _, _, 21.3, _],
            "Multi-edge graph [23]": [_, _, _, 35.0, 37.0, 36.0, _],
            "KNN [2]": [32.6, 19.3, 24.3, 42.9, 53.4, 47.6, _],
            "Softmax": [31.7, 31.2, 31.4, 47.8, 59.5, 53.0, _],
            "WARP [9]": [31.7, 35.6, 33.5, 48.6, 60.5, 53.9, _],
            "Joint Embedding [38]": [_, _, _, _, _, _, 40.3],
            "CNN-RNN": [40.5, 30.4, 34.7, 49.9, 61.7, 55.2, 56.1],
        },
    ),
    "nuswide1k": (
        _PR_COLUMNS,
        {  # Table 2, k = 10
            "Softmax": [14.2, 18.6, 16.1, 17.1, 28.8, 21.5, 24.3],
            "DSLR [22]": [_, _, _, 20.0, 25.0, 22.4, _],
            "WARP": [14.5, 15.9, 15.2, 18.3, 30.8, 22.9, 24.8],
            "CNN-RNN": [19.2, 15.3, 17.1, 18.5, 31.2, 23.3, 26.6],
        },
    ),
    "coco2014": (
        _PR_COLUMNS,
        {  # Table 3, k = 3
            "Softmax": [59.0, 57.0, 58.0, 60.2, 62.1, 61.1, 47.4],
            "WARP": [59.3, 52.5, 55.7, 59.8, 61.4, 60.7, 49.2],
            "Binary cross-entropy": [59.3, 58.6, 58.9, 61.7, 65.0, 63.3, _],
            "No RNN": [65.3, 54.5, 59.3, 68.5, 61.3, 65.7, 57.2],
            "CNN-RNN": [66.0, 55.6, 60.4, 69.2, 66.4, 67.8, 61.2],
        },
    ),
    "voc2007": (
        _AP_COLUMNS,
        {  # Table 4, AP per class and mAP
            "INRIA [14]": [
                77.2,
                69.3,
                56.2,
                66.6,
                45.5,
                68.1,
                83.4,
                53.6,
                58.3,
                51.1,
                62.2,
                45.2,
                78.4,
                69.7,
                86.1,
                52.4,
                54.4,
                54.3,
                75.8,
                62.1,
                63.5,
            ],
            "CNN-SVM [27]": [
                88.5,
                81.0,
                83.5,
                82.0,
                42.0,
                72.5,
                85.3,
                81.6,
                59.9,
                58.5,
                66.5,
                77.8,
                81.8,
                78.8,
                90.2,
                54.8,
                71.1,
                62.6,
                87.4,
                71.8,
                73.9,
            ],
            "I-FT [36]": [
                91.4,
                84.7,
                87.5,
                81.8,
                40.2,
                73.0,
                86.4,
                84.8,
                51.8,
                63.9,
                67.9,
                82.7,
                84.0,
                76.9,
                90.4,
                51.5,
                79.9,
                54.1,
                89.5,
                65.8,
                74.4,
            ],
            "HCP-1000C [36]": [
                95.1,
                90.1,
                92.8,
                89.9,
                51.5,
                80.0,
                91.7,
                91.6,
                57.7,
                77.8,
                70.9,
                89.3,
                89.3,
                85.2,
                93.0,
                64.0,
                85.7,
                62.7,
                94.4,
                78.3,
                81.5,
            ],
            "CNN-RNN": [
                96.7,
                83.1,
                94.2,
                92.8,
                61.2,
                82.1,
                89.1,
                94.2,
                64.2,
                83.6,
                70.0,
                92.4,
                91.7,
                84.2,
                93.7,
                59.8,
                93.2,
                75.3,
                99.7,
                78.6,
                84.0,
            ],
        },
    ),
}
# {dataset: {method: {column: value or NaN}}}
PAPER_RESULTS = {
    name: {
        method: {c: float("nan") if v is None else v for c, v in zip(columns, values)}
        for method, values in rows.items()
    }
    for name, (columns, rows) in _TABLES.items()
}

_PROTOCOLS = {
    "nuswide81": {"k": 3, "min_labels": 3, "ap_mode": "sklearn", "title": "Table 1. NUS-WIDE, 81 concepts, k = 3"},
    "nuswide1k": {"k": 10, "min_labels": 10, "ap_mode": "sklearn", "title": "Table 2. NUS-WIDE, 1000 tags, k = 10"},
    "coco2014": {"k": 3, "min_labels": 0, "ap_mode": "sklearn", "title": "Table 3. MS-COCO, k = 3"},
    "voc2007": {
        "k": 3,
        "min_labels": 0,
        "ap_mode": "voc07",
        "title": "Table 4. PASCAL VOC 2007, AP in % (11-point, difficult ignored)",
    },
}
_DEFAULT = {"k": 3, "min_labels": 0, "ap_mode": "sklearn", "title": "Results, k = 3"}


def protocol_for(name):
    """The protocol of dataset ``name`` as a new dict.

    Keys: ``k`` (labels per image for top-k metrics), ``min_labels`` (minimum
    beam-search path length for the RNN, 0 = none), ``ap_mode`` ("voc07" or
    "sklearn", see :func:`metrics.average_precision`), ``title``, ``table``
    ("ap" for per-class AP as Table 4, "pr" for Tables 1-3) and ``paper``
    (the key of :data:`PAPER_RESULTS`, or None).
    """
    key = "coco2014" if str(name).startswith("coco") else str(name)
    proto = dict(_PROTOCOLS.get(key, _DEFAULT))
    proto["table"] = "ap" if key == "voc2007" else "pr"
    proto["paper"] = key if key in PAPER_RESULTS else None
    return proto


def evaluate_protocol(name, scores, truth, ignore=None, pred01=None):
    """Evaluate one method by the protocol of dataset ``name``.

    scores: (N, K) ranking scores; truth: (N, K) 0/1; ignore: (N, K) bool or
    None; pred01: (N, K) 0/1 predicted label sets (the RNN's beam search), or
    None to take the top k of ``scores``.
    Returns ``{"metrics": {the 8 keys of metrics.METRIC_KEYS, percent},
    "per_class_ap": [K floats, percent; NaN for a class without positives]}``.
    """
    proto = protocol_for(name)
    truth = np.asarray(truth)
    if pred01 is None:
        pred01 = metrics.topk_predictions(scores, proto["k"])
    result, ap = metrics.evaluate_with_ap(pred01, scores, truth, ignore, ap_mode=proto["ap_mode"])
    return {"metrics": result, "per_class_ap": [float(a) for a in ap]}


def _metrics_of(result):
    return result["metrics"] if "metrics" in result else result


def report(name, results, with_paper=True):
    """The table of dataset ``name`` for ``results`` = {method: evaluate_protocol() result or metrics dict}.

    Tables 1-3 show C-P ... MAP@10 and mAP; Table 4 shows the 20 VOC classes
    and mAP (needs ``per_class_ap``). The paper's rows follow, marked "(paper)".
    """
    proto = protocol_for(name)
    rows = {}
    if proto["table"] == "ap":
        columns = _AP_COLUMNS
        for method, result in results.items():
            per_class = result.get("per_class_ap") if isinstance(result, dict) else None
            row = dict(zip(VOC_SHORT_NAMES, per_class or []))
            row["mAP"] = _metrics_of(result).get("mAP")
            rows[method] = row
    else:
        columns = list(metrics.METRIC_KEYS)
        rows = {method: _metrics_of(result) for method, result in results.items()}
    if with_paper and proto["paper"]:
        for method, row in PAPER_RESULTS[proto["paper"]].items():
            rows[f"{method} (paper)"] = row
    return metrics.format_table(rows, columns, title=proto["title"])
