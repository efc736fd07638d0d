"""Beam search (§3.3) against an independent oracle: every label path enumerated here.

The oracle re-implements the model's forward pass in plain NumPy (float64, one image
and one path at a time) and scores *every* prediction path (all ordered subsets of
the K labels, closed by END) with Eq. 6. Beam search with a beam at least as large as
the number of paths must return the argmax of that list.
"""

import math

import numpy as np
import pytest
from conftest import cupy_available

from minicnnrnn.baselines import no_rnn
from minicnnrnn.core import backend
from minicnnrnn.core.errors import UserError
from minicnnrnn.paths import beam_search
from minicnnrnn.rnn import model

D, E, H = 6, 4, 8


# ---------------------------------------------------------------------------
# The oracle: Eq. 1, 2, 4, 5 and the softmax written out for one image.
# ---------------------------------------------------------------------------


def oracle_step(p, image_term, token, r_prev, variant):
    """Log-probabilities over the K + 1 outputs after feeding ``token``; and r(t)."""
    w = p["U_l"][token]  # Eq. 2
    if variant == "no-rnn":  # the Table 3 baseline: no Eq. 1
        return oracle_scores(p, w @ p["U_e"] + p["b_e"], image_term), r_prev
    z = w @ p["U_w"] + r_prev @ p["U_r"] + p["b_lstm"]
    zx, zi, zf, zo = np.split(z, 4)
    if variant == "relu":  # Eq. 1 with delta = ReLU
        x, i, f, og = (np.maximum(v, 0) for v in (zx, zi, zf, zo))
        r = f * r_prev + i * x
        o = r * og
    else:

        def sig(v):
            return 1 / (1 + np.exp(-v))

        x, i, f, og = np.tanh(zx), sig(zi), sig(zf), sig(zo)
        r = f * r_prev + i * x
        o = np.tanh(r) * og
    return oracle_scores(p, o, image_term), r


def oracle_scores(p, o, image_term):
    """Eq. 4, Eq. 5 and the log of the softmax over the K + 1 outputs."""
    xt = np.maximum(o @ p["U_o_x"] + image_term, 0)  # Eq. 4
    K1 = p["U_l"].shape[0] - 1
    s = p["U_l"][:K1] @ xt  # Eq. 5
    return s - (s.max() + math.log(np.exp(s - s.max()).sum()))


def all_paths(p, I_row, variant, min_labels=0, max_labels=None):
    """{labels tuple: log P(labels, END | I)} over every allowed path (Eq. 6)."""
    K = p["U_l"].shape[0] - 2
    max_labels = K if max_labels is None else max_labels
    image_term = I_row @ p["U_I_x"] + p["b_x"]
    out = {}

    def visit(prefix, token, r, logp):
        lp, r = oracle_step(p, image_term, token, r, variant)
        if len(prefix) >= min_labels:
            out[prefix] = logp + lp[K]
        if len(prefix) < max_labels:
            for label in range(K):
                if label not in prefix:
                    visit(prefix + (label,), label, r, logp + lp[label])

    visit((), K + 1, np.zeros(p["U_o_x"].shape[0]), 0.0)
    return out


def oracle_greedy(p, I_row, variant, min_labels=0):
    """Hand-written greedy decoding: the most probable allowed output at every step."""
    K = p["U_l"].shape[0] - 2
    image_term = I_row @ p["U_I_x"] + p["b_x"]
    path, token, r, logp = [], K + 1, np.zeros(p["U_o_x"].shape[0]), 0.0
    while True:
        lp, r = oracle_step(p, image_term, token, r, variant)
        lp = lp.copy()
        lp[path] = -np.inf
        if len(path) < min_labels:
            lp[K] = -np.inf
        token = int(np.argmax(lp))
        logp += lp[token]
        if token == K:
            return tuple(path), logp
        path.append(token)


def n_paths(K):
    return sum(math.perm(K, j) for j in range(K + 1))


def random_model(K, seed, variant="relu"):
    """A small random CNN-RNN whose distributions are peaked enough that END is reachable
    and the best path has a few labels (init_params alone gives near-uniform softmaxes)."""
    rng = np.random.default_rng(seed)
    p = model.init_params(K, D, E, H, rng, variant=variant, dtype=np.float64)
    for name in ("U_l", "U_I_x", "U_o_x"):
        p[name] *= 6.0
    I = rng.standard_normal((6, D))
    return p, I


def make_step(p, I, variant="relu", make=None):
    """The one-step decoder of the host model p for the host images I (``make``: a
    ``(params, I) -> step`` factory such as ``no_rnn.make_step``; None: the CNN-RNN's)."""
    params, feats = backend.params_to_device(p), backend.to_device(I)
    return make(params, feats) if make else model.make_step(params, feats, variant)


def run(p, I, variant="relu", make=None, **options):
    result = beam_search.beam_search(make_step(p, I, variant, make), len(I), **options)
    return beam_search.BeamResult(*[backend.to_host(a) for a in result[:-1]], result.step_rows)


def path_of(result, i):
    return tuple(int(v) for v in result.paths[i, : result.lengths[i]])


CASES = [(K, seed, variant) for K in (3, 4, 5) for seed in (0, 1) for variant in ("relu", "conventional")]


# ---------------------------------------------------------------------------
# Exactness and the options.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("K, seed, variant", CASES)
def test_large_beam_returns_exhaustive_argmax(K, seed, variant):
    p, I = random_model(K, seed, variant)
    result = run(p, I, beam_size=n_paths(K), variant=variant)
    for i in range(len(I)):
        paths = all_paths(p, I[i], variant)
        best = max(paths, key=paths.get)
        assert path_of(result, i) == best
        assert result.log_prob[i] == pytest.approx(paths[best], rel=1e-9, abs=1e-9)
        # The step log-probabilities add up to the path's log P (END step included).
        assert result.step_log_probs[i].sum() == pytest.approx(paths[best], rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("K, seed", [(4, 0), (5, 1)])
def test_no_rnn_baseline_through_its_step(K, seed):
    """The no-rnn baseline (recurrent layer replaced by a linear one) is searched with its
    own step function and must also find the exhaustive argmax."""
    rng = np.random.default_rng(seed)
    p = no_rnn.init_no_rnn(K, D, E, H, rng, dtype=np.float64)
    for name in ("U_l", "U_I_x", "U_o_x"):
        p[name] *= 6.0
    I = rng.standard_normal((6, D))
    result = run(p, I, beam_size=n_paths(K), make=no_rnn.make_step, min_labels=1)
    greedy = run(p, I, beam_size=1, make=no_rnn.make_step)
    for i in range(len(I)):
        paths = all_paths(p, I[i], "no-rnn", min_labels=1)
        best = max(paths, key=paths.get)
        assert path_of(result, i) == best
        assert result.log_prob[i] == pytest.approx(paths[best], rel=1e-9, abs=1e-9)
        assert path_of(greedy, i) == oracle_greedy(p, I[i], "no-rnn")[0]


def test_oracle_cases_are_not_trivial():
    """The argmax paths above have 0, 1 and 2 labels and greedy is sometimes wrong, so
    the exactness test really exercises the search. (Longer argmax paths are rare in
    untrained models: they keep probability on labels already used, which the mask then
    throws away; the min_labels tests cover the deeper searches.)"""
    lengths, greedy_wrong = set(), 0
    for K, seed, variant in CASES:
        p, I = random_model(K, seed, variant)
        for row in I:
            paths = all_paths(p, row, variant)
            best = max(paths, key=paths.get)
            lengths.add(len(best))
            greedy_wrong += oracle_greedy(p, row, variant)[0] != best
    assert {0, 1, 2} <= lengths
    assert greedy_wrong >= 1


@pytest.mark.parametrize("min_labels, max_labels", [(2, None), (3, None), (0, 2), (1, 3)])
def test_length_limits_match_restricted_argmax(min_labels, max_labels):
    K = 5
    p, I = random_model(K, 3)
    result = run(p, I, beam_size=n_paths(K), min_labels=min_labels, max_labels=max_labels)
    for i in range(len(I)):
        paths = all_paths(p, I[i], "relu", min_labels, max_labels)
        best = max(paths, key=paths.get)
        assert path_of(result, i) == best
        assert result.log_prob[i] == pytest.approx(paths[best], rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("beam", [1, 2, 3])
def test_min_length_respected_with_small_beams(beam):
    p, I = random_model(5, 4)
    for k in range(6):
        result = run(p, I, beam_size=beam, min_labels=k)
        assert (result.lengths >= k).all()


@pytest.mark.parametrize("K, seed, variant", CASES)
def test_greedy_is_beam_one(K, seed, variant):
    p, I = random_model(K, seed, variant)
    for k in (0, 2):
        result = run(p, I, beam_size=1, min_labels=k, variant=variant)
        for i in range(len(I)):
            path, logp = oracle_greedy(p, I[i], variant, min_labels=k)
            assert path_of(result, i) == path
            assert result.log_prob[i] == pytest.approx(logp, rel=1e-9, abs=1e-9)


def test_beam_fixes_greedy_somewhere():
    """Some image where greedy misses the argmax and a beam of 3 finds it."""
    fixed = 0
    for K, seed, variant in CASES:
        p, I = random_model(K, seed, variant)
        greedy, beam3 = run(p, I, beam_size=1, variant=variant), run(p, I, beam_size=3, variant=variant)
        for i in range(len(I)):
            paths = all_paths(p, I[i], variant)
            best = max(paths, key=paths.get)
            fixed += path_of(greedy, i) != best and path_of(beam3, i) == best
    assert fixed >= 1


def test_paths_are_valid_labels_without_repeats():
    for K, seed, variant in CASES:
        p, I = random_model(K, seed, variant)
        for beam in (1, 2, 4):
            result = run(p, I, beam_size=beam, variant=variant)
            for i in range(len(I)):
                path = path_of(result, i)
                assert len(set(path)) == len(path)
                assert all(0 <= label < K for label in path)  # no END, no START inside
                assert (result.paths[i, len(path) :] == -1).all()
                # The returned log P is Eq. 6 of the returned path.
                assert all_paths(p, I[i], variant)[path] == pytest.approx(result.log_prob[i], rel=1e-9, abs=1e-9)


def test_start_is_never_emitted_even_when_it_scores_highest():
    K = 4
    p, I = random_model(K, 5)
    p["U_l"][K + 1] = 50 * p["U_l"][: K + 1].sum(axis=0)  # START's row is not an output
    result = run(p, I, beam_size=3)
    assert (result.paths < K).all()
    assert result.step_log_probs.shape == (len(I), K + 1)


# ---------------------------------------------------------------------------
# Confidences.
# ---------------------------------------------------------------------------


def test_emitted_labels_outrank_all_others():
    for K, seed, variant in CASES:
        p, I = random_model(K, seed, variant)
        for beam, k in ((1, 0), (3, 0), (3, 2)):
            result = run(p, I, beam_size=beam, min_labels=k, variant=variant)
            for i in range(len(I)):
                path = list(path_of(result, i))
                others = [label for label in range(K) if label not in path]
                if path and others:
                    assert result.confidence[i, path].min() > result.confidence[i, others].max()
                np.testing.assert_allclose(
                    result.confidence[i, path],
                    beam_search.EMITTED_OFFSET + np.exp(result.step_log_probs[i, : len(path)]),
                )
                # A non-emitted label scores at least its first-step probability P(l | I).
                first, _ = oracle_step(p, I[i] @ p["U_I_x"] + p["b_x"], K + 1, np.zeros(H), variant)
                assert (result.confidence[i, others] >= np.exp(first[others]) - 1e-12).all()
                assert (result.confidence[i, others] <= 1).all()


# ---------------------------------------------------------------------------
# Batching, dtypes, backends, options.
# ---------------------------------------------------------------------------


def test_batches_give_the_same_answer():
    p, I = random_model(5, 6)
    I = np.concatenate([I, I[::-1], I * 0.5])
    whole = run(p, I, beam_size=3)
    chunked = run(p, I, beam_size=3, batch_size=4)
    np.testing.assert_array_equal(whole.paths, chunked.paths)
    np.testing.assert_array_equal(whole.lengths, chunked.lengths)
    for a, b in zip(whole[2:-1], chunked[2:-1]):  # BLAS may round other block sizes differently
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_float32_matches_float64():
    p, I = random_model(5, 7)
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    r64, r32 = run(p, I, beam_size=3), run(p32, I.astype(np.float32), beam_size=3)
    assert r32.log_prob.dtype == np.float32
    np.testing.assert_array_equal(r64.paths, r32.paths)
    np.testing.assert_allclose(r64.log_prob, r32.log_prob, rtol=1e-4, atol=1e-4)


def markov_step(table):
    """A step factory whose next-output distribution depends only on the previous token
    (the last row of ``table`` is START's)."""
    log_table = backend.to_device(np.log(table))

    def make(params, I):
        def step(prev, state, rows):
            if prev is None:
                prev = backend.to_device(np.full(rows.shape[0], len(table) - 1))
            return log_table[prev], ()

        return step

    return make


def test_custom_step_function_where_greedy_fails():
    """Previous token -> next-output probabilities (K = 3 labels a, b, c; END; START):
    greedy takes a (0.4) and gets stuck; the best path is (b, END) = 0.35 * 0.9."""
    table = np.array(
        [
            # a     b     c     END
            [0.20, 0.25, 0.30, 0.25],  # after a
            [0.03, 0.04, 0.03, 0.90],  # after b
            [0.30, 0.35, 0.10, 0.25],  # after c
            [0.25, 0.25, 0.25, 0.25],  # after END (never fed)
            [0.40, 0.35, 0.20, 0.05],  # after START
        ]
    )
    p, I = random_model(3, 0)
    greedy = run(p, I, beam_size=1, make=markov_step(table))
    beam = run(p, I, beam_size=2, make=markov_step(table))
    assert path_of(greedy, 0) == (0, 2, 1)  # a, c (0.30), b (0.35 after c), END (0.90)
    assert greedy.log_prob[0] == pytest.approx(np.log(0.4 * 0.3 * 0.35 * 0.9))
    assert all(path_of(beam, i) == (1,) for i in range(len(I)))
    assert beam.log_prob[0] == pytest.approx(np.log(0.35 * 0.9))


def test_bad_options_are_user_errors():
    p, I = random_model(3, 0)
    for options in ({"beam_size": 0}, {"max_labels": 4}, {"min_labels": 4}, {"min_labels": 3, "max_labels": 2}):
        with pytest.raises(UserError):
            run(p, I, **options)


def test_no_images():
    p, I = random_model(3, 0)
    result = run(p, I[:0], beam_size=3)
    assert result.paths.shape == (0, 3) and result.confidence.shape == (0, 3)


@pytest.mark.skipif(not cupy_available(), reason="CuPy with a CUDA device is not available")
def test_numpy_and_cupy_agree():
    p, I = random_model(5, 8)
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    I32 = I.astype(np.float32)
    host = run(p32, I32, beam_size=3, min_labels=1)
    backend.use("cupy")
    try:
        device = run(p32, I32, beam_size=3, min_labels=1)
    finally:
        backend.use("numpy")
    np.testing.assert_array_equal(host.paths, device.paths)
    np.testing.assert_allclose(host.log_prob, device.log_prob, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(host.confidence, device.confidence, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# The plain one-image search (the readable version) and the fast batched one agree.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["relu", "conventional"])
@pytest.mark.parametrize("beam, min_labels, max_labels", [(1, 0, None), (2, 1, None), (3, 0, 3), (4, 2, 4)])
def test_fast_search_returns_the_plain_search_paths(variant, beam, min_labels, max_labels):
    K = 7  # too many paths to enumerate cheaply: here the beam really prunes
    p, I = random_model(K, 3, variant)
    options = dict(beam_size=beam, min_labels=min_labels, max_labels=max_labels)
    fast = run(p, I, variant, **options)
    for i in range(len(I)):
        labels, log_prob = beam_search.beam_search_plain(make_step(p, I[i : i + 1], variant), **options)
        assert path_of(fast, i) == labels
        assert fast.log_prob[i] == pytest.approx(log_prob, rel=1e-9, abs=1e-9)


def test_plain_search_with_the_no_rnn_step():
    rng = np.random.default_rng(4)
    p = no_rnn.init_no_rnn(6, D, E, H, rng, dtype=np.float64)
    for name in ("U_l", "U_I_x", "U_o_x"):
        p[name] *= 6.0
    I = rng.standard_normal((5, D))
    fast = run(p, I, beam_size=2, make=no_rnn.make_step, min_labels=1)
    for i in range(len(I)):
        labels, _ = beam_search.beam_search_plain(make_step(p, I[i : i + 1], make=no_rnn.make_step), 2, min_labels=1)
        assert path_of(fast, i) == labels
