"""One interface over the CNNs a weights file can hold: VGG (:mod:`vgg`) or EfficientNet-Lite
(:mod:`efficientnet`).

A weights ``.npz``'s ``meta["format"]`` names its network; the commands (``extract``,
``predict``, ``convert``) call the functions here and never ask which it is:

* :func:`load` / :func:`save` a weights file;
* :func:`compute` ``(params, meta, images, outputs) -> ({name: array}, cache)``;
* :func:`layer_table` rows ``(name, output shape, parameters, FLOPs)``;
* :func:`default_layer`: the feature the paper's I is taken from by default
  (VGG16: fc7, §4; EfficientNet: the 1280-d global average pool).
"""

import json

import numpy

from minicnnrnn.cnn import efficientnet, vgg
from minicnnrnn.core import fileio
from minicnnrnn.core.errors import UserError

MODULES = {vgg.FORMAT: vgg, efficientnet.FORMAT: efficientnet}


def module_of(meta, where="meta"):
    """The module (vgg or efficientnet) that runs a network described by ``meta``."""
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if fmt not in MODULES:
        raise UserError(f"{where}: meta 'format' is {fmt!r}, expected one of {', '.join(MODULES)}")
    return MODULES[fmt]


def _peek_format(path):
    """meta["format"] of a weights .npz without reading its arrays; None if that fails."""
    try:
        with numpy.load(path, allow_pickle=False) as z:
            return json.loads(str(z["meta"])).get("format")
    except Exception:  # any problem: let vgg.load report it in one line
        return None


def load(path):
    """Read a weights .npz of any supported network. Returns (params, meta)."""
    fmt = _peek_format(path)
    if fmt is None:  # the quick look failed: read it all (bad files get their one-line error here)
        arrays = fileio.load_npz(path, required=("meta",))
        try:
            fmt = json.loads(str(arrays["meta"])).get("format")
        except (ValueError, AttributeError):
            fmt = None  # vgg.load names the problem
    return MODULES.get(fmt, vgg).load(path)


def save(path, params, meta):
    """Write a weights .npz (atomically) for the network meta describes."""
    module_of(meta, str(path)).save(path, params, meta)


def compute(params, meta, images, outputs, **kwargs):
    """Run the network to the requested outputs; see vgg.vgg_forward / efficientnet.efficientnet_forward.

    Returns (outs {name: array}, cache) as those do."""
    forward = vgg.vgg_forward if module_of(meta) is vgg else efficientnet.efficientnet_forward
    return forward(params, meta, images, outputs=outputs, **kwargs)


def layer_table(meta):
    """Rows (name, output shape, parameter count, FLOPs) of one image at meta["input_size"]."""
    return module_of(meta).layer_table(meta)


def default_layer(meta):
    """The layer ``extract`` stores when --layer is not given: fc7 (VGG), pool (EfficientNet)."""
    if module_of(meta) is efficientnet:
        return efficientnet.DEFAULT_LAYER
    return "fc7"
