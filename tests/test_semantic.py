"""The semantic-interface model (rnn/semantic.py): finite-difference gradient checks of every
training stage (float64), the stages' parameter sets, and decoding on the concepts."""

import numpy as np
import pytest

from minicnnrnn.core import backend
from minicnnrnn.core.numgrad import TOLERANCE, check
from minicnnrnn.layers import dropout, loss
from minicnnrnn.rnn import beam_search, model, presence, projection, semantic, tokens

K, D, E, H, T, N = 4, 5, 3, 4, 3, 3
STAGES = {1: (True, False), 2: (False, True), 3: (True, True)}
CONCEPTS = {"W_c", "b_c"}


def _problem(seed, variant):
    """A small float64 batch: params, I, labels, paths (inputs, targets, mask), dropout mask."""
    rng = np.random.default_rng(seed)
    params = semantic.sr_init_params(K, D, E, H, rng, variant, np.float64)
    params["b_c"] += rng.standard_normal(K)  # concepts away from 0.5: c (1 - c) varies
    params = backend.params_to_device(params, np.float64)
    I = backend.to_device(rng.standard_normal((N, D)), np.float64)
    S, END = tokens.start_token(K), tokens.end_token(K)
    labels = backend.to_device(np.array([[0, 0, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]]), np.float64)
    inputs = backend.to_device(np.array([[S, S, S], [2, 0, 1], [3, END, 0]]))
    targets = backend.to_device(np.array([[2, 0, 1], [3, END, 0], [END, 0, END]]))
    mask = backend.to_device(np.array([[1, 1, 1], [1, 1, 1], [1, 0, 1]]), np.float64)
    drop = dropout.make_mask((T, N, E), 0.25, rng, np.float64)
    return params, I, labels, inputs, targets, mask, drop


@pytest.mark.parametrize("variant", ["bounded", "relu", "conventional"])
@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_matches_finite_differences(stage, variant):
    params, I, labels, inputs, targets, mask, drop = _problem(stage, variant)
    train_concepts, train_rnn = STAGES[stage]

    def f():
        return semantic.sr_loss(
            params, I, labels, inputs, targets, mask, variant, 0.7, drop, train_concepts, train_rnn
        )[0]

    _, grads = semantic.sr_loss(params, I, labels, inputs, targets, mask, variant, 0.7, drop, train_concepts, train_rnn)
    want = (CONCEPTS if train_concepts else set()) | (set(params) - CONCEPTS if train_rnn else set())
    assert set(grads) == want
    assert check(f, {name: params[name] for name in grads}, grads) < TOLERANCE


def test_stages_add_up_and_the_path_loss_reaches_the_concepts():
    params, I, labels, inputs, targets, mask, drop = _problem(0, "bounded")
    args = (params, I, labels, inputs, targets, mask, "bounded", 0.7, drop)
    bce, g1 = semantic.sr_loss(*args, train_concepts=True, train_rnn=False)
    path, g2 = semantic.sr_loss(*args, train_concepts=False, train_rnn=True)
    both, g3 = semantic.sr_loss(*args)
    assert both == pytest.approx(bce + path)
    for name in g2:  # the RNN's gradients do not depend on the BCE term
        np.testing.assert_allclose(backend.to_host(g3[name]), backend.to_host(g2[name]), rtol=1e-12)
    extra = backend.to_host(g3["W_c"] - g1["W_c"])  # stage 3 adds the path loss's share
    assert np.abs(extra).max() > 1e-6
    # stage 2 is the CNN-RNN's own path loss on the concepts
    c = semantic.concept_probabilities(params, I)
    value, grads = model.path_loss(params, c, inputs, targets, mask, "bounded", drop)
    assert path == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(backend.to_host(g2["U_I_x"]), backend.to_host(grads["U_I_x"]), rtol=1e-12)
    with pytest.raises(ValueError, match="nothing to train"):
        semantic.sr_loss(*args, train_concepts=False, train_rnn=False)


def test_decoding_on_the_concepts():
    """The model's decoders run on (params, c): the first decoding step equals the first step
    of the teacher-forced scores, and presence and beam search accept it."""
    params, I, _, inputs, _, mask, _ = _problem(1, "bounded")
    assert params["U_I_x"].shape == (K, E) and params["W_c"].shape == (D, K)
    c = semantic.concept_probabilities(params, I)
    host_c = backend.to_host(c)
    assert host_c.shape == (N, K) and ((host_c > 0) & (host_c < 1)).all()
    scores, _ = model.path_forward(params, c, inputs, mask, "bounded")
    image = projection.image_and_bias(c, params)
    lp, _ = beam_search.cnn_rnn_step(params, inputs[0], None, image, "bounded")
    np.testing.assert_allclose(backend.to_host(lp), backend.to_host(loss.log_softmax(scores[0])), rtol=1e-10)
    p, _, method = presence.presence(params, c, variant="bounded", max_labels=2)
    assert method == "exact" and p.shape == (N, K)
    paths = beam_search.beam_search(params, c, 2, max_labels=2, variant="bounded")[0]
    assert backend.to_host(paths).shape[0] == N
