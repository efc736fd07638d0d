"""Fig. 7: per-class precision and recall, the CNN-RNN beside a classifier (BCE).

The paper's Fig. 7 sets the per-class precision and recall of the CNN-RNN and of the
softmax/BCE baselines side by side on MS-COCO, labels in order of their training
frequency: the RNN gains most on the labels that other labels imply. The numbers are
:func:`minicnnrnn.evaluation.metrics.per_class_counts` of the predicted label sets;
their mean over the labels with test positives is exactly the C-P and C-R ``train``
reports (§4.1).
"""

import numpy as np

from minicnnrnn.core import ranking
from minicnnrnn.evaluation import metrics


def per_class(pred01, truth, names, ignore=None):
    """``{label: {"precision": p, "recall": r, "support": n}}`` in [0, 1] (n: test positives).

    pred01, truth: (N, K) 0/1; ignore: (N, K) bool or None (VOC "difficult"). A label
    never predicted has precision 0 (the paper's convention); without positives recall
    is None (left out of C-R).
    """
    tp, n_pred, n_true = metrics.per_class_counts(pred01, truth, ignore)
    out = {}
    for k, name in enumerate(names):
        out[name] = {
            "precision": float(tp[k] / n_pred[k]) if n_pred[k] else 0.0,
            "recall": float(tp[k] / n_true[k]) if n_true[k] else None,
            "support": int(n_true[k]),
        }
    return out


def mean_recall(table):
    """C-R of a :func:`per_class` table: the mean recall of the labels with positives."""
    recalls = [row["recall"] for row in table.values() if row["recall"] is not None]
    return float(np.mean(recalls)) if recalls else 0.0


def frequency_order(train_labels, names):
    """Label names from the most to the least frequent in the training set (ties: index)."""
    counts = np.asarray(train_labels).sum(axis=0)
    return [names[k] for k in ranking.ranked(counts)]
