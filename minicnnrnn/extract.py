"""Run a fixed CNN over image files and store one feature row per image.

The paper keeps the CNN fixed and uses its fc7 activations as the image
representation I of Eq. 4, so features are computed once and reused by every
training run:

    python -m minicnnrnn.extract --weights vgg16.npz --dataset voc2007 --root VOCdevkit --out feats/voc
    python -m minicnnrnn.extract --weights vgg16.npz --images photos/ --out feats/photos

This file is the command: it parses the arguments and names the images. The work is in
the library room ``minicnnrnn/features/``: the features folder it writes, with resume,
a memory-mapped ``.npy`` and bounded memory (:mod:`minicnnrnn.features.extraction`), the
images and their decoding (:mod:`~minicnnrnn.features.images`), the CNN
(:mod:`~minicnnrnn.features.network`). ``--shard I/N`` extracts one contiguous slice of
the image list (for spreading a big dataset over machines,
:mod:`minicnnrnn.features.shards`); the ``minicnnrnn.scale_out`` command runs all shards
on a Dask cluster and merges them.
"""

import os

from minicnnrnn.cnn import preprocess
from minicnnrnn.core import cli, fileio
from minicnnrnn.features import extraction, images, shards


def make_parser():
    parser = cli.make_parser(
        "python -m minicnnrnn.extract", "Compute CNN features (one row per image) into a features folder."
    )
    parser.add_argument(
        "--weights", help="converted weights .npz (python -m minicnnrnn.convert); default: the built-in small CNN"
    )
    images.add_options(parser, required=True)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--layer",
        help="layer to store: fc7, fc6, conv5_3, pool5, logits, ... (VGG; default fc7); "
        "pool, logits, head, block15, ... (EfficientNet; default pool)",
    )
    parser.add_argument("--batch-size", type=cli.positive_int, default=16, help="images per forward pass")
    parser.add_argument(
        "--resize",
        choices=preprocess.RESIZE_MODES,
        default=None,
        help="crop (shorter side, centre crop) or warp; default: what the weights file records",
    )
    parser.add_argument(
        "--workers", type=cli.positive_int, default=min(4, os.cpu_count() or 1), help="threads decoding images"
    )
    parser.add_argument("--strict", action="store_true", help="stop at the first unreadable image")
    parser.add_argument("--overwrite", action="store_true", help="discard earlier results in --out")
    parser.add_argument(
        "--shard",
        type=shards.parse_shard,
        metavar="I/N",
        help="extract only shard I (0 <= I < N) of the image list, a contiguous slice; "
        "merge the N folders with `python -m minicnnrnn.scale_out --merge` (docs/scale_out.md)",
    )
    return parser


def main(argv=None):
    args = cli.parse(make_parser(), argv, big_matrices=True)
    paths, source = images.of_args(args)
    if args.shard:
        paths, shard = shards.select(paths, *args.shard)
        source = dict(source, shard=shard)
    with fileio.folder_lock(args.out):  # one extraction per folder at a time (a killed run's lock is stale)
        extraction.extract(
            paths,
            args.out,
            args.weights,
            args.layer,
            args.batch_size,
            args.resize,
            args.strict,
            args.overwrite,
            args.workers,
            source,
        )
    return 0


if __name__ == "__main__":
    cli.run(main)
