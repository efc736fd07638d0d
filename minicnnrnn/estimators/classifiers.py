"""The CNN-RNN and the Table 3 baselines as scikit-learn style estimators.

    from minicnnrnn import CNNRNNClassifier
    clf = CNNRNNClassifier(epochs=5).fit(X, Y)      # X (n, D) CNN features, Y (n, K) 0/1
    clf.predict(X)          # (n, K) 0/1: the beam search's label path (§3.3), at most k labels
    clf.predict_proba(X)    # (n, K): P(label in path), the probability that the model's path holds it
    clf.score(X, Y)         # O-F1 (§4.1) of predict(X), a fraction in [0, 1]
    clf.save("model.npz"); CNNRNNClassifier.load("model.npz")

Each class is one row of ``training/kinds.py``'s KINDS, trained by the same loop as
``python -m minicnnrnn.train --model <kind>`` (engine.py) with the same defaults. What
``predict`` returns is what the project's metrics score: the path models' beam-search path
(at most ``k`` labels, at least ``min_labels``), the classifiers' ``k`` highest-scoring
labels (``k``: None is the command's 3, or K if smaller).

============================ ========== ===================================================
estimator                    kind       predict_proba / decision_function
============================ ========== ===================================================
:class:`CNNRNNClassifier`    cnn-rnn    P(label in path) (``paths/presence.py``)
:class:`NoRNNClassifier`     no-rnn     P(label in path) of the no-RNN ablation
:class:`BCEClassifier`       bce        one sigmoid per label
:class:`SoftmaxClassifier`   softmax    one softmax over the labels (rows sum to 1)
:class:`WARPClassifier`      warp       decision_function: the linear scores (no probability)
:class:`KNNClassifier`       knn        the neighbours' similarity-weighted votes
:class:`SRCNNRNNClassifier`  sr-cnn-rnn P(label in path) of the CNN-RNN run on the concepts
============================ ========== ===================================================

The path models' P(label in path) is ``presence.presence`` over paths of up to K labels: exact
where that is cheap, else a Monte-Carlo estimate (``presence_samples`` paths per image) that is
unbiased, so a label that is nearly certain can be estimated slightly above 1 (1.03 was seen
for a 20-epoch CNN-RNN on the built-in data); ``predict_proba`` clips it to 1, which only brings
it closer to the true value. Unclipped, it is the ranking the command's mAP uses.

Feature normalisation (``feature_norm``, ``training/data.py``) is fitted with the model and
applied by every predict. All arrays returned are NumPy, whatever the ``backend``.
"""

import numpy as np

from minicnnrnn.estimators import base, engine

_RUNNING = ("random_state", "backend", "threads", "verbose")
_TRAINING = ("epochs", "batch_size", "lr", "clip", "validation_fraction", "feature_norm", "k")
_PATHS = (
    "label_order",
    "beam",
    "min_labels",
    "tune_decoding",
    "decode",
    "presence_samples",
    "max_path",
    "embed",
    "hidden",
    "dropout",
)

ESTIMATOR_OF = {}  # kind -> estimator class, filled as the classes are defined


class MultiLabelEstimator(base.BaseEstimator):
    """fit / predict / score / save / load of one model kind (``_kind``, a key of kinds.KINDS)."""

    _kind = None
    _estimator_type = "classifier"  # scikit-learn before 1.6 reads this

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls._kind is not None:
            ESTIMATOR_OF[cls._kind] = cls

    def fit(self, X, Y, label_names=None):
        """Train on X (n, D) features and Y (n, K) 0/1 labels; label_names: K names (default
        label0, label1, ...), used by ``predict --checkpoint`` after :meth:`save`. Returns self."""
        X = base.check_features(X)
        Y = base.check_labels(Y, len(X))
        names = [f"label{i}" for i in range(Y.shape[1])] if label_names is None else [str(n) for n in label_names]
        if len(names) != Y.shape[1] or len(set(names)) != len(names):
            raise ValueError(f"label_names: need {Y.shape[1]} different names, got {len(names)}")
        settings = {name: getattr(self, name) for name in self.get_params() if name in engine.TRAINING_DEFAULTS}
        settings["random_state"] = base.seed_of(self.random_state)
        with engine.session(self.backend, self.threads, self.verbose):
            state = engine.fit_model(self._kind, settings, X, Y, names)
        self._set_fitted(state)
        return self

    def _set_fitted(self, state):
        """The fitted attributes from a checkpoint state (engine.fit_model's or engine.load's)."""
        self.params_ = state["params"]  # {paper name: host array}
        self.config_ = state["config"]  # the run's RunConfig, as a checkpoint holds it
        self.history_ = state["extra"]["history"]  # one dict per epoch: loss, validation scores, ...
        self.label_order_ = state["label_order"]  # (K,) the training path order (§3.4)
        self.label_names_ = state["label_names"]
        self.classes_ = np.arange(len(self.label_names_))  # scikit-learn's multi-label convention: Y's columns
        self.n_features_in_ = self.config_.D
        # the rest of the checkpoint (epoch, run identity, data fingerprint), written back by save
        self.checkpoint_ = {key: state.get(key) for key in ("epoch", "extra", "data", "run_id", "domain")}

    def _check_fitted(self):
        if not hasattr(self, "params_"):
            raise base.NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit(X, Y) or load(path) first"
            )

    def _decode(self, X, ranking):
        self._check_fitted()
        X = base.check_features(X, self.n_features_in_)
        with engine.session(self.backend, self.threads, self.verbose):
            return engine.predict(self.config_, self.params_, X, ranking)

    def predict(self, X):
        """(n, K) uint8 0/1: the labels each image of X (n, D) is given (module docstring)."""
        return self._decode(X, ranking=False)[0]

    def _ranking(self, X):
        """(n, K) float32 host: every label's ranking score, ``Decoded.ranking`` (what the mAP ranks by)."""
        return self._decode(X, ranking=True)[1]

    def score(self, X, Y):
        """O-F1 at k (§4.1) of :meth:`predict` against Y (n, K), a fraction in [0, 1]: the
        micro-averaged F1 (scikit-learn's ``f1_score(Y, pred, average="micro")``)."""
        pred = self.predict(X)
        return float(engine.overall_f1(pred, base.check_labels(Y, len(pred))))

    def save(self, path):
        """Write a checkpoint that ``python -m minicnnrnn.predict --checkpoint PATH`` reads."""
        self._check_fitted()
        fitted = {"params": self.params_, "config": self.config_, "label_names": self.label_names_}
        engine.save(path, {**self.checkpoint_, **fitted, "label_order": self.label_order_})

    @classmethod
    def load(cls, path):
        """A fitted estimator from a checkpoint written by :meth:`save` or by ``python -m
        minicnnrnn.train`` (``MultiLabelEstimator.load`` picks the class from the file)."""
        state = engine.load(path)
        kind = state["config"].model
        target = ESTIMATOR_OF[kind] if cls._kind is None else cls
        if target._kind != kind:
            raise ValueError(f"{path}: holds a {kind} model; read it with {ESTIMATOR_OF[kind].__name__}.load")
        settings = engine.settings_of(state["config"])
        estimator = target(**{k: v for k, v in settings.items() if k in target._get_param_names()})
        estimator._set_fitted(state)
        return estimator

    def __sklearn_tags__(self):
        """scikit-learn >= 1.6: a multi-label classifier whose target is a 2-D indicator matrix."""
        tags = super().__sklearn_tags__()
        return base.multilabel_tags(tags)

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multilabel": True, "multioutput": True, "multioutput_only": True, "requires_y": True}


class _Probabilities:
    def predict_proba(self, X):
        """(n, K) float32 in [0, 1]: each label's probability for the images X (n, D) (module
        docstring). A sampled P(label in path) can pass 1 by sampling noise; the true value cannot,
        so it is clipped there (which only brings it closer)."""
        return np.clip(self._ranking(X), 0.0, 1.0)


class CNNRNNClassifier(_Probabilities, MultiLabelEstimator):
    """The CNN-RNN (§3): the Eq. 1 LSTM over the label path, tied label embedding (Eq. 2, 5),
    projection (Eq. 4); predicts by beam search (§3.3). Parameters are ``train``'s options
    (``embed`` E, ``hidden`` H, ``variant``, ``label_order``, ...) with its defaults."""

    _kind = "cnn-rnn"
    __init__ = base.keyword_init(_PATHS + ("variant", "recurrent_lr_scale", "gate_lr_scale") + _TRAINING + _RUNNING)


class NoRNNClassifier(_Probabilities, MultiLabelEstimator):
    """Table 3's ablation: the CNN-RNN with Eq. 1 replaced by a linear layer (no recurrent state)."""

    _kind = "no-rnn"
    __init__ = base.keyword_init(_PATHS + _TRAINING + _RUNNING)


class BCEClassifier(_Probabilities, MultiLabelEstimator):
    """One sigmoid per label on the joint-space layer (Table 3's binary cross-entropy)."""

    _kind = "bce"
    __init__ = base.keyword_init(("embed", "dropout") + _TRAINING + _RUNNING)


class SoftmaxClassifier(_Probabilities, MultiLabelEstimator):
    """One softmax over the labels (Table 3), trained towards each image's label set."""

    _kind = "softmax"
    __init__ = base.keyword_init(("embed", "dropout") + _TRAINING + _RUNNING)


class WARPClassifier(MultiLabelEstimator):
    """Linear label scores trained by the WARP rank loss (baselines/warp.py)."""

    _kind = "warp"
    __init__ = base.keyword_init(_TRAINING + _RUNNING)

    def decision_function(self, X):
        """(n, K) float32: the linear score of every label (higher ranks first; not a probability)."""
        return self._ranking(X)


class KNNClassifier(_Probabilities, MultiLabelEstimator):
    """The labels of the nearest training images (baselines/knn.py; its n_neighbours chosen by leave-one-out).
    ``k`` is the labels per image predicted, as for every estimator here."""

    _kind = "knn"
    __init__ = base.keyword_init(("validation_fraction", "feature_norm", "k") + _RUNNING)


class SRCNNRNNClassifier(_Probabilities, MultiLabelEstimator):
    """The semantic interface (Liu et al., CVPR 2017; beyond the paper, rnn/semantic.py): a
    concept layer of K per-label sigmoids is Eq. 4's image, trained in three stages (concepts,
    then the RNN on them, then both: ``sr_concept_epochs``, ``sr_rnn_epochs``; the loss
    ``bce_weight`` * BCE + path loss)."""

    _kind = "sr-cnn-rnn"
    __init__ = base.keyword_init(
        _PATHS
        + ("variant", "recurrent_lr_scale", "gate_lr_scale", "sr_concept_epochs", "sr_rnn_epochs", "bce_weight")
        + _TRAINING
        + _RUNNING
    )


def all_estimators():
    """[(kind, estimator class)] in the order of kinds.KINDS."""
    return [(kind, ESTIMATOR_OF[kind]) for kind in engine.KINDS]
