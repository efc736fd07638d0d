"""Atomic writes and careful reads: a failed write leaves the old file, bad files give one line."""

import os

import numpy as np
import pytest

from minicnnrnn.core import fileio
from minicnnrnn.core.errors import UserError


def test_save_and_load_round_trip(tmp_path):
    path = tmp_path / "sub" / "a.npz"
    fileio.save_npz(path, x=np.arange(3))
    np.testing.assert_array_equal(fileio.load_npz(path, required=("x",))["x"], np.arange(3))
    assert [p.name for p in path.parent.iterdir()] == ["a.npz"]  # no temp file left


def test_interrupted_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "m.json"
    fileio.save_json(path, {"ok": 1})

    class Boom:  # not JSON-serialisable: the write fails and nothing must be replaced
        pass

    with pytest.raises(TypeError):
        fileio.save_json(path, {"bad": Boom()})
    assert path.read_text().strip().startswith("{") and '"ok": 1' in path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]

    # A failure after part of the file is written: array "a" goes into the temp
    # file, then pickling "b" (a local function) fails. The old file must survive.
    npz = tmp_path / "c.npz"
    fileio.save_npz(npz, a=np.arange(3))
    with pytest.raises(Exception):  # noqa: B017 (whatever pickling raises; the old file must survive)
        fileio.save_npz(npz, a=np.zeros(1000), b=np.array([lambda: 0], dtype=object))
    np.testing.assert_array_equal(fileio.load_npz(npz)["a"], np.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz", "m.json"]


def test_unwritable_destination_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot write here"):
        fileio.save_json(blocker / "inside.json", {})


def test_load_errors_are_one_line(tmp_path):
    text = tmp_path / "t.npz"
    text.write_text("hello")
    for bad, pattern in [(tmp_path / "missing.npz", "not found"), (text, "not a zip"), (tmp_path, "folder")]:
        with pytest.raises(UserError, match=pattern) as info:
            fileio.load_npz(bad)
        assert "\n" not in str(info.value)
    fileio.save_npz(tmp_path / "ok.npz", a=np.zeros(1))
    with pytest.raises(UserError, match="missing array"):
        fileio.load_npz(tmp_path / "ok.npz", required=("b",))


def test_written_files_are_readable_by_others(tmp_path):
    path = tmp_path / "shared.json"
    fileio.save_json(path, [1])
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
