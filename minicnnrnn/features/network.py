"""The CNN whose layer gives the feature rows: a converted weights file or the built-in one.

:func:`load` reads and checks it (a PyTorch/Keras file is refused with the command that
converts it; non-finite weights and impossible preprocessing constants are one-line
errors); :func:`fingerprint` is what a features folder records of it; :func:`feature_dim`
is the length of one row for a layer.
"""

import os
import zipfile

import numpy

from minicnnrnn.cnn import backbones, preprocess
from minicnnrnn.core import limits
from minicnnrnn.core.errors import UserError
from minicnnrnn.tinyscenes import features as builtin
from minicnnrnn.weights import keras_h5, torch_pickle


def load(path, where=None):
    """(params, meta) host arrays of the weights file ``path``, or of the built-in CNN for
    None. ``where`` starts the errors (default ``--weights PATH``)."""
    if path is None:
        return builtin.load_builtin_cnn()
    where = where or f"--weights {path}"
    if os.path.isfile(path) and (torch_pickle.detect(path) or keras_h5.detect(path)):
        raise UserError(
            f"{where}: a PyTorch/Keras weights file; convert it first with "
            f"`python -m minicnnrnn.convert {path} weights.npz`"
        )
    if os.path.isfile(path) and not zipfile.is_zipfile(path):  # an .npz is a zip archive
        raise UserError(f"{where}: not a .npz weights file (python -m minicnnrnn.convert writes one)")
    params, meta = backbones.load(path)
    limits.check_finite_params(params, where)
    preprocess.check_constants(meta["preprocess"], where)
    return params, meta


def fingerprint(path):
    """(name, SHA-256 of the file) a features folder records: "builtin" for None, else the
    absolute path."""
    if path is None:
        return "builtin", builtin.file_sha256(builtin.WEIGHTS_PATH)
    return os.path.abspath(path), builtin.file_sha256(path)


def feature_dim(meta, layer):
    """Length of one image's feature row for ``layer`` (a conv/pool map flattened)."""
    rows = {name: shape for name, shape, _, _ in backbones.layer_table(meta)}
    if layer not in rows:
        raise UserError(f"--layer: {layer!r} is not a layer of this network; choose from {', '.join(rows)}")
    return int(numpy.prod(rows[layer]))
