"""``minicnnrnn <command> [options]``: every command of the package behind one name.

    minicnnrnn train --compare          # the same as: python -m minicnnrnn.train --compare
    minicnnrnn predict --checkpoint runs/cnn-rnn/checkpoint.npz photo.jpg
    minicnnrnn --version

``python -m minicnnrnn`` is the same program. Each subcommand is the module of that
name (its ``main(argv)``), so ``minicnnrnn train --help`` and ``python -m
minicnnrnn.train --help`` print the same options.
"""

import importlib
import sys

import minicnnrnn
from minicnnrnn.core import cli

# subcommand -> (module, one line for the overview)
COMMANDS = {
    "train": ("minicnnrnn.train", "train the CNN-RNN or a baseline on CNN features and evaluate it"),
    "predict": ("minicnnrnn.predict", "beam search (§3.3) on images or features with a trained checkpoint"),
    "extract": ("minicnnrnn.extract", "CNN features of images, an image list or a whole dataset"),
    "scale_out": ("minicnnrnn.scale_out", "extract as N shards on a Dask cluster, or merge `extract --shard` folders"),
    "convert": ("minicnnrnn.convert", "convert torchvision .pth or Keras .h5 weights without torch"),
    "pretrain": ("minicnnrnn.pretrain", "retrain the small CNN that ships with the package"),
    "gradcheck": ("minicnnrnn.gradcheck", "check every hand-written backward against finite differences"),
    "stats": ("minicnnrnn.tinyscenes.stats", "label statistics and pictures of the built-in data"),
}


def overview():
    lines = [
        f"usage: minicnnrnn <command> [options]   (minicnnrnn {minicnnrnn.__version__})",
        "",
        "commands:",
    ]
    lines += [f"  {name:<10} {about}" for name, (_, about) in COMMANDS.items()]
    lines += ["", "minicnnrnn <command> --help shows the options of one command."]
    return "\n".join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(overview())
        return 0
    if argv[0] == "--version":
        print(f"minicnnrnn {minicnnrnn.__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: minicnnrnn: unknown command {name!r} (choose from {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    cli.run(module.main, rest)
    return 0


def console():
    """The ``minicnnrnn`` console script installed by pip."""
    sys.exit(main())


if __name__ == "__main__":
    console()
