# %% [markdown]
# # Tutorial 08: reading a trained model (§4.5, Table 5, Fig. 7-10)
#
# **Takes 4-8 minutes** on a 2-core machine (05, 06 and 08 each took 4-8 minutes on a shared
# one, issue 23); `MINICNNRNN_TUTORIAL_FAST=1 python tutorials/08_reading_a_trained_model.py` runs it in seconds
# with tiny sizes.
#
# A trained CNN-RNN is more than its metrics table. The paper reads it four ways:
#
# 1. **Table 5 / Fig. 9**: labels and images live in one joint space; which labels are
#    near each other (rows of `U_l`), and near an image (its Eq. 4 image term)?
# 2. **Fig. 7**: per-class precision and recall beside a classifier (BCE);
# 3. **Fig. 8**: recall against object size: small objects are found when larger ones imply them;
# 4. **Fig. 10**: where the evidence for each predicted label lies in the picture: the
#    step's Eq. 5 score backpropagated through Eq. 4 and the CNN to the pixels, with the
#    deconvnet and guided-backpropagation ReLU rules.
#
# `python -m minicnnrnn.analyze` does all four (minicnnrnn/analysis/); here we call the
# pieces one by one on the built-in data. Run it with
# `python tutorials/08_reading_a_trained_model.py`; `MINICNNRNN_TUTORIAL_FAST=1` trains
# small models on a few hundred pictures instead of the full built-in split.

# %%
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from minicnnrnn import train
from minicnnrnn.analysis import by_size, collect, neighbours, per_class, report
from minicnnrnn.layers import activations
from minicnnrnn.training import checkpoint
from minicnnrnn.training import data as train_data

FAST = os.environ.get("MINICNNRNN_TUTORIAL_FAST") == "1"
OUT = os.environ.get("MINICNNRNN_TUTORIAL_OUT", "tutorials/output")
os.makedirs(OUT, exist_ok=True)
N_TRAIN, N_TEST = (600, 200) if FAST else (4000, 1000)
SIZES = ["--epochs", "8", "--embed", "32", "--hidden", "64"] if FAST else []

# %% [markdown]
# ## Two trained models
# The CNN-RNN and the BCE classifier, trained by `train` on the built-in data (fc7 of the
# shipped CNN, l2-normalised).

# %%
runs = os.path.join(OUT, "08_runs")
for kind in ("cnn-rnn", "bce"):
    args = ["--model", kind, "--n-train", str(N_TRAIN), "--n-test", str(N_TEST), *SIZES]
    train.main([*args, "--out", os.path.join(runs, kind)])
state = checkpoint.load(os.path.join(runs, "cnn-rnn", "checkpoint.npz"))
bce = checkpoint.load(os.path.join(runs, "bce", "checkpoint.npz"))
data = train_data.load_builtin(N_TRAIN, N_TEST)
names = data.label_names

# %% [markdown]
# ## 1. Table 5 and Fig. 9: neighbours in the joint space
# The cosine of two rows of `U_l`. Labels that the data ties together (boat and water,
# cup and table, moon and star) should come out near each other.

# %%
for label, near in neighbours.label_neighbours(state["params"]["U_l"], names, 3):
    print(f"{label:>14}: " + ", ".join(f"{n} ({c:.2f})" for n, c in near))
options = collect.Options(attention_images=32 if FAST else 64, n_test=N_TEST)
for row in collect.joint_space(state, data, options)[:4]:
    print(
        f"test image {row['image']}: near {[n for n, _ in row['nearest'][:3]]}, "
        f"predicted {row['predicted']}, truth {row['truth']}"
    )

# %% [markdown]
# ## 2. Fig. 7: per-class precision and recall
# The mean of the per-class recalls is the C-R of the metrics table, by definition (§4.1).

# %%
models = [collect.model_results(state, data), collect.model_results(bce, data)]
for run in models:
    print(
        f"{run['kind']:>8}: C-R {100 * run['C-R']:.1f} = mean per-class recall "
        f"{100 * per_class.mean_recall(run['per_class']):.1f}"
    )
order = per_class.frequency_order(data.train_labels, names)
print("rarest labels:", {name: round(models[0]["per_class"][name]["recall"] or 0, 2) for name in order[-4:]})

# %% [markdown]
# ## 3. Fig. 8: recall against object size
# The generator records the visible area of every label it draws.

# %%
areas = collect.object_sizes(data, options)
for run in models:
    r = by_size.recall_by_size(run["pred"], data.test_labels, areas)
    print(run["kind"], [None if v is None else round(v, 2) for v in r["recall"]], "counts", r["count"])

# %% [markdown]
# ## 4. Fig. 10: what the network looks at
# The three ReLU rules on one signal: the gradient keeps the signal where the forward
# unit was on; the deconvnet rule keeps only the positive signal; guided
# backpropagation keeps both conditions.

# %%
forward = np.array([1.0, -1.0, 2.0, -2.0])
back = np.array([0.5, 0.5, -0.5, -0.5])
out, cache = activations.relu_forward(forward)
for rule in activations.RULES:
    print(f"{rule:>9}:", activations.relu_backward(back, cache, rule))
att, _ = collect.attention_results(state, data, options)
for rule, ratio in att["mass_ratio"].items():
    print(f"{rule}: {ratio:.2f}x more evidence on the predicted label's objects than their share of the picture")

# %% [markdown]
# ## The pictures
# `report.write_all` writes every file `analyze` writes; we also draw the first
# picture's maps here.

# %%
results = collect.collect(state, data, bce, options)
written = report.write_all(os.path.join(OUT, "08_analysis"), results)
print("\n".join(written))
n, L = 0, int(att["lengths"][0])
fig, axes = plt.subplots(1, L + 1, figsize=(2.2 * (L + 1), 2.4))
axes[0].imshow(att["images"][n])
axes[0].set_title("picture")
for t in range(L):
    axes[t + 1].imshow(att["maps"]["guided"][t, n], cmap="inferno")
    axes[t + 1].set_title(names[att["paths"][n, t]])
for ax in axes:
    ax.set_axis_off()
fig.tight_layout()
figure = os.path.join(OUT, "08_attention.png")
fig.savefig(figure, dpi=100)
print("saved", figure)
