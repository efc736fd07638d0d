"""Pretraining the small CNN: loss goes down, checkpoints resume exactly, outputs are complete."""

import json
import os

import numpy as np
import pytest
from conftest import dev, host

from minicnnrnn import pretrain
from minicnnrnn.cnn import preprocess, vgg
from minicnnrnn.core import backend, fileio
from minicnnrnn.core.errors import UserError
from minicnnrnn.tinyscenes import features, scenes, source_task

TINY = ["--n-pretrain", "48", "--n-heldout", "24", "--size", "32", "--batch-size", "16", "--epochs", "2"]


def _args(tmp_path, *extra):
    return TINY + [
        "--out",
        str(tmp_path / "cnn.npz"),
        "--checkpoint",
        str(tmp_path / "ckpt.npz"),
        "--cache-dir",
        str(tmp_path / "cache"),
        *extra,
    ]


def test_training_steps_decrease_the_loss():
    """Several Adam steps on 32 pictures lower the BCE loss on those pictures."""
    images, labels = scenes.generate(32, seed=5, size=32)
    meta = pretrain.make_meta(images, 32, task="labels")
    rng = np.random.default_rng(0)
    params = backend.params_to_device(vgg.init_params(meta, rng))
    opt = pretrain.make_optimizer(params, weight_decay=0.0)

    def batch_loss():
        x = backend.to_device(preprocess.normalise(images, meta["preprocess"]))
        outs, _ = vgg.vgg_forward(params, meta, x, outputs=("logits",))
        return pretrain.loss.sigmoid_cross_entropy(outs["logits"], backend.to_device(labels))[0]

    before = batch_loss()
    args = pretrain.build_parser().parse_args(["--batch-size", "16", "--dropout", "0", "--lr", "2e-3"])
    step = 0
    for _ in range(8):
        _, step = pretrain.train_epoch(params, meta, opt, images, labels, rng, args, step, 10**6)
    assert step == 16
    assert batch_loss() < 0.8 * before


def test_run_writes_weights_record_and_checkpoint(tmp_path, capsys):
    assert pretrain.main(_args(tmp_path)) == 0
    params, meta = vgg.load(tmp_path / "cnn.npz")
    assert meta["config"] == pretrain.CONFIG and meta["fc"] == pretrain.FC
    # the default task is the source task: its outputs name no target label
    assert meta["num_classes"] == source_task.A and meta["label_names"] == source_task.ATTRIBUTE_NAMES
    assert not set(meta["label_names"]) & set(scenes.LABEL_NAMES)
    record = json.loads((tmp_path / "cnn.json").read_text())
    assert record["sha256"] == features.file_sha256(tmp_path / "cnn.npz")
    assert record["settings"]["task"] == "attributes" and record["dataset"]["task"] == "attributes"
    assert 0.0 < record["heldout_mAP"] <= 1.0 and len(record["history"]) == 2
    assert record["command"].startswith("python -m minicnnrnn.pretrain --n-pretrain 48")
    assert not os.path.exists(tmp_path / "ckpt.npz")  # removed once the run is complete
    # the record's checksum is what load_builtin_cnn verifies
    loaded, _ = features.load_builtin_cnn(str(tmp_path / "cnn.npz"))
    assert all(np.array_equal(loaded[k], params[k]) for k in params)


def test_labels_task_trains_on_the_target_labels(tmp_path):
    assert pretrain.main(_args(tmp_path, "--task", "labels")) == 0
    _, meta = vgg.load(tmp_path / "cnn.npz")
    assert meta["num_classes"] == scenes.K and meta["label_names"] == scenes.LABEL_NAMES


def test_heldout_pictures_are_pretrain_pictures_after_the_training_ones(tmp_path):
    """The reported mAP is scored on pretrain-seed pictures the CNN did not train on, never on test pictures."""
    images, answers = pretrain.load_task("attributes", 48 + 24, 32, str(tmp_path))
    first, _ = scenes.generate(48, scenes.SPLIT_SEEDS["pretrain"], 32)
    test, _ = scenes.generate(24, scenes.SPLIT_SEEDS["test"], 32)
    np.testing.assert_array_equal(images[:48], first)
    assert not any((images[48:] == t).all() for t in test)
    assert answers.shape == (72, source_task.A)


def _interrupt_in_second_epoch(monkeypatch, folder):
    """Run the tiny pretraining but stop it (Ctrl-C) during epoch 2, leaving the epoch-1 checkpoint."""
    real_epoch, calls = pretrain.train_epoch, []

    def stop_in_second_epoch(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_epoch(*a, **k)

    monkeypatch.setattr(pretrain, "train_epoch", stop_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        pretrain.main(_args(folder))
    monkeypatch.setattr(pretrain, "train_epoch", real_epoch)
    assert os.path.exists(folder / "ckpt.npz") and not os.path.exists(folder / "cnn.npz")


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch, capsys):
    straight = tmp_path / "straight"
    pretrain.main(_args(straight))
    expected, _ = vgg.load(straight / "cnn.npz")
    resumed = tmp_path / "resumed"
    _interrupt_in_second_epoch(monkeypatch, resumed)
    pretrain.main(_args(resumed))
    assert "resuming" in capsys.readouterr().out
    got, _ = vgg.load(resumed / "cnn.npz")
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k], err_msg=k)


def test_checkpoint_with_unfitting_optimizer_state_is_refused(tmp_path, monkeypatch):
    _interrupt_in_second_epoch(monkeypatch, tmp_path)
    arrays = fileio.load_npz(tmp_path / "ckpt.npz")
    del arrays["opt/t"]  # Adam's step count
    fileio.save_npz(tmp_path / "ckpt.npz", **arrays)
    with pytest.raises(UserError, match="ckpt.npz: optimizer state does not fit .*--restart"):
        pretrain.main(_args(tmp_path))


def test_checkpoint_with_other_settings_is_refused(tmp_path, monkeypatch):
    _interrupt_in_second_epoch(monkeypatch, tmp_path)
    with pytest.raises(UserError, match="other settings"):
        pretrain.main(_args(tmp_path, "--seed", "1"))
    assert pretrain.main(_args(tmp_path, "--seed", "1", "--restart")) == 0


@pytest.mark.parametrize(
    "bad, match",
    [
        (["--dropout", "1"], "--dropout"),
        (["--out", "x.bin"], "--out"),
        (["--batch-size", "100"], "--batch-size"),
        (["--lr", "nan"], "--lr: must be a positive number"),
        (["--weight-decay", "-1"], "--weight-decay"),
        (["--size", "8"], "--size: must be at least 16"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, bad, match):
    with pytest.raises(UserError, match=match):
        pretrain.main(_args(tmp_path) + bad)


@pytest.mark.parametrize("bad", [["--epochs", "0"], ["--n-heldout", "-3"], ["--seed", "-1"], ["--size", "x"]])
def test_bad_counts_stop_in_argparse_with_one_line(tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as exit_info:
        pretrain.main(_args(tmp_path) + bad)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err
    assert err.startswith(f"error: python -m minicnnrnn.pretrain: argument {bad[0]}: ")


@pytest.mark.parametrize("option", ["--out", "--checkpoint"])
def test_unwritable_output_is_refused_before_training(tmp_path, option):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(UserError, match=f"{option} {blocker}/w.npz: cannot write there"):
        pretrain.main(_args(tmp_path, option, str(blocker / "w.npz")))
    assert not (tmp_path / "cache").exists()  # stopped before drawing a single picture


def test_adam_first_step_moves_each_weight_by_lr():
    """With bias correction, step 1 is m/sqrt(v) = g/|g|: every entry moves by lr against its gradient's sign,
    and weight decay adds lambda * W to the gradients of weight matrices ("/W") only."""
    params = {"fc/W": np.array([[1.0, -2.0]]), "fc/b": np.array([0.5, 0.5])}
    grads = {"fc/W": np.array([[0.3, 4.0]]), "fc/b": np.array([-0.01, 2.0])}
    params, grads = dev(params), dev(grads)
    opt = pretrain.make_optimizer(params, weight_decay=0.5)
    opt.step(params, grads, lr=0.1)
    params = host(params)
    # fc/W gradients with decay: 0.3 + 0.5 = 0.8 > 0 and 4.0 - 1.0 = 3.0 > 0: both move by -0.1
    np.testing.assert_allclose(params["fc/W"], [[0.9, -2.1]], rtol=1e-6)
    np.testing.assert_allclose(params["fc/b"], [0.6, 0.4], rtol=1e-6)
