"""Fig. 10: where in the picture the evidence for each predicted label lies.

The paper shows, for every label the CNN-RNN predicts, the image regions that drive it,
through a deconvolutional network (its ref. [40], Zeiler and Fergus). Here, for each
test picture and each step t of its beam-search path (labels l_1, ..., l_L):

1. the Eq. 5 score of the label predicted at that step, ``s_t[l_t] = x_t . U_l[l_t]``,
   is backpropagated through Eq. 4, ``x_t = ReLU(o(t) U_o_x + I U_I_x + b_x)``, to the
   image feature: ``dI = ((x_t > 0) * U_l[l_t]) @ U_I_x.T`` (the recurrent output o(t)
   does not depend on I: the image enters only through Eq. 4);
2. on through the feature normalisation ``train`` applied (``--feature-norm``) to the
   CNN layer the features came from (fc7 of the shipped CNN);
3. and through the hand-written CNN to the pixels (``vgg.vgg_backward(start=layer)``)
   with one of the ReLU rules of ``layers.activations``: ``"deconvnet"`` (only positive
   signals pass back) or ``"guided"`` (guided backpropagation: positive signals, where
   the forward unit was on). Max-pools route the signal to the forward maximum (the
   deconvnet's "switches").

The map of a step is ``sum over colour channels of |dpixels|``, normalised to sum 1
per picture: the share of the evidence at each pixel. :func:`mass_ratio` measures it
against the drawn objects: the share of a map that falls on the objects of the label
predicted at that step, divided by their share of the picture (1: no better than
uniform).
"""

import numpy as np

from minicnnrnn.cnn import preprocess, vgg
from minicnnrnn.core import backend
from minicnnrnn.core.backend import xp
from minicnnrnn.paths import tokens
from minicnnrnn.rnn import embedding, model, projection

RULES = ("deconvnet", "guided")


def cnn_forward(cnn_params, meta, images, layer):
    """The CNN's ``layer`` output for uint8 pictures, keeping the caches for the way back.

    images: (N, S, S, 3) uint8 host. Returns (f (N, D) on the backend, cache).
    """
    x = backend.to_device(preprocess.normalise(images, meta["preprocess"]))
    outs, cache = vgg.vgg_forward(cnn_params, meta, x, outputs=(layer,), train=True, dropout_p=0.0)
    return outs[layer].reshape(len(images), -1), cache


def normalise_forward(f, norm):
    """The ``--feature-norm`` of training data (train_data.normalise) on the backend,
    with a cache. f: (N, D). Returns (I (N, D), cache)."""
    mode = (norm or {"mode": "none"})["mode"]
    if mode == "l2":
        length = xp.maximum(xp.sqrt((f * f).sum(axis=1, keepdims=True)), 1e-12)
        return f / length, (mode, f / length, length)
    if mode == "scale":
        return f / norm["scale"], (mode, None, norm["scale"])
    return f, (mode, None, 1.0)


def normalise_backward(dI, cache):
    """Backward of :func:`normalise_forward`: for l2, ``(dI - I (I . dI)) / |f|``."""
    mode, I, length = cache
    if mode == "l2":
        return (dI - I * (I * dI).sum(axis=1, keepdims=True)) / length
    return dI / length


def step_feature_gradients(params, I, paths, lengths, variant):
    """d s_t[l_t] / dI for every step t of each image's predicted path (steps 1-2 above).

    params: CNN-RNN parameters (backend); I: (N, D) normalised features (backend);
    paths: (N, L) host label indices (-1 padding); lengths: (N,). Returns a list of T =
    max(lengths) arrays (N, D) on the backend, zero for images whose path is shorter.
    """
    N = len(paths)
    T = int(np.max(lengths)) if N else 0
    if T == 0:
        return []
    K = tokens.n_labels(params["U_l"])
    inputs = np.full((T, N), tokens.start_token(K), np.int64)
    for t in range(1, T):
        inputs[t] = np.where(paths[:, t - 1] >= 0, paths[:, t - 1], tokens.end_token(K))
    mask = (np.arange(T)[:, None] < np.asarray(lengths)[None, :]).astype(np.float32)
    scores, cache = model.path_forward(params, I, backend.to_device(inputs), backend.to_device(mask), variant)
    _, _, proj_cache, score_cache = cache
    out = []
    for t in range(T):
        dscores = np.zeros(scores.shape, np.float32)
        rows = np.nonzero(np.asarray(lengths) > t)[0]
        dscores[t, rows, paths[rows, t]] = 1.0
        dx, _ = embedding.tied_scores_backward(backend.to_device(dscores, scores.dtype), score_cache)
        _, dI, _ = projection.projection_backward(dx, proj_cache)
        out.append(dI)
    return out


def evidence_maps(dpixels):
    """(N, S, S, 3) backpropagated signal -> (N, S, S) host maps: sum_c |.|, each summing to 1."""
    m = backend.to_host(xp.abs(dpixels).sum(axis=3)).astype(np.float64)
    total = m.reshape(len(m), -1).sum(axis=1)[:, None, None]
    return np.divide(m, total, out=np.zeros_like(m), where=total > 0)


def attention_maps(params, cfg, cnn_params, meta, layer, images, paths, lengths, rules=RULES):
    """The Fig. 10 maps of pictures whose predicted paths are known.

    params: CNN-RNN (backend); cfg: its RunConfig (variant, feature_norm); cnn_params,
    meta, layer: the CNN whose ``layer`` made the features; images: (N, S, S, 3) uint8;
    paths, lengths: the beam search's prediction for these pictures.
    Returns {rule: (T, N, S, S) host maps}, T = max(lengths).
    """
    f, cnn_cache = cnn_forward(cnn_params, meta, images, layer)
    I, norm_cache = normalise_forward(f, cfg.feature_norm)
    maps = {rule: [] for rule in rules}
    for dI in step_feature_gradients(params, I, paths, lengths, cfg.variant):
        df = normalise_backward(dI, norm_cache)
        for rule in rules:
            dx, _ = vgg.vgg_backward(df, cnn_cache, input_grad=True, start=layer, relu_rule=rule)
            maps[rule].append(evidence_maps(dx))
    S = images.shape[1]
    return {rule: np.stack(m) if m else np.zeros((0, len(images), S, S)) for rule, m in maps.items()}


def features_of(cfg, cnn_params, meta, layer, images):
    """The normalised features of pictures as ``train`` saw them, (N, D) on the backend."""
    f, _ = cnn_forward(cnn_params, meta, images, layer)
    return normalise_forward(f, cfg.feature_norm)[0]


def mass_ratio(maps, paths, lengths, owners):
    """How much more of each map lies on the predicted label's objects than their share.

    maps: (T, N, S, S); paths, lengths: the predicted paths; owners: (N, S, S) uint8
    owner maps (label k drawn as k + 1, :func:`minicnnrnn.tinyscenes.scenes.render`).
    Only steps whose label is visible in the picture count. Returns (mean ratio, the
    number of (picture, step) pairs it averages; NaN and 0 when there are none).
    """
    ratios = []
    for t in range(maps.shape[0]):
        for n in np.nonzero(np.asarray(lengths) > t)[0]:
            inside = owners[n] == paths[n, t] + 1
            share = inside.mean()
            if share > 0:
                ratios.append(maps[t, n][inside].sum() / share)
    return (float(np.mean(ratios)) if ratios else float("nan")), len(ratios)
