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
memory). The paths of the A images still searching are an (A, W) grid (W = B after the
first step), and the model runs on all A * W rows in one call per step; images that meet
the stopping rule leave the grid. The image term ``I @ U_I_x + b_x`` of Eq. 4 is computed
once per image (``projection.image_and_bias``). Nothing here loops over images in Python;
the loops are over time steps and over the picks of the top-B.
"""

import collections

from minicnnrnn.core import backend
from minicnnrnn.core.backend import xp
from minicnnrnn.core.errors import UserError
from minicnnrnn.layers import loss
from minicnnrnn.rnn import embedding, lstm, projection
from minicnnrnn.rnn.tokens import end_token, start_token

EMITTED_OFFSET = 2.0
# Images searched together: bounds memory, and on the CPU keeps a step's arrays small enough
# to stay in cache (512 was fastest in benchmarks/bench_beam.py); a GPU wants more rows per call.
DEFAULT_BATCH = {"numpy": 512, "cupy": 8192}

NEG_INF = float("-inf")

BeamResult = collections.namedtuple(
    "BeamResult", ["paths", "lengths", "log_prob", "step_log_probs", "scores", "step_rows"]
)
BeamResult.__doc__ = """What :func:`beam_search` returns for n images (arrays on the backend).

paths: (n, L) int64, the labels of each best path in order, padded with -1;
lengths: (n,) int64, the number of labels on each path;
log_prob: (n,) log P of the whole path, END included (Eq. 6);
step_log_probs: (n, L + 1) log-probabilities of each step of the path: entries
    0 .. lengths-1 are the labels', entry ``lengths`` is END's, the rest 0;
scores: (n, K) per-label confidences (module docstring);
step_rows: int, how many model rows (path x step) were evaluated, for FLOP counts.
"""


def cnn_rnn_step(params, tokens, state, image, variant="relu"):
    """One step of the CNN-RNN for R rows at once (Eq. 2, 1, 4, 5 and the softmax).

    tokens: (R,) int, the previous label of each row (START at the first step);
    state: None at the first step (r(0) = 0), else the tuple ``(r,)`` with r: (R, H);
    image: (R, E) the precomputed image term ``I @ U_I_x + b_x`` of each row's image
    (``projection.image_and_bias``).
    Returns (log_probs (R, K + 1), state) with the new state ``(r,)``.
    """
    U_l = params["U_l"]
    w, _ = embedding.embed_forward(tokens, U_l)  # Eq. 2
    r_prev = xp.zeros((w.shape[0], params["U_r"].shape[0]), dtype=w.dtype) if state is None else state[0]
    (o, r), _ = lstm.lstm_step_forward(w, r_prev, params, variant)  # Eq. 1
    x, _ = projection.projection_forward(o, None, params, image=image)  # Eq. 4
    s, _ = embedding.tied_scores_forward(x, U_l, U_l.shape[0] - 1)  # Eq. 5
    return loss.log_softmax(s), (r,)


def check_options(K, beam_size, max_labels=None, min_labels=0):
    """Validate the search options; returns the effective maximum path length L <= K."""
    if int(beam_size) != beam_size or beam_size < 1:
        raise UserError(f"--beam: must be a positive integer, got {beam_size}")
    L = K if max_labels is None else int(max_labels)
    if not 1 <= L <= K:
        raise UserError(f"--max-labels: must be between 1 and K = {K}, got {max_labels}")
    if not 0 <= min_labels <= L:
        raise UserError(f"--min-labels: must be between 0 and the maximum length {L}, got {min_labels}")
    return L


def beam_search_plain(params, I, beam_size=3, max_labels=None, min_labels=0, variant="relu", step_fn=None):
    """§3.3 for one image, as the module docstring describes it: the readable version.

    I: (D,) the CNN feature of one image; the other arguments as in :func:`beam_search`.
    Returns (labels, log_prob): the best path's labels as a tuple of ints, in order, and
    its log P with END (Eq. 6). :func:`beam_search` gives the same path for every image.
    """
    K = params["U_l"].shape[0] - 2
    L = check_options(K, beam_size, max_labels, min_labels)
    step_fn = step_fn or cnn_rnn_step
    END, START = end_token(K), start_token(K)
    image = projection.image_and_bias(I[None, :], params)  # (1, E): Eq. 4's image term, once
    S = [((), 0.0, None)]  # intermediate paths: (labels, log P, model state)
    best = ((), NEG_INF)  # the best candidate of C
    for t in range(L + 1):  # t labels on every path in S
        expansions = []
        for labels, logp, state in S:
            token = labels[-1] if labels else START
            lp, new_state = step_fn(params, xp.asarray([token]), state, image, variant)
            lp = backend.to_host(lp[0])  # (K + 1,) log-probabilities of the next output
            allowed = [
                j for j in range(K + 1) if (j == END and t >= min_labels) or (j != END and t < L and j not in labels)
            ]
            # Each path is expanded with its B most probable allowed outputs (ties: lowest token).
            for j in sorted(allowed, key=lambda j: (-lp[j], j))[:beam_size]:
                expansions.append((labels, j, logp + float(lp[j]), new_state))
        for labels, j, total, _ in expansions:  # ended paths go to C
            if j == END and total > best[1]:
                best = (labels, total)
        going_on = [(labels + (j,), total, state) for labels, j, total, state in expansions if j != END]
        S = sorted(going_on, key=lambda path: -path[1])[:beam_size]  # stable: ties keep their order
        if not S or S[0][1] <= best[1]:  # stopping rule: nothing in S can beat the best candidate
            break
    return best


# ---------------------------------------------------------------------------
# The fast version: every image at once, on arrays.
# ---------------------------------------------------------------------------


def beam_search(params, I, beam_size=3, max_labels=None, min_labels=0, variant="relu", step_fn=None, batch_size=None):
    """Most probable prediction path of each image (Eq. 6), by beam search (§3.3).

    params: model parameters on the backend (``U_l (K + 2, E)``, ``U_I_x (D, E)``, ... and
    whatever ``step_fn`` reads); I: (n, D) CNN features on the backend.
    beam_size: B, paths kept per step (1 = greedy); max_labels: longest path, default K;
    min_labels: END is not allowed before this many labels (footnote 1); variant: LSTM variant;
    step_fn: the model's step, default :func:`cnn_rnn_step`; any function with its signature
    works (``baselines.no_rnn_step`` for the no-rnn baseline). It must return a fresh
    (R, K + 1) array (the search masks it in place) and its state as a tuple of arrays
    whose first axis is the R rows (the search reorders them as paths move in the beam);
    batch_size: images searched together (default ``DEFAULT_BATCH`` of the backend).
    Returns a :class:`BeamResult` (the search is described in the module docstring).
    """
    K = params["U_l"].shape[0] - 2
    L = check_options(K, beam_size, max_labels, min_labels)
    step_fn = step_fn or cnn_rnn_step
    batch_size = batch_size or DEFAULT_BATCH[backend.name()]
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n = I.shape[0]
    parts = [
        _search(params, I[s : s + batch_size], int(beam_size), L, min_labels, variant, step_fn)
        for s in range(0, max(n, 1), batch_size)
    ]
    if len(parts) == 1:
        return parts[0]
    return BeamResult(*[xp.concatenate(field) for field in list(zip(*parts))[:-1]], sum(p.step_rows for p in parts))


def _mask(lp, labels, logp, no_end, no_labels):
    """Set the log-probabilities of the outputs a path may not take next to -inf, in place.

    lp: (A, W, K + 1) this step's log-probabilities; labels: (A, W, t) the labels on each
    path (a label never appears twice); logp: (A, W) the paths' log P, -inf for empty beam
    slots (all their outputs are masked, so they never produce a path); no_end: END not
    yet allowed (footnote 1); no_labels: the path is full, only END is left.
    """
    A, W, V = lp.shape
    if labels.shape[2]:
        lp[xp.arange(A)[:, None, None], xp.arange(W)[None, :, None], labels] = NEG_INF
    if no_end:
        lp[:, :, V - 1] = NEG_INF
    if no_labels:
        lp[:, :, : V - 1] = NEG_INF
    lp[logp == NEG_INF] = NEG_INF
    return lp


def _top_outputs(lp, m):
    """The m most probable outputs of every row, best first (ties: lowest token).

    lp: (A, W, V) masked log-probabilities (-inf = not allowed); it is overwritten.
    Returns (tokens (A, W, m), log-probs (A, W, m)). m repeated argmaxes beat a
    partial sort by far when m is small (the beam) and V large (the vocabulary).
    With m == V every output is kept, so they come back in token order, unsorted.
    """
    A, W, V = lp.shape
    if m == V:
        return xp.broadcast_to(xp.arange(V), lp.shape), lp
    flat = lp.reshape(A * W, V)
    rows = xp.arange(A * W)
    tokens, values = [], []
    for _ in range(m):
        j = flat.argmax(axis=1)
        tokens.append(j)
        values.append(flat[rows, j])
        flat[rows, j] = NEG_INF  # a taken output is not picked again
    return (xp.stack(tokens, axis=1).reshape(A, W, m), xp.stack(values, axis=1).reshape(A, W, m))


def _argsort_stable(a):
    """argsort along the last axis, ties kept in index order (CuPy's sort is always stable)."""
    return xp.argsort(a, axis=-1) if backend.is_cupy() else xp.argsort(a, axis=-1, kind="stable")


def _search(params, I, B, L, min_labels, variant, step_fn):
    """Beam search for one batch of images (shapes as in :func:`beam_search`).

    B: beam size; L: longest path; min_labels: END not allowed before that many labels.
    """
    K = params["U_l"].shape[0] - 2
    END, START = end_token(K), start_token(K)
    n = I.shape[0]
    M = min(B, K + 1)  # next outputs tried per path
    image = projection.image_and_bias(I, params)  # (n, E): once per image
    dt = image.dtype

    # The best candidate of C for every image, and the confidences seen so far.
    best_logp = xp.full((n,), NEG_INF, dtype=dt)
    best_path = xp.full((n, L), -1, dtype=xp.int64)
    best_len = xp.zeros((n,), dtype=xp.int64)
    best_steps = xp.zeros((n, L + 1), dtype=dt)
    seen = xp.full((n, K), NEG_INF, dtype=dt)  # best step log-prob of each label

    # S for the images still searching: act (A,) image ids, a grid of A x W paths.
    act = xp.arange(n)
    logp = xp.zeros((n, 1), dtype=dt)  # log P of each path so far
    path = xp.full((n, 1, L), -1, dtype=xp.int64)  # its labels
    steps = xp.zeros((n, 1, L + 1), dtype=dt)  # its step log-probs
    tokens = xp.full((n,), START, dtype=xp.int64)
    state, step_rows = None, 0

    for t in range(L + 1):  # t labels on every path in S
        A, W = logp.shape
        if A == 0:
            break
        lp, state = step_fn(params, tokens, state, xp.repeat(image[act], W, axis=0), variant)
        step_rows += A * W
        lp = _mask(lp.reshape(A, W, K + 1), path[:, :, :t], logp, t < min_labels, t == L)
        seen[act] = xp.maximum(seen[act], lp[:, :, :K].max(axis=1))

        # Expand every path with its M most probable allowed outputs: A x (W * M) paths.
        nxt, nxt_lp = _top_outputs(lp, M)
        nxt, nxt_lp = nxt.reshape(A, W * M), nxt_lp.reshape(A, W * M)
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
        state = tuple(s[(kk * W + parent).reshape(-1)] for s in state)
        tokens = label.reshape(-1)
        act = act[keep]

    scores = xp.exp(seen)
    img_idx, pos = xp.nonzero(xp.arange(L)[None, :] < best_len[:, None])
    scores[img_idx, best_path[img_idx, pos]] = EMITTED_OFFSET + xp.exp(best_steps[img_idx, pos])
    return BeamResult(best_path, best_len, best_logp, best_steps, scores, step_rows)
