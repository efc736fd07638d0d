"""VGG networks built from a torchvision-style config list; VGG16 is one config.

The paper (§4) takes the CNN part from VGG16 trained on ImageNet, keeps it fixed,
and feeds its fc7 activations to the joint projection as the image
representation I (Eq. 4). A VGG network is described by a short list:

    VGG16_CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                    512, 512, 512, "M", 512, 512, 512, "M"]

a number is a 3x3 convolution (stride 1, padding 1) with that many output
channels followed by ReLU; "M" is a 2x2 max-pool with stride 2. Then come the
fully connected layers: hidden layers of the sizes in ``meta["fc"]`` (each
followed by ReLU and, when training, dropout) and a classifier of
``meta["num_classes"]`` outputs.

Layer names follow the Caffe/paper convention: conv{block}_{n} (block counted
from 1, bumped after each pool), pool{block}, fc6, fc7, ..., logits. A conv or
fc output asked for by name is taken *after* its ReLU (for fc before dropout).

Parameters are a plain dict ``{"conv1_1/W": (3, 3, 3, 64), "conv1_1/b": (64,),
..., "fc6/W": (D_in, 4096), ..., "logits/W": (4096, K), "logits/b": (K,)}``;
the weights file is the .npz described in DESIGN.md (the same keys plus a
JSON ``meta`` string).
"""

import numpy

from minicnnrnn.cnn import weights_file
from minicnnrnn.core import backend
from minicnnrnn.core.backend import xp
from minicnnrnn.core.errors import UserError
from minicnnrnn.layers import activations, conv, dense, dropout, pool, winograd

FORMAT = "minicnnrnn-cnn/1"
VGG16_CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
# Inference runs the convolutions on chunks of images whose first feature map is at
# most this big (CPU: small enough for the allocator to reuse; GPU: the whole batch).
CONV_CHUNK_BYTES = 28 * 2**20
CONV_CHUNK_BYTES_GPU = 2**30
TORCHVISION_PREPROCESS = {
    "channel_order": "RGB",
    "scale": 1 / 255,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "resize": "crop",
}


def make_meta(
    config=VGG16_CONFIG,
    fc=(4096, 4096),
    num_classes=1000,
    input_size=224,
    preprocess=None,
    source="random initialisation",
):
    """The ``meta`` dict of a network (see DESIGN.md, CNN weights file)."""
    meta = {
        "format": FORMAT,
        "config": list(config),
        "fc": list(fc),
        "num_classes": num_classes,
        "input_size": input_size,
        "preprocess": dict(preprocess or TORCHVISION_PREPROCESS),
        "source": source,
    }
    validate_meta(meta, "meta")
    return meta


def layers(meta):
    """The network as a list of (kind, name, shape) in forward order.

    kind is "conv" (shape = kernel (3, 3, C_in, C_out)), "pool" (shape None) or
    "fc" (shape = (D_in, D_out)); the last fc is "logits" if num_classes is set.
    """
    out, block, n, channels, size = [], 1, 0, 3, meta["input_size"]
    for item in meta["config"]:
        if item == "M":
            out.append(("pool", f"pool{block}", None))
            block, n, size = block + 1, 0, size // 2
        else:
            n += 1
            out.append(("conv", f"conv{block}_{n}", (3, 3, channels, item)))
            channels = item
    width = size * size * channels  # the flattened (H, W, C) feature map
    sizes = list(meta["fc"]) + ([meta["num_classes"]] if meta["num_classes"] else [])
    names = [f"fc{6 + i}" for i in range(len(meta["fc"]))] + ["logits"]
    for name, d_out in zip(names, sizes):
        out.append(("fc", name, (width, d_out)))
        width = d_out
    return out


def param_shapes(meta):
    """{parameter name: shape} for every weight and bias of the network."""
    shapes = {}
    for kind, name, shape in layers(meta):
        if kind != "pool":
            shapes[f"{name}/W"], shapes[f"{name}/b"] = shape, (shape[-1],)
    return shapes


def init_params(meta, rng, dtype=numpy.float32):
    """Random host parameters: He-normal weights for ReLU layers, zero biases.

    rng: numpy.random.Generator. Returns {name: numpy array}; move them with
    ``backend.params_to_device`` before calling :func:`vgg_forward`.
    """
    params = {}
    for kind, name, shape in layers(meta):
        if kind == "pool":
            continue
        fan_in = int(numpy.prod(shape[:-1]))
        gain = 1.0 if name == "logits" else 2.0  # no ReLU after the classifier
        W = rng.standard_normal(shape, dtype=dtype)  # drawn in dtype: no float64 copy of fc6's 100M entries
        W *= numpy.sqrt(gain / fan_in).astype(dtype)
        params[f"{name}/W"] = W
        params[f"{name}/b"] = numpy.zeros(shape[-1], dtype=dtype)
    return params


def vgg_forward(
    params, meta, images, outputs=("fc7",), train=False, rng=None, dropout_p=0.5, method="auto", kernel_cache=None
):
    """Run the network up to the last requested output (§4: the paper's I is fc7).

    params: {name: array} on the selected backend; images: (N, S, S, 3) float,
    normalised as ``meta["preprocess"]`` says (S = meta["input_size"] when an fc
    output is asked for; conv/pool outputs work for any S).
    outputs: names such as "conv5_3", "pool5", "fc6", "fc7", "logits".
    train: keep the caches for :func:`vgg_backward`, run to the logits and apply
    dropout (probability dropout_p, masks drawn from rng) after hidden fc layers.
    method: convolution method, see :func:`minicnnrnn.layers.conv.conv_forward`.
    kernel_cache: optional dict, for inference with fixed weights over many
    batches (feature extraction): the Winograd-transformed kernels are stored in
    it on the first call and reused afterwards. Use a new dict if params change.

    Returns (outs, cache): outs maps each requested name to its array,
    (N, h, w, C) for conv/pool and (N, D) for fc; cache is None unless train.
    """
    net = layers(meta)
    names = [name for _, name, _ in net]
    outputs = (outputs,) if isinstance(outputs, str) else tuple(outputs)
    if not outputs:
        raise ValueError("vgg.vgg_forward: no output requested")
    unknown = [o for o in outputs if o not in names]
    if unknown:
        raise UserError(f"output {unknown[0]!r}: no such layer; this network has {', '.join(names)}")
    if images.ndim != 4 or images.shape[3] != 3:
        raise UserError(f"images: expected shape (N, S, S, 3), got {tuple(images.shape)}")
    if train and dropout_p > 0 and rng is None:
        raise ValueError("vgg.vgg_forward: train=True with dropout needs rng (a numpy.random.Generator)")
    todo = net[: len(net) if train else max(names.index(o) for o in outputs) + 1]
    run = dict(
        params=params,
        meta=meta,
        outputs=outputs,
        train=train,
        rng=rng,
        dropout_p=dropout_p,
        method=method,
        kernel_cache=kernel_cache,
    )
    if train:
        _, outs, steps = _run_layers(todo, images, run)
        return outs, steps
    # Inference: the convolutions a few images at a time (bounded memory, and arrays
    # small enough for the allocator to reuse), the fc layers on the whole batch.
    convs, fcs = [l for l in todo if l[0] != "fc"], [l for l in todo if l[0] == "fc"]
    first_channels = next(shape[3] for kind, _, shape in net if kind == "conv")  # the largest map
    budget = CONV_CHUNK_BYTES_GPU if backend.is_cupy() else CONV_CHUNK_BYTES
    chunk = max(1, budget // (images[0, :, :, :1].size * first_channels * images.itemsize))
    parts = [_run_layers(convs, images[i : i + chunk], run) for i in range(0, images.shape[0], chunk)]
    outs = {name: _concat([p[1][name] for p in parts]) for name in parts[0][1]}
    if fcs:
        _, fc_outs, _ = _run_layers(fcs, _concat([p[0] for p in parts]), run)
        outs.update(fc_outs)
    return outs, None


def _concat(arrays):
    """Join per-chunk outputs along the batch axis (no copy for a single chunk)."""
    return arrays[0] if len(arrays) == 1 else xp.concatenate(arrays)


def _run_layers(todo, h, run):
    """Apply the layers `todo` to h. Returns (last output, {requested name: output}, per-layer caches)."""
    outs, steps, train, params = {}, [], run["train"], run["params"]
    for kind, name, shape in todo:
        step = {"kind": kind, "name": name}
        if kind == "conv":
            W, U = params[f"{name}/W"], _cached_kernels(run, name)
            # For inference the ReLU is fused into the convolution (no cache, no extra pass).
            h, step["layer"] = conv.conv_forward(h, W, params[f"{name}/b"], 1, 1, run["method"], relu=not train, U=U)
            if train:
                h, step["relu"] = activations.relu_forward(h)
        elif kind == "pool":
            h, step["layer"] = pool.max_pool_forward_rows_first(h)
        else:
            if h.ndim == 4:  # first fc layer: flatten in (H, W, C) order
                step["shape"] = h.shape
                h = h.reshape(h.shape[0], -1)
                if h.shape[1] != shape[0]:
                    size = run["meta"]["input_size"]
                    raise UserError(
                        f"images: the feature map {tuple(step['shape'][1:])} gives {h.shape[1]} "
                        f"features but {name} expects {shape[0]}; use {size}x{size} images"
                    )
            h, step["layer"] = dense.dense_forward(h, params[f"{name}/W"], params[f"{name}/b"])
            if name != "logits":
                h, step["relu"] = _relu(h, train)
        if name in run["outputs"]:
            outs[name] = h
        if kind == "fc" and name != "logits" and train:
            p = run["dropout_p"]
            mask = dropout.make_mask(h.shape, p, run["rng"], h.dtype) if p > 0 else None
            h, step["drop"] = dropout.dropout_forward(h, mask)
        if train:
            steps.append(step)
    return h, outs, steps


def _cached_kernels(run, name):
    """The Winograd kernels of layer `name` from run["kernel_cache"] (computed on first use), or None."""
    cache, W = run["kernel_cache"], run["params"][f"{name}/W"]
    if cache is None or run["train"] or run["method"] == "im2col" or not conv.uses_winograd(W.shape, 1):
        return None
    if name not in cache:
        cache[name] = winograd.transform_kernels(W)
    return cache[name]


def _relu(h, train):
    """ReLU with a cache when training; in place (no extra memory) for inference."""
    if train:
        return activations.relu_forward(h)
    return xp.maximum(h, 0, out=h), None


def vgg_backward(dlogits, cache, input_grad=False, start=None, relu_rule="gradient"):
    """Backpropagate from the logits (or from the output of layer ``start``) through the network.

    dlogits: (N, num_classes), or with ``start`` the gradient with respect to that
    layer's output as :func:`vgg_forward` returns it (after its ReLU, before dropout),
    e.g. (N, D) at "fc7" for the paper's I; cache: from vgg_forward(..., train=True).
    relu_rule: how every ReLU passes the signal back, ``activations.RULES``: the true
    gradient, or the deconvnet / guided-backpropagation rules of Fig. 10 (then dx is a
    picture of evidence, not a derivative, and grads are not meaningful).
    Returns (dx, grads): dx is dL/dimages, (N, S, S, 3), when input_grad is True (else None),
    and grads is {name: gradient} with the keys and shapes of params (only the layers
    at or below ``start``).
    """
    if cache is None:
        raise ValueError("vgg.vgg_backward needs the cache of vgg_forward(..., train=True)")
    names = [step["name"] for step in cache]
    if start is not None and start not in names:
        raise UserError(f"start {start!r}: no such layer; this network has {', '.join(names)}")
    todo = cache if start is None else cache[: names.index(start) + 1]
    grads, d = {}, dlogits
    for step in reversed(todo):
        if "drop" in step and step["name"] != start:  # a named output is taken before its dropout
            d = dropout.dropout_backward(d, step["drop"])
        if "relu" in step:
            d = activations.relu_backward(d, step["relu"], relu_rule)
        if step["kind"] == "pool":
            d = pool.max_pool_backward(d, step["layer"])
            continue
        if step["kind"] == "conv":
            # The first layer's input is the image: its gradient is only computed when asked for.
            d, g = conv.conv_backward(d, step["layer"], input_grad=input_grad or step is not cache[0])
        else:
            d, g = dense.dense_backward(d, step["layer"])
        grads[f"{step['name']}/W"], grads[f"{step['name']}/b"] = g["W"], g["b"]
        if "shape" in step:
            d = d.reshape(step["shape"])
    return d, grads


def layer_table(meta, size=None):
    """Rows (name, output shape (h, w, C) or (D,), parameter count, FLOPs) for one image.

    size: input side (default meta["input_size"]). FLOPs count 2 per multiply-add.
    """
    size = size or meta["input_size"]
    rows, channels = [], 3
    for kind, name, shape in layers(meta):
        if kind == "conv":
            channels = shape[3]
            rows.append(
                (
                    name,
                    (size, size, channels),
                    int(numpy.prod(shape)) + channels,
                    conv.flops((1, size, size, shape[2]), shape, 1, 1),
                )
            )
        elif kind == "pool":
            size //= 2
            rows.append((name, (size, size, channels), 0, 0))
        else:
            rows.append((name, (shape[1],), shape[0] * shape[1] + shape[1], 2 * shape[0] * shape[1]))
    return rows


# ---------------------------------------------------------------- weights file


def validate_meta(meta, where):
    """Raise a one-line UserError (prefixed with `where`) if meta is not a valid network description."""
    bad, is_int = weights_file.meta_error(where), weights_file.is_int
    if not isinstance(meta, dict):
        bad("is not a JSON object")
    if meta.get("format") != FORMAT:
        bad(f"'format' is {meta.get('format')!r}, expected {FORMAT!r}")
    config = meta.get("config")
    if not isinstance(config, list) or not config or not all(c == "M" or is_int(c) for c in config):
        bad(f"'config' must be a non-empty list of channel counts and \"M\", got {config!r}")
    fc = meta.get("fc")
    if not isinstance(fc, list) or not all(is_int(f) for f in fc):
        bad(f"'fc' must be a list of positive layer sizes, got {fc!r}")
    if not (meta.get("num_classes") is None or is_int(meta.get("num_classes"), 0)):
        bad(f"'num_classes' must be an int >= 0 or null (0 or null: no classifier), got {meta.get('num_classes')!r}")
    size = meta.get("input_size")
    if not is_int(size) or size < 2 ** config.count("M"):
        bad(f"'input_size' must be an int of at least {2 ** config.count('M')}, got {size!r}")
    weights_file.validate_preprocess(meta.get("preprocess"), bad)


def save(path, params, meta):
    """Write params (host or device arrays) and meta to a weights .npz, atomically."""
    weights_file.save(path, params, meta, validate_meta, param_shapes)


def load(path):
    """Read a weights .npz. Returns (params {name: host numpy array}, meta dict).

    Raises a one-line UserError naming the file for a missing file, bad meta, or a
    missing or wrongly shaped array.
    """
    return weights_file.load(path, validate_meta, param_shapes)
