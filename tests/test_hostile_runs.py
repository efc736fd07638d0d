"""Damaged checkpoints, runs that would mix, and outputs that must not replace what they
should not (issue 16): the schema check, the data fingerprint, --overwrite and the lock,
regular-file targets, stale temp files, disk full, and predict's --out, --strict, domain."""

import dataclasses
import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, one_line
from PIL import Image

from minicnnrnn import predict, train
from minicnnrnn.core import fileio
from minicnnrnn.core.errors import UserError
from minicnnrnn.training import checkpoint, kinds, schema
from minicnnrnn.training import data as train_data
from minicnnrnn.training.config import RunConfig

CONFIG = RunConfig(model="cnn-rnn", K=3, D=5, E=4, H=6, variant="relu", cnn={"weights": None, "layer": None})
TINY = ["--epochs", "1", "--embed", "4", "--hidden", "8", "--batch-size", "16"]


@pytest.fixture
def ckpt(tmp_path):
    state = {
        "params": kinds.KINDS["cnn-rnn"].init(CONFIG, np.random.default_rng(0)),
        "config": CONFIG,
        "label_names": ["a", "b", "c"],
        "label_order": np.arange(3),
        "epoch": 1,
        "rng": None,
    }
    path = tmp_path / "checkpoint.npz"
    checkpoint.save(path, state)
    return path


def _edit(path, meta_change=None, drop=(), **arrays):
    stored = fileio.load_npz(path)
    meta = json.loads(str(stored["meta"][()]))
    if meta_change:
        meta_change(meta)
    stored = {k: v for k, v in stored.items() if k not in drop}
    fileio.save_npz(path, **{**stored, "meta": np.array(json.dumps(meta)), **arrays})


def _config(**change):
    return lambda m: m["config"].update(change)


# The eleven hand-edited checkpoints of the issue, and a few more: each one line naming the file.
DAMAGE = [
    (dict(meta_change=_config(K="abc")), "K = 'abc' is not int"),
    (dict(meta_change=lambda m: m.update(epoch="x")), "epoch 'x' is not a whole number"),
    (dict(meta_change=lambda m: m.update(label_names=5)), "label_names must be a list"),
    (dict(meta_change=_config(cnn="builtin")), "cnn = 'builtin' is not dict"),
    (dict(meta_change=_config(feature_norm={"mode": "scale"})), "no positive finite scale"),
    (dict(drop=("params/U_r",)), "parameter U_r is missing"),
    (dict(**{"params/U_l": np.zeros((4, 4), np.float32)}), "parameter U_l has shape (4, 4)"),
    (dict(**{"params/U_I_x": np.array(1.0, np.float32)}), "parameter U_I_x has shape ()"),
    (dict(meta_change=_config(model="bce")), "does not belong to a bce model|is missing|gives (3, 4)"),
    (dict(meta_change=_config(variant="gru")), "variant = 'gru' is not one of"),
    (dict(meta_change=_config(beam=0)), "checkpoint config beam = 0 must be >= 1"),
    (dict(meta_change=_config(D=10**9)), "do not match its parameters"),
    (dict(meta_change=_config(k=9)), "k = 9 must be at most K = 3"),
    (dict(meta_change=_config(min_labels=3, k=2)), "min_labels = 3 must be at most k = 2"),
    (dict(meta_change=_config(lr=float("nan"))), "lr = nan must be a positive finite"),
    (dict(meta_change=lambda m: m.update(label_names=["a", "a", "b"])), "label name 'a' appears more than once"),
    (dict(**{"params/U_w": np.full((4, 24), np.nan, np.float32)}), "parameter U_w: holds NaN"),
    (dict(meta_change=lambda m: m.update(extra=[])), "extra is not an object"),
]


@pytest.mark.parametrize("change, needle", DAMAGE, ids=[n[:30] for _, n in DAMAGE])
def test_damaged_checkpoint_is_one_line_for_load_predict_and_resume(ckpt, tmp_path, change, needle):
    _edit(ckpt, **change)
    message = one_line(lambda: checkpoint.load(ckpt))
    assert message.startswith(str(ckpt))
    assert any(part in message for part in needle.split("|")), message
    np.save(tmp_path / "f.npy", np.ones((2, 5), np.float32))
    message = one_line(lambda: predict.main(["--checkpoint", str(ckpt), "--features", str(tmp_path / "f.npy")]))
    assert "--beam" not in message  # a checkpoint's value is never reported as the user's flag
    assert str(ckpt) in message
    one_line(lambda: checkpoint.resume(ckpt, CONFIG))


def test_saved_checkpoint_records_domain_and_data(ckpt):
    state = checkpoint.load(ckpt)
    assert state["domain"]["name"].startswith("precomputed features")
    builtin = dataclasses.replace(CONFIG, cnn={"weights": "builtin", "layer": "fc7"})
    assert checkpoint.domain_of(builtin) == {"name": "tinyscenes-64px drawings", "image_size": [64, 64]}


# ---------------------------------------------------------------- runs that would mix


def _npz(path, labels_seed=0, names=("a", "b", "c", "d")):
    rng = np.random.default_rng(labels_seed)
    y = (rng.random((40, len(names))) < 0.4).astype(np.uint8)
    y[y.sum(1) == 0, 0] = 1
    f = (y @ rng.standard_normal((len(names), 6)) + 0.1 * rng.standard_normal((40, 6))).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, train_features=f, train_labels=y, test_features=f, test_labels=y, label_names=np.array(names))
    return path


def test_resume_on_other_data_with_the_same_name_is_refused(tmp_path):
    first = _npz(tmp_path / "one" / "data.npz", labels_seed=0)
    other = _npz(tmp_path / "two" / "data.npz", labels_seed=5)  # same base name, K and D
    renamed = _npz(tmp_path / "three" / "data.npz", labels_seed=0, names=("a", "b", "x", "d"))
    out = tmp_path / "run"
    assert train.main(["--dataset", f"npz:{first}", "--out", str(out), *TINY]) == 0
    state = checkpoint.load(out / "checkpoint.npz")
    assert state["data"]["feature_shape"] == [36, 6]  # 40 training rows less the 10 % validation split
    assert len(state["data"]["labels_sha256"]) == 64
    more = ["--epochs", "2"] + TINY[2:]
    message = one_line(lambda: train.main(["--dataset", f"npz:{other}", "--out", str(out), *more, "--resume"]))
    assert "trained on other data (its labels differ)" in message
    message = one_line(lambda: train.main(["--dataset", f"npz:{renamed}", "--out", str(out), *more, "--resume"]))
    assert "label names differ ('c' vs 'x')" in message
    assert train.main(["--dataset", f"npz:{first}", "--out", str(out), *more, "--resume"]) == 0
    assert checkpoint.load(out / "checkpoint.npz")["epoch"] == 2


def test_new_run_into_a_used_folder_needs_overwrite(tmp_path):
    data = _npz(tmp_path / "d.npz")
    out = tmp_path / "run"
    args = ["--dataset", f"npz:{data}", "--out", str(out), *TINY]
    assert train.main(args) == 0
    before = (out / "checkpoint.npz").stat().st_mtime_ns
    message = one_line(lambda: train.main(args))
    assert "holds another run" in message and "--overwrite" in message
    assert (out / "checkpoint.npz").stat().st_mtime_ns == before
    assert train.main(args + ["--overwrite"]) == 0
    assert not (out / fileio.LOCK_NAME).exists()  # released at the end
    assert "not both" in one_line(lambda: train.main(args + ["--overwrite", "--resume"]))


def test_folder_lock_refuses_a_live_holder_and_takes_a_stale_one(tmp_path):
    lock = tmp_path / fileio.LOCK_NAME
    lock.write_text(f"{os.getppid()}\n")  # a live process that is not us
    message = one_line(lambda: fileio.folder_lock(tmp_path).__enter__())
    assert f"another run (process {os.getppid()})" in message
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(dead.stdout)  # that process has exited: a stale lock
    with fileio.folder_lock(tmp_path):
        assert lock.read_text().strip() == str(os.getpid())
    assert not lock.exists()
    with fileio.folder_lock(tmp_path / "new" / "run"):  # made for the run, still empty at the end: removed
        assert (tmp_path / "new" / "run").is_dir()
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------- outputs


def test_only_regular_files_are_replaced(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("keep")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    assert "symbolic link" in one_line(lambda: fileio.save_json(link, {}))
    assert target.read_text() == "keep" and link.is_symlink()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # stands for a device node such as /dev/null: not a regular file
    assert "not a regular file" in one_line(lambda: fileio.save_text(fifo, "x"))
    assert not fifo.is_file() and fifo.exists()
    (tmp_path / "dir.json").mkdir()
    assert "is a folder" in one_line(lambda: fileio.save_json(tmp_path / "dir.json", {}))


def test_stale_temp_files_are_cleaned(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".checkpoint.npz.{dead.stdout.strip()}.x1y2.tmp"
    live = tmp_path / f".checkpoint.npz.{os.getppid()}.a1b2.tmp"  # a writer still running
    stale.write_bytes(b"0" * 100)
    live.write_bytes(b"0")
    fileio.save_json(tmp_path / "metrics.json", {"a": 1})
    assert not stale.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "metrics.json"])


def test_disk_full_and_read_only_are_one_line_naming_the_path(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    message = one_line(lambda: fileio.save_json(tmp_path / "m.json", {}))
    assert message == f"{tmp_path / 'm.json'}: could not be written (no space left on the device (disk full))"
    assert list(tmp_path.iterdir()) == []  # the temp file is gone
    exc = OSError(errno.EROFS, "Read-only file system")
    assert fileio.os_error_message("x", exc) == "x: could not be written (read-only file system)"
    assert "permission denied" in fileio.os_error_message("x", PermissionError(errno.EACCES, "denied"))


def test_reserve_allocates_the_features_file_and_reports_a_full_disk(tmp_path, monkeypatch):
    path = tmp_path / "features.partial.npy"
    rows = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(256, 1024))
    del rows
    assert os.stat(path).st_blocks * 512 < 1 << 20  # sparse: nothing allocated yet
    fileio.reserve(path)
    assert os.stat(path).st_blocks * 512 >= 256 * 1024 * 4

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    message = one_line(lambda: fileio.reserve(path))
    assert "features.partial.npy: cannot reserve its space (no space left" in message
    assert not path.exists()


def test_figure_is_written_atomically(tmp_path):
    class Broken:
        def savefig(self, f, **options):
            f.write(b"half a png")
            raise OSError(errno.ENOSPC, "No space left on device")

    (tmp_path / "loss.png").write_bytes(b"old")
    assert "disk full" in one_line(lambda: fileio.save_figure(tmp_path / "loss.png", Broken()))
    assert (tmp_path / "loss.png").read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1


def test_features_must_be_real_with_columns_and_names_unique(tmp_path):
    base = _npz(tmp_path / "d.npz")
    arrays = dict(np.load(base))
    for change, needle in [
        ({"train_features": arrays["train_features"].astype(np.complex64)}, "dtype complex64"),
        ({"train_features": np.zeros((40, 0), np.float32), "test_features": np.zeros((40, 0))}, "D = 0"),
        ({"label_names": np.array(["a", "b", "a", "d"])}, "label name 'a' appears more than once"),
    ]:
        np.savez(tmp_path / "bad.npz", **{**arrays, **change})
        assert needle in one_line(lambda: train_data.load_npz(str(tmp_path / "bad.npz")))


# ---------------------------------------------------------------- predict


def _builtin_checkpoint(tmp_path):
    cfg = RunConfig("cnn-rnn", 3, 256, 4, 6, "relu", {"weights": "builtin", "layer": "fc7"})
    state = {
        "params": kinds.KINDS["cnn-rnn"].init(cfg, np.random.default_rng(0)),
        "config": cfg,
        "label_names": ["sun", "tree", "car"],
        "label_order": np.arange(3),
    }
    path = tmp_path / "builtin.npz"
    checkpoint.save(path, state)
    return path


def _run(*args):
    cmd = [sys.executable, "-m", "minicnnrnn.predict", "--quiet", *map(str, args)]  # stderr: warnings only
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_predict_warns_outside_the_domain_and_writes_out(tmp_path):
    ckpt = _builtin_checkpoint(tmp_path)
    rng = np.random.default_rng(0)
    drawing, photo = tmp_path / "scene.png", tmp_path / "photo.jpg"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(drawing)
    Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)).save(photo)
    proc = _run("--checkpoint", ckpt, drawing, photo, "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("\n") == 1 and "warning: 1 of 2 image(s) (first: " in proc.stderr
    assert "tinyscenes-64px drawings" in proc.stderr and "docs/inference.md" in proc.stderr
    records = json.loads(proc.stdout)
    assert "warning" not in records[0] and "tinyscenes" in records[1]["warning"]
    proc = _run("--checkpoint", ckpt, drawing, "--json")
    assert proc.stderr == ""  # a Tiny Scenes picture: no warning
    for name in ("out.json", "out.csv"):
        proc = _run("--checkpoint", ckpt, drawing, photo, "--out", tmp_path / name)
        assert proc.returncode == 0 and proc.stdout.startswith(f"wrote {tmp_path / name} (2 image(s))")
    assert json.loads((tmp_path / "out.json").read_text()) == records
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "image,labels,probabilities,end_probability,log_probability,warning" and len(lines) == 3
    assert lines[2].startswith(str(photo)) and "tinyscenes" in lines[2]
    assert "give a file name ending in .json or .csv" in _run("--checkpoint", ckpt, drawing, "--out", "x.txt").stderr
    (tmp_path / "folder.json").mkdir()
    assert "is a folder" in _run("--checkpoint", ckpt, drawing, "--out", tmp_path / "folder.json").stderr


def test_predict_features_npz_is_one_line(tmp_path, ckpt):
    np.savez(tmp_path / "f.npz", features=np.ones((2, 5), np.float32))
    message = one_line(lambda: predict.main(["--checkpoint", str(ckpt), "--features", str(tmp_path / "f.npz")]))
    assert "a .npz archive (arrays features)" in message
    np.save(tmp_path / "c.npy", np.ones((2, 5), np.complex64))
    message = one_line(lambda: predict.main(["--checkpoint", str(ckpt), "--features", str(tmp_path / "c.npy")]))
    assert "real-valued" in message


def test_checkpoint_min_labels_is_not_blamed_on_a_flag(tmp_path, ckpt):
    _edit(ckpt, meta_change=_config(min_labels=2))
    np.save(tmp_path / "f.npy", np.ones((2, 5), np.float32))
    args = ["--checkpoint", str(ckpt), "--features", str(tmp_path / "f.npy"), "--max-labels", "1"]
    assert "below the checkpoint's min_labels = 2" in one_line(lambda: predict.main(args))
    assert predict.main(args + ["--min-labels", "0"]) == 0  # fine once both are given


def test_schema_fingerprint_is_sensitive_to_each_part():
    y = np.eye(3, dtype=np.uint8)
    base = schema.fingerprint(["a", "b", "c"], y, (3, 7))
    assert schema.fingerprint(["a", "b", "c"], y, (3, 7)) == base
    assert schema.fingerprint(["a", "b", "c"], y[::-1], (3, 7))["labels_sha256"] != base["labels_sha256"]
    with pytest.raises(UserError, match="feature shape differ"):
        schema.check_same_data("c.npz", base, schema.fingerprint(["a", "b", "c"], y, (3, 8)))
    schema.check_same_data("c.npz", None, base)  # a checkpoint from before fingerprints


def test_extract_refuses_a_folder_another_extraction_holds(tmp_path):
    from minicnnrnn import extract

    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(image)
    out = tmp_path / "feats"
    out.mkdir()
    (out / fileio.LOCK_NAME).write_text(f"{os.getppid()}\n")
    message = one_line(lambda: extract.main(["--images", str(image), "--out", str(out)]))
    assert "another run" in message and not (out / "features.npy").exists()
