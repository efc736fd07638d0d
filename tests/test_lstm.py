"""Eq. 1 LSTM: the step and the masked sequence, forward values and hand-written backward
(their finite-difference checks: gradcheck/cases_rnn.py)."""

import numpy as np
import pytest
from conftest import cupy_available

from minicnnrnn.core import backend
from minicnnrnn.rnn import lstm

VARIANTS = lstm.VARIANTS


def make_params(rng, E, H, bias=True, dtype=np.float64):
    params = {"U_r": rng.standard_normal((H, 4 * H)) / np.sqrt(H), "U_w": rng.standard_normal((E, 4 * H)) / np.sqrt(E)}
    if bias:
        params["b_lstm"] = 0.3 + 0.3 * rng.standard_normal(4 * H)
    return {k: v.astype(dtype) for k, v in params.items()}


def paper_step(w, r_prev, p, variant):
    """Eq. 1 transcribed literally, with the paper's eight separate matrices."""
    H = r_prev.shape[1]
    b = p.get("b_lstm", np.zeros(4 * H))

    def relu(a):
        return np.maximum(a, 0)

    def sig(a):
        return 1 / (1 + np.exp(-a))

    def capped(a):
        return np.minimum(np.maximum(a, 0), 1)

    acts = {"relu": [relu] * 4, "bounded": [capped] * 4, "conventional": [np.tanh, sig, sig, sig]}[variant]
    gates = [
        acts[k](
            r_prev @ p["U_r"][:, k * H : (k + 1) * H] + w @ p["U_w"][:, k * H : (k + 1) * H] + b[k * H : (k + 1) * H]
        )
        for k in range(4)
    ]
    x, i, f, o = gates
    r = f * r_prev + i * x
    return (np.tanh(r) if variant == "conventional" else r) * o, r


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("bias", [True, False])
def test_step_matches_literal_eq1(rng, variant, bias):
    p = make_params(rng, 3, 4, bias)
    w, r_prev = rng.standard_normal((2, 3)), rng.standard_normal((2, 4))
    (o, r), _ = lstm.lstm_step_forward(w, r_prev, p, variant)
    o_ref, r_ref = paper_step(w, r_prev, p, variant)
    np.testing.assert_allclose(o, o_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(r, r_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("bias", [True, False])
def test_step_gradients_name_every_parameter(rng, variant, bias):
    """The backward returns a gradient for each parameter the forward used, and no other
    (the values: gradcheck's "lstm step" cases)."""
    p = make_params(rng, 3, 4, bias)
    w, r_prev = rng.standard_normal((2, 3)), rng.standard_normal((2, 4))
    Go, Gr = rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    dw, dr_prev, grads = lstm.lstm_step_backward(Go, Gr, lstm.lstm_step_forward(w, r_prev, p, variant)[1])
    assert set(grads) == set(p) and dw.shape == w.shape and dr_prev.shape == r_prev.shape


@pytest.mark.parametrize("variant", VARIANTS)
def test_padded_steps_receive_no_gradient(rng, variant):
    """(The gradient values with a mask: gradcheck's "lstm sequence, masked" cases.)"""
    T, N, E, H = 4, 3, 3, 4
    p = make_params(rng, E, H)
    w_seq, G = rng.standard_normal((T, N, E)), rng.standard_normal((T, N, H))
    mask = np.array([[1, 1, 1], [1, 0, 1], [1, 0, 0], [1, 0, 1]])  # column 2 has a gap
    dw_seq, _ = lstm.lstm_backward(G, lstm.lstm_forward(w_seq, mask, p, variant)[1])
    assert np.all(dw_seq[mask == 0] == 0)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("start", ["zero", "given"])
def test_sequence_equals_chained_steps(rng, variant, start):
    T, N, E, H = 3, 2, 3, 4
    p = make_params(rng, E, H)
    w_seq, G = rng.standard_normal((T, N, E)), rng.standard_normal((T, N, H))
    r0 = None if start == "zero" else rng.standard_normal((N, H))
    o_seq, cache = lstm.lstm_forward(w_seq, np.ones((T, N)), p, variant, r0=r0)
    dw_seq, grads = lstm.lstm_backward(G, cache)

    r, caches = (np.zeros((N, H)) if r0 is None else r0), []
    for t in range(T):
        (o, r), c = lstm.lstm_step_forward(w_seq[t], r, p, variant)
        np.testing.assert_allclose(o_seq[t], o, rtol=1e-13, atol=1e-13)
        caches.append(c)
    dr = np.zeros((N, H))
    total = {k: 0 for k in p}
    for t in reversed(range(T)):
        dw, dr, g = lstm.lstm_step_backward(G[t], dr, caches[t])
        np.testing.assert_allclose(dw_seq[t], dw, rtol=1e-12, atol=1e-12)
        total = {k: total[k] + g[k] for k in p}
    for k in p:
        np.testing.assert_allclose(grads[k], total[k], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant", VARIANTS)
def test_padding_is_invisible(rng, variant):
    """A path of length 2 padded to 4 gives the results of running it alone with T = 2."""
    E, H = 3, 4
    p = make_params(rng, E, H)
    w_seq, G = rng.standard_normal((4, 2, E)), rng.standard_normal((4, 2, H))
    mask = np.array([[1, 1], [1, 1], [0, 1], [0, 1]])
    o_seq, cache = lstm.lstm_forward(w_seq, mask, p, variant)
    dw_seq, _ = lstm.lstm_backward(G, cache)
    o_short, cache_short = lstm.lstm_forward(w_seq[:2, :1], np.ones((2, 1)), p, variant)
    dw_short, _ = lstm.lstm_backward(G[:2, :1], cache_short)
    np.testing.assert_allclose(o_seq[:2, :1], o_short, rtol=1e-13)
    np.testing.assert_allclose(dw_seq[:2, :1], dw_short, rtol=1e-12)
    assert np.all(o_seq[2:, 0] == 0)
    # The carried state: r at padded steps equals r at the last real step.
    r = cache.r
    np.testing.assert_array_equal(r[4, 0], r[2, 0])


@pytest.mark.parametrize("variant", VARIANTS)
def test_initial_state(rng, variant):
    p = make_params(rng, 3, 4)
    w_seq, mask = rng.standard_normal((2, 2, 3)), np.ones((2, 2))
    o_default, _ = lstm.lstm_forward(w_seq, mask, p, variant)
    o_zero, _ = lstm.lstm_forward(w_seq, mask, p, variant, r0=np.zeros((2, 4)))
    o_other, _ = lstm.lstm_forward(w_seq, mask, p, variant, r0=np.ones((2, 4)))
    np.testing.assert_array_equal(o_default, o_zero)
    assert not np.allclose(o_default, o_other)


@pytest.mark.parametrize("variant", VARIANTS)
def test_float32_stays_float32(rng, variant):
    p = make_params(rng, 3, 4, dtype=np.float32)
    w_seq = rng.standard_normal((2, 2, 3)).astype(np.float32)
    o_seq, cache = lstm.lstm_forward(w_seq, np.ones((2, 2), bool), p, variant)
    dw_seq, grads = lstm.lstm_backward(np.ones_like(o_seq), cache)
    assert o_seq.dtype == dw_seq.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())


def test_unknown_variant_is_rejected(rng):
    p = make_params(rng, 3, 4)
    with pytest.raises(ValueError, match="variant"):
        lstm.lstm_step_forward(np.zeros((1, 3)), np.zeros((1, 4)), p, "gru")


@pytest.mark.skipif(not cupy_available(), reason="CuPy with a CUDA device is not available")
@pytest.mark.parametrize("variant", VARIANTS)
def test_numpy_and_cupy_agree(rng, variant):
    T, N, E, H = 4, 3, 5, 6
    p = make_params(rng, E, H, dtype=np.float32)
    w_seq = rng.standard_normal((T, N, E)).astype(np.float32)
    G = rng.standard_normal((T, N, H)).astype(np.float32)
    mask = np.array([[1, 1, 1], [1, 0, 1], [1, 0, 1], [1, 0, 0]], np.float32)
    results = {}
    for name in ("numpy", "cupy"):
        backend.use(name)
        dev = backend.params_to_device(p)
        o, cache = lstm.lstm_forward(backend.to_device(w_seq), backend.to_device(mask), dev, variant)
        dw, grads = lstm.lstm_backward(backend.to_device(G), cache)
        results[name] = [backend.to_host(a) for a in (o, dw, *(grads[k] for k in sorted(grads)))]
    backend.use("numpy")
    for a, b in zip(results["numpy"], results["cupy"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_zero_start_shortcut_is_exact(rng, variant):
    """With r(0) = 0 the code skips the products of r(0) (forward, backward and U_r's
    gradient); the results must equal those of passing an explicit zero state."""
    T, N, E, H = 3, 2, 3, 4
    p = make_params(rng, E, H)
    w_seq, G = rng.standard_normal((T, N, E)), rng.standard_normal((T, N, H))
    mask = np.array([[1, 1], [1, 0], [1, 1]])
    o_skip, cache_skip = lstm.lstm_forward(w_seq, mask, p, variant)
    o_full, cache_full = lstm.lstm_forward(w_seq, mask, p, variant, r0=np.zeros((N, H)))
    np.testing.assert_array_equal(o_skip, o_full)
    (dw_skip, g_skip), (dw_full, g_full) = lstm.lstm_backward(G, cache_skip), lstm.lstm_backward(G, cache_full)
    np.testing.assert_array_equal(dw_skip, dw_full)
    for k in p:
        np.testing.assert_allclose(g_skip[k], g_full[k], rtol=1e-14, atol=1e-15)


def test_scratch_buffers_do_not_leak_into_results(rng):
    """Backward reuses its scratch arrays from call to call: results handed out by one
    call must not change when a later call (another shape, another dtype) runs."""
    p = make_params(rng, 3, 4)
    w1, G1 = rng.standard_normal((4, 2, 3)), rng.standard_normal((4, 2, 4))
    dw1, g1 = lstm.lstm_backward(G1, lstm.lstm_forward(w1, np.ones((4, 2)), p)[1])
    kept = [dw1.copy()] + [g1[k].copy() for k in sorted(g1)]
    w2, G2 = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 4))
    lstm.lstm_backward(G2, lstm.lstm_forward(w2, np.ones((2, 5)), p)[1])
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    lstm.lstm_backward(G1.astype(np.float32), lstm.lstm_forward(w1.astype(np.float32), np.ones((4, 2)), p32)[1])
    for before, after in zip(kept, [dw1] + [g1[k] for k in sorted(g1)]):
        np.testing.assert_array_equal(before, after)
    # ... and a repeated call still gives the same answer.
    dw1_again, _ = lstm.lstm_backward(G1, lstm.lstm_forward(w1, np.ones((4, 2)), p)[1])
    np.testing.assert_array_equal(dw1_again, kept[0])


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("bias", [True, False])
def test_fast_sequence_equals_the_plain_loop(rng, variant, bias):
    """The fast lstm_forward/lstm_backward compute what the plain step-by-step loop computes."""
    T, N, E, H = 6, 4, 3, 5
    p = make_params(rng, E, H, bias)
    w_seq, G = rng.standard_normal((T, N, E)), rng.standard_normal((T, N, H))
    mask = np.ones((T, N))
    mask[4:, 1], mask[2:, 3] = 0, 0  # paths of different lengths
    o_fast, c_fast = lstm.lstm_forward(w_seq, mask, p, variant)
    o_plain, c_plain = lstm.lstm_forward_plain(w_seq, mask, p, variant)
    np.testing.assert_allclose(o_fast, o_plain, rtol=1e-12, atol=1e-14)
    (dw_fast, g_fast), (dw_plain, g_plain) = lstm.lstm_backward(G, c_fast), lstm.lstm_backward_plain(G, c_plain)
    np.testing.assert_allclose(dw_fast, dw_plain, rtol=1e-11, atol=1e-13)
    assert set(g_fast) == set(g_plain) == set(p)
    for k in p:
        np.testing.assert_allclose(g_fast[k], g_plain[k], rtol=1e-11, atol=1e-13)


def test_bounded_state_grows_at_most_one_per_step(rng):
    """Capped ReLU gates: 0 <= r(t) <= t however large the weights; the paper's ReLU runs away."""
    T, N, E, H = 40, 8, 4, 16
    p = {k: 3.0 * v for k, v in make_params(rng, E, H).items()}  # weights far too large on purpose
    w_seq, mask = rng.standard_normal((T, N, E)), np.ones((T, N))
    _, cache = lstm.lstm_forward(w_seq, mask, p, "bounded")
    r = cache.r  # r[t] = r(t), t = 0 .. T
    steps = np.arange(T + 1)[:, None, None]
    assert (r >= 0).all() and (r <= steps + 1e-12).all()
    assert r.max() > 1  # the bound is reached in part: the state does accumulate
    with np.errstate(over="ignore", invalid="ignore"):
        _, relu_cache = lstm.lstm_forward(w_seq, mask, p, "relu")
    assert not (np.abs(relu_cache.r) <= steps).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", VARIANTS)
def test_in_place_activation_matches_the_plain_gates_bit_for_bit(rng, variant, dtype):
    """_activate (in place, the ReLU against a row of zeros) gives _gates' bits: -0.0, inf and NaN too."""
    H = 8
    z = rng.standard_normal((37, 4 * H)).astype(dtype)  # 37 rows: not a multiple of any vector width
    special = np.array([-0.0, 0.0, np.inf, -np.inf, np.nan, -np.nan, 1.0, 1e-40], dtype)
    z.flat[: 4 * special.size : 4] = special  # in every gate block
    with np.errstate(invalid="ignore", over="ignore"):
        plain = lstm._gates(z, variant)
        for zeros in (None, np.zeros(4 * H, dtype)):
            fast = lstm._activate(z.copy(), variant, zeros)
            bits = np.int64 if dtype == np.float64 else np.int32
            np.testing.assert_array_equal(fast.view(bits), plain.view(bits))
