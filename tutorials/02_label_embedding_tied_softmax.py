# %% [markdown]
# # Tutorial 02: one matrix for label embeddings and label scores (Eq. 2 and Eq. 5)
#
# CNN-RNN reads labels and writes labels with the same matrix U_l (K + 2 rows of
# size E: K labels, END = K, START = K + 1):
#
# * Eq. 2, reading: the embedding of label k is w_k = U_l e_k, i.e. row k of U_l.
#   It is fed to the LSTM at the next time step.
# * Eq. 5, writing: the score of label k is s_k = w_k . x_t, the dot product of the
#   same row with the joint-space vector x_t; softmax(s) is the probability of the
#   next label (§3.2). START is only read, never scored.
#
# Because U_l is used twice, its gradient is the sum of two parts. We build both
# uses from scratch, derive the gradient, check it numerically and compare with
# `minicnnrnn.rnn.embedding`. Run it with `python tutorials/02_label_embedding_tied_softmax.py`.

# %%
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from minicnnrnn.core import numgrad
from minicnnrnn.layers import loss
from minicnnrnn.rnn import embedding

FAST = os.environ.get("MINICNNRNN_TUTORIAL_FAST") == "1"
OUT = os.environ.get("MINICNNRNN_TUTORIAL_OUT", "tutorials/output")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(0)

K, E = (5, 4) if FAST else (20, 16)
END, START = K, K + 1
U_l = rng.standard_normal((K + 2, E)) / np.sqrt(E)

# %% [markdown]
# ## Eq. 2: a one-hot product is a row lookup
# Multiplying the one-hot vector e_k by U_l (in our row convention `e_k @ U_l`)
# picks row k. Code never builds the one-hot vector for the forward pass; it indexes.

# %%
k = 3
e_k = np.eye(K + 2)[k]
assert np.allclose(e_k @ U_l, U_l[k])
print("w_3 =", np.round(U_l[k], 3))

# %% [markdown]
# ## A tiny model that uses U_l both ways
# To isolate the tying, replace the LSTM and the projection by the simplest map
# that still depends on the input label: x = w ⊙ y for a fixed vector y. For a batch
# of N input tokens `a` and targets `b`:
#
#     w = U_l[a]                        (N, E)      Eq. 2
#     x = w * y                         (N, E)      stand-in for Eq. 1 and Eq. 4
#     s = x @ U_l[:K+1].T               (N, K + 1)  Eq. 5 (labels and END)
#     L = -(1/N) Σ_n log softmax(s_n)[b_n]

# %%
N = 6
a = np.array([START, START, 0, 2, 2, 4])  # inputs: START and some labels
b = np.array([0, 2, 4, 4, END, END])  # targets: labels and END
y = rng.standard_normal((N, E))


def my_forward(U_l):
    w = U_l[a]
    x = w * y
    s = x @ U_l[: K + 1].T
    shifted = s - s.max(axis=1, keepdims=True)  # log-sum-exp, stable
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -logp[np.arange(N), b].sum() / N, (w, x, s, logp)


L, (w, x, s, logp) = my_forward(U_l)
print(f"loss {L:.4f}  (uniform guessing: log(K + 1) = {np.log(K + 1):.4f})")

# %% [markdown]
# ## The gradient of U_l: two contributions
# * Softmax cross-entropy: dL/ds = (softmax(s) - one_hot(b)) / N.
# * Scores, s = x U_l[:K+1]^T: dx = ds U_l[:K+1], and the **score part**
#   dU_l[:K+1] += ds^T x (every scored row gets some gradient; START none).
# * Stand-in, x = w ⊙ y: dw = dx ⊙ y.
# * Embedding, w = U_l[a]: the **embedding part** adds dw[n] to row a[n]
#   (a scatter-add; rows used several times get the sum).

# %%
ds = (np.exp(logp) - np.eye(K + 1)[b]) / N
dU_scores = np.zeros_like(U_l)
dU_scores[: K + 1] = ds.T @ x
dx = ds @ U_l[: K + 1]
dw = dx * y
dU_embed = np.zeros_like(U_l)
np.add.at(dU_embed, a, dw)  # scatter-add over repeated tokens
dU_l = dU_scores + dU_embed

numeric = numgrad.numerical_gradient(lambda U: my_forward(U)[0], U_l.copy())
print(f"both parts      : max relative error {numgrad.rel_error(dU_l, numeric):.1e}")
print(f"score part only : max relative error {numgrad.rel_error(dU_scores, numeric):.1e}")
print(f"embed part only : max relative error {numgrad.rel_error(dU_embed, numeric):.1e}")
assert numgrad.rel_error(dU_l, numeric) < 1e-6
assert numgrad.rel_error(dU_scores, numeric) > 1e-2 and numgrad.rel_error(dU_embed, numeric) > 1e-2

# %% [markdown]
# Only the sum matches the finite differences. Row START gets only the embedding
# part (it is never scored); row END gets only the score part (it is never an input).

# %% [markdown]
# ## Compare with the package
# `embedding.embed_forward/embed_backward` (Eq. 2) and
# `embedding.tied_scores_forward/tied_scores_backward` (Eq. 5), with
# `loss.softmax_cross_entropy` (whose mask lets padded steps count for nothing;
# here every step counts). The package does the scatter-add as a one-hot matrix
# product, the same code on NumPy and CuPy.

# %%
w_pkg, e_cache = embedding.embed_forward(a, U_l)
s_pkg, s_cache = embedding.tied_scores_forward(w_pkg * y, U_l, K + 1)
L_pkg, ds_pkg = loss.softmax_cross_entropy(s_pkg, b, np.ones(N))
dx_pkg, score_grads_pkg = embedding.tied_scores_backward(ds_pkg, s_cache)
dU_scores_pkg = score_grads_pkg["U_l"]
dU_embed_pkg = embedding.embed_backward(dx_pkg * y, e_cache)["U_l"]
assert np.isclose(L_pkg, L)
assert np.allclose(dU_scores_pkg, dU_scores) and np.allclose(dU_embed_pkg, dU_embed)
print("package embedding / tied scores / loss agree with the from-scratch version")

# %% [markdown]
# ## What to look at
# The size of each row's gradient from each use. Labels that are both read and
# written get both; START only the embedding part, END only the score part.

# %%
rows = np.arange(K + 2)
names = [str(i) for i in range(K)] + ["END", "START"]
fig, ax = plt.subplots(figsize=(max(7.0, 0.5 * (K + 2)), 3))  # room for every row's name
ax.bar(rows - 0.2, np.linalg.norm(dU_scores, axis=1), width=0.4, label="score part (Eq. 5)")
ax.bar(rows + 0.2, np.linalg.norm(dU_embed, axis=1), width=0.4, label="embedding part (Eq. 2)")
ax.set_xticks(rows)
ax.set_xticklabels(names, fontsize=8)
ax.set_xlabel("row of U_l")
ax.set_ylabel("|dL/dU_l[row]|")
ax.set_title("One matrix, two gradient contributions")
ax.legend()
fig.tight_layout()
path = os.path.join(OUT, "02_tied_gradients.png")
fig.savefig(path)
print(
    f"|dU_l[START]| = {np.linalg.norm(dU_l[START]):.4f} (embedding only), "
    f"|dU_l[END]| = {np.linalg.norm(dU_l[END]):.4f} (scores only)"
)
print("saved", path)
