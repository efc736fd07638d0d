"""A small disk cache for generated arrays (pictures, labels, CNN features).

Each entry is one ``.npz`` named by a key that spells out everything that
determines its contents (generator version, split, seed, sizes, weights
checksum), so a change of any of them simply misses the cache. Entries are
written atomically through :mod:`minicnnrnn.core.fileio` and carry a SHA-256 of their
arrays; an entry that cannot be read or whose arrays do not match the checksum
(a disk error, an interrupted copy, a hand edit) is reported and treated as a
miss, so the caller regenerates and overwrites it.
"""

import hashlib
import json
import os
import sys

import numpy as np

from minicnnrnn.core import fileio
from minicnnrnn.core.errors import UserError

ENV_VAR = "MINICNNRNN_CACHE"


def cache_root(cache_dir=None):
    """The cache folder: ``cache_dir``, else ``$MINICNNRNN_CACHE``, else ``~/.cache/minicnnrnn``."""
    if cache_dir is not None:
        return os.fspath(cache_dir)
    return os.environ.get(ENV_VAR) or os.path.join(os.path.expanduser("~"), ".cache", "minicnnrnn")


def make_key(prefix, **params):
    """A readable, file-name-safe key: ``prefix-<param values>-<hash of all params>``."""
    text = json.dumps(params, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    readable = "-".join(f"{k}{v}" for k, v in params.items() if isinstance(v, (int, str)) and len(str(v)) <= 12)
    return f"{prefix}-{readable}-{digest}"


def checksum(arrays):
    """SHA-256 (hex) over the names, dtypes, shapes and bytes of a dict of host arrays."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def path_for(key, cache_dir=None):
    return os.path.join(cache_root(cache_dir), key + ".npz")


def save(key, cache_dir=None, **arrays):
    """Write host arrays under ``key`` with their checksum (atomically). Returns the path."""
    path = path_for(key, cache_dir)
    try:
        fileio.save_npz(path, checksum=np.array(checksum(arrays)), **arrays)
    except UserError as exc:  # fileio names the path and the reason; add where to go instead
        raise UserError(
            f"{exc}; cannot write the cache file, choose another folder with --cache-dir or ${ENV_VAR}"
        ) from None
    return path


def load(key, names, cache_dir=None):
    """The arrays stored under ``key`` as a dict, or None on a miss.

    A file that is unreadable, lacks one of ``names`` or fails its checksum is a
    miss too (with a one-line note on stderr), so the caller regenerates it.
    """
    path = path_for(key, cache_dir)
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except Exception as exc:  # any damage to the zip container or an array header
        print(f"note: cache file {path} is unreadable ({type(exc).__name__}); regenerating it", file=sys.stderr)
        return None
    stored = str(arrays.pop("checksum", ""))
    if any(name not in arrays for name in names) or stored != checksum(arrays):
        print(f"note: cache file {path} failed its checksum; regenerating it", file=sys.stderr)
        return None
    return arrays
