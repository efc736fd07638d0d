"""Image preprocessing: modes -> RGB, crop/warp geometry at any input size, both normalisations, bad files."""

import numpy as np
import pytest
from PIL import Image

from minicnnrnn import convert
from minicnnrnn.cnn import preprocess
from minicnnrnn.core.errors import UserError

TORCHVISION = convert.TORCHVISION_PREPROCESS
CAFFE = convert.CAFFE_PREPROCESS
IDENTITY = {"channel_order": "RGB", "scale": 1, "mean": [0, 0, 0], "std": [1, 1, 1], "resize": "crop"}


def meta(size, pre=IDENTITY, **changes):
    return {"input_size": size, "preprocess": dict(pre, **changes)}


def save(tmp_path, image, name="x.png"):
    path = tmp_path / name
    image.save(path)
    return path


def test_crop_at_224_is_resize_256_then_centre_crop(tmp_path):
    # a 256 x 300 (w x h) image needs no resizing: the crop is rows 38..262, columns 16..240
    pixels = np.random.default_rng(0).integers(0, 256, (300, 256, 3), dtype=np.uint8)
    out = preprocess.load_image(save(tmp_path, Image.fromarray(pixels)), meta(224))
    assert out.shape == (224, 224, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, pixels[38:262, 16:240].astype(np.float32))


def test_crop_follows_input_size_64(tmp_path):
    # size 64 crops from a shorter side of round(64 * 256 / 224) = 73; offset round(4.5) = 4
    pixels = np.random.default_rng(1).integers(0, 256, (73, 73, 3), dtype=np.uint8)
    out = preprocess.load_image(save(tmp_path, Image.fromarray(pixels)), meta(64))
    np.testing.assert_array_equal(out, pixels[4:68, 4:68].astype(np.float32))


def test_crop_keeps_the_centre_and_warp_keeps_everything(tmp_path):
    # a wide picture: red | green | blue thirds. The centre crop sees only green; the warp all three.
    pixels = np.zeros((100, 300, 3), np.uint8)
    pixels[:, :100, 0] = 255
    pixels[:, 100:200, 1] = 255
    pixels[:, 200:, 2] = 255
    path = save(tmp_path, Image.fromarray(pixels))
    crop = preprocess.load_image(path, meta(16))
    assert (crop[..., 1] == 255).all() and (crop[..., [0, 2]] == 0).all()
    warp = preprocess.load_image(path, meta(16), resize="warp")
    assert warp.shape == (16, 16, 3)
    assert (warp[:, 0] == [255, 0, 0]).all() and (warp[:, 8, 1] == 255).all() and (warp[:, -1] == [0, 0, 255]).all()


def test_torchvision_and_caffe_normalisation(tmp_path):
    path = save(tmp_path, Image.new("RGB", (20, 30), (10, 20, 30)))
    rgb = preprocess.load_image(path, meta(8, TORCHVISION))
    want = (np.array([10, 20, 30]) / 255 - np.array(TORCHVISION["mean"])) / np.array(TORCHVISION["std"])
    np.testing.assert_allclose(rgb[3, 3], want, rtol=1e-6)
    bgr = preprocess.load_image(path, meta(8, CAFFE))
    np.testing.assert_allclose(bgr[3, 3], [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-6)


def _modes():
    rgb = Image.new("RGB", (12, 10), (200, 100, 50))
    transparent_p = Image.new("P", (12, 10), 0)
    transparent_p.putpalette([200, 100, 50] * 256)
    transparent_p.info["transparency"] = 0
    palette = Image.new("P", (12, 10), 3)
    palette.putpalette([0, 0, 0] * 3 + [200, 100, 50] + [0, 0, 0] * 252)
    rgba = Image.new("RGBA", (12, 10), (0, 0, 0, 0))  # fully transparent black
    return {
        "L": (Image.new("L", (12, 10), 77), (77, 77, 77)),
        "1": (Image.new("1", (12, 10), 1), (255, 255, 255)),
        "P": (palette, (200, 100, 50)),
        "P+transparency": (transparent_p, (255, 255, 255)),
        "RGBA": (rgba, (255, 255, 255)),  # composited on white
        "LA": (Image.new("LA", (12, 10), (40, 255)), (40, 40, 40)),
        "CMYK": (Image.new("CMYK", (12, 10), (0, 0, 0, 0)), (255, 255, 255)),
        "I;16": (Image.fromarray(np.full((10, 12), 65535, np.uint16)), (255, 255, 255)),
        "I": (Image.fromarray(np.full((10, 12), 257 * 100, np.int32)), (100, 100, 100)),
        "F": (Image.fromarray(np.full((10, 12), 0.5, np.float32)), (128, 128, 128)),
        "YCbCr": (rgb.convert("YCbCr"), None),
    }


@pytest.mark.parametrize("mode", list(_modes()))
def test_every_mode_becomes_rgb(mode):
    image, colour = _modes()[mode]
    rgb = preprocess.to_rgb(image)
    assert rgb.mode == "RGB" and rgb.size == (12, 10)
    pixels = np.asarray(rgb)
    if colour is None:  # a lossy colour-space round trip: close to the original
        assert np.abs(pixels.astype(int) - [200, 100, 50]).max() <= 3
    else:
        assert (pixels == colour).all(), (mode, pixels[0, 0])


@pytest.mark.parametrize("mode", ["L", "P+transparency", "I;16", "CMYK"])
def test_modes_load_from_files(tmp_path, mode):
    image, _ = _modes()[mode]
    name = "x.tif" if mode == "CMYK" else "x.png"
    out = preprocess.load_image(save(tmp_path, image, name), meta(8))
    assert out.shape == (8, 8, 3) and out.dtype == np.float32


def test_bad_files_give_one_line_errors_naming_the_file(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:600])
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    cases = [(truncated, "truncated"), (text, "not an image"), (tmp_path / "missing.jpg", "not found")]
    for path, words in cases:
        with pytest.raises(UserError) as info:
            preprocess.load_image(path, meta(8))
        message = str(info.value)
        assert message.startswith(str(path)) and words in message and "\n" not in message
    with pytest.raises(UserError, match="--resize"):
        preprocess.load_image(good, meta(8), resize="squash")
