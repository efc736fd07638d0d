"""The CNN weights file (``.npz``) shared by every network: arrays by name plus a JSON ``meta``.

Each network module (``vgg``, ``efficientnet``) says what a valid ``meta`` is and which arrays
it implies (``validate_meta``, ``param_shapes``); reading, writing and the checks that are the
same for every network live here. Every problem is a one-line UserError naming the file.
"""

import json

import numpy

from minicnnrnn.core import fileio
from minicnnrnn.core.backend import to_host
from minicnnrnn.core.errors import UserError


def meta_error(where):
    """A function ``bad(what)`` that raises ``UserError("<where>: meta <what>")``."""

    def bad(what):
        raise UserError(f"{where}: meta {what}")

    return bad


def is_int(v, low=1):
    """True for a real int (not a bool) of at least ``low``."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def validate_preprocess(pre, bad):
    """Check ``meta["preprocess"]``: channel order, resize mode, positive scale, 3 means, 3 positive stds."""
    if not isinstance(pre, dict):
        bad("'preprocess' must be an object")
    if pre.get("channel_order") not in ("RGB", "BGR"):
        bad(f"'preprocess.channel_order' must be \"RGB\" or \"BGR\", got {pre.get('channel_order')!r}")
    if pre.get("resize") not in ("crop", "warp"):
        bad(f"'preprocess.resize' must be \"crop\" or \"warp\", got {pre.get('resize')!r}")
    if not isinstance(pre.get("scale"), (int, float)) or pre.get("scale") <= 0:
        bad(f"'preprocess.scale' must be a positive number, got {pre.get('scale')!r}")
    for key in ("mean", "std"):
        v = pre.get(key)
        if not (isinstance(v, list) and len(v) == 3 and all(isinstance(t, (int, float)) for t in v)):
            bad(f"'preprocess.{key}' must be a list of 3 numbers, got {v!r}")
    if min(pre["std"]) <= 0:
        bad(f"'preprocess.std' must be positive, got {pre['std']!r}")


def check_arrays(params, shapes, where, source="the config in meta"):
    """One-line UserError for a missing, unexpected, wrongly shaped or non-float array.

    shapes: {name: shape} that ``source`` (what in meta implies them) asks for.
    """
    for key, shape in shapes.items():
        if key not in params:
            raise UserError(f"{where}: missing array {key!r} ({source} needs it)")
        if tuple(params[key].shape) != shape:
            raise UserError(f"{where}: array {key!r} has shape {tuple(params[key].shape)}, {source} needs {shape}")
        if params[key].dtype.kind != "f":
            raise UserError(f"{where}: array {key!r} has dtype {params[key].dtype}, expected a float type")
    extra = sorted(set(params) - set(shapes))
    if extra:
        raise UserError(f"{where}: unexpected array {extra[0]!r} (not in the network described by meta)")


def save(path, params, meta, validate_meta, param_shapes, source="the config in meta"):
    """Write params (host or device arrays) and meta to a weights .npz, atomically, after checking both."""
    validate_meta(meta, str(path))
    host = {k: to_host(v) for k, v in params.items()}
    check_arrays(host, param_shapes(meta), str(path), source)
    fileio.save_npz(path, meta=numpy.array(json.dumps(meta)), **host)


def load(path, validate_meta, param_shapes, source="the config in meta"):
    """Read a weights .npz. Returns (params {name: host numpy array}, meta dict).

    One-line UserError naming the file for a missing file, bad meta, or a missing or
    wrongly shaped array.
    """
    arrays = fileio.load_npz(path, required=("meta",))
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except ValueError as exc:
        raise UserError(f"{path}: meta is not valid JSON ({exc})") from None
    validate_meta(meta, str(path))
    check_arrays(arrays, param_shapes(meta), str(path), source)
    return arrays, meta
