"""Converting torchvision VGG state_dicts: config inference, layout changes, errors, and agreement
with torch's own forward pass (conversion always runs in a process where torch cannot be imported)."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from minicnnrnn import convert
from minicnnrnn.cnn import vgg
from minicnnrnn.core.errors import UserError
from minicnnrnn.weights import torch_pickle

# Converters and file formats are numpy-only by nature: --device strict runs them on NumPy.
pytestmark = pytest.mark.host_only

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
sys.path.insert(0, str(FIXTURES))
from make_tiny_vgg import TINY, torch_outputs, torch_vgg  # noqa: E402


def relative_error(ours, ref):
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def convert_without_torch(tmp_path, src, dst):
    """Run `python -m minicnnrnn.convert src dst` where `import torch` fails."""
    blocker = tmp_path / "no_torch" / "torch"
    blocker.mkdir(parents=True, exist_ok=True)
    (blocker / "__init__.py").write_text('raise ImportError("torch must not be imported by the converter")\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker.parent), str(REPO)]))
    proc = subprocess.run(
        [sys.executable, "-m", "minicnnrnn.convert", str(src), str(dst)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    return proc


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_tiny_fixture_matches_torch_outputs(tmp_path, layout):
    """The committed fixture: torch's outputs for a fixed input were stored when it was made."""
    dst = tmp_path / "tiny.npz"
    proc = convert_without_torch(tmp_path, FIXTURES / f"tiny_vgg_{layout}.pth", dst)
    assert proc.returncode == 0, proc.stderr
    assert f"({layout} format)" in proc.stdout
    params, meta = vgg.load(dst)
    assert meta["config"] == TINY["config"] and meta["fc"] == TINY["fc"]
    assert meta["num_classes"] == TINY["num_classes"] and meta["input_size"] == TINY["input_size"]
    assert meta["preprocess"] == convert.TORCHVISION_PREPROCESS
    expected = np.load(FIXTURES / "tiny_vgg_expected.npz")
    names = ("conv2_2", "pool2", "fc6", "fc7", "logits")
    outs, _ = vgg.vgg_forward(params, meta, expected["x"], outputs=names)
    for name in names:
        assert relative_error(outs[name], expected[name]) <= 1e-4, name


def test_layout_changes():
    """OIHW -> HWIO kernels; (out, in) -> (in, out); first fc rows from (C, H, W) to (H, W, C) order."""
    state = torch_pickle.load(FIXTURES / "tiny_vgg_zip.pth")
    params, _ = convert.from_state_dict(dict(state), "tiny")
    np.testing.assert_array_equal(params["conv2_1/W"], state["features.3.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params["fc7/W"], state["classifier.3.weight"].T)
    W = state["classifier.0.weight"]  # (24, 16 * 4 * 4), columns in (c, h, w) order
    c, h, w = 5, 2, 3
    np.testing.assert_array_equal(params["fc6/W"][(h * 4 + w) * 16 + c], W[:, c * 16 + h * 4 + w])


def _synthetic_state(config, batch_norm=False):
    """A conv-only torchvision-style state_dict of zeros (enough to infer the config)."""
    state, i, c_in = {}, 0, 3
    for v in config:
        if v == "M":
            i += 1
            continue
        state[f"features.{i}.weight"] = np.zeros((v, c_in, 3, 3), np.float32)
        state[f"features.{i}.bias"] = np.zeros(v, np.float32)
        if batch_norm:
            for key, value in [("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)]:
                state[f"features.{i + 1}.{key}"] = np.full(v, value, np.float32)
            state[f"features.{i + 1}.num_batches_tracked"] = np.array(0)
        i, c_in = i + (3 if batch_norm else 2), v
    return state


@pytest.mark.parametrize("name", list(convert.VGG_CONFIGS))
@pytest.mark.parametrize("batch_norm", [False, True], ids=["plain", "bn"])
def test_config_is_inferred_from_the_conv_layers(name, batch_norm):
    params, meta = convert.from_state_dict(_synthetic_state(convert.VGG_CONFIGS[name], batch_norm), name)
    assert meta["config"] == convert.VGG_CONFIGS[name]
    assert meta["fc"] == [] and meta["num_classes"] is None  # conv-only file: no fc layers
    assert len(params) == 2 * sum(1 for c in meta["config"] if c != "M")


def test_state_dict_inside_a_checkpoint_and_dataparallel_prefix():
    state = torch_pickle.load(FIXTURES / "tiny_vgg_zip.pth")
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}
    a, _ = convert.from_state_dict(wrapped, "ckpt")
    b, _ = convert.from_state_dict(dict(state), "plain")
    assert all(np.array_equal(a[k], b[k]) for k in b)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda s: s.pop("features.0.bias"), "missing key 'features.0.bias'"),
        (lambda s: s.pop("classifier.3.weight"), "unexpected key 'classifier.3.bias'"),
        (
            lambda s: s.update({"features.0.weight": np.zeros((8, 3, 5, 5), np.float32)}),
            r"expected \(C_out, C_in, 3, 3\)",
        ),
        (lambda s: s.update({"features.3.weight": np.zeros((16, 4, 3, 3), np.float32)}), "4 input channels"),
        (lambda s: s.update({"classifier.0.weight": np.zeros((24, 100), np.float32)}), "100 inputs"),
        (lambda s: s.update({"classifier.6.bias": np.zeros(3, np.float32)}), "classifier.6.bias' has shape"),
        (lambda s: [s.pop(k) for k in list(s) if k.startswith("features")], "not a torchvision VGG"),
    ],
)
def test_bad_state_dicts_give_one_line_errors(change, message):
    state = dict(torch_pickle.load(FIXTURES / "tiny_vgg_zip.pth"))
    change(state)
    with pytest.raises(UserError, match=message) as info:
        convert.from_state_dict(state, "bad.pth")
    assert "\n" not in str(info.value) and str(info.value).startswith("bad.pth: ")


def test_command_errors_are_one_line_with_exit_status_2(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not weights")
    cut = tmp_path / "cut.pth"
    cut.write_bytes((FIXTURES / "tiny_vgg_legacy.pth").read_bytes()[:20000])
    cut_zip = tmp_path / "cut_zip.pth"
    cut_zip.write_bytes((FIXTURES / "tiny_vgg_zip.pth").read_bytes()[:20000])
    good = str(FIXTURES / "tiny_vgg_zip.pth")
    script = (
        "import sys; from minicnnrnn import convert; from minicnnrnn.core import cli\n"
        "for src, dst in zip(sys.argv[1::2], sys.argv[2::2]):\n"
        "    try:\n        cli.run(convert.main, [src, dst])\n"
        "    except SystemExit as e:\n        print('exit', e.code, file=sys.stderr)\n"
    )
    out = str(tmp_path / "out.npz")
    cases = [
        (str(text), out),
        (str(tmp_path / "missing.pth"), out),
        (str(cut), out),
        (str(cut_zip), out),
        (good, str(tmp_path)),  # DST is a folder
        (good, str(text / "out.npz")),
    ]  # DST inside something that is not a folder
    proc = subprocess.run(
        [sys.executable, "-c", script, *[a for case in cases for a in case]],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    lines = proc.stderr.strip().splitlines()
    assert lines[1::2] == ["exit 2"] * len(cases) and "Traceback" not in proc.stderr
    assert lines[0] == (
        f"error: {text}: unknown format; expected a PyTorch state_dict (.pth, zip or legacy "
        "torch.save) or Keras HDF5 weights (.h5)"
    )
    assert lines[2] == f"error: {tmp_path / 'missing.pth'}: file not found"
    assert lines[4].startswith(f"error: {cut}: file is truncated (storage ")
    assert lines[6].startswith(f"error: {cut_zip}: file is truncated or damaged")
    assert lines[8].startswith(f"error: {tmp_path}: is a folder")
    assert lines[10].startswith(f"error: {text / 'out.npz'}: cannot write")
    assert sorted(os.listdir(tmp_path)) == ["cut.pth", "cut_zip.pth", "notes.txt"]  # nothing half-written


def test_converting_a_converted_file_is_refused(tmp_path):
    params, meta = convert.convert(FIXTURES / "tiny_vgg_zip.pth")
    vgg.save(tmp_path / "w.npz", params, meta)
    with pytest.raises(UserError, match="already a minicnnrnn weights file"):
        convert.detect_format(tmp_path / "w.npz")


def test_batchnorm_is_folded_into_the_convolutions(tmp_path, torch):
    model = torch_vgg(torch, TINY["config"], TINY["fc"], TINY["num_classes"], TINY["input_size"], batch_norm=True)
    torch.save(model.state_dict(), tmp_path / "bn.pth")
    params, meta = convert.convert(tmp_path / "bn.pth")
    x = np.random.default_rng(1).standard_normal((2, 16, 16, 3)).astype(np.float32)
    ref = torch_outputs(torch, model, TINY["config"], x, ("conv2_2", "logits"))
    outs, _ = vgg.vgg_forward(params, meta, x, outputs=("conv2_2", "logits"))
    for name in ref:
        assert relative_error(outs[name], ref[name]) <= 1e-4, name


@pytest.mark.slow
def test_vgg16_both_formats_match_torch_at_224(tmp_path, torch):
    """Full VGG16 with random weights: conv5_3, fc7 and logits within 1e-4 of torch (float32, 224x224)."""
    model = torch_vgg(torch, vgg.VGG16_CONFIG, [4096, 4096], 1000, 224, seed=16)
    x = np.random.default_rng(2).standard_normal((1, 224, 224, 3)).astype(np.float32)
    names = ("conv5_3", "fc7", "logits")
    ref = torch_outputs(torch, model, vgg.VGG16_CONFIG, x, names)
    state = model.state_dict()
    torch.save(state, tmp_path / "vgg16_zip.pth")
    torch.save(state, tmp_path / "vgg16_legacy.pth", _use_new_zipfile_serialization=False)
    del model, state
    for layout in ("zip", "legacy"):
        proc = convert_without_torch(tmp_path, tmp_path / f"vgg16_{layout}.pth", tmp_path / "vgg16.npz")
        assert proc.returncode == 0, proc.stderr
        assert "138,357,544 parameters" in proc.stdout
        params, meta = vgg.load(tmp_path / "vgg16.npz")
        assert meta["config"] == vgg.VGG16_CONFIG and meta["input_size"] == 224
        outs, _ = vgg.vgg_forward(params, meta, x, outputs=names)
        for name in names:
            assert relative_error(outs[name], ref[name]) <= 1e-4, f"{layout} {name}"
        del params, outs
