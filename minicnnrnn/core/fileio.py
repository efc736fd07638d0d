"""Writing files so that an interrupted program never leaves a half-written one.

Every checkpoint, cache, weights file and metrics file goes through these
helpers: the data is written to a temporary file in the same folder, flushed to
disk, then renamed over the destination (``os.replace`` is atomic on POSIX and
Windows). A reader therefore sees either the old file or the new one.
"""

import json
import os
import tempfile

import numpy

from minicnnrnn.core.errors import UserError


def _atomic_write(path, write):
    """Call ``write(fileobj)`` on a temp file next to ``path``, then rename it to ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"{path}: cannot write here (a parent of it is a file, not a folder)") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot write here ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file private (0600); give it the permissions a
        # plain open() would have, so shared feature folders stay readable.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(exc, OSError):
            raise UserError(f"{path}: could not be written ({exc.strerror or exc})") from None
        raise


def save_npz(path, **arrays):
    """Atomically write host arrays to ``path`` (a .npz, uncompressed)."""
    _atomic_write(path, lambda f: numpy.savez(f, **arrays))


def save_json(path, obj):
    """Atomically write ``obj`` as indented JSON."""
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    _atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def save_text(path, text):
    """Atomically write a text file."""
    _atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def save_bytes(path, data):
    """Atomically write bytes (a PNG made in memory, ...)."""
    _atomic_write(path, lambda f: f.write(data))


def load_npz(path, required=()):
    """Load a .npz into a dict of numpy arrays; one-line UserError if missing, corrupt or incomplete."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(f"{path}: file not found")
    if os.path.isdir(path):
        raise UserError(f"{path}: is a folder, expected a .npz file")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # every .npz is a zip archive
            raise UserError(f"{path}: not a .npz file (it is not a zip archive)")
    try:
        with numpy.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:
        raise UserError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    missing = [k for k in required if k not in arrays]
    if missing:
        raise UserError(f"{path}: missing array(s) {', '.join(missing)}")
    return arrays
