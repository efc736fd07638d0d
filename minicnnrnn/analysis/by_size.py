"""Fig. 8: recall against object size.

The paper finds that the CNN-RNN misses small objects more often than a classifier
does unless larger objects imply them (§4.5, Fig. 8). Every true label of a test
image has a size, the fraction of the picture its objects cover (Tiny Scenes: the
generator's visible area; COCO: the sum of its annotations' areas); the pairs
(image, label) are put in size bins and the recall of each bin is the share of its
pairs the model predicts.
"""

import numpy as np

# Bin edges (fraction of the picture): log-spaced at the small end, where the objects are.
EDGES = (0.0, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 1.0)


def recall_by_size(pred01, truth, areas, edges=EDGES):
    """Recall per size bin. pred01, truth: (N, K) 0/1; areas: (N, K) object size of each
    true label (fraction in [0, 1]). A true label of area 0 (fully hidden by other
    objects) goes in the first bin. Returns ``{"recall": [...], "count": [...]}``, one
    entry per bin (``len(edges) - 1``); recall is None for an empty bin."""
    truth = np.asarray(truth) > 0
    hit = (np.asarray(pred01) > 0)[truth]
    size = np.asarray(areas, np.float64)[truth]
    bins = np.clip(np.searchsorted(edges, size, side="right") - 1, 0, len(edges) - 2)
    count = np.bincount(bins, minlength=len(edges) - 1)
    found = np.bincount(bins, weights=hit, minlength=len(edges) - 1)
    return {
        "recall": [float(f / c) if c else None for f, c in zip(found, count)],
        "count": [int(c) for c in count],
    }


def bin_names(edges=EDGES):
    """Readable bin labels, e.g. ``"0.5-1%"``."""
    return [f"{100 * a:g}-{100 * b:g}%" for a, b in zip(edges[:-1], edges[1:])]
