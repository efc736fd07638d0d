"""Decisions from the model's own path distribution: which labels to predict for an image.

The CNN-RNN defines a distribution over label paths (Eq. 6). §3.3 predicts its most
probable path (beam search), which is the best guess of the *whole* set: it minimises the
expected 0/1 loss on the set. Two other decisions use the same distribution for other
losses (docs/inference.md, "Which labels to predict"):

* **marginal top-k** (:func:`top_k_marginal`): the k labels of highest
  ``P(l in path | I)`` (``paths/presence.py``). By linearity of expectation the expected
  number of correct labels of a set A is ``sum_{l in A} P(l in path)``, so at a fixed size
  k these k labels maximise it (minimum Bayes risk for that gain)::

      argmax_{|A| = k} E[|A ∩ Y|] = top-k of P(l in Y)

* **expected F1** (:func:`expected_f1_sets`): the set A that maximises ``E_Y[F1(A, Y)]``
  with ``F1(A, Y) = 2 |A ∩ Y| / (|A| + |Y|)``, its size chosen per image. Estimated from S
  paths y_1 .. y_S drawn from the model (:func:`sample_paths`)::

      E[F1(A, Y)] ~ (1/S) sum_s 2 |A ∩ y_s| / (m + |y_s|)         (|A| = m)
                  = sum_{l in A} w_l(m),   w_l(m) = (1/S) sum_s 2 [l in y_s] / (m + |y_s|)

  For a fixed size m the sum is linear in the labels, so the best set of size m is the top
  m of w(m); the decision keeps the m whose set has the largest estimate. (The empty set:
  ``F1(∅, ∅) = 1`` and ``F1(∅, Y) = 0`` otherwise, so its expected F1 is the share of empty
  sampled paths; it competes like every other size when ``min_size`` is 0.)

Both marginals and F1 decisions come from the same samples (:func:`sampled_marginals`), so
a ranking and the set it ranks never disagree by sampling noise.

**The step protocol.** Decoders here know no model; they call the one-step decoder
``step(prev_tokens or None, state, rows) -> (log_probs (R, K + 1), state)`` of
``rnn.model.make_step`` (its contract is there; ``baselines.no_rnn.make_step`` is another).
Shapes: n images, S sampled paths per image, K labels, R rows, L longest path.

**Cost.** The plain sampler evaluates the step on S x (path length + 1) rows per image,
each row (K + 1) wide; the one that runs (:func:`sample_paths_shared`) evaluates it once per
distinct prefix: a peaked distribution sends most of an image's S paths along the same few
prefixes, so far fewer rows than S per image. Images are sampled in blocks of at most
:func:`block_images` so that one block's (rows, K) arrays stay within ``_ELEMENTS`` entries
whatever K is, and the path
length is bounded by L (``RunConfig.max_path``: the longest training path plus a margin,
docs/limits.md), so neither memory nor time grows with K beyond what the data needs.
"""

import collections
import math

import numpy as np

from minicnnrnn.core import backend, ranking
from minicnnrnn.core.backend import xp
from minicnnrnn.paths import grammar, tokens

_ROWS = 16384  # sampled rows evaluated together at most
_ELEMENTS = 1 << 22  # at most this many (row, output) entries per block: 32 MB per float64 array

PathSamples = collections.namedtuple("PathSamples", "presence_sums sets")
Marginals = collections.namedtuple("Marginals", "presence stderr f1_sets expected_f1")


# ---------------------------------------------------------------------------
# Marginal top-k
# ---------------------------------------------------------------------------


def top_k_marginal(presence, k):
    """The k labels of highest P(l in path | I) of every image, most probable first.

    presence: (n, K) host array (``presence.presence``); k: the label budget (``--k``).
    Returns (n, min(k, K)) int64 label indices; ties go to the lower label (a stable sort),
    so the result is deterministic. The top k maximise the expected number of correct
    labels among sets of size k (module docstring).
    """
    presence = np.asarray(presence)
    return ranking.top_k(presence, int(k))


def ordered_labels(pred01, presence):
    """A 0/1 set per image as label lists, most probable label first (for printing a set).

    pred01: (n, K) 0/1; presence: (n, K) the order. Returns (labels (n, M) int64 padded with
    -1, M the largest set, lengths (n,) int64).
    """
    pred01 = np.asarray(pred01).astype(bool)
    lengths = pred01.sum(axis=1).astype(np.int64)
    order = ranking.stable_argsort(np.where(pred01, -np.asarray(presence, dtype=np.float64), np.inf))
    labels = order[:, : int(lengths.max(initial=0))].copy()
    labels[np.arange(labels.shape[1])[None, :] >= lengths[:, None]] = -1
    return labels, lengths


# ---------------------------------------------------------------------------
# Expected F1 from sampled paths
# ---------------------------------------------------------------------------


def expected_f1_sets(sampled_sets, max_size=None, min_size=0):
    """Per image, the label set that maximises the expected F1 under S sampled paths.

    sampled_sets: (n, S, K) bool, the labels on each sampled path (:func:`sample_paths`);
    max_size: largest set considered (None: K); min_size: smallest (0 lets the empty set
    compete, module docstring). Returns (pred01 (n, K) uint8, expected_f1 (n,) float64,
    the estimate of E[F1] of the chosen set). Among sizes with the same estimate the smaller
    wins; within a size, ties go to the lower label. Cost: one sort of K per size per image.
    """
    y = np.asarray(sampled_sets).astype(bool)
    n, S, K = y.shape
    M = K if max_size is None else min(int(max_size), K)
    if not 0 <= min_size <= M:
        raise ValueError(f"need 0 <= min_size <= max_size, got {min_size} and {M}")
    sizes = y.sum(axis=2)  # (n, S) |y_s|
    # The weight of sample s depends on it only through |y_s|: gather the labels of the
    # samples of each size c once, counts[i, c, l] = #{s : |y_s| = c, l in y_s}.
    C = int(sizes.max(initial=0))
    by_size = (sizes[:, :, None] == np.arange(C + 1)).astype(np.float64)  # (n, S, C + 1)
    counts = np.einsum("nsc,nsk->nck", by_size, y.astype(np.float64))
    best = np.zeros((n, K), dtype=np.uint8)
    # m = 0: F1(∅, ∅) = 1, F1(∅, y) = 0 for a non-empty y
    best_f1 = (sizes == 0).mean(axis=1) if min_size == 0 else np.full(n, -np.inf)
    for m in range(max(min_size, 1), M + 1):
        w = counts.transpose(0, 2, 1) @ (2.0 / (S * (m + np.arange(C + 1))))  # (n, K) w_l(m)
        top = ranking.top_k(w, m)
        f1 = np.take_along_axis(w, top, axis=1).sum(axis=1)
        better = f1 > best_f1  # strict: an equal estimate keeps the smaller set
        best_f1 = np.where(better, f1, best_f1)
        best[better] = 0
        rows = np.nonzero(better)[0]
        best[rows[:, None], top[rows]] = 1
    return best, best_f1


# ---------------------------------------------------------------------------
# Sampling paths (ancestral, with the decoder's grammar)
# ---------------------------------------------------------------------------


def block_images(samples, K):
    """Images sampled together: their S rows each of K + 1 outputs fit in ``_ELEMENTS``
    entries and ``_ROWS`` rows (at least one image)."""
    rows = min(_ROWS, _ELEMENTS // (K + 1))
    return max(1, rows // int(samples))


def draw(p, cdf, u):
    """One output per row by inverse-CDF sampling: the first output whose cumulative
    probability reaches ``u`` times the row's total.

    p: (R, K + 1) the allowed next outputs' probabilities (0 where forbidden); cdf: (R, K + 1)
    their running sums along the row; u: (R,) uniforms in [0, 1). Returns (R,) int indices.
    """
    nxt = xp.minimum((cdf < (u * cdf[:, -1])[:, None]).sum(axis=1), p.shape[1] - 1)
    # a zero-probability output can never be drawn: step past it to the most probable one
    return xp.where(p[xp.arange(nxt.size), nxt] > 0, nxt, xp.argmax(p, axis=1))


def sample_paths(step, K, images, samples, rng, max_labels=None, min_labels=0):
    """S ancestral samples of the path of each image (Eq. 6, under the decoder's grammar).

    step: the protocol of the module docstring; K: labels; images: (n,) host int, the rows'
    image indices; samples: S; rng: a host ``numpy.random.Generator`` (uniforms drawn on the
    host, one per row and step whether the row is alive or not, so every backend draws the
    same paths and one block's draws do not depend on another's lengths); max_labels: longest
    path L (None: K); min_labels: shortest path.
    Returns PathSamples(presence_sums (n, S, K) float64 host, the Rao-Blackwell sum
    ``sum_t P(l | prefix_t)`` of each path (``paths/presence.py``); sets (n, S, K) bool host,
    the labels on each path).
    """
    L = grammar.longest_path(K, max_labels)
    END = tokens.end_token(K)
    n, S = len(images), int(samples)
    R = n * S
    owner = backend.to_device(np.repeat(np.asarray(images, dtype=np.int64), S))  # image of each row
    per_path = xp.zeros((R, K), dtype=xp.float64)
    alive = xp.arange(R)  # rows whose path has not ended
    used = xp.zeros((R, K), dtype=bool)  # labels on each path so far
    prev, state = None, None  # None: the step feeds START
    for t in range(L + 1):
        u = backend.to_device(rng.random(R))  # drawn for every row, alive or not: fixed stream
        if alive.size == 0:
            continue
        lp, state = step(prev, state, owner[alive])
        p = xp.exp(grammar.allowed_log_probs(lp.astype(xp.float64), used[alive], t, L, min_labels))
        per_path[alive] += p[:, :K]
        nxt = draw(p, xp.cumsum(p, axis=1), u[alive])
        keep = xp.nonzero(nxt != END)[0]
        alive, prev = alive[keep], nxt[keep]
        used[alive, prev] = True
        state = tuple(a[keep] for a in state)
    return PathSamples(backend.to_host(per_path).reshape(n, S, K), backend.to_host(used).reshape(n, S, K))


def sample_paths_shared(step, K, images, samples, rng, max_labels=None, min_labels=0):
    """The fast version of :func:`sample_paths`: the same draws, the step evaluated once per
    distinct prefix instead of once per row.

    Two sampled paths of an image that share their prefix share the state the step computes
    from it, so the step (three matrix products per row) only needs one row per *node*, a
    distinct (image, prefix), and each path reads its node's probabilities. At the first
    step the S paths of an image are one node (the empty prefix); later the nodes are the
    distinct (parent node, sampled label) pairs, far fewer than the n * S paths while the
    distribution is peaked. The uniforms, the grammar and the per-path sums are those of
    :func:`sample_paths`, so both return the same samples up to float32 rounding: a BLAS may
    add up a product of a few rows in another order than one of many rows, so the
    probabilities can differ in their last bits (and a draw that falls exactly on a boundary
    could differ; ``tests/test_decisions.py`` checks that the sets agree and the sums agree to
    float32 rounding). The built-in main job writes the same ``metrics.json`` with either.
    """
    L = grammar.longest_path(K, max_labels)
    END = tokens.end_token(K)
    n, S = len(images), int(samples)
    R = n * S
    per_path = xp.zeros((R, K), dtype=xp.float64)
    used = xp.zeros((R, K), dtype=bool)
    alive = xp.arange(R)  # rows whose path has not ended
    node_of = xp.repeat(xp.arange(n), S)  # node of each alive row; the empty prefix: one per image
    node_image = backend.to_device(np.asarray(images, dtype=np.int64))  # (nodes,) image of each node
    node_used = xp.zeros((n, K), dtype=bool)  # labels on each node's prefix
    node_token, node_state = None, None  # None: the step feeds START
    for t in range(L + 1):
        u = backend.to_device(rng.random(R))  # the same stream as sample_paths
        if alive.size == 0:
            continue
        lp, node_state = step(node_token, node_state, node_image)
        node_p = xp.exp(grammar.allowed_log_probs(lp.astype(xp.float64), node_used, t, L, min_labels))
        node_cdf = xp.cumsum(node_p, axis=1)
        p, cdf = node_p[node_of], node_cdf[node_of]  # each path reads its node's row
        per_path[alive] += p[:, :K]
        nxt = draw(p, cdf, u[alive])
        keep = xp.nonzero(nxt != END)[0]
        alive, prev = alive[keep], nxt[keep]
        used[alive, prev] = True
        # the next nodes: the distinct (node, label) pairs of the paths that go on
        pairs, node_of = xp.unique(node_of[keep] * (K + 1) + prev, return_inverse=True)
        node_of = node_of.reshape(-1)  # (some NumPy versions return the inverse with the key's shape)
        parent, node_token = pairs // (K + 1), pairs % (K + 1)
        node_image, node_used = node_image[parent], node_used[parent]
        node_used[xp.arange(parent.size), node_token] = True
        node_state = tuple(a[parent] for a in node_state)
    return PathSamples(backend.to_host(per_path).reshape(n, S, K), backend.to_host(used).reshape(n, S, K))


def sampled_blocks(step, n, max_labels=None, min_labels=0, samples=100, seed=0):
    """The samples of n images, a block at a time: yields (images (b,) host int, PathSamples).

    One host generator seeded by ``seed`` draws every block in turn, so the samples depend
    on the seed, n and the block size (:func:`block_images`) only; ``presence.sampled_presence``
    and :func:`sampled_marginals` read the same samples."""
    K = tokens.n_labels_of_step(step)
    L = grammar.longest_path(K, max_labels)
    rng = np.random.default_rng(seed)
    block = block_images(samples, K)
    for s in range(0, n, block):
        images = np.arange(s, min(s + block, n))
        yield images, sample_paths_shared(step, K, images, samples, rng, L, min_labels)


def mean_and_stderr(presence_sums):
    """P(l in path) and its standard error from the per-path sums (b, S, K) of one block:
    (mean (b, K), stderr (b, K); zeros when S = 1)."""
    S = presence_sums.shape[1]
    mean = presence_sums.mean(axis=1)
    sd = presence_sums.std(axis=1, ddof=1) if S > 1 else np.zeros_like(mean)
    return mean, sd / math.sqrt(S)


def sampled_marginals(step, n, samples=100, seed=0, max_labels=None, min_labels=0, f1_max_size=None, f1_min_size=None):
    """P(l in path), its standard error and the expected-F1 sets of n images, from one set of samples.

    step: the protocol above, over n images; samples: S paths per image; seed: the host
    generator's seed; max_labels, min_labels: the path grammar; f1_max_size, f1_min_size:
    the set sizes :func:`expected_f1_sets` considers (None: max_labels (K) and min_labels).
    The presence equals ``presence.sampled_presence`` with the same seed, bit for bit (the
    same :func:`sampled_blocks`).
    Returns Marginals(presence (n, K), stderr (n, K), f1_sets (n, K) uint8, expected_f1 (n,)),
    all float64 / uint8 host arrays.
    """
    K = tokens.n_labels_of_step(step)
    L = grammar.longest_path(K, max_labels)
    max_size = L if f1_max_size is None else f1_max_size
    min_size = min_labels if f1_min_size is None else f1_min_size
    out = Marginals(np.zeros((n, K)), np.zeros((n, K)), np.zeros((n, K), np.uint8), np.zeros(n))
    for images, (sums, sets) in sampled_blocks(step, n, L, min_labels, samples, seed):
        out.presence[images], out.stderr[images] = mean_and_stderr(sums)
        out.f1_sets[images], out.expected_f1[images] = expected_f1_sets(sets, max_size, min_size)
    return out
