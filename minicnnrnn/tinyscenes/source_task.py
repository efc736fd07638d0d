"""The pretraining *source task*: what the shipped CNN learns, which is not the 20 target labels.

The paper's VGG16 learned ImageNet's 1000 classes and was then used, frozen, for
VOC, COCO and NUS-WIDE labels it was never trained on (§4): the features transfer
from one task to another. The built-in benchmark copies that setting. The shipped
small CNN is trained on the *pretrain* split (pictures of the same world, never
a train or test picture) to answer questions that never name a target label:

* **other object kinds** (6): is a bush, rock, ball, box, blob or picture frame
  visible? These are the distractors the painter adds to every scene
  (:func:`minicnnrnn.tinyscenes.drawing.clutter`); no target label is one of them;
* **where things are** (64): does any object, of any kind, cover at least
  ``CELL_COVER`` of each cell of an 8 x 8 grid? It is told *that* an object is
  there, never *which* label it is;
* **colours** (8): does each colour of a small palette cover at least
  ``COLOUR_COVER`` of the picture?
* **colours of things** (8): does each palette colour cover at least
  ``OBJECT_COLOUR_COVER`` of the picture *on objects* (any kind, the background
  excluded)?

A BCE head on fc7 has to learn the 20 labels from features made for these 86
questions, as the paper's heads learn COCO labels from ImageNet features. The
answers come from the drawing itself (an owner map of kinds, see
:class:`minicnnrnn.tinyscenes.canvas.Canvas`), so the pictures are byte-identical
to :func:`minicnnrnn.tinyscenes.scenes.render`'s for the same stream.
"""

import numpy as np

from minicnnrnn.tinyscenes import cache, drawing, painter, scenes

# Bump when a change alters any answer: it is part of the cache key.
SOURCE_VERSION = 2

OBJECT_KINDS = list(drawing.CLUTTER_KINDS) + ["frame"]
GRID = 8
CELL_COVER = 0.1  # fraction of a grid cell that objects must cover
KIND_COVER = 0.002  # fraction of the picture a kind must cover to count as visible
COLOUR_COVER = 0.04  # fraction of the picture a palette colour must cover
OBJECT_COLOUR_COVER = 0.01  # fraction of the picture a palette colour must cover on objects
# Palette of named colours; each pixel counts for its nearest (Euclidean RGB).
PALETTE = {
    "black": (20, 20, 25),
    "white": (235, 235, 235),
    "grey": (128, 128, 128),
    "red": (200, 40, 40),
    "yellow": (230, 210, 60),
    "green": (60, 140, 60),
    "blue": (60, 110, 210),
    "brown": (130, 85, 45),
}
ATTRIBUTE_NAMES = (
    OBJECT_KINDS
    + [f"object_at_r{r}c{c}" for r in range(GRID) for c in range(GRID)]
    + [f"colour_{name}" for name in PALETTE]
    + [f"object_colour_{name}" for name in PALETTE]
)
A = len(ATTRIBUTE_NAMES)  # 86
# Owner numbers for the source task's map: 1 for every target-label object (which one
# is not told), 2.. for the other kinds.
TARGET_OBJECT = 1
OWNER_IDS = {**{name: TARGET_OBJECT for name in scenes.LABEL_NAMES}, **{k: 2 + i for i, k in enumerate(OBJECT_KINDS)}}


def answers(image, owners):
    """The source task's answers for one picture: ``(A,) uint8``.

    image: (S, S, 3) uint8; owners: (P, P) uint8, P a multiple of S, numbered by
    :data:`OWNER_IDS` (0: background).
    """
    kinds = [(owners == OWNER_IDS[k]).mean() >= KIND_COVER for k in OBJECT_KINDS]
    p = owners.shape[0] // GRID
    cells = (owners[: p * GRID, : p * GRID] > 0).reshape(GRID, p, GRID, p).mean(axis=(1, 3))
    palette = np.array(list(PALETTE.values()), dtype=np.float32)  # (8, 3)
    pixels = image.reshape(-1, 1, 3).astype(np.float32)
    nearest = ((pixels - palette[None]) ** 2).sum(axis=2).argmin(axis=1)
    colours = np.bincount(nearest, minlength=len(palette)) / len(nearest) >= COLOUR_COVER
    f = owners.shape[0] // image.shape[0]  # drawing pixels per picture pixel (SUPERSAMPLE)
    # a picture pixel is "on an object" when the centre of its f x f drawing pixels is
    on_object = (owners[f // 2 :: f, f // 2 :: f] > 0).reshape(-1)
    object_colours = np.bincount(nearest[on_object], minlength=len(palette)) / len(nearest) >= OBJECT_COLOUR_COVER
    return np.concatenate([kinds, cells.ravel() >= CELL_COVER, colours, object_colours]).astype(np.uint8)


def render_source(rng, size):
    """One picture with its source-task answers: ``(image (S, S, 3) uint8, labels (K,) uint8,
    answers (A,) uint8)``; image and labels are those of :func:`scenes.render` for ``rng``."""
    kind, night, labels = scenes.sample_scene(rng)
    image, owners = painter.paint(rng, size, kind, night, labels, owner_ids=OWNER_IDS)
    return image, scenes.label_vector(labels), answers(image, owners)


def load(n, size=64, cache_dir=None):
    """The first ``n`` pretrain pictures and their source-task answers.

    Returns ``(images (n, S, S, 3) uint8, answers (n, A) uint8)``, cached on disk
    like the splits (the pictures under the pretrain split's own key).
    """
    data_key = scenes.dataset_key("pretrain", n, size)
    key = cache.make_key("tinyscenes-source", version=SOURCE_VERSION, data=data_key)
    hit = cache.load(key, ("answers",), cache_dir)
    if hit is not None:
        return scenes.load("pretrain", n, size, cache_dir)[0], hit["answers"]
    images, labels, source = scenes.generate(n, scenes.SPLIT_SEEDS["pretrain"], size, draw=render_source)
    cache.save(data_key, cache_dir, images=images, labels=labels)
    cache.save(key, cache_dir, answers=source)
    return images, source
