"""How a block of images is decoded: :class:`DecodeOptions` in, :class:`Decoded` out.

The classifiers decode by their top k (``kinds.py``). The path models (cnn-rnn, no-rnn,
sr-cnn-rnn) share :func:`decode_path`, which needs only the model's one-step decoder
(``model.make_step``): ``path``, the most probable path by beam search (§3.3, Eq. 6);
``marginal``, the k labels of highest P(label in path); ``marginal-f1``, per image the set of
highest expected F1 under the model's sampled paths (``paths/decisions.py``;
docs/inference.md, "Which labels to predict"). Shapes: n images, K labels, L labels on the
longest predicted path.
"""

import dataclasses
import typing

import numpy as np

from minicnnrnn.core import backend
from minicnnrnn.paths import beam_search, decisions, presence, tokens


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
    """How to decode. beam: beam width B (§3.3, path models); max_labels: the longest path,
    or the k of top-k for classifiers (None: K); min_labels: the shortest path (footnote 1);
    batch_size: images searched together by beam search (None: its backend default);
    ranking: compute the path models' ranking scores P(label in path) (False: only the
    predicted labels are needed, and ``Decoded.ranking`` is None);
    samples, seed: the ancestral sampling of ``presence.presence`` where it is not exact;
    decode: the path models' decision (``config.DECODINGS``; auto, not yet chosen, decodes the
    path); path_limit: the longest path of the presence and the marginal decodings (None: K;
    ``RunConfig.max_path``). The presence is that of the model's own paths: at most
    path_limit labels, at least min_labels. The marginal decodings predict at most max_labels
    labels (None: K)."""

    beam: int = 3
    max_labels: typing.Optional[int] = None
    min_labels: int = 0
    batch_size: typing.Optional[int] = None
    ranking: bool = True
    samples: int = presence.DEFAULT_SAMPLES
    seed: int = 0
    decode: str = "path"
    path_limit: typing.Optional[int] = None


@dataclasses.dataclass
class Decoded:
    """Predictions for n images (host arrays), in the order the model emits the labels.

    labels: (n, L) int64 label indices, padded with -1; lengths: (n,) labels per image;
    probabilities: (n, L) each predicted label's probability (its step probability on the
    path, P(label in path) for the marginal decodings, or the classifier's confidence);
    ranking: (n, K) a score per label for ranking (MAP@10, AP): P(label in path) for the
    path models (``presence.presence``; None when
    ``DecodeOptions.ranking`` is False and decode is path), the sigmoid / softmax for the classifiers;
    beam_confidence: (n, K) the beam search's per-label confidences (``BeamResult.confidence``),
    None for the classifiers; end_probability, log_probability: (n,) the probability of END
    after the path and log P of the whole path (Eq. 6), None for the classifiers and the
    marginal decodings;
    ranking_stderr: (n, K) the Monte-Carlo standard error of a sampled presence (zeros where
    exact), None for the classifiers.
    """

    labels: np.ndarray
    lengths: np.ndarray
    probabilities: np.ndarray
    ranking: typing.Optional[np.ndarray]
    beam_confidence: typing.Optional[np.ndarray] = None
    end_probability: typing.Optional[np.ndarray] = None
    log_probability: typing.Optional[np.ndarray] = None
    ranking_stderr: typing.Optional[np.ndarray] = None


def decode_path(options, step, n):
    """The labels of n images of a path model, as ``options.decode`` says: the most probable
    path (beam search, §3.3) or a decision from the model's P(label in path) (marginal,
    marginal-f1). step: the model's one-step decoder of these images (``model.make_step``)."""
    if options.decode in ("marginal", "marginal-f1"):
        return _decode_marginal(options, step, n)
    return _decode_beam(options, step, n)


def _ranking(options, step, n):
    """(P(label in path) (n, K), its standard error) under the options' grammar, or (None, None)."""
    if not options.ranking:
        return None, None
    ranking, stderr, _ = presence.presence(
        step,
        n,
        max_labels=options.path_limit,
        min_labels=options.min_labels,
        samples=options.samples,
        seed=options.seed,
    )
    return ranking, stderr


def _decode_beam(options, step, n):
    """Beam search (§3.3) for the most probable path (Eq. 6) of each of the n images."""
    result = beam_search.beam_search(
        step,
        n,
        options.beam,
        max_labels=options.max_labels,
        min_labels=options.min_labels,
        batch_size=options.batch_size,
    )
    paths, lengths, log_prob, step_log_probs, confidence = (backend.to_host(a) for a in result[:5])
    step_probs = np.exp(step_log_probs)  # (n, L + 1): the labels' steps, then END's
    ranking, stderr = _ranking(options, step, n)  # rank by P(label in path), not by the beam's confidences
    return Decoded(
        labels=paths,
        lengths=lengths,
        probabilities=step_probs[:, : paths.shape[1]],
        ranking=ranking,
        beam_confidence=confidence,
        end_probability=step_probs[np.arange(len(paths)), lengths],
        log_probability=log_prob,
        ranking_stderr=stderr,
    )


def _decode_marginal(options, step, n):
    """marginal: the k = ``options.max_labels`` labels of highest P(label in path) (exact where
    cheap); marginal-f1: the expected-F1 set of at least min_labels and at most k labels from
    the sampled paths, whose Rao-Blackwell sums are also the ranking (one set of samples)."""
    K = tokens.n_labels_of_step(step)
    k = min(options.max_labels or K, K)
    if options.decode == "marginal":
        ranking, stderr = _ranking(dataclasses.replace(options, ranking=True), step, n)
        labels = decisions.top_k_marginal(ranking, k)
        lengths = np.full(n, labels.shape[1], dtype=np.int64)
    else:
        m = decisions.sampled_marginals(
            step, n, options.samples, options.seed, options.path_limit, options.min_labels, k
        )
        ranking, stderr = m.presence, m.stderr
        labels, lengths = decisions.ordered_labels(m.f1_sets, ranking)
    probabilities = np.where(labels >= 0, np.take_along_axis(ranking, np.maximum(labels, 0), axis=1), 0.0)
    return Decoded(labels, lengths, probabilities, ranking, ranking_stderr=stderr)
