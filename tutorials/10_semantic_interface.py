# %% [markdown]
# # Tutorial 10: the semantic interface, a CNN-RNN on top of per-label concepts (beyond the paper)
#
# In the paper the RNN sees the CNN feature I directly (Eq. 4: `x = ReLU(o U_o_x + I U_I_x + b_x)`),
# so it has to learn two things at once: which labels the picture shows (evidence) and how
# labels go together (order, when to stop, which exclude each other). Liu et al. ("Semantic
# Regularisation for Recurrent Image Annotation", CVPR 2017) split the two: a layer of K
# **concepts**, one sigmoid per label trained with binary cross-entropy, sits between the CNN
# and the RNN, and Eq. 4 reads the concepts instead of I. Here the concepts come from the
# project's BCE classifier itself, the network of the `bce` baseline (`layers/classifier.py`):
# the image half of Eq. 4, a ReLU, dropout, and one score per label:
#
#     h = I c_U_I_x + c_b_x          (N, E) the image half of Eq. 4
#     x = dropout(ReLU(h))           (N, E)
#     a = x c_U_l^T + c_b_l          (N, K) concept scores
#     c = sigmoid(a)                 (N, K) P(label on the image), one per label
#     x_t = ReLU(o U_o_x + c U_I_x + b_x)    Eq. 4 with c as the image, U_I_x: (K, E)
#
# The concept network's parameters carry the prefix `c_`, because the RNN has a `U_I_x`,
# `b_x` and `U_l` of its own. Training goes in three stages: (1) the concepts alone, by BCE
# (exactly the bce baseline's training); (2) the RNN alone, on the fixed concepts, by the
# path loss of §3.4; (3) both, by BCE + path loss, where the path loss's gradient also flows
# back through the sigmoid into the concept network. Here we build the concept network and
# the stage-3 chain by hand, check both against `minicnnrnn.rnn.semantic` and finite
# differences, then train `--model sr-cnn-rnn` on the built-in data and look at what its
# concepts say. Run it with `python tutorials/10_semantic_interface.py`.

# %%
import csv
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from minicnnrnn import train
from minicnnrnn.baselines import classifiers
from minicnnrnn.core import backend, numgrad
from minicnnrnn.layers import dropout
from minicnnrnn.paths import tokens
from minicnnrnn.rnn import model, semantic
from minicnnrnn.tinyscenes import scenes
from minicnnrnn.training import checkpoint, kinds
from minicnnrnn.training import data as train_data

FAST = os.environ.get("MINICNNRNN_TUTORIAL_FAST") == "1"
OUT = os.environ.get("MINICNNRNN_TUTORIAL_OUT", "tutorials/output")
os.makedirs(OUT, exist_ok=True)

# %% [markdown]
# ## 1. The concept network and its BCE, from scratch
#
# The BCE of one entry is `-[y log c + (1 - y) log(1 - c)]`; summed over the K labels and
# divided by N, as the BCE baseline does. Its gradient with respect to the score is the
# famous `(c - y) / N`: the sigmoid's derivative `c (1 - c)` cancels the `1 / c` and
# `1 / (1 - c)` of the logs. From there the backward walks the three lines back: the score
# layer (`dx = da c_U_l`, `dc_U_l = da^T x`), the dropout (the same mask again), the ReLU
# (only where `h > 0`) and the image half (`dc_U_I_x = I^T dh`).

# %%
rng = np.random.default_rng(0)
N, D, K, E, H = 4, 6, 5, 3, 4
I = rng.standard_normal((N, D))
Y = (rng.random((N, K)) < 0.4).astype(np.float64)
params = semantic.sr_init_params(K, D, E, H, rng, "bounded", np.float64)
params["c_b_l"] += rng.standard_normal(K)  # concepts away from 0.5
keep = backend.to_host(dropout.make_mask((N, E), 0.25, rng, np.float64))  # 0 or 1 / (1 - p), drawn once


def concept_forward_by_hand():
    """The concept network, forward: returns c (N, K) and what the backward needs."""
    h = I @ params["c_U_I_x"] + params["c_b_x"]
    x = np.maximum(h, 0) * keep
    a = x @ params["c_U_l"].T + params["c_b_l"]
    return 1 / (1 + np.exp(-a)), (h, x)


def concept_backward_by_hand(da, saved):
    """The concept network, backward from the gradient of its scores ``da`` (N, K)."""
    h, x = saved
    dx = da @ params["c_U_l"]
    dh = dx * keep * (h > 0)
    return {"c_U_I_x": I.T @ dh, "c_b_x": dh.sum(axis=0), "c_U_l": da.T @ x, "c_b_l": da.sum(axis=0)}


def concept_bce():
    """Stage 1 by hand: the concepts' BCE and its gradients."""
    c, saved = concept_forward_by_hand()
    value = -(Y * np.log(c) + (1 - Y) * np.log(1 - c)).sum() / N
    return value, concept_backward_by_hand((c - Y) / N, saved)


value, grads = concept_bce()
package_value, package_grads = semantic.sr_loss(params, I, Y, None, None, None, "bounded", 1, None, keep)
network = {name[2:]: params[name] for name in grads}  # the same arrays without the prefix
bce_value, _ = classifiers.classifier_loss("bce", network, I, Y, keep)
print(f"BCE by hand {value:.10f}, rnn/semantic.py {package_value:.10f}, the bce baseline {bce_value:.10f}")
for name in grads:
    print(f"  {name}: largest difference from the package {np.abs(grads[name] - package_grads[name]).max():.1e}")
    assert numgrad.rel_error(grads[name], package_grads[name]) < 1e-12

# centred finite differences (core/numgrad.py, as in tutorials 01 and 02)
numeric = numgrad.numerical_gradient(lambda _: concept_bce()[0], params["c_U_I_x"])
print(f"  c_U_I_x against finite differences: {np.abs(numeric - grads['c_U_I_x']).max():.1e}")
assert numgrad.rel_error(numeric, grads["c_U_I_x"]) < numgrad.TOLERANCE

# %% [markdown]
# ## 2. Stage 3: the path loss reaches the concepts
#
# In stage 3 the path loss depends on the concept network through c.
# `model.path_backward(..., image_grad=True)` returns the gradient of the path loss with
# respect to its image input, here dc (N, K); the chain rule through the sigmoid gives
# `da = dc * c (1 - c)`, added to the BCE's `da` before the walk back through the network.
# We write the chain by hand on four label paths and check it with finite differences of
# the package's stage-3 loss, `semantic.sr_loss(..., stage=3)` (the loss training runs).

# %%
S, END = tokens.start_token(K), tokens.end_token(K)
inputs = np.array([[S, S, S, S], [2, 0, 1, 4], [3, END, 0, 0]])
targets = np.array([[2, 0, 1, 4], [3, END, 0, END], [END, 0, END, 0]])
mask = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 0, 1, 0]], dtype=np.float64)
c, saved = concept_forward_by_hand()
path_value, path_grads = model.path_loss(params, c, inputs, targets, mask, "bounded")
scores, cache = model.path_forward(params, c, inputs, mask, "bounded")
probs = np.exp(scores - scores.max(-1, keepdims=True))
probs /= probs.sum(-1, keepdims=True)
dscores = probs.copy()  # softmax - one_hot(target), per real step, divided by N
for t, n in zip(*np.nonzero(mask)):
    dscores[t, n, targets[t, n]] -= 1
dscores *= mask[..., None] / N
_, dc = model.path_backward(dscores, cache, image_grad=True)
da = (c - Y) / N + dc * c * (1 - c)  # the BCE's share plus the path loss's share
by_hand = concept_backward_by_hand(da, saved)


def stage3():
    return semantic.sr_loss(params, I, Y, inputs, targets, mask, "bounded", 3, None, keep)


value3, grads3 = stage3()
print(f"stage-3 loss: BCE {value:.4f} + path {path_value:.4f} = {value + path_value:.4f} (package {value3:.4f})")
for name in by_hand:
    print(f"d{name} by hand vs the package: {np.abs(by_hand[name] - grads3[name]).max():.1e}")
    assert numgrad.rel_error(by_hand[name], grads3[name]) < 1e-12
numeric = numgrad.numerical_gradient(lambda _: stage3()[0], params["c_U_I_x"])
print(f"dc_U_I_x against finite differences of the stage-3 loss: {np.abs(numeric - by_hand['c_U_I_x']).max():.1e}")
assert numgrad.rel_error(numeric, by_hand["c_U_I_x"]) < numgrad.TOLERANCE
print("(every stage and LSTM variant: python -m minicnnrnn.gradcheck --only sr-cnn-rnn)")

# %% [markdown]
# ## 3. Training in stages on the built-in data
#
# `--model sr-cnn-rnn` runs the three stages: `--sr-concept-epochs` epochs of stage 1, then
# `--sr-rnn-epochs` of stage 2, then stage 3 for the rest. The epoch loop asks the model
# kind for each epoch's loss (`ModelKind.epoch_loss`, `training/kinds.py`), so it never
# needs to know about stages. As for every model, the validation split chooses the epoch
# that is scored. The training loss jumps where a stage starts: stage 2 measures the path
# loss instead of the BCE, stage 3 their sum.

# %%
run_dir = os.path.join(OUT, "sr_run")
sizes = ["--n-train", "300", "--n-test", "100", "--epochs", "6", "--embed", "16", "--hidden", "32"]
stages = ["--sr-concept-epochs", "2", "--sr-rnn-epochs", "2"]
if not FAST:
    sizes = ["--n-train", "2000", "--n-test", "500", "--epochs", "12", "--hidden", "128"]
    stages = ["--sr-concept-epochs", "4", "--sr-rnn-epochs", "4"]
train.main(["--model", "sr-cnn-rnn", *sizes, *stages, "--out", run_dir, "--overwrite", "--threads", "1"])
with open(os.path.join(run_dir, "log.csv"), encoding="utf-8") as f:
    log = list(csv.DictReader(f))

# %% [markdown]
# ## 4. What the concepts say
#
# The trained model's concepts are per-label probabilities of their own (stage 1 trains the
# bce baseline's network). The RNN then names labels in order and decides when
# to stop, reading them. Below: the loss by epoch and stage, and for six test pictures
# the concept probabilities next to the true labels and the labels the model predicted.

# %%
state = checkpoint.load(os.path.join(run_dir, "best.npz"))
cfg = state["config"]
data = train_data.load_builtin(int(sizes[1]), int(sizes[3]))
I_test = train_data.normalise(np.asarray(data.test_features[:6]), cfg.feature_norm)
dev = backend.params_to_device(state["params"])
concepts = backend.to_host(semantic.concept_probabilities(dev, backend.to_device(I_test)))

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1, 1.6]})
epochs = [int(r["epoch"]) for r in log]
stage_of = [semantic.stage_at(e - 1, cfg.sr_concept_epochs, cfg.sr_rnn_epochs) for e in epochs]
for stage, colour in zip((1, 2, 3), ("tab:blue", "tab:orange", "tab:green")):
    picked = [(e, float(r["loss"])) for e, r, s in zip(epochs, log, stage_of) if s == stage]
    if picked:
        ax1.plot(*zip(*picked), "o-", color=colour, label=f"stage {stage}")
ax1.set_xlabel("epoch")
ax1.set_ylabel("training loss per image")
ax1.legend()
ax2.imshow(concepts, vmin=0, vmax=1, cmap="Greys", aspect="auto")
truth = np.asarray(data.test_labels[:6])
rows, cols = np.nonzero(truth)
ax2.scatter(cols, rows, marker="s", facecolors="none", edgecolors="tab:red", s=90, label="true label")
predicted, _ = kinds.predict_sets(cfg, dev, I_test)  # as train chose on validation (cfg.decode)
rows, cols = np.nonzero(predicted)
ax2.scatter(cols, rows, marker="x", color="tab:blue", s=40, label="predicted")
ax2.set_xticks(range(len(scenes.LABEL_NAMES)))
ax2.set_xticklabels(scenes.LABEL_NAMES, rotation=70, fontsize=7)
ax2.set_ylabel("test picture")
ax2.set_title("concepts c (dark = likely), true labels boxed, predicted crossed")
ax2.legend(loc="upper right", fontsize=7)
fig.tight_layout()
figure = os.path.join(OUT, "10_semantic_interface.png")
fig.savefig(figure, dpi=100)
print(f"figure saved to {figure}")

# %% [markdown]
# Where next: `python -m minicnnrnn.train --compare` puts SR-CNN-RNN in a row beside the
# CNN-RNN and the baselines, and `benchmarks/bench_learning.py` compares them over seeds.
# The code of this tutorial is `minicnnrnn/rnn/semantic.py` (`concept_forward`, `sr_loss`,
# `stage_at`), `layers/classifier.py` (the concept network), `rnn/model.py`
# (`path_backward(image_grad=True)`) and the `sr-cnn-rnn` row of `training/kinds.py`.
