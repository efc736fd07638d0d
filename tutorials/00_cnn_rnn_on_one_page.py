# %% [markdown]
# # Tutorial 00: the whole CNN-RNN on one page
#
# Read this before the package. CNN features come in; a label embedding (Eq. 2), an LSTM
# (Eq. 1, the paper's h_o and h_r of Eq. 3), a projection into the joint space (Eq. 4) and
# tied scores (Eq. 5) give P(next label); backpropagation through time, rmsprop, greedy and
# beam decoding (§3.3, Eq. 6-7) and F1 follow. Only NumPy: every later file of the package
# is the careful (batched, masked, checked, GPU-ready) version of a line on this page.
# `MINICNNRNN_TUTORIAL_FAST=1` shrinks it to a few seconds.

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np

from minicnnrnn.tinyscenes import features  # the one package call: the built-in data

FAST = os.environ.get("MINICNNRNN_TUTORIAL_FAST") == "1"
OUT = os.environ.get("MINICNNRNN_TUTORIAL_OUT", "tutorials/output")
N_TRAIN, N_TEST, E, H, EPOCHS = (1000, 300, 32, 64, 15) if FAST else (4000, 1000, 64, 256, 10)
BATCH, LR, BEAM, MAX_LABELS = 64, 2e-3, 3, 3  # MAX_LABELS: k = 3, the longest path decoded

# %% [markdown]
# ## Data: one fc7 row per picture, L2-normalised, and label sets made into paths (§3.4)
# Labels are tokens 0..K-1, END is K and START K+1. A path lists an image's labels, most
# frequent label first; the RNN reads `[START, a, b]` and must predict `[a, b, END]`.


# %%
def load(split, n):
    I, Y = features.builtin_features(split, n)
    return I / np.linalg.norm(I, axis=1, keepdims=True), Y


I_train, Y_train = load("train", N_TRAIN)
I_test, Y_test = load("test", N_TEST)
(N, D), K = I_train.shape, Y_train.shape[1]
END, START = K, K + 1
counts = Y_train.sum(0).astype(int)  # (a uint8 sum is unsigned: its minus would wrap)
rank = np.argsort(np.argsort(-counts, kind="stable"))  # 0 = the most frequent label


def make_paths(Y):
    """(n, K) 0/1 -> inputs, targets, mask: (T, n), time-major, padded with mask 0."""
    paths = [sorted(np.flatnonzero(y), key=lambda k: rank[k]) for y in Y]
    T = max(len(p) for p in paths) + 1
    inputs, targets, mask = np.full((T, len(Y)), END), np.full((T, len(Y)), END), np.zeros((T, len(Y)))
    for n, p in enumerate(paths):
        inputs[: len(p) + 1, n], targets[: len(p) + 1, n], mask[: len(p) + 1, n] = [START] + p, p + [END], 1
    return inputs, targets, mask


# %% [markdown]
# ## The model: parameters, one step, the loss of a batch and its gradients by hand
# The LSTM's gates use the project's default delta, ReLU capped at 1, `min(max(z, 0), 1)`:
# every gate lies in [0, 1], so the state grows by at most 1 per step (the paper's plain
# ReLU, `max(z, 0)`, can run away on long paths; `rnn/lstm.py` has both).


# %%
def init(rng, dtype=np.float32):
    def normal(fan_in, *shape, gain=1.0):
        return (rng.standard_normal(shape) * gain / np.sqrt(fan_in)).astype(dtype)

    b = np.r_[np.zeros(H), np.full(3 * H, 0.5)].astype(dtype)  # gates i, f, o start near 0.5
    return {"U_l": normal(E, K + 2, E), "U_r": normal(H, H, 4 * H, gain=0.5), "U_w": normal(E, E, 4 * H, gain=0.25),
            "b_lstm": b, "U_o_x": normal(H, H, E), "U_I_x": normal(D, D, E), "b_x": np.full(E, 0.1, dtype)}  # fmt: skip


def lstm_step(p, w, r):
    """Eq. 1 (= Eq. 3's h_o, h_r): w (n, E), r (n, H) -> output o(t), state r(t), gates."""
    g = np.clip(w @ p["U_w"] + r @ p["U_r"] + p["b_lstm"], 0, 1)  # (n, 4H): [x | i | f | o]
    x, i, f, o = np.split(g, 4, axis=1)
    r_new = f * r + i * x
    return r_new * o, r_new, g


def scores(p, out, image):
    """Eq. 4 then Eq. 5: joint vector x_t = ReLU(o(t) U_o_x + I U_I_x + b_x), s = x_t U_l^T."""
    a = out @ p["U_o_x"] + image
    return np.maximum(a, 0) @ p["U_l"][: K + 1].T, a  # START is never an output


def log_softmax(s):
    s = s - s.max(1, keepdims=True)
    return s - np.log(np.exp(s).sum(1, keepdims=True))


def loss_and_grads(p, I, inputs, targets, mask):
    """Softmax cross-entropy of the paths (summed over steps, / images) and its gradients."""
    T, n = inputs.shape
    image = I @ p["U_I_x"] + p["b_x"]  # Eq. 4's image term, the same at every step
    r, loss, caches = np.zeros((n, H), I.dtype), 0.0, []
    for t in range(T):  # forward; padded steps only lose their loss (nothing valid follows them)
        w = p["U_l"][inputs[t]]  # Eq. 2
        out, r_new, g = lstm_step(p, w, r)
        s, a = scores(p, out, image)
        lp = log_softmax(s)
        loss -= (lp[np.arange(n), targets[t]] * mask[t]).sum() / n
        caches.append((w, r, out, r_new, g, a, lp))
        r = r_new
    grads = {name: np.zeros_like(v) for name, v in p.items()}
    dr_next, dimage = np.zeros((n, H), I.dtype), np.zeros_like(image)
    for t in reversed(range(T)):  # backward through time
        w, r, out, r_new, g, a, lp = caches[t]
        ds = np.exp(lp)
        ds[np.arange(n), targets[t]] -= 1
        ds *= mask[t][:, None] / n  # d loss / d s
        grads["U_l"][: K + 1] += ds.T @ np.maximum(a, 0)  # Eq. 5's use of U_l
        da = (ds @ p["U_l"][: K + 1]) * (a > 0)
        grads["U_o_x"] += out.T @ da
        dimage += da
        dout = da @ p["U_o_x"].T
        x, i, f, o = np.split(g, 4, axis=1)
        dr = dout * o + dr_next
        dg = np.concatenate([dr * i, dr * x, dr * r, dout * r_new], axis=1)
        dz = dg * ((g > 0) & (g < 1))  # the capped ReLU passes gradient only inside (0, 1)
        grads["U_w"] += w.T @ dz
        grads["U_r"] += r.T @ dz
        grads["b_lstm"] += dz.sum(0)
        dr_next = dr * f + dz @ p["U_r"].T
        np.add.at(grads["U_l"], inputs[t], dz @ p["U_w"].T)  # Eq. 2's use of U_l
    grads["U_I_x"], grads["b_x"] = I.T @ dimage, dimage.sum(0)
    return loss, grads


def numerical_grad(f, p, name, index, h=1e-5):
    """Centred finite difference of f(p) with respect to p[name][index] (use float64)."""
    old, values = p[name][index], []
    for v in (old + h, old - h):
        p[name][index] = v
        values.append(f(p))
    p[name][index] = old
    return (values[0] - values[1]) / (2 * h)


# %% [markdown]
# ## Decoding: greedy and beam search (§3.3), with no label twice and at most k labels


# %%
def step(p, tokens, r, image):
    """One decoder step: previous tokens (n,) -> log P(next output) (n, K + 1), new state."""
    out, r, _ = lstm_step(p, p["U_l"][tokens], r)
    return log_softmax(scores(p, out, image)[0]), r


def greedy(p, I):
    """The most probable next label at every step, all images at once: (n, D) -> (n, K) bool."""
    image, n = I @ p["U_I_x"] + p["b_x"], len(I)
    r, tokens, Yhat, going = np.zeros((n, H), I.dtype), np.full(n, START), np.zeros((n, K), bool), np.ones(n, bool)
    for _ in range(MAX_LABELS):  # after MAX_LABELS labels only END is left
        lp, r = step(p, tokens, r, image)
        lp[:, :K][Yhat] = -np.inf  # no label twice
        tokens = lp.argmax(1)
        going &= tokens != END
        Yhat[np.flatnonzero(going), tokens[going]] = True
    return Yhat


def beam_search(p, I1):
    """The most probable path (Eq. 6) of one image, keeping B paths per step (Eq. 7)."""
    image = I1[None] @ p["U_I_x"] + p["b_x"]
    beams, best = [((), 0.0, np.zeros((1, H), I1.dtype))], ((), -np.inf)  # (labels, log P, state)
    for t in range(MAX_LABELS + 1):
        grown = []
        for labels, logp, r in beams:
            lp, r_new = step(p, np.array([labels[-1] if labels else START]), r, image)
            lp = lp[0]
            lp[list(labels)] = -np.inf  # no label twice
            if t == MAX_LABELS:
                lp[:K] = -np.inf  # at most k labels: only END is left
            best_j = [j for j in np.argsort(-lp, kind="stable")[:BEAM] if lp[j] > -np.inf]
            grown += [(labels, j, logp + lp[j], r_new) for j in best_j]  # each path's B best outputs
        for labels, j, total, _ in grown:
            if j == END and total > best[1]:
                best = (labels, total)  # a finished candidate path
        beams = sorted([(lab + (j,), s, r) for lab, j, s, r in grown if j != END], key=lambda b: -b[1])[:BEAM]
        if not beams or beams[0][1] <= best[1]:
            break  # no unfinished path can beat the best finished one
    return best[0]


def f1(Y, Yhat):
    """Overall F1 (O-F1) and per-class F1 (C-F1, from the mean precision and recall)."""
    tp = (Y & Yhat).sum(0)
    o_p, o_r = tp.sum() / max(Yhat.sum(), 1), tp.sum() / Y.sum()
    c_p, c_r = np.mean(tp / np.maximum(Yhat.sum(0), 1)), np.mean(tp / np.maximum(Y.sum(0), 1))
    return 100 * 2 * o_p * o_r / (o_p + o_r + 1e-12), 100 * 2 * c_p * c_r / (c_p + c_r + 1e-12)


# %% [markdown]
# ## Check the hand-written gradients, then train with rmsprop


# %%
rng = np.random.default_rng(0)
p64 = {k: v.astype(np.float64) for k, v in init(rng).items()}
batch = make_paths(Y_train[:8])
_, grads = loss_and_grads(p64, I_train[:8].astype(np.float64), *batch)
for name in p64:
    index = tuple(rng.integers(s) for s in p64[name].shape)
    num = numerical_grad(lambda q: loss_and_grads(q, I_train[:8].astype(np.float64), *batch)[0], p64, name, index)
    assert abs(num - grads[name][index]) <= 1e-6 * max(1.0, abs(num)), (name, num, grads[name][index])
print("gradients agree with centred finite differences (float64)")

params, start, losses = init(np.random.default_rng(1)), time.time(), []
cache = {name: np.zeros_like(v) for name, v in params.items()}  # rmsprop's running mean of g^2
for epoch in range(EPOCHS):
    order, total = rng.permutation(N), 0.0
    for s in range(0, N, BATCH):
        rows = order[s : s + BATCH]
        loss, grads = loss_and_grads(params, I_train[rows], *make_paths(Y_train[rows]))
        for name, g in grads.items():
            cache[name] = 0.9 * cache[name] + 0.1 * g * g
            params[name] -= LR * g / (np.sqrt(cache[name]) + 1e-8)
        total += loss * len(rows)
    losses.append(total / N)
    print(f"epoch {epoch + 1:2d}  loss {losses[-1]:.3f}  ({time.time() - start:.1f} s)")

Y = Y_test.astype(bool)
top = np.zeros_like(Y)
top[:, rank < MAX_LABELS] = True  # knows no image: the k most frequent labels for all
beam = np.zeros_like(Y)
for n, i in enumerate(I_test):
    beam[n, list(beam_search(params, i))] = True
for name, Yhat in [("most frequent labels", top), ("greedy", greedy(params, I_test)), (f"beam B={BEAM}", beam)]:
    print(f"{name:21s} O-F1 {f1(Y, Yhat)[0]:5.1f}  C-F1 {f1(Y, Yhat)[1]:5.1f}  labels/img {Yhat.sum(1).mean():.2f}")
assert losses[-1] < losses[0] and f1(Y, beam)[0] > f1(Y, top)[0] + 5, "training did not learn"

# %% [markdown]
# ## Where each line lives in the package
# `lstm_step`: `rnn/lstm.py` (all three variants, masked, fast BPTT); `scores`: `rnn/projection.py`
# (Eq. 4, with dropout) and `rnn/embedding.py` (Eq. 2, 5); `loss_and_grads`: `rnn/model.py`
# (`path_forward` / `path_backward`) and `layers/loss.py`; `step`: `rnn/model.py` (`make_step`);
# `make_paths`: `paths/label_paths.py`; `greedy` and `beam_search`: `paths/beam_search.py` (B = 1 is
# greedy; all images at once); `f1`: `evaluation/metrics.py`; the rmsprop lines: `training/optim.py`
# (with momentum, weight decay, clipping, a cosine schedule and slower rates for `U_r`, `U_w`).

# %%
os.makedirs(OUT, exist_ok=True)
plt.plot(range(1, EPOCHS + 1), losses, marker="o")
plt.xlabel("epoch"), plt.ylabel("training loss per image"), plt.title("CNN-RNN on one page")
plt.savefig(os.path.join(OUT, "00_loss.png"), dpi=80)
