"""The whole label-path model (§3.2): tokens, initialisation, path loss and its gradients
(their finite-difference checks: gradcheck/cases_rnn.py, "path loss end to end")."""

import numpy as np
import pytest
from conftest import cupy_available

from minicnnrnn.core import backend
from minicnnrnn.layers import dropout, loss
from minicnnrnn.paths import tokens
from minicnnrnn.rnn import lstm, model

K, D, E, H = 4, 5, 3, 4
VARIANTS = lstm.VARIANTS


def batch(K=K):
    """Paths (2, 0, 1), (3,) and (0, 1): inputs, targets, mask of shape (4, 3)."""
    S, END = tokens.start_token(K), tokens.end_token(K)
    inputs = np.array([[S, S, S], [2, 3, 0], [0, 0, 1], [1, 0, 0]])
    targets = np.array([[2, 3, 0], [0, END, 1], [1, 0, END], [END, 0, 0]])
    mask = np.array([[1, 1, 1], [1, 1, 1], [1, 0, 1], [1, 0, 0]], np.float64)
    return inputs, targets, mask


def problem(seed, variant, E=E, H=H, dtype=np.float64):
    """Fresh parameters, image features (3, D) and the batch above."""
    rng = np.random.default_rng(seed)
    p = model.init_params(K, D, E, H, rng, variant, dtype=dtype)
    I = rng.standard_normal((3, D)).astype(dtype)
    return (rng, p, I, *batch())


def test_tokens():
    assert tokens.end_token(20) == 20 and tokens.start_token(20) == 21


@pytest.mark.parametrize("variant", VARIANTS)
def test_init_params(variant):
    p = model.init_params(K, D, E, H, np.random.default_rng(3), variant)
    shapes = {
        "U_l": (K + 2, E),
        "U_r": (H, 4 * H),
        "U_w": (E, 4 * H),
        "b_lstm": (4 * H,),
        "U_o_x": (H, E),
        "U_I_x": (D, E),
        "b_x": (E,),
    }
    assert {k: v.shape for k, v in p.items()} == shapes
    assert all(v.dtype == np.float32 and isinstance(v, np.ndarray) for v in p.values())
    again = model.init_params(K, D, E, H, np.random.default_rng(3), variant)
    assert all(np.array_equal(p[k], again[k]) for k in p)
    other = model.init_params(K, D, E, H, np.random.default_rng(4), variant)
    assert not np.array_equal(p["U_l"], other["U_l"])


def test_init_gate_biases():
    """relu, bounded: 0 for the candidate x, 0.5 for the gates i, f, o; conventional: the usual forget bias 1."""
    expected = {"relu": [0.0, 0.5, 0.5, 0.5], "bounded": [0.0, 0.5, 0.5, 0.5], "conventional": [0.0, 0.0, 1.0, 0.0]}
    for variant, per_block in expected.items():
        b = model.init_params(K, D, E, H, np.random.default_rng(0), variant)["b_lstm"]
        np.testing.assert_array_equal(b, np.repeat(per_block, H))  # blocks [x | i | f | o]


@pytest.mark.parametrize("variant", VARIANTS)
def test_init_is_stable_at_paper_size(variant):
    """With the paper's E = 64, H = 512 the initial state stays bounded along a long path
    and the initial loss is close to uniform guessing, log(K + 1) per step."""
    rng = np.random.default_rng(0)
    K_big, T, N = 20, 12, 8
    p = model.init_params(K_big, 256, 64, 512, rng, variant)
    I = np.maximum(rng.standard_normal((N, 256)), 0).astype(np.float32)
    inputs = rng.integers(0, K_big, (T, N))
    targets = rng.integers(0, K_big + 1, (T, N))
    mask = np.ones((T, N), np.float32)
    o, _ = lstm.lstm_forward(p["U_l"][inputs], mask, p, variant)
    assert np.abs(o).max() < 5.0
    value, grads = model.path_loss(p, I, inputs, targets, mask, variant)
    assert abs(value / T - np.log(K_big + 1)) < 0.5
    assert all(np.all(np.isfinite(g)) for g in grads.values())


@pytest.mark.parametrize("variant", VARIANTS)
def test_path_loss_gradients_reach_every_parameter(variant):
    rng, p, I, inputs, targets, mask = problem(1, variant)
    drop = dropout.make_mask((4, 3, E), 0.25, rng, np.float64)
    scores, _ = model.path_forward(p, I, inputs, mask, variant, drop)
    assert scores.shape == (4, 3, K + 1)

    _, grads = model.path_loss(p, I, inputs, targets, mask, variant, drop)
    assert set(grads) == set(p)
    # U_l's two uses: START is only an input, END only an output; both rows learn.
    assert np.abs(grads["U_l"][tokens.start_token(K)]).max() > 0
    assert np.abs(grads["U_l"][tokens.end_token(K)]).max() > 0


def test_path_loss_equals_its_parts():
    """path_loss reuses the score array for its gradient; the result must be that of
    calling the parts one by one, and the parts' outputs stay usable."""
    rng, p, I, inputs, targets, mask = problem(3, "relu")
    value, grads = model.path_loss(p, I, inputs, targets, mask, "relu")
    scores, cache = model.path_forward(p, I, inputs, mask, "relu")
    kept = scores.copy()
    value2, dscores = loss.softmax_cross_entropy(scores, targets, mask)
    grads2 = model.path_backward(dscores, cache)
    np.testing.assert_array_equal(scores, kept)
    assert value == value2
    for k in p:
        np.testing.assert_array_equal(grads[k], grads2[k])


@pytest.mark.parametrize("variant", VARIANTS)
def test_padding_does_not_change_loss(variant):
    _, p, I, inputs, targets, mask = problem(2, variant)
    value, grads = model.path_loss(p, I, inputs, targets, mask, variant)
    junk_in, junk_tg = inputs.copy(), targets.copy()
    junk_in[mask == 0], junk_tg[mask == 0] = 3, 2
    value2, grads2 = model.path_loss(p, I, junk_in, junk_tg, mask, variant)
    assert value == value2
    for k in p:
        np.testing.assert_allclose(grads[k], grads2[k], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_few_sgd_steps_fit_a_tiny_batch(variant):
    """The gradients point downhill: clipped SGD memorises three paths."""
    _, p, I, inputs, targets, mask = problem(5, variant, E=8, H=16, dtype=np.float32)
    first, _ = model.path_loss(p, I, inputs, targets, mask, variant)
    for _ in range(60):
        value, grads = model.path_loss(p, I, inputs, targets, mask, variant)
        norm = np.sqrt(sum(float((g**2).sum()) for g in grads.values()))
        p = {k: p[k] - 0.3 / max(1.0, norm) * grads[k] for k in p}
    assert value < 0.15 * first


@pytest.mark.skipif(not cupy_available(), reason="CuPy with a CUDA device is not available")
@pytest.mark.parametrize("variant", VARIANTS)
def test_numpy_and_cupy_agree(variant):
    rng = np.random.default_rng(6)
    p = model.init_params(K, D, E, H, rng, variant)
    I = rng.standard_normal((3, D)).astype(np.float32)
    drop = backend.to_host(dropout.make_mask((4, 3, E), 0.5, rng))  # host: each backend moves it in
    results = {}
    for name in ("numpy", "cupy"):
        backend.use(name)
        arrays = [backend.to_device(a) for a in (I, *batch(), drop)]
        value, grads = model.path_loss(backend.params_to_device(p), *arrays[:4], variant, arrays[4])
        results[name] = (value, backend.params_to_host(grads))
    backend.use("numpy")
    np.testing.assert_allclose(results["numpy"][0], results["cupy"][0], rtol=1e-5)
    for k in p:
        np.testing.assert_allclose(results["numpy"][1][k], results["cupy"][1][k], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", lstm.VARIANTS)
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-6)])
def test_fast_step_agrees_with_plain_step(variant, dtype, tol):
    """make_step (one fused product, in place) and make_step_plain: same log-probs and states,
    to float rounding, over three steps whose rows grow, shrink and repeat images."""
    rng = np.random.default_rng(3)
    K, D, E, H, n = 6, 5, 4, 8, 4
    params = model.init_params(K, D, E, H, rng, variant, dtype=dtype)
    params = {k: backend.to_device(v * 3.0) for k, v in params.items()}  # larger, so every gate matters
    I = backend.to_device(rng.standard_normal((n, D)).astype(dtype))
    plain, fast = model.make_step_plain(params, I, variant), model.make_step(params, I, variant)
    rows = backend.to_device(np.arange(n))
    lp_p, st_p = plain(None, None, rows)
    lp_f, st_f = fast(None, None, rows)
    for pick in ([0, 0, 1, 2, 3, 3, 3], [6, 1, 2], [0, 1, 2, 2, 1, 0, 0, 1]):
        np.testing.assert_allclose(backend.to_host(lp_f), backend.to_host(lp_p), rtol=tol, atol=tol)
        np.testing.assert_allclose(backend.to_host(st_f[0]), backend.to_host(st_p[0]), rtol=tol, atol=tol)
        pick = backend.to_device(np.asarray(pick))
        prev = backend.to_device(rng.integers(0, K, pick.shape[0]))
        rows = rows[pick]
        lp_p, st_p = plain(prev, (st_p[0][pick],), rows)
        lp_f, st_f = fast(prev, (st_f[0][pick],), rows)
    np.testing.assert_allclose(backend.to_host(lp_f), backend.to_host(lp_p), rtol=tol, atol=tol)


@pytest.mark.parametrize("variant", lstm.VARIANTS)
def test_fast_step_blocks_of_rows_change_nothing(variant, monkeypatch):
    """make_step's cell runs on CELL_ROWS rows at a time (for the cache): blocks of 3 rows, with a
    last partial block, give the same log-probs and states bit for bit as one block of all rows."""
    rng = np.random.default_rng(4)
    K, D, E, H, n = 6, 5, 4, 8, 7
    params = model.init_params(K, D, E, H, rng, variant)
    params = {k: backend.to_device(v * 3.0) for k, v in params.items()}
    I = backend.to_device(rng.standard_normal((n, D)).astype(np.float32))
    rows = backend.to_device(np.arange(n))
    prev = backend.to_device(rng.integers(0, K, n))
    results = []
    for block in (3, 10**6):
        monkeypatch.setattr(model, "CELL_ROWS", block)
        step = model.make_step(params, I, variant)
        lp, state = step(None, None, rows)
        lp2, state2 = step(prev, state, rows)
        results.append([backend.to_host(a) for a in (lp, state[0], lp2, state2[0])])
    for blocked, whole in zip(*results):
        np.testing.assert_array_equal(blocked, whole)
