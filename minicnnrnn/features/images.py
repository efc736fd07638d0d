"""Which images a features folder holds, and their decoding.

* :func:`from_args`, :func:`from_list`, :func:`from_dataset`: the three ways to name the
  images (``--images``, ``--image-list``, ``--dataset``/``--root``), and :func:`of_args`,
  which picks the one given; :func:`add_options` adds those options to a command;
* :func:`decoded_batches`: the images decoded and normalised as the weights file
  records, one batch ahead in background threads (while the CNN computes this batch);
  an unreadable image is ``None`` with its one-line reason, so that the caller decides
  whether to skip it or stop (``--strict``).
"""

import concurrent.futures
import os

from minicnnrnn import datasets
from minicnnrnn.cnn import preprocess
from minicnnrnn.core import fileio
from minicnnrnn.core import progress as report
from minicnnrnn.core.errors import UserError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
STRICT_HINT = "(--strict; rerun without it to skip unreadable images)"


def from_args(images):
    """--images: files as given, folders expanded to their image files (sorted). Absolute paths."""
    paths = []
    for item in images:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, f) for f in os.listdir(item) if f.lower().endswith(EXTENSIONS))
            if not found:
                raise UserError(f"{item}: folder holds no image files ({', '.join(EXTENSIONS)})")
            paths += found
        else:
            paths.append(item)
    return [os.path.abspath(p) for p in paths]


def from_list(list_file):
    """--image-list: one path per line (blank lines and '#' comments ignored); relative
    paths are taken relative to the list file's folder."""
    try:
        with fileio.open_regular(list_file, "list of image paths", text=True) as f:  # a FIFO: one line, no hang
            lines = [line.strip() for line in f]
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{list_file}: cannot read image list ({type(exc).__name__})") from None
    folder = os.path.dirname(os.path.abspath(list_file))
    return [os.path.normpath(os.path.join(folder, p)) for p in lines if p and not p.startswith("#")]


def from_dataset(name, root):
    """--dataset/--root: (every image of every split, train first, each once; {split: image count})."""
    data = datasets.load(name, root)
    report.say(data.summary())
    paths = [p for split in data.splits.values() for p in split.paths]
    return list(dict.fromkeys(paths)), {name: len(split) for name, split in data.splits.items()}


def add_options(parser, required):
    """--images | --image-list | --dataset (one of them; ``required`` or not) and --root."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--images", nargs="+", metavar="PATH", help="image files or folders of images")
    group.add_argument("--image-list", metavar="FILE", help="text file, one image path per line")
    group.add_argument("--dataset", help="voc2007, coco2014, nuswide81 or nuswide1k (needs --root): all splits")
    parser.add_argument("--root", help="dataset folder for --dataset")


def of_args(args):
    """(absolute image paths, the ``source`` record meta.json keeps) of the option given."""
    if args.dataset:
        if not args.root:
            raise UserError("--root: required with --dataset")
        paths, splits = from_dataset(args.dataset, args.root)
        return paths, {"dataset": args.dataset, "root": os.path.abspath(args.root), "splits": splits}
    if args.image_list:
        return from_list(args.image_list), {"image_list": os.path.abspath(args.image_list)}
    if args.images:
        return from_args(args.images), {"images": "command line"}
    raise UserError("one of --images, --image-list, --dataset is required (or --merge)")


def _read(path, meta, resize):
    """(image array, None) or (None, one-line reason)."""
    try:
        return preprocess.load_image(path, meta, resize), None
    except UserError as exc:
        return None, str(exc)


def decoded_batches(paths, meta, batch_size, resize=None, workers=1, start=0):
    """Yield (first index, [(image (S, S, 3) float32 or None, reason or None), ...]) for the
    batches of ``paths`` from index ``start``, decoding the next batch in ``workers``
    background threads while the caller computes this one."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        pending = None
        for first in range(start, len(paths), batch_size):
            futures = [pool.submit(_read, p, meta, resize) for p in paths[first : first + batch_size]]
            if pending is not None:
                yield pending[0], [f.result() for f in pending[1]]
            pending = (first, futures)
        if pending is not None:
            yield pending[0], [f.result() for f in pending[1]]
