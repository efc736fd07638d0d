"""scale_out --merge as a hostile user meets it (issue 25, item 4): every shard checked, one
line per damaged shard, the space reserved, a lock, a unique temp file, never into a shard."""

import errno
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import one_line
from test_scale_out import make_images, run_extract

from minicnnrnn import scale_out
from minicnnrnn.core import fileio
from minicnnrnn.core.errors import UserError


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Three finished shard folders s0, s1, s2 of 7 images (made once, copied per test)."""
    root = tmp_path_factory.mktemp("shards")
    make_images(root / "imgs", 7)
    for i in range(3):
        run_extract("--images", root / "imgs", "--out", root / f"s{i}", "--shard", f"{i}/3", "--quiet")
    return root


@pytest.fixture
def shards(made, tmp_path):
    for i in range(3):
        shutil.copytree(made / f"s{i}", tmp_path / f"s{i}")
    return [tmp_path / f"s{i}" for i in range(3)]


def merge_cli(folders, out):
    """Run the command in a fresh interpreter: (exit code, stderr lines)."""
    args = ["--merge", *map(str, folders), "--out", str(out)]
    env = dict(os.environ)  # conftest put this checkout (and, under --device strict, the stand-in) on PYTHONPATH
    proc = subprocess.run(
        [sys.executable, "-m", "minicnnrnn.scale_out", *args], capture_output=True, text=True, env=env, timeout=60
    )
    return proc.returncode, proc.stderr.splitlines()


def write_rows(folder, rows):
    np.save(folder / "features.npy", rows.astype(np.float32))


def edit_meta(folder, **change):
    meta = json.loads((folder / "meta.json").read_text())
    meta.update(change)
    (folder / "meta.json").write_text(json.dumps(meta))


def test_each_damaged_shard_is_one_line_and_nothing_is_written(shards, tmp_path):
    (shards[0] / "meta.json").write_text('{"format": ')  # cut short
    with open(shards[2] / "images.txt", "a") as f:
        f.write("/extra/line.png\n")
    code, err = merge_cli(shards, tmp_path / "m")
    assert code == 2 and len(err) == 2, err
    assert str(shards[0] / "meta.json") in err[0] and "unreadable" in err[0]
    assert str(shards[2]) in err[1] and "images.txt has 4 lines" in err[1]
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


@pytest.mark.parametrize(
    "damage, needle",
    [
        (
            lambda s: write_rows(s, np.ones((500, 256))),
            "float32 (500, 256), but its meta.json records float32 (2, 256)",
        ),
        (lambda s: (edit_meta(s, count=500), write_rows(s, np.ones((500, 256)))), "500 rows + 0 skipped for the 2"),
        (lambda s: write_rows(s, np.full((2, 256), np.nan)), "NaN or infinite"),
        (lambda s: write_rows(s, np.full((2, 256), -np.inf)), "NaN or infinite"),
        (lambda s: edit_meta(s, count="2"), "count has the wrong type"),
        (lambda s: edit_meta(s, source=[1]), "not a shard"),
        (lambda s: edit_meta(s, dim=True), "dim has the wrong type"),
        (lambda s: (s / "features.npy").write_bytes(b"\x93NUMPY\x01\x00garbage"), "features.npy: unreadable"),
        (lambda s: (s / "skipped.txt").unlink(), "skipped.txt: shard file not found"),
        (lambda s: (s / "features.npy").unlink() or os.mkfifo(s / "features.npy"), "FIFO"),
    ],
)
def test_a_damaged_shard_is_refused_in_one_line(shards, tmp_path, damage, needle):
    damage(shards[1])
    assert needle in one_line(lambda: scale_out.main(["--merge", *map(str, shards), "--out", str(tmp_path / "m")]))
    assert not (tmp_path / "m" / "features.npy").exists()
    assert not [p for p in (tmp_path / "m").glob(".*")] if (tmp_path / "m").exists() else True


def test_a_shard_is_never_the_output(shards):
    before = {p.name: p.read_bytes() for p in shards[0].iterdir()}
    with pytest.raises(UserError, match="is the shard folder"):
        scale_out.main(["--merge", *map(str, shards), "--out", str(shards[0])])
    with pytest.raises(UserError, match="is the shard folder"):
        scale_out.main(["--merge", *map(str, shards), "--out", str(shards[0] / "merged")])
    other = shards[0].parent / "other"
    shutil.copytree(shards[0], other)  # a shard not among those merged
    with pytest.raises(UserError, match="holds a shard"):
        scale_out.main(["--merge", *map(str, shards), "--out", str(other)])
    assert {p.name: p.read_bytes() for p in shards[0].iterdir()} == before


def test_a_full_disk_leaves_the_old_output_and_no_temp_file(shards, tmp_path, monkeypatch):
    out = tmp_path / "m"
    assert scale_out.main(["--merge", *map(str, shards), "--out", str(out), "--quiet"]) == 0
    good = (out / "features.npy").read_bytes()

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(UserError, match=r"cannot reserve its space \(no space left on the device"):
        scale_out.main(["--merge", *map(str, shards), "--out", str(out)])
    assert (out / "features.npy").read_bytes() == good
    assert sorted(p.name for p in out.iterdir()) == ["features.npy", "images.txt", "meta.json", "skipped.txt"]


def test_merge_takes_the_lock_and_cleans_a_dead_writers_temp(shards, tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    (out / fileio.LOCK_NAME).write_text(f"{os.getppid()}\n")  # a live process holds it
    with pytest.raises(UserError, match="another run"):
        scale_out.main(["--merge", *map(str, shards), "--out", str(out)])
    (out / fileio.LOCK_NAME).write_text(f"{fileio.MAX_PID + 1}\n")  # stale
    (out / ".features.npy.4194999.abc.tmp").write_bytes(b"left by a killed merge")
    assert scale_out.main(["--merge", *map(str, shards), "--out", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["features.npy", "images.txt", "meta.json", "skipped.txt"]
    assert np.load(out / "features.npy").shape == (7, 256)
