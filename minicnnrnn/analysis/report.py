"""Write the results of :func:`minicnnrnn.analysis.collect.collect` as files in OUT.

The names are fixed, so that scripts can read them:

==========================  =============================================================
``table5_neighbours.md``    Table 5: every label's nearest labels by ``U_l`` (cosine)
``joint_space.md``          Fig. 9: labels nearest to test images' Eq. 4 image terms,
                            beside the beam search's prediction and the truth
``per_class.json``          Fig. 7: ``{model: {label: {"precision", "recall", "support"}}}``
``per_class.png``           Fig. 7: bars per label, in training-frequency order
``recall_by_size.json``     Fig. 8: ``{"bins", "edges", "models": {model: {"recall", "count"}}}``
``recall_by_size.png``      Fig. 8: recall per object-size bin
``attention/*.png``         Fig. 10: one picture per test image: the picture, then one
                            map per predicted label, a row per ReLU rule
==========================  =============================================================

Models are named by their kind (``cnn-rnn``, ``bce``, ...). Every file is written
atomically (``core.fileio``).
"""

import glob
import io
import os

import numpy as np

from minicnnrnn.analysis import by_size
from minicnnrnn.core import fileio

FILES = (
    "table5_neighbours.md",
    "joint_space.md",
    "per_class.json",
    "per_class.png",
    "recall_by_size.json",
    "recall_by_size.png",
)


def _pyplot():
    import matplotlib  # slow to import: only when there is something to draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    fileio.save_bytes(path, buffer.getvalue())


def table5_markdown(rows, dataset):
    lines = [
        f"# Table 5: nearest labels in the joint space ({dataset})",
        "",
        "Cosine of the rows of the label embedding U_l (Eq. 2 and 5).",
        "",
        "| label | nearest labels (cosine) |",
        "|---|---|",
    ]
    for label, near in rows:
        lines.append(f"| {label} | " + ", ".join(f"{n} ({c:.2f})" for n, c in near) + " |")
    return "\n".join(lines) + "\n"


def joint_space_markdown(rows, dataset):
    lines = [
        f"# Fig. 9: labels nearest to test images in the joint space ({dataset})",
        "",
        "Cosine of the projected image term I @ U_I_x + b_x (Eq. 4) with the rows of U_l.",
        "",
        "| test image | nearest labels (cosine) | beam search prediction | truth |",
        "|---|---|---|---|",
    ]
    for r in rows:
        near = ", ".join(f"{n} ({c:.2f})" for n, c in r["nearest"])
        lines.append(f"| {r['image']} | {near} | {', '.join(r['predicted'])} | {', '.join(r['truth'])} |")
    return "\n".join(lines) + "\n"


def per_class_figure(results, path):
    plt = _pyplot()
    order = results["frequency_order"]
    runs = results["models"]
    fig, axes = plt.subplots(2, 1, figsize=(max(6, 0.35 * len(order) + 2), 6), sharex=True)
    width = 0.8 / len(runs)
    x = np.arange(len(order))
    for ax, key in zip(axes, ("precision", "recall")):
        for j, run in enumerate(runs):
            values = [run["per_class"][name][key] or 0.0 for name in order]
            ax.bar(x + (j - (len(runs) - 1) / 2) * width, values, width, label=run["kind"])
        ax.set_ylabel(key)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend()
    axes[0].set_title(f"Fig. 7: per-class precision and recall ({results['dataset']}, training-frequency order)")
    axes[1].set_xticks(x)
    axes[1].set_xticklabels(order, rotation=90, fontsize=7 if len(order) > 40 else 9)
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def by_size_figure(results, path):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    names = by_size.bin_names()
    if results["by_size"] is None:
        ax.text(0.5, 0.5, f"no object sizes for {results['dataset']}", ha="center", va="center")
        ax.set_axis_off()
    else:
        for kind, r in results["by_size"].items():
            ax.plot(range(len(names)), [np.nan if v is None else v for v in r["recall"]], marker="o", label=kind)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=45, fontsize=8)
        ax.set_xlabel("object size (share of the picture)")
        ax.set_ylabel("recall")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend()
    ax.set_title(f"Fig. 8: recall against object size ({results['dataset']})")
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def attention_figures(att, names, folder):
    """attention/picture_<i>.png for the first ``att["pictures"]`` pictures. Returns the paths."""
    plt = _pyplot()
    rules = list(att["maps"])
    paths = []
    for n in range(att["pictures"]):
        L = int(att["lengths"][n])
        fig, axes = plt.subplots(len(rules), L + 1, figsize=(1.9 * (L + 1), 2.0 * len(rules)), squeeze=False)
        for row, rule in enumerate(rules):
            axes[row, 0].imshow(att["images"][n])
            axes[row, 0].set_title(f"test picture {n}" if row == 0 else "", fontsize=8)
            axes[row, 0].set_ylabel(rule, fontsize=9)
            for t in range(L):
                k = int(att["paths"][n, t])
                axes[row, t + 1].imshow(att["maps"][rule][t, n], cmap="inferno")
                axes[row, t + 1].contour(att["owners"][n] == k + 1, levels=[0.5], colors="cyan", linewidths=0.6)
                axes[row, t + 1].set_title(f"step {t + 1}: {names[k]}", fontsize=8)
        for ax in axes.ravel():
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle("Fig. 10: evidence for each predicted label (cyan: its drawn objects)", fontsize=9)
        fig.tight_layout()
        path = os.path.join(folder, f"picture_{n:03d}.png")
        _save_figure(fig, path)
        plt.close(fig)
        paths.append(path)
    for old in sorted(glob.glob(os.path.join(folder, "picture_*.png"))):  # from an earlier run with more
        if old not in paths:
            os.remove(old)
    return paths


def write_all(out, results):
    """Write every file of the module docstring into ``out``. Returns the paths written."""
    names = results["label_names"]
    written = []

    def text(name, content):
        fileio.save_text(os.path.join(out, name), content)
        written.append(os.path.join(out, name))

    text("table5_neighbours.md", table5_markdown(results["table5"], results["dataset"]))
    text("joint_space.md", joint_space_markdown(results["joint_space"], results["dataset"]))
    fileio.save_json(os.path.join(out, "per_class.json"), {r["kind"]: r["per_class"] for r in results["models"]})
    per_class_figure(results, os.path.join(out, "per_class.png"))
    if results["by_size"] is None:
        sizes = {"note": f"no object sizes for {results['dataset']} (built-in data and coco2014 have them)"}
    else:
        sizes = {"bins": by_size.bin_names(), "edges": list(by_size.EDGES), "models": results["by_size"]}
    fileio.save_json(os.path.join(out, "recall_by_size.json"), sizes)
    by_size_figure(results, os.path.join(out, "recall_by_size.png"))
    written += [os.path.join(out, f) for f in FILES[2:]]
    if results["attention"] is not None:
        written += attention_figures(results["attention"], names, os.path.join(out, "attention"))
    return written
