"""Statistics and pictures of the Tiny Scenes dataset: ``python -m minicnnrnn.tinyscenes.stats``.

Prints the label frequencies (the long tail), the number of labels per image
(label cardinality), the strongest label dependencies and the exclusions, and
writes two PNGs:

* ``tinyscenes_cooccurrence.png``: the conditional co-occurrence matrix ``P(column | row)``,
  i.e. how likely a label is once another one is known to be present. This is the
  structure the CNN-RNN's recurrent layer learns to exploit (§1, §3.2);
* ``tinyscenes_samples.png``: a grid of pictures with their labels.

With ``--baseline`` it also fits a linear classifier (ridge regression) on
colour histograms and reports its test mAP: evidence that colours alone do not
solve the dataset.
"""

import os
import textwrap

import numpy as np

from minicnnrnn.core import cli, ranking
from minicnnrnn.core.errors import UserError
from minicnnrnn.evaluation import metrics
from minicnnrnn.tinyscenes import scenes


def label_frequencies(labels):
    """Fraction of images holding each label. labels: (N, K) 0/1 -> (K,) float."""
    return labels.mean(axis=0)


def cardinality(labels):
    """Labels per image: (N,) int (row sums of the (N, K) 0/1 matrix)."""
    return labels.sum(axis=1).astype(int)


def conditional_cooccurrence(labels):
    """P[a, b] = P(label b present | label a present), (K, K) float.

    labels: (N, K) 0/1. Rows of labels that never occur are 0.
    """
    y = labels.astype(np.float64)
    counts = y.T @ y  # counts[a, b] = images holding both a and b
    present = np.diag(counts)[:, None]
    return np.divide(counts, present, out=np.zeros_like(counts), where=present > 0)


def strongest_dependencies(labels, names, top=8):
    """Lines describing the pairs with the highest P(b | a) (a != b), most surprising first."""
    P, freq = conditional_cooccurrence(labels), label_frequencies(labels)
    pairs = [(P[a, b], a, b) for a in range(len(names)) for b in range(len(names)) if a != b and freq[a] > 0]
    pairs.sort(key=lambda t: (-t[0], freq[t[2]]))
    return [f"P({names[b]} | {names[a]}) = {p:.2f}   (P({names[b]}) = {freq[b]:.2f})" for p, a, b in pairs[:top]]


def exclusions(labels, names, min_freq=0.05):
    """Pairs of labels, each in at least min_freq of the images, that never occur together."""
    y = labels.astype(np.int64)
    both, freq = y.T @ y, label_frequencies(labels)
    return [
        (names[a], names[b])
        for a in range(len(names))
        for b in range(a + 1, len(names))
        if both[a, b] == 0 and freq[a] >= min_freq and freq[b] >= min_freq
    ]


def colour_histograms(images, bins=4, grid=2):
    """Joint RGB histograms (bins^3 cells) of each cell of a grid x grid split.

    images: (N, S, S, 3) uint8 -> (N, grid^2 * bins^3) float, each histogram summing to 1.
    """
    n, s = images.shape[:2]
    q = (images.astype(np.int64) * bins) // 256
    code = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]  # (N, S, S) colour cell index
    feats, g = [], s // grid
    for a in range(grid):
        for b in range(grid):
            cell = code[:, a * g : (a + 1) * g, b * g : (b + 1) * g].reshape(n, -1)
            offsets = cell + (np.arange(n) * bins**3)[:, None]
            h = np.bincount(offsets.ravel(), minlength=n * bins**3).reshape(n, bins**3)
            feats.append(h / cell.shape[1])
    return np.concatenate(feats, axis=1)


def ridge_scores(x_train, y_train, x_test, penalty=1e-2):
    """One-vs-rest ridge regression on standardised features.

    x_train: (N, D), y_train: (N, K) 0/1, x_test: (N_test, D) -> (N_test, K) scores.
    """
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    a = np.hstack([(x_train - mu) / sd, np.ones((len(x_train), 1))])
    b = np.hstack([(x_test - mu) / sd, np.ones((len(x_test), 1))])
    w = np.linalg.solve(a.T @ a + penalty * len(a) * np.eye(a.shape[1]), a.T @ y_train.astype(np.float64))
    return b @ w


def plot_cooccurrence(labels, names, path):
    """Save the conditional co-occurrence matrix as a heat map PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    P = conditional_cooccurrence(labels)
    fig, ax = plt.subplots(figsize=(8.5, 7.5))
    im = ax.imshow(P, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90)
    ax.set_yticks(range(len(names)), [f"{n} ({f:.0%})" for n, f in zip(names, label_frequencies(labels))])
    ax.set_xlabel("label b")
    ax.set_ylabel("label a (frequency)")
    ax.set_title(f"Tiny Scenes: P(b present | a present), {len(labels)} images")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_samples(images, labels, names, path, columns=6):
    """Save a grid of pictures with their label lists as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = (len(images) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(2.1 * columns, 2.45 * rows))
    for ax, img, y in zip(axes.ravel(), images, labels):
        ax.imshow(img, interpolation="nearest")
        words = [names[k] for k in np.flatnonzero(y)]
        ax.set_title("\n".join([", ".join(words[:3]), ", ".join(words[3:])]), fontsize=7.5)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(labels, names):
    """The printed summary: frequencies, cardinality, dependencies and exclusions."""
    freq, card = label_frequencies(labels), cardinality(labels)
    lines = [f"{len(labels)} images, {len(names)} labels", "", "label frequencies (long tail):"]
    for k in ranking.ranked(freq):
        lines.append(f"  {names[k]:14s} {freq[k]:6.1%}  {'#' * int(round(60 * freq[k]))}")
    hist = np.bincount(card, minlength=7)
    lines += [
        "",
        f"labels per image: mean {card.mean():.2f}, min {card.min()}, max {card.max()}",
        "  " + "  ".join(f"{c}: {hist[c] / len(card):.1%}" for c in range(1, len(hist))),
    ]
    lines += ["", "strongest dependencies:"] + ["  " + s for s in strongest_dependencies(labels, names)]
    pairs = ", ".join(f"{a}/{b}" for a, b in exclusions(labels, names))
    lines += ["", "never together (both labels in >= 5% of images):"]
    lines += textwrap.wrap(pairs, width=100, initial_indent="  ", subsequent_indent="  ")
    return "\n".join(lines)


def main(argv=None):
    p = cli.make_parser(
        "python -m minicnnrnn.tinyscenes.stats",
        "Print Tiny Scenes label statistics and write tinyscenes_cooccurrence.png and tinyscenes_samples.png.",
    )
    p.add_argument("--split", default="train", choices=sorted(scenes.SPLIT_SEEDS))
    p.add_argument("--n", type=cli.positive_int, default=4000, help="images to measure")
    p.add_argument("--size", type=cli.positive_int, default=64, help="picture side in pixels")
    p.add_argument("--samples", type=cli.positive_int, default=24, help="pictures in the samples grid")
    p.add_argument("--out", default=os.path.join("runs", "tinyscenes_stats"), help="folder for the PNGs")
    p.add_argument(
        "--baseline", action="store_true", help="also report the test mAP of ridge regression on colour histograms"
    )
    p.add_argument("--cache-dir", default=None, help="dataset cache (default $MINICNNRNN_CACHE or ~/.cache/minicnnrnn)")
    args = cli.parse(p, argv)
    if args.size < 16:
        raise UserError(f"--size: pictures must be at least 16 pixels wide, got {args.size}")
    images, labels = scenes.load(args.split, args.n, args.size, args.cache_dir)
    names = scenes.LABEL_NAMES
    print(report(labels, names))
    cooc, grid = os.path.join(args.out, "tinyscenes_cooccurrence.png"), os.path.join(args.out, "tinyscenes_samples.png")
    try:
        plot_cooccurrence(labels, names, cooc)
        count = min(args.samples, len(images))
        plot_samples(images[:count], labels[:count], names, grid)
    except OSError as exc:
        raise UserError(f"--out {args.out}: cannot write the pictures there ({exc.strerror}: {exc.filename})") from None
    print(f"\nwrote {cooc} and {grid}")
    if args.baseline:
        test_images, test_labels = scenes.load("test", max(500, args.n // 4), args.size, args.cache_dir)
        scores = ridge_scores(colour_histograms(images), labels, colour_histograms(test_images))
        chance = metrics.mean_average_precision(np.zeros(test_labels.shape), test_labels)
        print(
            f"colour-histogram ridge baseline: test mAP {metrics.mean_average_precision(scores, test_labels):.1%} "
            f"(constant scores: {chance:.1%})"
        )
    return 0


if __name__ == "__main__":
    cli.run(main)
