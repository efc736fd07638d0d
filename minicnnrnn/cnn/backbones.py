"""One interface over the CNNs a weights file can hold: VGG (:mod:`vgg`) or EfficientNet-Lite
(:mod:`efficientnet`).

A weights ``.npz``'s ``meta["format"]`` names its network; the commands (``extract``,
``predict``, ``convert``) call the functions here and never ask which it is:

* :func:`load` / :func:`save` a weights file;
* :func:`compute` ``(params, meta, images, outputs) -> ({name: array}, cache)``;
* :func:`feature_rows`: images -> one feature row per image, the paper's I (Eq. 4), the
  one function every command that turns images into features calls;
* :func:`layer_table` rows ``(name, output shape, parameters, FLOPs)``;
* :func:`default_layer`: the feature the paper's I is taken from by default
  (VGG16: fc7, §4; EfficientNet: the 1280-d global average pool).
"""

import json

import numpy

from minicnnrnn.cnn import efficientnet, vgg
from minicnnrnn.core import backend, fileio
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


def feature_rows(params, meta, images, layer, kernel_cache=None):
    """I = CNN_layer(image), one flattened row per image (Eq. 4's image representation).

    params: {name: array} on the backend (``backend.params_to_device``); images: (N, S, S, 3)
    float32 host, already normalised (``preprocess.load_image`` / ``preprocess.normalise``);
    layer: the output to keep (fc7, pool, ...); kernel_cache: an optional dict reused over
    many batches (the Winograd-transformed kernels, see vgg.vgg_forward). Returns
    (N, D) float32 host rows, a conv or pool map flattened in (H, W, C) order.
    """
    outs, _ = compute(params, meta, backend.to_device(images), outputs=(layer,), kernel_cache=kernel_cache)
    return backend.to_host(outs[layer]).reshape(len(images), -1)


def layer_table(meta):
    """Rows (name, output shape, parameter count, FLOPs) of one image at meta["input_size"]."""
    return module_of(meta).layer_table(meta)


def default_layer(meta):
    """The layer ``extract`` stores when --layer is not given: fc7 (VGG), pool (EfficientNet)."""
    if module_of(meta) is efficientnet:
        return efficientnet.DEFAULT_LAYER
    return "fc7"
