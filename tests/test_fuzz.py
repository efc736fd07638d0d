"""Fuzzing the readers (issue 16) with hypothesis: damaged weights, checkpoints, data and images.

Each test takes a real small file (the torch-made ``.pth`` fixtures in both layouts, or
one built with torch here when torch is installed; a Keras ``.h5`` written with h5py; a
checkpoint; a dataset ``.npz``; a PNG and a JPEG), mutates its bytes (flips, overwrites,
cuts, insertions) or its structured content (any JSON value in place of a checkpoint's
config entry), and reads it the way a command does. Every mutation must end in success or
a one-line :class:`UserError`: any other exception is a bug. The budget is fixed
(``derandomize``: the same examples on every run, 40 per reader;
``MINICNNRNN_FUZZ_EXAMPLES=500`` searches deeper) so the whole file takes well under a
minute; the size limits of ``core/limits.py`` keep every example's memory small.
"""

import functools
import io
import json
import os
import pathlib
import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from minicnnrnn import convert, predict
from minicnnrnn.cnn import image_files, preprocess
from minicnnrnn.core import fileio
from minicnnrnn.core.errors import UserError
from minicnnrnn.datasets import voc2007
from minicnnrnn.training import checkpoint, kinds
from minicnnrnn.training import data as train_data
from minicnnrnn.training.config import RunConfig

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
BUDGET = settings(
    max_examples=int(os.environ.get("MINICNNRNN_FUZZ_EXAMPLES", "40")),  # raise it for a deeper local search
    derandomize=True,
    deadline=None,  # a busy CI machine must not fail a test; memory and size are bounded instead
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


# A mutation: a few edits of a byte string, each (kind, position as a fraction, payload).
EDIT = st.tuples(
    st.sampled_from(["flip", "overwrite", "cut", "insert", "truncate"]),
    st.floats(0, 1, allow_nan=False),
    st.binary(min_size=1, max_size=8),
)
MUTATIONS = st.lists(EDIT, min_size=1, max_size=4)


def mutate(data, edits):
    data = bytearray(data)
    for kind, where, payload in edits:
        i = min(int(where * len(data)), max(len(data) - 1, 0))
        if kind == "flip" and data:
            data[i] ^= payload[0] or 0xFF
        elif kind == "overwrite":
            data[i : i + len(payload)] = payload
        elif kind == "cut":
            del data[i : i + 1 + payload[0] % 64]
        elif kind == "insert":
            data[i:i] = payload
        elif kind == "truncate":
            del data[i:]
    return bytes(data)


def survives(read, path):
    """Call ``read(path)``: success and a one-line UserError are both fine."""
    try:
        read(str(path))
    except UserError as exc:
        assert "\n" not in str(exc), str(exc)


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- weights files


def _torch_files():
    files = {"zip": FIXTURES / "tiny_vgg_zip.pth", "legacy": FIXTURES / "tiny_mixed_legacy.pth"}
    return {name: path.read_bytes() for name, path in files.items()}


TORCH_FILES = _torch_files()


@pytest.mark.parametrize("layout", sorted(TORCH_FILES))
@BUDGET
@given(edits=MUTATIONS)
def test_mutated_pth_converts_or_is_one_line(tmp_path, layout, edits):
    path = _write(tmp_path, "w.pth", mutate(TORCH_FILES[layout], edits))
    survives(convert.convert, path)


@BUDGET
@given(edits=MUTATIONS, legacy=st.booleans())
def test_mutated_pth_written_by_torch_here(tmp_path, edits, legacy):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    state = {"features.0.weight": torch.randn(4, 3, 3, 3, generator=g), "features.0.bias": torch.zeros(4)}
    state["classifier.0.weight"] = torch.randn(5, 4 * 7 * 7, generator=g)[:, :196]
    state["classifier.0.bias"] = torch.zeros(5)
    buf = io.BytesIO()
    torch.save(state, buf, _use_new_zipfile_serialization=not legacy)
    survives(convert.convert, _write(tmp_path, "t.pth", mutate(buf.getvalue(), edits)))


@functools.cache
def keras_bytes():
    """A Keras 2 weights file written with h5py (bytes; made once, not a hypothesis argument)."""
    h5py = pytest.importorskip("h5py")
    path = pathlib.Path(tempfile.mkdtemp()) / "k.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        names = ["block1_conv1", "block1_conv2", "fc1"]
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        shapes = {"block1_conv1": (3, 3, 3, 4), "block1_conv2": (3, 3, 4, 4), "fc1": (4 * 4 * 4, 6)}
        for name in names:
            group = f.create_group(name)
            group.attrs["weight_names"] = np.array([f"{name}_W_1:0".encode(), f"{name}_b_1:0".encode()])
            group.create_dataset(f"{name}_W_1:0", data=rng.standard_normal(shapes[name]).astype(np.float32))
            group.create_dataset(f"{name}_b_1:0", data=np.zeros(shapes[name][-1], np.float32))
    data = path.read_bytes()
    shutil.rmtree(path.parent)
    return data


@BUDGET
@given(edits=MUTATIONS)
def test_mutated_keras_h5_converts_or_is_one_line(tmp_path, edits):
    survives(convert.convert, _write(tmp_path, "k.h5", mutate(keras_bytes(), edits)))


# ---------------------------------------------------------------- checkpoints and data


CONFIG = RunConfig(model="cnn-rnn", K=3, D=5, E=4, H=6, variant="relu", cnn={"weights": None, "layer": None})


@functools.cache
def checkpoint_bytes():
    """A small real checkpoint (bytes)."""
    path = pathlib.Path(tempfile.mkdtemp()) / "checkpoint.npz"
    state = {
        "params": kinds.KINDS["cnn-rnn"].init(CONFIG, np.random.default_rng(0)),
        "config": CONFIG,
        "label_names": ["a", "b", "c"],
        "label_order": np.array([2, 0, 1]),
        "epoch": 2,
        "rng": None,
    }
    checkpoint.save(path, state)
    data = path.read_bytes()
    shutil.rmtree(path.parent)
    return data


@BUDGET
@given(edits=MUTATIONS)
def test_mutated_checkpoint_bytes(tmp_path, edits):
    survives(checkpoint.load, _write(tmp_path, "c.npz", mutate(checkpoint_bytes(), edits)))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@BUDGET
@given(
    key=st.sampled_from([*CONFIG.to_dict(), "label_names", "epoch", "extra", "domain", "data", "rng", "run_id"]),
    value=JSON,
)
def test_any_json_value_in_a_checkpoint(tmp_path, key, value):
    arrays = fileio.load_npz(_write(tmp_path, "orig.npz", checkpoint_bytes()))
    meta = json.loads(str(arrays["meta"][()]))
    if key in meta["config"]:
        meta["config"][key] = value
    else:
        meta[key] = value
    path = tmp_path / "c.npz"
    fileio.save_npz(path, **{**arrays, "meta": np.array(json.dumps(meta))})
    survives(checkpoint.load, path)


@functools.cache
def dataset_bytes():
    rng = np.random.default_rng(0)
    y = (rng.random((6, 3)) < 0.5).astype(np.uint8)
    f = rng.random((6, 4)).astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, train_features=f, train_labels=y, test_features=f, test_labels=y, label_names=np.array(list("abc")))
    return buf.getvalue()


@BUDGET
@given(edits=MUTATIONS)
def test_mutated_dataset_npz(tmp_path, edits):
    survives(train_data.load_npz, _write(tmp_path, "d.npz", mutate(dataset_bytes(), edits)))


# ---------------------------------------------------------------- images


def _image_bytes(fmt):
    buf = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


IMAGES = {fmt: _image_bytes(fmt) for fmt in ("PNG", "JPEG", "GIF", "TIFF", "BMP", "WEBP")}
# Formats Pillow would decode but this project does not (issue 25): contents unrelated to the name.
FOREIGN = {fmt: _image_bytes(fmt) for fmt in ("PPM", "TGA", "ICO", "PCX", "SGI")}
META = {
    "input_size": 16,
    "preprocess": {"channel_order": "RGB", "scale": 1, "mean": [0, 0, 0], "std": [1, 1, 1], "resize": "crop"},
}


@pytest.mark.parametrize("fmt", sorted(IMAGES))
@BUDGET
@given(edits=MUTATIONS)
def test_mutated_image(tmp_path, fmt, edits):
    survives(lambda p: preprocess.load_image(p, META), _write(tmp_path, "i.img", mutate(IMAGES[fmt], edits)))


@BUDGET
@given(fmt=st.sampled_from(sorted(FOREIGN)), edits=st.lists(EDIT, max_size=2))
def test_foreign_format_named_jpg_is_never_decoded(tmp_path, fmt, edits):
    path = _write(tmp_path, "photo.jpg", mutate(FOREIGN[fmt], edits))
    try:
        preprocess.load_image(str(path), META)
    except UserError as exc:
        assert "\n" not in str(exc)
    else:  # a mutation may by chance start with an allowed format's signature
        assert image_files.detect(path.read_bytes()[:16]) in image_files.ALLOWED


@BUDGET
@given(value=st.floats(allow_nan=True, allow_infinity=True), row=st.integers(0, 5))
def test_any_float64_feature_value(tmp_path, value, row):
    arrays = dict(np.load(io.BytesIO(dataset_bytes())))
    features = arrays["train_features"].astype(np.float64)
    features[row, 0] = value
    path = tmp_path / "d.npz"
    np.savez(path, **{**arrays, "train_features": features})
    try:
        data = train_data.load_npz(str(path))
    except UserError as exc:
        assert "\n" not in str(exc) and not abs(value) <= float(np.finfo(np.float32).max)
    else:
        assert np.isfinite(data.train_features[:]).all()  # read as float32: nothing overflowed


@BUDGET
@given(data=st.binary(max_size=512))
def test_random_bytes_as_an_image(tmp_path, data):
    survives(lambda p: preprocess.load_image(p, META), _write(tmp_path, "r.img", data))


@functools.cache
def features_bytes():
    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(0).random((5, 4)).astype(np.float32))
    return buf.getvalue()


def _read_features(path):
    feats, names = predict.matrix_features(path, None)
    for block in predict.chunks(feats, path, {"mode": "l2"}):
        assert block.shape[1] == feats.shape[1]


@BUDGET
@given(edits=MUTATIONS)
def test_mutated_features_npy_for_predict(tmp_path, edits):
    survives(_read_features, _write(tmp_path, "f.npy", mutate(features_bytes(), edits)))


@BUDGET
@given(data=st.binary(max_size=200))
def test_random_bytes_as_a_voc_split_file(tmp_path, data):
    survives(voc2007._read_split_file, _write(tmp_path, "train.txt", data))
