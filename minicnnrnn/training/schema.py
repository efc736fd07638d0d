"""One check of a loaded checkpoint, shared by ``predict`` and ``train --resume``.

:func:`minicnnrnn.training.config.RunConfig.from_dict` already checks each config key's
*type*; :func:`check` adds everything else a hand-edited or damaged checkpoint could get
wrong, each a one-line :class:`~minicnnrnn.core.errors.UserError` naming the file:

* every config value's range and the settings together, by
  :meth:`~minicnnrnn.training.config.RunConfig.validate` (the check ``train`` runs on its
  arguments too);
* the label names: K distinct strings; the label order: a permutation of the K labels;
  the epoch: a whole number >= 0;
* every parameter present, with the shape its model kind gives it
  (:data:`minicnnrnn.training.kinds.KINDS`, built for the checkpoint's K, D, E, H), a
  float dtype and finite values (in float32); no parameter the model does not have;
* the optimiser state (``v/<name>``, ``m/<name>``) like the parameters, and ``v`` >= 0.

:func:`fingerprint` describes the data a run trains on (label names, a SHA-256 of the
training label matrix, the feature matrix's shape, a SHA-256 of a fixed sample of the
feature values, :func:`features_hash`); the checkpoint stores it, and ``train --resume``
and ``analyze`` refuse other data (:func:`check_same_data`).
"""

import hashlib

import numpy as np

from minicnnrnn.core import limits
from minicnnrnn.core.errors import UserError
from minicnnrnn.training import kinds

FINGERPRINT_ROWS = 64  # feature rows hashed per split (and the first and last)


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
    """KNN stores its training set: X (M, D) float, Y (M, K) float, n_neighbours (1,) int with
    1 <= n_neighbours <= M."""
    if sorted(params) != ["X", "Y", "n_neighbours"]:
        raise UserError(f"{where}: a knn model has parameters X, Y and n_neighbours, got {', '.join(sorted(params))}")
    X, Y, n = params["X"], params["Y"], params["n_neighbours"]
    if X.ndim != 2 or X.shape[1] != cfg.D or X.dtype.kind != "f":
        raise UserError(f"{where}: parameter X must be a float (M, D = {cfg.D}) matrix, got {X.dtype} {X.shape}")
    if Y.shape != (X.shape[0], cfg.K) or Y.dtype.kind != "f":
        raise UserError(f"{where}: parameter Y must be a float ({X.shape[0]}, K = {cfg.K}) matrix, got {Y.shape}")
    if n.shape != (1,) or n.dtype.kind not in "iu" or not 1 <= int(n[0]) <= X.shape[0]:
        raise UserError(f"{where}: parameter n_neighbours must hold one integer between 1 and {X.shape[0]}")
    limits.check_finite(X, f"{where}: parameter X")


def check_opt_state(opt, params, where):
    """An rmsprop state (``optim.RMSprop.state_dict``): each ``v/<name>`` and ``m/<name>``
    of its parameter's shape, float, finite in float32, ``v`` (a mean of squares) >= 0;
    nothing else (a missing one is reported by the optimiser when it loads them)."""
    if not opt:
        return
    expected = {f"{kind}/{name}": params[name] for kind in ("v", "m") for name in params}
    for key in sorted(opt):
        if key not in expected:
            raise UserError(f"{where}: optimiser state {key} does not belong to the model")
        value = opt[key]
        if value.shape != expected[key].shape or value.dtype.kind != "f":
            raise UserError(
                f"{where}: optimiser state {key} is {value.dtype} {value.shape}, expected float {expected[key].shape}"
            )
        limits.check_finite(value, f"{where}: optimiser state {key}")
        if key.startswith("v/") and (value < 0).any():
            raise UserError(f"{where}: optimiser state {key} holds negative values (a mean of squares)")


def first_non_finite(arrays):
    """The name of the first array of a {name: array} dict that is not finite in float32, or None."""
    return next((name for name, value in arrays.items() if not limits.all_finite(value)), None)


def check(state, where):
    """The whole check of a loaded checkpoint ``state`` (checkpoint.load's dict)."""
    cfg = state["config"]
    cfg.validate(where)  # RunConfig's one check of its settings (from_dict ran it too; a state built in code did not)
    epoch = state["epoch"]
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise UserError(f"{where}: epoch {epoch!r} is not a whole number >= 0")
    check_labels(state["label_names"], state["label_order"], cfg.K, where)
    if not state["params"]:
        raise UserError(f"{where}: checkpoint holds no parameters")
    check_params(state["params"], cfg, where)
    if cfg.model != "knn":
        check_opt_state(state.get("opt"), state["params"], where)


# ---------------------------------------------------------------------------
# The data a run was trained on
# ---------------------------------------------------------------------------


def fingerprint(label_names, train_labels, feature_shape, features_sha256=None):
    """JSON-able description of a training set: its label names, the SHA-256 of its
    (N, K) 0/1 label matrix (as uint8), the (N, D) shape of its features and
    ``features_sha256`` (:func:`features_hash`)."""
    labels = np.ascontiguousarray(np.asarray(train_labels), dtype=np.uint8)
    result = {
        "label_names": [str(n) for n in label_names],
        "labels_sha256": hashlib.sha256(labels.tobytes() + repr(labels.shape).encode()).hexdigest(),
        "feature_shape": [int(n) for n in feature_shape],
    }
    if features_sha256 is not None:
        result["features_sha256"] = features_sha256
    return result


def features_hash(data):
    """SHA-256 of the feature values of a dataset (``train_data.TrainingData``): the first,
    the last and :data:`FINGERPRINT_ROWS` rows drawn with a fixed seed from the whole
    feature array behind the training split and behind the test split, as float32. The
    arrays, not the split's rows: a validation split or dropped images change the labels'
    hash, not this one, so ``analyze`` (which splits nothing off) compares it too. A sample
    keeps it cheap for a memory-mapped file of gigabytes; changed values anywhere in it
    (other features, a re-extraction) change the hash."""
    digest = hashlib.sha256()
    for rows in (data.train_features, data.test_features):
        array = getattr(rows, "array", rows)  # Rows, or a plain array
        n = len(array)
        picks = np.random.default_rng(0).integers(0, max(n, 1), FINGERPRINT_ROWS) if n else np.zeros(0, int)
        index = np.unique(np.concatenate([picks, [0, n - 1]] if n else [picks]))
        digest.update(repr(tuple(array.shape)).encode())
        digest.update(np.ascontiguousarray(array[index], dtype=np.float32).tobytes())
    return digest.hexdigest()


def check_same_data(where, saved, current, advice=None):
    """UserError when the fingerprint ``saved`` in a checkpoint differs from ``current``
    (None ``saved``: a checkpoint from before fingerprints; nothing to compare; the
    feature values are compared when both fingerprints have their hash)."""
    if not saved:
        return
    if not isinstance(saved, dict):
        raise UserError(f"{where}: corrupt data fingerprint in the checkpoint")
    keys = [("label_names", "label names"), ("feature_shape", "feature shape"), ("labels_sha256", "labels")]
    if saved.get("features_sha256") and current.get("features_sha256"):
        keys.append(("features_sha256", "feature values"))
    for key, what in keys:
        if saved.get(key) != current[key]:
            detail = ""
            if key == "feature_shape":
                detail = f" ({tuple(saved.get(key) or ())} vs {tuple(current[key])})"
            elif key == "label_names":
                old, new = saved.get(key) or [], current[key]
                diff = next((f"{a!r} vs {b!r}" for a, b in zip(old, new) if a != b), f"{len(old)} vs {len(new)}")
                detail = f" ({diff})"
            advice = (
                advice or "--resume continues only on the same data: use another --out, or --overwrite to start again"
            )
            raise UserError(f"{where}: was trained on other data (its {what} differ{detail}); {advice}")
