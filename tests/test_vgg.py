"""The VGG builder: shapes, gradients, torch as an oracle, train mode, and the weights file."""

import json

import numpy as np
import pytest
from conftest import cupy_available

from minicnnrnn import gradcheck
from minicnnrnn.cnn import vgg
from minicnnrnn.core import backend, fileio
from minicnnrnn.core.errors import UserError
from minicnnrnn.core.numgrad import TOLERANCE

TINY = vgg.make_meta(config=[8, 8, "M", 16, "M", 16, "M"], fc=[32, 24], num_classes=10, input_size=24)


def _tiny(rng, dtype=np.float32):
    params = vgg.init_params(TINY, rng, dtype)
    for key in params:
        if key.endswith("/b"):
            params[key] += (rng.standard_normal(params[key].shape) * 0.1).astype(dtype)
    images = rng.standard_normal((3, 24, 24, 3)).astype(dtype)
    return params, images


def _rel(a, b):
    a, b = backend.to_host(a), np.asarray(b)
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_vgg16_layers_and_parameter_count():
    meta = vgg.make_meta()
    names = [name for _, name, _ in vgg.layers(meta)]
    assert names[:3] == ["conv1_1", "conv1_2", "pool1"] and len(names) == 13 + 5 + 3
    assert names[-5:] == ["conv5_3", "pool5", "fc6", "fc7", "logits"]
    shapes = vgg.param_shapes(meta)
    assert shapes["fc6/W"] == (7 * 7 * 512, 4096) and shapes["conv3_3/W"] == (3, 3, 256, 256)
    assert sum(int(np.prod(s)) for s in shapes.values()) == 138_357_544  # torchvision's VGG16
    table = vgg.layer_table(meta)
    assert sum(row[2] for row in table) == 138_357_544
    assert 30.9e9 < sum(row[3] for row in table) < 31.0e9  # 15.47 G multiply-adds


def test_tiny_vgg_gradients_match_finite_differences():
    case = dict(gradcheck.all_cases())["tiny VGG end to end (vgg.vgg_backward, train mode)"]
    assert case(np.random.default_rng(0)) < TOLERANCE


def _torch_layers(torch, params, meta):
    """The same network from torch.nn modules, as (name, [modules]) in forward order."""
    nn, steps = torch.nn, []
    for kind, name, shape in vgg.layers(meta):
        W, b = params.get(f"{name}/W"), params.get(f"{name}/b")
        if kind == "conv":
            layer = nn.Conv2d(shape[2], shape[3], 3, padding=1)
            layer.weight.data = torch.tensor(W.transpose(3, 2, 0, 1).copy())  # HWIO -> OIHW
            steps.append((name, [layer, nn.ReLU()]))
        elif kind == "pool":
            steps.append((name, [nn.MaxPool2d(2, 2)]))
        else:
            layer, mods = nn.Linear(*shape), []
            if name == "fc6":  # our rows are in (H, W, C) order, torch flattens (C, H, W)
                side = int(round((shape[0] / meta["config"][-2]) ** 0.5))
                W = W.reshape(side, side, -1, shape[1]).transpose(2, 0, 1, 3).reshape(shape)
                mods.append(nn.Flatten())
            layer.weight.data = torch.tensor(W.T.copy())
            mods.append(layer)
            steps.append((name, mods + ([] if name == "logits" else [nn.ReLU()])))
        if b is not None:
            layer.bias.data = torch.tensor(b)
    return steps


def _torch_outputs(torch, params, meta, images):
    h, outs = torch.tensor(images.transpose(0, 3, 1, 2)), {}
    for name, mods in _torch_layers(torch, params, meta):
        for m in mods:
            h = m(h)
        outs[name] = h.permute(0, 2, 3, 1).numpy() if h.ndim == 4 else h.numpy()
    return outs


@pytest.mark.parametrize("method", ["auto", "im2col"])
def test_tiny_vgg_matches_torch(torch, rng, method):
    params, images = _tiny(rng)
    names = ("conv1_1", "conv1_2", "pool1", "conv2_1", "conv3_1", "pool3", "fc6", "fc7", "logits")
    with torch.no_grad():
        ref = _torch_outputs(torch, params, TINY, images)
    outs, cache = vgg.vgg_forward(
        backend.params_to_device(params), TINY, backend.to_device(images), names, method=method
    )
    assert cache is None
    for name in names:
        assert outs[name].shape == ref[name].shape, name
        assert outs[name].dtype == np.float32
        assert _rel(outs[name], ref[name]) < 1e-4, name


def test_tiny_vgg_backward_matches_torch(torch, rng):
    params, images = _tiny(rng)
    outs, cache = vgg.vgg_forward(
        backend.params_to_device(params), TINY, backend.to_device(images), ("logits",), train=True, dropout_p=0.0
    )
    G = rng.standard_normal(outs["logits"].shape).astype(np.float32)
    _, grads = vgg.vgg_backward(backend.to_device(G), cache)
    steps = _torch_layers(torch, params, TINY)
    h = torch.tensor(images.transpose(0, 3, 1, 2))
    for _, mods in steps:
        for m in mods:
            h = m(h)
    (h * torch.tensor(G)).sum().backward()
    assert sorted(grads) == sorted(params)
    for name, mods in steps:
        layer = [m for m in mods if hasattr(m, "weight")]
        if not layer:
            continue
        tW = layer[0].weight.grad.numpy()
        tW = tW.transpose(2, 3, 1, 0) if tW.ndim == 4 else tW.T
        if name == "fc6":  # back from torch's (C, H, W) row order to ours
            tW = tW.reshape(16, 3, 3, -1).transpose(1, 2, 0, 3).reshape(tW.shape)
        assert _rel(grads[f"{name}/W"], tW) < 1e-4, name
        assert _rel(grads[f"{name}/b"], layer[0].bias.grad.numpy()) < 1e-4, name


def test_train_mode_dropout_is_seeded_and_off_at_inference(rng):
    params, images = _tiny(rng)
    params, images = backend.params_to_device(params), backend.to_device(images)

    def logits(**kw):
        return backend.to_host(vgg.vgg_forward(params, TINY, images, ("logits",), **kw)[0]["logits"])

    a = logits(train=True, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a, logits(train=True, rng=np.random.default_rng(5)))
    assert not np.allclose(a, logits(train=True, rng=np.random.default_rng(6)))
    np.testing.assert_allclose(logits(train=True, dropout_p=0.0), logits(), rtol=1e-6)
    with pytest.raises(ValueError, match="rng"):
        logits(train=True)


def test_kernel_cache_is_filled_once_and_gives_the_same_outputs(rng):
    params, images = _tiny(rng)
    params, images = backend.params_to_device(params), backend.to_device(images)
    plain = backend.to_host(vgg.vgg_forward(params, TINY, images, ("logits",))[0]["logits"])
    cache = {}
    for _ in range(2):
        out = vgg.vgg_forward(params, TINY, images, ("logits",), kernel_cache=cache)[0]["logits"]
        np.testing.assert_array_equal(backend.to_host(out), plain)
    assert sorted(cache) == ["conv1_2", "conv2_1", "conv3_1"]  # conv1_1 has 3 inputs: im2col
    assert cache["conv2_1"].shape == (16, 8, 16)


def test_inference_in_chunks_of_images_gives_the_same_outputs(rng, monkeypatch):
    params, images = _tiny(rng)
    params, images = backend.params_to_device(params), backend.to_device(images)
    names = ("conv2_1", "pool3", "fc6", "logits")
    whole, _ = vgg.vgg_forward(params, TINY, images, names)
    monkeypatch.setattr(vgg, "CONV_CHUNK_BYTES", 1)  # one image at a time
    monkeypatch.setattr(vgg, "CONV_CHUNK_BYTES_GPU", 1)
    chunked, _ = vgg.vgg_forward(params, TINY, images, names)
    for name in names:
        # float32 tolerance: a BLAS may choose another kernel for a one-image product.
        np.testing.assert_allclose(backend.to_host(chunked[name]), backend.to_host(whole[name]), rtol=1e-5, atol=1e-6)
        assert chunked[name].shape[0] == 3


def test_inference_stops_at_the_last_requested_layer(rng):
    params, images = _tiny(rng)
    conv_only = {k: v for k, v in params.items() if k.startswith("conv")}  # no fc weights at all
    outs, cache = vgg.vgg_forward(backend.params_to_device(conv_only), TINY, backend.to_device(images), ("pool3",))
    assert list(outs) == ["pool3"] and outs["pool3"].shape == (3, 3, 3, 16) and cache is None


def test_conv_only_network_works_for_any_image_size(rng):
    meta = vgg.make_meta(config=[8, "M", 16, 16], fc=[], num_classes=None, input_size=16)
    assert [n for _, n, _ in vgg.layers(meta)] == ["conv1_1", "pool1", "conv2_1", "conv2_2"]
    params = backend.params_to_device(vgg.init_params(meta, rng))
    outs, _ = vgg.vgg_forward(params, meta, backend.to_device(np.ones((1, 10, 14, 3), np.float32)), ("conv2_2",))
    assert outs["conv2_2"].shape == (1, 5, 7, 16)


def test_forward_errors_are_one_line_user_errors(rng):
    params, images = _tiny(rng)
    params = backend.params_to_device(params)
    one, _ = vgg.vgg_forward(params, TINY, backend.to_device(images), "fc7")  # a single name is fine
    assert list(one) == ["fc7"]
    with pytest.raises(UserError, match="'fc9': no such layer"):
        vgg.vgg_forward(params, TINY, backend.to_device(images), ("fc9",))
    with pytest.raises(UserError, match="use 24x24 images"):
        vgg.vgg_forward(params, TINY, backend.to_device(images[:, :16, :16]), ("fc7",))
    with pytest.raises(UserError, match=r"expected shape \(N, S, S, 3\)"):
        vgg.vgg_forward(params, TINY, backend.to_device(images[..., :1]), ("conv1_1",))


def test_save_load_round_trip(tmp_path, rng):
    params, _ = _tiny(rng)
    path = tmp_path / "tiny.npz"
    vgg.save(path, backend.params_to_device(params), TINY)
    loaded, meta = vgg.load(path)
    assert meta == json.loads(json.dumps(TINY))
    assert sorted(loaded) == sorted(params)
    for key in params:
        np.testing.assert_array_equal(loaded[key], params[key])


def _write(path, params, meta):
    fileio.save_npz(path, meta=np.array(json.dumps(meta)), **params)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda p, m: p.pop("conv2_1/W"), r"missing array 'conv2_1/W'"),
        (lambda p, m: p.update({"fc7/b": np.zeros(5, np.float32)}), r"'fc7/b' has shape \(5,\).*needs \(24,\)"),
        (lambda p, m: p.update({"extra": np.zeros(1, np.float32)}), r"unexpected array 'extra'"),
        (lambda p, m: p.update({"fc7/b": np.zeros(24, np.int32)}), r"'fc7/b' has dtype int32"),
        (lambda p, m: m.update({"format": "caffe"}), r"meta 'format' is 'caffe'"),
        (lambda p, m: m.update({"config": [8, "X"]}), r"meta 'config' must be"),
        (lambda p, m: m.update({"fc": [0]}), r"meta 'fc' must be"),
        (lambda p, m: m["preprocess"].update({"channel_order": "GBR"}), r"channel_order"),
        (lambda p, m: m.update({"input_size": 4}), r"'input_size' must be an int of at least 8"),
    ],
)
def test_load_errors_name_the_file_and_key(tmp_path, rng, change, message):
    params, _ = _tiny(rng)
    meta = json.loads(json.dumps(TINY))
    change(params, meta)
    path = tmp_path / "bad.npz"
    _write(path, params, meta)
    with pytest.raises(UserError, match=message) as info:
        vgg.load(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_load_errors_for_missing_file_and_bad_meta(tmp_path, rng):
    with pytest.raises(UserError, match="file not found"):
        vgg.load(tmp_path / "nope.npz")
    params, _ = _tiny(rng)
    fileio.save_npz(tmp_path / "nometa.npz", **params)
    with pytest.raises(UserError, match="missing array.*meta"):
        vgg.load(tmp_path / "nometa.npz")
    fileio.save_npz(tmp_path / "badjson.npz", meta=np.array("{not json"), **params)
    with pytest.raises(UserError, match="not valid JSON"):
        vgg.load(tmp_path / "badjson.npz")


def test_save_refuses_params_that_do_not_match_meta(tmp_path, rng):
    params, _ = _tiny(rng)
    params.pop("logits/b")
    with pytest.raises(UserError, match="missing array 'logits/b'"):
        vgg.save(tmp_path / "x.npz", params, TINY)
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.skipif(not cupy_available(), reason="CuPy with a CUDA device is not available")
def test_cupy_matches_numpy(rng):
    params, images = _tiny(rng)
    names = ("conv1_2", "fc7", "logits")
    backend.use("numpy")
    ref, _ = vgg.vgg_forward(params, TINY, images, names)
    backend.use("cupy")
    outs, _ = vgg.vgg_forward(backend.params_to_device(params), TINY, backend.to_device(images), names)
    for name in names:
        assert _rel(outs[name], ref[name]) < 1e-5, name
