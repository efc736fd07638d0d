"""minicnnrnn from Python, as scikit-learn users expect (docs/python_api.md).

    from minicnnrnn.estimators import CNNRNNClassifier, FeatureExtractor
    clf = CNNRNNClassifier(epochs=5).fit(X, Y)       # X (n, D) features, Y (n, K) 0/1
    make_pipeline(FeatureExtractor("builtin"), CNNRNNClassifier())   # image files -> labels

engine.py is the one place that calls the training code; base.py holds scikit-learn's
conventions (with a fallback when it is not installed); classifiers.py the six models of
Table 3 and the semantic interface; features.py the CNN in front of them.
"""

from minicnnrnn import LAZY
from minicnnrnn.estimators.base import NotFittedError
from minicnnrnn.estimators.classifiers import (
    BCEClassifier,
    CNNRNNClassifier,
    KNNClassifier,
    MultiLabelEstimator,
    NoRNNClassifier,
    SoftmaxClassifier,
    SRCNNRNNClassifier,
    WARPClassifier,
    all_estimators,
)
from minicnnrnn.estimators.features import FeatureExtractor

# The names ``minicnnrnn`` itself re-exports (its LAZY map) and two of this package's own.
__all__ = [*LAZY, "NotFittedError", "all_estimators"]
