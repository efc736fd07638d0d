"""Fuzzing whole commands (issue 25, item 10): FIFOs as every input, foreign files beside a
run, damaged shards, float32 overflow, metadata of the wrong type.

Like tests/test_fuzz.py: every case must end in success or a one-line UserError (a command's
exit 2), never a traceback or a hang (each command runs under a SIGALRM timeout). The
hypothesis budget is fixed and derandomized (``MINICNNRNN_FUZZ_EXAMPLES`` scales it).
"""

import json
import os
import shutil

import numpy as np
import pytest
from conftest import no_hang
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from test_fuzz import BUDGET, JSON, MUTATIONS, mutate
from test_scale_out import make_images, run_extract
from test_scale_out_merge import edit_meta

from minicnnrnn import analyze, convert, extract, predict, scale_out, train
from minicnnrnn.core.errors import UserError

K, D = 3, 5
# A quarter of test_fuzz's budget per test: each example runs a whole command (the suite stays < 40 s).
RUNS = settings(BUDGET, max_examples=max(1, BUDGET.max_examples // 4))
TINY = ["--embed", "4", "--hidden", "6", "--batch-size", "512", "--quiet", "--epochs", "1"]


def ends_well(fn):
    """Success, or a one-line UserError; returns the message (or None)."""
    with no_hang(20):
        try:
            fn()
        except UserError as exc:
            assert "\n" not in str(exc), str(exc)
            return str(exc)
        except SystemExit as exc:  # argparse's one line
            assert exc.code == 2
            return "usage"
    return None


def make_npz(path, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((30, K)) < 0.5).astype(np.uint8)
    y[y.sum(1) == 0, 0] = 1
    f = (y @ rng.standard_normal((K, D))).astype(np.float32)
    np.savez(path, train_features=f[:20], train_labels=y[:20], test_features=f[20:], test_labels=y[20:],
             label_names=np.array(["a", "b", "c"]))  # fmt: skip
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two tiny finished runs (a, b) on one dataset, an image, a features file, and 2 shards."""
    root = tmp_path_factory.mktemp("world")
    npz = make_npz(root / "d.npz")
    for name in ("a", "b"):
        assert train.main(["--dataset", f"npz:{npz}", "--out", str(root / name), *TINY]) == 0
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / "img.png")
    np.save(root / "f.npy", np.ones((2, D), np.float32))
    make_images(root / "imgs", 5)
    for i in range(2):
        run_extract("--images", root / "imgs", "--out", root / f"s{i}", "--shard", f"{i}/2", "--quiet")
    return root


# ---------------------------------------------------------------- a FIFO as every input

FIFO_CASES = {
    "dataset": lambda w, p: train.main(["--dataset", f"npz:{p}", "--out", str(w / "o"), *TINY]),
    "--checkpoint": lambda w, p: predict.main(["--checkpoint", str(p), str(w / "img.png")]),
    "--features": lambda w, p: predict.main(["--checkpoint", str(w / "a" / "checkpoint.npz"), "--features", str(p)]),
    "--image-list (predict)": lambda w, p: predict.main(
        ["--checkpoint", str(w / "a" / "checkpoint.npz"), "--features", str(w / "f.npy"), "--image-list", str(p)]
    ),
    "--image-list (extract)": lambda w, p: extract.main(["--image-list", str(p), "--out", str(w / "o")]),
    "an image (extract)": lambda w, p: extract.main(["--images", str(p), "--out", str(w / "o")]),
    "convert's input": lambda w, p: convert.main([str(p), str(w / "o.npz")]),
    "analyze --checkpoint": lambda w, p: analyze.main(["--checkpoint", str(p), "--dataset", f"npz:{w / 'd.npz'}"]),
}


@pytest.mark.parametrize("case", sorted(FIFO_CASES))
def test_a_fifo_as_any_input_is_one_line_without_a_hang(world, tmp_path, case):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    work = tmp_path / "w"
    shutil.copytree(world, work, symlinks=True)
    message = ends_well(lambda: FIFO_CASES[case](work, fifo))
    assert message is not None and ("FIFO" in message or "could be read" in message), message


# ---------------------------------------------------------------- foreign files beside a run

BESIDE = st.sampled_from(["other run's best", "own best mutated", "random bytes", "other run's checkpoint"])


@RUNS
@given(kind=BESIDE, edits=MUTATIONS, data=st.binary(max_size=300))
def test_any_file_named_best_npz_beside_a_checkpoint(world, tmp_path_factory, kind, edits, data):
    run = tmp_path_factory.mktemp("run")
    shutil.copy(world / "a" / "checkpoint.npz", run / "checkpoint.npz")
    payload = {
        "other run's best": lambda: (world / "b" / "best.npz").read_bytes(),
        "own best mutated": lambda: mutate((world / "a" / "best.npz").read_bytes(), edits),
        "random bytes": lambda: data,
        "other run's checkpoint": lambda: (world / "b" / "checkpoint.npz").read_bytes(),
    }[kind]()
    (run / "best.npz").write_bytes(payload)
    message = ends_well(lambda: analyze._load_scored(str(run / "checkpoint.npz")))
    if kind.startswith("other run"):
        assert message is not None and "another run" in message, message


# ---------------------------------------------------------------- shards


SHARD_KEYS = ["dim", "count", "skipped", "format", "layer", "source", "index", "start", "stop", "images"]


@RUNS
@given(key=st.sampled_from(SHARD_KEYS), value=JSON, which=st.integers(0, 1))
def test_any_json_value_in_a_shards_meta(world, tmp_path_factory, key, value, which):
    work = tmp_path_factory.mktemp("m")
    shards = [shutil.copytree(world / f"s{i}", work / f"s{i}") for i in range(2)]
    if key in ("index", "start", "stop", "images"):
        meta = json.loads((shards[which] / "meta.json").read_text())
        meta["source"]["shard"][key] = value
        edit_meta(shards[which], source=meta["source"])
    else:
        edit_meta(shards[which], **{key: value})
    merged = work / "m"
    if ends_well(lambda: scale_out.main(["--merge", *map(str, shards), "--out", str(merged), "--quiet"])) is None:
        rows = np.load(merged / "features.npy")
        assert len(rows) == len((merged / "images.txt").read_text().splitlines()) == 5
        assert np.isfinite(rows).all()


@RUNS
@given(
    part=st.sampled_from(["features.npy", "images.txt", "skipped.txt", "meta.json"]),
    edits=MUTATIONS,
    value=st.floats(width=32),
    row=st.integers(0, 2),
)
def test_damaged_shard_files_and_any_float32_value(world, tmp_path_factory, part, edits, value, row):
    work = tmp_path_factory.mktemp("m")
    shards = [shutil.copytree(world / f"s{i}", work / f"s{i}") for i in range(2)]
    target = shards[1] / part
    target.write_bytes(mutate(target.read_bytes(), edits))
    rows = np.load(shards[0] / "features.npy")
    rows[min(row, len(rows) - 1), 0] = value
    np.save(shards[0] / "features.npy", rows)
    merged = work / "m"
    if ends_well(lambda: scale_out.main(["--merge", *map(str, shards), "--out", str(merged), "--quiet"])) is None:
        out = np.load(merged / "features.npy")
        assert np.isfinite(out).all() and len(out) == len((merged / "images.txt").read_text().splitlines())


# ---------------------------------------------------------------- float32 overflow at the command


@RUNS
@given(value=st.floats(), dtype=st.sampled_from(["float64", "float32", "float16"]))
def test_predict_features_with_any_float(world, tmp_path_factory, value, dtype):
    path = tmp_path_factory.mktemp("p") / "f.npy"
    feats = np.ones((2, D), np.float64)
    feats[1, 2] = value
    with np.errstate(over="ignore"):
        np.save(path, feats.astype(dtype))
    message = ends_well(
        lambda: predict.main(["--checkpoint", str(world / "a" / "checkpoint.npz"), "--features", str(path), "--quiet"])
    )
    with np.errstate(over="ignore"):
        finite = np.isfinite(feats.astype(dtype).astype(np.float32)).all()
    assert (message is None) == bool(finite), message
