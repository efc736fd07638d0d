"""One check of a loaded checkpoint, shared by ``predict`` and ``train --resume``.

:func:`minicnnrnn.training.config.RunConfig.from_dict` already checks each config key's
*type*; :func:`check` adds everything else a hand-edited or damaged checkpoint could get
wrong, each a one-line :class:`~minicnnrnn.core.errors.UserError` naming the file:

* every config value's range (K, D, E, H >= 1; a known LSTM variant, label order, AP mode
  and feature normalisation with its statistic; lr > 0; dropout in [0, 1); beam >= 1;
  1 <= k; 0 <= min_labels <= k; ``cnn`` an object naming its weights and layer);
* the label names: K distinct strings; the label order: a permutation of the K labels;
  the epoch: a whole number >= 0;
* every parameter present, with the shape its model kind gives it
  (:data:`minicnnrnn.training.kinds.KINDS`, built for the checkpoint's K, D, E, H), a
  float dtype and finite values; no parameter the model does not have.

:func:`fingerprint` describes the data a run trains on (label names, a SHA-256 of the
training label matrix, the feature matrix's shape); the checkpoint stores it, and
``train --resume`` refuses to continue on other data (:func:`check_same_data`).
"""

import hashlib
import math

import numpy as np

from minicnnrnn.core import limits
from minicnnrnn.core.errors import UserError
from minicnnrnn.paths import label_paths
from minicnnrnn.rnn import lstm
from minicnnrnn.training import kinds

VARIANTS = lstm.VARIANTS
AP_MODES = ("voc07", "sklearn")
FEATURE_NORMS = ("l2", "scale", "none")


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_config(cfg, where):
    """Ranges of every :class:`RunConfig` field (the types are checked by ``from_dict``)."""

    def bad(key, why):
        raise UserError(f"{where}: checkpoint config {key} = {getattr(cfg, key)!r} {why}")

    for key in ("K", "D", "E", "H", "batch_size", "beam", "k"):
        if getattr(cfg, key) < 1:
            bad(key, "must be >= 1")
    for key in ("epochs", "seed", "min_labels"):
        if getattr(cfg, key) < 0:
            bad(key, "must be >= 0")
    if cfg.k > cfg.K:
        bad("k", f"must be at most K = {cfg.K}")
    if cfg.min_labels > cfg.k:
        bad("min_labels", f"must be at most k = {cfg.k}")
    if cfg.variant not in VARIANTS:
        bad("variant", f"is not one of {', '.join(VARIANTS)}")
    if cfg.label_order not in label_paths.ORDERS:
        bad("label_order", f"is not one of {', '.join(label_paths.ORDERS)}")
    if cfg.ap_mode not in AP_MODES:
        bad("ap_mode", f"is not one of {', '.join(AP_MODES)}")
    if not (_number(cfg.lr) and cfg.lr > 0):
        bad("lr", "must be a positive finite number")
    if cfg.recurrent_lr_scale is not None and not (_number(cfg.recurrent_lr_scale) and cfg.recurrent_lr_scale > 0):
        bad("recurrent_lr_scale", "must be a positive finite number or null")
    if not (_number(cfg.clip) and cfg.clip >= 0):
        bad("clip", "must be a finite number >= 0")
    if not (_number(cfg.dropout) and 0 <= cfg.dropout < 1):
        bad("dropout", "must be in [0, 1)")
    norm = cfg.feature_norm
    if norm is not None:
        if not isinstance(norm, dict) or norm.get("mode") not in FEATURE_NORMS:
            bad("feature_norm", f"must be null or an object with mode one of {', '.join(FEATURE_NORMS)}")
        if norm["mode"] == "scale" and not (_number(norm.get("scale")) and norm["scale"] > 0):
            bad("feature_norm", "has mode scale but no positive finite scale")
    cnn = cfg.cnn
    if cnn is not None:
        if not all(isinstance(cnn.get(key), (str, type(None))) for key in ("weights", "layer")):
            bad("cnn", "must name its weights and layer as text (or null)")


def check_labels(names, order, K, where):
    """K distinct label names (strings) and a label order that is a permutation of them."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise UserError(f"{where}: label_names must be a list of strings")
    if len(names) != K:
        raise UserError(f"{where}: {len(names)} label names for K = {K} labels")
    check_unique_names(names, where)
    if order.shape != (K,) or order.dtype.kind not in "iu" or not np.array_equal(np.sort(order), np.arange(K)):
        raise UserError(f"{where}: label_order is not a permutation of the {K} labels")


def check_unique_names(names, where):
    """UserError naming the first label name that appears twice."""
    seen = set()
    for name in names:
        if name in seen:
            raise UserError(f"{where}: label name {name!r} appears more than once (label names must be unique)")
        seen.add(name)


def check_features(features, where):
    """A feature matrix a model can learn from: (N, D) with D >= 1 and a real number type
    (complex values would lose their imaginary part silently; bool is not a feature)."""
    if features.ndim != 2:
        raise UserError(f"{where}: features must be an (N, D) matrix, got shape {features.shape}")
    if features.dtype.kind not in "iuf":
        raise UserError(f"{where}: features have dtype {features.dtype}; expected real numbers (float or int)")
    if features.shape[1] < 1:
        raise UserError(f"{where}: features have D = 0 columns (the model would see no image)")


def expected_shapes(cfg):
    """{parameter name: shape} of a ``cfg.model`` model for the checkpoint's K, D, E, H:
    the parameters its :data:`kinds.KINDS` initialiser makes (for tiny sizes the check
    is cheap; the shapes grow with the config, never with the file)."""
    params = kinds.KINDS[cfg.model].init(cfg, np.random.default_rng(0))
    return {name: tuple(value.shape) for name, value in params.items()}


def check_params(params, cfg, where):
    """Every parameter of the model present, of its shape, float and finite; none extra."""
    # The expected shapes come from building the model, so its size must be near the file's
    # first: a hand-edited D = 10**9 is refused here, before anything that large is made.
    K, D, E, H = cfg.K, cfg.D, cfg.E, cfg.H
    upper = (D + K + 2) * E + 6 * H * (E + H) + 4 * H + K + 2 * E + 2
    held = sum(int(np.asarray(v).size) for v in params.values())
    if upper > 4 * held + 10_000_000:
        raise UserError(
            f"{where}: checkpoint config sizes K = {K}, D = {D}, E = {E}, H = {H} do not match its "
            f"parameters ({held:,} numbers)"
        )
    if cfg.model == "knn":
        return _check_knn(params, cfg, where)
    shapes = expected_shapes(cfg)
    for name, shape in shapes.items():
        if name not in params:
            raise UserError(f"{where}: parameter {name} is missing (a {cfg.model} model has {', '.join(shapes)})")
        value = params[name]
        if tuple(value.shape) != shape:
            raise UserError(
                f"{where}: parameter {name} has shape {tuple(value.shape)}, but the config "
                f"(K = {K}, D = {D}, E = {E}, H = {H}) gives {shape}"
            )
        if value.dtype.kind != "f":
            raise UserError(f"{where}: parameter {name} has dtype {value.dtype}, expected a float type")
        limits.check_finite(value, f"{where}: parameter {name}")
    extra = sorted(set(params) - set(shapes))
    if extra:
        raise UserError(f"{where}: parameter {extra[0]} does not belong to a {cfg.model} model")


def _check_knn(params, cfg, where):
    """KNN stores its training set: X (M, D) float, Y (M, K) float, k (1,) int with 1 <= k <= M."""
    if sorted(params) != ["X", "Y", "k"]:
        raise UserError(f"{where}: a knn model has parameters X, Y and k, got {', '.join(sorted(params))}")
    X, Y, k = params["X"], params["Y"], params["k"]
    if X.ndim != 2 or X.shape[1] != cfg.D or X.dtype.kind != "f":
        raise UserError(f"{where}: parameter X must be a float (M, D = {cfg.D}) matrix, got {X.dtype} {X.shape}")
    if Y.shape != (X.shape[0], cfg.K) or Y.dtype.kind != "f":
        raise UserError(f"{where}: parameter Y must be a float ({X.shape[0]}, K = {cfg.K}) matrix, got {Y.shape}")
    if k.shape != (1,) or k.dtype.kind not in "iu" or not 1 <= int(k[0]) <= X.shape[0]:
        raise UserError(f"{where}: parameter k must hold one integer between 1 and {X.shape[0]}")
    limits.check_finite(X, f"{where}: parameter X")


def check(state, where):
    """The whole check of a loaded checkpoint ``state`` (checkpoint.load's dict)."""
    cfg = state["config"]
    check_config(cfg, where)
    epoch = state["epoch"]
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise UserError(f"{where}: epoch {epoch!r} is not a whole number >= 0")
    check_labels(state["label_names"], state["label_order"], cfg.K, where)
    if not state["params"]:
        raise UserError(f"{where}: checkpoint holds no parameters")
    check_params(state["params"], cfg, where)


# ---------------------------------------------------------------------------
# The data a run was trained on
# ---------------------------------------------------------------------------


def fingerprint(label_names, train_labels, feature_shape):
    """JSON-able description of a training set: its label names, the SHA-256 of its
    (N, K) 0/1 label matrix (as uint8) and the (N, D) shape of its features."""
    labels = np.ascontiguousarray(np.asarray(train_labels), dtype=np.uint8)
    return {
        "label_names": [str(n) for n in label_names],
        "labels_sha256": hashlib.sha256(labels.tobytes() + repr(labels.shape).encode()).hexdigest(),
        "feature_shape": [int(n) for n in feature_shape],
    }


def check_same_data(where, saved, current):
    """UserError when the fingerprint ``saved`` in a checkpoint differs from ``current``
    (None ``saved``: a checkpoint from before fingerprints; nothing to compare)."""
    if not saved:
        return
    if not isinstance(saved, dict):
        raise UserError(f"{where}: corrupt data fingerprint in the checkpoint")
    for key, what in (("label_names", "label names"), ("feature_shape", "feature shape"), ("labels_sha256", "labels")):
        if saved.get(key) != current[key]:
            detail = ""
            if key == "feature_shape":
                detail = f" ({tuple(saved.get(key) or ())} vs {tuple(current[key])})"
            elif key == "label_names":
                old, new = saved.get(key) or [], current[key]
                diff = next((f"{a!r} vs {b!r}" for a, b in zip(old, new) if a != b), f"{len(old)} vs {len(new)}")
                detail = f" ({diff})"
            raise UserError(
                f"{where}: was trained on other data (its {what} differ{detail}); "
                "--resume continues only on the same data: use another --out, or --overwrite to start again"
            )
