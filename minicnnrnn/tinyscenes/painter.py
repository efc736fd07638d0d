"""Tiny Scenes painter: turns a sampled scene (its type, day or night, its labels) into pixels.

What a scene *contains* is decided in :mod:`minicnnrnn.tinyscenes.scenes`; this module only
draws it with the canvas and colours of :mod:`minicnnrnn.tinyscenes.canvas` and the object
painters of :mod:`minicnnrnn.tinyscenes.drawing` (sky, ground, objects
in back-to-front order, then a camera model: exposure, contrast and sensor noise).
"""

import numpy as np

from minicnnrnn.tinyscenes import drawing as dr
from minicnnrnn.tinyscenes.canvas import BRIGHT, SUPERSAMPLE, WOOD, Canvas, blotches, gradient, jitter, mix, pick


def _background(rng, pixels, kind, night, horizon):
    """Sky above ``horizon`` and ground below it, as a (P, P, 3) uint8 array."""
    if kind == "indoor":
        wall = jitter(rng, pick(rng, [(220, 210, 180), (190, 210, 200), (230, 200, 200), (180, 180, 200)]), 25)
        floor = jitter(rng, pick(rng, WOOD + [(170, 170, 160)]), 20)
        img = gradient(pixels, wall, mix(wall, (60, 60, 60), 0.3), 0.0, horizon)
        gradient(pixels, floor, mix(floor, (20, 20, 20), 0.3), horizon, 1.0, out=img)
    else:
        if night:
            top, low = jitter(rng, (10, 12, 40), 10), jitter(rng, (40, 40, 80), 15)
        elif rng.random() < 0.15:  # sunset sky
            top, low = jitter(rng, (90, 90, 170), 20), jitter(rng, (240, 150, 90), 20)
        else:
            top, low = jitter(rng, (70, 130, 220), 30), jitter(rng, (190, 215, 240), 20)
        ground = {"street": (150, 150, 140), "harbour": (40, 90, 150), "field": (90, 160, 60), "night": (25, 40, 30)}[
            kind
        ]
        ground = jitter(rng, ground, 25)
        if night:
            ground = mix(ground, (5, 5, 20), 0.6)
        img = gradient(pixels, top, low, 0.0, horizon)
        gradient(pixels, mix(ground, low, 0.3), ground, horizon, 1.0, out=img)
    img += blotches(rng, pixels, 12.0)
    return np.clip(img, 0, 255).astype(np.uint8)


def _sky(c, rng, labels, night, horizon, sky_colour):
    """Sun or moon, clouds, stars and birds above the horizon (drawn first: behind everything)."""
    if "star" in labels:
        c.owner = "star"
        dr.stars(c, rng, horizon - 0.05, int(rng.integers(3, 9)))
    if "sun" in labels:
        c.owner = "sun"
        dr.sun(c, rng, rng.uniform(0.1, 0.9), rng.uniform(0.08, max(0.1, horizon - 0.12)), rng.uniform(0.05, 0.11))
    if "moon" in labels:
        c.owner = "moon"
        dr.moon(
            c,
            rng,
            rng.uniform(0.1, 0.9),
            rng.uniform(0.08, max(0.1, horizon - 0.15)),
            rng.uniform(0.05, 0.1),
            sky_colour,
        )
    if "cloud" in labels:
        c.owner = "cloud"
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
        c.owner = "bird"
        for _ in range(int(rng.integers(1, 4))):
            dr.bird(c, rng, rng.uniform(0.1, 0.9), rng.uniform(0.08, max(0.1, horizon - 0.05)), rng.uniform(0.04, 0.08))


def _things(rng, kind, night, labels, horizon):
    """The objects standing on the ground, as a list of (base_row, painter) to draw far-to-near.

    Objects further away (smaller base row) are drawn first, so nearer ones
    occlude them: occlusion comes for free from the painter's algorithm.
    """
    things = []

    def add(y, fn, owner=None):  # owner: the label the object draws (None: not a label)
        things.append((y, fn, owner))

    s = rng.uniform(0.8, 1.2)  # one scale per scene: zoomed in or out
    if kind == "street":
        r0 = rng.uniform(horizon + 0.12, 0.72)
        r1 = min(1.0, r0 + rng.uniform(0.18, 0.28))
        add(r0 - 0.001, lambda c: dr.road(c, rng, r0, r1), "road")
        if "car" in labels:
            for _ in range(int(rng.integers(1, 3))):
                y, w = rng.uniform(r0 + 0.08, r1), s * rng.uniform(0.22, 0.36)
                add(y, lambda c, y=y, w=w: dr.car(c, rng, rng.uniform(-0.05, 1.0 - w * 0.8), y, w), "car")
        if "traffic_light" in labels:
            add(
                r0 - 0.0005,
                lambda c: dr.traffic_light(c, rng, rng.uniform(0.05, 0.95), r0, s * rng.uniform(0.14, 0.2)),
                "traffic_light",
            )
        ground = (horizon + 0.02, r0 - 0.01)
    elif kind == "harbour":
        add(horizon - 0.001, lambda c: dr.water(c, rng, horizon, 1.0), "water")
        ground = (horizon - 0.015, horizon)  # a thin far shore
        if "house" in labels or "tree" in labels:
            add(horizon - 0.0015, lambda c: c.rect(0, horizon - 0.03, 1, horizon, jitter(rng, (90, 120, 60), 25)))
        if "boat" in labels:
            n_boats = int(rng.integers(1, 3))
            for b in range(n_boats):
                y, w = rng.uniform(horizon + 0.12, 0.95), s * rng.uniform(0.2, 0.32)
                sailor = "person" in labels and b == 0
                add(y, lambda c, y=y, w=w, sailor=sailor: _boat_with_sailor(c, rng, y, w, sailor, labels), "boat")
    elif kind == "indoor":
        ground = (horizon + 0.05, 0.97)
        for _ in range(int(rng.integers(0, 3))):  # picture frames and windows on the wall (not labels)
            x, y, w = rng.uniform(0.05, 0.8), rng.uniform(0.08, horizon - 0.25), rng.uniform(0.1, 0.2)
            add(0.0, lambda c, x=x, y=y, w=w: _frame(c, rng, x, y, w))
        if "table" in labels:
            y, w = rng.uniform(horizon + 0.1, 0.95), s * rng.uniform(0.35, 0.5)
            add(y, lambda c, y=y, w=w: _table_with_cup(c, rng, rng.uniform(0.02, 0.98 - w), y, w, labels), "table")
        if "lamp" in labels:
            y = rng.uniform(horizon + 0.03, 0.9)
            add(y, lambda c, y=y: dr.lamp(c, rng, rng.uniform(0.08, 0.92), y, s * rng.uniform(0.3, 0.45)), "lamp")
    else:
        ground = (horizon + 0.02, 0.97)
    if kind == "field" and "fence" in labels:
        y = rng.uniform(horizon + 0.05, 0.8)
        x0 = rng.uniform(-0.1, 0.4)
        add(y, lambda c: dr.fence(c, rng, x0, x0 + rng.uniform(0.4, 0.9), y, s * rng.uniform(0.08, 0.12)), "fence")
    if "cow" in labels:
        for _ in range(int(rng.integers(1, 3))):
            y, w = rng.uniform(horizon + 0.1, 0.97), s * rng.uniform(0.18, 0.3)
            add(y, lambda c, y=y, w=w: dr.cow(c, rng, rng.uniform(-0.05, 1.0 - w), y, w), "cow")
    if "cat" in labels:
        y, w = rng.uniform(*ground), s * rng.uniform(0.1, 0.16)
        add(y, lambda c, y=y, w=w: dr.cat(c, rng, rng.uniform(0.0, 1.0 - w), y, w), "cat")
    far = kind == "harbour"  # houses and trees across the water are small
    if "house" in labels:
        for _ in range(int(rng.integers(1, 3))):
            y = rng.uniform(*ground)
            w = s * (rng.uniform(0.1, 0.16) if far else rng.uniform(0.2, 0.32))
            add(y, lambda c, y=y, w=w: dr.house(c, rng, rng.uniform(-0.05, 1.0 - w), y, w, night), "house")
    if "tree" in labels:
        for _ in range(int(rng.integers(1, 4))):
            y = rng.uniform(*ground)
            h = s * (rng.uniform(0.12, 0.18) if far else rng.uniform(0.25, 0.45))
            add(y, lambda c, y=y, h=h: dr.tree(c, rng, rng.uniform(0.03, 0.97), y, h, night), "tree")
    if "person" in labels and kind != "harbour":
        y = rng.uniform(*ground)
        h = s * rng.uniform(0.22, 0.34)
        add(y + 0.002, lambda c, y=y, h=h: _person_with_hat(c, rng, rng.uniform(0.08, 0.92), y, h, labels), "person")
    for _ in range(int(rng.integers(1, 5))):  # clutter: bushes, rocks, balls, boxes, blobs
        y = rng.uniform(*ground)
        add(y, lambda c, y=y: dr.clutter(c, rng, y - 0.02, y))
    return things


def _person_with_hat(c, rng, x, y, h, labels):
    c.owner = "person"
    head = dr.person(c, rng, x, y, h)
    if "hat" in labels:
        c.owner = "hat"
        dr.hat(c, rng, head)


def _boat_with_sailor(c, rng, y, w, sailor, labels):
    deck_x, deck_y = dr.boat(c, rng, rng.uniform(-0.05, 1.0 - w * 0.9), y, w)
    if sailor:
        _person_with_hat(c, rng, deck_x, deck_y, w * rng.uniform(0.5, 0.65), labels)


def _table_with_cup(c, rng, x, y, w, labels):
    top = dr.table(c, rng, x, y, w)
    if "cup" in labels:
        c.owner = "cup"
        dr.cup(c, rng, x + rng.uniform(0.15, 0.7) * w, top, w * rng.uniform(0.1, 0.14))


def _frame(c, rng, x, y, w):
    """A picture frame or window on an indoor wall: clutter with sharp edges."""
    c.owner = "frame"  # not a label; a kind of the source task (tinyscenes/source_task.py)
    c.rect(x, y, x + w, y + w * rng.uniform(0.6, 1.2), jitter(rng, pick(rng, WOOD + [(40, 40, 40)]), 20))
    inner = jitter(rng, pick(rng, BRIGHT + [(150, 200, 230)]), 40)
    c.rect(x + 0.1 * w, y + 0.1 * w, x + 0.9 * w, y + w * 0.5, inner)


def paint(rng, size, kind, night, labels, owner_ids=None):
    """Draw the picture of a sampled scene: ``(size, size, 3) uint8`` RGB.

    kind, night, labels: what :func:`minicnnrnn.tinyscenes.scenes.sample_scene` drew.
    Every random draw comes from ``rng``, in a fixed order, so a picture depends only on its stream.
    owner_ids: ``{label: number > 0}`` to also return the owner map (``Canvas``): then
    the result is ``(image, owners (size * SUPERSAMPLE, size * SUPERSAMPLE) uint8)``, the
    visible label of every pixel of the drawing surface (0: none). The picture is the same.
    """
    pixels = size * SUPERSAMPLE
    # three draws whatever the scene (so every picture consumes its stream alike), one of them used
    night_row, indoor_row, outdoor_row = rng.uniform(0.65, 0.85), rng.uniform(0.55, 0.72), rng.uniform(0.35, 0.55)
    horizon = {"night": night_row, "indoor": indoor_row}.get(kind, outdoor_row)
    background = _background(rng, pixels, kind, night, horizon)
    c = Canvas(background, owner_ids)
    sky_colour = tuple(int(v) for v in background[max(0, int(0.15 * pixels)), pixels // 2])
    if kind != "indoor":
        _sky(c, rng, labels, night, horizon, sky_colour)
    for _, paint, owner in sorted(_things(rng, kind, night, labels, horizon), key=lambda t: t[0]):
        c.owner = owner
        paint(c)
    img = c.result().astype(np.float32)
    # camera: exposure and contrast jitter, then sensor noise
    contrast, brightness = rng.uniform(0.8, 1.15), rng.uniform(-25.0, 25.0)
    img = (img - 128.0) * contrast + 128.0 + brightness
    img += rng.normal(0.0, rng.uniform(2.0, 8.0), size=img.shape)
    picture = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return picture if owner_ids is None else (picture, c.owners())
