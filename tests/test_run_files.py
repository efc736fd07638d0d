"""Issue 25: a run owns its files, writes only finite checkpoints, and reads checkpoint
metadata as a schema (training/loop.py, training/checkpoint.py, training/metadata.py)."""

import json
import shutil

import numpy as np
import pytest
from conftest import one_line

from minicnnrnn import analyze, train
from minicnnrnn.training import checkpoint, metadata

K, D = 4, 6
TINY = ["--embed", "8", "--hidden", "8", "--batch-size", "512", "--quiet"]


def make_npz(path, shift=0.0):
    rng = np.random.default_rng(3)
    y = (rng.random((80, K)) < 0.4).astype(np.uint8)
    y[y.sum(1) == 0, 0] = 1
    f = (y @ rng.standard_normal((K, D)) + 0.3 * rng.standard_normal((80, D))).astype(np.float32)
    f[:, 0] += shift
    np.savez(path, train_features=f[:60], train_labels=y[:60], test_features=f[60:], test_labels=y[60:],
             label_names=np.array(["a", "b", "c", "d"]))  # fmt: skip
    return path


def run(npz, out, epochs, *extra):
    return train.main(["--dataset", f"npz:{npz}", "--out", str(out), "--epochs", str(epochs), *TINY, *extra])


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    npz = make_npz(folder / "d.npz")
    for name in ("a", "b"):
        assert run(npz, folder / name, 2) == 0
    return folder, npz


def rewrite(src, dst, meta_edit=None, arrays_edit=None):
    """Copy checkpoint ``src`` to ``dst`` with its meta (a dict) and arrays edited."""
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"][()]))
    if meta_edit:
        meta_edit(meta)
    if arrays_edit:
        arrays_edit(arrays)
    arrays["meta"] = np.array(json.dumps(meta) if not isinstance(meta, str) else meta)
    np.savez(dst, **arrays)
    return dst


# ---------------------------------------------------------------- item 2: finite checkpoints


def test_a_step_that_overflows_keeps_the_last_good_checkpoint(two_runs, tmp_path):
    folder, npz = two_runs
    shutil.copytree(folder / "a", tmp_path / "a")
    before = (tmp_path / "a" / "checkpoint.npz").read_bytes()
    message = one_line(lambda: run(npz, tmp_path / "a", 3, "--resume", "--lr", "1e308"))
    assert "diverged in epoch 3" in message and "kept" in message
    assert (tmp_path / "a" / "checkpoint.npz").read_bytes() == before  # the good epoch-2 file stays


@pytest.mark.parametrize(("value", "words"), [(np.nan, "NaN or infinite"), (-1.0, "negative")])
def test_optimiser_state_is_checked_on_load(two_runs, tmp_path, value, words):
    def edit(arrays):
        arrays["opt/v/U_l"] = arrays["opt/v/U_l"].copy()
        arrays["opt/v/U_l"][0, 0] = value

    path = rewrite(two_runs[0] / "a" / "checkpoint.npz", tmp_path / "c.npz", arrays_edit=edit)
    message = one_line(lambda: checkpoint.load(path))
    assert "optimiser state v/U_l" in message and words in message


def test_float64_parameters_beyond_float32_are_refused(two_runs, tmp_path):
    def edit(arrays):
        arrays["params/U_l"] = arrays["params/U_l"].astype(np.float64)
        arrays["params/U_l"][0, 0] = 1e300

    path = rewrite(two_runs[0] / "a" / "checkpoint.npz", tmp_path / "c.npz", arrays_edit=edit)
    assert "parameter U_l" in one_line(lambda: checkpoint.load(path))


# ---------------------------------------------------------------- item 3: a run owns its files


def test_a_foreign_best_npz_is_refused(two_runs, tmp_path):
    folder, npz = two_runs
    shutil.copytree(folder / "a", tmp_path / "a")
    shutil.copy(folder / "b" / "best.npz", tmp_path / "a" / "best.npz")
    assert "belongs to another run" in one_line(lambda: run(npz, tmp_path / "a", 3, "--resume"))
    message = one_line(lambda: analyze._load_scored(str(tmp_path / "a" / "checkpoint.npz")))
    assert "best.npz: belongs to another run" in message


def test_resume_refuses_changed_feature_values(two_runs, tmp_path):
    folder, _ = two_runs
    shutil.copytree(folder / "a", tmp_path / "a")
    other = make_npz(tmp_path / "d.npz", shift=0.5)  # same labels and shape, other values
    assert "feature values differ" in one_line(lambda: run(other, tmp_path / "a", 3, "--resume"))


def test_run_id_is_kept_by_resume(two_runs, tmp_path):
    folder, npz = two_runs
    shutil.copytree(folder / "a", tmp_path / "a")
    first = checkpoint.load(tmp_path / "a" / "checkpoint.npz")["run_id"]
    assert run(npz, tmp_path / "a", 3, "--resume") == 0
    assert checkpoint.load(tmp_path / "a" / "checkpoint.npz")["run_id"] == first
    assert first != checkpoint.load(folder / "b" / "checkpoint.npz")["run_id"]


# ---------------------------------------------------------------- item 8: metadata as a schema


def _deep(meta):
    meta["extra"]["deep"] = "PLACEHOLDER"


BAD_META = [
    (lambda m: m["extra"].update(history=[{"epoch": "one"}]), "extra.history[0]"),
    (lambda m: m["extra"].update(history={"a": 1}), "extra.history is not a list"),
    (lambda m: m["rng"]["state"].update(state=10**4000), "rng"),
    (lambda m: m.update(rng=[1, 2]), "rng"),
    (lambda m: m.update(data={"label_names": 5}), "metadata data"),
    (lambda m: m["data"].update(feature_shape=["60", 6]), "metadata data"),
    (lambda m: m.update(run_id=["x"]), "run_id"),
    (lambda m: m.update(domain={"name": "x", "image_size": [0, -1]}), "domain"),
    (lambda m: m["config"].update(gate_lr_scale=-0.1), "gate_lr_scale"),
    (lambda m: m["config"].update(feature_norm={"mode": "scale", "scale": 1e-300}), "feature_norm"),
]


@pytest.mark.parametrize(("edit", "field"), BAD_META)
def test_each_bad_metadata_field_is_one_line_naming_it(two_runs, tmp_path, edit, field):
    path = rewrite(two_runs[0] / "a" / "checkpoint.npz", tmp_path / "c.npz", edit)
    assert field in one_line(lambda: checkpoint.load(path))


def test_deep_or_huge_metadata_is_refused_before_parsing(two_runs, tmp_path, monkeypatch):
    src = two_runs[0] / "a" / "checkpoint.npz"

    def deep(arrays):
        arrays["meta"] = np.array("[" * 100_000 + "]" * 100_000)

    arrays = {}
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    deep(arrays)
    np.savez(tmp_path / "deep.npz", **arrays)
    assert "nests deeper" in one_line(lambda: checkpoint.load(tmp_path / "deep.npz"))
    assert metadata.depth('{"a": "[[[[", "b": [[1]]}') == 3  # brackets in strings do not count
    monkeypatch.setattr(metadata, "MAX_BYTES", 100)
    assert "characters, over" in one_line(lambda: checkpoint.load(src))
