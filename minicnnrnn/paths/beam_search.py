"""Inference of the CNN-RNN (§3.3): beam search for the most probable prediction path.

A prediction path is a sequence of distinct labels closed by END. Its probability is
the product of the model's step probabilities (Eq. 6)::

    P(l_1, ..., l_k, END | I) = P(l_1 | I) P(l_2 | I, l_1) ... P(END | I, l_1, ..., l_k)

where each factor is the softmax of the Eq. 5 scores over the K + 1 outputs (labels and
END). We work with log-probabilities, so the product becomes a sum.

The search (Fig. 5), for every image at once:

* ``S`` holds the *intermediate paths*: at most B (the beam size) paths that have not ended yet
  (Eq. 7), with their log-probabilities. At the start it holds the empty path.
* One step: every path in ``S`` is fed to the model (its last label, or START at
  the first step) and expanded with its B most probable *allowed* next outputs, giving
  up to B x B paths. Allowed means: a label already on the path is masked (a label
  never appears twice); END is masked while the path has fewer than ``min_labels``
  labels (footnote 1); every label is masked once the path has ``max_labels`` labels,
  so END is the only way on. START is never an output.
* Expansions that end with END go to the *candidate set* ``C`` (only its best member
  matters, so that is all we keep). The B most probable of the other expansions form
  the new ``S``.
* **Stopping rule.** Let ``best_C`` be the log-probability of the best candidate found
  so far (-inf before the first) and ``best_S`` that of the most probable path in ``S``.
  An image stops as soon as ``best_S <= best_C`` (this includes ``S`` empty, -inf). Each
  further step multiplies a path's probability by a factor <= 1, so no extension of any
  path in ``S`` can beat ``best_C`` any more, and the answer is the best candidate.
  The paper says: stop when "the probability of the current intermediate paths is
  smaller than that of all the candidate paths"; any candidate found after our stop
  would be no better than ``best_C``, so both readings return the same path, ours
  just stops sooner.

Exactness: with a beam B at least as large as the number of possible paths, nothing is
ever pruned (every path is expanded with all K + 1 outputs and all expansions fit into
``S``), and the stopping rule only discards paths that cannot win, so the result is the
exhaustive argmax of Eq. 6 (``tests/test_beam_search.py`` checks this against an
enumeration of all paths). B = 1 is greedy decoding: take the most probable allowed
output at every step.

Per-label confidence scores (for AP and MAP@10, which rank all K labels): a label on
the returned path scores ``EMITTED_OFFSET + p`` where ``p`` is its step probability
on that path; any other label scores the highest single-step probability it got in
any live intermediate path during the search of that image (at least its first-step
probability ``P(l | I)``). Probabilities are at most 1 and the offset is 2, so every
emitted label outranks every non-emitted one, even when a step probability underflows.

How this file reads: :func:`beam_search_plain` is the search above written for one image,
with Python lists of paths; :func:`beam_search` is the fast version that every command runs,
and ``tests/test_beam_search.py`` checks that both return the same paths. Its layout: all
images are searched together (in batches of ``batch_size`` images, to bound
memory). The paths of the A images still searching are an (A, width) grid (width = B after the
first step), and the model runs on all A * width rows in one call per step; images that meet
the stopping rule leave the grid. The search knows no model: it calls a one-step decoder
``step`` (``rnn.model.make_step`` for the CNN-RNN, ``baselines.no_rnn.make_step`` for the
no-RNN baseline), reads K from the width of its output, and takes the allowed next outputs
from ``grammar.py``. Nothing here loops over images in Python;
the loops are over time steps and over the picks of the top-B.
"""

import collections

from minicnnrnn.core import backend
from minicnnrnn.core.backend import xp
from minicnnrnn.paths import grammar
from minicnnrnn.paths.tokens import end_token

EMITTED_OFFSET = 2.0
# Images searched together: bounds memory, and on the CPU keeps a step's arrays small enough
# to stay in cache (512 was fastest in benchmarks/bench_beam.py); a GPU wants more rows per call.
DEFAULT_BATCH = {"numpy": 512, "cupy": 8192}

NEG_INF = grammar.NEG_INF

BeamResult = collections.namedtuple(
    "BeamResult", ["paths", "lengths", "log_prob", "step_log_probs", "confidence", "step_rows"]
)
BeamResult.__doc__ = """What :func:`beam_search` returns for n images (arrays on the backend).

paths: (n, L) int64, the labels of each best path in order, padded with -1;
lengths: (n,) int64, the number of labels on each path;
log_prob: (n,) log P of the whole path, END included (Eq. 6);
step_log_probs: (n, L + 1) log-probabilities of each step of the path: entries
    0 .. lengths-1 are the labels', entry ``lengths`` is END's, the rest 0;
confidence: (n, K) the beam's per-label confidences (module docstring);
step_rows: int, how many model rows (path x step) were evaluated, for FLOP counts.
"""


def beam_search_plain(step, beam_size=3, max_labels=None, min_labels=0):
    """§3.3 for one image, as the module docstring describes it: the readable version.

    step: a one-step decoder made for one image (``model.make_step(params, I[None], variant)``);
    the other arguments as in :func:`beam_search`. Returns (labels, log_prob): the best path's
    labels as a tuple of ints, in order, and its log P with END (Eq. 6). :func:`beam_search`
    gives the same path for every image.
    """
    row = xp.zeros(1, dtype=xp.int64)  # the one image
    S = [((), 0.0, None)]  # intermediate paths: (labels, log P, model state)
    best = ((), NEG_INF)  # the best candidate of C
    while S:  # every path in S has the same number of labels
        expansions = []
        for labels, logp, state in S:
            prev = xp.asarray(labels[-1:]) if labels else None  # None: the step feeds START
            lp, new_state = step(prev, state, row)
            lp = backend.to_host(lp[0])  # (K + 1,) log-probabilities of the next output
            K = lp.shape[0] - 1
            L = grammar.check_options(K, beam_size, max_labels, min_labels)
            allowed = [j for j in range(K + 1) if grammar.may_follow(j, labels, K, L, min_labels)]
            # Each path is expanded with its B most probable allowed outputs (ties: lowest token).
            for j in sorted(allowed, key=lambda j: (-lp[j], j))[:beam_size]:
                expansions.append((labels, j, logp + float(lp[j]), new_state))
        for labels, j, total, _ in expansions:  # ended paths go to C
            if j == K and total > best[1]:
                best = (labels, total)
        going_on = [(labels + (j,), total, state) for labels, j, total, state in expansions if j != K]
        S = sorted(going_on, key=lambda path: -path[1])[:beam_size]  # stable: ties keep their order
        if S and S[0][1] <= best[1]:  # stopping rule: nothing in S can beat the best candidate
            break
    return best


# ---------------------------------------------------------------------------
# The fast version: every image at once, on arrays.
# ---------------------------------------------------------------------------


def beam_search(step, n, beam_size=3, max_labels=None, min_labels=0, batch_size=None):
    """Most probable prediction path of each image (Eq. 6), by beam search (§3.3).

    step: the model's one-step decoder for n images, ``step(prev_tokens, state, rows) ->
    (log_probs (R, K + 1), state)`` (``rnn.model.make_step``, ``baselines.no_rnn.make_step``;
    the contract is in ``model.make_step``); n: the number of images;
    beam_size: B, paths kept per step (1 = greedy); max_labels: longest path, default K;
    min_labels: END is not allowed before this many labels (footnote 1);
    batch_size: images searched together (default ``DEFAULT_BATCH`` of the backend).
    Returns a :class:`BeamResult` (the search is described in the module docstring).
    """
    batch_size = batch_size or DEFAULT_BATCH[backend.name()]
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    parts = [
        _search(step, xp.arange(s, min(s + batch_size, n)), int(beam_size), max_labels, min_labels)
        for s in range(0, max(n, 1), batch_size)
    ]
    if len(parts) == 1:
        return parts[0]
    return BeamResult(*[xp.concatenate(field) for field in list(zip(*parts))[:-1]], sum(p.step_rows for p in parts))


def _top_outputs(lp, m):
    """The m most probable outputs of every row, best first (ties: lowest token).

    lp: (A, width, K + 1) masked log-probabilities (-inf = not allowed); it is overwritten.
    Returns (tokens (A, width, m), log-probs (A, width, m)). m repeated argmaxes beat a
    partial sort by far when m is small (the beam) and K + 1 large (the outputs).
    With m == K + 1 every output is kept, so they come back in token order, unsorted.
    """
    A, width, n_out = lp.shape
    if m == n_out:
        return xp.broadcast_to(xp.arange(n_out), lp.shape), lp
    flat = lp.reshape(A * width, n_out)
    rows = xp.arange(A * width)
    tokens, values = [], []
    for _ in range(m):
        j = flat.argmax(axis=1)
        tokens.append(j)
        values.append(flat[rows, j])
        flat[rows, j] = NEG_INF  # a taken output is not picked again
    return (xp.stack(tokens, axis=1).reshape(A, width, m), xp.stack(values, axis=1).reshape(A, width, m))


def _argsort_stable(a):
    """argsort along the last axis, ties kept in index order (CuPy's sort is always stable)."""
    return xp.argsort(a, axis=-1) if backend.is_cupy() else xp.argsort(a, axis=-1, kind="stable")


def _search(step, images, B, max_labels, min_labels):
    """Beam search for one batch of images (arguments as in :func:`beam_search`).

    images: (n,) the ids of this batch's images (the ``rows`` the step knows them by);
    B: beam size; max_labels, min_labels: the path lengths allowed (``grammar.py``).
    """
    n = images.shape[0]
    lp, state = step(None, None, images)  # the first step of every image, from START
    step_rows = n
    K = lp.shape[1] - 1  # the step's output width: the K labels and END
    L = grammar.check_options(K, B, max_labels, min_labels)
    END = end_token(K)
    M = min(B, K + 1)  # next outputs tried per path
    dt = lp.dtype

    # The best candidate of C for every image, and the confidences seen so far.
    best_logp = xp.full((n,), NEG_INF, dtype=dt)
    best_path = xp.full((n, L), -1, dtype=xp.int64)
    best_len = xp.zeros((n,), dtype=xp.int64)
    best_steps = xp.zeros((n, L + 1), dtype=dt)
    seen = xp.full((n, K), NEG_INF, dtype=dt)  # best step log-prob of each label

    # S for the images still searching: act (A,) image positions, a grid of A x width paths.
    act = xp.arange(n)
    logp = xp.zeros((n, 1), dtype=dt)  # log P of each path so far
    path = xp.full((n, 1, L), -1, dtype=xp.int64)  # its labels (an empty slot, log P -inf, may hold END)
    steps = xp.zeros((n, 1, L + 1), dtype=dt)  # its step log-probs
    prev = None  # each path's last label, fed at the next step

    for t in range(L + 1):  # t labels on every path in S
        A, width = logp.shape
        if A == 0:
            break
        if t:
            lp, state = step(prev, state, xp.repeat(images[act], width))
            step_rows += A * width
        lp = lp.reshape(A, width, K + 1)
        lp = grammar.forbid_taken(lp, path, t)  # no label twice
        lp = grammar.forbid(lp, None, t, L, min_labels)
        lp[logp == NEG_INF] = NEG_INF  # empty beam slots never produce a path
        seen[act] = xp.maximum(seen[act], lp.max(axis=1)[:, :K])  # (a contiguous reduction, then the labels)

        # Expand every path with its M most probable allowed outputs: A x (width * M) paths.
        nxt, nxt_lp = _top_outputs(lp, M)
        nxt, nxt_lp = nxt.reshape(A, width * M), nxt_lp.reshape(A, width * M)
        total = xp.repeat(logp, M, axis=1) + nxt_lp  # Eq. 6, in logs
        ends = nxt == END

        # Paths ending with END are candidates: keep each image's best one.
        end_total = xp.where(ends, total, NEG_INF)
        j = end_total.argmax(axis=1)
        rows = xp.arange(A)
        better = xp.nonzero(end_total[rows, j] > best_logp[act])[0]
        if better.size:
            ids, jb = act[better], j[better]
            best_logp[ids] = end_total[better, jb]
            best_len[ids] = t
            best_path[ids] = path[better, jb // M]
            new_steps = steps[better, jb // M]
            new_steps[:, t] = nxt_lp[better, jb]
            best_steps[ids] = new_steps

        # The B most probable paths that go on form the next S, best first.
        go_total = xp.where(ends, NEG_INF, total)
        sel = _argsort_stable(-go_total)[:, :B]
        new_logp = xp.take_along_axis(go_total, sel, axis=1)

        # Stopping rule: an image goes on only while its best path in S beats best_C.
        keep = xp.nonzero(new_logp[:, 0] > best_logp[act])[0]
        if keep.size == 0:  # always so after t == L: only END was allowed
            break
        sel, kk = sel[keep], keep[:, None]
        parent = sel // M
        label = nxt[kk, sel]
        path = path[kk, parent]
        path[:, :, t] = label
        steps = steps[kk, parent]
        steps[:, :, t] = nxt_lp[kk, sel]
        logp = new_logp[keep]
        state = tuple(s[(kk * width + parent).reshape(-1)] for s in state)
        prev = label.reshape(-1)
        act = act[keep]

    confidence = xp.exp(seen)
    img_idx, pos = xp.nonzero(xp.arange(L)[None, :] < best_len[:, None])
    confidence[img_idx, best_path[img_idx, pos]] = EMITTED_OFFSET + xp.exp(best_steps[img_idx, pos])
    return BeamResult(best_path, best_len, best_logp, best_steps, confidence, step_rows)
