# %% [markdown]
# # Tutorial 05: the built-in dataset (Tiny Scenes) and pretraining its small CNN
#
# **Takes 4-8 minutes** on a 2-core machine (05, 06 and 08 each took 4-8 minutes on a shared
# one, issue 23); `MINICNNRNN_TUTORIAL_FAST=1 python tutorials/05_builtin_dataset_and_pretraining.py` runs it in seconds
# with tiny sizes.
#
# The paper's point (§1) is that labels depend on each other: sky and cloud come
# together, water and cars almost never do, and a small object that is hard to see
# on its own (a runway under an airplane, a hat on a person) is easy to infer once
# the bigger object is known. A CNN-RNN predicts labels one after another, so each
# prediction can use the labels already predicted (Eq. 6).
#
# Tiny Scenes (`minicnnrnn.tinyscenes.scenes`) is a procedural picture world that has
# exactly these properties, so that the model has something to exploit on a laptop
# with no download. In this tutorial we
#
# 1. draw pictures and measure, from scratch, how much one label tells about another;
# 2. look at the three kinds of dependency: implication, exclusion, higher order;
# 3. see what the shipped CNN (trained on a *source task*, not on the labels) gives a
#    simple per-label head, why small objects are missed, and how context helps;
# 4. pretrain a small VGG-style CNN for a few steps on that source task with our
#    hand-written backward pass, after checking it against finite differences.
#
# Run it from the repository root (after `pip install -e .`) with
# `python tutorials/05_builtin_dataset_and_pretraining.py`.

# %%
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from minicnnrnn import pretrain
from minicnnrnn.cnn import preprocess, vgg
from minicnnrnn.core import backend, numgrad
from minicnnrnn.evaluation import metrics
from minicnnrnn.layers import loss
from minicnnrnn.tinyscenes import features, scenes, source_task, stats

FAST = os.environ.get("MINICNNRNN_TUTORIAL_FAST") == "1"
OUT = os.environ.get("MINICNNRNN_TUTORIAL_OUT", "tutorials/output")
os.makedirs(OUT, exist_ok=True)
NAMES = scenes.LABEL_NAMES
K = len(NAMES)
N = 500 if FAST else 4000

# %% [markdown]
# ## 1. Pictures and labels
# `generate(n, seed, size)` draws n pictures with Pillow. Every picture has its own
# random stream, so the same seed gives the same bytes on every machine. (The
# commands use `scenes.load(split, n)`, which caches the arrays on disk.)

# %%
images, labels = scenes.generate(N, seed=2024, size=64)
print("images", images.shape, images.dtype, " labels", labels.shape, labels.dtype)
for i in range(4):
    print(f"  picture {i}:", ", ".join(NAMES[k] for k in np.flatnonzero(labels[i])))
card = labels.sum(axis=1)
print(f"labels per picture: mean {card.mean():.2f}, min {card.min()}, max {card.max()}")

# %% [markdown]
# ## 2. How much does one label tell about another?
# The conditional co-occurrence `P(b | a)` is the fraction of pictures containing
# `a` that also contain `b`. Counted directly, picture by picture:

# %%
count_a = np.zeros(K)
count_ab = np.zeros((K, K))
for y in labels:
    present = np.flatnonzero(y)
    count_a[present] += 1
    for a in present:
        count_ab[a, present] += 1
P = count_ab / np.maximum(count_a, 1)[:, None]

# The package computes the same matrix with one matrix product: (Y^T Y)[a, b] counts pictures with a and b.
assert np.allclose(P, stats.conditional_cooccurrence(labels))
prior = labels.mean(axis=0)


def p(b, given):
    return P[NAMES.index(given), NAMES.index(b)]


print("implications: once the parent is seen, the child is far more likely than its prior")
for child, parent in [("cup", "table"), ("traffic_light", "road"), ("hat", "person"), ("star", "moon")]:
    print(f"  P({child} | {parent}) = {p(child, parent):.2f}   vs  P({child}) = {prior[NAMES.index(child)]:.2f}")
print("exclusions: once one is seen, the other is impossible")
for a, b in [("sun", "moon"), ("car", "water"), ("table", "road")]:
    print(f"  P({b} | {a}) = {p(b, a):.2f}")

# %% [markdown]
# **Higher order.** People appear in the harbour only on a boat. So knowing *two*
# labels, person and water, settles a third, boat, more firmly than either alone:
# no table of pairwise probabilities holds this rule, but a recurrent state that
# has seen "water" and then "person" can.

# %%
has = {name: labels[:, NAMES.index(name)] > 0 for name in NAMES}
both = has["person"] & has["water"]
print(f"P(boat | water)         = {has['boat'][has['water']].mean():.2f}")
print(f"P(boat | person)        = {has['boat'][has['person']].mean():.2f}")
print(f"P(boat | person, water) = {has['boat'][both].mean():.2f}   ({both.sum()} pictures)")

# %% [markdown]
# ## 3. Small objects: hard to see, easy to infer
# The shipped CNN (`minicnnrnn/weights/tinyscenes_cnn.npz`, made by
# `python -m minicnnrnn.pretrain`) was never taught the 20 labels. As VGG16 learned
# ImageNet's classes and is then used for COCO's, it learned a *source task* on the
# pretrain split (`minicnnrnn.tinyscenes.source_task`): which distractors are visible
# (bush, rock, ball, box, blob, frame), where objects are on an 8 x 8 grid, which
# colours cover the picture and which cover the things in it. Its record holds the
# AP of each answer on held-out pretrain pictures.

# %%
record = json.load(open(features.sidecar_path(features.WEIGHTS_PATH), encoding="utf-8"))
print(f"shipped CNN: task {record['settings']['task']}, held-out mAP {100 * record['heldout_mAP']:.1f}%")
print("  " + ", ".join(f"{name} {100 * ap:.0f}%" for name, ap in list(record["heldout_AP"].items())[:6]))

# %% [markdown]
# Its fc7 activations are the image representation `I` for the 20 labels. To see
# what they hold, we fit the simplest head there is on them: one logistic regression
# per label (Table 3's binary cross-entropy), full-batch gradient descent on
# unit-length features, then its test AP per label.

# %%
n_fit = 500 if FAST else 3000
fit_x, fit_y = features.builtin_features("train", n_fit)
test_x, test_y = features.builtin_features("test", 500)
fit_x = fit_x / np.linalg.norm(fit_x, axis=1, keepdims=True)
test_x = test_x / np.linalg.norm(test_x, axis=1, keepdims=True)
W, b = np.zeros((fit_x.shape[1], K)), np.zeros(K)
for _ in range(300):
    prob = 1 / (1 + np.exp(-(fit_x @ W + b)))  # (N, K)
    dz = (prob - fit_y) / len(fit_x)  # d(mean BCE)/d(logit)
    W -= 20.0 * fit_x.T @ dz
    b -= 20.0 * dz.sum(axis=0)
head_scores = test_x @ W + b
ap = {name: float(a) for name, a in zip(NAMES, metrics.average_precision(head_scores, test_y, mode="sklearn"))}
print(f"logistic head on fc7: test mAP {100 * np.nanmean(list(ap.values())):.1f}%")
for name in sorted(ap, key=ap.get):
    print(f"  {name:14s} AP {100 * ap[name]:5.1f}%   P(label) {prior[NAMES.index(name)]:.2f}")

# %% [markdown]
# Several of the weakest labels are small objects implied by a larger one the
# features show better (others, like cat and lamp, are small but have no such
# partner). Predicting the easy label first (the paper orders paths from frequent
# to rare, §3.4) raises the prior of the hard one many times over: that is the
# context a CNN-RNN carries in its recurrent state, and an independent classifier lacks.

# %%
for small, context in [("hat", "person"), ("traffic_light", "road"), ("cup", "table")]:
    print(
        f"  {small:14s} AP {100 * ap[small]:5.1f}%  <- implied by {context:7s} (AP {100 * ap[context]:5.1f}%): "
        f"P({small}) = {prior[NAMES.index(small)]:.2f}, P({small} | {context}) = {p(small, context):.2f}"
    )

# %% [markdown]
# The head's top-3 labels for a few test pictures: the big things are right,
# the small ones are often missing.

# %%
for i in range(6):
    top = np.argsort(-head_scores[i])[:3]
    print(
        f"  truth: {', '.join(NAMES[k] for k in np.flatnonzero(test_y[i])):40s} "
        f"head top-3: {', '.join(NAMES[k] for k in top)}"
    )

# %% [markdown]
# ## 4. Pretraining a small CNN
# The CNN is a VGG in miniature: 3x3 convolutions with ReLU, 2x2 max-pools, then
# fc6, fc7 and one logit per output, trained with a sigmoid cross-entropy per output
# (independent binary classifiers, as Table 3's "Binary cross-entropy"). Its outputs
# are the source task's 86 answers, not the labels.
#
# First we check the whole hand-written backward pass (conv, pool, dense, ReLU,
# loss) against centred finite differences on a tiny float64 network.

# %%
tiny_meta = vgg.make_meta(
    [2, "M", 3, "M"], [4, 4], num_classes=K, input_size=8, preprocess=dict(vgg.TORCHVISION_PREPROCESS)
)
rng = np.random.default_rng(0)
tiny = vgg.init_params(tiny_meta, rng, dtype=np.float64)
x = rng.standard_normal((2, 8, 8, 3))
y = labels[:2]


def tiny_loss():
    outs, _ = vgg.vgg_forward(tiny, tiny_meta, x, outputs=("logits",))
    return loss.sigmoid_cross_entropy(outs["logits"], y)[0]


outs, cache = vgg.vgg_forward(tiny, tiny_meta, x, outputs=("logits",), train=True, dropout_p=0.0)
_, grads = vgg.vgg_backward(loss.sigmoid_cross_entropy(outs["logits"], y)[1], cache)
names = ["conv1_1/W", "conv2_1/b", "fc6/W", "logits/W"]
err = numgrad.check(tiny_loss, {k: tiny[k] for k in names}, {k: grads[k] for k in names})
print(f"max relative error, backward vs finite differences: {err:.1e}")
assert err < 1e-6

# %% [markdown]
# Now a few Adam steps on pretrain pictures and their source-task answers, with the
# shipped architecture (`pretrain.CONFIG`, `pretrain.FC`). The answers come from the
# drawing itself: the painter keeps a second, invisible map of which kind of thing
# owns each pixel. The full run, `python -m minicnnrnn.pretrain`, does the same for
# 4 epochs over 12000 pictures with a cosine learning-rate decay.

# %%
size = 32 if FAST else 64
steps = 25 if FAST else 150
train_images, _, train_labels = scenes.generate(
    16 * steps, scenes.SPLIT_SEEDS["pretrain"], size, draw=source_task.render_source
)
print("first picture's answers:", ", ".join(n for n, a in zip(source_task.ATTRIBUTE_NAMES, train_labels[0]) if a))
net_meta = pretrain.make_meta(train_images, size, task="attributes")
rng = np.random.default_rng(0)
net = backend.params_to_device(vgg.init_params(net_meta, rng))
opt = pretrain.make_optimizer(net, weight_decay=5e-4)  # optim.Adam, decay on the weight matrices
history = []
for step in range(steps):
    rows = slice(16 * step, 16 * step + 16)
    xb = backend.to_device(preprocess.normalise(train_images[rows], net_meta["preprocess"]))
    outs, cache = vgg.vgg_forward(net, net_meta, xb, outputs=("logits",), train=True, dropout_p=0.0)
    value, dlogits = loss.sigmoid_cross_entropy(outs["logits"], backend.to_device(train_labels[rows]))
    opt.step(net, vgg.vgg_backward(dlogits, cache)[1], lr=3e-3)
    history.append(value)
print(f"BCE loss: first 5 steps {np.mean(history[:5]):.2f} -> last 5 steps {np.mean(history[-5:]):.2f}")
assert np.mean(history[-5:]) < np.mean(history[:5])

# %% [markdown]
# ## Something to look at
# `05_cooccurrence.png` shows `P(b | a)`: bright off-diagonal cells are implications,
# dark rows and columns are exclusions. `05_samples.png` shows pictures with their
# labels, `05_pretrain_loss.png` the loss of the few steps above.

# %%
stats.plot_cooccurrence(labels, NAMES, os.path.join(OUT, "05_cooccurrence.png"))
stats.plot_samples(images[:12], labels[:12], NAMES, os.path.join(OUT, "05_samples.png"))
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.plot(history)
ax.set_xlabel("step (16 pictures each)")
ax.set_ylabel("sigmoid cross-entropy")
ax.set_title("pretraining the small CNN, first steps")
fig.tight_layout()
fig.savefig(os.path.join(OUT, "05_pretrain_loss.png"), dpi=100)
print("wrote", ", ".join(os.path.join(OUT, f"05_{n}.png") for n in ("cooccurrence", "samples", "pretrain_loss")))
