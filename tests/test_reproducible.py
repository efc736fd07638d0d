"""Numbers a reader can reproduce (issue 23): the scored epoch is the model everywhere,
metrics.json says what BLAS computed it, and tests never touch the user's folders."""

import contextlib
import io
import json
import os
import pathlib

import numpy as np
import pytest

from minicnnrnn import predict, train
from minicnnrnn.core.errors import UserError
from minicnnrnn.tinyscenes import features
from minicnnrnn.training import checkpoint

REPO = pathlib.Path(__file__).resolve().parents[1]
K, D = 4, 10


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny CNN-RNN run with a validation split: (run folder, test features .npy, train's stdout)."""
    root = tmp_path_factory.mktemp("scored")
    rng = np.random.default_rng(3)
    W = rng.standard_normal((K, D))
    y = (rng.random((260, K)) < 0.4).astype(np.uint8)
    y[y.sum(1) == 0, 0] = 1
    f = (y @ W + 0.4 * rng.standard_normal((260, D))).astype(np.float32)
    npz = root / "tiny.npz"
    names = np.array(["a", "b", "c", "d"])
    np.savez(
        npz, train_features=f[:200], train_labels=y[:200], test_features=f[200:], test_labels=y[200:], label_names=names
    )
    np.save(root / "test.npy", f[200:])
    out = root / "run"
    args = ["--dataset", f"npz:{npz}", "--out", str(out), "--epochs", "6", "--embed", "8", "--hidden", "16"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert train.main([*args, "--val-fraction", "0.3", "--batch-size", "32"]) == 0
    return out, root / "test.npy", printed.getvalue()


def test_train_says_which_epoch_it_scored_and_records_the_blas(run):
    out, _, printed = run
    record = json.loads((out / "metrics.json").read_text())["run"]
    scored = record["scored_epoch"]
    assert f"cnn-rnn: scored epoch {scored} of 6 (validation O-F1 " in printed
    assert checkpoint.load(out / "best.npz")["epoch"] == scored
    assert isinstance(record["threads"], int) and record["threads"] >= 1 and record["blas"]
    assert (out / "loss.png").stat().st_size > 0


def _predict(capsys, *args):
    capsys.readouterr()
    assert predict.main([*map(str, args), "--json"]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def test_predict_uses_the_scored_epoch_of_a_run_folder(run, capsys):
    out, feats, _ = run
    scored = json.loads((out / "metrics.json").read_text())["run"]["scored_epoch"]
    by_folder, said = _predict(capsys, "--checkpoint", out, "--features", feats)
    assert f"best.npz: epoch {scored} of 6 (the epoch train chose on validation and scored)" in said
    by_file, _ = _predict(capsys, "--checkpoint", out / "best.npz", "--features", feats)
    assert by_folder == by_file
    last, said = _predict(capsys, "--checkpoint", out, "--features", feats, "--last-epoch")
    assert "checkpoint.npz: epoch 6 of 6 (the last epoch" in said
    if scored != 6:  # the last epoch is another model: the note names the scored one
        assert f"train scored epoch {scored}, in best.npz beside it" in said


def test_last_epoch_needs_a_run_folder(run):
    out, feats, _ = run
    with pytest.raises(UserError, match="--last-epoch: give the run folder"):
        predict.main(["--checkpoint", str(out / "best.npz"), "--features", str(feats), "--last-epoch"])
    with pytest.raises(UserError, match="no checkpoint.npz in this folder"):
        predict.main(["--checkpoint", str(out.parent), "--features", str(feats)])


def test_tests_run_in_their_own_folder(tmp_path):
    """The README's main job leaves runs/cnn-rnn/ in the clone; a test calling a command with
    its default --out must not meet it (conftest.py's working folder)."""
    assert pathlib.Path.cwd() == tmp_path and pathlib.Path.cwd() != REPO
    assert str(REPO) in os.environ["PYTHONPATH"].split(os.pathsep)  # commands started by tests import this checkout


def test_the_slow_first_steps_say_what_they_do(tmp_path, capsys):
    """From an empty cache the main job draws pictures and runs the CNN before its first
    epoch: each step says so at once, and a log gets a progress line (stderr)."""
    features.builtin_features("test", 12, cache_dir=tmp_path)
    out, err = capsys.readouterr()
    assert "drawing 12 Tiny Scenes test pictures" in out and "running the built-in CNN on 12 test" in out
    assert "drawing test pictures: 12/12 pic" in err and "CNN on test pictures: 12/12 pic" in err
    assert "\r" not in err  # plain lines in a log, not bar redraws
    features.builtin_features("test", 12, cache_dir=tmp_path)  # cached: silent
    assert capsys.readouterr() == ("", "")
