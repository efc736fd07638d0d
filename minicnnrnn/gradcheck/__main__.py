"""``python -m minicnnrnn.gradcheck``: the command (see the package's docstring)."""

from minicnnrnn.core import cli
from minicnnrnn.gradcheck import main

if __name__ == "__main__":
    cli.run(main)
