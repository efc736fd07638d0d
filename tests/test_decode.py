"""--decode path | marginal | marginal-f1 | auto: the decisions on a toy step whose path
distribution is known, the choice on validation stored in the checkpoint and reused by
predict, old checkpoints decoding the path, and the bound on the sampled paths (K = 5000)."""

import dataclasses
import itertools
import json
import time
import tracemalloc

import numpy as np
import pytest

from minicnnrnn import predict, train
from minicnnrnn.core import backend
from minicnnrnn.core.backend import xp
from minicnnrnn.paths import beam_search, decisions, grammar, label_paths, presence
from minicnnrnn.training import checkpoint, config, kinds, selection

# Each image's step distribution over labels a, b, c and END: FIRST at the first step, NEXT
# after it, renormalised over what the grammar allows (paths/grammar.py).
FIRST = np.log(
    np.array(
        [
            [0.7, 0.2, 0.05, 0.05],  # "a" then END is the most probable path; b is likely too
            [0.45, 0.3, 0.25, 1e-9],  # END almost never: long paths
            [0.05, 0.05, 0.05, 0.85],  # mostly the empty path
        ]
    )
)
NEXT = np.log(np.array([[0.05, 0.05, 0.05, 0.85], [0.45, 0.3, 0.25, 1e-9], [0.3, 0.3, 0.3, 0.1]]))
K = 3


def toy_step(prev, state, rows):
    """The one-step decoder protocol of rnn.model.make_step, for the toy distributions."""
    lp = xp.asarray(FIRST if prev is None else NEXT)[rows].copy()
    return lp, (xp.zeros((rows.shape[0], 1)),)


def _paths(i, L=K, min_labels=0):
    """Every complete path of image i with its probability (renormalised over the allowed
    outputs at each step, as the presence and the samplers do)."""
    out = []
    for m in range(L + 1):
        for labels in itertools.permutations(range(K), m):
            p, prefix = 1.0, ()
            for j in labels + (K,):
                lp = FIRST[i] if not prefix else NEXT[i]
                allowed = [o for o in range(K + 1) if grammar.may_follow(o, prefix, K, L, min_labels)]
                p *= np.exp(lp[j]) / np.exp(lp[allowed]).sum()
                prefix += (j,) if j < K else ()
            out.append((set(labels), p))
    return out


def _expected_f1(i, chosen):
    f1 = [(1.0 if not chosen and not y else 2 * len(chosen & y) / (len(chosen) + len(y))) for y, _ in _paths(i)]
    return sum(f * p for f, (_, p) in zip(f1, _paths(i)))


def _decode(how, k=2, samples=4000):
    return kinds.decode_path(kinds.DecodeOptions(max_labels=k, decode=how, samples=samples, seed=3), toy_step, 3)


def test_marginal_takes_the_k_labels_of_highest_presence_and_path_the_most_probable_path():
    marginal = _decode("marginal")
    exact = np.array([[sum(p for y, p in _paths(i) if label in y) for label in range(K)] for i in range(3)])
    np.testing.assert_allclose(marginal.ranking, exact, rtol=1e-9)
    np.testing.assert_array_equal(marginal.lengths, [2, 2, 2])
    for i in range(3):  # the top 2 of P(label in path), most probable first
        np.testing.assert_array_equal(marginal.labels[i], np.argsort(-exact[i], kind="stable")[:2])
        np.testing.assert_allclose(marginal.probabilities[i], exact[i][marginal.labels[i]])
    path = _decode("path")
    search = beam_search.beam_search(toy_step, 3, 3, max_labels=2)
    np.testing.assert_array_equal(path.labels, backend.to_host(search[0]))
    assert path.labels[0, 0] == 0 and path.lengths[0] == 1  # "a", then END ...
    assert exact[0, 1] > 0.2 and marginal.lengths[0] == 2  # ... though b is likely: the marginal takes it
    np.testing.assert_allclose(path.ranking, marginal.ranking)  # one distribution ranks both


def test_marginal_f1_chooses_the_set_of_highest_expected_f1():
    decoded = _decode("marginal-f1", k=K)
    for i in range(3):
        chosen = set(decoded.labels[i, : decoded.lengths[i]].tolist())
        subsets = [set(c) for m in range(K + 1) for c in itertools.combinations(range(K), m)]
        best = max(_expected_f1(i, A) for A in subsets)
        assert _expected_f1(i, chosen) >= best - 0.01  # sampling noise at S = 4000
    assert decoded.lengths[1] == 3 and decoded.lengths[2] == 0  # long paths: all three; mostly empty: none
    assert decoded.end_probability is None and decoded.ranking_stderr.shape == (3, K)


def _choose(monkeypatch, winner):
    """Make ``winner`` the decoding that validation prefers, whatever the model learned."""
    real = selection.validation_row

    def row(cfg, params, data):
        out = real(cfg, params, data)
        return dict(out, val_score=100.0 if cfg.decode == winner else out["val_score"] - 100)

    monkeypatch.setattr(selection, "validation_row", row)


@pytest.fixture
def tiny_npz(tmp_path):
    rng = np.random.default_rng(4)
    W = rng.standard_normal((5, 8))
    split = {}
    for name, n in (("train", 120), ("test", 30)):
        y = (rng.random((n, 5)) < 0.4).astype(np.uint8)
        y[y.sum(1) == 0, 0] = 1
        split[name] = ((y @ W + 0.3 * rng.standard_normal((n, 8))).astype(np.float32), y)
    path = tmp_path / "tiny.npz"
    np.savez(
        path,
        train_features=split["train"][0],
        train_labels=split["train"][1],
        test_features=split["test"][0],
        test_labels=split["test"][1],
        label_names=np.array(list("abcde")),
    )
    return path


def _train(npz, out, *extra):
    argv = ["--dataset", f"npz:{npz}", "--out", str(out), "--epochs", "2", "--embed", "8", "--hidden", "16"]
    return train.main(argv + ["--batch-size", "32", "--gate-lr-scale", "1", *extra])


def test_validation_choice_is_stored_and_predict_decodes_with_it(tiny_npz, tmp_path, monkeypatch, capsys):
    _choose(monkeypatch, "marginal")
    out = tmp_path / "run"
    _train(tiny_npz, out)
    assert "decoding chosen on validation: marginal" in capsys.readouterr().out
    run = json.loads((out / "metrics.json").read_text())["run"]
    assert run["decoding"]["decode"] == "marginal" and len(run["decoding"]["tried"]) == 10
    for name in ("best.npz", "checkpoint.npz"):
        assert checkpoint.load(out / name)["config"].decode == "marginal"
    features = tmp_path / "f.npy"
    np.save(features, np.load(tiny_npz)["test_features"][:6])
    result = tmp_path / "pred.json"
    predict.main(["--checkpoint", str(out / "best.npz"), "--features", str(features), "--out", str(result)])
    rows = json.loads(result.read_text())
    rows = rows["predictions"] if isinstance(rows, dict) else rows
    assert [len(r["labels"]) for r in rows] == [3] * 6  # the k = 3 labels of highest P(label in path)
    args = predict.make_parser().parse_args(["--checkpoint", "x", "--decode", "path"])
    assert predict.search_options(args, checkpoint.load(out / "best.npz")["config"]).decode == "path"


def test_paper_protocol_is_one_flag_away(tiny_npz, tmp_path, capsys):
    _train(tiny_npz, tmp_path / "p", "--decode", "path")
    assert "decoding chosen" not in capsys.readouterr().out
    assert "decoding" not in json.loads((tmp_path / "p" / "metrics.json").read_text())["run"]
    assert checkpoint.load(tmp_path / "p" / "best.npz")["config"].decode == "path"
    _train(tiny_npz, tmp_path / "n", "--val-fraction", "0")  # auto without a split: the path
    assert checkpoint.load(tmp_path / "n" / "checkpoint.npz")["config"].decode == "path"


def test_old_checkpoints_decode_the_path_over_paths_of_up_to_K_labels():
    cfg = config.RunConfig(model="cnn-rnn", K=20, D=5, E=4, H=4, variant="relu", cnn=None, decode="marginal")
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("decode", "max_path")}
    migrated = config.RunConfig.from_dict(old, "old.npz")
    assert migrated.decode == "path" and migrated.max_path is None
    with pytest.raises(Exception, match="old.npz: checkpoint config max_path = 2 must be between k = 3 and K = 20"):
        config.RunConfig.from_dict(dict(old, max_path=2), "old.npz")


def test_the_sampled_paths_are_bounded_whatever_K(monkeypatch):
    """K = 5000 and a model that never says END: sampling stops at max_path, and every
    block's (rows, K + 1) arrays stay within decisions._ELEMENTS entries."""
    K5 = 5000
    seen = []

    def step(prev, state, rows):
        seen.append(rows.shape[0])
        lp = xp.full((rows.shape[0], K5 + 1), -np.log(K5))
        lp[:, K5] = -50.0  # END almost never
        return lp, ()

    tracemalloc.start()
    start = time.perf_counter()
    p, err = presence.sampled_presence(step, 40, max_labels=9, samples=100, seed=0)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    blocks = -(-40 // decisions.block_images(100, K5))
    assert len([r for r in seen if r]) == blocks * 10  # L + 1 = 10 steps per block (0 rows: asking K)
    assert max(seen) * (K5 + 1) <= decisions._ELEMENTS
    np.testing.assert_allclose(p.sum(axis=1), 9.0)  # every path holds exactly 9 labels
    assert peak < 400e6 and seconds < 60


def test_train_with_5000_labels_bounds_its_paths(tmp_path):
    """A 60-image dataset with K = 5000 (the hostile case of issue #25): max_path is set from the
    longest training path, and the whole run with its evaluation stays quick."""
    rng = np.random.default_rng(0)
    K5, n = 5000, 60
    labels = np.zeros((n, K5), np.uint8)
    labels[np.arange(n)[:, None], rng.integers(0, K5, size=(n, 3))] = 1
    features = rng.standard_normal((n, 16)).astype(np.float32)
    path = tmp_path / "big.npz"
    names = np.array([f"l{i}" for i in range(K5)])
    np.savez(path, train_features=features, train_labels=labels, test_features=features[:20])
    np.savez(path, **dict(np.load(path)), test_labels=labels[:20], label_names=names)
    start = time.perf_counter()
    _train(path, tmp_path / "big", "--epochs", "1", "--presence-samples", "20")
    cfg = checkpoint.load(tmp_path / "big" / "checkpoint.npz")["config"]
    longest = int(labels.sum(axis=1).max())
    assert cfg.max_path == 2 * longest + 3 < K5
    assert time.perf_counter() - start < 300
    assert dataclasses.replace(cfg, max_path=None).max_path is None


def test_sampling_bound_is_twice_the_longest_training_path_plus_k_at_most_K():
    labels = np.zeros((4, 30), np.uint8)
    labels[0, :5] = labels[1, :2] = 1
    assert label_paths.sampling_bound(labels, 3) == 13
    assert label_paths.sampling_bound(labels[:, :12], 3) == 12  # capped at K
    assert label_paths.sampling_bound(np.zeros((2, 9)), 3) == 3  # no labels at all: k


def test_auto_left_in_a_checkpoint_decodes_the_path_and_knn_scores_no_epoch(tiny_npz, tmp_path, capsys):
    """A checkpoint that still says decode "auto" (a run stopped before its decoding was
    chosen) decodes the path, over paths of up to K labels, as decode_path does; knn, which
    has no epochs, prints no "scored epoch" line."""
    cfg = config.RunConfig(model="cnn-rnn", K=20, D=5, E=4, H=4, variant="relu", cnn=None, decode="auto")
    args = predict.make_parser().parse_args(["--checkpoint", "x"])
    assert predict.search_options(args, cfg).max_labels is None
    marginal = dataclasses.replace(cfg, decode="marginal")
    assert predict.search_options(args, marginal).max_labels == marginal.k
    _train(tiny_npz, tmp_path / "knn", "--model", "knn")
    assert "scored epoch" not in capsys.readouterr().out
