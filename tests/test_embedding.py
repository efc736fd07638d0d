"""Eq. 2 label embedding and Eq. 5 tied scores: one matrix U_l, two gradient contributions."""

import numpy as np

from minicnnrnn.rnn import embedding


def test_embedding_is_row_lookup_and_one_hot_product(rng):
    U_l = rng.standard_normal((6, 4))
    tokens = np.array([[5, 0], [2, 2]])
    w, _ = embedding.embed_forward(tokens, U_l)
    assert w.shape == (2, 2, 4)
    np.testing.assert_array_equal(w[1, 0], U_l[2])
    np.testing.assert_allclose(w[0, 0], np.eye(6)[5] @ U_l)  # Eq. 2: w_k = U_l e_k


def test_embedding_backward_sums_repeated_tokens(rng):
    U_l = rng.standard_normal((5, 3))
    tokens = np.array([[1, 1], [4, 1]])
    dw = rng.standard_normal((2, 2, 3))
    dU = embedding.embed_backward(dw, embedding.embed_forward(tokens, U_l)[1])["U_l"]
    np.testing.assert_allclose(dU[1], dw[0, 0] + dw[0, 1] + dw[1, 1])
    np.testing.assert_allclose(dU[4], dw[1, 0])
    assert np.all(dU[[0, 2, 3]] == 0)


def test_tied_scores_use_first_rows_only(rng):
    U_l = rng.standard_normal((6, 4))
    x, ds = rng.standard_normal((3, 2, 4)), rng.standard_normal((3, 2, 5))
    s, cache = embedding.tied_scores_forward(x, U_l, 5)
    np.testing.assert_allclose(s, x @ U_l[:5].T)  # Eq. 5: s = U_l^T x
    dx, dU = embedding.tied_scores_backward(ds, cache)
    dU = dU["U_l"]
    assert dx.shape == x.shape and dU.shape == U_l.shape
    assert np.all(dU[5] == 0)  # START is never scored


def test_tying_gives_two_gradient_parts(rng):
    """A loss that uses U_l both ways gets a gradient from each use (gradcheck's "embedding + tied
    scores" case checks their sum against finite differences); neither part is zero, so
    either alone would be wrong."""
    U_l = rng.standard_normal((6, 4))
    tokens = np.array([[5, 5], [0, 3], [3, 1]])
    y, G = rng.standard_normal((3, 2, 4)), rng.standard_normal((3, 2, 5))

    w, e_cache = embedding.embed_forward(tokens, U_l)
    _, s_cache = embedding.tied_scores_forward(w * y, U_l, 5)
    dx, score_grads = embedding.tied_scores_backward(G, s_cache)
    dU_scores, dU_embed = score_grads["U_l"], embedding.embed_backward(dx * y, e_cache)["U_l"]
    assert np.abs(dU_scores).max() > 1e-2 and np.abs(dU_embed).max() > 1e-2
    # Row 5 (START) only gets the embedding part.
    np.testing.assert_allclose((dU_scores + dU_embed)[5], dU_embed[5])


def test_embedding_backward_matches_scatter_add_for_a_large_vocabulary(rng):
    """Only the tokens present get a gradient; the result equals numpy's unbuffered add.at."""
    V, E = 1002, 4
    tokens = rng.integers(0, 40, (6, 8))  # few distinct tokens, many repeats
    dw = rng.standard_normal((6, 8, E)).astype(np.float32)
    dU = embedding.embed_backward(dw, embedding.embed_forward(tokens, np.zeros((V, E), np.float32))[1])["U_l"]
    expected = np.zeros((V, E))
    np.add.at(expected, tokens.reshape(-1), dw.reshape(-1, E).astype(np.float64))
    assert dU.shape == (V, E) and dU.dtype == np.float32
    np.testing.assert_allclose(dU, expected, rtol=1e-5, atol=1e-6)
    assert np.all(dU[40:] == 0)


def test_tied_scores_of_a_single_step(rng):
    """Beam search scores one step at a time: x of shape (N, E)."""
    U_l, x, ds = rng.standard_normal((6, 4)), rng.standard_normal((3, 4)), rng.standard_normal((3, 5))
    s, cache = embedding.tied_scores_forward(x, U_l, 5)
    np.testing.assert_allclose(s, x @ U_l[:5].T)
    dx, dU = embedding.tied_scores_backward(ds, cache)
    dU = dU["U_l"]
    np.testing.assert_allclose(dx, ds @ U_l[:5])
    np.testing.assert_allclose(dU[:5], ds.T @ x)
