"""The registry of model kinds (training/kinds.py) and the run settings (training/config.py)."""

import dataclasses

import numpy as np
import pytest
from conftest import dev, host

from minicnnrnn.baselines import classifiers
from minicnnrnn.core.errors import UserError
from minicnnrnn.evaluation import metrics
from minicnnrnn.layers import classifier, dropout
from minicnnrnn.paths import beam_search, label_paths, presence
from minicnnrnn.rnn import model
from minicnnrnn.training import kinds
from minicnnrnn.training.config import RunConfig

K, D, E, H, N = 5, 7, 4, 6, 9


def _cfg(name, **changes):
    return RunConfig(name, K, D, E, H, "relu", None, **changes)


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    labels = (rng.random((N, K)) < 0.4).astype(np.uint8)
    return rng.standard_normal((N, D)).astype(np.float32), labels, np.arange(K)[::-1].copy()


def test_the_table_holds_the_models_of_tables_1_to_3_and_the_semantic_interface():
    assert list(kinds.KINDS) == ["cnn-rnn", "no-rnn", "bce", "softmax", "warp", "knn", "sr-cnn-rnn"]
    assert [kind.paths for kind in kinds.KINDS.values()] == [True, True, False, False, False, False, True]
    assert all(name == kind.name for name, kind in kinds.KINDS.items())


@pytest.mark.parametrize("name", [n for n, kind in kinds.KINDS.items() if kind.fit is None])
def test_every_kind_inits_trains_and_decodes(name):
    cfg = _cfg(name)
    kind = kinds.KINDS[name]
    params = dev(kind.init(cfg, np.random.default_rng(1)))
    I, labels, order = _batch()
    value, grads = kind.batch_loss(cfg, params, dev(I), labels, order, np.random.default_rng(2))
    assert np.isfinite(value) and value > 0 and set(grads) == set(params)
    assert all(grads[k].shape == params[k].shape for k in params)
    decoded = kind.decode(cfg, params, dev(I), kinds.DecodeOptions(beam=2, max_labels=3))
    assert decoded.ranking.shape == (N, K) and decoded.labels.shape[0] == N
    assert (decoded.lengths <= 3).all() and decoded.labels.shape[1] <= 3
    for i, n in enumerate(decoded.lengths):
        path = decoded.labels[i, :n]
        assert len(set(path)) == n and (path >= 0).all() and (decoded.labels[i, n:] == -1).all()
        assert ((decoded.probabilities[i, :n] > 0) & (decoded.probabilities[i, :n] <= 1)).all()
    assert (decoded.end_probability is not None) == kind.paths


def test_cnn_rnn_batch_loss_is_the_path_loss_with_the_rng_dropout_mask():
    cfg = _cfg("cnn-rnn", dropout=0.3)
    params = dev(kinds.KINDS["cnn-rnn"].init(cfg, np.random.default_rng(1)))
    I, labels, order = _batch()
    value, grads = kinds.KINDS["cnn-rnn"].batch_loss(cfg, params, dev(I), labels, order, np.random.default_rng(5))
    inputs, targets, mask = label_paths.make_paths(labels, order)
    dropout_mask = dropout.make_mask(inputs.shape + (E,), 0.3, np.random.default_rng(5))
    expected, expected_grads = model.path_loss(params, dev(I), *dev((inputs, targets, mask)), "relu", dropout_mask)
    assert value == expected
    for k in params:
        np.testing.assert_array_equal(host(grads[k]), host(expected_grads[k]))


def test_top_k_decoding_is_the_metrics_top_k_and_paths_are_the_beam_search():
    I, labels, order = _batch()
    bce = _cfg("bce", k=2)
    params = dev(kinds.KINDS["bce"].init(bce, np.random.default_rng(3)))
    pred, scores = kinds.predict_sets(bce, params, I, batch_size=4)  # 3 blocks
    raw, _ = classifier.classifier_forward(dev(I), params)
    # Blocks of 4 images against one product: BLAS may pick another float32 kernel, so not bit-equal.
    np.testing.assert_allclose(scores, host(classifiers.classifier_confidence("bce", raw)), rtol=1e-5)
    np.testing.assert_array_equal(pred, metrics.topk_predictions(scores, 2))
    cnn_rnn = _cfg("cnn-rnn", beam=2, k=3, min_labels=1)
    params = dev(kinds.KINDS["cnn-rnn"].init(cnn_rnn, np.random.default_rng(3)))
    pred, scores = kinds.predict_sets(cnn_rnn, params, I)
    step = model.make_step(params, dev(I), "relu")
    result = host(beam_search.beam_search(step, N, 2, max_labels=3, min_labels=1))
    _, beam_scores = kinds.predict_sets(cnn_rnn, params, I, ranking=False)
    np.testing.assert_array_equal(beam_scores, result.confidence)
    # ranked by P(label in path) of the model's own paths (exact: K = 5 is small)
    expected, _, method = presence.presence(step, N, min_labels=1, exact_limit=10**6)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    assert [set(np.flatnonzero(row)) for row in pred] == [set(p[p >= 0]) for p in result.paths]


def test_run_config_from_dict_names_the_file():
    good = _cfg("bce").to_dict()
    assert RunConfig.from_dict(good, "ck.npz") == _cfg("bce")
    assert RunConfig.from_dict({**good, "lr": 1}, "ck.npz").lr == 1  # a JSON number is a float
    cases = [
        ({**good, "model": "rnn"}, "ck.npz: checkpoint config model = 'rnn' is not one of"),
        ({k: v for k, v in good.items() if k != "H"}, "ck.npz: checkpoint config lacks H"),
        ({**good, "epochs": 2.5}, "ck.npz: checkpoint config epochs = 2.5 is not int"),
        ({**good, "feature_norm": "l2"}, "ck.npz: checkpoint config feature_norm = 'l2' is not dict or null"),
        ({**good, "speed": 1}, "ck.npz: checkpoint config has unknown settings 'speed'"),
        ([1, 2], "ck.npz: checkpoint config is not a JSON object"),
    ]
    for d, message in cases:
        with pytest.raises(UserError, match=message):
            RunConfig.from_dict(d, "ck.npz")
    with pytest.raises(dataclasses.FrozenInstanceError):
        _cfg("bce").lr = 1.0  # a run's settings do not change during the run
