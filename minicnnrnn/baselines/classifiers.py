"""The bce and softmax baselines of Table 3: one score per label from the image alone.

They are classic classifiers with no label path. To differ from the CNN-RNN only where
Table 3 says, their network (``layers/classifier.py``, shared with the concept layer of
``rnn/semantic.py``) is the same image half of Eq. 4 and the same kind of score vectors
(one hidden layer in the E-dimensional joint space, dropout 0.5)::

    x = ReLU(I @ U_I_x + b_x)                       # (N, E) image in the joint space
    s = x @ U_l.T + b_l                             # (N, K) one score per label

``bce`` trains one independent sigmoid per label (binary cross-entropy); ``softmax``
trains one softmax over the K labels against the image's normalised label distribution
``y / Σy`` (the softmax loss of the paper's ref. [9], Gong et al.). Both predict the
top-k labels. ``U_l: (K, E)`` here (no END/START), ``b_l: (K,)`` a per-label bias.
This module holds their losses; the network's forward and backward are
``classifier.classifier_forward`` / ``classifier_backward``.
"""

from minicnnrnn.core.backend import xp
from minicnnrnn.layers import classifier, loss


def label_distribution_cross_entropy(scores, y):
    """The softmax baseline's loss: cross-entropy against the normalised label distribution.

    scores: (N, K); y: (N, K) 0/1. With q = y / Σ_k y (the image's labels, equally likely)
    and p = softmax(scores): loss = -(1/N) Σ_n Σ_k q_nk log p_nk, dscores = (p - q) / N.
    Images without labels have no target distribution and contribute nothing.
    Returns (loss: float, dscores (N, K)).
    """
    N = scores.shape[0]
    y = xp.asarray(y).astype(scores.dtype)
    count = y.sum(axis=1, keepdims=True)
    has_labels = (count > 0).astype(scores.dtype)
    q = y / xp.maximum(count, 1)
    logp = loss.log_softmax(scores)
    value = -float((q * logp).sum()) / N
    dscores = (xp.exp(logp) - q) * (has_labels / N)
    return value, dscores


def classifier_loss(kind, params, I, y, dropout_mask=None):
    """Loss and gradients of the bce or softmax baseline on a batch.

    kind: "bce" or "softmax"; I: (N, D); y: (N, K) 0/1. Returns (loss, grads).
    """
    scores, cache = classifier.classifier_forward(I, params, dropout_mask)
    if kind == "bce":
        value, dscores = loss.sigmoid_cross_entropy(scores, y)
    elif kind == "softmax":
        value, dscores = label_distribution_cross_entropy(scores, y)
    else:
        raise ValueError(f"unknown classifier {kind!r}")
    return value, classifier.classifier_backward(dscores, cache)


def classifier_confidence(kind, scores):
    """Per-label confidence for ranking (MAP@10, AP): scores (N, K) -> (N, K); sigmoid for bce,
    softmax over the K labels for softmax (the link of each training loss)."""
    if kind == "bce":
        return loss.sigmoid(scores)
    return xp.exp(loss.log_softmax(scores))
