"""Optimisers (rmsprop, Adam): the documented equations, torch as an oracle, clipping, state round trips, schedule."""

import numpy as np
import pytest

from minicnnrnn.core import backend
from minicnnrnn.training import optim


def _problem(rng):
    params = {"W": rng.standard_normal((5, 3)), "b": rng.standard_normal(3)}
    grads_seq = [{k: rng.standard_normal(p.shape) for k, p in params.items()} for _ in range(4)]
    return params, grads_seq


def test_step_follows_the_documented_equations(rng):
    params, grads_seq = _problem(rng)
    theta = {k: p.copy() for k, p in params.items()}
    opt = optim.RMSprop(params, decay=0.9, momentum=0.9, weight_decay=1e-2, eps=1e-8)
    v = {k: np.zeros_like(p) for k, p in theta.items()}
    m = {k: np.zeros_like(p) for k, p in theta.items()}
    for grads in grads_seq:
        opt.step(params, {k: g.copy() for k, g in grads.items()}, 0.01)
        for k in theta:
            g = grads[k] + 1e-2 * theta[k]
            v[k] = 0.9 * v[k] + 0.1 * g * g
            m[k] = 0.9 * m[k] + g / (np.sqrt(v[k]) + 1e-8)
            theta[k] = theta[k] - 0.01 * m[k]
    for k in theta:
        np.testing.assert_allclose(params[k], theta[k], rtol=1e-12, atol=1e-12)


def _assert_steps_match(torch, opt, params, topt, tparams, grads_seq, lr):
    """Step our optimiser and torch's through the same gradients; the parameters must agree."""
    for grads in grads_seq:
        opt.step(params, {k: g.copy() for k, g in grads.items()}, lr)
        for k, p in tparams.items():
            p.grad = torch.tensor(grads[k])
        topt.step()
    for k in params:
        np.testing.assert_allclose(params[k], tparams[k].detach().numpy(), rtol=1e-10, atol=1e-12)


def test_matches_torch_rmsprop(rng, torch):
    params, grads_seq = _problem(rng)
    opt = optim.RMSprop(params, decay=0.95, momentum=0.9, weight_decay=1e-4, eps=1e-6)
    tparams = {k: torch.tensor(p.copy(), requires_grad=True) for k, p in params.items()}
    topt = torch.optim.RMSprop(list(tparams.values()), lr=0.003, alpha=0.95, momentum=0.9, weight_decay=1e-4, eps=1e-6)
    _assert_steps_match(torch, opt, params, topt, tparams, grads_seq, lr=0.003)


def test_update_is_in_place_and_keeps_dtype(rng):
    params = {"W": rng.standard_normal((4, 4)).astype(np.float32)}
    array, start = params["W"], params["W"].copy()
    opt = optim.RMSprop(params)
    opt.step(params, {"W": np.ones((4, 4), np.float32)}, 0.1)
    assert params["W"] is array and array.dtype == np.float32
    assert opt.v["W"].dtype == np.float32 and np.all(backend.to_host(opt.v["W"]) > 0)
    assert np.all(array < start)  # a positive gradient moves every weight down


def test_subnormal_weights_become_zero():
    """Weights and moments below float32's smallest normal number leave the step as 0; others keep their value."""
    tiny = np.finfo(np.float32).tiny
    theta = np.array([tiny / 4, -tiny / 1000, tiny, 0.5, -2.0], np.float32)
    assert (np.abs(theta[:2]) < tiny).all() and (theta[:2] != 0).all()  # the first two are subnormal
    params = {"w": theta.copy()}
    opt = optim.RMSprop(params, weight_decay=0.0)
    opt.v["w"][:] = tiny / 8  # the moments decay towards subnormal numbers too
    opt.m["w"][:] = -tiny / 8
    opt.step(params, {"w": np.zeros_like(theta)}, lr=0.0)  # a step that moves nothing
    np.testing.assert_array_equal(backend.to_host(params["w"]), [0, 0, tiny, 0.5, -2.0])
    np.testing.assert_array_equal(backend.to_host(opt.v["w"]), 0)
    np.testing.assert_array_equal(backend.to_host(opt.m["w"]), 0)


@pytest.mark.parametrize("flags", [True, False], ids=["bool-flush", "float-flush"])
@pytest.mark.parametrize("block", [7, 64, None])
def test_fast_update_agrees_with_the_plain_one_bit_for_bit(rng, block, flags):
    """Blocked, in place, flush folded in: the same float32 operations in the same order as the
    equations, with the CPU's masked flush (a bool scratch) and the GPU's plain one. Compared
    bit by bit (int32 views): the sign of a zero and NaN included."""
    tiny = np.finfo(np.float32).tiny
    shape = (5, 11)  # 55 elements: blocks of 7 leave a partial last block
    theta = rng.standard_normal(shape).astype(np.float32)
    # subnormal of both signs, zeros of both signs, the smallest normal, inf and NaN
    theta.flat[:8] = [tiny / 4, -tiny / 1000, 0.0, -0.0, tiny, -tiny / 2, np.inf, np.nan]
    plain = {"theta": theta, "v": np.zeros(shape, np.float32), "m": np.zeros(shape, np.float32)}
    fast = {k: a.copy() for k, a in plain.items()}
    scratch = (np.empty(64, np.float32), np.empty(64, np.float32)) + ((np.empty(64, bool),) if flags else ())
    hyper = (0.9, 0.9, 1e-2, 1e-8)  # decay, momentum, weight decay, eps
    for step in range(5):
        grad = rng.standard_normal(shape).astype(np.float32)
        grad.flat[:6] = [0.0, -0.0, 0.0, -0.0, 0.0, -0.0]  # the weights that only decay
        with np.errstate(invalid="ignore", over="ignore"):  # inf and NaN: on purpose
            optim.rmsprop_update_plain(plain["theta"], grad, plain["v"], plain["m"], 0.01, *hyper)
            optim.rmsprop_update(fast["theta"], grad, fast["v"], fast["m"], 0.01, *hyper, scratch, block)
        for k in plain:
            assert fast[k].dtype == np.float32
            np.testing.assert_array_equal(fast[k].view(np.int32), plain[k].view(np.int32), f"{k} after step {step}")


def test_a_non_contiguous_parameter_is_updated_in_place(rng):
    base = rng.standard_normal((6, 4))
    params, twin = {"W": base.T}, {"W": base.T.copy()}  # a transposed view and its contiguous copy
    opt, opt_twin = optim.RMSprop(params), optim.RMSprop(twin)
    grads = {"W": rng.standard_normal((4, 6))}
    opt.step(params, grads, 0.01)
    opt_twin.step(twin, grads, 0.01)
    np.testing.assert_array_equal(base.T, twin["W"])  # the view's memory moved


def test_clip_by_global_norm(rng):
    grads = {"a": np.full(4, 3.0), "b": np.array([8.0])}
    # global norm = sqrt(4*9 + 64) = 10
    norm = optim.clip_by_global_norm(grads, 5.0)
    assert norm == pytest.approx(10.0)
    assert optim.global_norm(grads) == pytest.approx(5.0)
    np.testing.assert_allclose(grads["a"], np.full(4, 1.5))
    # below the threshold: untouched; disabled: untouched
    same = {"a": np.array([0.3, 0.4])}
    assert optim.clip_by_global_norm(same, 1.0) == pytest.approx(0.5)
    np.testing.assert_allclose(same["a"], [0.3, 0.4])
    big = {"a": np.array([30.0, 40.0])}
    optim.clip_by_global_norm(big, None)
    np.testing.assert_allclose(big["a"], [30.0, 40.0])


def test_nonfinite_norm_is_reported_not_applied():
    grads = {"a": np.array([np.nan, 1.0])}
    assert not np.isfinite(optim.clip_by_global_norm(grads, 1.0))
    assert grads["a"][1] == 1.0


def test_state_dict_round_trip(rng):
    params, grads_seq = _problem(rng)
    opt = optim.RMSprop(params)
    opt.step(params, grads_seq[0], 0.01)
    state = opt.state_dict()
    assert set(state) == {"v/W", "v/b", "m/W", "m/b"}
    # a fresh optimizer loaded from the state continues exactly like the original
    twin = {k: p.copy() for k, p in params.items()}
    opt2 = optim.RMSprop(twin)
    opt2.load_state_dict(state)
    opt.step(params, grads_seq[1], 0.01)
    opt2.step(twin, grads_seq[1], 0.01)
    for k in params:
        np.testing.assert_array_equal(params[k], twin[k])
    with pytest.raises(ValueError):
        opt2.load_state_dict({**state, "v/W": np.zeros((2, 2))})


def test_lr_scale_gives_one_parameter_its_own_rate(rng):
    params, grads_seq = _problem(rng)
    slow = {k: p.copy() for k, p in params.items()}
    full = {k: p.copy() for k, p in params.items()}
    opt_slow = optim.RMSprop(slow, lr_scale={"W": 0.1})
    opt_full = optim.RMSprop(full)
    w = {"W": params["W"].copy()}
    opt_w = optim.RMSprop(w)  # W alone at 0.1 x the rate
    for grads in grads_seq:
        opt_slow.step(slow, {k: g.copy() for k, g in grads.items()}, 0.01)
        opt_full.step(full, {k: g.copy() for k, g in grads.items()}, 0.01)
        opt_w.step(w, {"W": grads["W"].copy()}, 0.001)
    np.testing.assert_allclose(slow["W"], w["W"], rtol=1e-12)
    np.testing.assert_allclose(slow["b"], full["b"], rtol=1e-12)
    assert not np.allclose(slow["W"], full["W"])


# ---------------------------------------------------------------------------
# Adam and the schedule
# ---------------------------------------------------------------------------


def test_adam_follows_algorithm_1_with_decay_on_the_named_parameters(rng):
    params, grads_seq = _problem(rng)
    theta = {k: p.copy() for k, p in params.items()}
    opt = optim.Adam(params, weight_decay=0.1, beta1=0.8, beta2=0.99, eps=1e-7, decayed=["W"])
    m = {k: np.zeros_like(p) for k, p in theta.items()}
    v = {k: np.zeros_like(p) for k, p in theta.items()}
    for t, grads in enumerate(grads_seq, start=1):
        opt.step(params, grads, 0.02)
        for k in theta:
            g = grads[k] + (0.1 * theta[k] if k == "W" else 0.0)
            m[k] = 0.8 * m[k] + 0.2 * g
            v[k] = 0.99 * v[k] + 0.01 * g * g
            theta[k] = theta[k] - 0.02 * (m[k] / (1 - 0.8**t)) / (np.sqrt(v[k] / (1 - 0.99**t)) + 1e-7)
    for k in theta:
        np.testing.assert_allclose(params[k], theta[k], rtol=1e-12, atol=1e-12)
    assert opt.t == len(grads_seq)


def test_adam_matches_torch_adam(rng, torch):
    """torch.optim.Adam's weight_decay is the same L2 term added to every gradient."""
    params, grads_seq = _problem(rng)
    opt = optim.Adam(params, weight_decay=1e-2)
    tparams = {k: torch.tensor(p.copy(), requires_grad=True) for k, p in params.items()}
    topt = torch.optim.Adam(list(tparams.values()), lr=0.003, weight_decay=1e-2)
    _assert_steps_match(torch, opt, params, topt, tparams, grads_seq, lr=0.003)


def test_adam_state_dict_round_trip(rng):
    params, grads_seq = _problem(rng)
    opt = optim.Adam(params, weight_decay=1e-3)
    for grads in grads_seq[:2]:
        opt.step(params, grads, 0.01)
    state = opt.state_dict()
    assert set(state) == {"m/W", "m/b", "v/W", "v/b", "t"} and int(state["t"]) == 2
    twin = {k: p.copy() for k, p in params.items()}
    opt2 = optim.Adam(twin, weight_decay=1e-3)
    opt2.load_state_dict(state)
    for grads in grads_seq[2:]:
        opt.step(params, grads, 0.01)
        opt2.step(twin, grads, 0.01)
    for k in params:
        np.testing.assert_array_equal(params[k], twin[k])  # the bias correction continues at t = 3
    with pytest.raises(ValueError):
        opt2.load_state_dict({**state, "m/b": np.zeros(4)})


def test_cosine_schedule_ends_at_zero():
    assert optim.cosine_schedule(1.0, 0, 10) == 1.0
    assert optim.cosine_schedule(1.0, 5, 10) == pytest.approx(0.5)
    assert optim.cosine_schedule(2.0, 10, 10) == pytest.approx(0.0)
    assert optim.cosine_schedule(2.0, 12, 10) == pytest.approx(0.0)  # held at 0 after the end
    rates = [optim.cosine_schedule(1e-3, e, 20) for e in range(20)]
    assert all(a > b > 0 for a, b in zip(rates, rates[1:]))
