"""Everything the estimators use of the package's training code, in one place.

The estimators (classifiers.py) add no second way to train: :func:`fit_model` builds the
same :class:`~minicnnrnn.training.config.RunConfig` that ``python -m minicnnrnn.train``
builds (``config.check_args``, then ``config.from_args``, whose ``RunConfig.validate`` is
the one check of every setting), holds out the same validation split
(``selection.split_validation``), fits the same feature normalisation
(``data.fit_feature_norm``) and runs the same loop (``loop.fit``: epochs, rmsprop,
back-off, the epoch chosen on validation). Predictions are ``kinds.predict_sets`` of the
model's row of ``kinds.KINDS``; files are ``checkpoint.save`` / ``checkpoint.load``, so the
commands and the estimators read each other's checkpoints.

Parameters and defaults come from RunConfig's fields (:data:`OPTIONS`): each field that is
a ``train`` option is an estimator parameter named as the option is (``embed`` is
``--embed``, RunConfig's ``E``), except two in scikit-learn's spelling:
``validation_fraction`` (``--val-fraction``) and ``random_state`` (``--seed``).
"""

import argparse
import contextlib
import dataclasses
import io
import numbers
import os
import tempfile

import numpy as np
from threadpoolctl import threadpool_limits

from minicnnrnn.core import backend, progress
from minicnnrnn.core.errors import UserError
from minicnnrnn.evaluation import metrics
from minicnnrnn.paths import label_paths
from minicnnrnn.training import checkpoint, config, kinds, loop, selection
from minicnnrnn.training import data as train_data
from minicnnrnn.training.config import RunConfig

# train's option (its argparse dest) -> the estimator parameter, where scikit-learn names it
PARAMETER_OF = {"val_fraction": "validation_fraction", "seed": "random_state"}
# RunConfig options that say which data or which model, not how to train: fit's X and the
# estimator's class give those; ap_mode only changes the mAP, which the estimators do not compute
NOT_PARAMETERS = ("model", "dataset", "ap_mode")


@dataclasses.dataclass(frozen=True)
class Option:
    """One estimator parameter: the RunConfig field and ``train`` option it is."""

    field: str  # RunConfig's name (E)
    dest: str  # train's argument (embed)
    flag: str  # the command line's spelling (--embed)
    default: object  # the command line's default (None: decided from the data)
    option: dict  # argparse's keywords (type, choices, action)


def _options():
    """{estimator parameter: :class:`Option`} from RunConfig's fields, in field order."""
    found = {}
    for f in dataclasses.fields(RunConfig):
        option = f.metadata.get("option")
        if option is None or f.name in NOT_PARAMETERS:
            continue
        flag = option["flag"] or "--" + f.name.replace("_", "-")
        dest = flag[2:].replace("-", "_")
        default = option.get("default", f.default)
        found[PARAMETER_OF.get(dest, dest)] = Option(f.name, dest, flag, default, option)
    return found


OPTIONS = _options()
TRAINING_DEFAULTS = {name: o.default for name, o in OPTIONS.items()}
# How to run (not saved in a checkpoint); None: leave the backend and BLAS threads as they are now
RUNNING_DEFAULTS = {"backend": None, "threads": None, "verbose": False}
DEFAULTS = {**TRAINING_DEFAULTS, **RUNNING_DEFAULTS}
KINDS = tuple(kinds.KINDS)


def is_path_model(model):
    """True for the models decoded as label paths by beam search (cnn-rnn, no-rnn, sr-cnn-rnn)."""
    return kinds.KINDS[model].paths


@contextlib.contextmanager
def session(backend_name=None, threads=None, verbose=False):
    """Run a block on ``backend_name`` ('numpy' or 'cupy'; None: the one selected now, or
    $MINICNNRNN_BACKEND) with BLAS limited to ``threads`` (None: untouched); without
    ``verbose`` the loop's progress lines and notes are not printed. The previous backend
    and quiet setting come back afterwards, so an estimator never changes them for its caller."""
    before, quiet = backend.name(), progress.is_quiet()
    backend.use(backend_name or before)
    progress.set_quiet(not verbose)
    try:
        with contextlib.ExitStack() as stack:
            if threads is not None:
                stack.enter_context(threadpool_limits(limits=int(threads), user_api="blas"))
            if not verbose:
                stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
            yield
    finally:
        backend.use(before)
        progress.set_quiet(quiet)


def _plain(name, value):
    """``value`` of parameter ``name`` as the Python type its option parses to (a NumPy
    integer from a parameter grid becomes an int, so the checkpoint's JSON can hold it);
    ValueError naming the parameter for a value of the wrong kind. Ranges are
    RunConfig.validate's to check."""
    option = OPTIONS[name].option
    if value is None and OPTIONS[name].default is None:
        return None  # decided from the data, as on the command line
    if option.get("action") == "store_true":
        kind, cast = (bool, np.bool_), bool
    elif option.get("type") is float:
        kind, cast = numbers.Real, float
    elif option.get("type") is not None:
        kind, cast = numbers.Integral, int
    else:
        kind, cast = str, str
    if not isinstance(value, kind) or (cast is not bool and isinstance(value, (bool, np.bool_))):
        raise ValueError(f"{name}: expected {cast.__name__}, got {value!r}")
    if "choices" in option and value not in option["choices"]:
        raise ValueError(f"{name}: {value!r} is not one of {', '.join(option['choices'])}")
    return cast(value)


def _arguments(model, settings):
    """train's argument namespace for ``model`` with ``settings`` ({estimator parameter:
    value}), every setting not given at the command line's default."""
    args = argparse.Namespace(model=model, ap_mode=None)  # ap_mode None: the dataset's protocol
    for name, o in OPTIONS.items():
        setattr(args, o.dest, _plain(name, settings.get(name, o.default)))
    return args


def _in_python_terms(exc):
    """A ValueError (scikit-learn's error for a bad parameter) from the configuration's
    UserError, naming the estimator parameter where the message names its option."""
    text = str(exc)
    for name, o in OPTIONS.items():
        if text.startswith(o.flag + ":") or text.startswith(o.flag + " "):
            text = f"{name} ({o.flag}){text[len(o.flag) :]}"
            break
    return ValueError(text)


def fit_model(model, settings, X, Y, label_names):
    """Train ``model`` (a key of kinds.KINDS) on host features X (n, D) and 0/1 labels Y
    (n, K) as ``train`` would with the options ``settings`` ({estimator parameter: value}).

    Returns the checkpoint state (host params, the RunConfig, label names and order, the
    epoch and history, the data fingerprint and run identity) that :func:`save` writes.
    With a validation fraction the params are the chosen epoch's (and, with tune_decoding,
    the beam and shortest path chosen too). A bad setting is a ValueError naming it.
    """
    args = _arguments(model, settings)
    try:
        config.check_args(args)  # before any work, as train checks before loading the data
        # No test split: the caller scores the model itself; the loop reads only train and validation.
        cnn = {"weights": None, "layer": None, "features": "arrays given to fit() in Python"}
        empty = train_data.Rows(X[:0])
        data = train_data.TrainingData("python", list(label_names), train_data.Rows(X), Y, empty, Y[:0], cnn=cnn)
        data = selection.split_validation(train_data.drop_unlabelled(data), args.val_fraction, args.seed)
        norm = train_data.fit_feature_norm(args.feature_norm, data.train_features)
        data = data.with_norm(norm)
        cfg = config.from_args(args, data, norm)  # RunConfig.validate: every setting, and them together
        with tempfile.TemporaryDirectory(prefix="minicnnrnn-fit-") as out:
            params, history = loop.fit(cfg, data, out)
    except UserError as exc:
        raise _in_python_terms(exc) from None
    if (cfg.tune_decoding or cfg.decode == "auto") and is_path_model(model) and data.val_labels is not None:
        cfg, _ = selection.tune_decoding(cfg, params, data)
    chosen, _ = selection.best_epoch(history)
    return {
        "params": backend.params_to_host(params),
        "config": cfg,
        "label_names": list(label_names),
        "label_order": label_paths.label_order(data.train_labels, cfg.label_order, cfg.seed),  # as the loop drew it
        "epoch": chosen or (history[-1]["epoch"] if history else cfg.epochs),
        "extra": {"history": history, "selected": "validation" if chosen else "last"},
        "data": checkpoint.data_fingerprint(data),
        "run_id": checkpoint.new_run_id(),
    }


def settings_of(cfg):
    """The estimator parameters ({name: value}) that describe a RunConfig (a loaded checkpoint)."""
    settings = {name: getattr(cfg, o.field) for name, o in OPTIONS.items()}
    settings["feature_norm"] = (cfg.feature_norm or {"mode": "none"})["mode"]
    return settings


def predict(cfg, params, X, ranking):
    """(label sets (n, K) uint8, scores (n, K) float32) of host features X (n, D), normalised
    as the model's training features were (``cfg.feature_norm``): ``kinds.predict_sets``.
    ranking: compute the path models' P(label in path) (slower); classifiers always give
    their confidences (``Decoded.ranking``)."""
    features = train_data.normalise(X, cfg.feature_norm)
    return kinds.predict_sets(cfg, backend.params_to_device(params, np.float32), features, ranking=ranking)


def overall_f1(pred, Y):
    """O-F1 (§4.1) of label sets against the truth, a fraction in [0, 1]."""
    return metrics.precision_recall_f1(pred, Y)["O-F1"]


def save(path, state):
    """Write a fitted model's checkpoint state (:func:`fit_model`'s, or :func:`load`'s) as
    a file ``predict --checkpoint`` reads (no optimiser state)."""
    checkpoint.save(os.fspath(path), {key: value for key, value in state.items() if key != "opt"})


def load(path):
    """The checkpoint state of a file written by ``train`` or :func:`save`."""
    state = checkpoint.load(path)
    state["label_names"] = list(state["label_names"])
    state["extra"].setdefault("history", [])
    return state
