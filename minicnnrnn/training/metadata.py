"""A checkpoint's ``meta`` JSON, parsed and checked as a schema before anything uses it.

The metadata is text in a file that anyone can edit, so it is parsed with bounds
(:func:`parse`: at most :data:`MAX_BYTES` of text, nested at most :data:`MAX_DEPTH` deep,
so a 100 000-deep ``[[[[...`` is one line, not a RecursionError) and every field is checked
for its type and size (:func:`check`) before :mod:`checkpoint` reads it: the random-generator
state, the training history, the learning-rate back-off, the data fingerprint, the domain
and the run identity. Each bad field is one line naming it. The config's fields and the
arrays are checked by :mod:`minicnnrnn.training.schema`.
"""

import json
import re
import typing

import numpy as np

from minicnnrnn.core.errors import UserError

MAX_BYTES = 64 * 2**20  # label names of K = 100 000 and a history of 10 000 epochs fit many times over
MAX_DEPTH = 32  # the deepest field written is 4 levels down
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def depth(text):
    """How deep the arrays and objects of the JSON ``text`` nest (brackets inside strings
    do not count). Vectorised, so a long text costs one pass in NumPy, not in Python."""
    codes = np.frombuffer(_STRING.sub('""', text).encode("utf-8", "replace"), dtype=np.uint8)
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int64) - np.isin(codes, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def parse(text, where):
    """``json.loads(text)`` within the size and depth bounds; one-line UserError otherwise."""
    if len(text) > MAX_BYTES:
        raise UserError(f"{where}: checkpoint metadata is {len(text):,} characters, over {MAX_BYTES:,}")
    if depth(text) > MAX_DEPTH:
        raise UserError(f"{where}: checkpoint metadata nests deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text)
    except (ValueError, TypeError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{where}: corrupt checkpoint metadata ({first})") from None


def _whole(value, low, high):
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_rng(rng, where):
    """A PCG64 state as ``Generator.bit_generator.state`` gives it: 128-bit state and
    increment, a 0/1 flag and a 32-bit spare (None: absent, refused where it is needed)."""
    if rng is None:
        return
    inner = rng.get("state") if isinstance(rng, dict) else None
    ok = (
        isinstance(inner, dict)
        and rng.get("bit_generator") == "PCG64"
        and set(rng) == {"bit_generator", "state", "has_uint32", "uinteger"}
        and set(inner) == {"state", "inc"}
        and all(_whole(inner[k], 0, 2**128 - 1) for k in ("state", "inc"))
        and _whole(rng["has_uint32"], 0, 1)
        and _whole(rng["uinteger"], 0, 2**32 - 1)
    )
    if not ok:
        raise UserError(f"{where}: checkpoint metadata rng is not a PCG64 random-generator state")


def check_history(history, where):
    """A list of log rows: objects whose ``epoch`` is a whole number >= 1 and whose other
    values are numbers, null or short text."""
    if not isinstance(history, list):
        raise UserError(f"{where}: checkpoint metadata extra.history is not a list")
    for i, row in enumerate(history):
        good = isinstance(row, dict) and _whole(row.get("epoch"), 1, 2**31)
        good = good and all(
            value is None or _number(value) or (isinstance(value, str) and len(value) < 100) for value in row.values()
        )
        if not good:
            raise UserError(f"{where}: checkpoint metadata extra.history[{i}] is not a log row (epoch and numbers)")


def check_fingerprint(data, where):
    """None, or the data fingerprint :func:`schema.fingerprint` writes."""
    if data is None:
        return
    ok = isinstance(data, dict) and isinstance(data.get("label_names"), list)
    ok = ok and all(isinstance(n, str) for n in data["label_names"])
    ok = ok and isinstance(data.get("labels_sha256"), str) and len(data["labels_sha256"]) == 64
    shape = data.get("feature_shape") if ok else None
    ok = ok and isinstance(shape, list) and len(shape) == 2 and all(_whole(n, 0, 2**62) for n in shape)
    features = data.get("features_sha256") if ok else None
    ok = ok and (features is None or (isinstance(features, str) and len(features) == 64))
    if not ok:
        raise UserError(f"{where}: checkpoint metadata data is not a data fingerprint (label names, hashes, shape)")


def check(meta, where):
    """Every field of a parsed checkpoint ``meta`` but the config (schema.py checks it)."""
    check_rng(meta.get("rng"), where)
    extra = meta.get("extra", {})
    if not isinstance(extra, dict):
        raise UserError(f"{where}: checkpoint metadata extra is not an object")
    if "history" in extra:
        check_history(extra["history"], where)
    run_id = meta.get("run_id")
    if run_id is not None and not (isinstance(run_id, str) and re.fullmatch(r"[0-9a-f]{8,64}", run_id)):
        raise UserError(f"{where}: checkpoint metadata run_id is not a run identity (hex text)")
    check_fingerprint(meta.get("data"), where)
    domain = meta.get("domain")
    if domain is not None:
        size = domain.get("image_size") if isinstance(domain, dict) else None
        ok = isinstance(domain, dict) and isinstance(domain.get("name"), str)
        ok = ok and (
            size is None or (isinstance(size, list) and len(size) == 2 and all(_whole(n, 1, 2**31) for n in size))
        )
        if not ok:
            raise UserError(f"{where}: checkpoint metadata domain is not an object with a name and an image size")


def _allowed_types(annotation):
    """The Python types a field accepts: ``int`` -> (int,), ``Optional[dict]`` -> (dict, NoneType).
    A float field also takes an int (JSON has one kind of number)."""
    allowed = typing.get_args(annotation) or (annotation,)
    return allowed + (int,) if float in allowed else allowed


def has_type(value, annotation):
    """Whether a JSON value fits a dataclass field's annotation (``RunConfig.from_dict``)."""
    allowed = _allowed_types(annotation)
    if isinstance(value, bool) and bool not in allowed:  # True is an int to Python, not to us
        return False
    return isinstance(value, allowed)


def type_name(annotation):
    return " or ".join("null" if t is type(None) else t.__name__ for t in typing.get_args(annotation) or (annotation,))
