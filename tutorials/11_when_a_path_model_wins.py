# %% [markdown]
# # Tutorial 11: when can a path model win? Marginals, sets and calibration
#
# A CNN-RNN models the whole label set of a picture, P(Y | I), as a path of labels; the BCE
# baseline models one number per label, P(l in Y | I), as if the labels were independent.
# Which is better depends on what we are asked to predict. This tutorial works through the
# argument of docs/training.md ("When can a path model win?") with small explicit
# distributions, where every expectation is an exact sum over label sets:
#
# 1. At a fixed number k of labels, the expected number of correct labels of a set is the
#    sum of its labels' **marginals** (linearity of expectation), so the k labels of highest
#    marginal are the best k-set. Knowing how labels go together does not help here; and
#    the most probable set, or the most probable path, can be a worse k-set.
# 2. Labels that **exclude** each other: independent classifiers and a path model can have
#    the same marginals and still disagree on what a *set* is worth (its expected F1).
# 3. So on top-k metrics a path model can only win through better marginals, i.e. better
#    **calibrated** probabilities. We measure that on the built-in data: the reliability
#    diagram and expected calibration error (ECE) of BCE's sigmoids and of the CNN-RNN's
#    P(label in path), by hand and with `minicnnrnn/evaluation/calibration.py`.
#
# Run it with `python tutorials/11_when_a_path_model_wins.py`.

# %%
import itertools
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from minicnnrnn import train
from minicnnrnn.core import backend
from minicnnrnn.evaluation import calibration
from minicnnrnn.training import checkpoint, kinds
from minicnnrnn.training import data as train_data

FAST = os.environ.get("MINICNNRNN_TUTORIAL_FAST") == "1"
OUT = os.environ.get("MINICNNRNN_TUTORIAL_OUT", "tutorials/output")
os.makedirs(OUT, exist_ok=True)

# %% [markdown]
# ## 1. The best k labels are the k highest marginals
#
# Four labels and a joint distribution over the label sets of one picture, written out:
# each row of `SETS` is a set (1 = the label is on the picture), `P` its probability.
# The marginal of label l is `m_l = sum over sets Y containing l of P(Y)`, one matrix
# product. For a predicted set S the expected number of correct labels is
#
#     E |S ∩ Y| = sum_Y P(Y) sum_{l in S} [l in Y] = sum_{l in S} m_l
#
# (swap the two sums). We check it by enumerating all k-sets.

# %%
NAMES = ["sky", "sea", "beach", "person"]
SETS = np.array([[1, 1, 0, 0], [0, 0, 1, 0], [1, 0, 1, 0], [0, 1, 1, 0], [0, 0, 1, 1], [0, 0, 0, 1]])
P = np.array([0.30, 0.20, 0.17, 0.13, 0.10, 0.10])
assert np.isclose(P.sum(), 1)
marginal = P @ SETS  # (K,)
print("marginals:", ", ".join(f"{n} {m:.2f}" for n, m in zip(NAMES, marginal)))

k = 2
by_enumeration = {}
for S in itertools.combinations(range(len(NAMES)), k):
    expected_correct = P @ SETS[:, S].sum(axis=1)  # the sum over sets, done directly
    assert np.isclose(expected_correct, marginal[list(S)].sum())  # linearity
    by_enumeration[S] = expected_correct
best = max(by_enumeration, key=by_enumeration.get)
top_k = tuple(sorted(np.argsort(-marginal, kind="stable")[:k]))
print(f"best {k}-set by enumeration: {[NAMES[i] for i in best]} ({by_enumeration[best]:.2f} correct labels expected)")
print(f"the {k} highest marginals:   {[NAMES[i] for i in top_k]}")
assert best == top_k

# %% [markdown]
# The **most probable set** is another question: `{sky, sea}` (0.30) is the likeliest
# single outcome, yet as a guess of two labels it expects fewer correct labels than
# `{beach, sky}`, because beach appears in many sets of small probability each. A path model
# trained on paths in a fixed label order gives each set exactly one path, so its most
# probable path is the most probable set. And its *greedy* decoding, one label at a time by
# the chain rule `P(next label | labels so far)`, goes elsewhere again: it takes beach first
# (0.60 of the mass starts with it in frequency order), after which ending is the likeliest
# next step, and it stops at one label (docs/inference.md: paths tend to stop early).

# %%
most_probable = tuple(np.flatnonzero(SETS[P.argmax()]))
print(
    f"most probable set / path: {[NAMES[i] for i in most_probable]}, P = {P.max():.2f}, "
    f"expected correct {by_enumeration[most_probable]:.2f} (vs {by_enumeration[best]:.2f})"
)
order = np.argsort(-marginal, kind="stable")  # the training paths' order: most frequent label first
rank = np.empty_like(order)
rank[order] = np.arange(len(order))
paths = [tuple(sorted(np.flatnonzero(s), key=lambda label: rank[label])) for s in SETS]
prefix, END = (), len(NAMES)
while True:  # greedy: the likeliest next token given the prefix, from the joint alone
    nxt = np.zeros(len(NAMES) + 1)  # P(next = l | prefix) for every label, and END last
    for path, p in zip(paths, P):
        if path[: len(prefix)] == prefix:
            nxt[path[len(prefix)] if len(path) > len(prefix) else END] += p
    nxt /= nxt.sum()
    if nxt.argmax() == END:
        break
    prefix += (int(nxt.argmax()),)
print(f"greedy path: {[NAMES[i] for i in prefix]} then END (P(END | prefix) = {nxt[END]:.2f})")

# %% [markdown]
# ## 2. Exclusions: same marginals, different sets
#
# Two labels that never appear together (an indoor and an outdoor scene), each with
# marginal m, and nothing else. The joint has P({A}) = P({B}) = m and P({}) = 1 - 2m. Two
# independent sigmoids trained by BCE can learn these marginals exactly, but they describe
# another joint: P({A, B}) = m², P({A}) = P({B}) = m (1 - m), P({}) = (1 - m)². Both agree on
# every top-k decision (section 1). They disagree on what a set is worth under F1:
#
#     F1(S, Y) = 2 |S ∩ Y| / (|S| + |Y|),   F1({}, {}) = 1
#
# Under the joint, {A, B} has exactly one right label whenever a label is there (F1 = 2/3).
# Under independence the pair is sometimes fully right and sometimes all wrong.

# %%
ALL = np.array(list(itertools.product([0, 1], repeat=2)))  # {}, {B}, {A}, {A, B}


def f1(S, Y):
    """F1 of the predicted 0/1 set S (K,) against every true set in Y (M, K)."""
    both = (S * Y).sum(axis=1)
    size = S.sum() + Y.sum(axis=1)
    return np.where(size == 0, 1.0, 2 * both / np.maximum(size, 1))


def name(S):
    return "{" + ", ".join(label for label, on in zip("AB", S) if on) + "}"


for m in (0.5, 0.33):
    joint = np.array([1 - 2 * m, m, m, 0.0])  # the rows of ALL
    independent = np.prod(np.where(ALL == 1, m, 1 - m), axis=1)
    assert np.allclose(joint @ ALL, independent @ ALL)  # the same marginals
    print(f"marginals {m} and {m}; expected F1 of each set under the joint / under independence:")
    for S in ALL:
        print(f"  {name(S):7s} {joint @ f1(S, ALL):.3f} / {independent @ f1(S, ALL):.3f}")
    pick_joint = name(ALL[np.argmax([joint @ f1(S, ALL) for S in ALL])])
    pick_independent = name(ALL[np.argmax([independent @ f1(S, ALL) for S in ALL])])
    print(f"  best set: {pick_joint} under the joint, {pick_independent} under independence")

# %% [markdown]
# At m = 0.5 both choose {A, B}, but independence undervalues it (0.583 against 0.667).
# At m = 0.33 they choose differently: the joint knows that exactly one label is there two
# times in three, so naming both pays; independence expects nothing there 45 % of the time
# and names nothing. The expected number of correct labels is 2m under both: only decisions
# that look at whole sets (the most probable path, `--decode marginal-f1`) can use the joint.
#
# ## 3. Calibration on the built-in data
#
# Section 1 says that at fixed k what matters is how good the marginals are. A probability
# is *calibrated* when, among the (image, label) entries given about p, a share of about p
# is positive. The reliability diagram bins the entries by probability (10 equal-width
# bins) and plots each bin's positive share against its mean probability; the ECE is the
# entries-weighted mean gap, `sum_b (n_b / n) |freq_b - conf_b|`. We train BCE and the
# CNN-RNN (quick settings, validation split and best epoch as `train` does), take BCE's
# sigmoids and the CNN-RNN's P(label in path) on the test pictures, and compute both.

# %%
sizes = ["--n-train", "800", "--n-test", "200", "--epochs", "6", "--embed", "32", "--hidden", "64"]
if not FAST:
    sizes = ["--n-train", "2000", "--n-test", "500", "--epochs", "6", "--hidden", "128"]
probabilities = {}
for model, title in (("bce", "BCE sigmoid"), ("cnn-rnn", "CNN-RNN P(label in path)")):
    run_dir = os.path.join(OUT, f"calibration_{model}")
    argv = ["--model", model, *sizes, "--decode", "path", "--presence-samples", "30"]
    train.main([*argv, "--out", run_dir, "--overwrite", "--threads", "1"])
    state = checkpoint.load(os.path.join(run_dir, "best.npz"))
    cfg = state["config"]
    data = train_data.load_builtin(int(sizes[1]), int(sizes[3]))
    features = train_data.normalise(np.asarray(data.test_features), cfg.feature_norm)
    _, scores = kinds.predict_sets(cfg, backend.params_to_device(state["params"]), features)  # the ranking scores
    probabilities[title] = np.clip(scores.astype(np.float64), 0, 1)
truth = np.asarray(data.test_labels)


def ece_by_hand(prob, truth, n_bins=10):
    """ECE of equal-width bins: returns (ECE, mean probability per bin, positive share per bin, count)."""
    p, y = prob.ravel(), truth.ravel()
    which = np.minimum((p * n_bins).astype(int), n_bins - 1)  # p = 1.0 goes to the last bin
    conf, freq, count = np.full(n_bins, np.nan), np.full(n_bins, np.nan), np.zeros(n_bins)
    for b in range(n_bins):
        count[b] = (which == b).sum()
        if count[b]:
            conf[b], freq[b] = p[which == b].mean(), y[which == b].mean()
    used = count > 0
    return (count[used] / count.sum() * np.abs(freq[used] - conf[used])).sum(), conf, freq, count


curves = {}
for title, prob in probabilities.items():
    ece, conf, freq, count = ece_by_hand(prob, truth)
    package = calibration.expected_calibration_error(prob, truth)
    assert np.isclose(ece, package), (ece, package)
    confident = calibration.expected_calibration_error(prob, truth, ignore=prob < 0.1)
    print(
        f"{title:26s} ECE {ece:.4f} (package {package:.4f}); among entries p >= 0.1: {confident:.3f} "
        f"({int((prob >= 0.1).sum())} of {prob.size} entries)"
    )
    curves[title] = (conf, freq, count)

# %% [markdown]
# Read with care: one seed and a few epochs. Outside fast mode these are the settings of
# `benchmarks/calibration.py` at its first seed (0). Its table in docs/training.md, over five
# seeds with paired differences, finds the CNN-RNN's ECE higher than BCE's by more than 2
# standard errors on the built-in data; one seed can show more or less.
#
# ## 4. Something to look at
#
# Left: every 2-set of section 1 by its expected number of correct labels; the best is the
# top-2 marginals, the most probable set is lower. Right: the reliability diagram of the two
# models; a curve on the diagonal is calibrated, below it over-confident. Most entries are
# negatives near 0 (the first bin), so the ECE over all entries is small for both; the
# upper bins, the labels a model would predict, are where they differ.

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
labels = ["{" + ", ".join(NAMES[i] for i in S) + "}" for S in by_enumeration]
colours = ["tab:green" if S == best else "tab:red" if S == most_probable else "0.6" for S in by_enumeration]
ax1.barh(labels, list(by_enumeration.values()), color=colours)
ax1.set_xlabel("expected number of correct labels")
ax1.set_title("green: top-2 marginals; red: the most probable set")
ax2.plot([0, 1], [0, 1], "--", color="0.6", label="calibrated")
for title, (conf, freq, count) in curves.items():
    used = count > 0
    ece = ece_by_hand(probabilities[title], truth)[0]
    ax2.plot(conf[used], freq[used], "o-", label=f"{title} (ECE {ece:.4f})")
ax2.set_xlabel("mean predicted probability in the bin")
ax2.set_ylabel("share of positives")
ax2.set_title("reliability on the built-in test pictures")
ax2.legend(fontsize=8)
fig.tight_layout()
figure = os.path.join(OUT, "11_when_a_path_model_wins.png")
fig.savefig(figure, dpi=100)
print(f"figure saved to {figure}")

# %% [markdown]
# Where next: docs/training.md, "When can a path model win?", has the three ways a path
# model can still win (how many labels it predicts, marginals sharpened by the other labels,
# exclusions) and `benchmarks/calibration.py`, the measured table at larger settings. The
# decisions themselves are `--decode path | marginal | marginal-f1` (docs/inference.md,
# "Which labels to predict"; `paths/decisions.py`), and `evaluation/calibration.py` draws
# the same diagram with `plot_reliability`.
