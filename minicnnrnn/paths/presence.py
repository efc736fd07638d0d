"""P(label in path): a per-label presence probability of the path models, for ranking.

The CNN-RNN (§3.2) defines a distribution over prediction paths, Eq. 6::

    P(l_1, ..., l_T, END | I) = prod_t P(l_t | I, l_1, ..., l_{t-1}) * P(END | I, l_1, ..., l_T)

Beam search (§3.3) returns its most probable path, which says which labels to predict but
not how likely each of the other labels is. The ranking metrics (MAP@10, per-class AP,
mAP; §4.1) need one number per label, so we rank by the probability that the label is on
a path drawn from the model:

    presence(l | I) = P(l in path | I) = sum_t P(l_t = l | I)

(a label never appears twice on a path, so the events "l at step t" are disjoint). The
paths obey the decoder's rules: no label twice, END not before ``min_labels`` labels, at
most ``max_labels`` labels (then END is forced); each step's probabilities are the model's
softmax renormalised over the allowed outputs. Two ways to compute it:

* **exact** (:func:`exact_presence`): enumerate every prefix of at most ``max_labels - 1``
  labels, breadth first, and add ``P(prefix) * P(l | prefix)`` for every label. A prefix
  of t labels has K (K - 1) ... (K - t + 1) variants, so this costs
  :func:`n_prefixes` model rows per image: 401 for K = 20 and paths of at most 3 labels,
  84,682 for K = 291 (iaprtc12) - exact only where that is cheap.
* **sampled** (:func:`sampled_presence`): S paths per image by ancestral sampling (seeded,
  uniforms drawn on the host, so CPU and GPU draw the same paths), with the Rao-Blackwell
  estimate ``presence(l) ~ (1/S) sum_s sum_t P(l | prefix_t^s) [l not on prefix_t^s]``:
  the expected count of l at each visited step instead of the 0/1 count of the sampled
  label. It is unbiased (the prefixes are drawn from the model) and has far less variance
  than counting: the first step is exact (every sample starts from START) and a label that
  is never drawn still gets its probability at each step. Cost: S x (path length + 1) rows
  per image; the sampling loop is ``decisions.sampled_blocks`` (shared with the expected-F1
  decision; the one that runs, ``sample_paths_shared``, evaluates the step once per
  distinct prefix of the S paths, not once per path), whose blocks and path length are
  bounded so that the cost does not grow with K beyond what the data needs
  (``max_labels`` = ``RunConfig.max_path``; docs/limits.md).
  Its standard error per entry is the sample standard deviation of the S
  per-path sums over sqrt(S) (returned as ``stderr``; measured in docs/training.md).

:func:`presence` picks exact when it needs at most ``exact_limit`` rows per image and
sampling otherwise. ``tests/test_presence.py`` checks exact against a brute-force sum over
all complete paths, and sampling against exact.

``step`` is the model's one-step decoder (``rnn.model.make_step``, ``baselines.no_rnn.make_step``;
its contract is in ``model.make_step``); K is read from the width of its output and the
allowed outputs come from ``grammar.py``. Shapes: n images, K labels, S samples, R rows.
"""

import math

import numpy as np

from minicnnrnn.core import backend
from minicnnrnn.core.backend import xp
from minicnnrnn.paths import decisions, grammar, tokens

DEFAULT_SAMPLES = 100
DEFAULT_EXACT_LIMIT = 500  # model rows per image below which exact enumeration is used
_ROWS = decisions._ROWS  # model rows evaluated together (bounds memory)


def n_prefixes(K, max_labels):
    """Model rows per image of :func:`exact_presence`: prefixes of 0 .. max_labels - 1 labels,
    sum_t K! / (K - t)!."""
    total, count = 0, 1
    for t in range(max_labels):
        total += count
        count *= K - t
    return total


def exact_presence(step, n, max_labels=None, min_labels=0):
    """P(l in path) of every label, by enumerating all prefixes (module docstring).

    step: the one-step decoder of n images. Returns (n, K) float64 host array.
    Rows: :func:`n_prefixes` per image; images are processed in blocks of at most
    ``_ROWS`` rows per step.
    """
    K = tokens.n_labels_of_step(step)
    L = grammar.longest_path(K, max_labels)
    out = np.zeros((n, K))
    per_image = max(1, math.factorial(K) // math.factorial(K - max(L - 1, 0)))  # prefixes at the widest depth
    block = max(1, _ROWS // per_image)
    for s in range(0, n, block):
        out[s : s + block] = _exact_block(step, xp.arange(s, min(s + block, n)), K, L, min_labels)
    return out


def _exact_block(step, images, K, L, min_labels):
    n = images.shape[0]
    presence = xp.zeros((n, K), dtype=xp.float64)
    owner = images  # image of each prefix row (sorted)
    logp = xp.zeros(n, dtype=xp.float64)  # log P(prefix)
    used = xp.zeros((n, K), dtype=bool)
    prev, state = None, None  # None: the step feeds START
    for t in range(L):  # prefixes of t labels; at t == L only END is left
        lp, state = step(prev, state, owner)
        lp = grammar.allowed_log_probs(lp.astype(xp.float64), used, t, L, min_labels)
        joint = logp[:, None] + lp[:, :K]  # log P(prefix, next = l)
        # every image has the same number of prefixes, its rows are consecutive
        presence += xp.exp(joint).reshape(n, -1, K).sum(axis=1)
        if t + 1 == L:
            break
        rows, labels = xp.nonzero(joint > -np.inf)  # children: every allowed label
        owner, logp = owner[rows], joint[rows, labels]
        used = used[rows]
        used[xp.arange(rows.size), labels] = True
        prev = labels
        state = tuple(a[rows] for a in state)
    return backend.to_host(presence)


def sampled_presence(step, n, max_labels=None, min_labels=0, samples=100, seed=0):
    """Rao-Blackwellised ancestral-sampling estimate of P(l in path) (module docstring).

    step: the one-step decoder of n images; samples: S paths per image; seed: the host generator's
    seed (the same seed gives the same numbers on every backend, to float rounding). The
    sampling loop is ``decisions.sampled_blocks`` (``sample_paths_shared``), shared with
    the expected-F1 decision.
    Returns (presence (n, K), stderr (n, K)) float64 host arrays.
    """
    K = tokens.n_labels_of_step(step)
    mean, stderr = np.zeros((n, K)), np.zeros((n, K))
    for images, samples_of_block in decisions.sampled_blocks(step, n, max_labels, min_labels, samples, seed):
        mean[images], stderr[images] = decisions.mean_and_stderr(samples_of_block.presence_sums)
    return mean, stderr


def presence(step, n, max_labels=None, min_labels=0, samples=None, seed=0, exact_limit=None):
    """P(l in path | I) of every label for a block of images, exact where cheap.

    step: the model's one-step decoder of the n images (``model.make_step``); max_labels:
    longest path (None: K); min_labels: shortest path; samples: S for sampling (None:
    ``DEFAULT_SAMPLES``); seed: sampling seed; exact_limit: enumerate when
    :func:`n_prefixes` is at most this (None: ``DEFAULT_EXACT_LIMIT``).
    Returns (presence (n, K) float64 host, stderr (n, K) host (zeros when exact), method
    "exact" or "sampled").
    """
    K = tokens.n_labels_of_step(step)
    L = grammar.longest_path(K, max_labels)
    limit = DEFAULT_EXACT_LIMIT if exact_limit is None else exact_limit
    if n_prefixes(K, L) <= limit:
        p = exact_presence(step, n, L, min_labels)
        return p, np.zeros_like(p), "exact"
    S = DEFAULT_SAMPLES if samples is None else int(samples)
    p, err = sampled_presence(step, n, L, min_labels, S, seed)
    return p, err, "sampled"
