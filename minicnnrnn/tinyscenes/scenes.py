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

from minicnnrnn.core.errors import UserError
from minicnnrnn.tinyscenes import cache
from minicnnrnn.tinyscenes import drawing as dr

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


# ---------------------------------------------------------------- scene drawing


def _background(rng, pixels, kind, night, horizon):
    """Sky above ``horizon`` and ground below it, as a (P, P, 3) uint8 array."""
    if kind == "indoor":
        wall = dr.jitter(rng, dr.pick(rng, [(220, 210, 180), (190, 210, 200), (230, 200, 200), (180, 180, 200)]), 25)
        floor = dr.jitter(rng, dr.pick(rng, dr.WOOD + [(170, 170, 160)]), 20)
        img = dr.gradient(pixels, wall, dr.mix(wall, (60, 60, 60), 0.3), 0.0, horizon)
        dr.gradient(pixels, floor, dr.mix(floor, (20, 20, 20), 0.3), horizon, 1.0, out=img)
    else:
        if night:
            top, low = dr.jitter(rng, (10, 12, 40), 10), dr.jitter(rng, (40, 40, 80), 15)
        elif rng.random() < 0.15:  # sunset sky
            top, low = dr.jitter(rng, (90, 90, 170), 20), dr.jitter(rng, (240, 150, 90), 20)
        else:
            top, low = dr.jitter(rng, (70, 130, 220), 30), dr.jitter(rng, (190, 215, 240), 20)
        ground = {"street": (150, 150, 140), "harbour": (40, 90, 150), "field": (90, 160, 60), "night": (25, 40, 30)}[
            kind
        ]
        ground = dr.jitter(rng, ground, 25)
        if night:
            ground = dr.mix(ground, (5, 5, 20), 0.6)
        img = dr.gradient(pixels, top, low, 0.0, horizon)
        dr.gradient(pixels, dr.mix(ground, low, 0.3), ground, horizon, 1.0, out=img)
    img += dr.blotches(rng, pixels, 12.0)
    return np.clip(img, 0, 255).astype(np.uint8)


def _sky(c, rng, labels, night, horizon, sky_colour):
    """Sun or moon, clouds, stars and birds above the horizon (drawn first: behind everything)."""
    if "star" in labels:
        dr.stars(c, rng, horizon - 0.05, int(rng.integers(3, 9)))
    if "sun" in labels:
        dr.sun(c, rng, rng.uniform(0.1, 0.9), rng.uniform(0.08, max(0.1, horizon - 0.12)), rng.uniform(0.05, 0.11))
    if "moon" in labels:
        dr.moon(
            c,
            rng,
            rng.uniform(0.1, 0.9),
            rng.uniform(0.08, max(0.1, horizon - 0.15)),
            rng.uniform(0.05, 0.1),
            sky_colour,
        )
    if "cloud" in labels:
        for _ in range(int(rng.integers(1, 3))):
            dr.cloud(
                c,
                rng,
                rng.uniform(0.1, 0.9),
                rng.uniform(0.08, max(0.1, horizon - 0.1)),
                rng.uniform(0.18, 0.35),
                dark=night,
            )
    if "bird" in labels:
        for _ in range(int(rng.integers(1, 4))):
            dr.bird(c, rng, rng.uniform(0.1, 0.9), rng.uniform(0.08, max(0.1, horizon - 0.05)), rng.uniform(0.04, 0.08))


def _things(rng, kind, night, labels, horizon):
    """The objects standing on the ground, as a list of (base_row, painter) to draw far-to-near.

    Objects further away (smaller base row) are drawn first, so nearer ones
    occlude them: occlusion comes for free from the painter's algorithm.
    """
    things = []

    def add(y, fn):
        things.append((y, fn))

    s = rng.uniform(0.8, 1.2)  # one scale per scene: zoomed in or out
    if kind == "street":
        r0 = rng.uniform(horizon + 0.12, 0.72)
        r1 = min(1.0, r0 + rng.uniform(0.18, 0.28))
        add(r0 - 0.001, lambda c: dr.road(c, rng, r0, r1))
        if "car" in labels:
            for _ in range(int(rng.integers(1, 3))):
                y, w = rng.uniform(r0 + 0.08, r1), s * rng.uniform(0.22, 0.36)
                add(y, lambda c, y=y, w=w: dr.car(c, rng, rng.uniform(-0.05, 1.0 - w * 0.8), y, w))
        if "traffic_light" in labels:
            add(
                r0 - 0.0005, lambda c: dr.traffic_light(c, rng, rng.uniform(0.05, 0.95), r0, s * rng.uniform(0.14, 0.2))
            )
        ground = (horizon + 0.02, r0 - 0.01)
    elif kind == "harbour":
        add(horizon - 0.001, lambda c: dr.water(c, rng, horizon, 1.0))
        ground = (horizon - 0.015, horizon)  # a thin far shore
        if "house" in labels or "tree" in labels:
            add(horizon - 0.0015, lambda c: c.rect(0, horizon - 0.03, 1, horizon, dr.jitter(rng, (90, 120, 60), 25)))
        if "boat" in labels:
            n_boats = int(rng.integers(1, 3))
            for b in range(n_boats):
                y, w = rng.uniform(horizon + 0.12, 0.95), s * rng.uniform(0.2, 0.32)
                sailor = "person" in labels and b == 0
                add(y, lambda c, y=y, w=w, sailor=sailor: _boat_with_sailor(c, rng, y, w, sailor, labels))
    elif kind == "indoor":
        ground = (horizon + 0.05, 0.97)
        for _ in range(int(rng.integers(0, 3))):  # picture frames and windows on the wall (not labels)
            x, y, w = rng.uniform(0.05, 0.8), rng.uniform(0.08, horizon - 0.25), rng.uniform(0.1, 0.2)
            add(0.0, lambda c, x=x, y=y, w=w: _frame(c, rng, x, y, w))
        if "table" in labels:
            y, w = rng.uniform(horizon + 0.1, 0.95), s * rng.uniform(0.35, 0.5)
            add(y, lambda c, y=y, w=w: _table_with_cup(c, rng, rng.uniform(0.02, 0.98 - w), y, w, labels))
        if "lamp" in labels:
            y = rng.uniform(horizon + 0.03, 0.9)
            add(y, lambda c, y=y: dr.lamp(c, rng, rng.uniform(0.08, 0.92), y, s * rng.uniform(0.3, 0.45)))
    else:
        ground = (horizon + 0.02, 0.97)
    if kind == "field" and "fence" in labels:
        y = rng.uniform(horizon + 0.05, 0.8)
        x0 = rng.uniform(-0.1, 0.4)
        add(y, lambda c: dr.fence(c, rng, x0, x0 + rng.uniform(0.4, 0.9), y, s * rng.uniform(0.08, 0.12)))
    if "cow" in labels:
        for _ in range(int(rng.integers(1, 3))):
            y, w = rng.uniform(horizon + 0.1, 0.97), s * rng.uniform(0.18, 0.3)
            add(y, lambda c, y=y, w=w: dr.cow(c, rng, rng.uniform(-0.05, 1.0 - w), y, w))
    if "cat" in labels:
        y, w = rng.uniform(*ground), s * rng.uniform(0.1, 0.16)
        add(y, lambda c, y=y, w=w: dr.cat(c, rng, rng.uniform(0.0, 1.0 - w), y, w))
    far = kind == "harbour"  # houses and trees across the water are small
    if "house" in labels:
        for _ in range(int(rng.integers(1, 3))):
            y = rng.uniform(*ground)
            w = s * (rng.uniform(0.1, 0.16) if far else rng.uniform(0.2, 0.32))
            add(y, lambda c, y=y, w=w: dr.house(c, rng, rng.uniform(-0.05, 1.0 - w), y, w, night))
    if "tree" in labels:
        for _ in range(int(rng.integers(1, 4))):
            y = rng.uniform(*ground)
            h = s * (rng.uniform(0.12, 0.18) if far else rng.uniform(0.25, 0.45))
            add(y, lambda c, y=y, h=h: dr.tree(c, rng, rng.uniform(0.03, 0.97), y, h, night))
    if "person" in labels and kind != "harbour":
        y = rng.uniform(*ground)
        h = s * rng.uniform(0.22, 0.34)
        add(y + 0.002, lambda c, y=y, h=h: _person_with_hat(c, rng, rng.uniform(0.08, 0.92), y, h, labels))
    for _ in range(int(rng.integers(1, 5))):  # clutter: bushes, rocks, balls, boxes, blobs
        y = rng.uniform(*ground)
        add(y, lambda c, y=y: dr.clutter(c, rng, y - 0.02, y))
    return things


def _person_with_hat(c, rng, x, y, h, labels):
    head = dr.person(c, rng, x, y, h)
    if "hat" in labels:
        dr.hat(c, rng, head)


def _boat_with_sailor(c, rng, y, w, sailor, labels):
    deck_x, deck_y = dr.boat(c, rng, rng.uniform(-0.05, 1.0 - w * 0.9), y, w)
    if sailor:
        _person_with_hat(c, rng, deck_x, deck_y, w * rng.uniform(0.5, 0.65), labels)


def _table_with_cup(c, rng, x, y, w, labels):
    top = dr.table(c, rng, x, y, w)
    if "cup" in labels:
        dr.cup(c, rng, x + rng.uniform(0.15, 0.7) * w, top, w * rng.uniform(0.1, 0.14))


def _frame(c, rng, x, y, w):
    """A picture frame or window on an indoor wall: clutter with sharp edges."""
    c.rect(x, y, x + w, y + w * rng.uniform(0.6, 1.2), dr.jitter(rng, dr.pick(rng, dr.WOOD + [(40, 40, 40)]), 20))
    inner = dr.jitter(rng, dr.pick(rng, dr.BRIGHT + [(150, 200, 230)]), 40)
    c.rect(x + 0.1 * w, y + 0.1 * w, x + 0.9 * w, y + w * 0.5, inner)


def render(rng, size=64):
    """Draw one picture. Returns ``(image (size, size, 3) uint8, labels (K,) uint8)``."""
    kind, night, labels = sample_scene(rng)
    pixels = size * dr.SUPERSAMPLE
    # three draws whatever the scene (so every picture consumes its stream alike), one of them used
    night_row, indoor_row, outdoor_row = rng.uniform(0.65, 0.85), rng.uniform(0.55, 0.72), rng.uniform(0.35, 0.55)
    horizon = {"night": night_row, "indoor": indoor_row}.get(kind, outdoor_row)
    background = _background(rng, pixels, kind, night, horizon)
    c = dr.Canvas(background)
    sky_colour = tuple(int(v) for v in background[max(0, int(0.15 * pixels)), pixels // 2])
    if kind != "indoor":
        _sky(c, rng, labels, night, horizon, sky_colour)
    for _, paint in sorted(_things(rng, kind, night, labels, horizon), key=lambda t: t[0]):
        paint(c)
    img = c.result().astype(np.float32)
    # camera: exposure and contrast jitter, then sensor noise
    contrast, brightness = rng.uniform(0.8, 1.15), rng.uniform(-25.0, 25.0)
    img = (img - 128.0) * contrast + 128.0 + brightness
    img += rng.normal(0.0, rng.uniform(2.0, 8.0), size=img.shape)
    y = np.zeros(K, dtype=np.uint8)
    y[[INDEX[name] for name in labels]] = 1
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), y


# ---------------------------------------------------------------- public API


def _render_range(args):
    """Pictures start..stop-1 of a seed (a top-level function so worker processes can run it)."""
    seed, start, stop, size = args
    images = np.empty((stop - start, size, size, 3), dtype=np.uint8)
    labels = np.empty((stop - start, K), dtype=np.uint8)
    for i in range(start, stop):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))
        images[i - start], labels[i - start] = render(rng, size)
    return images, labels


def generate(n, seed, size=64, workers=None):
    """Generate ``n`` pictures from ``seed``.

    Returns ``images: (n, size, size, 3) uint8`` (RGB) and ``labels: (n, K) uint8``
    (1 where the label is present). Picture ``i`` depends only on ``(seed, i, size)``,
    so the result is byte-identical whatever ``workers`` is. workers: processes to
    draw with (default: 2 for n >= 4000, else 1); more than one needs the ``fork``
    start method (Linux, macOS), elsewhere the pictures are drawn in this process.
    """
    n, size = int(n), int(size)
    if n < 1:
        raise UserError(f"n: need at least one picture, got {n}")
    if size < 16:
        raise UserError(f"size: pictures must be at least 16 pixels wide, got {size}")
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if n >= 4000 else 1
    chunks = [(seed, a, min(n, a + CHUNK), size) for a in range(0, n, CHUNK)]
    if workers > 1 and len(chunks) > 1 and "fork" in multiprocessing.get_all_start_methods():
        # fork, not spawn: spawn would re-run the caller's script in every worker
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_render_range, chunks)
    else:
        parts = [_render_range(ch) for ch in chunks]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


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
    images, labels = generate(n, SPLIT_SEEDS[split], size)
    cache.save(key, cache_dir, images=images, labels=labels)
    return images, labels
