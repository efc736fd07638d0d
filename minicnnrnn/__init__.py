"""minicnnrnn: CNN-RNN for multi-label image classification (Wang et al., CVPR 2016),
written in plain NumPy/CuPy array code so that every line can be read.

Start with README.md and the tutorials; docs/DESIGN.md maps each module to the paper.
From Python: ``from minicnnrnn import CNNRNNClassifier`` (docs/python_api.md).

The estimators are re-exported here lazily (PEP 562: a module ``__getattr__`` imports
:data:`LAZY`'s target on first use). Every command imports this package (``core/cli.py``
reads ``__version__``), and the estimators bring in the whole training code and
scikit-learn when it is installed: measured with ``python -X importtime -c "import
minicnnrnn.core.cli"`` on the project's 2-core machine, 0.1-0.4 s lazily and 3.4-4.8 s
with an eager import (about 3 s of it scikit-learn), paid by every command, ``--help``
included. tests/test_architecture.py checks that the map's names resolve, that
``import minicnnrnn`` loads none of its targets, and that the targets import without cycles.
"""

import importlib

__version__ = "0.1.0"

# name -> the module that defines it, imported on first access of minicnnrnn.<name>
LAZY = dict.fromkeys(
    (
        "BCEClassifier",
        "CNNRNNClassifier",
        "FeatureExtractor",
        "KNNClassifier",
        "MultiLabelEstimator",
        "NoRNNClassifier",
        "SoftmaxClassifier",
        "SRCNNRNNClassifier",
        "WARPClassifier",
    ),
    "minicnnrnn.estimators",
)


def __getattr__(name):
    if name in LAZY:
        return getattr(importlib.import_module(LAZY[name]), name)
    raise AttributeError(f"module 'minicnnrnn' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(LAZY))
