"""Run the four analyses of a trained CNN-RNN (and optionally a second model) on a dataset.

:func:`collect` returns one plain dict of results that :mod:`minicnnrnn.analysis.report`
turns into files; nothing here writes to disk. Shapes: N test images, K labels.
"""

import dataclasses

import numpy as np

from minicnnrnn.analysis import attention, by_size, neighbours, per_class
from minicnnrnn.core import backend
from minicnnrnn.core.errors import UserError
from minicnnrnn.evaluation import metrics
from minicnnrnn.tinyscenes import features, scenes
from minicnnrnn.training import kinds


@dataclasses.dataclass(frozen=True)
class Options:
    """neighbours: labels listed per row of Table 5 and Fig. 9; joint_images: test images
    of Fig. 9; attention_images: test pictures whose Fig. 10 maps are measured (the first
    ones of the split); pictures: how many of them are drawn; n_test: built-in test split size."""

    neighbours: int = 5
    joint_images: int = 8
    attention_images: int = 64
    pictures: int = 6
    n_test: int = 1000


def check_fits(state, data, where):
    """UserError unless the checkpoint's K, D and label names are those of the data."""
    cfg = state["config"]
    K, D = data.train_labels.shape[1], data.train_features.shape[1]
    if (cfg.K, cfg.D) != (K, D) or list(state["label_names"]) != list(data.label_names):
        raise UserError(
            f"{where}: trained with K = {cfg.K}, D = {cfg.D} on {cfg.dataset}, but --dataset "
            f"{data.name} has K = {K}, D = {D} (or other label names); pass the dataset it was trained on"
        )


def predictions(state, data):
    """(pred01 (N, K), scores (N, K)) of a checkpoint's model on the test split (train's decoding)."""
    cfg = state["config"]
    params = backend.params_to_device(state["params"], np.float32)
    return kinds.predict_sets(cfg, params, data.with_norm(cfg.feature_norm).test_features)


def model_results(state, data):
    """Per-class table, C-P/C-R as ``train`` computes them, and the predictions of one model."""
    pred, _ = predictions(state, data)
    table = per_class.per_class(pred, data.test_labels, data.label_names, data.test_ignore)
    summary = metrics.precision_recall_f1(pred, data.test_labels, data.test_ignore)
    kind = state["config"].model
    return {"kind": kind, "pred": pred, "per_class": table, "C-P": summary["C-P"], "C-R": summary["C-R"]}


def object_sizes(data, options):
    """(N, K) object size of each test label (Fig. 8), or None when the dataset has none."""
    if data.test_areas is not None:
        return data.test_areas
    if data.name == "builtin":
        return scenes.load_objects("test", options.n_test)[1]
    return None


def joint_space(state, data, options):
    """Fig. 9 rows for the first test images: nearest labels, the beam's path and the truth."""
    cfg = state["config"]
    params = backend.params_to_device(state["params"], np.float32)
    n = min(options.joint_images, len(data.test_labels))
    I = data.with_norm(cfg.feature_norm).test_features[np.arange(n)]
    near = neighbours.image_neighbours(params, I, data.label_names, options.neighbours)
    decoded = kinds.KINDS[cfg.model].decode(
        cfg, params, backend.to_device(I), kinds.DecodeOptions(cfg.beam, cfg.k, cfg.min_labels)
    )
    names = data.label_names
    rows = []
    for i in range(n):
        path = [names[k] for k in decoded.labels[i, : decoded.lengths[i]]]
        truth = [names[k] for k in np.nonzero(data.test_labels[i])[0]]
        rows.append({"image": i, "nearest": near[i], "predicted": path, "truth": truth})
    return rows


def attention_results(state, data, options):
    """Fig. 10 on the built-in pictures: maps, paths and the mass ratio per rule; None
    (with the reason) for features without pictures or another CNN."""
    cfg = state["config"]
    if data.name != "builtin" or (cfg.cnn or {}).get("weights") != "builtin":
        return None, "Fig. 10 needs the pictures and the CNN behind the features: only the built-in data has both here"
    n = min(options.attention_images, options.n_test)
    images = scenes.load("test", options.n_test)[0][:n]
    owners = scenes.load_objects("test", options.n_test)[0][:n]
    cnn_params, meta = features.load_builtin_cnn()
    cnn_params = backend.params_to_device(cnn_params)
    layer = (cfg.cnn or {}).get("layer") or "fc7"
    params = backend.params_to_device(state["params"], np.float32)
    I = attention.features_of(cfg, cnn_params, meta, layer, images)
    decoded = kinds.KINDS[cfg.model].decode(cfg, params, I, kinds.DecodeOptions(cfg.beam, cfg.k, cfg.min_labels))
    maps = attention.attention_maps(params, cfg, cnn_params, meta, layer, images, decoded.labels, decoded.lengths)
    ratios = {rule: attention.mass_ratio(m, decoded.labels, decoded.lengths, owners) for rule, m in maps.items()}
    return {
        "images": images,
        "owners": owners,
        "paths": decoded.labels,
        "lengths": decoded.lengths,
        "probabilities": decoded.probabilities,
        "maps": maps,
        "mass_ratio": {rule: r[0] for rule, r in ratios.items()},
        "pairs": {rule: r[1] for rule, r in ratios.items()},
        "pictures": min(options.pictures, n),
    }, None


def collect(state, data, other=None, options=Options()):
    """All four analyses. state/other: checkpoint.load results (state a CNN-RNN); data:
    ``train_data.load`` (raw features). Returns a dict (see report.write_all)."""
    if state["config"].model != "cnn-rnn":
        raise UserError(f"--checkpoint: analyze reads a cnn-rnn model, this one is {state['config'].model!r}")
    names = data.label_names
    runs = [model_results(state, data)] + ([model_results(other, data)] if other is not None else [])
    areas = object_sizes(data, options)
    sizes = None
    if areas is not None:
        sizes = {r["kind"]: by_size.recall_by_size(r["pred"], data.test_labels, areas) for r in runs}
    att, att_note = attention_results(state, data, options)
    return {
        "dataset": data.name,
        "label_names": names,
        "frequency_order": per_class.frequency_order(data.train_labels, names),
        "table5": neighbours.label_neighbours(state["params"]["U_l"], names, options.neighbours),
        "joint_space": joint_space(state, data, options),
        "models": runs,
        "by_size": sizes,
        "attention": att,
        "attention_note": att_note,
    }
