"""The semantic-interface model (rnn/semantic.py, ``--model sr-cnn-rnn``): the stages'
losses and parameter sets, the staged schedule, decoding on the concepts, and the kind
trained, decoded, checkpointed and predicted end to end. Its finite-difference checks (all
three stages, every variant) are gradcheck/cases_semantic.py, run by tests/test_gradcheck.py."""

import dataclasses
import json

import numpy as np
import pytest
from test_train import tiny_npz  # noqa: F401 (a fixture)

from minicnnrnn import gradcheck, predict, train
from minicnnrnn.baselines import classifiers
from minicnnrnn.core import backend, cli
from minicnnrnn.gradcheck import cases_semantic
from minicnnrnn.layers import classifier, dropout, loss
from minicnnrnn.paths import beam_search, presence, tokens
from minicnnrnn.rnn import model, semantic
from minicnnrnn.training import checkpoint, config, kinds, loop
from minicnnrnn.training import data as train_data

K, D, E, H, T, N = 4, 5, 3, 4, 3, 3
CONCEPTS = {"c_U_I_x", "c_b_x", "c_U_l", "c_b_l"}


def _problem(seed, variant="bounded"):
    """A small float64 batch: params, I, labels, paths (inputs, targets, mask), dropout mask."""
    rng = np.random.default_rng(seed)
    params = semantic.sr_init_params(K, D, E, H, rng, variant, np.float64)
    params["c_b_l"] += rng.standard_normal(K)  # concepts away from 0.5: c (1 - c) varies
    params = backend.params_to_device(params, np.float64)
    I = backend.to_device(rng.standard_normal((N, D)), np.float64)
    S, END = tokens.start_token(K), tokens.end_token(K)
    labels = backend.to_device(np.array([[0, 0, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]]), np.float64)
    inputs = backend.to_device(np.array([[S, S, S], [2, 0, 1], [3, END, 0]]))
    targets = backend.to_device(np.array([[2, 0, 1], [3, END, 0], [END, 0, END]]))
    mask = backend.to_device(np.array([[1, 1, 1], [1, 1, 1], [1, 0, 1]]), np.float64)
    drop = dropout.make_mask((T, N, E), 0.25, rng, np.float64)
    return params, I, labels, inputs, targets, mask, drop


def test_shapes_and_each_stage_trains_its_half():
    params, I, labels, inputs, targets, mask, drop = _problem(0)
    assert params["U_I_x"].shape == (K, E) and params["c_U_I_x"].shape == (D, E) and params["c_U_l"].shape == (K, E)
    rnn = set(model.init_params(K, K, E, H, np.random.default_rng(0), "bounded"))
    assert set(params) == rnn | CONCEPTS
    want = {1: CONCEPTS, 2: rnn, 3: rnn | CONCEPTS}
    for stage in semantic.STAGES:
        _, grads = semantic.sr_loss(params, I, labels, inputs, targets, mask, "bounded", stage, drop)
        assert set(grads) == want[stage]


def test_stages_add_up_and_the_path_loss_reaches_the_concepts():
    params, I, labels, inputs, targets, mask, drop = _problem(0)
    args = (params, I, labels, inputs, targets, mask, "bounded")
    bce, g1 = semantic.sr_loss(*args, 1, drop, bce_weight=0.7)
    path, g2 = semantic.sr_loss(*args, 2, drop, bce_weight=0.7)
    both, g3 = semantic.sr_loss(*args, 3, drop, bce_weight=0.7)
    assert both == pytest.approx(bce + path)
    # stage 1 is the BCE of the concept scores (layers/loss.py, the BCE baseline's loss)
    logits, _ = semantic.concept_forward(I, params)
    assert bce == pytest.approx(0.7 * loss.sigmoid_cross_entropy(logits, labels)[0], rel=1e-12)
    for name in g2:  # the RNN's gradients do not depend on the BCE term
        np.testing.assert_allclose(backend.to_host(g3[name]), backend.to_host(g2[name]), rtol=1e-12)
    for name in CONCEPTS:  # stage 3 adds the path loss's share to every concept parameter
        assert np.abs(backend.to_host(g3[name] - g1[name])).max() > 1e-6, name
    # stage 2 is the CNN-RNN's own path loss with the concepts as its image
    c = semantic.concept_probabilities(params, I)
    value, grads = model.path_loss(params, c, inputs, targets, mask, "bounded", drop)
    assert path == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(backend.to_host(g2["U_I_x"]), backend.to_host(grads["U_I_x"]), rtol=1e-12)


def test_the_concept_layer_is_the_bce_baseline():
    """Same seed, same initial network as the bce baseline; stage 1 is the bce baseline's loss
    and gradients exactly (one implementation, ``layers/classifier.py``), dropout included;
    and, through the kinds, a stage-1 batch draws from the rng what a bce batch draws."""
    sr = semantic.sr_init_params(K, D, E, H, np.random.default_rng(3), "bounded")
    bce = classifier.init_classifier(K, D, E, np.random.default_rng(3))
    assert set(bce) == set(classifier.PARAMS)
    for name in classifier.PARAMS:
        np.testing.assert_array_equal(sr["c_" + name], bce[name])
    params, I, labels, *_ = _problem(4)
    net = {name: params["c_" + name] for name in classifier.PARAMS}
    mask = dropout.make_mask((N, E), 0.5, np.random.default_rng(1), np.float64)
    value, grads = semantic.sr_loss(params, I, labels, None, None, None, "bounded", 1, concept_dropout_mask=mask)
    want, want_grads = classifiers.classifier_loss("bce", net, I, labels, mask)
    assert value == want and set(grads) == CONCEPTS
    for name in classifier.PARAMS:
        np.testing.assert_array_equal(backend.to_host(grads["c_" + name]), backend.to_host(want_grads[name]))
    cfg = config.RunConfig(model="sr-cnn-rnn", K=K, D=D, E=E, H=H, variant="bounded", cnn=None, dropout=0.5)
    host_labels = backend.to_host(labels).astype(np.uint8)
    rngs = np.random.default_rng(9), np.random.default_rng(9)
    value, grads = kinds.KINDS["sr-cnn-rnn"].batch_loss(cfg, params, I, host_labels, np.arange(K), rngs[0], stage=1)
    bce_cfg = dataclasses.replace(cfg, model="bce")
    want, want_grads = kinds.KINDS["bce"].batch_loss(bce_cfg, net, I, host_labels, np.arange(K), rngs[1])
    assert value == want and rngs[0].bit_generator.state == rngs[1].bit_generator.state
    for name in classifier.PARAMS:
        np.testing.assert_array_equal(backend.to_host(grads["c_" + name]), backend.to_host(want_grads[name]))


def test_stage_2_sees_the_concepts_without_dropout():
    """In stage 2 the concepts are a fixed input: a concept mask would change nothing the
    kinds pass (they pass none), and the path loss is the one on the inference concepts."""
    params, I, labels, inputs, targets, mask, drop = _problem(5)
    c = semantic.concept_probabilities(params, I)
    value, _ = semantic.sr_loss(params, I, labels, inputs, targets, mask, "bounded", 2, drop)
    assert value == pytest.approx(model.path_loss(params, c, inputs, targets, mask, "bounded", drop)[0], rel=1e-12)


def test_path_backward_returns_the_image_gradient_only_when_asked():
    params, I, _, inputs, targets, mask, drop = _problem(2)
    c = semantic.concept_probabilities(params, I)
    scores, cache = model.path_forward(params, c, inputs, mask, "bounded", drop)
    _, dscores = loss.softmax_cross_entropy(scores, targets, mask)
    plain = model.path_backward(dscores, cache)
    grads, dc = model.path_backward(dscores, cache, image_grad=True)
    assert dc.shape == (N, K) and set(grads) == set(plain)
    for name in plain:
        np.testing.assert_array_equal(backend.to_host(grads[name]), backend.to_host(plain[name]))


def test_staged_schedule():
    assert [semantic.stage_at(e, 2, 3) for e in range(7)] == [1, 1, 2, 2, 2, 3, 3]
    assert [semantic.stage_at(e, 0, 0) for e in range(2)] == [3, 3]  # no stages: joint from the start
    assert [semantic.stage_at(e, 0, 1) for e in range(3)] == [2, 3, 3]
    cfg = config.RunConfig(model="sr-cnn-rnn", K=K, D=D, E=E, H=H, variant="bounded", cnn=None)
    cfg = dataclasses.replace(cfg, sr_concept_epochs=1, sr_rnn_epochs=2)
    kind = kinds.KINDS["sr-cnn-rnn"]
    assert [kind.epoch_loss(cfg, e).keywords["stage"] for e in range(5)] == [1, 2, 2, 3, 3]
    assert kinds.KINDS["cnn-rnn"].epoch_loss(cfg, 0) is kinds.KINDS["cnn-rnn"].batch_loss  # not staged
    with pytest.raises(Exception, match="sr_rnn_epochs|--sr-rnn-epochs"):
        config.check_value("sr_rnn_epochs", -1)


def test_every_stage_and_variant_is_gradient_checked():
    names = [name for name, _ in gradcheck.all_cases()]
    for name, _ in cases_semantic.CASES:
        assert name in names
    assert len(cases_semantic.CASES) == len(semantic.STAGES) * 3


def test_decoding_on_the_concepts():
    """The decoders of paths/ run on the CNN-RNN's step over the concepts: its first step
    equals the first step of the teacher-forced scores, and presence and beam search take it."""
    params, I, _, inputs, _, mask, _ = _problem(1)
    c = semantic.concept_probabilities(params, I)
    host_c = backend.to_host(c)
    assert host_c.shape == (N, K) and ((host_c > 0) & (host_c < 1)).all()
    scores, _ = model.path_forward(params, c, inputs, mask, "bounded")
    step = model.make_step(params, c, "bounded")
    lp, _ = step(None, None, np.arange(N))
    np.testing.assert_allclose(backend.to_host(lp), backend.to_host(loss.log_softmax(scores[0])), rtol=1e-10)
    p, _, method = presence.presence(step, N, max_labels=2)
    assert method == "exact" and p.shape == (N, K)
    result = beam_search.beam_search(step, N, 2, max_labels=2)
    assert backend.to_host(result.paths).shape[0] == N


def test_trains_decodes_checkpoints_and_predicts(tiny_npz, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "sr"
    stages = ["--sr-concept-epochs", "1", "--sr-rnn-epochs", "1"]
    tiny = ["--epochs", "3", "--embed", "8", "--hidden", "16", "--batch-size", "32", "--decode", "path"]
    assert train.main(["--dataset", f"npz:{tiny_npz}", "--out", str(out), "--model", "sr-cnn-rnn", *tiny, *stages]) == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["run"]["model"] == "sr-cnn-rnn" and 0 < record["metrics"]["mAP"] <= 100
    state = checkpoint.load(out / "checkpoint.npz")  # the schema check: every shape as the kind makes it
    cfg = state["config"]
    assert (cfg.model, cfg.sr_concept_epochs, cfg.sr_rnn_epochs, cfg.decode) == ("sr-cnn-rnn", 1, 1, "path")
    assert state["params"]["c_U_I_x"].shape == (cfg.D, cfg.E) and state["params"]["U_I_x"].shape == (cfg.K, cfg.E)
    # a wrong shape is refused by the checkpoint schema
    bad = dict(state, params=dict(state["params"], c_U_l=state["params"]["c_U_l"][:-1]))
    checkpoint.save(tmp_path / "bad.npz", bad)
    with pytest.raises(Exception, match="parameter c_U_l has shape"):
        checkpoint.load(tmp_path / "bad.npz")
    # predict on the checkpoint decodes as the kind does, by beam search on the concepts
    data = train_data.load_npz(str(tiny_npz))
    features = np.asarray(data.test_features[:6], np.float32)
    np.save(tmp_path / "f.npy", features)
    capsys.readouterr()
    assert (
        predict.main(["--checkpoint", str(out / "checkpoint.npz"), "--features", str(tmp_path / "f.npy"), "--json"])
        == 0
    )
    preds = json.loads(capsys.readouterr().out)
    params = backend.params_to_device(state["params"])
    I = backend.to_device(train_data.normalise(features, cfg.feature_norm))
    step = model.make_step(params, semantic.concept_probabilities(params, I), cfg.variant)
    result = beam_search.beam_search(step, len(features), cfg.beam, max_labels=cfg.k, min_labels=cfg.min_labels)
    paths, lengths = backend.to_host(result.paths), backend.to_host(result.lengths)
    want = [[state["label_names"][j] for j in paths[i, : lengths[i]]] for i in range(len(features))]
    assert [p["labels"] for p in preds] == want


def test_the_epoch_loop_trains_only_the_stages_half(tiny_npz):  # noqa: F811
    data = train_data.load_npz(str(tiny_npz))
    K_, D_ = data.train_labels.shape[1], data.train_features.shape[1]
    cfg = config.RunConfig(model="sr-cnn-rnn", K=K_, D=D_, E=4, H=8, variant="bounded", cnn=None)
    cfg = dataclasses.replace(cfg, epochs=3, sr_concept_epochs=1, sr_rnn_epochs=1, recurrent_lr_scale=0.01)
    rng = np.random.default_rng(0)
    params = backend.params_to_device(kinds.KINDS[cfg.model].init(cfg, rng))
    opt = loop.make_optimizer(cfg, params)
    order = np.arange(K_)
    for epoch, trained in enumerate([CONCEPTS, set(params) - CONCEPTS, set(params)]):
        before = {name: backend.to_host(value).copy() for name, value in params.items()}
        loop.run_epoch(cfg, params, opt, data, order, rng, epoch)
        moved = {name for name in params if not np.array_equal(backend.to_host(params[name]), before[name])}
        assert moved == trained, epoch


def test_resume_across_a_stage_boundary_matches_the_uninterrupted_run(tiny_npz, tmp_path, monkeypatch):  # noqa: F811
    args = ["--model", "sr-cnn-rnn", "--sr-concept-epochs", "1", "--sr-rnn-epochs", "1", "--epochs", "3"]
    args += ["--embed", "8", "--hidden", "16", "--batch-size", "32", "--dataset", f"npz:{tiny_npz}"]
    train.main([*args, "--out", str(tmp_path / "full")])
    original = loop.run_epoch

    def interrupted(cfg, params, opt, data, order, rng, epoch, *rest):
        if epoch == 2:  # the first epoch of stage 3
            raise KeyboardInterrupt
        return original(cfg, params, opt, data, order, rng, epoch, *rest)

    monkeypatch.setattr(loop, "run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train.main([*args, "--out", str(tmp_path / "cut")])
    monkeypatch.setattr(loop, "run_epoch", original)
    train.main([*args, "--out", str(tmp_path / "cut"), "--resume"])
    full, cut = (checkpoint.load(tmp_path / x / "checkpoint.npz") for x in ("full", "cut"))
    for name in full["params"]:
        np.testing.assert_array_equal(full["params"][name], cut["params"][name])
    assert (tmp_path / "full" / "metrics.json").read_bytes() == (tmp_path / "cut" / "metrics.json").read_bytes()


def test_bce_weight_option_reaches_the_stage_losses(capsys):
    """``--bce-weight`` (RunConfig.bce_weight): parsed, checked in one line, and the weight
    ``sr_loss`` gets from the kind; its default 1.0 leaves every stage's loss as before."""
    assert train.make_parser().parse_args([]).bce_weight == 1.0
    assert train.make_parser().parse_args(["--bce-weight", "0.25"]).bce_weight == 0.25
    for bad in ("-1", "inf", "nan"):
        with pytest.raises(SystemExit) as exit_info:
            cli.run(train.main, ["--model", "sr-cnn-rnn", "--bce-weight", bad])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --bce-weight: must be a finite number >= 0") and "\n" not in err
    params, I, _, _, _, _, _ = _problem(5)
    labels = np.array([[0, 0, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]], np.uint8)
    cfg = config.RunConfig(model="sr-cnn-rnn", K=K, D=D, E=E, H=H, variant="bounded", cnn=None)
    order = np.arange(K)

    def kind_loss(cfg, stage):
        return kinds.KINDS["sr-cnn-rnn"].batch_loss(cfg, params, I, labels, order, np.random.default_rng(3), stage)

    def plain_loss(stage, **weight):  # semantic.sr_loss called as before the option existed
        rng = np.random.default_rng(3)  # the same draws as kinds._sr_loss: concept mask, then the paths'
        y = backend.to_device(labels)
        train_concepts, train_rnn = semantic.STAGES[stage]
        concept_drop = dropout.make_mask((N, E), cfg.dropout, rng) if train_concepts else None
        if not train_rnn:
            return semantic.sr_loss(params, I, y, None, None, None, "bounded", stage, None, concept_drop, **weight)
        step = lambda: kinds._sr_step(cfg, params, I)  # noqa: E731
        inputs, targets, mask, drop = kinds._path_batch(cfg, labels, order, rng, step)
        return semantic.sr_loss(params, I, y, inputs, targets, mask, "bounded", stage, drop, concept_drop, **weight)

    heavy = dataclasses.replace(cfg, bce_weight=3.0)
    for stage in semantic.STAGES:
        value, grads = kind_loss(cfg, stage)
        before, before_grads = plain_loss(stage)
        assert value == before
        for name in grads:
            np.testing.assert_array_equal(backend.to_host(grads[name]), backend.to_host(before_grads[name]))
        weighted, weighted_grads = kind_loss(heavy, stage)
        assert weighted == plain_loss(stage, bce_weight=3.0)[0]
        if semantic.STAGES[stage][0]:  # the stages with a BCE term: the weight changes the loss and grads
            assert weighted != value
            assert not np.allclose(backend.to_host(weighted_grads["c_b_l"]), backend.to_host(grads["c_b_l"]))
        else:  # stage 2 has no BCE term
            assert weighted == value
