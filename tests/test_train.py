"""End-to-end training runs on tiny datasets: outputs, determinism, resume, divergence, bad input."""

import csv
import dataclasses
import json

import numpy as np
import pytest
from conftest import dev

import minicnnrnn
from minicnnrnn import train
from minicnnrnn.core import cli
from minicnnrnn.core.errors import UserError
from minicnnrnn.evaluation import metrics
from minicnnrnn.rnn import model
from minicnnrnn.training import checkpoint, kinds, loop, selection
from minicnnrnn.training import data as train_data

K, D = 5, 12
TINY = ["--epochs", "3", "--embed", "8", "--hidden", "16", "--batch-size", "32"]


def _make_split(rng, n, W):
    """Labels with structure (label 1 implies label 0; 3 and 4 exclude each other), features = noisy sum."""
    y = (rng.random((n, K)) < 0.35).astype(np.uint8)
    y[y[:, 1] == 1, 0] = 1
    y[y[:, 3] == 1, 4] = 0
    y[y.sum(1) == 0, 2] = 1
    return (y @ W + 0.3 * rng.standard_normal((n, D))).astype(np.float32), y


@pytest.fixture
def tiny_npz(tmp_path):
    rng = np.random.default_rng(1)
    W = rng.standard_normal((K, D))
    trf, trl = _make_split(rng, 160, W)
    tef, tel = _make_split(rng, 60, W)
    path = tmp_path / "tiny.npz"
    np.savez(
        path,
        train_features=trf,
        train_labels=trl,
        test_features=tef,
        test_labels=tel,
        label_names=np.array(["a", "b", "c", "d", "e"]),
    )
    return path


def _run(npz, out, *extra):
    return train.main(["--dataset", f"npz:{npz}", "--out", str(out), *TINY, *extra])


def test_outputs_of_a_run(tiny_npz, tmp_path):
    out = tmp_path / "run"
    assert _run(tiny_npz, out) == 0
    record = json.loads((out / "metrics.json").read_text())
    result = record["metrics"]
    assert list(result) == list(metrics.METRIC_KEYS)
    assert all(0.0 <= v <= 100.0 for v in result.values())
    run = record["run"]
    assert (run["dataset"], run["k"], run["model"], run["seed"]) == (f"npz:{tiny_npz.name}", 3, "cnn-rnn", 0)
    assert run["variant"] == "bounded"  # train's default LSTM: the capped ReLU
    assert run["version"] == minicnnrnn.__version__ and 1 <= run["scored_epoch"] <= 3
    assert 0 <= record["labels_per_image"] <= 3
    best = checkpoint.load(out / "best.npz")  # the validation-chosen epoch, a checkpoint predict reads
    assert best["epoch"] == run["scored_epoch"]
    state = checkpoint.load(out / "checkpoint.npz")
    assert state["epoch"] == 3 and state["label_names"] == ["a", "b", "c", "d", "e"]
    cfg = state["config"]
    assert cfg.model == "cnn-rnn" and cfg.cnn["features"] == str(tiny_npz)
    assert (cfg.K, cfg.D, cfg.E, cfg.H, cfg.epochs, cfg.batch_size) == (K, D, 8, 16, 3, 32)
    labels = np.load(tiny_npz)["train_labels"]
    np.testing.assert_array_equal(state["label_order"], np.argsort(-labels.sum(0), kind="stable"))
    assert set(state["params"]) == set(model.init_params(K, D, 8, 16, np.random.default_rng(0), "relu"))
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert min(float(r["loss"]) for r in rows[1:]) < float(rows[0]["loss"])  # it learns
    assert (out / "loss.png").stat().st_size > 1000


@pytest.mark.parametrize("name", ["no-rnn", "bce", "softmax"])
def test_baselines_train_and_learn(tiny_npz, tmp_path, name):
    out = tmp_path / name
    _run(tiny_npz, out, "--model", name, "--epochs", "6")
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert min(float(r["loss"]) for r in rows[1:]) < float(rows[0]["loss"])
    assert checkpoint.load(out / "checkpoint.npz")["config"].model == name
    result = json.loads((out / "metrics.json").read_text())["metrics"]
    chance = 100 * np.load(tiny_npz)["test_labels"].mean()  # mAP of a random ranking, about
    assert result["mAP"] > chance + 10


def test_same_seed_same_metrics_other_seed_other_weights(tiny_npz, tmp_path):
    _run(tiny_npz, tmp_path / "a", "--seed", "3")
    _run(tiny_npz, tmp_path / "b", "--seed", "3")
    _run(tiny_npz, tmp_path / "c", "--seed", "4")
    assert (tmp_path / "a" / "metrics.json").read_bytes() == (tmp_path / "b" / "metrics.json").read_bytes()
    pa, pc = (checkpoint.load(tmp_path / x / "checkpoint.npz")["params"] for x in "ac")
    assert not np.array_equal(pa["U_l"], pc["U_l"])


def test_resume_after_interruption_matches_uninterrupted_run(tiny_npz, tmp_path, monkeypatch):
    args = ("--label-order", "random", "--epochs", "4")
    _run(tiny_npz, tmp_path / "full", *args)
    original = loop.run_epoch

    def interrupted(cfg, params, opt, data, order, rng, epoch, *rest):
        if epoch == 2:
            raise KeyboardInterrupt
        return original(cfg, params, opt, data, order, rng, epoch, *rest)

    monkeypatch.setattr(loop, "run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_npz, tmp_path / "cut", *args)
    assert checkpoint.load(tmp_path / "cut" / "checkpoint.npz")["epoch"] == 2
    assert not (tmp_path / "cut" / "metrics.json").exists()
    monkeypatch.setattr(loop, "run_epoch", original)
    _run(tiny_npz, tmp_path / "cut", *args, "--resume")
    full, cut = (checkpoint.load(tmp_path / x / "checkpoint.npz") for x in ("full", "cut"))
    for name in full["params"]:
        np.testing.assert_array_equal(full["params"][name], cut["params"][name])
    assert (tmp_path / "full" / "metrics.json").read_bytes() == (tmp_path / "cut" / "metrics.json").read_bytes()
    assert len(list(csv.DictReader((tmp_path / "cut" / "log.csv").open()))) == 4


def _poison_path_loss(monkeypatch, bad):
    """Make model.path_loss return a NaN loss on the calls for which ``bad(call number)``."""
    calls = {"n": 0}
    original = model.path_loss

    def poisoned(*a, **kw):
        calls["n"] += 1
        value, grads = original(*a, **kw)
        return (float("nan") if bad(calls["n"]) else value), grads  # 5 batches per epoch

    monkeypatch.setattr(model, "path_loss", poisoned)


def test_a_diverged_epoch_runs_again_at_half_the_learning_rate(tiny_npz, tmp_path, monkeypatch, capsys):
    _run(tiny_npz, tmp_path / "clean")
    _poison_path_loss(monkeypatch, lambda n: n == 7)  # epoch 2, step 2, once
    out = tmp_path / "nan"
    _run(tiny_npz, out)
    assert "diverged (loss nan" in capsys.readouterr().out
    clean, rows = (list(csv.DictReader((p / "log.csv").open())) for p in (tmp_path / "clean", out))
    assert len(rows) == len(clean) >= 3 and rows[0]["lr"] == clean[0]["lr"]
    for row, ref in zip(rows[1:], clean[1:]):  # halved from the diverged epoch on
        assert float(row["lr"]) == pytest.approx(float(ref["lr"]) / 2)
    state = checkpoint.load(out / "checkpoint.npz")
    assert state["extra"]["lr_factor"] == 0.5 and state["extra"]["halvings"] == 1
    assert all(np.isfinite(p).all() for p in state["params"].values())


def test_nan_loss_that_persists_stops_and_keeps_last_good_checkpoint(tiny_npz, tmp_path, monkeypatch):
    out = tmp_path / "nan"
    _poison_path_loss(monkeypatch, lambda n: n >= 7)
    with pytest.raises(
        UserError, match=r"training diverged: loss nan .* epoch 2, step \d, after 3 halvings .*kept .*epoch 1"
    ) as err:
        _run(tiny_npz, out)
    assert "\n" not in str(err.value)
    state = checkpoint.load(out / "checkpoint.npz")
    assert state["epoch"] == 1
    assert all(np.isfinite(p).all() for p in state["params"].values())


def test_resume_refuses_a_different_model(tiny_npz, tmp_path):
    _run(tiny_npz, tmp_path / "r", "--epochs", "1")
    with pytest.raises(UserError, match="checkpoint has model = 'cnn-rnn' but this run has model = 'bce'"):
        _run(tiny_npz, tmp_path / "r", "--model", "bce", "--resume")
    with pytest.raises(UserError, match="no checkpoint to resume from"):
        _run(tiny_npz, tmp_path / "empty", "--resume")


def test_bad_npz_files(tmp_path, tiny_npz):
    arrays = dict(np.load(tiny_npz))
    cases = {
        "missing": ({k: v for k, v in arrays.items() if k != "test_labels"}, "missing array.*test_labels"),
        "rows": ({**arrays, "train_labels": arrays["train_labels"][:-1]}, "same N"),
        "dims": ({**arrays, "test_features": arrays["test_features"][:, :-1]}, "differ in size D"),
        "names": ({**arrays, "label_names": arrays["label_names"][:3]}, "number of labels"),
        "values": ({**arrays, "train_labels": arrays["train_labels"] * 2}, "only 0 and 1"),
        "nan": ({**arrays, "train_features": arrays["train_features"] * np.nan}, "NaN or inf"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, **content)
        with pytest.raises(UserError, match=f"{name}.npz: .*{message}"):
            _run(path, tmp_path / "o")
    with pytest.raises(UserError, match="--dataset: unknown dataset 'imagenet'"):
        train.main(["--dataset", "imagenet"])
    with pytest.raises(UserError, match="--dataset voc2007: needs --root"):
        train.main(["--dataset", "voc2007"])


def test_cli_prints_one_line_errors(tiny_npz, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.run(train.main, ["--dataset", f"npz:{tmp_path}/none.npz"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "none.npz: file not found" in err and "\n" not in err
    for bad, message in ((["--lr", "-1"], "--lr"), (["--min-labels", "9"], "--min-labels")):
        with pytest.raises(UserError, match=message):
            _run(tiny_npz, tmp_path / "o", *bad)
    with pytest.raises(SystemExit):  # argparse's own check, also one line
        _run(tiny_npz, tmp_path / "o", "--hidden", "0")
    assert "argument --hidden: must be >= 1, got 0" in capsys.readouterr().err


def _greedy(params, I, K, k):
    """Hand-written greedy decoding of at most k labels with model.path_forward (no beam search)."""
    path = []
    while True:
        inputs = np.array([[K + 1] + path]).T  # (t + 1, 1)
        scores, _ = model.path_forward(params, I[None], inputs, np.ones(inputs.shape), "relu")
        s = scores[-1, 0].copy()
        s[path] = -np.inf  # no label twice
        if len(path) == k:
            s[:K] = -np.inf  # full path: only END is left
        best = int(np.argmax(s))
        if best == K:
            return path
        path.append(best)


def test_predict_decodes_with_beam_search(tiny_npz, tmp_path):
    _run(tiny_npz, tmp_path / "d", "--epochs", "2", "--gate-lr-scale", "1")  # 2 epochs: learns to emit labels
    state = checkpoint.load(tmp_path / "d" / "checkpoint.npz")
    cfg = dataclasses.replace(state["config"], beam=1, decode="path", min_labels=0)  # greedy, as trained
    rows = train_data.Rows(np.load(tiny_npz)["test_features"], norm=cfg.feature_norm)
    features = rows[:]  # as the model sees them (unit length)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)
    pred, scores = kinds.predict_sets(cfg, dev(state["params"]), rows)
    for n in range(len(features)):
        assert set(np.flatnonzero(pred[n])) == set(_greedy(state["params"], features[n], K, 3))
    assert 0 < pred.sum(1).mean() and pred.sum(1).max() <= 3 and scores.shape == pred.shape
    at_least, _ = kinds.predict_sets(dataclasses.replace(cfg, min_labels=3), dev(state["params"]), rows)
    assert (at_least.sum(1) == 3).all()  # footnote 1: exactly k here


def test_compare_keeps_the_finished_rows_when_a_model_fails(tiny_npz, tmp_path, monkeypatch, capsys):
    original = loop.fit

    def fit(cfg, data, out, resume=False):
        if cfg.model == "no-rnn":
            raise UserError("training diverged: loss nan (gradient norm nan) at epoch 1, step 2")
        return original(cfg, data, out, resume)

    monkeypatch.setattr(loop, "fit", fit)
    with pytest.raises(UserError, match="^no-rnn: training diverged"):
        _run(tiny_npz, tmp_path / "cmp", "--compare", "--epochs", "1")
    printed = capsys.readouterr().out
    table = printed[printed.index("test set, k = 3") :]
    for title in ("Softmax", "Binary cross-entropy", "CNN-RNN", "BCE at CNN-RNN's counts", "BCE >= 0.5"):
        assert title in table
    assert "No RNN" not in table and "L/img" in table


def test_validation_split_chooses_the_scored_epoch(tiny_npz, tmp_path):
    out = tmp_path / "v"
    _run(tiny_npz, out, "--epochs", "4", "--val-fraction", "0.2")
    rows = list(csv.DictReader((out / "log.csv").open()))
    scores = [float(r["val_score"]) for r in rows]
    chosen = int(np.argmax(scores)) + 1  # the first of ties
    record = json.loads((out / "metrics.json").read_text())
    assert record["run"]["scored_epoch"] == chosen == checkpoint.load(out / "best.npz")["epoch"]
    data = train_data.load_npz(str(tiny_npz))
    a, b = (selection.split_validation(data, 0.2, 5) for _ in range(2))
    np.testing.assert_array_equal(a.val_features.rows, b.val_features.rows)
    assert len(a.val_labels) == 32 and len(a.train_labels) == 128
    assert not set(a.val_features.rows) & set(a.train_features.rows)
    assert not np.array_equal(a.val_features.rows, selection.split_validation(data, 0.2, 6).val_features.rows)


def test_tune_decoding_picks_beam_and_min_labels_on_validation(tiny_npz, tmp_path):
    out = tmp_path / "t"
    _run(tiny_npz, out, "--epochs", "2", "--tune-decoding", "--gate-lr-scale", "1")
    decoding = json.loads((out / "metrics.json").read_text())["run"]["decoding"]
    assert decoding["beam"] in (3, 5) and 0 <= decoding["min_labels"] <= 3
    with pytest.raises(UserError, match="--tune-decoding: needs a validation split"):
        _run(tiny_npz, out, "--tune-decoding", "--val-fraction", "0")


def test_resume_refuses_a_tampered_learning_rate_back_off(tiny_npz, tmp_path):
    out = tmp_path / "run"
    _run(tiny_npz, out, "--epochs", "2")
    state = checkpoint.load(out / "checkpoint.npz")
    state["extra"]["lr_factor"], state["extra"]["halvings"] = 8.0, 1
    checkpoint.save(out / "checkpoint.npz", state)
    with pytest.raises(UserError, match="corrupt checkpoint metadata \\(learning-rate back-off") as err:
        _run(tiny_npz, out, "--epochs", "3", "--resume")
    assert "\n" not in str(err.value)


def test_seeds_run_every_seed_as_a_single_run_would(tiny_npz, tmp_path, capsys):
    assert _run(tiny_npz, tmp_path / "s", "--model", "bce", "--seeds", "0-1", "--table-only") == 0
    printed = capsys.readouterr().out
    assert printed.startswith("npz:tiny.npz: test set, percent") and "Mean ± sd over 2 seeds (0, 1)" in printed
    assert "outputs in" not in printed  # --table-only: the progress went to stderr
    saved = json.loads((tmp_path / "s" / "compare.json").read_text())
    assert _run(tiny_npz, tmp_path / "one", "--model", "bce", "--seed", "1") == 0
    single = json.loads((tmp_path / "one" / "metrics.json").read_text())["metrics"]
    assert {k: saved["per_seed"]["1"]["Binary cross-entropy"][k] for k in single} == single
    with pytest.raises(SystemExit):
        _run(tiny_npz, tmp_path / "bad", "--seeds", "3-1")
