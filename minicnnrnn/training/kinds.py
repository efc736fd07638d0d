"""The registry of model kinds: the six models of Tables 1-3, and the semantic
interface beyond the paper, behind one interface, :data:`KINDS`.

``train`` and ``predict`` never ask which model they hold; they look it up,
``kind = KINDS[cfg.model]``, and call what the table gives:

* ``kind.init(cfg, rng) -> params``: fresh host parameters;
* ``kind.batch_loss(cfg, params, I, labels, order, rng) -> (loss, grads)``: the loss of
  one mini-batch and its gradients (§3.4);
* ``kind.decode(cfg, params, I, options) -> Decoded``: the predicted labels of a block of
  images, with their probabilities and a ranking score for every label (the path models:
  P(label in path), ``paths/presence.py``; the classifiers: their sigmoid or softmax).

========== ====================== ================================= =================================
kind       parameters             loss of a batch                   decoding
========== ====================== ================================= =================================
cnn-rnn    ``model.init_params``  softmax cross-entropy of the      ``--decode``: beam search (§3.3)
                                  label paths (``model.path_loss``) of the most probable path (Eq. 6)
                                                                    or a decision from P(l in path)
no-rnn     ``init_no_rnn``        the same, Eq. 1 replaced by a     the same decodings with
                                  linear layer (``no_rnn.py``)      ``no_rnn.make_step``
bce        ``init_classifier``    one sigmoid per label             the k most confident labels
softmax    ``init_classifier``    one softmax over the labels       the k most confident labels
           (layers/classifier.py) (``baselines/classifiers.py``)
warp       ``warp.init_warp``     WARP rank loss of linear scores   the k highest scores
                                  (baselines/warp.py, sampled)
knn        none: ``kind.fit``     none: the training features are   the k labels with most votes of
           (``knn.fit_knn``)      stored, n_neighbours chosen by    the nearest training images
                                  leave-one-out
sr-cnn-rnn ``sr_init_params``     the bce network's BCE (concepts), the CNN-RNN's decodings on the
           (rnn/semantic.py)      the path loss on them, then both  concepts (beyond the paper)
========== ====================== ================================= =================================

The path models decode with ``decoding.decode_path`` (``DecodeOptions.decode``): ``path``, the
most probable path by beam search; ``marginal``, the k labels of highest P(label in path);
``marginal-f1``, per image the set of highest expected F1 under the model's sampled paths
(``paths/decisions.py``; docs/inference.md, "Which labels to predict"). A new path model
(e.g. sr-cnn-rnn) gets all three by calling ``decode_path`` with its own one-step decoder.

A kind with a ``fit`` (``fit(cfg, data, rng) -> params``, knn) is not trained by the
epoch loop: ``loop.fit`` calls it once instead. A kind with a ``stage``
(``stage(cfg, epoch) -> int``, sr-cnn-rnn) is trained in stages: its ``batch_loss`` takes
the epoch's stage as the keyword ``stage``, and the epoch loop gets the loss of each epoch
from :meth:`ModelKind.epoch_loss`.

``cfg`` is the run's :class:`minicnnrnn.training.config.RunConfig` (K, D, E, H, variant,
dropout). Everything random (dropout masks) is drawn on the host from ``rng``, a numpy
Generator, in a fixed order, so that the same seed gives the same run.
"""

import dataclasses
import functools
import typing

import numpy as np

from minicnnrnn.baselines import classifiers, knn, no_rnn, warp
from minicnnrnn.core import backend
from minicnnrnn.core.errors import UserError
from minicnnrnn.layers import classifier, dropout, loss
from minicnnrnn.paths import alignment, label_paths
from minicnnrnn.rnn import model, semantic
from minicnnrnn.training.decoding import Decoded, DecodeOptions, decode_path


@dataclasses.dataclass(frozen=True)
class ModelKind:
    """One row of the table: a model's name, its row title in the tables, whether it is
    decoded as a label path (``decode_path``: beam search or a marginal decision) or by
    top-k, and its three functions; ``fit``:
    for a model made in one pass over the data instead of by the epoch loop (knn);
    ``stage``: for a model trained in stages (sr-cnn-rnn), the stage of an epoch."""

    name: str
    title: str
    paths: bool
    init: typing.Callable
    batch_loss: typing.Callable
    decode: typing.Callable
    fit: typing.Optional[typing.Callable] = None
    stage: typing.Optional[typing.Callable] = None

    def epoch_loss(self, cfg, epoch):
        """The batch loss that epoch ``epoch`` (0-based) trains with: ``batch_loss(cfg, params,
        I, labels, order, rng) -> (loss, grads)``, with the epoch's stage bound for a staged kind."""
        if self.stage is None:
            return self.batch_loss
        return functools.partial(self.batch_loss, stage=self.stage(cfg, epoch))


# ---------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------


def _init_cnn_rnn(cfg, rng):
    return model.init_params(cfg.K, cfg.D, cfg.E, cfg.H, rng, cfg.variant)


def _init_no_rnn(cfg, rng):
    return no_rnn.init_no_rnn(cfg.K, cfg.D, cfg.E, cfg.H, rng)


def _init_classifier(cfg, rng):
    return classifier.init_classifier(cfg.K, cfg.D, cfg.E, rng)


# ---------------------------------------------------------------------------
# Loss and gradients of one mini-batch (§3.4)
# ---------------------------------------------------------------------------


def _path_batch(cfg, labels, order, rng, make_step):
    """The label paths of a batch and their dropout mask, on the device.

    labels: (N, K) host 0/1; order: (K,) the training label order. Returns inputs,
    targets, mask (T, N) (label_paths.make_paths; ``mask`` is 1 on the path, 0 on padding)
    and dropout_mask (T, N, E) of 0 and 1/(1-p) for the Eq. 4 output. With
    ``cfg.label_order`` pla or mla each path follows the model's own predictions instead
    (``alignment.aligned_paths``, run with the model's one-step decoder ``make_step()``).
    """
    if cfg.label_order in alignment.ALIGNED:
        paths = alignment.aligned_paths(make_step(), labels, cfg.label_order)
    else:
        paths = label_paths.make_paths(labels, order)
    inputs, targets, mask = (backend.to_device(a) for a in paths)
    dropout_mask = dropout.make_mask(inputs.shape + (cfg.E,), cfg.dropout, rng)
    return inputs, targets, mask, dropout_mask


def _cnn_rnn_loss(cfg, params, I, labels, order, rng):
    """Softmax cross-entropy of the paths, summed over their steps and divided by N."""
    inputs, targets, mask, drop = _path_batch(cfg, labels, order, rng, lambda: model.make_step(params, I, cfg.variant))
    return model.path_loss(params, I, inputs, targets, mask, cfg.variant, drop)


def _no_rnn_loss(cfg, params, I, labels, order, rng):
    """The same loss as the CNN-RNN's, of the no-rnn scores."""
    paths = _path_batch(cfg, labels, order, rng, lambda: no_rnn.make_step(params, I))
    return no_rnn.path_loss(params, I, *paths)


def _classifier_loss(cfg, params, I, labels, order, rng):
    """bce or softmax (``cfg.model``) on the label sets; the classifiers have no paths,
    so ``order`` is unused. Dropout mask (N, E) on the joint-space layer."""
    dropout_mask = dropout.make_mask((I.shape[0], cfg.E), cfg.dropout, rng)
    return classifiers.classifier_loss(cfg.model, params, I, backend.to_device(labels), dropout_mask)


# ---------------------------------------------------------------------------
# Decoding a block of images (the path models: decoding.decode_path)
# ---------------------------------------------------------------------------


def _decode_cnn_rnn(cfg, params, I, options):
    """The CNN-RNN's decodings with its step (``model.make_step``)."""
    return decode_path(options, model.make_step(params, I, cfg.variant), I.shape[0])


def _decode_no_rnn_path(cfg, params, I, options):
    """The same decodings, with the no-rnn model's step (no recurrent state)."""
    return decode_path(options, no_rnn.make_step(params, I), I.shape[0])


def _decode_top_k(cfg, params, I, options):
    """The k = ``options.max_labels`` (default K) most confident labels of each image of
    I (n, D) on the device, most confident first (ties: lower label index first)."""
    raw, _ = classifier.classifier_forward(I, params)
    confidence = backend.to_host(classifiers.classifier_confidence(cfg.model, raw))
    k = min(options.max_labels or cfg.K, cfg.K)
    top = np.argsort(-confidence, axis=1, kind="stable")[:, :k]
    return Decoded(
        labels=top,
        lengths=np.full(len(top), k),
        probabilities=np.take_along_axis(confidence, top, axis=1),
        ranking=confidence,
    )


# ---------------------------------------------------------------------------
# WARP and KNN (baselines/): rankers decoded by their top k
# ---------------------------------------------------------------------------


def _init_warp(cfg, rng):
    return warp.init_warp(cfg.K, cfg.D, rng)


def _warp_loss(cfg, params, I, labels, order, rng):
    """WARP on the label sets (no paths, ``order`` unused); the violators drawn from ``rng``."""
    return warp.warp_batch_loss(params, I, labels, rng)


def _ranked_top_k(cfg, confidence, shown, options):
    """Decoded of the k = ``options.max_labels`` (default K) highest ``confidence`` (n, K)
    host labels, with ``shown`` (n, K) as their probabilities (ties: lower label first)."""
    k = min(options.max_labels or cfg.K, cfg.K)
    top = np.argsort(-confidence, axis=1, kind="stable")[:, :k]
    return Decoded(top, np.full(len(top), k), np.take_along_axis(shown, top, axis=1), confidence)


def _decode_warp(cfg, params, I, options):
    """Top-k of the linear scores; probabilities shown as sigmoid(score)."""
    scores, _ = warp.warp_scores(params, I)
    return _ranked_top_k(cfg, backend.to_host(scores), backend.to_host(loss.sigmoid(scores)), options)


def _fit_knn(cfg, data, rng):
    return knn.fit_knn(cfg, data.train_features, data.train_labels, rng)


def _no_epochs(cfg, *args):
    raise UserError(f"--model {cfg.model}: has no parameters to initialise or train by epochs (it is fit once)")


def _decode_knn(cfg, params, I, options):
    """Top-k of the neighbours' votes (the votes are the probabilities shown)."""
    votes = backend.to_host(knn.knn_scores(params, I))
    return _ranked_top_k(cfg, votes, votes, options)


# ---------------------------------------------------------------------------
# The semantic interface (rnn/semantic.py, beyond the paper): the CNN-RNN on K concepts
# ---------------------------------------------------------------------------


def _init_sr(cfg, rng):
    return semantic.sr_init_params(cfg.K, cfg.D, cfg.E, cfg.H, rng, cfg.variant)


def _sr_stage(cfg, epoch):
    """Stage 1 for the first ``cfg.sr_concept_epochs`` epochs, 2 for the next ``cfg.sr_rnn_epochs``, then 3."""
    return semantic.stage_at(epoch, cfg.sr_concept_epochs, cfg.sr_rnn_epochs)


def _sr_step(cfg, params, I):
    """The CNN-RNN's one-step decoder on the concepts c (n, K) of I (n, D), the sigmoids of the
    bce network (``semantic.concept_probabilities``)."""
    return model.make_step(params, semantic.concept_probabilities(params, I), cfg.variant)


def _sr_loss(cfg, params, I, labels, order, rng, stage=3):
    """``semantic.sr_loss`` of the stage: BCE of the concepts and / or the path loss of the
    CNN-RNN on them (pla / mla paths follow the model's own predictions, on the concepts).
    The masks are drawn in a fixed order: the concept network's (N, E), as the bce baseline
    draws it, in the stages that train the concepts (1, 3); then, in the stages that run the
    RNN (2, 3), the paths' (T, N, E). So stage 1 draws exactly what a bce batch draws."""
    y = backend.to_device(labels)
    train_concepts, train_rnn = semantic.STAGES[stage]
    concept_drop = dropout.make_mask((I.shape[0], cfg.E), cfg.dropout, rng) if train_concepts else None
    if not train_rnn:
        return semantic.sr_loss(params, I, y, None, None, None, cfg.variant, stage, None, concept_drop, cfg.bce_weight)
    inputs, targets, mask, drop = _path_batch(cfg, labels, order, rng, lambda: _sr_step(cfg, params, I))
    return semantic.sr_loss(params, I, y, inputs, targets, mask, cfg.variant, stage, drop, concept_drop, cfg.bce_weight)


def _decode_sr(cfg, params, I, options):
    """The CNN-RNN's decoding (``decoding.decode_path``) with its step on the concepts."""
    return decode_path(options, _sr_step(cfg, params, I), I.shape[0])


KINDS = {
    "cnn-rnn": ModelKind("cnn-rnn", "CNN-RNN", True, _init_cnn_rnn, _cnn_rnn_loss, _decode_cnn_rnn),
    "no-rnn": ModelKind("no-rnn", "No RNN", True, _init_no_rnn, _no_rnn_loss, _decode_no_rnn_path),
    "bce": ModelKind("bce", "Binary cross-entropy", False, _init_classifier, _classifier_loss, _decode_top_k),
    "softmax": ModelKind("softmax", "Softmax", False, _init_classifier, _classifier_loss, _decode_top_k),
    "warp": ModelKind("warp", "WARP", False, _init_warp, _warp_loss, _decode_warp),
    "knn": ModelKind("knn", "KNN", False, _no_epochs, _no_epochs, _decode_knn, fit=_fit_knn),
    "sr-cnn-rnn": ModelKind("sr-cnn-rnn", "SR-CNN-RNN", True, _init_sr, _sr_loss, _decode_sr, stage=_sr_stage),
}


def predict_sets(cfg, params, features, batch_size=512, ranking=True):
    """The label set of every image, for the metrics (§4.1): path models predict the labels
    that ``cfg.decode`` chooses (at most ``cfg.k``, at least ``cfg.min_labels``: the
    beam-search path, or a decision from P(label in path)), classifiers their ``cfg.k`` most
    confident labels.

    features: (n, D) host rows, already normalised (``train_data.Rows``), decoded
    ``batch_size`` at a time; ranking: False skips the path models' presence
    probabilities (model selection needs only the sets). Returns host (pred01 (n, K)
    uint8, scores (n, K) float32: ``Decoded.ranking``, or the beam's confidences where
    ranking is False). The presence
    samples are seeded by ``cfg.seed`` and the block's position, so the result does not
    depend on anything else.
    """
    kind = KINDS[cfg.model]
    pred = np.zeros((len(features), cfg.K), np.uint8)
    scores = np.zeros((len(features), cfg.K), np.float32)
    for start in range(0, len(features), batch_size):
        options = DecodeOptions(
            cfg.beam,
            min(cfg.k, cfg.K),
            cfg.min_labels,
            batch_size,
            ranking,
            samples=cfg.presence_samples,
            seed=cfg.seed * 1_000_003 + start,
            decode=cfg.decode,
            path_limit=cfg.max_path,
        )
        decoded = kind.decode(cfg, params, backend.to_device(features[start : start + batch_size]), options)
        rows, cols = np.nonzero(decoded.labels >= 0)
        pred[start + rows, decoded.labels[rows, cols]] = 1
        ranked = decoded.ranking if decoded.ranking is not None else decoded.beam_confidence
        scores[start : start + len(ranked)] = ranked
    return pred, scores
