"""Issue 25: nothing executed, nothing lost, nothing silently wrong.

Image formats by content (no Ghostscript), the byte bound on decoding, regular files only
(a FIFO never hangs a reader), finite in float32, numbers from the environment.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, no_hang, one_line
from PIL import EpsImagePlugin, Image

from minicnnrnn import convert, predict
from minicnnrnn.cnn import image_files, preprocess
from minicnnrnn.core import fileio, limits
from minicnnrnn.datasets import base
from minicnnrnn.training import checkpoint
from minicnnrnn.training import data as train_data

META = {
    "input_size": 8,
    "preprocess": {"resize": "warp", "channel_order": "RGB", "scale": 1 / 255, "mean": [0, 0, 0], "std": [1, 1, 1]},
}
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\nshowpage\n"


# ---------------------------------------------------------------- item 1: formats by content


def test_postscript_named_jpg_is_refused_without_ghostscript(tmp_path, monkeypatch):
    def ghostscript(*args, **kwargs):
        raise AssertionError("Ghostscript was started")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", ghostscript)
    path = tmp_path / "holiday.jpg"
    path.write_bytes(EPS)
    message = one_line(lambda: preprocess.load_image(path, META))
    assert message.startswith(str(path)) and "EPS/PostScript" in message and "PNG" in message
    assert preprocess.header_size(path) is None


@pytest.mark.parametrize("fmt", ["PPM", "TGA", "ICO", "PCX", "SGI"])
def test_other_pillow_formats_are_refused_by_content(tmp_path, fmt):
    path = tmp_path / "photo.png"  # the name says PNG; the contents decide
    Image.new("RGB", (16, 16), (10, 20, 30)).save(path, fmt)
    assert "not an image file this reads" in one_line(lambda: preprocess.load_image(path, META))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP"])
def test_allowed_formats_decode_whatever_their_name(tmp_path, fmt):
    path = tmp_path / "named.eps"
    Image.new("RGB", (16, 16), (200, 100, 50)).save(path, fmt)
    out = preprocess.load_image(path, META)
    assert out.shape == (8, 8, 3) and abs(float(out[..., 0].mean()) - 200 / 255) < 0.05


def test_byte_limit_counts_the_mode(tmp_path, monkeypatch):
    rgb, rgba = tmp_path / "rgb.png", tmp_path / "rgba.png"
    Image.new("RGB", (100, 100)).save(rgb)
    Image.new("RGBA", (100, 100)).save(rgba)
    monkeypatch.setenv("MINICNNRNN_MAX_IMAGE_BYTES", "100000")  # RGB: 5 bytes a pixel; RGBA: 25
    assert preprocess.load_image(rgb, META).shape == (8, 8, 3)
    message = one_line(lambda: preprocess.load_image(rgba, META))
    assert "MINICNNRNN_MAX_IMAGE_BYTES" in message and "RGBA" in message


MEASURE = """
import sys
from minicnnrnn.cnn import image_files, preprocess
def hwm():
    return int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]) * 1024
path, meta = sys.argv[1], {meta!r}
preprocess.load_image(path, meta)  # once, so that imports and first-use buffers are in the base
base = hwm()
with image_files.open_checked(path) as im:
    estimate = im.size[0] * im.size[1] * image_files.peak_bytes(im.mode, im.format)
preprocess.load_image(path, meta)
print(hwm() - base, estimate)
"""


@pytest.mark.parametrize(("mode", "fmt"), [("RGBA", "PNG"), ("I;16", "PNG"), ("F", "TIFF"), ("RGB", "WEBP")])
def test_peak_bytes_bound_the_measured_memory(tmp_path, mode, fmt):
    n = 1500
    if mode == "I;16":
        image = Image.fromarray((np.arange(n * n) % 65536).astype(np.uint16).reshape(n, n))
    elif mode == "F":
        image = Image.fromarray(np.linspace(0, 1, n * n, dtype=np.float32).reshape(n, n))
    else:
        image = Image.effect_noise((n, n), 40).convert(mode)
    path = tmp_path / f"big.{fmt.lower()}"
    image.save(path, fmt)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    code = MEASURE.format(meta=META)
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env, timeout=120)
    grown, estimate = map(int, proc.stdout.split())
    assert grown <= estimate, (mode, fmt, grown, estimate)


# ---------------------------------------------------------------- item 7: regular files only


def test_every_reader_refuses_a_fifo_in_one_line(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    readers = [
        lambda: fileio.load_npz(fifo),
        lambda: checkpoint.load(fifo),
        lambda: train_data.load_npz(str(fifo)),
        lambda: preprocess.load_image(fifo, META),
        lambda: predict.matrix_features(str(fifo), None),
        lambda: convert.detect_format(fifo),
        lambda: base.require(str(fifo), "label file"),
    ]
    with no_hang():
        for read in readers:
            assert "FIFO" in one_line(read)
    good = tmp_path / "f.npy"
    np.save(good, np.ones((2, 3), np.float32))
    with no_hang():
        assert "FIFO" in one_line(lambda: predict.matrix_features(str(good), str(fifo)))


def test_a_device_is_not_a_file():
    assert "device" in one_line(lambda: fileio.load_npz("/dev/zero"))


# ---------------------------------------------------------------- item 6: finite in float32


def test_float64_values_beyond_float32_are_not_finite(tmp_path):
    assert not limits.all_finite(np.array([1.0, 1e300]))
    assert limits.all_finite(np.array([1.0, 3e38]))
    assert not limits.all_finite(np.array([np.nan]))
    path = tmp_path / "d.npz"
    feats = np.ones((3, 2))
    feats[1, 1] = 1e300
    y = np.array([[1, 0], [0, 1], [1, 1]])
    np.savez(path, train_features=feats, train_labels=y, test_features=np.ones((3, 2)), test_labels=y,
             label_names=np.array([b"a", b"b"]))  # fmt: skip
    assert "train_features" in one_line(lambda: train_data.load_npz(str(path)))
    np.savez(path, train_features=np.ones((3, 2)), train_labels=y, test_features=np.ones((3, 2)), test_labels=y,
             label_names=np.array([b"a", b"b"]))  # fmt: skip
    assert train_data.load_npz(str(path)).label_names == ["a", "b"]  # bytes names decoded, not "b'a'"


# ---------------------------------------------------------------- item 5: numbers from the environment


@pytest.mark.parametrize("text", ["inf", "abc", "nan", "1e400", "9" * 30, "2.5", "-1"])
def test_environment_limits_refuse_junk_in_one_line(monkeypatch, text):
    monkeypatch.setenv("MINICNNRNN_MAX_IMAGE_PIXELS", text)
    assert "$MINICNNRNN_MAX_IMAGE_PIXELS" in one_line(lambda: limits.get("MINICNNRNN_MAX_IMAGE_PIXELS"))


def test_environment_limits_accept_whole_numbers(monkeypatch):
    for text, value in (("5e7", 50_000_000), ("1_000", 1000), ("0", 0), (" 7 ", 7)):
        monkeypatch.setenv("MINICNNRNN_MAX_ASPECT", text)
        assert limits.get("MINICNNRNN_MAX_ASPECT") == value


def test_image_files_detects_webp_and_unknown():
    assert image_files.detect(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "WEBP"
    assert image_files.detect(b"\x00\x01\x02\x03") is None
