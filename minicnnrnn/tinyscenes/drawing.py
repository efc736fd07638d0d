"""Pillow painters for the Tiny Scenes objects, one small function per object.

Every painter draws onto a ``canvas.Canvas`` in *unit coordinates*: ``(0, 0)`` is
the top-left corner of the picture and ``(1, 1)`` the bottom-right, whatever the
pixel size. Painters take the position and size of the object and a
``numpy.random.Generator`` for their colour and shape jitter, so a scene is a
pure function of its generator: the same seed draws the same pixels.

The shapes are deliberately crude (a car is two rectangles and two wheels) but
they are jittered in colour, size, aspect and orientation so that a network has
to look at shapes and context, not at one fixed colour.
"""

import numpy as np

from minicnnrnn.tinyscenes.canvas import BRIGHT, SKIN, WOOD, jitter, mix, pick

# ---------------------------------------------------------------- label objects


def road(c, rng, y0, y1):
    """A grey road band between rows y0 and y1 with a dashed centre line."""
    c.rect(0, y0, 1, y1, jitter(rng, (85, 85, 90), 20))
    c.rect(0, y0 - 0.02, 1, y0, jitter(rng, (160, 160, 150), 15))  # kerb
    mid, dash = (y0 + y1) / 2, rng.uniform(0.06, 0.12)
    paint = pick(rng, [(240, 240, 240), (230, 200, 40)])
    x = rng.uniform(-dash, 0)
    while x < 1:
        c.rect(x, mid - 0.008, x + dash, mid + 0.008, paint)
        x += 2 * dash


def water(c, rng, y0, y1):
    """A water surface between rows y0 and y1 with lighter wave strokes."""
    base = jitter(rng, pick(rng, [(30, 80, 160), (20, 110, 140), (40, 70, 120), (60, 120, 170)]), 20)
    c.rect(0, y0, 1, y1, base)
    crest = mix(base, (255, 255, 255), rng.uniform(0.25, 0.5))
    for _ in range(int(rng.integers(4, 10))):
        x, y, w = rng.uniform(0, 1), rng.uniform(y0 + 0.02, y1), rng.uniform(0.05, 0.15)
        c.line([(x, y), (x + w / 2, y - 0.01), (x + w, y)], crest, 0.012)


def car(c, rng, x, y, w):
    """A car whose wheels stand on row y; x is its left end, w its length."""
    h = w * rng.uniform(0.28, 0.36)
    body = jitter(rng, pick(rng, BRIGHT), 20)
    c.rect(x, y - h, x + w, y - 0.15 * h, body)
    cab = rng.uniform(0.15, 0.3)
    c.polygon(
        [
            (x + cab * w, y - h),
            (x + (cab + 0.1) * w, y - 1.8 * h),
            (x + (cab + 0.45) * w, y - 1.8 * h),
            (x + (cab + 0.55) * w, y - h),
        ],
        body,
    )
    c.rect(x + (cab + 0.13) * w, y - 1.65 * h, x + (cab + 0.42) * w, y - 1.1 * h, (170, 210, 230))  # window
    for wx in (x + 0.22 * w, x + 0.78 * w):
        c.ellipse(wx, y - 0.15 * h, 0.11 * w, 0.11 * w, (20, 20, 20))


def traffic_light(c, rng, x, y, h):
    """A thin pole standing on row y with a small three-lamp box on top: a *small* object."""
    c.line([(x, y), (x, y - h)], (50, 50, 50), 0.012)
    bw, bh = h * 0.18, h * 0.42
    c.rect(x - bw / 2, y - h - bh, x + bw / 2, y - h, (25, 25, 25))
    lit = int(rng.integers(3))
    for k, colour in enumerate([(230, 30, 30), (240, 190, 20), (40, 220, 60)]):
        shade = colour if k == lit else mix(colour, (25, 25, 25), 0.6)
        c.ellipse(x, y - h - bh * (0.8 - 0.3 * k), bw * 0.32, bw * 0.32, shade)


def house(c, rng, x, y, w, night=False):
    """A house standing on row y: wall, roof, door and windows (lit at night)."""
    h = w * rng.uniform(0.6, 0.9)
    wall = jitter(rng, pick(rng, [(200, 180, 150), (220, 220, 210), (180, 90, 70), (150, 160, 180)]), 20)
    roof = jitter(rng, pick(rng, [(140, 40, 30), (80, 60, 50), (60, 70, 90)]), 15)
    if night:
        wall, roof = mix(wall, (10, 10, 30), 0.6), mix(roof, (10, 10, 30), 0.6)
    c.rect(x, y - h, x + w, y, wall)
    c.polygon([(x - 0.08 * w, y - h), (x + w / 2, y - h - rng.uniform(0.35, 0.6) * w), (x + 1.08 * w, y - h)], roof)
    c.rect(x + 0.4 * w, y - 0.45 * h, x + 0.6 * w, y, jitter(rng, (90, 60, 40), 20))
    glass = (250, 220, 120) if night else (150, 200, 230)
    for wx in (x + 0.12 * w, x + 0.68 * w):
        c.rect(wx, y - 0.8 * h, wx + 0.2 * w, y - 0.55 * h, glass)


def tree(c, rng, x, y, h, night=False):
    """A tree standing on row y: a round crown on a trunk, or a conifer."""
    green = jitter(rng, pick(rng, [(40, 120, 40), (60, 150, 50), (30, 90, 50), (120, 140, 40), (200, 110, 30)]), 20)
    trunk = jitter(rng, (100, 70, 40), 15)
    if night:
        green, trunk = mix(green, (5, 10, 20), 0.7), mix(trunk, (5, 10, 20), 0.7)
    c.rect(x - 0.05 * h, y - 0.45 * h, x + 0.05 * h, y, trunk)
    if rng.random() < 0.6:
        r = h * rng.uniform(0.25, 0.35)
        c.ellipse(x, y - 0.45 * h - r * 0.8, r, r, green)
    else:
        c.polygon([(x - 0.3 * h, y - 0.3 * h), (x, y - 1.1 * h), (x + 0.3 * h, y - 0.3 * h)], green)


def person(c, rng, x, y, h):
    """A standing person with feet on row y, height h. Returns (head_x, head_top_y, head_radius)."""
    skin, shirt = pick(rng, SKIN), jitter(rng, pick(rng, BRIGHT), 20)
    trousers = jitter(rng, pick(rng, [(40, 50, 90), (60, 60, 60), (110, 90, 60)]), 15)
    c.line([(x - 0.08 * h, y), (x, y - 0.45 * h), (x + 0.08 * h, y)], trousers, 0.07 * h)
    c.rect(x - 0.1 * h, y - 0.8 * h, x + 0.1 * h, y - 0.42 * h, shirt)
    c.line([(x - 0.18 * h, y - 0.45 * h), (x - 0.1 * h, y - 0.78 * h)], shirt, 0.06 * h)
    c.line([(x + 0.18 * h, y - 0.45 * h), (x + 0.1 * h, y - 0.78 * h)], shirt, 0.06 * h)
    r = 0.1 * h
    c.ellipse(x, y - 0.8 * h - r, r, r, skin)
    return x, y - 0.8 * h - 2 * r, r


def hat(c, rng, head):
    """A hat on a head (x, top_y, radius) returned by :func:`person`: a *small* object."""
    x, top, r = head
    colour = jitter(rng, pick(rng, BRIGHT + [(120, 80, 40)]), 20)
    c.rect(x - 1.5 * r, top + 0.1 * r, x + 1.5 * r, top + 0.45 * r, colour)  # brim
    c.rect(x - 0.9 * r, top - 0.9 * r, x + 0.9 * r, top + 0.3 * r, colour)  # crown


def boat(c, rng, x, y, w):
    """A sailing boat floating on row y; x is the bow's left end. Returns a deck point for a sailor."""
    hull = jitter(rng, pick(rng, [(120, 70, 40), (230, 230, 230), (180, 40, 40), (40, 60, 120)]), 20)
    h = w * rng.uniform(0.18, 0.25)
    c.polygon([(x, y - h), (x + w, y - h), (x + 0.82 * w, y), (x + 0.15 * w, y)], hull)
    mast = x + rng.uniform(0.35, 0.6) * w
    top = y - h - w * rng.uniform(0.8, 1.1)
    c.line([(mast, y - h), (mast, top)], (60, 50, 40), 0.012)
    sail = jitter(rng, pick(rng, [(245, 245, 240), (240, 200, 60), (220, 80, 60), (240, 240, 240)]), 10)
    side = 1 if rng.random() < 0.5 else -1
    c.polygon(
        [(mast + 0.02 * side, top), (mast + 0.02 * side, y - h - 0.02), (mast + side * 0.45 * w, y - h - 0.02)], sail
    )
    return mast - side * 0.18 * w, y - h


def sun(c, rng, x, y, r):
    """A sun of radius r at (x, y), sometimes with rays."""
    colour = jitter(rng, pick(rng, [(255, 220, 50), (255, 180, 40), (250, 240, 120)]), 10)
    if rng.random() < 0.5:
        for a in np.linspace(0, 2 * np.pi, 9)[:-1] + rng.uniform(0, 1):
            c.line(
                [
                    (x + 1.2 * r * np.cos(a), y + 1.2 * r * np.sin(a)),
                    (x + 1.7 * r * np.cos(a), y + 1.7 * r * np.sin(a)),
                ],
                colour,
                0.015,
            )
    c.ellipse(x, y, r, r, colour)


def moon(c, rng, x, y, r, sky):
    """A full or crescent moon of radius r at (x, y); ``sky`` paints the crescent's bite."""
    c.ellipse(x, y, r, r, jitter(rng, (235, 235, 210), 15))
    if rng.random() < 0.6:
        side = 1 if rng.random() < 0.5 else -1
        owner, c.owner = c.owner, None  # the bite out of the crescent is sky again
        c.ellipse(x + side * r * rng.uniform(0.35, 0.6), y - r * 0.15, r * 0.9, r * 0.9, sky)
        c.owner = owner


def stars(c, rng, y1, count):
    """``count`` tiny stars above row y1: *small* objects, one or two pixels each."""
    for _ in range(count):
        x, y = rng.uniform(0.02, 0.98), rng.uniform(0.02, y1)
        s = rng.uniform(0.006, 0.014)
        c.rect(x - s, y - s, x + s, y + s, jitter(rng, (250, 250, 220), 10))


def cloud(c, rng, x, y, w, dark=False):
    """A cloud of width w centred at (x, y): a few overlapping ellipses."""
    colour = jitter(rng, (110, 110, 125) if dark else (245, 245, 250), 12)
    for _ in range(int(rng.integers(3, 6))):
        c.ellipse(
            x + rng.uniform(-0.35, 0.35) * w,
            y + rng.uniform(-0.1, 0.1) * w,
            rng.uniform(0.18, 0.3) * w,
            rng.uniform(0.12, 0.2) * w,
            colour,
        )


def bird(c, rng, x, y, w):
    """A bird in flight: a small dark 'v' of width w (a *small* object)."""
    colour = jitter(rng, pick(rng, [(30, 30, 30), (70, 60, 50), (240, 240, 240)]), 10)
    c.line([(x - w / 2, y - w * 0.3), (x, y), (x + w / 2, y - w * 0.3)], colour, 0.016)


def cow(c, rng, x, y, w):
    """A cow with hooves on row y; x is its left end, w its length."""
    white, patch = (235, 235, 230), pick(rng, [(30, 30, 30), (120, 70, 30)])
    body = white if rng.random() < 0.6 else patch
    h = w * 0.45
    for lx in (0.12, 0.3, 0.7, 0.88):
        c.line([(x + lx * w, y - 0.5 * h), (x + lx * w, y)], body, 0.04 * w)
    c.ellipse(x + w / 2, y - 0.85 * h, w / 2, 0.38 * h, body)
    if body == white:
        for _ in range(3):
            c.ellipse(x + rng.uniform(0.2, 0.8) * w, y - rng.uniform(0.7, 1.0) * h, 0.08 * w, 0.06 * w, patch)
    side = 1 if rng.random() < 0.5 else 0
    hx = x + side * w
    c.ellipse(hx, y - 1.15 * h, 0.14 * w, 0.11 * w, body)
    c.line([(hx - 0.12 * w, y - 1.35 * h), (hx + 0.12 * w, y - 1.35 * h)], (200, 190, 160), 0.02)


def fence(c, rng, x0, x1, y, h):
    """A wooden fence from column x0 to x1 standing on row y."""
    colour = jitter(rng, pick(rng, WOOD + [(235, 235, 235)]), 15)
    for fy in (y - 0.75 * h, y - 0.35 * h):
        c.line([(x0, fy), (x1, fy)], colour, 0.025)
    x, step = x0, rng.uniform(0.06, 0.1)
    while x <= x1:
        c.rect(x - 0.012, y - h, x + 0.012, y, colour)
        x += step


def table(c, rng, x, y, w):
    """A table with feet on row y. Returns the row of its top surface."""
    colour = jitter(rng, pick(rng, WOOD + [(230, 230, 230)]), 20)
    h = w * rng.uniform(0.45, 0.6)
    c.rect(x, y - h, x + w, y - h + 0.035, colour)
    for lx in (x + 0.05 * w, x + 0.92 * w):
        c.rect(lx, y - h, lx + 0.03, y, colour)
    return y - h


def cup(c, rng, x, y, w):
    """A cup of width w standing on row y: a *small* object."""
    colour = jitter(rng, pick(rng, BRIGHT), 20)
    c.rect(x, y - 1.1 * w, x + w, y, colour)
    c.line([(x + w, y - 0.8 * w), (x + 1.4 * w, y - 0.55 * w), (x + w, y - 0.3 * w)], colour, 0.012)


def cat(c, rng, x, y, w):
    """A sitting cat with paws on row y; x is its left end, w its width."""
    colour = jitter(rng, pick(rng, [(230, 140, 50), (120, 120, 120), (30, 30, 30), (240, 240, 230)]), 15)
    c.ellipse(x + w * 0.5, y - 0.4 * w, 0.35 * w, 0.4 * w, colour)
    hx, hy, r = x + w * 0.5, y - 0.95 * w, 0.22 * w
    c.polygon([(hx - r, hy - 0.2 * r), (hx - 0.85 * r, hy - 1.6 * r), (hx - 0.1 * r, hy - 0.8 * r)], colour)
    c.polygon([(hx + r, hy - 0.2 * r), (hx + 0.85 * r, hy - 1.6 * r), (hx + 0.1 * r, hy - 0.8 * r)], colour)
    c.ellipse(hx, hy, r, r, colour)
    c.line([(x + 0.8 * w, y - 0.1 * w), (x + 1.1 * w, y - 0.3 * w), (x + 1.05 * w, y - 0.7 * w)], colour, 0.03)


def lamp(c, rng, x, y, h):
    """A standing lamp with its foot on row y: a pole and a glowing shade."""
    c.line([(x, y), (x, y - 0.8 * h)], (60, 60, 60), 0.015)
    c.rect(x - 0.12 * h, y - 0.02, x + 0.12 * h, y, (60, 60, 60))
    shade = jitter(rng, pick(rng, [(250, 230, 150), (240, 200, 120), (230, 230, 230)]), 10)
    top, bottom = y - h, y - 0.75 * h
    c.polygon([(x - 0.1 * h, top), (x + 0.1 * h, top), (x + 0.2 * h, bottom), (x - 0.2 * h, bottom)], shade)


# ---------------------------------------------------------------- clutter


# The distractors' kinds, in the order clutter() numbers them. They are no label of the
# target task; the pretraining source task (tinyscenes/source_task.py) asks for them.
CLUTTER_KINDS = ("bush", "rock", "ball", "box", "blob")


def clutter(c, rng, y0, y1):
    """One distractor between rows y0 and y1 that is not a label: a bush, rock, ball, box or blob.

    They reuse the label objects' colours (greens like tree crowns, yellows like
    the sun, bright colours like cars) so that colour alone is never enough.
    """
    kind = int(rng.integers(5))
    c.owner = CLUTTER_KINDS[kind]  # only the source task's owner map names them (not labels)
    x, y, s = rng.uniform(0.0, 1.0), rng.uniform(y0, y1), rng.uniform(0.03, 0.1)
    if kind == 0:  # bush
        green = jitter(rng, (50, 130, 50), 30)
        for _ in range(3):
            c.ellipse(x + rng.uniform(-s, s), y - rng.uniform(0, s / 2), s, 0.7 * s, green)
    elif kind == 1:  # rock
        c.ellipse(x, y, s, 0.6 * s, jitter(rng, (120, 115, 110), 30))
    elif kind == 2:  # ball
        c.ellipse(x, y, 0.5 * s, 0.5 * s, jitter(rng, pick(rng, BRIGHT + [(255, 220, 50)]), 20))
    elif kind == 3:  # box
        c.rect(x - s, y - s, x + s, y + 0.3 * s, jitter(rng, pick(rng, BRIGHT + WOOD), 20))
    else:  # irregular blob
        pts = [
            (x + s * np.cos(a) * rng.uniform(0.5, 1.3), y + s * np.sin(a) * rng.uniform(0.5, 1.3))
            for a in np.linspace(0, 2 * np.pi, 7)[:-1]
        ]
        c.polygon(pts, jitter(rng, pick(rng, BRIGHT), 40))
