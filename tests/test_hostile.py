"""Hostile and damaged inputs (issue 16): bounds before allocation, finite values, one line.

Each test builds the bad file itself (a few hundred bytes), so the whole file runs in
seconds; the memory-bomb cases run in a subprocess whose peak RSS is checked.
"""

import errno
import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest
from conftest import REPO, one_line
from PIL import Image

from minicnnrnn.cnn import preprocess, vgg
from minicnnrnn.core import cli, fileio, limits
from minicnnrnn.datasets import voc2007
from minicnnrnn.evaluation import metrics
from minicnnrnn.weights import torch_pickle

CROP = {"channel_order": "RGB", "scale": 1, "mean": [0, 0, 0], "std": [1, 1, 1], "resize": "crop"}
META_224 = {"input_size": 224, "preprocess": CROP}


def peak_rss_mb(code):
    """Run ``code`` in a fresh interpreter; (its peak RSS in MB, stdout, stderr)."""
    wrapper = (
        "import resource, sys\n"
        "try:\n" + "".join(f"    {line}\n" for line in code.strip().splitlines()) + "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
        # VmHWM: this process's own peak (ru_maxrss would include the parent's, inherited at exec)
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
        "own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print('RSS', int(hwm[0].split()[1]) // 1024 if hwm else own // 1024)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=120, env=env)
    rss = int(proc.stdout.strip().splitlines()[-1].split()[1])
    return rss, proc.stdout, proc.stderr


# ---------------------------------------------------------------- images


def png_header_only(path, width, height):
    """A PNG holding only its signature, IHDR (the declared size) and IEND: a few dozen
    bytes that claim any number of pixels."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    return path


def test_thin_png_is_refused_by_the_resize_plan_with_bounded_memory(tmp_path):
    # 1 x 60000: "crop" would scale the short side to 256 -> 256 x 15 360 000 pixels (~12 GB)
    path = tmp_path / "thin.png"
    Image.fromarray(np.zeros((60000, 1, 3), np.uint8)).save(path)
    assert path.stat().st_size < 2000
    message = one_line(lambda: preprocess.load_image(path, META_224))
    assert "thin.png" in message and "MINICNNRNN_MAX_ASPECT" in message
    rss, out, err = peak_rss_mb(
        f"from minicnnrnn.cnn import preprocess\npreprocess.load_image({str(path)!r}, {META_224!r})"
    )
    assert "UserError" in out and "Traceback" not in err
    assert rss < 1024, f"peak RSS {rss} MB"


def test_resized_pixel_limit_and_raising_it(tmp_path, monkeypatch):
    path = tmp_path / "wide.png"
    Image.fromarray(np.zeros((2, 50, 3), np.uint8)).save(path)  # aspect 25 -> 6400 x 256 after the plan
    monkeypatch.setenv("MINICNNRNN_MAX_RESIZED_PIXELS", "1000000")
    assert "MINICNNRNN_MAX_RESIZED_PIXELS" in one_line(lambda: preprocess.load_image(path, META_224))
    monkeypatch.setenv("MINICNNRNN_MAX_RESIZED_PIXELS", "0")  # 0: no limit
    assert preprocess.load_image(path, META_224).shape == (224, 224, 3)
    monkeypatch.setenv("MINICNNRNN_MAX_ASPECT", "10")
    assert "aspect ratio" in one_line(lambda: preprocess.load_image(path, META_224))
    monkeypatch.setenv("MINICNNRNN_MAX_ASPECT", "lots")
    assert "$MINICNNRNN_MAX_ASPECT: expected a whole number" in one_line(lambda: limits.get("MINICNNRNN_MAX_ASPECT"))


def test_huge_declared_image_is_refused_before_decoding_and_without_pillow_warning(tmp_path):
    path = png_header_only(tmp_path / "big.png", 12000, 12000)  # between Pillow's warning and error limits
    message = one_line(lambda: preprocess.open_rgb(path))
    assert "144,000,000" in message and "MINICNNRNN_MAX_IMAGE_PIXELS" in message
    code = f"from minicnnrnn.cnn import preprocess\npreprocess.open_rgb({str(path)!r})"
    rss, out, err = peak_rss_mb(code)
    assert "DecompressionBomb" not in err and "Warning" not in err and "UserError" in out
    assert rss < 1024
    png_header_only(path, 30000, 30000)  # beyond Pillow's own error limit: still our line
    assert "MINICNNRNN_MAX_IMAGE_PIXELS" in one_line(lambda: preprocess.open_rgb(path))


def test_nan_float_image_is_not_a_black_picture(tmp_path):
    path = tmp_path / "nan.tif"
    Image.fromarray(np.full((8, 8), np.nan, np.float32), mode="F").save(path)
    assert "NaN" in one_line(lambda: preprocess.load_image(path, {"input_size": 8, "preprocess": CROP}))


def test_nan_preprocessing_constants_are_refused():
    bad = dict(CROP, mean=[0, float("nan"), 0])
    assert "finite" in one_line(lambda: preprocess.check_constants(bad, "w.npz"))
    assert "finite" in one_line(lambda: preprocess.normalise(np.zeros((2, 2, 3), np.uint8), bad))
    preprocess.check_constants(CROP)


# ---------------------------------------------------------------- weights files


def _text(s):
    data = s.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(n):
    return b"J" + struct.pack("<i", n)


def strided_pickle(storage_numel, size, stride):
    """{'w': _rebuild_tensor_v2(<FloatStorage '0' of storage_numel>, 0, size, stride, False, {})}."""
    storage = b"(" + _text("storage") + b"ctorch\nFloatStorage\n" + _text("0") + _text("cpu") + _int(storage_numel)
    storage += b"tQ"
    args = b"(" + storage + _int(0) + b"(" + b"".join(map(_int, size)) + b"t(" + b"".join(map(_int, stride)) + b"t"
    args += b"\x89}t"
    return b"\x80\x02}" + _text("w") + b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"Rs."


def test_stride_zero_tensor_is_refused_before_allocation(tmp_path):
    path = tmp_path / "bomb.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", strided_pickle(1, (2**29,), (0,)))
        zf.writestr("archive/data/0", np.ones(1, "<f4").tobytes())
    assert path.stat().st_size < 1000
    message = one_line(lambda: torch_pickle.load(path))
    assert "536,870,912 elements" in message and "storage" in message
    rss, out, _ = peak_rss_mb(f"from minicnnrnn.weights import torch_pickle\ntorch_pickle.load({str(path)!r})")
    assert "UserError" in out and rss < 1024


def test_tensor_element_limit(tmp_path, monkeypatch):
    path = tmp_path / "ok.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", strided_pickle(6, (2, 3), (3, 1)))
        zf.writestr("archive/data/0", np.arange(6, dtype="<f4").tobytes())
    np.testing.assert_array_equal(torch_pickle.load(path)["w"], np.arange(6).reshape(2, 3))
    monkeypatch.setenv("MINICNNRNN_MAX_TENSOR_ELEMENTS", "5")
    assert "MINICNNRNN_MAX_TENSOR_ELEMENTS" in one_line(lambda: torch_pickle.load(path))


def test_deflated_storage_member_is_bounded(tmp_path, monkeypatch):
    path = tmp_path / "deflate.pth"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", strided_pickle(4096, (4096,), (1,)))
        zf.writestr("archive/data/0", np.zeros(4096, "<f4").tobytes())
    assert torch_pickle.load(path)["w"].shape == (4096,)
    monkeypatch.setenv("MINICNNRNN_MAX_MEMBER_BYTES", "10000")
    message = one_line(lambda: torch_pickle.load(path))
    assert "inflated size of archive/data/0 is 16,384" in message and "MINICNNRNN_MAX_MEMBER_BYTES" in message


def test_npz_member_bounds(tmp_path, monkeypatch):
    # a .npy header that declares 10^12 elements over a few bytes
    path = tmp_path / "liar.npz"
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**12,)}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", buf.getvalue() + b"\0" * 16)
    assert "declares shape (1000000000000,)" in one_line(lambda: fileio.load_npz(path))
    good = tmp_path / "good.npz"
    np.savez_compressed(good, x=np.zeros(5000, np.float32))
    assert fileio.load_npz(good)["x"].shape == (5000,)
    monkeypatch.setenv("MINICNNRNN_MAX_MEMBER_BYTES", "1000")
    assert "MINICNNRNN_MAX_MEMBER_BYTES" in one_line(lambda: fileio.load_npz(good))


def test_nan_weights_are_refused(tmp_path):
    meta = vgg.make_meta(config=[4, "M"], fc=(), num_classes=None, input_size=8, source="test")
    params = vgg.init_params(meta, np.random.default_rng(0))
    params["conv1_1/W"][0, 0, 0, 0] = np.nan
    path = tmp_path / "nan.npz"
    vgg.save(path, params, meta)
    assert "'conv1_1/W' holds NaN" in one_line(lambda: limits.check_finite_params(vgg.load(path)[0], str(path)))
    from minicnnrnn.features import network

    assert "NaN" in one_line(lambda: network.load(str(path)))
    big = np.ones(3 * (1 << 20) + 5, np.float32)
    assert limits.all_finite(big)
    big[-1] = np.inf
    assert not limits.all_finite(big)  # the last block counts too


# ---------------------------------------------------------------- commands


def test_memory_error_and_os_error_are_one_line(capsys):
    def out_of_memory(argv):
        raise MemoryError

    with pytest.raises(SystemExit) as code:
        cli.run(out_of_memory)
    assert code.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: out of memory") and err.count("\n") == 1

    def read_only(argv):
        raise OSError(errno.EROFS, "Read-only file system", "/mnt/ro/out.json")

    with pytest.raises(SystemExit):
        cli.run(read_only)
    err = capsys.readouterr().err
    assert err == "error: /mnt/ro/out.json: failed (read-only file system)\n"


def test_mean_ap_without_any_positive_is_null_not_zero(tmp_path):
    scores = np.random.default_rng(0).random((4, 3))
    truth = np.zeros((4, 3), np.uint8)
    result = metrics.evaluate(np.zeros((4, 3), np.uint8), scores, truth)
    assert np.isnan(result["mAP"])
    fileio.save_json(tmp_path / "m.json", result)
    assert json.loads((tmp_path / "m.json").read_text())["mAP"] is None


def test_voc_split_file_with_a_non_ascii_byte(tmp_path):
    path = tmp_path / "train.txt"
    path.write_bytes(b"000005\n00\xe90007\n")
    message = one_line(lambda: voc2007._read_split_file(str(path)))
    assert "line 2" in message and "0xe9" in message


def test_broken_cupy_import_is_one_line_and_numpy_still_works(tmp_path):
    fake = tmp_path / "fake" / "cupy"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise RuntimeError('CUDA driver version is insufficient')\n")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path / 'fake'}{os.pathsep}{REPO}", MINICNNRNN_BACKEND="cupy")
    command = [sys.executable, "-m", "minicnnrnn.predict", "--checkpoint", str(tmp_path / "none.npz"), "x.png"]
    proc = subprocess.run(command + ["--backend", "numpy"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and "none.npz: file not found" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "CuPy fails to import (RuntimeError: CUDA driver version is insufficient)" in proc.stderr


def test_npy_with_a_damaged_header_is_one_line(tmp_path):
    # found by tests/test_fuzz.py: numpy parses the header with Python's tokenizer, whose errors
    # (SyntaxError, tokenize.TokenError) are not ValueErrors
    from minicnnrnn import predict
    from minicnnrnn.training import data as train_data

    folder = tmp_path / "feats"
    folder.mkdir()
    np.save(folder / "features.npy", np.zeros((5, 4), np.float32))
    raw = bytearray((folder / "features.npy").read_bytes())
    raw[raw.index(b"(5, 4)") + 6] = 0x82
    (folder / "features.npy").write_bytes(bytes(raw))
    (folder / "images.txt").write_text("".join(f"/x/{i}.jpg\n" for i in range(5)))
    (folder / "meta.json").write_text("{}")
    assert "not a readable .npy file" in one_line(lambda: predict.matrix_features(str(folder / "features.npy"), None))
    assert "unreadable features folder" in one_line(lambda: train_data.read_features_folder(str(folder)))


def test_damaged_tiff_gives_one_line_without_pillow_warnings(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(buf, format="TIFF")
    data = bytearray(buf.getvalue())
    ifd = struct.unpack("<I", data[4:8])[0]
    for k in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
        entry = ifd + 2 + 12 * k
        if struct.unpack("<H", data[entry : entry + 2])[0] == 277:  # SamplesPerPixel: 1000 values far away
            data[entry + 4 : entry + 12] = struct.pack("<II", 1000, 10**6)
    path = tmp_path / "tag.tif"
    path.write_bytes(bytes(data))  # Pillow warns "Tag data larger than file" (2 lines) on it
    meta = {"input_size": 16, "preprocess": CROP}
    code = (
        "import warnings; warnings.simplefilter('default')\n"  # show every warning, as a user's Python may
        "from minicnnrnn.cnn import preprocess; from minicnnrnn.core import cli\n"
        f"cli.run(lambda a: preprocess.load_image({str(path)!r}, {meta!r}) is None)"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Warning" not in proc.stderr, proc.stderr
