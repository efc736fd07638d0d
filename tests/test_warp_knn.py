"""The WARP and KNN baselines (minicnnrnn/baselines/): loss, gradient, sampling, votes, training."""

import json

import numpy as np
import pytest
from conftest import dev, host

from minicnnrnn import train
from minicnnrnn.baselines import knn, warp
from minicnnrnn.training import checkpoint
from minicnnrnn.training.config import RunConfig


def _problem(rng, N=6, D=5, K=7):
    I = rng.standard_normal((N, D))
    y = (rng.random((N, K)) < 0.3).astype(np.uint8)
    y[:, 0] = 1
    params = {"W": 0.3 * rng.standard_normal((D, K)), "b": 0.1 * rng.standard_normal(K)}
    return I, y, params


def test_warp_sample_finds_violators_and_weighs_ranks_by_hand():
    # one image, K = 5, positive label 0 with score 0; negatives 1..4 scores: 2, -5, 0.5, -5
    scores = np.array([[0.0, 2.0, -5.0, 0.5, -5.0]])
    y = np.array([[1, 0, 0, 0, 0]])
    for seed in range(20):
        rows, pos, neg, weight = warp.warp_sample(scores, y, np.random.default_rng(seed))
        assert list(rows) == [0] and list(pos) == [0]
        assert neg[0] in (1, 3)  # only these violate 1 + s_q - s_p > 0
        # trials t in 1..3 (at most two non-violators drawn first): rank floor(4 / t), L(r) = H_r
        assert any(np.isclose(weight[0], sum(1 / j for j in range(1, r + 1))) for r in (4, 2, 1))
    nothing = warp.warp_sample(np.array([[5.0, 0.0, 0.0]]), np.array([[1, 0, 0]]), np.random.default_rng(0))
    assert len(nothing[0]) == 0  # the margin holds: no violator, no term


def test_rank_weights():
    np.testing.assert_allclose(warp.rank_weights(3), [0, 1, 1.5, 1.5 + 1 / 3])


def test_knn_votes_of_the_nearest_training_images():
    X = knn.unit_rows(dev(np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])))
    Y = dev(np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1]], np.float32))
    index, sim = knn.neighbours(knn.unit_rows(dev(np.array([[1.0, 0.05]]))), X, 2)
    assert list(host(index)[0]) == [0, 1]
    v = host(knn.vote(index, sim, Y, 2))
    assert v[0, 0] == pytest.approx(1.0) and 0.4 < v[0, 1] < 0.6 and v[0, 2] == 0
    loo, _ = knn.neighbours(X[:1], X, 1, exclude=dev(np.array([0])))
    assert host(loo)[0, 0] == 1  # leave-one-out: an image is not its own neighbour


def test_fit_knn_chooses_the_neighbour_count_by_leave_one_out(rng):
    centres = rng.standard_normal((4, 6)) * 3
    group = rng.integers(0, 4, 300)
    X = centres[group] + rng.standard_normal((300, 6))
    Y = np.eye(4, dtype=np.uint8)[group]
    cfg = RunConfig("knn", 4, 6, 8, 8, "relu", None, k=1)
    params = knn.fit_knn(cfg, X, Y, np.random.default_rng(0))
    assert int(params["n_neighbours"][0]) in knn.NEIGHBOUR_GRID and params["X"].shape == (300, 6)
    np.testing.assert_allclose(np.linalg.norm(params["X"], axis=1), 1, rtol=1e-5)
    votes = host(knn.knn_scores(dev(params), dev(centres)))
    np.testing.assert_array_equal(votes.argmax(axis=1), np.arange(4))


@pytest.mark.parametrize("name", ["warp", "knn"])
def test_train_warp_and_knn_beat_chance(tmp_path, name):
    rng = np.random.default_rng(1)
    K, D = 5, 12
    W = rng.standard_normal((K, D))

    def split(n):
        y = (rng.random((n, K)) < 0.35).astype(np.uint8)
        y[y.sum(1) == 0, 2] = 1
        return (y @ W + 0.3 * rng.standard_normal((n, D))).astype(np.float32), y

    (trf, trl), (tef, tel) = split(200), split(80)
    npz = tmp_path / "tiny.npz"
    np.savez(
        npz,
        train_features=trf,
        train_labels=trl,
        test_features=tef,
        test_labels=tel,
        label_names=np.array(list("abcde")),
    )
    out = tmp_path / name
    train.main(["--dataset", f"npz:{npz}", "--out", str(out), "--model", name, "--epochs", "5", "--k", "2"])
    result = json.loads((out / "metrics.json").read_text())["metrics"]
    assert result["O-F1"] > 60  # chance (2 random labels of 5, 1.75 true) is about 40
    state = checkpoint.load(out / "checkpoint.npz")
    assert state["config"].model == name


def test_warp_and_knn_on_iaprtc12(shared_data, tmp_path, capsys):
    npz = shared_data / "iaprtc12" / "iaprtc12.npz"
    if not npz.is_file():
        pytest.skip(f"{npz} not present")
    for name, extra in (("knn", []), ("warp", ["--epochs", "2"])):
        train.main(["--dataset", f"npz:{npz}", "--model", name, "--out", str(tmp_path / name), *extra])
        result = json.loads((tmp_path / name / "metrics.json").read_text())["metrics"]
        assert 0 < result["O-F1"] <= 100 and 0 < result["MAP@10"] <= 100
        assert ("KNN" if name == "knn" else "WARP") in capsys.readouterr().out
