"""Checkpoints: round trip, exact rng resume, and one-line errors for bad files."""

import dataclasses
import json

import numpy as np
import pytest

from minicnnrnn.core import fileio
from minicnnrnn.core.errors import UserError
from minicnnrnn.training import checkpoint, kinds
from minicnnrnn.training.config import RunConfig

CONFIG = RunConfig(model="cnn-rnn", K=3, D=5, E=4, H=6, variant="relu", cnn={"weights": "builtin", "layer": "fc7"})


def _state(rng):
    gen = np.random.default_rng(7)
    gen.random(5)  # advance it: the saved state must be the current one, not the seed's
    return {
        "params": kinds.KINDS["cnn-rnn"].init(CONFIG, rng),
        "opt": {"v/U_l": np.ones((5, 4), np.float32), "m/U_l": np.zeros((5, 4), np.float32)},
        "config": CONFIG,
        "label_names": ["cat", "dog", "sky"],
        "label_order": np.array([2, 0, 1]),
        "epoch": 4,
        "rng": checkpoint.rng_state(gen),
        "extra": {"history": [{"epoch": 1, "loss": 1.5}]},
    }, gen


def test_round_trip(tmp_path, rng):
    state, gen = _state(rng)
    path = tmp_path / "sub" / "checkpoint.npz"
    checkpoint.save(path, state)
    back = checkpoint.load(path)
    for k in state["params"]:
        np.testing.assert_array_equal(back["params"][k], state["params"][k])
        assert back["params"][k].dtype == np.float32
    assert set(back["opt"]) == set(state["opt"])
    assert back["config"] == CONFIG and back["label_names"] == ["cat", "dog", "sky"]
    assert back["epoch"] == 4 and back["extra"] == state["extra"]
    np.testing.assert_array_equal(back["label_order"], [2, 0, 1])
    # the restored generator continues exactly where the saved one stopped
    restored = checkpoint.restore_rng(back["rng"])
    np.testing.assert_array_equal(restored.random(10), gen.random(10))
    assert not list(tmp_path.joinpath("sub").glob("*.tmp"))


def test_config_is_stored_as_a_plain_object_and_missing_settings_get_defaults(tmp_path, rng):
    state, _ = _state(rng)
    path = tmp_path / "c.npz"
    checkpoint.save(path, {**state, "config": dataclasses.replace(CONFIG, lr=0.01, k=2)})
    arrays = fileio.load_npz(path)
    meta = json.loads(str(arrays["meta"][()]))
    assert meta["config"] == {**CONFIG.to_dict(), "lr": 0.01, "k": 2}  # every field, as JSON
    assert list(meta["config"])[:7] == ["model", "K", "D", "E", "H", "variant", "cnn"]
    # a checkpoint written before a setting existed is read with that setting's default, or
    # with what runs did before it where that differs (config.MIGRATION: no validation split)
    meta["config"] = {k: meta["config"][k] for k in ("model", "K", "D", "E", "H", "variant", "cnn")}
    fileio.save_npz(path, **{**arrays, "meta": np.array(json.dumps(meta))})
    back = checkpoint.load(path)["config"]
    assert back == dataclasses.replace(CONFIG, val_fraction=0.0, decode="path") and (
        back.beam,
        back.k,
        back.min_labels,
        back.feature_norm,
    ) == (3, 3, 0, None)


def test_missing_and_corrupt_files_give_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="nope.npz: file not found"):
        checkpoint.load(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(UserError, match="bad.npz") as err:
        checkpoint.load(bad)
    assert "\n" not in str(err.value)
    other = tmp_path / "other.npz"
    fileio.save_npz(other, x=np.zeros(3))
    with pytest.raises(UserError, match="other.npz: missing array"):
        checkpoint.load(other)


def test_foreign_or_inconsistent_checkpoints_are_refused(tmp_path, rng):
    state, _ = _state(rng)
    path = tmp_path / "c.npz"
    checkpoint.save(path, state)
    arrays = fileio.load_npz(path)

    def rewrite(meta_change=None, **array_change):
        meta = json.loads(str(arrays["meta"][()]))
        if meta_change:
            meta_change(meta)
        fileio.save_npz(path, **{**arrays, "meta": np.array(json.dumps(meta)), **array_change})

    rewrite(lambda m: m.update(format="something/9"))
    with pytest.raises(UserError, match="not a minicnnrnn checkpoint"):
        checkpoint.load(path)
    rewrite(lambda m: m["config"].pop("K"))
    with pytest.raises(UserError, match="lacks K"):
        checkpoint.load(path)
    rewrite(lambda m: m.update(label_names=["a"]))
    with pytest.raises(UserError, match="1 label names"):
        checkpoint.load(path)
    rewrite(label_order=np.array([0, 0, 1]))
    with pytest.raises(UserError, match="permutation"):
        checkpoint.load(path)
    rewrite(lambda m: m["config"].update(D=7))
    with pytest.raises(UserError, match="D = 7"):
        checkpoint.load(path)
    rewrite(lambda m: m["config"].update(model="lstm"))
    with pytest.raises(UserError, match="c.npz: checkpoint config model = 'lstm' is not one of"):
        checkpoint.load(path)
    rewrite(lambda m: m["config"].update(color="blue"))
    with pytest.raises(UserError, match="c.npz: checkpoint config has unknown settings 'color'"):
        checkpoint.load(path)
    for key, value, expected in (("K", "3", "int"), ("E", 4.0, "int"), ("D", True, "int"), ("cnn", [], "dict or null")):
        rewrite(lambda m, key=key, value=value: m["config"].update({key: value}))
        with pytest.raises(UserError, match=f"c.npz: checkpoint config {key} = .* is not {expected}") as err:
            checkpoint.load(path)
        assert "\n" not in str(err.value)
    fileio.save_npz(path, **{**arrays, "meta": np.array("{not json")})
    with pytest.raises(UserError, match="corrupt checkpoint metadata"):
        checkpoint.load(path)


def test_check_compatible(rng, tmp_path):
    state, _ = _state(rng)
    checkpoint.check_compatible("c.npz", state, CONFIG)
    checkpoint.check_compatible("c.npz", state, dataclasses.replace(CONFIG, epochs=40))  # may change on resume
    with pytest.raises(UserError, match="c.npz: checkpoint has model = 'cnn-rnn' but this run has model = 'bce'"):
        checkpoint.check_compatible("c.npz", state, dataclasses.replace(CONFIG, model="bce"))
    with pytest.raises(UserError, match="H = 6"):
        checkpoint.check_compatible("c.npz", state, dataclasses.replace(CONFIG, H=8))


def test_bad_rng_state():
    with pytest.raises(UserError, match="ck.npz: no usable random-generator state"):
        checkpoint.restore_rng({"bit_generator": "MT19937"}, "ck.npz")
    with pytest.raises(UserError, match="corrupt random-generator state"):
        checkpoint.restore_rng({"bit_generator": "PCG64", "state": {}}, "ck.npz")


def test_knn_neighbour_count_of_an_older_checkpoint_is_renamed(tmp_path, rng):
    """Checkpoints written before the rename store KNN's neighbour count as ``k``
    (checkpoint.PARAM_MIGRATION); both names at once is a damaged file."""
    cfg = RunConfig(model="knn", K=3, D=5, E=4, H=6, variant="relu", cnn=None)
    X = rng.standard_normal((8, 5)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y = (rng.random((8, 3)) < 0.5).astype(np.float32)
    old = {"X": X, "Y": Y, "k": np.array([3], np.int64)}
    state = {"params": old, "config": cfg, "label_names": ["a", "b", "c"], "label_order": np.array([0, 1, 2])}
    checkpoint.save(tmp_path / "old.npz", state)
    back = checkpoint.load(tmp_path / "old.npz")["params"]
    assert sorted(back) == ["X", "Y", "n_neighbours"] and int(back["n_neighbours"][0]) == 3
    np.testing.assert_array_equal(back["X"], X)
    both = {**old, "n_neighbours": np.array([3], np.int64)}
    checkpoint.save(tmp_path / "both.npz", {**state, "params": both})
    with pytest.raises(UserError, match="both.npz: a knn model has parameters X, Y and n_neighbours"):
        checkpoint.load(tmp_path / "both.npz")
