"""Reading Keras weight files (HDF5, via h5py) as a list of named layers.

Keras has written two layouts:

* **Keras 2** (``model.save_weights("x.h5")``, e.g. the released
  ``vgg16_weights_tf_dim_ordering_tf_kernels.h5``): the root (or its
  ``model_weights`` group, in a whole-model file) has an attribute
  ``layer_names`` listing the layers in model order; each layer is a group whose
  attribute ``weight_names`` lists its arrays in order, kernel first, bias second
  (``block1_conv1/block1_conv1_W_1:0``, ``block1_conv1/block1_conv1_b_1:0``).
* **Keras 3** (``model.save_weights("x.weights.h5")``): one group per layer,
  named after the layer's *class* with a counter (``conv2d``, ``conv2d_1``, ...),
  nested like the model (``block1/layers/conv2d`` for a layer inside a
  sub-model), with the arrays in ``<layer>/vars/0``, ``vars/1``. Recent Keras also
  stores the layer's own name as the attribute ``name`` of its ``vars`` group
  (``block1_conv1``); without it only the order of the groups is known.

Kernels are HWIO for convolutions, ``(in, out)`` for dense layers, so they
already match our layout. The reader returns plain numpy arrays and leaves the
meaning of the layers to :mod:`minicnnrnn.convert`.

(Keras documents neither layout; they are defined by the code that writes them:
``save_weights_to_hdf5_group`` in Keras 2's ``saving/hdf5_format.py`` and
``H5IOStore`` in Keras 3's ``saving/saving_lib.py``.)
"""

import re

import numpy

from minicnnrnn.core.errors import UserError


def _natural_key(name):
    """Sort 'conv2d_10' after 'conv2d_2' (Keras numbers groups in creation order)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _attr_list(group, name):
    """A list-of-strings attribute; Keras 2 splits long ones into name0, name1, ..."""
    if name in group.attrs:
        return [_text(v) for v in numpy.atleast_1d(group.attrs[name])]
    values, chunk = [], 0
    while f"{name}{chunk}" in group.attrs:
        values += [_text(v) for v in numpy.atleast_1d(group.attrs[f"{name}{chunk}"])]
        chunk += 1
    return values if chunk else None


def _open(path):
    import h5py

    try:
        if not h5py.is_hdf5(path):
            return None
        return h5py.File(path, "r")
    except OSError as exc:
        raise UserError(f"{path}: cannot open HDF5 file, truncated or damaged? ({str(exc).splitlines()[0]})") from None


def _keras2_root(f):
    if _attr_list(f, "layer_names") is not None:
        return f
    if "model_weights" in f and _attr_list(f["model_weights"], "layer_names") is not None:
        return f["model_weights"]
    return None


def _is_keras3(f):
    import h5py

    found = []
    f.visit(lambda name: found.append(name) if name.endswith("vars") and isinstance(f[name], h5py.Group) else None)
    return bool(found)


def detect(path):
    """'keras2', 'keras3' or None (not an HDF5 file, or not a Keras weights layout).

    An HDF5 file that h5py cannot open (a cut download) is a one-line UserError,
    not None: "unknown format" would send the user looking in the wrong place.
    """
    f = _open(path)
    if f is None:
        return None
    with f:
        if _keras2_root(f) is not None:
            return "keras2"
        return "keras3" if _is_keras3(f) else None


def _keras2_layers(path, root):
    import h5py

    layers = []
    for name in _attr_list(root, "layer_names"):
        if name not in root:
            raise UserError(f"{path}: layer '{name}' is listed in layer_names but has no group")
        group = root[name]
        arrays = []
        for weight in _attr_list(group, "weight_names") or []:
            if not isinstance(group.get(weight), h5py.Dataset):
                raise UserError(f"{path}: weight '{name}/{weight}' is listed but missing (or not an array)")
            arrays.append(numpy.asarray(group[weight][()]))
        layers.append((name, arrays))
    return layers


def _keras3_layers(group, prefix=""):
    """Depth-first, children in natural order: (name, arrays) of each group with a ``vars`` child."""
    import h5py

    layers = []
    if "vars" in group and isinstance(group["vars"], h5py.Group):
        variables = group["vars"]
        keys = sorted((k for k in variables if isinstance(variables[k], h5py.Dataset)), key=_natural_key)
        name = _text(variables.attrs["name"]) if "name" in variables.attrs else prefix.strip("/")
        if keys:
            layers.append((name, [numpy.asarray(variables[k][()]) for k in keys]))
    for child in sorted(group, key=_natural_key):
        if child != "vars" and child != "optimizer" and isinstance(group[child], h5py.Group):
            layers += _keras3_layers(group[child], f"{prefix}{child}/")
    return layers


def read_layers(path):
    """Read a Keras weights file -> [(layer name, [kernel, bias, ...]), ...] in model order.

    Only layers that hold arrays are listed. In a Keras 3 file without ``name``
    attributes the name is the group path (``layers/conv2d_1``). One-line UserError
    for a missing or unreadable file or an unknown layout.
    """
    path = str(path)
    f = _open(path)
    if f is None:
        raise UserError(f"{path}: not an HDF5 file")
    try:
        with f:
            root = _keras2_root(f)
            if root is not None:
                return _keras2_layers(path, root)
            if _is_keras3(f):
                return _keras3_layers(f)
    except UserError:
        raise
    except MemoryError:
        raise UserError(f"{path}: a damaged HDF5 file (it asks for more memory than this machine has)") from None
    except Exception as exc:  # h5py reports a damaged file as KeyError, OSError, ValueError, RuntimeError, ...
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise UserError(f"{path}: damaged HDF5 file ({type(exc).__name__}: {first})") from None
    raise UserError(f"{path}: an HDF5 file but not Keras weights (no layer_names attribute and no vars groups)")
