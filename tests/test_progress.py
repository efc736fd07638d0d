"""Progress output: bars only on a terminal, plain lines in logs, --quiet; --help without
contradicting defaults."""

import io
import re

import numpy as np
import pytest
from PIL import Image

from minicnnrnn import __main__ as console
from minicnnrnn import extract, train
from minicnnrnn.core import progress


@pytest.fixture(autouse=True)
def _not_quiet_afterwards():
    yield
    progress.set_quiet(False)


def images(folder, n=5):
    folder.mkdir()
    for i in range(n):
        Image.fromarray(np.full((12, 16, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    return folder


def test_extract_in_a_log_writes_plain_lines_not_bar_redraws(tmp_path, capsys):
    extract.main(["--images", str(images(tmp_path / "i")), "--out", str(tmp_path / "f")])
    out, err = capsys.readouterr()
    assert "\r" not in err and "it/s" not in err and "img/s]" not in err
    assert re.search(r"^extract: 5/5 img \(.* img/s\)$", err, re.M)
    assert "wrote" in out


def test_quiet_extract_prints_nothing(tmp_path, capsys):
    extract.main(["--images", str(images(tmp_path / "i")), "--out", str(tmp_path / "f"), "--quiet"])
    assert capsys.readouterr() == ("", "")
    assert (tmp_path / "f" / "features.npy").exists()


def test_quiet_train_prints_only_the_results(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = (rng.random((40, 3)) < 0.5).astype(np.uint8)
    y[y.sum(1) == 0, 0] = 1
    x = (y @ rng.standard_normal((3, 6))).astype(np.float32)
    names = np.array(["a", "b", "c"])
    np.savez(tmp_path / "d.npz", train_features=x, train_labels=y, test_features=x, test_labels=y, label_names=names)
    args = ["--dataset", f"npz:{tmp_path / 'd.npz'}", "--epochs", "2", "--embed", "4", "--hidden", "8"]
    train.main([*args, "--out", str(tmp_path / "a")])
    loud = capsys.readouterr()
    assert "epoch 1/2" in loud.out and "\r" not in loud.err
    train.main([*args, "--out", str(tmp_path / "b"), "--quiet"])
    quiet = capsys.readouterr()
    assert "epoch 1/2" not in quiet.out and quiet.err == ""
    assert "F1" in quiet.out or "mAP" in quiet.out  # the results table still prints


def test_bar_is_tqdm_only_on_a_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stderr", Tty())
    assert type(progress.bar(3, "x")).__name__ == "tqdm"
    progress.set_quiet(True)
    assert isinstance(progress.bar(3, "x"), progress.PlainLines)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    progress.set_quiet(False)
    assert isinstance(progress.bar(3, "x"), progress.PlainLines)


@pytest.mark.parametrize("name", sorted(console.COMMANDS))
def test_help_never_contradicts_its_own_default(name, capsys):
    with pytest.raises(SystemExit):
        console.main([name, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "--quiet" in text
    # an option whose help states its default gets no second "(default: ...)"
    for chunk in re.split(r"\s(?=--?[a-z])", text):
        if re.search(r"default[ :]", chunk.split("(default:")[0]):
            assert "(default:" not in chunk, chunk
