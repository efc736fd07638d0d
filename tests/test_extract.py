"""Feature extraction: rows match the CNN, unreadable images, resume, refusing mixed runs, datasets."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from conftest import cupy_available
from PIL import Image

from minicnnrnn import convert, datasets, extract
from minicnnrnn.cnn import backbones, preprocess, vgg
from minicnnrnn.core import backend
from minicnnrnn.core.errors import UserError
from minicnnrnn.datasets import base
from minicnnrnn.features import extraction

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture
def weights(tmp_path):
    """The tiny torch fixture converted: a VGG on 16x16 inputs with fc6/fc7 of 24."""
    path = tmp_path / "tiny.npz"
    vgg.save(path, *convert.convert(FIXTURES / "tiny_vgg_zip.pth"))
    return path


def make_images(folder, n, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng, paths = np.random.default_rng(seed), []
    for i in range(n):
        h, w = rng.integers(20, 60, size=2)
        path = folder / f"img{i:02d}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def direct_features(weights, paths, layer="fc7"):
    """The reference: preprocess each image and run vgg.vgg_forward on all at once."""
    params, meta = vgg.load(weights)
    x = np.stack([preprocess.load_image(p, meta) for p in paths])
    return vgg.vgg_forward(params, meta, x, outputs=(layer,))[0][layer].reshape(len(paths), -1)


def run(*args):
    return extract.main([str(a) for a in args])


def read_output(out):
    features = np.load(out / "features.npy")
    images = (out / "images.txt").read_text().splitlines()
    return features, images, json.loads((out / "meta.json").read_text())


def test_rows_match_the_cnn(tmp_path, weights):
    paths = make_images(tmp_path / "imgs", 5)
    out = tmp_path / "feats"
    assert run("--weights", weights, "--images", tmp_path / "imgs", "--out", out, "--batch-size", 2) == 0
    features, images, meta = read_output(out)
    assert images == paths and features.dtype == np.float32 and features.shape == (5, 24)
    np.testing.assert_allclose(
        features, direct_features(weights, paths), rtol=1e-4, atol=1e-5
    )  # float32: batch sizes differ
    assert meta["layer"] == "fc7" and meta["dim"] == 24 and meta["count"] == 5 and meta["skipped"] == 0
    assert meta["weights"] == str(weights) and meta["preprocess"]["resize"] == "crop"
    assert sorted(os.listdir(out)) == ["features.npy", "images.txt", "meta.json", "skipped.txt"]


def test_conv_layer_rows_are_flattened_hwc(tmp_path, weights):
    paths = make_images(tmp_path / "imgs", 3)
    run("--weights", weights, "--images", *paths, "--out", tmp_path / "f", "--layer", "conv2_2", "--resize", "warp")
    features, _, meta = read_output(tmp_path / "f")
    params, vmeta = vgg.load(weights)
    x = np.stack([preprocess.load_image(p, vmeta, resize="warp") for p in paths])
    maps = vgg.vgg_forward(params, vmeta, x, outputs=("conv2_2",))[0]["conv2_2"]  # (3, 8, 8, 16)
    assert features.shape == (3, 8 * 8 * 16) and meta["resize"] == "warp"
    np.testing.assert_allclose(
        features[1].reshape(8, 8, 16), maps[1], rtol=1e-4, atol=1e-5
    )  # float32: batch sizes differ
    with pytest.raises(UserError, match="'fc9' is not a layer of this network; choose from conv1_1"):
        run("--weights", weights, "--images", *paths, "--out", tmp_path / "g", "--layer", "fc9")
    with pytest.raises(UserError, match="convert it first"):
        run("--weights", FIXTURES / "tiny_vgg_zip.pth", "--images", *paths, "--out", tmp_path / "g")


def test_unreadable_images_are_skipped_and_listed(tmp_path, weights, capsys):
    paths = make_images(tmp_path / "imgs", 4)
    broken = tmp_path / "imgs" / "broken.jpg"
    broken.write_bytes(pathlib.Path(paths[0]).read_bytes()[:300])
    text = tmp_path / "imgs" / "zz_notes.png"
    text.write_text("hello")
    run("--weights", weights, "--images", tmp_path / "imgs", "--out", tmp_path / "f", "--batch-size", 3)
    features, images, meta = read_output(tmp_path / "f")
    assert images == paths and meta["count"] == 4 and meta["skipped"] == 2
    np.testing.assert_allclose(
        features, direct_features(weights, paths), rtol=1e-4, atol=1e-5
    )  # float32: batch sizes differ
    skipped = (tmp_path / "f" / "skipped.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in skipped] == [str(broken), str(text)]
    assert "truncated" in skipped[0] and "not an image" in skipped[1]
    assert f"warning: skipped {broken}" in capsys.readouterr().err


def test_strict_stops_at_the_first_unreadable_image(tmp_path, weights):
    paths = make_images(tmp_path / "imgs", 2)
    bad = tmp_path / "bad.png"
    bad.write_text("x")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "minicnnrnn.extract",
            "--weights",
            str(weights),
            "--images",
            paths[0],
            str(bad),
            paths[1],
            "--out",
            str(tmp_path / "f"),
            "--strict",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"{bad}: not an image" in errors[0] and "--strict" in errors[0]
    assert not (tmp_path / "f" / "features.npy").exists()


def test_a_run_where_no_image_was_readable_leaves_nothing_to_resume(tmp_path, weights):
    """The user names a missing file, gets the error, puts the file there and runs the same command again."""
    image = tmp_path / "late.png"
    out = tmp_path / "f"
    with pytest.raises(UserError, match=f"none of the 1 images could be read.*{image}: image file not found"):
        run("--weights", weights, "--images", image, "--out", out)
    assert not out.exists() or os.listdir(out) == []  # no partial rows or progress record left to resume from
    make_images(tmp_path / "imgs", 1)
    os.rename(tmp_path / "imgs" / "img00.jpg", image)
    assert run("--weights", weights, "--images", image, "--out", out) == 0
    assert read_output(out)[2]["count"] == 1


def test_bad_out_folder_and_weights_file_are_one_line_errors(tmp_path, weights):
    paths = make_images(tmp_path / "imgs", 1)
    with pytest.raises(UserError, match=f"--out {paths[0]}: cannot create the output folder"):
        run("--weights", weights, "--images", *paths, "--out", paths[0])  # --out is an existing file
    text = tmp_path / "notes.txt"
    text.write_text("not weights")
    with pytest.raises(UserError, match=f"--weights {text}: not a .npz weights file"):
        run("--weights", text, "--images", *paths, "--out", tmp_path / "f")
    assert not (tmp_path / "f").exists()


def test_an_interrupted_run_resumes_without_redoing_rows(tmp_path, weights, monkeypatch):
    paths = make_images(tmp_path / "imgs", 7)
    out, calls = tmp_path / "f", []
    real_forward = vgg.vgg_forward

    def counting_forward(*args, **kwargs):
        calls.append(len(args[2]))
        if interrupt_at and len(calls) == interrupt_at:
            raise KeyboardInterrupt
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(backbones, "compute", counting_forward)  # under backbones.feature_rows
    monkeypatch.setattr(extraction, "SAVE_SECONDS", 0.0)  # progress saved after every batch
    interrupt_at = 3
    with pytest.raises(KeyboardInterrupt):
        run("--weights", weights, "--images", *paths, "--out", out, "--batch-size", 2)
    progress = json.loads((out / "progress.json").read_text())
    assert progress["done"] == 4 and progress["rows"] == 4 and not (out / "features.npy").exists()
    calls.clear()
    interrupt_at = None
    run("--weights", weights, "--images", *paths, "--out", out, "--batch-size", 2)
    assert calls == [2, 1]  # only images 5-7 were computed again
    features, images, _ = read_output(out)
    assert images == paths and not (out / "progress.json").exists()
    np.testing.assert_allclose(
        features, direct_features(weights, paths), rtol=1e-4, atol=1e-5
    )  # float32: batch sizes differ


def test_a_different_run_in_the_same_folder_is_refused(tmp_path, weights, capsys):
    paths = make_images(tmp_path / "imgs", 3)
    out = tmp_path / "f"
    run("--weights", weights, "--images", *paths, "--out", out)
    run("--weights", weights, "--images", *paths, "--out", out)
    assert "already complete" in capsys.readouterr().out
    with pytest.raises(UserError, match="different layer.*--overwrite"):
        run("--weights", weights, "--images", *paths, "--out", out, "--layer", "fc6")
    with pytest.raises(UserError, match="different image list"):
        run("--weights", weights, "--images", *paths[:2], "--out", out)
    run("--weights", weights, "--images", *paths[:2], "--out", out, "--layer", "fc6", "--overwrite")
    features, images, meta = read_output(out)
    assert features.shape == (2, 24) and images == paths[:2] and meta["layer"] == "fc6"
    (out / "meta.json").write_text("{broken")
    with pytest.raises(UserError, match="meta.json: unreadable.*--overwrite"):
        run("--weights", weights, "--images", *paths[:2], "--out", out, "--layer", "fc6")


def test_image_list_paths_are_relative_to_the_list(tmp_path, weights):
    paths = make_images(tmp_path / "data" / "imgs", 3)
    listing = tmp_path / "data" / "list.txt"
    listing.write_text("# my images\nimgs/img02.jpg\n\nimgs/img00.jpg\n" + paths[1] + "\n")
    run("--weights", weights, "--image-list", listing, "--out", tmp_path / "f")
    _, images, meta = read_output(tmp_path / "f")
    assert images == [paths[2], paths[0], paths[1]] and meta["source"]["image_list"] == str(listing)


def test_dataset_extracts_every_split_once(tmp_path, weights, monkeypatch):
    paths = make_images(tmp_path / "imgs", 4)
    labels = np.zeros((2, 3), np.uint8)
    fake = base.MultiLabelDataset(
        "fake", ["a", "b", "c"], {"train": base.Split(paths[:2], labels), "test": base.Split(paths[2:], labels)}
    )
    monkeypatch.setattr(datasets, "load", lambda name, root: fake)
    run("--weights", weights, "--dataset", "voc2007", "--root", tmp_path, "--out", tmp_path / "f")
    _, images, meta = read_output(tmp_path / "f")
    assert images == paths and meta["source"]["splits"] == {"train": 2, "test": 2}
    with pytest.raises(UserError, match="--root"):
        run("--weights", weights, "--dataset", "voc2007", "--out", tmp_path / "g")


def test_real_coco_images(tmp_path, weights, shared_data):
    root = shared_data / "coco_tiny"
    run("--weights", weights, "--dataset", "coco2014", "--root", root, "--out", tmp_path / "f", "--batch-size", 64)
    features, images, meta = read_output(tmp_path / "f")
    assert len(images) == meta["count"] == features.shape[0] >= 100 and meta["skipped"] == 0
    assert all(os.path.isabs(p) and os.path.exists(p) for p in images)
    np.testing.assert_allclose(
        features[:3], direct_features(weights, images[:3]), rtol=1e-4, atol=1e-5
    )  # float32: batch sizes differ


def test_builtin_cnn_is_the_default(tmp_path):
    from minicnnrnn.tinyscenes import features

    if not os.path.exists(features.WEIGHTS_PATH):
        pytest.skip(f"built-in CNN weights not shipped yet ({features.WEIGHTS_PATH})")
    params, meta = features.load_builtin_cnn()
    paths = make_images(tmp_path / "imgs", 2)
    run("--images", *paths, "--out", tmp_path / "f")
    rows, _, record = read_output(tmp_path / "f")
    assert record["weights"] == "builtin" and record["input_size"] == meta["input_size"]
    x = np.stack([preprocess.load_image(p, meta) for p in paths])
    want = vgg.vgg_forward(params, meta, x, outputs=("fc7",))[0]["fc7"]
    np.testing.assert_allclose(rows, want, rtol=1e-4, atol=1e-5)  # float32: batch sizes differ


@pytest.mark.skipif(not cupy_available(), reason="CuPy with a CUDA device is not available")
def test_cupy_backend_gives_the_same_rows(tmp_path, weights):
    paths = make_images(tmp_path / "imgs", 3)
    run("--weights", weights, "--images", *paths, "--out", tmp_path / "cpu")
    run("--weights", weights, "--images", *paths, "--out", tmp_path / "gpu", "--backend", "cupy")
    backend.use("numpy")
    np.testing.assert_allclose(read_output(tmp_path / "gpu")[0], read_output(tmp_path / "cpu")[0], rtol=1e-4, atol=1e-5)
