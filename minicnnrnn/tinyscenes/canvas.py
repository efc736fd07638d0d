"""The drawing surface of Tiny Scenes and its colours: a Pillow canvas in unit coordinates.

:class:`Canvas` is what every painter of ``drawing.py`` draws on; the colour helpers
(``jitter``, ``pick``, ``mix`` and the shared palettes) and the background helpers
(``gradient``, ``blotches``) are the other things painters and ``painter.py`` share.
Nothing here draws an object: the objects are in ``drawing.py``.
"""

import numpy as np
from PIL import Image, ImageDraw

SUPERSAMPLE = 2  # draw at 2x the output size, then average 2x2 blocks (anti-aliasing)


class Canvas:
    """An RGB Pillow image addressed in unit coordinates.

    ``pixels``: side of the drawing surface in pixels (the output size times
    :data:`SUPERSAMPLE`). Colours are ``(r, g, b)`` tuples of ints in 0..255.

    ``owner_ids``: ``{label name: number > 0}`` to also keep an *owner map*, a second
    surface of the same size on which every shape is drawn with the number of the label
    in :attr:`owner` (a name, set by the painter before it draws a labelled object;
    None, drawn as 0, for clutter and background). Later
    shapes overwrite earlier ones on both surfaces, so the owner map says which object
    is visible at every pixel, occlusion included. It draws nothing on the picture and
    takes no random numbers: the pixels are the same with or without it.
    """

    def __init__(self, background, owner_ids=None):
        # background: (P, P, 3) uint8 array, already painted (sky, ground, ...)
        self.image = Image.fromarray(background, "RGB")
        self.pixels = background.shape[0]
        self.draw = ImageDraw.Draw(self.image)
        self.owner = None
        self.owner_ids = owner_ids
        self.owner_image = None if owner_ids is None else Image.new("L", self.image.size, 0)
        self._owner_draw = None if owner_ids is None else ImageDraw.Draw(self.owner_image)

    def _p(self, u):
        return float(u) * self.pixels

    def _both(self, method, shape, fill, **kw):
        getattr(self.draw, method)(shape, fill=fill, **kw)
        if self._owner_draw is not None:
            getattr(self._owner_draw, method)(shape, fill=self.owner_ids.get(self.owner, 0), **kw)

    def rect(self, x0, y0, x1, y1, fill):
        box = [self._p(min(x0, x1)), self._p(min(y0, y1)), self._p(max(x0, x1)), self._p(max(y0, y1))]
        self._both("rectangle", box, fill)

    def ellipse(self, cx, cy, rx, ry, fill):
        self._both("ellipse", [self._p(cx - rx), self._p(cy - ry), self._p(cx + rx), self._p(cy + ry)], fill)

    def polygon(self, points, fill):
        self._both("polygon", [(self._p(x), self._p(y)) for x, y in points], fill)

    def line(self, points, fill, width):
        # width in unit coordinates, at least one pixel of the drawing surface
        px = max(1, int(round(self._p(width))))
        self._both("line", [(self._p(x), self._p(y)) for x, y in points], fill, width=px)

    def result(self):
        """The finished picture as (S, S, 3) uint8, averaged down by SUPERSAMPLE."""
        return np.asarray(self.image.reduce(SUPERSAMPLE))

    def owners(self):
        """The owner map (needs ``owner_ids``): ``(P, P) uint8`` at the drawing
        surface's resolution (``SUPERSAMPLE`` times the picture's side)."""
        return np.asarray(self.owner_image)


# ---------------------------------------------------------------- colours


def jitter(rng, rgb, amount=25):
    """Colour ``rgb`` with every channel moved by up to +-amount (clipped to 0..255)."""
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)


def pick(rng, choices):
    """One element of a list, drawn uniformly."""
    return choices[int(rng.integers(len(choices)))]


def mix(a, b, t):
    """Blend two colours: t=0 gives a, t=1 gives b."""
    return tuple(int(round((1 - t) * x + t * y)) for x, y in zip(a, b))


# Shared palettes: the same bright colours appear on cars, boats, shirts, cups
# and clutter, so a colour alone never identifies an object.
BRIGHT = [
    (200, 30, 30),
    (30, 60, 200),
    (230, 200, 30),
    (240, 240, 240),
    (30, 140, 60),
    (30, 30, 30),
    (240, 120, 20),
    (150, 40, 160),
    (40, 170, 190),
]
SKIN = [(240, 200, 160), (200, 150, 110), (150, 100, 70), (100, 65, 40)]
WOOD = [(120, 80, 40), (150, 100, 55), (90, 60, 35), (170, 130, 80)]


# ---------------------------------------------------------------- background


def gradient(pixels, top, bottom, y0=0.0, y1=1.0, out=None):
    """Vertical colour gradient from ``top`` at y0 to ``bottom`` at y1 (unit rows).

    out: (P, P, 3) float array to paint into (created when None). Returns it.
    """
    if out is None:
        out = np.zeros((pixels, pixels, 3), dtype=np.float32)
    r0, r1 = int(round(y0 * pixels)), int(round(y1 * pixels))
    if r1 <= r0:
        return out
    t = np.linspace(0.0, 1.0, r1 - r0, dtype=np.float32)[:, None, None]
    out[r0:r1] = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)
    return out


def blotches(rng, pixels, strength):
    """Low-frequency colour variation: (P, P, 3) float, a 4x4 noise field blown up smoothly."""
    small = rng.normal(0.0, strength, size=(4, 4, 3)).astype(np.float32)
    channels = [
        np.asarray(Image.fromarray(small[:, :, c], "F").resize((pixels, pixels), Image.BILINEAR)) for c in range(3)
    ]
    return np.stack(channels, axis=-1)
