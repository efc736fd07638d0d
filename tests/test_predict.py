"""``python -m minicnnrnn.predict`` on a tiny checkpoint and a tiny CNN built here."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, host
from PIL import Image

from minicnnrnn import predict
from minicnnrnn.cnn import preprocess, vgg
from minicnnrnn.core import backend
from minicnnrnn.paths import beam_search
from minicnnrnn.rnn import model
from minicnnrnn.training import checkpoint
from minicnnrnn.training.config import RunConfig

NAMES = ["cat", "dog", "sky", "tree"]
K, E, H = len(NAMES), 4, 8


def tiny_cnn(tmp_path):
    """A 2-conv VGG on 8x8 images whose fc6 (8 units) is the feature I."""
    meta = vgg.make_meta(config=[4, "M", 4, "M"], fc=(8,), num_classes=3, input_size=8, source="test")
    params = vgg.init_params(meta, np.random.default_rng(1))
    path = tmp_path / "cnn.npz"
    vgg.save(path, params, meta)
    return path, params, meta


def make_checkpoint(tmp_path, model_name="cnn-rnn", cnn=None, D=8):
    rng = np.random.default_rng(2)
    params = model.init_params(K, D, E, H, rng, "relu")
    for name in ("U_l", "U_I_x", "U_o_x"):
        params[name] *= 3.0  # peaked softmaxes: paths of 0 to 3 labels
    state = {
        "params": params,
        "config": RunConfig(model_name, K, D, E, H, "relu", cnn or {"weights": None, "layer": None}, beam=3),
        "label_names": NAMES,
        "label_order": np.arange(K),
        "opt": {},
        "epoch": 1,
        "rng": None,
    }
    path = tmp_path / "checkpoint.npz"
    checkpoint.save(path, state)
    return path, params


def write_images(tmp_path, n=4):
    rng = np.random.default_rng(3)
    paths = []
    for i in range(n):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (12 + 2 * i, 10, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def run_predict(args, capsys):
    code = predict.main([str(a) for a in args])
    return code, capsys.readouterr().out


def test_images_through_the_cnn_match_beam_search_on_its_features(tmp_path, capsys):
    cnn_path, cnn_params, meta = tiny_cnn(tmp_path)
    ckpt, params = make_checkpoint(tmp_path, cnn={"weights": str(cnn_path), "layer": "fc6"})
    images = write_images(tmp_path)
    code, out = run_predict(["--checkpoint", ckpt, "--json", *images], capsys)
    assert code == 0
    preds = json.loads(out)
    # The same pipeline by hand: load_image -> vgg.vgg_forward -> beam search.
    x = np.stack([preprocess.load_image(p, meta) for p in images])
    feats = vgg.vgg_forward(cnn_params, meta, x, outputs=("fc6",))[0]["fc6"]
    result = host(beam_search.beam_search(model.make_step(params, feats, "relu"), len(feats), beam_size=3))
    for i, pred in enumerate(preds):
        assert pred["image"] == images[i]
        labels = [NAMES[j] for j in result.paths[i, : result.lengths[i]]]
        assert pred["labels"] == labels
        assert pred["log_probability"] == pytest.approx(float(result.log_prob[i]), abs=1e-5)
        np.testing.assert_allclose(
            np.log(pred["probabilities"] + [pred["end_probability"]]).sum(), pred["log_probability"], atol=1e-5
        )
        assert set(pred["scores"]) == set(NAMES)
    assert len({tuple(pred["labels"]) for pred in preds}) >= 2  # the images get different answers


def test_text_output_one_line_per_image(tmp_path, capsys):
    cnn_path, _, _ = tiny_cnn(tmp_path)
    ckpt, _ = make_checkpoint(tmp_path, cnn={"weights": str(cnn_path), "layer": "fc6"})
    images = write_images(tmp_path, 2)
    code, out = run_predict(["--checkpoint", ckpt, "--beam", "2", "--min-labels", "2", *images], capsys)
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 2
    for line, image in zip(lines, images):
        assert line.startswith(image + ": ")
        assert "| END " in line and "| log P " in line
        assert sum(name in line.split("|")[0] for name in NAMES) >= 2  # min-labels 2


def test_features_and_image_list(tmp_path, capsys, monkeypatch):
    ckpt, params = make_checkpoint(tmp_path)
    feats = np.abs(np.random.default_rng(4).standard_normal((5, 8))).astype(np.float32)
    np.save(tmp_path / "features.npy", feats)
    (tmp_path / "images.txt").write_text("".join(f"a/{i}.jpg\n" for i in range(5)))
    code, out = run_predict(
        [
            "--checkpoint",
            ckpt,
            "--json",
            "--beam",
            "1",
            "--features",
            tmp_path / "features.npy",
            "--image-list",
            tmp_path / "images.txt",
        ],
        capsys,
    )
    preds = json.loads(out)
    result = host(beam_search.beam_search(model.make_step(params, feats, "relu"), len(feats), beam_size=1))
    assert [p["image"] for p in preds] == [f"a/{i}.jpg" for i in range(5)]
    for i, pred in enumerate(preds):
        assert pred["labels"] == [NAMES[j] for j in result.paths[i, : result.lengths[i]]]
    # An `extract` folder works too and picks up its images.txt; decoding in blocks changes nothing.
    monkeypatch.setattr(predict, "CHUNK", 2)
    code, out2 = run_predict(["--checkpoint", ckpt, "--json", "--beam", "1", "--features", tmp_path], capsys)
    again = json.loads(out2)
    assert [p["image"] for p in again] == [p["image"] for p in preds]
    assert [p["labels"] for p in again] == [p["labels"] for p in preds]
    np.testing.assert_allclose(
        [p["log_probability"] for p in again], [p["log_probability"] for p in preds], rtol=1e-5
    )  # float32 BLAS sums may round differently in other block sizes


def test_classifier_checkpoint_prints_top_k(tmp_path, capsys):
    from minicnnrnn.layers import classifier

    params = classifier.init_classifier(K, 6, E, np.random.default_rng(5))
    state = {
        "params": params,
        "config": RunConfig("bce", K, 6, E, H, "relu", {"weights": None}, k=2),
        "label_names": NAMES,
        "label_order": np.arange(K),
    }
    checkpoint.save(tmp_path / "c.npz", state)
    np.save(tmp_path / "f.npy", np.ones((2, 6), np.float32))
    code, out = run_predict(["--checkpoint", tmp_path / "c.npz", "--json", "--features", tmp_path / "f.npy"], capsys)
    preds = json.loads(out)
    assert all(len(p["labels"]) == 2 and p["probabilities"][0] >= p["probabilities"][1] for p in preds)


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "minicnnrnn.predict", "--quiet", *map(str, args)],  # stderr: warnings only
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_unreadable_image_is_skipped_with_a_warning_and_strict_stops(tmp_path):
    cnn_path, _, _ = tiny_cnn(tmp_path)
    ckpt, _ = make_checkpoint(tmp_path, cnn={"weights": str(cnn_path), "layer": "fc6"})
    good = write_images(tmp_path, 2)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    # like extract: the good images are predicted, the bad one is one warning line
    proc = run_cli("--checkpoint", ckpt, good[0], bad, good[1])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("warning: skipped")
    assert str(bad) in proc.stderr and "Traceback" not in proc.stderr
    assert [line.split(":")[0] for line in proc.stdout.splitlines()] == good
    # --strict stops at the first unreadable image, printing nothing
    proc = run_cli("--checkpoint", ckpt, good[0], bad, "--strict")
    assert proc.returncode == 2 and proc.stdout == "" and "--strict" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and str(bad) in proc.stderr
    # none readable: a non-zero exit
    proc = run_cli("--checkpoint", ckpt, bad)
    assert proc.returncode == 2 and proc.stdout == "" and "none of the 1 image" in proc.stderr


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--beam", "0"], "--beam"),
        (["--min-labels", "9"], "--min-labels"),
        (["--max-labels", "0"], "--max-labels"),
        (["--image-list", "x.txt"], "--image-list"),
        ([], "IMAGE"),
    ],
)
def test_bad_arguments_name_the_argument(tmp_path, capsys, extra, needle):
    from minicnnrnn.core.errors import UserError

    ckpt, _ = make_checkpoint(tmp_path)
    np.save(tmp_path / "f.npy", np.ones((2, 8), np.float32))
    features = ["--features", tmp_path / "f.npy"] if needle not in ("--image-list", "IMAGE") else []
    with pytest.raises(UserError, match=needle):
        predict.main([str(a) for a in ["--checkpoint", ckpt, *features, *extra]])


def test_feature_size_mismatch_and_features_only_checkpoint(tmp_path):
    from minicnnrnn.core.errors import UserError

    ckpt, _ = make_checkpoint(tmp_path)
    np.save(tmp_path / "f.npy", np.ones((2, 7), np.float32))
    with pytest.raises(UserError, match="D = 7"):
        predict.main(["--checkpoint", str(ckpt), "--features", str(tmp_path / "f.npy")])
    bad = np.ones((2, 8), np.float32)
    bad[1, 3] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(UserError, match="nan.npy: features hold NaN"):
        predict.main(["--checkpoint", str(ckpt), "--features", str(tmp_path / "nan.npy")])
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\xd0 not text\n")
    with pytest.raises(UserError, match="binary.txt: the image list is not UTF-8 text"):
        predict.main(
            [
                "--checkpoint",
                str(ckpt),
                "--features",
                str(tmp_path / "nan.npy"),
                "--image-list",
                str(tmp_path / "binary.txt"),
            ]
        )
    image = write_images(tmp_path, 1)[0]
    with pytest.raises(UserError, match="precomputed features"):
        predict.main(["--checkpoint", str(ckpt), image])
    with pytest.raises(UserError, match="missing.npz"):
        predict.main(["--checkpoint", str(tmp_path / "missing.npz"), image])


@pytest.mark.host_only  # checks the default backend, numpy
def test_help_and_backend_flag():
    proc = run_cli("--help")
    assert proc.returncode == 0 and "--backend" in proc.stdout and "--features" in proc.stdout
    assert backend.name() == "numpy"
