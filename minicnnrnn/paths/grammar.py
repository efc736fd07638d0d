"""The grammar of a label path (§3.3, footnote 1): which outputs may come next.

A prediction path is a sequence of distinct labels closed by END. Every decoder of
``paths/`` (beam search, the presence enumeration and sampling, the alignment rollout)
follows the same three rules, written here once:

* a label already on the path is not allowed again;
* END is not allowed before the path has ``min_labels`` labels (footnote 1);
* once the path has L = ``max_labels`` labels, END is the only output left.

START is an input only, never an output, so it is not among the K + 1 outputs
(labels ``0 .. K-1`` and END = K, ``tokens.py``). :func:`may_follow` says the rules for
one path in words; :func:`forbid` applies them to a whole array of paths at once
(:func:`forbid_taken` is its first rule for paths kept as label indices), and
``tests/test_beam_search.py`` checks that both agree; :func:`allowed_log_probs` renormalises
a step's distribution over what is allowed (the presence and the samplers draw from it).
:func:`check_options` validates the search options that set L and ``min_labels``.
"""

from minicnnrnn.core.backend import xp
from minicnnrnn.core.errors import UserError
from minicnnrnn.layers import loss

NEG_INF = float("-inf")


def check_options(K, beam_size, max_labels=None, min_labels=0):
    """Validate the search options; returns the effective maximum path length L <= K."""
    if int(beam_size) != beam_size or beam_size < 1:
        raise UserError(f"--beam: must be a positive integer, got {beam_size}")
    L = longest_path(K, max_labels)
    if not 1 <= L <= K:
        raise UserError(f"--max-labels: must be between 1 and K = {K}, got {max_labels}")
    if not 0 <= min_labels <= L:
        raise UserError(f"--min-labels: must be between 0 and the maximum length {L}, got {min_labels}")
    return L


def longest_path(K, max_labels):
    """L: ``max_labels``, or K (every label once) when it is None."""
    return K if max_labels is None else int(max_labels)


def may_follow(j, labels, K, L, min_labels):
    """Whether output j (a label ``0 .. K-1`` or END = K) may follow the path ``labels`` (a
    tuple of the labels so far), for paths of at most L and at least ``min_labels`` labels."""
    t = len(labels)
    if j == K:  # END
        return t >= min_labels
    return t < L and j not in labels


def forbid(lp, used, t, L, min_labels):
    """Set the log-probabilities of the outputs that may not come next to -inf, in place.

    lp: (..., K + 1) a step's log-probabilities, END last; used: None or (..., K) bool, the
    labels on each path so far; t: the number of labels on every path (the step);
    L, min_labels: as in :func:`may_follow`. Returns lp.
    """
    K = lp.shape[-1] - 1
    if used is not None:
        lp[..., :K][used] = NEG_INF  # no label twice
    if t < min_labels:
        lp[..., K] = NEG_INF  # END not yet
    if t >= L:
        lp[..., :K] = NEG_INF  # full: only END
    return lp


def forbid_taken(lp, path, t):
    """Rule 1 from label indices, in place: -inf at the t labels already on each path.

    The beam search keeps its paths as label indices, not as a (.., K) mask, so it applies
    :func:`forbid`'s first rule as a scatter. lp: (A, W, K + 1) log-probabilities of A images'
    W paths each; path: (A, W, >= t) int, the labels so far. Returns lp.
    """
    if t:
        lp[xp.arange(lp.shape[0])[:, None, None], xp.arange(lp.shape[1])[None, :, None], path[:, :, :t]] = NEG_INF
    return lp


def allowed_log_probs(lp, used, t, L, min_labels):
    """The model's log-probabilities renormalised over the allowed next outputs (the others -inf).

    lp: (R, K + 1) the model's log-softmax (overwritten); used: (R, K) bool, labels on the
    prefix; t: the prefix length; L: longest path; min_labels: the shortest (:func:`forbid`).
    """
    return loss.log_softmax(forbid(lp, used, t, L, min_labels))
