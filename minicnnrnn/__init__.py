"""minicnnrnn: CNN-RNN for multi-label image classification (Wang et al., CVPR 2016),
written in plain NumPy/CuPy array code so that every line can be read.

Start with README.md and the tutorials; docs/DESIGN.md maps each module to the paper.
From Python: ``from minicnnrnn import CNNRNNClassifier`` (docs/python_api.md).
"""

import importlib

__version__ = "0.1.0"

# The estimators (minicnnrnn/estimators/) are re-exported here but imported on first use:
# every command imports this package for __version__, and the estimators bring in the whole
# training code (and scikit-learn when installed), which a command like `convert` never needs.
_ESTIMATORS = (
    "BCEClassifier",
    "CNNRNNClassifier",
    "FeatureExtractor",
    "KNNClassifier",
    "NoRNNClassifier",
    "SoftmaxClassifier",
    "WARPClassifier",
)


def __getattr__(name):
    if name in _ESTIMATORS:
        return getattr(importlib.import_module("minicnnrnn.estimators"), name)
    raise AttributeError(f"module 'minicnnrnn' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_ESTIMATORS))
