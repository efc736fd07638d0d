# %% [markdown]
# # Tutorial 06: training the CNN-RNN and reading the metrics table
#
# **Takes 4-8 minutes** on a 2-core machine (05, 06 and 08 each took 4-8 minutes on a shared
# one, issue 23); `MINICNNRNN_TUTORIAL_FAST=1 python tutorials/06_training_cnn_rnn.py` runs it in seconds
# with tiny sizes.
#
# The earlier tutorials built the pieces: the LSTM of Eq. 1, the tied label embedding of
# Eq. 2 and 5, the projection of Eq. 4, beam search (§3.3) and the metrics (§4.1). Here we
# put them together the way `python -m minicnnrnn.train` does (§3.4):
#
# 1. turn each image's label *set* into an ordered *path* (most frequent label first);
# 2. take one training step by hand: forward, backward through time, rmsprop;
# 3. see why `train` normalises the CNN features before training;
# 4. train the CNN-RNN and the baselines of Tables 1-3 on the built-in Tiny Scenes
#    features and read the table they print.
#
# Run it with `python tutorials/06_training_cnn_rnn.py`; `MINICNNRNN_TUTORIAL_FAST=1` uses
# tiny sizes (a few seconds). The CNN is the shipped Tiny Scenes network; its fc7
# activations play the role of the paper's VGG16 fc7 features `I`.

# %%
import csv
import json
import os

import numpy as np

from minicnnrnn import train
from minicnnrnn.core import backend
from minicnnrnn.paths import alignment, label_paths
from minicnnrnn.rnn import model
from minicnnrnn.tinyscenes import features, scenes
from minicnnrnn.training import checkpoint, optim
from minicnnrnn.training import data as train_data

FAST = os.environ.get("MINICNNRNN_TUTORIAL_FAST") == "1"
OUT = os.environ.get("MINICNNRNN_TUTORIAL_OUT", "tutorials/output")
os.makedirs(OUT, exist_ok=True)
N_TRAIN, N_TEST = (300, 100) if FAST else (4000, 1000)
# Fast mode trains small models briefly; otherwise the command's defaults (the paper's
# E = 64, H = 512, 20 epochs) are used.
SIZES = ["--epochs", "10", "--embed", "16", "--hidden", "32"] if FAST else []

# %% [markdown]
# ## 1. Features and labels
#
# `builtin_features` draws the pictures, runs the shipped CNN over them and caches the
# fc7 rows on disk, so the second run of this script starts at once. `I` is (N, D) and the
# labels are an (N, K) 0/1 matrix over the K = 20 Tiny Scenes labels.

# %%
I_train, Y_train = features.builtin_features("train", N_TRAIN)
print("features", I_train.shape, "labels", Y_train.shape, f"labels per image {Y_train.sum(1).mean():.2f}")

# %% [markdown]
# ## 2. Label sets become prediction paths (§3.4)
#
# The paper fixes one order for all training paths: labels sorted by their frequency in
# the training set, most frequent first ("easier objects should be predicted first").
# Every path ends with END; the RNN reads START first. Let us build the paths of five
# images with plain Python and compare with `label_paths.make_paths`.

# %%
K = Y_train.shape[1]
END, START = K, K + 1
counts = Y_train.sum(0).astype(int)  # (uint8 sums are unsigned: -counts would wrap)
order = sorted(range(K), key=lambda k: (-counts[k], k))  # most frequent first
rank = {label: r for r, label in enumerate(order)}

batch = Y_train[:5]
paths = [sorted(np.flatnonzero(row), key=rank.get) for row in batch]
T = max(len(p) for p in paths) + 1
inputs = np.full((T, 5), END)
targets = np.full((T, 5), END)
mask = np.zeros((T, 5), np.float32)
for n, path in enumerate(paths):
    inputs[: len(path) + 1, n] = [START] + path  # what the RNN reads
    targets[: len(path) + 1, n] = path + [END]  # what it must predict
    mask[: len(path) + 1, n] = 1

ref = label_paths.make_paths(batch, label_paths.label_order(Y_train, "freq"))
assert all(np.array_equal(a, b) for a, b in zip((inputs, targets, mask), ref))
for path in paths[:3]:
    print(" -> ".join([scenes.LABEL_NAMES[k] for k in path] + ["END"]))

# %% [markdown]
# ## 3. One training step by hand
#
# `model.path_loss` runs Eq. 2, 1, 4 and 5, the softmax cross-entropy over every real
# step, and backpropagation through time; it returns the loss and a gradient per
# parameter. rmsprop (with the paper's momentum 0.9 and weight decay 1e-4) then moves
# each parameter θ:
#
#     g = ∇ + λθ;   v ← ρv + (1-ρ)g²;   m ← μm + g/(√v + ε);   θ ← θ - ηm
#
# We write the update from scratch and check it against `optim.RMSprop`.

# %%
rng = np.random.default_rng(0)
params = model.init_params(K, I_train.shape[1], 16, 32, rng, "relu")
value, grads = model.path_loss(params, I_train[:5], inputs, targets, mask, "relu")
print(f"loss of the five paths before training: {value:.3f} (uniform guessing: {mask.sum() / 5 * np.log(K + 1):.3f})")

lr, rho, mu, lam, eps = 1e-3, 0.9, 0.9, 1e-4, 1e-8
by_hand = {}
for name, theta in params.items():
    g = grads[name] + lam * theta
    v = (1 - rho) * g * g  # v and m start at zero
    m = g / (np.sqrt(v) + eps)
    by_hand[name] = theta - lr * m
opt = optim.RMSprop(params, decay=rho, momentum=mu, weight_decay=lam, eps=eps)
opt.step(params, grads, lr)
print("largest difference from optim.RMSprop:", max(float(np.abs(by_hand[k] - params[k]).max()) for k in params))

# %% [markdown]
# ## 4. Why the features are normalised (`--feature-norm l2`)
#
# Look at the step rmsprop just took: `m = g / sqrt(0.1 g²)`, so *every* entry moved by
# about √10 · lr, whatever the size of its gradient. The image term `I @ U_I_x` of Eq. 4
# adds such moves over the D entries of `I`; CNN features are ReLU outputs (all ≥ 0), so
# they add up to as much as lr · √10 · Σ_d |I_d|. That is the L1 norm of the feature: it
# grows with the feature's size and with D (VGG16's fc7 has D = 4096). Too large, and a
# few steps push every unit of Eq. 4 to zero, where it gets no gradient again.
# `train` divides each feature by its L2 length, which bounds the L1 norm by √D.
# (The same argument explains why `U_r`, whose input r(t) ≥ 0 in the ReLU LSTM, learns
# 100 times slower: docs/training.md, "Stability".)

# %%
D = I_train.shape[1]
freq_order = label_paths.label_order(Y_train, "freq")
for name, feats in (("raw fc7", I_train[:256]), ("l2-normalised", train_data.normalise(I_train[:256], {"mode": "l2"}))):
    p0 = model.init_params(K, D, 16, 32, np.random.default_rng(1), "relu")
    before = feats @ p0["U_I_x"]
    _, g = model.path_loss(p0, feats, *label_paths.make_paths(Y_train[:256], freq_order), "relu")
    optim.RMSprop(p0).step(p0, g, 1e-3)
    moved = np.abs(feats @ p0["U_I_x"] - before).max(axis=1)  # (N,) largest change per image
    l1 = np.abs(feats).sum(1)
    assert (moved <= 1e-3 * np.sqrt(10) * l1 * 1.001).all()  # never above lr·sqrt(10)·|I|_1
    print(
        f"{name:14s} mean L1 norm {l1.mean():7.2f}: one step moved I @ U_I_x by up to {moved.max():.4f} "
        f"({100 * (moved / (1e-3 * np.sqrt(10) * l1)).max():.0f}% of the bound lr·sqrt(10)·|I|_1)"
    )

# %% [markdown]
# ## 5. Train the models of Tables 1-3
#
# `train.main` is the command line: `--compare` trains the CNN-RNN and every baseline
# (`baselines/`) on the same features and prints one row per model. Table 1's KNN and WARP
# are in its table too; below we look at the four models of Table 3:
#
# * **Softmax**: one softmax over the labels, trained on the image's normalised label
#   distribution; predicts the top k = 3 labels.
# * **Binary cross-entropy**: one independent sigmoid per label; top 3.
# * **No RNN**: the CNN-RNN with the LSTM replaced by a linear layer of the previous label's
#   embedding (§4.3): same paths, same beam search, but no memory of the path so far.
# * **CNN-RNN**: the full model; beam search stops when END is the best continuation, so
#   it may predict fewer than 3 labels.

# %%
run_dir = os.path.join(OUT, "06_compare")
train.main(["--compare", "--n-train", str(N_TRAIN), "--n-test", str(N_TEST), *SIZES, "--out", run_dir])

# %% [markdown]
# ## 6. Reading the table
#
# * **C-P, C-R** average precision and recall over the *classes*: every label counts the
#   same, so rare labels (star, cup, traffic_light) weigh as much as person or tree.
# * **O-P, O-R** pool all predictions of all images: dominated by frequent labels.
# * **C-F1, O-F1** are the harmonic means of those pairs (not the mean of per-class F1).
# * **MAP@10** ranks each image's labels by confidence; **mAP** ranks each label's images.
#   These two do not depend on k.
#
# A model that predicts fewer labels than k (the CNN-RNN when it is confident that the
# path is complete) trades recall for precision: compare its O-P and O-R with the top-3
# baselines, which always predict three labels although the average image has about
# three. Below: the training curves and the two F1 scores side by side.

# %%
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

names = ["softmax", "bce", "no-rnn", "cnn-rnn"]
results = {n: json.load(open(os.path.join(run_dir, n, "metrics.json")))["metrics"] for n in names}
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
for n in names:
    rows = list(csv.DictReader(open(os.path.join(run_dir, n, "log.csv"))))
    left.plot([int(r["epoch"]) for r in rows], [float(r["loss"]) for r in rows], marker="o", label=n)
left.set_xlabel("epoch")
left.set_ylabel("training loss per image")
left.set_title("each model's own loss (scales differ)")
left.legend()
x = np.arange(len(names))
right.bar(x - 0.2, [results[n]["C-F1"] for n in names], 0.4, label="C-F1")
right.bar(x + 0.2, [results[n]["O-F1"] for n in names], 0.4, label="O-F1")
right.set_xticks(x, names)
right.set_ylabel("percent")
right.legend()
fig.tight_layout()
figure = os.path.join(OUT, "06_training.png")
fig.savefig(figure, dpi=100)
best = max(names, key=lambda n: results[n]["O-F1"])
print(f"best O-F1: {best} ({results[best]['O-F1']:.1f}); figure saved to {figure}")

# %% [markdown]
# ## 7. Orderless training: the model picks each path's order (`--label-order pla`, `mla`)
#
# A fixed order (frequent labels first) forces rare labels to the end of every path, where
# the model has to get past END first. Yazici et al. (CVPR 2020) align each image's labels
# with the model's own predictions instead, at every training step: run the model greedily
# for as many steps as the image has labels (`alignment.rollout`), then assign the labels to
# the steps with the Hungarian algorithm (`scipy.optimize.linear_sum_assignment`) so that
# the summed cross-entropy is smallest (**MLA**), or keep every correctly predicted label
# where the model put it and assign only the rest (**PLA**). The aligned sequence is then an
# ordinary training path: same loss, same hand-written BPTT (the batch loss of
# `training/kinds.py`, gradient-checked in `python -m minicnnrnn.gradcheck`). Here are the orders the trained
# CNN-RNN above would be given for three training images:

# %%
state = checkpoint.load(os.path.join(run_dir, "cnn-rnn", "best.npz"))
norm = state["config"].feature_norm
I3 = train_data.normalise(I_train[:3], norm)
Y3 = Y_train[:3]
# the model runs on the backend (NumPy or CuPy); the rollout hands back host arrays
params_dev, I3_dev = backend.params_to_device(state["params"]), backend.to_device(np.asarray(I3, np.float32))
step = model.make_step(params_dev, I3_dev, state["config"].variant)  # the variant it was trained with
pred, logp = alignment.rollout(step, len(I3), int(Y3.sum(1).max()))
freq = label_paths.label_order(Y_train, "freq")
for how in ("mla", "pla"):
    for n, seq in enumerate(alignment.align(Y3, pred, logp, how)):
        fixed = [scenes.LABEL_NAMES[k] for k in freq if Y3[n, k]]
        print(f"{how} image {n}: {' -> '.join(scenes.LABEL_NAMES[k] for k in seq)}   (freq: {' -> '.join(fixed)})")
