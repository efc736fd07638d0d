"""The shipped CNN: checksum-verified loading, its quality, and the cached feature path."""

import json
import shutil

import numpy as np
import pytest

from minicnnrnn.core import backend
from minicnnrnn.core.errors import UserError
from minicnnrnn.evaluation import metrics
from minicnnrnn.tinyscenes import cache, features, scenes, source_task


def test_shipped_weights_are_small_and_match_their_record():
    import os

    assert os.path.getsize(features.WEIGHTS_PATH) < 3_000_000
    record = json.loads(open(features.sidecar_path(features.WEIGHTS_PATH), encoding="utf-8").read())
    assert record["sha256"] == features.file_sha256(features.WEIGHTS_PATH)
    assert record["command"].startswith("python -m minicnnrnn.pretrain")
    params, meta = features.load_builtin_cnn()
    # the paper's transfer setting: the CNN learned a source task, not the 20 target labels
    assert record["settings"]["task"] == "attributes"
    assert meta["num_classes"] == source_task.A and meta["label_names"] == source_task.ATTRIBUTE_NAMES
    assert meta["input_size"] == 64 and all(v.dtype == np.float32 for v in params.values())
    assert params["fc7/W"].shape[1] == meta["fc"][-1]


def test_shipped_cnn_answers_its_source_task_on_unseen_pictures():
    """The logits on 300 test pictures (never trained on) rank the source task's answers far
    better than chance, but not perfectly, and near the record's held-out mAP."""
    params, meta = features.load_builtin_cnn()
    images, _, answers = scenes.generate(300, scenes.SPLIT_SEEDS["test"], 64, draw=source_task.render_source)
    scores = features.run_cnn(backend.params_to_device(params), meta, images, layer="logits")
    value = metrics.mean_average_precision(scores, answers)
    recorded = json.loads(open(features.sidecar_path(features.WEIGHTS_PATH)).read())["heldout_mAP"]
    assert 0.6 < value < 0.97
    assert abs(value - recorded) < 0.06  # 300 pictures vs the record's 2000


@pytest.mark.parametrize("damage", ["flip", "truncate", "no_record"])
def test_damaged_weights_give_one_line_error(tmp_path, damage):
    path = tmp_path / "tinyscenes_cnn.npz"
    shutil.copy(features.WEIGHTS_PATH, path)
    shutil.copy(features.sidecar_path(features.WEIGHTS_PATH), tmp_path / "tinyscenes_cnn.json")
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0x01  # one bit of one weight: the .npz stays readable
        path.write_bytes(bytes(raw))
        match = "damaged"
    elif damage == "truncate":
        path.write_bytes(bytes(raw[:1000]))
        match = "damaged"
    else:
        (tmp_path / "tinyscenes_cnn.json").unlink()
        match = "checksum record"
    with pytest.raises(UserError, match=match) as err:
        features.load_builtin_cnn(str(path))
    assert "\n" not in str(err.value)


def test_missing_weights_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="missing"):
        features.load_builtin_cnn(str(tmp_path / "none.npz"))


def test_builtin_features_compute_then_hit_cache(tmp_path):
    x, y = features.builtin_features("test", 20, layer="fc7", batch_size=8, cache_dir=tmp_path)
    params, meta = features.load_builtin_cnn()
    assert x.dtype == np.float32 and x.shape == (20, meta["fc"][-1])
    assert (x >= 0).all() and x.any()  # fc7 is taken after its ReLU
    images, labels = scenes.load("test", 20, cache_dir=tmp_path)
    assert np.array_equal(y, labels)
    direct = features.run_cnn(backend.params_to_device(params), meta, images, "fc7", batch_size=20)
    np.testing.assert_allclose(x, direct, rtol=1e-5, atol=1e-5)  # batching does not change features
    # the second call reads the cache: plant a marker to prove it
    key = [p for p in tmp_path.iterdir() if p.name.startswith("features-")]
    assert len(key) == 1
    stored = cache.load(key[0].name[:-4], ("features", "labels"), tmp_path)
    cache.save(key[0].name[:-4], tmp_path, features=stored["features"] + 1, labels=stored["labels"])
    x2, _ = features.builtin_features("test", 20, layer="fc7", cache_dir=tmp_path)
    np.testing.assert_array_equal(x2, x + 1)


def test_other_layers_and_bad_layer(tmp_path):
    x, _ = features.builtin_features("train", 6, layer="fc6", cache_dir=tmp_path)
    _, meta = features.load_builtin_cnn()
    assert x.shape == (6, meta["fc"][0])
    with pytest.raises(UserError, match="no such layer"):
        features.builtin_features("train", 6, layer="fc9", cache_dir=tmp_path)
