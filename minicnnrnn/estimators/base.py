"""What every estimator shares: scikit-learn's conventions, with or without scikit-learn.

scikit-learn is optional. When it imports, the estimators inherit ``sklearn.base.BaseEstimator``
(``get_params``, ``set_params``, ``clone``, the ``repr``, the checks of
``sklearn.utils.estimator_checks``) and raise its ``NotFittedError`` before fit; without it
:class:`FallbackEstimator` gives ``get_params`` / ``set_params`` read the same way, from
the signature of ``__init__``, and the error is our :class:`NotFittedError`.

The conventions (scikit-learn's "rolling your own estimator"): ``__init__`` only stores its
arguments, every fitted attribute ends in ``_`` and is set by ``fit``, and every
constructor argument is a keyword whose default is the command's default
(:data:`engine.DEFAULTS`). :func:`keyword_init` writes that ``__init__`` from a list of
names, so that each estimator lists only which options it has.
"""

import inspect
import numbers

import numpy as np

from minicnnrnn.estimators import engine

try:  # optional: scikit-learn's base class and error
    from sklearn.base import BaseEstimator as _SklearnBase
    from sklearn.exceptions import NotFittedError as _SklearnNotFitted
except ImportError:  # pragma: no cover - exercised by the tests' fallback case
    _SklearnBase = _SklearnNotFitted = None
try:  # scikit-learn >= 1.6 describes an estimator by tags
    from sklearn.utils import ClassifierTags
except ImportError:  # pragma: no cover
    ClassifierTags = None


class FallbackEstimator:
    """get_params / set_params as scikit-learn's BaseEstimator reads them (without sklearn)."""

    @classmethod
    def _get_param_names(cls):
        signature = inspect.signature(cls.__init__)
        return sorted(p.name for p in signature.parameters.values() if p.name != "self")

    def get_params(self, deep=True):
        """{parameter: value} of the constructor's arguments (``deep`` has no nested estimators here)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        """Set constructor arguments by name; an unknown name is a ValueError. Returns self."""
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"{type(self).__name__}: unknown parameter {name!r}; valid: {', '.join(valid)}")
            setattr(self, name, value)
        return self

    def __repr__(self):
        changed = {k: v for k, v in self.get_params().items() if v != engine.DEFAULTS.get(k)}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"


BaseEstimator = _SklearnBase or FallbackEstimator


if _SklearnNotFitted is not None:
    NotFittedError = _SklearnNotFitted
else:

    class NotFittedError(ValueError, AttributeError):
        """Raised when predict, score or save come before fit (scikit-learn's own when installed)."""


def multilabel_tags(tags):
    """scikit-learn's tags of a multi-label classifier: the target is an (n, K) 0/1 matrix,
    never a 1-D class vector (its checks that feed a 1-D y are skipped for it)."""
    tags.estimator_type = "classifier"
    tags.classifier_tags = tags.classifier_tags or ClassifierTags()
    tags.classifier_tags.multi_label = True
    tags.target_tags.required = True
    tags.target_tags.multi_output = True
    tags.target_tags.single_output = False
    return tags


def keyword_init(names):
    """An ``__init__(self, *, name=default, ...)`` that only stores its arguments, with the
    command's defaults (:data:`engine.DEFAULTS`) as its real signature: ``help()``,
    ``get_params`` and ``clone`` read it like a hand-written one."""
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)]
    parameters += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=engine.DEFAULTS[n]) for n in names]
    signature = inspect.Signature(parameters)

    def __init__(self, **kwargs):
        bound = signature.bind(self, **kwargs)  # an unknown keyword is a TypeError, as for any class
        bound.apply_defaults()
        for name in names:
            setattr(self, name, bound.arguments[name])

    __init__.__signature__ = signature
    return __init__


def seed_of(random_state):
    """The run's seed from scikit-learn's ``random_state``: an int is the seed, None the
    command's default seed (so the result is reproducible), a numpy RandomState or
    Generator gives one drawn integer."""
    if random_state is None:
        return engine.TRAINING_DEFAULTS["random_state"]
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state: must be >= 0, got {random_state}")
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**31 - 1))
    raise ValueError(f"random_state: expected None, an int or a numpy random generator, got {random_state!r}")


def check_features(X, n_features=None, what="X"):
    """X as a finite float32 (n, D) host array (a CuPy array is brought to the host);
    ValueError naming the problem otherwise. ``n_features``: the D seen by fit."""
    X = np.asarray(X.get() if hasattr(X, "get") and not isinstance(X, np.ndarray) else X)
    if X.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D (n_samples, n_features) array, got shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{what}: expected numbers, got dtype {X.dtype}")
    X = X.astype(np.float32)
    if len(X) == 0 or X.shape[1] == 0:
        raise ValueError(f"{what}: found array with shape {X.shape}; at least 1 sample and 1 feature are required")
    if not np.isfinite(X).all():
        raise ValueError(f"{what}: holds NaN or infinity (or values beyond float32)")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{what} has {X.shape[1]} features, but the estimator was fitted with {n_features} features")
    return X


def check_labels(Y, n, what="Y"):
    """Y as a (n, K) uint8 0/1 host array, K >= 2; ValueError otherwise."""
    if Y is None:  # scikit-learn's wording, which its checks look for
        raise ValueError(f"{what}: this estimator requires y to be passed, but the target y is None")
    Y = np.asarray(Y.get() if hasattr(Y, "get") and not isinstance(Y, np.ndarray) else Y)
    if Y.ndim != 2:
        raise ValueError(
            f"{what}: expected a 2-D (n_samples, n_labels) 0/1 indicator matrix (multi-label), got shape {Y.shape}"
        )
    if len(Y) != n:
        raise ValueError(f"{what}: {len(Y)} rows for {n} samples")
    if Y.shape[1] < 2:
        raise ValueError(f"{what}: needs at least 2 labels, got {Y.shape[1]}")
    if Y.dtype.kind not in "biuf" or not np.isin(Y, (0, 1)).all():
        raise ValueError(f"{what}: must hold only 0 and 1")
    return Y.astype(np.uint8)
