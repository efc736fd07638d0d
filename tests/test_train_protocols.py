"""train on the real benchmarks' layouts: each protocol's evaluation (Tables 1-4), the feature
normalisation that predict must repeat, stability on large features, and bad input."""

import csv
import dataclasses
import json
import os

import numpy as np
import pytest
from conftest import dev

from minicnnrnn import predict, train
from minicnnrnn.core import cli
from minicnnrnn.core.errors import UserError
from minicnnrnn.datasets import voc2007
from minicnnrnn.evaluation import metrics, protocols
from minicnnrnn.training import checkpoint, config, kinds
from minicnnrnn.training import data as train_data

TINY = ["--epochs", "2", "--embed", "8", "--hidden", "16", "--batch-size", "16"]


def _write_voc(root, ids, values):
    """ImageSets/Main split files of a VOC 2007 tree: values[split] (N, 20) in {1, -1, 0}."""
    main = root / "VOC2007" / "ImageSets" / "Main"
    main.mkdir(parents=True)
    for split, split_ids in ids.items():
        (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in split_ids))
        for c, name in enumerate(voc2007.CLASSES):
            (main / f"{name}_{split}.txt").write_text(
                "".join(f"{i} {v}\n" for i, v in zip(split_ids, values[split][:, c]))
            )


@pytest.fixture
def voc(tmp_path):
    """A VOC 2007 tree (60 trainval, 40 test images, many "difficult" entries) and an extract
    folder whose features carry the labels (so the model learns something)."""
    rng = np.random.default_rng(2)
    ids = {"trainval": [f"{i:06d}" for i in range(60)], "test": [f"{i:06d}" for i in range(60, 100)]}
    values = {s: rng.choice(np.array([-1, -1, -1, -1, 1, 0], np.int8), size=(len(v), 20)) for s, v in ids.items()}
    _write_voc(tmp_path / "voc", ids, values)
    jpeg = tmp_path / "voc" / "VOC2007" / "JPEGImages"
    all_ids = ids["trainval"] + ids["test"]
    present = np.concatenate([values["trainval"], values["test"]]) >= 0  # difficult looks like present
    W = np.abs(rng.standard_normal((20, 24)))
    feats = np.maximum(present @ W + 0.5 * rng.standard_normal((len(all_ids), 24)), 0).astype(np.float32)
    folder = tmp_path / "feats"
    folder.mkdir()
    np.save(folder / "features.npy", feats)
    (folder / "images.txt").write_text("".join(f"{jpeg / (i + '.jpg')}\n" for i in all_ids))
    (folder / "meta.json").write_text(json.dumps({"weights": "vgg16.npz", "layer": "fc7"}))
    return {
        "root": tmp_path / "voc",
        "features": folder,
        "values": values,
        "args": ["--dataset", "voc2007", "--root", str(tmp_path / "voc"), "--features", str(folder)],
    }


def test_real_dataset_rows_are_matched_by_image_path(tmp_path):
    rng = np.random.default_rng(2)
    ids = {"trainval": [f"{i:06d}" for i in range(40)], "test": [f"{i:06d}" for i in range(40, 60)]}
    values = {s: rng.choice(np.array([-1, -1, -1, 1, 0], np.int8), size=(len(v), 20)) for s, v in ids.items()}
    values["trainval"][:, 14] = 1
    _write_voc(tmp_path / "voc", ids, values)
    jpeg = tmp_path / "voc" / "VOC2007" / "JPEGImages"
    all_ids = ids["trainval"] + ids["test"]
    shuffled = rng.permutation(len(all_ids))
    feats = np.zeros((len(all_ids), 3), np.float32)
    feats[:, 0] = [int(all_ids[j]) for j in shuffled]  # row r holds the features of image all_ids[shuffled[r]]
    folder = tmp_path / "feats"
    folder.mkdir()
    np.save(folder / "features.npy", feats)
    (folder / "images.txt").write_text("".join(f"{jpeg / (all_ids[j] + '.jpg')}\n" for j in shuffled))
    (folder / "meta.json").write_text(json.dumps({"weights": "vgg16.npz", "layer": "fc7"}))
    data = train_data.load(
        train.make_parser().parse_args(
            ["--dataset", "voc2007", "--root", str(tmp_path / "voc"), "--features", str(folder)]
        )
    )
    assert data.cnn == {"weights": "vgg16.npz", "layer": "fc7"}
    np.testing.assert_array_equal(data.train_features[np.arange(40)][:, 0], np.arange(40))
    np.testing.assert_array_equal(data.test_features[np.arange(20)][:, 0], np.arange(40, 60))
    np.testing.assert_array_equal(data.train_labels, values["trainval"] == 1)
    np.testing.assert_array_equal(data.test_ignore, values["test"] == 0)
    # an extract folder that does not cover the dataset is refused
    (folder / "images.txt").write_text("".join(f"/elsewhere/{i}.jpg\n" for i in range(len(all_ids))))
    with pytest.raises(UserError, match="no train image of voc2007"):
        train_data.load(
            train.make_parser().parse_args(
                ["--dataset", "voc2007", "--root", str(tmp_path / "voc"), "--features", str(folder)]
            )
        )
    os.remove(folder / "meta.json")
    with pytest.raises(UserError, match="meta.json: not found"):
        train_data.load(
            train.make_parser().parse_args(
                ["--dataset", "voc2007", "--root", str(tmp_path / "voc"), "--features", str(folder)]
            )
        )


def _load_run(out, voc_args):
    """(cfg, host params, the run's normalised data) of a finished run."""
    state = checkpoint.load(out / "best.npz")  # the epoch chosen on validation is the one scored
    data = train_data.load(train.make_parser().parse_args(voc_args))
    return state["config"], state["params"], data.with_norm(state["config"].feature_norm)


def test_voc2007_uses_the_devkit_protocol_and_prints_table_4(voc, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main([*voc["args"], *TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    cfg, params, data = _load_run(out, voc["args"])
    assert (cfg.ap_mode, cfg.k, cfg.min_labels) == ("voc07", 3, 0)
    # metrics.json is the 11-point AP with "difficult" ignored, recomputed here from the predictions.
    pred, scores = kinds.predict_sets(cfg, dev(params), data.test_features)
    ignore = voc["values"]["test"] == 0
    truth = voc["values"]["test"] == 1
    expected, ap = metrics.evaluate_with_ap(pred, scores, truth, ignore, ap_mode="voc07")
    saved = json.loads((out / "metrics.json").read_text())["metrics"]
    assert list(saved) == list(metrics.METRIC_KEYS)
    assert saved == pytest.approx(expected)
    assert saved["mAP"] != pytest.approx(metrics.evaluate(pred, scores, truth, ignore, ap_mode="sklearn")["mAP"])
    assert saved["mAP"] != pytest.approx(metrics.evaluate(pred, scores, truth, None, ap_mode="voc07")["mAP"])
    per_class = json.loads((out / "per_class_AP.json").read_text())
    assert per_class["ap_mode"] == "voc07" and list(per_class["AP"]) == voc2007.CLASSES
    np.testing.assert_allclose(list(per_class["AP"].values()), ap)
    # Table 4: 20 class columns + mAP, our row and the paper's rows.
    lines = printed.splitlines()
    title = lines.index(protocols.protocol_for("voc2007")["title"])
    assert lines[title + 1].split() == ["Method"] + protocols.VOC_SHORT_NAMES + ["mAP"]
    ours = next(line for line in lines[title:] if line.startswith("CNN-RNN "))
    assert [float(x) for x in ours.split()[1:]] == pytest.approx(list(ap) + [saved["mAP"]], abs=0.051)
    assert any(line.startswith("CNN-RNN (paper)") and line.split()[-1] == "84.0" for line in lines)


def test_explicit_flags_win_over_the_protocol(voc, tmp_path, capsys):
    out = tmp_path / "run"
    train.main([*voc["args"], *TINY, "--out", str(out), "--ap-mode", "sklearn", "--k", "2", "--min-labels", "1"])
    assert "not directly comparable" in capsys.readouterr().out
    cfg, params, data = _load_run(out, voc["args"])
    assert (cfg.ap_mode, cfg.k, cfg.min_labels) == ("sklearn", 2, 1)
    pred, scores = kinds.predict_sets(cfg, dev(params), data.test_features)
    assert set(pred.sum(1)) <= {1, 2}
    expected = metrics.evaluate(pred, scores, voc["values"]["test"] == 1, voc["values"]["test"] == 0, "sklearn")
    assert json.loads((out / "metrics.json").read_text())["metrics"] == pytest.approx(expected)


def _stub_data(name, K=12):
    rows = train_data.Rows(np.ones((4, 3), np.float32))
    return train_data.TrainingData(
        name,
        [f"l{i}" for i in range(K)],
        rows,
        np.eye(4, K, dtype=np.uint8),
        rows,
        np.eye(4, K, dtype=np.uint8),
        cnn={},
    )


@pytest.mark.parametrize(
    "name, k, min_labels, ap_mode",
    [
        ("builtin", 3, 0, "sklearn"),
        ("npz:x.npz", 3, 0, "sklearn"),
        ("coco2014", 3, 0, "sklearn"),
        ("nuswide81", 3, 3, "sklearn"),
        ("nuswide1k", 10, 10, "sklearn"),
        ("voc2007", 3, 0, "voc07"),
    ],
)
def test_protocol_defaults_per_dataset(name, k, min_labels, ap_mode):
    args = train.make_parser().parse_args([])
    cfg = config.from_args(args, _stub_data(name), {"mode": "l2"})
    assert (cfg.k, cfg.min_labels, cfg.ap_mode) == (k, min_labels, ap_mode)
    args = train.make_parser().parse_args(["--k", "5"])
    cfg = config.from_args(args, _stub_data(name), {"mode": "l2"})
    assert cfg.k == 5 and cfg.min_labels == min(min_labels, 5)  # footnote 1 follows a given k


def test_coco_results_print_as_table_3_beside_the_paper():
    result = {
        "metrics": dict(zip(metrics.METRIC_KEYS, [61.0, 50.0, 55.0, 70.0, 60.0, 64.6, 58.0, 52.0])),
        "per_class_ap": [],
    }
    cfg = config.RunConfig("cnn-rnn", 12, 3, 8, 16, "relu", None, k=3, min_labels=0, ap_mode="sklearn")
    text = train.results_table(_stub_data("coco2014"), cfg, {"cnn-rnn": result, "bce": result})
    lines = text.splitlines()
    assert lines[0] == "Table 3. MS-COCO, k = 3" and lines[1].split()[1:] == list(metrics.METRIC_KEYS)
    assert lines[3].split() == ["CNN-RNN", "61.0", "50.0", "55.0", "70.0", "60.0", "64.6", "58.0", "52.0"]
    assert any(line.startswith("CNN-RNN (paper)") and "67.8" in line for line in lines)
    assert "note:" not in text
    builtin = train.results_table(_stub_data("builtin"), cfg, {"cnn-rnn": result})
    assert builtin.splitlines()[0] == "builtin: test set, k = 3, one seed (0) (percent)" and "paper" not in builtin


# ---------------------------------------------------------------------------
# Feature normalisation and stability on large features
# ---------------------------------------------------------------------------


def test_feature_norm_modes():
    feats = np.array([[3.0, 4.0], [0.0, 0.0], [6.0, 8.0]], np.float32)
    rows = train_data.Rows(feats)
    l2 = train_data.fit_feature_norm("l2", rows)
    np.testing.assert_allclose(train_data.normalise(feats, l2), [[0.6, 0.8], [0, 0], [0.6, 0.8]])
    scale = train_data.fit_feature_norm("scale", rows)
    assert scale == {"mode": "scale", "scale": pytest.approx(5.0)}  # mean of the norms 5, 0, 10
    np.testing.assert_allclose(train_data.Rows(feats, norm=scale)[np.arange(3)], feats / 5.0)
    assert train_data.normalise(feats, None).tolist() == feats.tolist()  # old checkpoints: none
    with pytest.raises(UserError, match="--feature-norm scale: the training features are all zero"):
        train_data.fit_feature_norm("scale", train_data.Rows(np.zeros((2, 2), np.float32)))


def _large_npz(path, rng, n_train=320, n_test=64, D=1024, K=10, magnitude=10.0):
    """Features like a big CNN's: ReLU outputs of size ~10 in D = 1024 dimensions (L1 norm ~4000)."""
    W = np.abs(rng.standard_normal((K, D)))

    def split(n):
        y = (rng.random((n, K)) < 0.3).astype(np.uint8)
        y[y.sum(1) == 0, 0] = 1
        f = magnitude * np.maximum(rng.standard_normal((n, D)) + 0.5 * y @ W / np.sqrt(K), 0)
        return f.astype(np.float32), y

    (trf, trl), (tef, tel) = split(n_train), split(n_test)
    np.savez(
        path,
        train_features=trf,
        train_labels=trl,
        test_features=tef,
        test_labels=tel,
        label_names=np.array([f"label{i}" for i in range(K)]),
    )
    return tef


def test_large_features_train_stably(tmp_path):
    npz = tmp_path / "large.npz"
    _large_npz(npz, np.random.default_rng(5))
    out = tmp_path / "run"
    # The paper's H = 512: without --feature-norm and the slower U_r this run diverged (NaN
    # at epoch 1) or, with normalised features only, had a loss spike at epoch 2.
    train.main(
        [
            "--dataset",
            f"npz:{npz}",
            "--out",
            str(out),
            "--epochs",
            "5",
            "--embed",
            "16",
            "--hidden",
            "512",
            "--batch-size",
            "32",
        ]
    )
    losses = [float(r["loss"]) for r in csv.DictReader((out / "log.csv").open())]
    assert all(np.isfinite(losses))
    assert all(b < a for a, b in zip(losses, losses[1:]))  # every epoch better, no spike
    assert losses[-1] < 0.9 * losses[0]


@pytest.mark.parametrize("norm", ["l2", "scale", "none"])
def test_predict_applies_the_training_normalisation(tmp_path, capsys, norm):
    npz = tmp_path / "large.npz"
    test_features = _large_npz(npz, np.random.default_rng(6), n_train=96, n_test=24, D=64)
    out = tmp_path / "run"
    # all 96 images: two tiny epochs must already emit labels
    train.main(["--dataset", f"npz:{npz}", "--out", str(out), *TINY, "--feature-norm", norm, "--val-fraction", "0"])
    state = checkpoint.load(out / "checkpoint.npz")
    assert state["config"].feature_norm["mode"] == norm
    np.save(tmp_path / "test.npy", test_features)
    capsys.readouterr()
    predict.main(["--checkpoint", str(out / "checkpoint.npz"), "--features", str(tmp_path / "test.npy"), "--json"])
    printed = [set(p["labels"]) for p in json.loads(capsys.readouterr().out)]
    cfg = dataclasses.replace(state["config"], k=state["config"].K)  # predict's default: up to K labels
    rows = train_data.Rows(test_features, norm=state["config"].feature_norm)
    pred, _ = kinds.predict_sets(cfg, dev(state["params"]), rows)
    assert printed == [{state["label_names"][j] for j in np.flatnonzero(row)} for row in pred]
    assert len({frozenset(p) for p in printed}) >= 2  # not one answer for all


# ---------------------------------------------------------------------------
# Bad input: one line naming the thing, exit status 2, nothing overwritten
# ---------------------------------------------------------------------------


def _fails(main, argv, capsys):
    """Run a command through cli.run; return its one-line error (exit status must be 2)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        cli.run(main, [str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err.startswith("error: ") and "\n" not in err, err
    return err


def test_train_bad_input(voc, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--dataset", "npz:/nonexistent.npz"], "/nonexistent.npz: file not found"),
        (["--dataset", "voc2007"], "--dataset voc2007: needs --root"),
        (["--dataset", "voc2007", "--root", voc["root"], "--features", empty], f"{empty}/features.npy: not found"),
        (["--features", empty], "--root/--features: only used with a real dataset"),
        (["--epochs", "-1"], "argument --epochs: must be >= 0, got -1"),
        (["--lr", "nan"], "--lr: must be a positive finite number"),
        (["--resume", "--out", empty, *voc["args"]], f"{empty}/checkpoint.npz: no checkpoint to resume from"),
    ]
    for argv, message in cases:
        assert message in _fails(train.main, argv, capsys)
    (empty / "features.npy").write_text("not a numpy file")
    (empty / "images.txt").write_text("a.jpg\n")
    (empty / "meta.json").write_text("{}")
    assert "unreadable features folder" in _fails(
        train.main, ["--dataset", "voc2007", "--root", voc["root"], "--features", empty], capsys
    )


def test_resume_from_an_incompatible_or_corrupt_checkpoint_changes_nothing(voc, tmp_path, capsys):
    out = tmp_path / "run"
    train.main([*voc["args"], *TINY, "--out", str(out)])
    before = (out / "checkpoint.npz").read_bytes()
    message = _fails(train.main, [*voc["args"], *TINY, "--out", out, "--hidden", "32", "--resume"], capsys)
    assert "checkpoint has H = 16 but this run has H = 32" in message
    message = _fails(train.main, [*voc["args"], *TINY, "--out", out, "--feature-norm", "none", "--resume"], capsys)
    assert "checkpoint has feature_norm" in message
    assert (out / "checkpoint.npz").read_bytes() == before
    (out / "checkpoint.npz").write_text("garbage")
    assert "checkpoint.npz: not a" in _fails(train.main, [*voc["args"], *TINY, "--out", out, "--resume"], capsys)
    assert (out / "checkpoint.npz").read_text() == "garbage"


def test_predict_bad_input(voc, tmp_path, capsys):
    out = tmp_path / "run"
    train.main([*voc["args"], *TINY, "--out", str(out)])
    ckpt = out / "checkpoint.npz"
    text = tmp_path / "notes.jpg"
    text.write_text("just text")
    cases = [
        (["--checkpoint", tmp_path / "none.npz", text], "none.npz: file not found"),
        (["--checkpoint", text, text], "notes.jpg: not a"),
        (["--checkpoint", ckpt, "--features", tmp_path / "missing.npy"], "missing.npy: features file not found"),
    ]
    for argv, message in cases:
        assert message in _fails(predict.main, argv, capsys)
    # A VOC model reads images with the VGG16 it was trained on; a missing weights file is named.
    assert "vgg16.npz" in _fails(predict.main, ["--checkpoint", ckpt, text], capsys)
