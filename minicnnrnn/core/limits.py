"""Bounds checked before anything large is allocated, and checks that numbers are finite.

A damaged or hostile input file may declare sizes far beyond its own length: a 300-byte
PNG of 1 x 60000 pixels (its resize plan asks for gigabytes), a tensor of 2^29 elements
over a storage of one, a zip member that inflates to gigabytes. Every reader checks the
declared size against one of the limits below *before* it allocates, and refuses with a
one-line :class:`~minicnnrnn.core.errors.UserError` naming the file, the limit and the
environment variable that raises it (docs/limits.md):

==================================== ============== ==========================================
environment variable                 default        what it bounds
==================================== ============== ==========================================
``MINICNNRNN_MAX_IMAGE_PIXELS``      50 000 000     pixels of a decoded image (width x height)
``MINICNNRNN_MAX_ASPECT``            100            longer side / shorter side of an image
``MINICNNRNN_MAX_RESIZED_PIXELS``    20 000 000     pixels of the resized image (crop plan)
``MINICNNRNN_MAX_TENSOR_ELEMENTS``   1 000 000 000  elements of one tensor in a weights file
``MINICNNRNN_MAX_MEMBER_BYTES``      1 GiB          inflated size of one zip / npz member
==================================== ============== ==========================================

A value of 0 turns a limit off. Limits are read when asked for (not at import), so a
command and a test can set them in the environment at any time.
"""

import os

import numpy

from minicnnrnn.core.errors import UserError

DEFAULTS = {
    "MINICNNRNN_MAX_IMAGE_PIXELS": 50_000_000,
    "MINICNNRNN_MAX_ASPECT": 100,
    "MINICNNRNN_MAX_RESIZED_PIXELS": 20_000_000,
    "MINICNNRNN_MAX_TENSOR_ELEMENTS": 1_000_000_000,
    "MINICNNRNN_MAX_MEMBER_BYTES": 2**30,
}


def get(name):
    """The current value of limit ``name`` (a key of :data:`DEFAULTS`); 0 means no limit."""
    text = os.environ.get(name, "").strip().replace("_", "")
    if not text:
        return DEFAULTS[name]
    try:
        value = int(float(text))
    except ValueError:
        raise UserError(f"${name}: expected a whole number (0 = no limit), got {text!r}") from None
    if value < 0:
        raise UserError(f"${name}: must be >= 0 (0 = no limit), got {value}")
    return value


def check(name, value, where, what):
    """UserError ``<where>: <what> is <value>, over the limit of <limit> (raise it with $name)``
    when ``value`` exceeds the limit ``name``."""
    limit = get(name)
    if limit and value > limit:
        raise UserError(
            f"{where}: {what} is {value:,}, over the limit of {limit:,} (set ${name} higher, or 0, to allow it)"
        )


def all_finite(array, rows_at_once=1 << 20):
    """True when a float or complex array holds no NaN or inf (other dtypes: always True).
    Checked a block at a time, so a large weights matrix needs no array of its size."""
    array = numpy.asarray(array)
    if array.dtype.kind not in "fc":
        return True
    flat = array.reshape(-1)
    return all(numpy.isfinite(flat[i : i + rows_at_once]).all() for i in range(0, flat.size, rows_at_once))


def check_finite(array, where):
    """UserError ``<where>: holds NaN or infinite values`` unless :func:`all_finite`."""
    if not all_finite(array):
        raise UserError(f"{where}: holds NaN or infinite values")


def check_finite_params(params, where):
    """UserError ``<where>: array <name> holds NaN or infinite values`` for the first such
    array of a {name: array} dict (weights of a CNN: NaN weights give all-NaN features)."""
    for name, value in params.items():
        if not all_finite(value):
            raise UserError(f"{where}: array {name!r} holds NaN or infinite values")
