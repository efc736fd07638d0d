"""Which image files are decoded, and how much memory one may take (docs/limits.md).

Pillow picks a decoder from a file's *contents*, whatever its name says, and among its
decoders is EPS, which starts the external program Ghostscript. So a file is decoded only
when its first bytes are one of six formats (:data:`ALLOWED`), and Pillow is then told to
try that one decoder alone (``Image.open(..., formats=[...])``): a PostScript file named
``holiday.jpg`` is one line naming what it is, and no other Pillow plugin ever runs.

A header's width and height bound the pixels (``$MINICNNRNN_MAX_IMAGE_PIXELS``), but not
the memory: Pillow keeps RGB in 4 bytes a pixel, and turning RGBA, 16-bit or float images
into RGB makes working copies (``preprocess.to_rgb``). :func:`peak_bytes` adds them up
per pixel, and ``$MINICNNRNN_MAX_IMAGE_BYTES`` (768 MiB) bounds the total before anything
is decoded, so an accepted image stays well under 1 GB.
"""

from PIL import Image

from minicnnrnn.core import fileio, limits
from minicnnrnn.core.errors import UserError

# Pillow's format name -> the first bytes of such a file. GIF: only its first frame is read.
ALLOWED = {
    "JPEG": (b"\xff\xd8\xff",),
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "GIF": (b"GIF87a", b"GIF89a"),
    "BMP": (b"BM",),
    "TIFF": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
    "WEBP": (),  # RIFF....WEBP: see detect
}
# Formats recognised only to name them in the refusal.
REFUSED = {
    "EPS/PostScript": (b"%!PS", b"\xc5\xd0\xd3\xc6"),
    "PDF": (b"%PDF",),
    "ICO": (b"\x00\x00\x01\x00",),
    "PSD": (b"8BPS",),
    "JPEG 2000": (b"\x00\x00\x00\x0cjP  ", b"\xffO\xffQ"),
    "QOI": (b"qoif",),
    "DDS": (b"DDS ",),
    "XPM": (b"/* XPM */",),
    "SVG/XML": (b"<?xml", b"<svg"),
    "HTML": (b"<!DOCTYPE", b"<html"),
    "PPM/PGM/PBM": tuple(b"P%d" % n for n in range(1, 8)),
    "ZIP": (b"PK\x03\x04",),
    "gzip": (b"\x1f\x8b",),
}
HEAD_BYTES = 16


def detect(head):
    """The format name of a file starting with the bytes ``head`` (at least 12 bytes when
    the file has them): a key of :data:`ALLOWED`, a refused format's name, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp":
        return "HEIF/AVIF"
    for table in (ALLOWED, REFUSED):
        for name, signatures in table.items():
            if any(head.startswith(s) for s in signatures):
                return name
    return None


def open_checked(path):
    """Open ``path`` as a PIL image (header read, nothing decoded) after checking that it
    is a regular file (core/fileio.open_regular) whose contents are an allowed format.
    The caller closes the image (``with``). One-line UserError naming the file otherwise."""
    f = fileio.open_regular(path, "image file")
    try:
        head = f.read(HEAD_BYTES)
        kind = detect(head)
        if kind not in ALLOWED:
            found = f"its contents are {kind}" if kind else f"unknown contents starting {head[:8]!r}"
            raise UserError(f"{path}: not an image file this reads ({found}; only {', '.join(ALLOWED)} are read)")
        f.seek(0)
        return Image.open(f, formats=[kind])  # the image owns f now and closes it
    except BaseException:
        f.close()
        raise


def peak_bytes(mode, kind=None):
    """Bytes per pixel an image of ``mode`` (file format ``kind``) takes at its peak while
    decoded and converted to RGB by ``preprocess.to_rgb``. Pillow stores 1-byte modes in 1
    byte, I;16 in 2, all others in 4 bytes a pixel; a decoder's own buffers add about 1
    (libwebp: 13, it decodes into a buffer of its own first; measured on 3000 x 3000
    images by tests/test_harden.py)."""
    stored = 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4
    return stored + (13 if kind == "WEBP" else 1) + _conversion_bytes(mode, stored)


def _conversion_bytes(mode, stored):
    """The working copies ``preprocess.to_rgb`` makes, in bytes per pixel."""
    if mode == "RGB":
        return 0
    if mode in ("P", "RGBA", "LA", "PA", "RGBa", "La"):
        return 20  # P -> RGBA, RGBA copy, white canvas, composite, RGB: 4 + 4 + 4 + 4 + 4
    if mode.startswith("I") or mode == "F":
        return stored + 10  # numpy's copy of the bytes, float32, uint8, L, RGB: stored + 4 + 1 + 1 + 4
    return 4  # convert("RGB")


def check_size(image, path):
    """The pixel and byte limits for an opened, not yet decoded image."""
    w, h = image.size
    limits.check("MINICNNRNN_MAX_IMAGE_PIXELS", w * h, path, f"the pixel count of this {w} x {h} image")
    need = w * h * peak_bytes(image.mode, image.format)
    limits.check("MINICNNRNN_MAX_IMAGE_BYTES", need, path, f"the memory to decode this {w} x {h} {image.mode} image")
