# %% [markdown]
# # Tutorial 01: the LSTM of Eq. 1, from scratch
#
# CNN-RNN (Wang et al., CVPR 2016) remembers which labels it has already predicted
# in the state of an LSTM. The paper writes one step of it as (Eq. 1)
#
#     x_t = δ(U_r  r(t-1) + U_w  w_k(t))        candidate
#     i_t = δ(U_ir r(t-1) + U_iw w_k(t))        input gate
#     f_t = δ(U_fr r(t-1) + U_fw w_k(t))        forget gate
#     o_t = δ(U_or r(t-1) + U_ow w_k(t))        output gate
#     r(t) = f_t ⊙ r(t-1) + i_t ⊙ x_t           new state
#     o(t) = r(t) ⊙ o_t                         output
#
# with δ = ReLU. Here we write that step in plain NumPy, derive its backward pass
# by hand, check it with finite differences, and compare with `minicnnrnn.rnn.lstm`.
# Run it with `python tutorials/01_lstm_eq1.py`.

# %%
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from minicnnrnn.core import numgrad
from minicnnrnn.rnn import lstm

FAST = os.environ.get("MINICNNRNN_TUTORIAL_FAST") == "1"
OUT = os.environ.get("MINICNNRNN_TUTORIAL_OUT", "tutorials/output")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(0)

# Sizes: N paths in a batch, E = embedding size, H = state size (paper: 64, 512).
N, E, H = 3, 4, 5

# %% [markdown]
# ## The weights
# We store a batch of vectors as rows (N, E), so a matrix acts from the right:
# `w @ U_w`. Instead of eight matrices we keep two, each holding four blocks side by
# side in the order [x | i | f | o]: `U_r: (H, 4H)` and `U_w: (E, 4H)`. One matrix
# product then computes all four gates at once.

# %%
U_r = rng.standard_normal((H, 4 * H)) / np.sqrt(H)
U_w = rng.standard_normal((E, 4 * H)) / np.sqrt(E)
b = 0.5 * np.ones(4 * H)  # a bias (not in the paper) that opens every gate a bit


def relu(a):
    return np.maximum(a, 0)


def my_step(w, r_prev):
    z = r_prev @ U_r + w @ U_w + b  # (N, 4H): all pre-activations
    g = relu(z)  # δ = ReLU
    x, i, f, o = np.split(g, 4, axis=1)
    r = f * r_prev + i * x
    return r * o, r, (w, r_prev, z, x, i, f, o, r)


w = rng.standard_normal((N, E))
r_prev = rng.standard_normal((N, H))
out, r, cache = my_step(w, r_prev)
print("o(t) of the first path:", np.round(out[0], 3) + 0.0)  # + 0.0 turns -0.0 into 0.0

# %% [markdown]
# ## The backward pass, by hand
# Given dL/do(t) and dL/dr(t) (the latter comes from the next time step), walk the
# equations backwards with the product rule:
#
# * o(t) = r ⊙ o_t          → do_t = do ⊙ r,   and r receives do ⊙ o_t
# * r = f ⊙ r(t-1) + i ⊙ x  → df = dr ⊙ r(t-1), di = dr ⊙ x, dx = dr ⊙ i, and r(t-1) receives dr ⊙ f
# * g = ReLU(z)             → dz = dg ⊙ [z > 0]
# * z = r(t-1) U_r + w U_w  → dU_r = r(t-1)^T dz, dU_w = w^T dz, dr(t-1) += dz U_r^T, dw = dz U_w^T


# %%
def my_step_backward(d_out, d_r, cache):
    w, r_prev, z, x, i, f, o, r = cache
    d_o_gate = d_out * r
    d_r = d_r + d_out * o
    dg = np.concatenate([d_r * i, d_r * x, d_r * r_prev, d_o_gate], axis=1)  # [dx | di | df | do]
    dz = dg * (z > 0)
    return {"w": dz @ U_w.T, "r_prev": d_r * f + dz @ U_r.T, "U_r": r_prev.T @ dz, "U_w": w.T @ dz, "b": dz.sum(axis=0)}


# %% [markdown]
# ## Check it with finite differences
# Take the scalar L = Σ o(t) ⊙ G_o + Σ r(t) ⊙ G_r for fixed random G. Its gradient is
# what the backward returns for d_out = G_o, d_r = G_r. Nudge each input by ±h and
# compare (centred differences, float64).

# %%
G_o, G_r = rng.standard_normal((N, H)), rng.standard_normal((N, H))


def L():
    out, r, _ = my_step(w, r_prev)
    return float((out * G_o).sum() + (r * G_r).sum())


mine = my_step_backward(G_o, G_r, cache)
inputs = {"w": w, "r_prev": r_prev, "U_r": U_r, "U_w": U_w, "b": b}
for name, array in inputs.items():
    numeric = numgrad.numerical_gradient(lambda _: L(), array)
    print(f"{name:7s} max relative error {numgrad.rel_error(mine[name], numeric):.1e}")
    assert numgrad.rel_error(mine[name], numeric) < 1e-6

# %% [markdown]
# ## Compare with the package
# `minicnnrnn.rnn.lstm.lstm_step_forward` takes the same weights in a dict with the paper's
# names (`b_lstm` is the optional bias) and returns ((o, r), cache).

# %%
params = {"U_r": U_r, "U_w": U_w, "b_lstm": b}
(pkg_out, pkg_r), pkg_cache = lstm.lstm_step_forward(w, r_prev, params, "relu")
dw, dr_prev, grads = lstm.lstm_step_backward(G_o, G_r, pkg_cache)
assert np.allclose(pkg_out, out) and np.allclose(pkg_r, r)
assert np.allclose(dw, mine["w"]) and np.allclose(dr_prev, mine["r_prev"])
assert all(np.allclose(grads[k], mine[k]) for k in ("U_r", "U_w")) and np.allclose(grads["b_lstm"], mine["b"])
print("package step_forward/step_backward agree with the from-scratch version")

# %% [markdown]
# ## A whole path, and why the initialisation matters
# `lstm.lstm_forward` runs Eq. 1 over a time-major batch (T, N, E) starting from r(0) = 0,
# with a mask for paths shorter than T: at a padded step the state is kept and the
# output is 0. Below, path 2 ends after 3 steps; its state then stays flat.
#
# With δ = ReLU nothing squashes the gates into (0, 1): a forget gate above 1
# makes the state grow, and a larger state opens the gates further. We feed label
# embeddings from `model.init_params` (norm about 1) to the LSTM twice: once with
# its initial weights (gate biases 0.5 and small weights, so f_t starts near 0.5 and
# the state settles), once with the common default N(0, 1/fan_in) for U_r and U_w
# (2 and 4 times larger than `init_params` draws them).
#
# A third run uses those same large weights with `variant="bounded"`: every gate is a
# ReLU capped at 1, `min(max(z, 0), 1)`. Then f_t ≤ 1 and i_t ⊙ x_t ≤ 1, so each state
# entry grows by at most 1 per step, r(t) ≤ t, and |r(t)| ≤ t·√H whatever the weights.
# This is what `train` uses by default: the paper's ReLU below the cap, without the
# runaway on long paths (docs/training.md, "Stability").

# %%
from minicnnrnn.paths.tokens import start_token  # noqa: E402
from minicnnrnn.rnn import model  # noqa: E402 (imported where it is first needed)

K, T, H_big = 10, (12 if FAST else 20), (16 if FAST else 128)
params = model.init_params(K, 1, E, H_big, rng, "relu", dtype=np.float64)
tokens = np.r_[start_token(K), rng.integers(0, K, T - 1)]
w_seq = np.stack([params["U_l"][tokens]] * 2, axis=1)  # (T, 2, E): the same labels twice
mask = np.ones((T, 2))
mask[3:, 1] = 0  # path 2: 3 steps, then padding


def state_norms(p, variant="relu"):
    with np.errstate(over="ignore", invalid="ignore"):  # the second run overflows
        o_seq, seq_cache = lstm.lstm_forward(w_seq, mask, p, variant)
        return np.linalg.norm(seq_cache.r, axis=2)  # |r(t)|, t = 0 .. T, per path


norms = state_norms(params)
large = dict(params, U_r=2 * params["U_r"], U_w=4 * params["U_w"])
wild = state_norms(large)
capped = state_norms(large, "bounded")
print("|r(t)|, path 1, init_params   :", np.round(norms[:, 0], 3))
print("|r(t)|, path 2, padded after 3:", np.round(norms[:, 1], 3))
print("|r(t)|, path 1, N(0, 1/fan_in):", np.array2string(wild[:, 0], precision=2))
print("   the same, bounded gates    :", np.array2string(capped[:, 0], precision=2))
print(f"final |r(T)|: {norms[-1, 0]:.3f} with init_params, {wild[-1, 0]:.3g} with N(0, 1/fan_in)")
steps = np.arange(T + 1)
assert (capped[:, 0] <= steps * np.sqrt(H_big) + 1e-9).all()  # the bound |r(t)| <= t sqrt(H) holds
print(f"bounded gates: |r(T)| = {capped[-1, 0]:.2f}, within the bound T sqrt(H) = {T * np.sqrt(H_big):.1f}")

fig, ax = plt.subplots(figsize=(6, 3.2))
ax.semilogy(np.arange(1, T + 1), norms[1:, 0], "o-", label="init_params")
ax.semilogy(np.arange(1, T + 1), norms[1:, 1], "s--", label="init_params, padded after t = 3")
ax.semilogy(np.arange(1, T + 1), wild[1:, 0], "^-", label="U_r, U_w ~ N(0, 1/fan_in)")
ax.semilogy(np.arange(1, T + 1), capped[1:, 0], "v-", label="the same weights, bounded gates")
ax.set_ylim(0.05, 1e6)  # the N(0, 1/fan_in) curve leaves the chart
overflow = np.flatnonzero(~np.isfinite(wild[:, 0]))
if overflow.size:
    ax.annotate(f"N(0, 1/fan_in): |r(t)| = inf from t = {overflow[0]}", (0.02, 0.03), xycoords="axes fraction")
ax.set_xlabel("time step t")
ax.set_ylabel("|r(t)|")
ax.set_title("Eq. 1 state along a label path (ReLU and capped-ReLU LSTM)")
ax.legend()
fig.tight_layout()
path = os.path.join(OUT, "01_lstm_state.png")
fig.savefig(path)
print("saved", path)
