"""Issue 25's smaller items (item 9) and extract's linear skip bookkeeping (item 5)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, one_line
from PIL import Image

from minicnnrnn import extract
from minicnnrnn.core import cli, fileio, limits
from minicnnrnn.core.errors import UserError
from minicnnrnn.evaluation import metrics
from minicnnrnn.features import extraction
from minicnnrnn.training import selection

UNDEFINED = ("C-P", "C-R", "C-F1", "O-R", "O-F1", "MAP@10", "mAP")


def test_metrics_without_any_test_label_are_null_not_zero(tmp_path):
    rng = np.random.default_rng(0)
    pred = (rng.random((5, 4)) < 0.5).astype(np.uint8)
    result = metrics.evaluate(pred, rng.random((5, 4)), np.zeros((5, 4), np.uint8))
    assert all(np.isnan(result[key]) for key in UNDEFINED) and result["O-P"] == 0.0
    fileio.save_json(tmp_path / "metrics.json", result)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert all(written[key] is None for key in UNDEFINED)
    assert "nan" not in metrics.format_table({"m": result}).lower()  # printed as "-"
    prf = metrics.precision_recall_f1(pred, np.zeros((5, 4)))
    assert selection.selection_score(prf) == 0.0  # validation compares numbers, never NaN
    one = np.zeros((5, 4), np.uint8)
    one[0, 0] = 1  # one label: everything defined again
    assert all(np.isfinite(v) for v in metrics.evaluate(pred, rng.random((5, 4)), one).values())


def _image(path):
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(path, format="PNG")
    return path


@pytest.mark.parametrize("name", ["two\nlines.png", "tab\there.png", "bell\x07.png"])
def test_a_control_character_in_an_image_path_is_one_line(tmp_path, name):
    _image(tmp_path / name)
    good = _image(tmp_path / "good.png")
    argv = ["--images", str(good), str(tmp_path / name), "--out", str(tmp_path / "f")]
    message = one_line(lambda: extract.main(argv))
    assert "control character" in message
    assert not (tmp_path / "f" / "images.txt").exists()


def test_a_lock_file_holding_junk_or_a_huge_number_is_stale(tmp_path):
    for junk in ("9" * 5000, "12345678901234567890", "-7", "abc", "\x00\xff"):
        (tmp_path / fileio.LOCK_NAME).write_text(junk, encoding="latin-1")
        with fileio.folder_lock(tmp_path):
            assert (tmp_path / fileio.LOCK_NAME).read_text().strip() == str(os.getpid())


def test_a_fifo_as_the_lock_file_is_one_line(tmp_path):
    os.mkfifo(tmp_path / fileio.LOCK_NAME)
    with pytest.raises(UserError, match="FIFO"):
        with fileio.folder_lock(tmp_path):
            pass


def test_junk_in_a_limit_stops_extract_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("MINICNNRNN_MAX_IMAGE_PIXELS", "abc")
    good = _image(tmp_path / "good.png")
    with pytest.raises(UserError, match=r"\$MINICNNRNN_MAX_IMAGE_PIXELS: expected a whole number"):
        extraction.extract([str(good)], str(tmp_path / "f"))
    with pytest.raises(UserError, match="MINICNNRNN_MAX_IMAGE_PIXELS"):
        limits.check_environment()


def test_threads_from_the_environment_are_clamped(monkeypatch):
    from minicnnrnn.core import threads

    monkeypatch.setenv("MINICNNRNN_THREADS", "99999")
    assert threads.env_workers() == threads.cores()


def test_library_warnings_never_add_lines_to_an_error():
    code = (
        "import warnings, numpy as np\n"
        "from minicnnrnn.core import cli\n"
        "from minicnnrnn.core.errors import UserError\n"
        "def main(argv):\n"
        "    np.mean(np.array([]))\n"  # NumPy: 'Mean of empty slice' (attributed to numpy)
        "    warnings.warn('a library said\\nover two lines')\n"
        "    if argv == ['fail']:\n"
        "        raise UserError('x.npz: the one line')\n"
        "cli.run(main, __import__('sys').argv[1:])\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    fail = subprocess.run([sys.executable, "-c", code, "fail"], capture_output=True, text=True, env=env, timeout=60)
    assert fail.returncode == 2 and fail.stderr.splitlines() == ["error: x.npz: the one line"]
    ok = subprocess.run([sys.executable, "-c", code, "ok"], capture_output=True, text=True, env=env, timeout=60)
    lines = ok.stderr.splitlines()
    assert ok.returncode == 0 and len(lines) == 3 and all(line.startswith("warning: ") for line in lines), lines
    assert cli.run  # the helper under test


def test_skip_bookkeeping_is_appended_and_resumes(tmp_path, monkeypatch):
    """Missing images are appended to skipped.partial.txt batch by batch (progress.json keeps
    counts only); a run killed mid-way resumes to the same files as one uninterrupted run."""
    good = [str(_image(tmp_path / f"g{i}.png")) for i in range(3)]
    paths = [str(tmp_path / f"missing{i}.png") for i in range(7)] + good
    full = tmp_path / "full"
    extraction.extract(paths, str(full), batch_size=2)
    calls = {"n": 0}
    real = extraction._append_skipped

    def killed_after_two(out, progress, lines):
        real(out, progress, lines)
        calls["n"] += 1
        if calls["n"] == 2:  # killed after appending a batch, before progress.json counts it
            raise KeyboardInterrupt

    monkeypatch.setattr(extraction, "_append_skipped", killed_after_two)
    monkeypatch.setattr(extraction, "SAVE_SECONDS", 0.0)  # progress saved after every batch
    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        extraction.extract(paths, str(part), batch_size=2)
    progress = json.loads((part / "progress.json").read_text())
    assert progress["skipped"] == 2 and isinstance(progress["skipped"], int)
    assert len((part / extraction.SKIPPED_PARTIAL).read_text().splitlines()) == 4  # one batch not yet counted
    monkeypatch.setattr(extraction, "_append_skipped", real)
    extraction.extract(paths, str(part), batch_size=2)
    for name in ("images.txt", "skipped.txt"):
        assert (part / name).read_text() == (full / name).read_text(), name
    assert len((part / "skipped.txt").read_text().splitlines()) == 7
    np.testing.assert_array_equal(np.load(part / "features.npy"), np.load(full / "features.npy"))
    assert sorted(os.listdir(part)) == ["features.npy", "images.txt", "meta.json", "skipped.txt"]
