"""Tiny Scenes: a procedural multi-label image world that needs no download.

The CNN-RNN paper is about *label dependencies*: labels that come together
(a boat and water), labels that exclude each other (sun and moon), and small
objects that are hard to see but easy to infer from context (the paper's runway
under an airplane, the hat on a person; §1, Fig. 1). Tiny Scenes builds those
phenomena in on purpose. Each picture is one of five scene types:

============  =====================================================================
scene         labels it can contain (small, context-implied objects in *italics*)
============  =====================================================================
street        road, car, *traffic_light*, house, tree, person, *hat*, sky objects, cat
harbour       water, boat, person (only aboard a boat), *hat*, house, tree, bird, sky
field         tree, cow, fence, house, person, *hat*, sun, cloud, *bird*
night         moon, *star*, cloud, tree, house
indoor        table, *cup* (only on a table), cat, lamp, person, *hat*
============  =====================================================================

so that, by construction:

* co-occurrence: ``boat`` implies ``water``; ``cup`` implies ``table``;
  ``hat`` implies ``person``; ``traffic_light`` implies ``road``;
* exclusion: ``sun`` never appears with ``moon`` or ``star`` (day or night);
  indoor labels (table, cup, lamp) never appear with any outdoor label;
  ``car`` never appears with ``water``;
* higher order: ``person`` and ``water`` co-occur only in the harbour, and then
  always with ``boat`` (the person stands in it): a three-label rule that no
  pairwise statistic describes;
* a long tail: scenes and objects have unequal frequencies (see
  ``python -m minicnnrnn.tinyscenes.stats``), 1 to 6 labels per image, mean about 3.

Every picture is drawn by Pillow from its own random stream
``SeedSequence(seed, spawn_key=(i,))``, so picture ``i`` of a seed never depends
on how many pictures are generated or on how the work is split between
processes: the same seed always gives byte-identical arrays.
"""

import multiprocessing
import os

import numpy as np

from minicnnrnn.core import progress
from minicnnrnn.core.errors import UserError
from minicnnrnn.tinyscenes import cache, painter

# Bump when a change alters any generated pixel or label: it is part of the cache key.
GENERATOR_VERSION = 1

LABEL_NAMES = [
    "person",
    "tree",
    "road",
    "car",
    "cloud",
    "house",
    "water",
    "sun",
    "boat",
    "bird",
    "cow",
    "moon",
    "star",
    "fence",
    "table",
    "hat",
    "traffic_light",
    "cat",
    "lamp",
    "cup",
]
K = len(LABEL_NAMES)
INDEX = {name: k for k, name in enumerate(LABEL_NAMES)}
# Numbers of the labels on an owner map (:func:`render` with objects): label k is k + 1, 0 is none.
OWNER_IDS = {name: k + 1 for k, name in enumerate(LABEL_NAMES)}

# Independent seeds per split: the pretrained CNN never sees a train/test picture,
# as ImageNet never saw VOC.
SPLIT_SEEDS = {"pretrain": 1_000_003, "train": 2_000_003, "test": 3_000_017}

# Scene types and how often each is drawn (the first source of the long tail).
SCENE_WEIGHTS = {"street": 0.32, "field": 0.26, "harbour": 0.20, "indoor": 0.12, "night": 0.10}

# How each scene chooses its labels: the probability that it is night, the labels it
# always has, then (label, probability, condition) tried in this order. A condition
# is None, "day", "night" or a label that must already be present (a hat needs a
# person, a cup a table, a harbour person a boat); an unmet condition skips the line.
# Day skies may hold sun and clouds, night skies moon and stars: never both.
SCENE_LABELS = {
    "street": (
        0.2,
        ["road"],
        [
            ("car", 0.7, None),
            ("traffic_light", 0.22, None),
            ("house", 0.35, None),
            ("tree", 0.35, None),
            ("person", 0.45, None),
            ("cat", 0.04, None),
            ("sun", 0.2, "day"),
            ("cloud", 0.25, "day"),
            ("moon", 0.5, "night"),
            ("star", 0.3, "night"),
            ("hat", 0.3, "person"),
        ],
    ),
    "harbour": (
        0.15,
        ["water"],
        [
            ("boat", 0.8, None),
            ("person", 0.3, "boat"),
            ("house", 0.2, None),
            ("tree", 0.15, None),
            ("bird", 0.35, "day"),
            ("sun", 0.3, "day"),
            ("cloud", 0.3, "day"),
            ("moon", 0.6, "night"),
            ("star", 0.4, "night"),
            ("hat", 0.3, "person"),
        ],
    ),
    "field": (
        0.0,
        [],
        [
            ("tree", 0.65, None),
            ("cow", 0.45, None),
            ("fence", 0.35, None),
            ("house", 0.25, None),
            ("person", 0.25, None),
            ("bird", 0.2, None),
            ("sun", 0.4, None),
            ("cloud", 0.4, None),
            ("hat", 0.45, "person"),
        ],
    ),
    "night": (
        1.0,
        [],
        [("moon", 0.8, None), ("star", 0.85, None), ("cloud", 0.25, None), ("tree", 0.35, None), ("house", 0.3, None)],
    ),
    "indoor": (
        0.0,
        [],
        [
            ("table", 0.65, None),
            ("cat", 0.35, None),
            ("lamp", 0.3, None),
            ("person", 0.3, None),
            ("hat", 0.1, "person"),
            ("cup", 0.55, "table"),
        ],
    ),
}
# Every picture has at least one label: an empty draw gets its scene's anchor.
ANCHOR = {"field": "tree", "night": "star", "indoor": "table"}

MAX_LABELS = 6
CHUNK = 250  # pictures per unit of work handed to a worker process
# A child label is only ever drawn with its parent; the cap never drops a parent of a present child
# (nor the boat a harbour person stands in).
PARENT = {"hat": "person", "cup": "table"}


# ---------------------------------------------------------------- label sampling


def _condition_met(condition, night, labels):
    if condition is None:
        return True
    if condition in ("day", "night"):
        return night == (condition == "night")
    return condition in labels


def sample_scene(rng):
    """Draw a scene type and its label set. Returns ``(kind, night, labels: set of names)``."""
    kinds = list(SCENE_WEIGHTS)
    kind = kinds[int(rng.choice(len(kinds), p=list(SCENE_WEIGHTS.values())))]
    p_night, always, lines = SCENE_LABELS[kind]
    night = p_night == 1.0 or (0.0 < p_night and rng.random() < p_night)
    labels = set(always)
    for name, p, condition in lines:
        if _condition_met(condition, night, labels) and rng.random() < p:
            labels.add(name)
    if not labels:
        labels.add(ANCHOR[kind])
    keep = {"road", "water"} | ({"boat"} if kind == "harbour" and "person" in labels else set())
    return kind, night, _cap(rng, labels, keep)


def _cap(rng, labels, keep):
    """Drop random labels until at most MAX_LABELS remain; never drop ``keep`` or the parent of a child."""
    labels = set(labels)
    while len(labels) > MAX_LABELS:
        parents = {PARENT[c] for c in labels if c in PARENT}
        droppable = sorted(labels - parents - keep)
        labels.discard(droppable[int(rng.integers(len(droppable)))])
    return labels


# ---------------------------------------------------------------- one picture


def label_vector(labels):
    """A set of label names as the 0/1 vector ``(K,) uint8`` in LABEL_NAMES order."""
    y = np.zeros(K, dtype=np.uint8)
    y[[INDEX[name] for name in labels]] = 1
    return y


def render(rng, size=64, objects=False):
    """Draw one picture. Returns ``(image (size, size, 3) uint8, labels (K,) uint8)``.

    objects: also return where each label's objects are visible, as
    ``(image, labels, owners (size, size) uint8, areas (K,) float32)``: ``owners`` is the
    label number (:data:`OWNER_IDS`, 0: none) seen at each pixel (the most common of its
    SUPERSAMPLE x SUPERSAMPLE drawn sub-pixels), ``areas[k]`` the fraction of the picture
    that label k's objects cover once occlusion is accounted for (for Fig. 8). The image
    and labels are byte-identical with and without ``objects`` (no extra random draws).
    """
    kind, night, labels = sample_scene(rng)
    y = label_vector(labels)
    if not objects:
        return painter.paint(rng, size, kind, night, labels), y
    image, drawn = painter.paint(rng, size, kind, night, labels, owner_ids=OWNER_IDS)
    areas = np.bincount(drawn.ravel(), minlength=K + 1)[1:].astype(np.float32) / drawn.size
    f = drawn.shape[0] // size  # SUPERSAMPLE
    blocks = drawn.reshape(size, f, size, f).transpose(0, 2, 1, 3).reshape(size, size, f * f)
    counts = (blocks[:, :, :, None] == np.arange(K + 1, dtype=np.uint8)).sum(axis=2)
    return image, y, counts.argmax(axis=2).astype(np.uint8), areas


# ---------------------------------------------------------------- public API


def _render_range(args):
    """Pictures start..stop-1 of a seed (a top-level function so worker processes can run it).

    ``draw(rng, size)`` returns one picture's tuple of arrays; the result stacks each of them.
    """
    seed, start, stop, size, draw = args
    rows = [draw(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,))), size) for i in range(start, stop)]
    return tuple(np.stack(column) for column in zip(*rows))


def _render_objects(rng, size):
    """:func:`render` with the object maps, as a top-level function worker processes can run."""
    return render(rng, size, objects=True)


def generate(n, seed, size=64, workers=None, objects=False, draw=None, desc=None):
    """Generate ``n`` pictures from ``seed``.

    Returns ``images: (n, size, size, 3) uint8`` (RGB) and ``labels: (n, K) uint8``
    (1 where the label is present). Picture ``i`` depends only on ``(seed, i, size)``,
    so the result is byte-identical whatever ``workers`` is. workers: processes to
    draw with (default: 2 for n >= 4000, else 1); more than one needs the ``fork``
    start method (Linux, macOS), elsewhere the pictures are drawn in this process.
    objects: also return ``owners (n, size, size) uint8`` and ``areas (n, K) float32``
    (see :func:`render`); images and labels are the same either way.
    draw: another top-level ``draw(rng, size) -> tuple of arrays`` to run instead of
    :func:`render` (the pretraining source task uses it); its arrays are returned stacked.
    desc: show progress under this name (a bar on a terminal, a line every 30 s in a log).
    """
    n, size = int(n), int(size)
    if n < 1:
        raise UserError(f"n: need at least one picture, got {n}")
    if size < 16:
        raise UserError(f"size: pictures must be at least 16 pixels wide, got {size}")
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if n >= 4000 else 1
    draw = draw or (_render_objects if objects else render)
    chunks = [(seed, a, min(n, a + CHUNK), size, draw) for a in range(0, n, CHUNK)]
    bar = progress.bar(n, desc, "pic", plain_lines=True) if desc else progress.PlainLines(n, every=None)
    try:
        if workers > 1 and len(chunks) > 1 and "fork" in multiprocessing.get_all_start_methods():
            # fork, not spawn: spawn would re-run the caller's script in every worker; imap
            # hands back the chunks in order as they finish, so the bar moves
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                parts = [_counted(part, bar) for part in pool.imap(_render_range, chunks)]
        else:
            parts = [_counted(_render_range(ch), bar) for ch in chunks]
    finally:
        bar.close()
    return tuple(np.concatenate([p[j] for p in parts]) for j in range(len(parts[0])))


def _counted(part, bar):
    """``part`` (a chunk's stacked arrays), after moving ``bar`` on by its pictures."""
    bar.update(len(part[0]))
    return part


def dataset_key(split, n, size=64):
    """The cache key of a split: generator version and every parameter that changes the arrays."""
    return cache.make_key(
        "tinyscenes", version=GENERATOR_VERSION, split=split, seed=SPLIT_SEEDS[split], n=int(n), size=int(size)
    )


def load(split, n, size=64, cache_dir=None):
    """The first ``n`` pictures of a split ('pretrain', 'train' or 'test'), from the disk cache if present.

    Returns ``(images (n, size, size, 3) uint8, labels (n, K) uint8)``. The cache
    lives in ``cache_dir``, else ``$MINICNNRNN_CACHE``, else ``~/.cache/minicnnrnn``;
    a missing, damaged or tampered cache file is (re)generated and rewritten atomically.
    """
    if split not in SPLIT_SEEDS:
        raise UserError(f"split: unknown split {split!r}; choose one of: {', '.join(SPLIT_SEEDS)}")
    key = dataset_key(split, n, size)
    arrays = cache.load(key, ("images", "labels"), cache_dir)
    if arrays is not None:
        return arrays["images"], arrays["labels"]
    progress.say(f"drawing {n} Tiny Scenes {split} pictures (once: they are cached in {cache.cache_root(cache_dir)})")
    images, labels = generate(n, SPLIT_SEEDS[split], size, desc=f"drawing {split} pictures")
    cache.save(key, cache_dir, images=images, labels=labels)
    return images, labels


def load_objects(split, n, size=64, cache_dir=None):
    """Where the labels' objects are in the first ``n`` pictures of a split (Fig. 8, Fig. 10).

    Returns ``(owners (n, size, size) uint8, areas (n, K) float32)`` as :func:`render`
    with objects defines them, cached like the pictures (the pictures themselves are
    not changed by this and keep their cache entry).
    """
    if split not in SPLIT_SEEDS:
        raise UserError(f"split: unknown split {split!r}; choose one of: {', '.join(SPLIT_SEEDS)}")
    key = cache.make_key("tinyscenes-objects", data=dataset_key(split, n, size))
    arrays = cache.load(key, ("owners", "areas"), cache_dir)
    if arrays is not None:
        return arrays["owners"], arrays["areas"]
    _, _, owners, areas = generate(n, SPLIT_SEEDS[split], size, objects=True)
    cache.save(key, cache_dir, owners=owners, areas=areas)
    return owners, areas
