# %% [markdown]
# # Tutorial 07: beam search, step by step (§3.3, Eq. 6-7, Fig. 5)
#
# A trained CNN-RNN gives, at every step, a softmax over the K labels and END. An
# image's prediction is the *path* (distinct labels, closed by END) of highest
# probability (Eq. 6):
#
#     P(l_1, ..., l_k, END | I) = P(l_1 | I) P(l_2 | I, l_1) ... P(END | I, l_1, ..., l_k)
#
# There are sum_j K!/(K-j)! paths, far too many to try for K = 81, so the paper keeps
# only the B most probable unfinished paths at each step (*beam search*, Fig. 5).
# Here we write it for one image in plain Python, draw what it keeps at each step,
# compare it with `minicnnrnn.paths.beam_search` and with trying every path, and build a
# case where greedy decoding (B = 1) goes wrong and a beam of 2 fixes it.
# Run it with `python tutorials/07_beam_search.py`.

# %%
import itertools
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from minicnnrnn.core import backend
from minicnnrnn.paths import beam_search, tokens
from minicnnrnn.rnn import model

# Everything here is small, so MINICNNRNN_TUTORIAL_FAST=1 changes nothing.
OUT = os.environ.get("MINICNNRNN_TUTORIAL_OUT", "tutorials/output")
os.makedirs(OUT, exist_ok=True)

NAMES = ["person", "dog", "grass", "ball", "sky"]
K = len(NAMES)
END, START = tokens.end_token(K), tokens.start_token(K)
D, E, H = 16, 8, 16

# %% [markdown]
# ## A model to decode
# An untrained CNN-RNN spreads its probability over hundreds of paths, so every path is
# improbable and there is little to see. We therefore first fit a tiny one: four "images"
# (random feature vectors) with known label paths, 200 steps of plain gradient descent
# on the path loss of §3.4 (`model.path_loss`; tutorial 06 trains on real data). A path
# with labels (a, b) is fed as inputs [START, a, b] and trained to predict
# [a, b, END]. Then we decode an image that is a blend of two training images, so the
# model hesitates between their paths.

# %%
rng = np.random.default_rng(0)
params = model.init_params(K, D, E, H, rng, "relu", dtype=np.float64)
train_paths = [(0, 2, 1), (0, 4), (2, 1, 3), (0, 2, 4)]  # e.g. (person, grass, dog)
I_train = np.abs(rng.standard_normal((len(train_paths), D)))
T = 1 + max(len(p) for p in train_paths)
inputs, targets, mask = (np.zeros((T, len(train_paths)), int) for _ in range(3))
for n, labels in enumerate(train_paths):
    inputs[: len(labels) + 1, n] = (START, *labels)
    targets[: len(labels) + 1, n] = (*labels, END)
    mask[: len(labels) + 1, n] = 1
for _ in range(200):
    loss, grads = model.path_loss(params, I_train, inputs, targets, mask, "relu")
    size = math.sqrt(sum(float((g**2).sum()) for g in grads.values()))
    params = {k: v - 0.5 / max(1.0, size) * grads[k] for k, v in params.items()}  # clipped step
print(f"path loss of the four training images: {loss:.4f}")

I = 0.65 * I_train[[2]] + 0.35 * I_train[[3]]  # (1, D): the image to decode
# The model's one-step decoder closes over the LSTM variant and the image term
# I @ U_I_x + b_x of Eq. 4, which is the same at every step: computed once.
model_step = model.make_step(params, I, "relu")


def step(labels, state):
    """log P(next output | I, labels) over the K + 1 outputs, and the new LSTM state."""
    prev = np.array(labels[-1:]) if labels else None  # None: the model is fed START
    lp, state = model_step(prev, state, np.zeros(1, dtype=np.int64))  # row 0: our one image
    return lp[0], state


# %% [markdown]
# ## Beam search for one image, as the paper describes it
# `S` holds at most B unfinished paths (Eq. 7). At each step every path in `S` is
# extended by its B most probable *allowed* outputs (a label already on the path is
# not allowed, END is not allowed before `min_labels` labels), giving up to B x B
# paths. Those ending with END become *candidates*; the B most probable of the others
# are the new `S`.
#
# **When to stop.** Extending a path multiplies its probability by a number <= 1, so
# once the best path in `S` is no more probable than the best candidate, nothing in
# `S` can still win. We stop exactly then (or when `S` is empty) and answer the best
# candidate. With B at least the number of paths nothing is ever dropped, so the answer
# is the exact argmax of Eq. 6.

# %%


def beam_search_one(step, B, min_labels=0):
    """Returns (best labels, best log P, trace); trace[t] = (S after step t, candidates of step t)."""
    S = [((), 0.0, None)]  # (labels, log P, state)
    best, best_logp, trace = (), -math.inf, []
    for t in range(K + 1):
        expansions = []
        for labels, logp, state in S:
            lp, new_state = step(labels, state)
            allowed = [o for o in range(K + 1) if o not in labels and not (o == END and t < min_labels)]
            for o in sorted(allowed, key=lambda o: -lp[o])[:B]:  # its B most probable outputs
                expansions.append((labels + (o,), logp + lp[o], new_state))
        candidates = [e for e in expansions if e[0][-1] == END]
        for labels, logp, _ in candidates:
            if logp > best_logp:
                best, best_logp = labels[:-1], logp
        S = sorted([e for e in expansions if e[0][-1] != END], key=lambda e: -e[1])[:B]
        trace.append((S, candidates))
        if not S or S[0][1] <= best_logp:  # the stopping rule
            break
    return best, best_logp, trace


B = 2
best, best_logp, trace = beam_search_one(step, B)
for t, (S, candidates) in enumerate(trace):
    kept = ", ".join(f"({' '.join(NAMES[l] for l in p)}) {math.exp(lp):.3g}" for p, lp, _ in S)
    ended = ", ".join(f"({' '.join(NAMES[l] for l in p[:-1])} END) {math.exp(lp):.3g}" for p, lp, _ in candidates)
    print(f"step {t + 1}: S = {kept or '{}'};  new candidates: {ended or 'none'}")
print("answer:", [NAMES[l] for l in best], f"P = {math.exp(best_logp):.4f}")

# %% [markdown]
# ## Check: the package, and trying every path
# `minicnnrnn.paths.beam_search.beam_search` does the same for a whole batch of images at
# once (the paths of all images sit in one (images x B) grid). For this small K we
# can also score every path and take the argmax of Eq. 6. Watch B = 1, greedy
# decoding: it commits to the slightly more probable first label, "person", and ends
# on a path less probable than the one a beam of 2 finds by also keeping "grass".

# %%


def every_path():
    """{labels: log P(labels, END | I)} for all ordered subsets of the labels."""
    out = {}
    for j in range(K + 1):
        for labels in itertools.permutations(range(K), j):
            state, logp = None, 0.0
            for prefix_len in range(j + 1):
                lp, state = step(labels[:prefix_len], state)
                logp += lp[labels[prefix_len]] if prefix_len < j else lp[END]
            out[labels] = logp
    return out


paths = every_path()
exact = max(paths, key=paths.get)
found = {}
for n_beam in (1, 2, 3, len(paths)):
    result = beam_search.beam_search(model_step, len(I), beam_size=n_beam)
    found_paths, lengths, log_prob = (backend.to_host(a) for a in (result.paths, result.lengths, result.log_prob))
    labels = tuple(int(l) for l in found_paths[0, : lengths[0]])
    mine = beam_search_one(step, n_beam)
    assert labels == mine[0] and np.isclose(log_prob[0], mine[1])
    found[n_beam] = labels
    print(f"B = {n_beam:3d}: {[NAMES[l] for l in labels]}  P = {math.exp(log_prob[0]):.4f}")
assert labels == exact and np.isclose(log_prob[0], paths[exact])
assert found[1] != exact == found[2]  # greedy misses the best path, B = 2 finds it
print(f"exhaustive over {len(paths)} paths: {[NAMES[l] for l in exact]}  P = {math.exp(paths[exact]):.4f}")

# %% [markdown]
# ## A picture like Fig. 5
# Columns are time steps. Blue boxes are the paths kept in `S` (label added and the
# path's probability), red boxes the paths that ended with END (candidates), and the
# green line the answer.

# %%


def draw(trace, best, title, filename):
    fig, ax = plt.subplots(figsize=(2.6 * (len(trace) + 1), 1.0 + 1.1 * max(len(S) + len(c) for S, c in trace)))
    where = {(): (0, 0)}
    ax.text(0, 0, "START", ha="center", va="center", bbox=dict(fc="lightgrey", ec="k"))
    for t, (S, candidates) in enumerate(trace, start=1):
        for row, (labels, logp, _) in enumerate(S + candidates):
            ended = labels[-1] == END
            y = -row
            name = "END" if ended else NAMES[labels[-1]]
            px, py = where[labels[:-1]]
            on_best = labels == (best + (END,))[: len(labels)]
            ax.plot([px, t], [py, y], color="green" if on_best else "0.6", lw=3 if on_best else 1, zorder=0)
            ax.text(
                t,
                y,
                f"{name}\nP={math.exp(logp):.3g}",
                ha="center",
                va="center",
                fontsize=8,
                bbox=dict(fc="mistyrose" if ended else "lightblue", ec="k"),
            )
            if not ended:
                where[labels] = (t, y)
    ax.set_xlim(-0.6, len(trace) + 0.6)
    ax.set_xticks(range(len(trace) + 1), ["start"] + [f"t={t}" for t in range(1, len(trace) + 1)])
    ax.set_yticks([])
    ax.set_title(title)
    fig.tight_layout()
    path = os.path.join(OUT, filename)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


print("saved", draw(trace, best, f"beam search, B = {B}", "07_beam_search.png"))

# %% [markdown]
# ## When greedy decoding goes wrong
# Greedy decoding (B = 1) commits to the most probable first label. Here is the
# smallest model that shows the trap, written as a table of next-output probabilities
# given the previous label (any function with the step signature can be searched):
# "dog" is the most probable first label (0.40), but nothing follows it with
# confidence, while after "person" (0.35) END is almost certain (0.90).

# %%
table = np.full((K + 2, K + 1), 1e-3)
table[START, [1, 0, 2, END]] = [0.40, 0.35, 0.20, 0.05]  # first step
table[1, [2, 3, 4, END]] = [0.30, 0.25, 0.20, 0.25]  # after dog: no clear choice
table[0, END] = 0.90  # after person: done
table[2, [3, END]] = [0.50, 0.30]  # after grass
table[3, END] = 0.80  # after ball
table /= table.sum(axis=1, keepdims=True)
log_table = np.log(table)
log_table_on_backend = backend.to_device(log_table)  # the search calls the step with backend tokens


def table_step(prev, state, rows):
    """A one-step decoder that is a table: next-output log-probabilities given the previous token."""
    if prev is None:  # the first step: START
        return log_table_on_backend[START : START + 1].repeat(rows.shape[0], axis=0), ()
    return log_table_on_backend[prev], ()


best_log_prob = {}
for n_beam in (1, 2):
    r = beam_search.beam_search(table_step, len(I), beam_size=n_beam)
    r_paths, r_lengths, r_log_prob = (backend.to_host(a) for a in (r.paths, r.lengths, r.log_prob))
    print(f"B = {n_beam}: {[NAMES[l] for l in r_paths[0, : r_lengths[0]]]}  P = {math.exp(r_log_prob[0]):.3f}")
    best_log_prob[n_beam] = r_log_prob[0]
assert best_log_prob[1] < best_log_prob[2]

table_trace = beam_search_one(lambda labels, state: (log_table[labels[-1] if labels else START], None), 2)
print(
    "saved",
    draw(table_trace[2], table_trace[0], "greedy would take 'dog'; B = 2 keeps 'person'", "07_greedy_vs_beam.png"),
)

# %% [markdown]
# ## The search's own confidence per label
# The search also returns a score per label (`BeamResult.confidence`, kept by `train` as
# `Decoded.beam_confidence`): a label on the answer gets 2 + its step probability, any
# other label the highest single-step probability it had in any path the search looked
# at, so emitted labels always come first. AP and MAP@10 rank the labels by another score,
# the probability that the label is anywhere on the model's path, summed over all paths
# (`paths/presence.py`, `Decoded.ranking`): a label the beam never reached still gets its
# share.

# %%
result = beam_search.beam_search(model_step, len(I), beam_size=2)
confidence = backend.to_host(result.confidence)
for label in np.argsort(-confidence[0]):
    emitted = "on the path" if confidence[0, label] >= beam_search.EMITTED_OFFSET else ""
    print(f"{NAMES[label]:>7}  {confidence[0, label]:.3f}  {emitted}")
