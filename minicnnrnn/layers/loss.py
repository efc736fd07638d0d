"""Training losses (§3.4): softmax cross-entropy over a label path, and sigmoid BCE.

CNN-RNN is trained with "the cross-entropy loss on the softmax normalization of
score softmax(s(t))" (§3.4), summed over the real (unpadded) steps of every path
and divided by the number of paths N. The binary cross-entropy is the loss of the
"Binary cross-entropy" baseline (Table 3) and of the built-in CNN's pretraining.

Both are written so that no ``exp`` can overflow: softmax through log-sum-exp
with the row maximum subtracted, and the sigmoid loss through ``log1p(exp(-|s|))``.
Losses come back as Python floats; gradients as arrays on the backend.
"""

from minicnnrnn.core.backend import xp


def log_softmax(s):
    """Stable log of the softmax over the last axis. s: (..., C) -> (..., C)."""
    shifted = s - s.max(axis=-1, keepdims=True)
    shifted -= xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))
    return shifted


def softmax_cross_entropy(scores, targets, mask, out=None):
    """Masked softmax cross-entropy of the Eq. 5 scores (§3.4).

    Summed over the valid steps and divided by the number of paths N.
    scores: (T, N, C) (or (N, C)); targets: (T, N) (or (N,)) integer tokens in
    ``0 .. C-1``; mask: (T, N) (or (N,)), 1 where the step counts and 0 for padding
    (a padded step's target is ignored and may be any integer); out: optional array
    shaped like scores to receive dscores (may be ``scores`` itself when the caller
    no longer needs the scores: saves one large array).
    Returns (loss: float, dscores: same shape as scores).
    """
    N, C = scores.shape[-2:]
    m = xp.asarray(mask).astype(scores.dtype)
    safe_targets = xp.where(m > 0, targets, 0)  # (T, N)
    # One (T, N, C) array does all the work in place: shifted scores, then their
    # exponentials, then the softmax, then the gradient. (Each extra array this
    # size is fresh memory, i.e. page faults: at C = 1001 they cost more than the
    # arithmetic.)
    p = xp.subtract(scores, scores.max(axis=-1, keepdims=True), out=out)  # s - max s: no overflow
    picked = xp.take_along_axis(p, safe_targets[..., None], axis=-1)[..., 0]
    xp.exp(p, out=p)
    total = p.sum(axis=-1, keepdims=True)
    # -log softmax_y = log sum_c exp(s_c - max) - (s_y - max)
    loss = float(((xp.log(total[..., 0]) - picked) * m).sum()) / N
    # d(-log softmax_y)/ds = softmax - one_hot(y): subtract 1 at each target entry.
    p /= total
    rows = p.reshape(-1, C)
    rows[xp.arange(rows.shape[0]), safe_targets.reshape(-1)] -= 1.0
    p *= (m / N)[..., None]
    return loss, p


def sigmoid(s):
    """Stable logistic function of an array of any shape: (1 + tanh(s / 2)) / 2 never overflows."""
    return 0.5 * (1.0 + xp.tanh(0.5 * s))


def sigmoid_cross_entropy(scores, y, mask=None):
    """Binary cross-entropy with logits (the BCE baseline of Table 3).

    Summed over the labels and divided by the number of images N.
    scores: (N, K) logits; y: (N, K) targets in {0, 1} (or probabilities);
    mask: optional (N, K), 0 for entries to ignore (e.g. VOC "difficult").
    Returns (loss: float, dscores (N, K)).
    """
    N = scores.shape[0]
    y = xp.asarray(y).astype(scores.dtype)
    # -[y log p + (1-y) log(1-p)] with p = sigmoid(s), rewritten without exp(+|s|):
    per_entry = xp.maximum(scores, 0) - scores * y + xp.log1p(xp.exp(-xp.abs(scores)))
    dscores = (sigmoid(scores) - y) / N
    if mask is not None:
        m = xp.asarray(mask).astype(scores.dtype)
        per_entry = per_entry * m
        dscores *= m
    return float(per_entry.sum()) / N, dscores
