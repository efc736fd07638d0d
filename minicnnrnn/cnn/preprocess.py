"""Image file -> the normalised (S, S, 3) float32 array a CNN expects.

Three steps, all decided by the weights file's ``meta`` (DESIGN.md):

1. **Any mode -> RGB.** Photos come as RGB, greyscale (L), palette (P), CMYK,
   with transparency (RGBA, LA, PA) or 16-bit (I;16, I). Transparent pixels have
   no defined colour, so they are composited onto white; 16-bit values are scaled
   to 0..255 (Pillow's own conversion would clip them).
2. **Resize to S x S** (S = ``meta["input_size"]``), one of two conventions:
   ``"crop"`` (torchvision / the VGG paper at test time): scale the shorter side
   to round(S * 256 / 224) (256 for S = 224), then cut out the centre S x S;
   ``"warp"`` (Keras examples, and the CNN-RNN paper's whole-image view): scale
   the image to S x S, ignoring its aspect ratio. Both use bilinear filtering
   (Pillow's, which averages over the shrunk area, as torchvision does).
3. **Normalise** each pixel as the network was trained:
   ``(pixel * scale - mean) / std`` in the recorded channel order. torchvision:
   RGB, scale 1/255, ImageNet mean/std; Caffe and Keras: BGR, scale 1, minus the
   mean pixel (103.939, 116.779, 123.68), std 1.

Only JPEG, PNG, GIF (first frame), BMP, TIFF and WebP files are decoded, recognised by
their contents and bounded in pixels and bytes before decoding (cnn/image_files.py).

EXIF orientation tags are ignored, as torchvision and Keras do, so features match
theirs.
"""

import warnings

import numpy
from PIL import Image, UnidentifiedImageError

from minicnnrnn.cnn import image_files
from minicnnrnn.core import limits
from minicnnrnn.core.errors import UserError

RESIZE_MODES = ("crop", "warp")

# Our own bound (core/limits.py: $MINICNNRNN_MAX_IMAGE_PIXELS) is checked before an image
# is decoded; Pillow's multi-line warning about large images would only repeat it.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# Pillow's multi-line notes about damaged files ("Tag data larger than file", ...): the file
# either decodes or gives our one-line error.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
Image.MAX_IMAGE_PIXELS = None  # Pillow's own error limit: ours replaces it (checked in open_rgb)


def to_rgb(image):
    """A PIL image in any mode -> an RGB PIL image."""
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode.startswith("I") or image.mode == "F":
        # float32 and in place: one working copy (image_files.peak_bytes counts on it);
        # 0..65535 and 8-bit values are exact in float32.
        values = numpy.asarray(image).astype(numpy.float32)
        if not numpy.isfinite(values).all():
            raise ValueError("a float image holding NaN or infinite pixel values")
        if image.mode.startswith("I;16") or (image.mode == "I" and values.max(initial=0) > 255):
            values /= 257.0  # 16-bit 0..65535 -> 0..255
        elif image.mode == "F" and values.max(initial=0) <= 1.0:
            values *= 255.0  # float images in [0, 1]
        numpy.clip(numpy.round(values, out=values), 0, 255, out=values)
        return Image.fromarray(values.astype(numpy.uint8)).convert("RGB")
    return image.convert("RGB")


def resize_plan(image_size, size, mode="crop", where="image"):
    """(width, height) an image of ``image_size`` (w, h) is resized to before its centre
    crop ("crop"), or (size, size) ("warp"). Checked against the limits before any pixel
    is made (core/limits.py): the aspect ratio and the resized image's pixel count, e.g.
    a 1 x 60000 PNG would become 256 x 15 360 000 pixels (44 GB) under "crop"."""
    if mode not in RESIZE_MODES:
        raise UserError(f"--resize: {mode!r} is not one of {', '.join(RESIZE_MODES)}")
    if mode == "warp":
        return size, size
    w, h = image_size
    if min(w, h) < 1:
        raise UserError(f"{where}: image has no pixels ({w} x {h})")
    limits.check("MINICNNRNN_MAX_ASPECT", max(w, h) // min(w, h), where, f"the aspect ratio of this {w} x {h} image")
    short = int(round(size * 256 / 224))
    # Scale the shorter side to `short`; the longer side keeps the aspect ratio
    # (truncated, as torchvision does).
    new_w, new_h = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    limits.check("MINICNNRNN_MAX_RESIZED_PIXELS", new_w * new_h, where, f"the resized image ({new_w} x {new_h}) pixels")
    return new_w, new_h


def resize_image(image, size, mode="crop", where="image"):
    """An RGB PIL image -> a size x size PIL image, by "crop" or "warp" (module docstring).
    ``where`` (the file) starts the error when the resize plan is over a limit."""
    new_w, new_h = resize_plan(image.size, size, mode, where)
    image = image.resize((new_w, new_h), Image.BILINEAR)
    if mode == "warp":
        return image
    left, top = int(round((new_w - size) / 2.0)), int(round((new_h - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def check_constants(pre, where="preprocess"):
    """UserError unless the normalisation constants (scale, mean, std) are finite: a NaN
    mean would turn every image into NaN features (checked when weights are loaded)."""
    values = [pre.get("scale"), *(pre.get("mean") or []), *(pre.get("std") or [])]
    if not all(isinstance(v, (int, float)) and numpy.isfinite(v) for v in values):
        raise UserError(
            f"{where}: preprocess scale, mean and std must be finite numbers, "
            f"got {pre.get('scale')}, {pre.get('mean')}, {pre.get('std')}"
        )


def normalise(pixels, pre):
    """pixels: (..., 3) uint8 RGB, e.g. (H, W, 3) -> float32 of the same shape in pre["channel_order"],
    (pixel * scale - mean) / std with mean and std given in that channel order."""
    check_constants(pre)
    x = pixels.astype(numpy.float32)
    if pre["channel_order"] == "BGR":
        x = x[..., ::-1]
    mean = numpy.asarray(pre["mean"], dtype=numpy.float32)
    std = numpy.asarray(pre["std"], dtype=numpy.float32)
    return numpy.ascontiguousarray((x * numpy.float32(pre["scale"]) - mean) / std, dtype=numpy.float32)


def open_rgb(path):
    """Decode an image file fully -> RGB PIL image; one-line UserError naming a bad file.
    Only the formats of image_files.ALLOWED are decoded, each within its pixel and byte
    limits, checked from the header before decoding."""
    path = str(path)
    try:
        with image_files.open_checked(path) as image:
            image_files.check_size(image, path)  # from the header: nothing is decoded yet
            image.load()  # decode now, so a truncated file fails here
            return to_rgb(image)
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image file Pillow can read") from None
    except MemoryError:
        raise UserError(f"{path}: not enough memory to decode this image") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: unreadable or truncated image ({first})") from None


def header_size(path):
    """(width, height) from an image file's header (nothing decoded), or None."""
    try:
        with image_files.open_checked(str(path)) as image:
            return image.size
    except Exception:  # unreadable or refused: load_image reports it
        return None


def load_image(path, meta, resize=None):
    """Image file -> (S, S, 3) float32 normalised as ``meta["preprocess"]`` records.

    meta: a weights file's meta (``input_size``, ``preprocess``); resize: "crop"
    or "warp" to override ``meta["preprocess"]["resize"]``.
    """
    pre = meta["preprocess"]
    image = resize_image(open_rgb(path), meta["input_size"], resize or pre["resize"], str(path))
    return normalise(numpy.asarray(image, dtype=numpy.uint8), pre)
