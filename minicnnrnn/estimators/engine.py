"""Everything the estimators use of the package's training code, in one place.

The estimators (classifiers.py) add no second way to train: :func:`fit_model` builds the
same :class:`~minicnnrnn.training.config.RunConfig` that ``python -m minicnnrnn.train``
builds (``config.from_args`` on the command's own argument defaults), holds out the same
validation split, fits the same feature normalisation and runs the same loop
(``loop.fit``: epochs, rmsprop, back-off, the epoch chosen on validation). Predictions are
``models.predict_sets`` of the model's row of ``models.KINDS``; files are
``checkpoint.save`` / ``checkpoint.load``, so the commands and the estimators read each
other's checkpoints.

Names: an estimator parameter (``validation_fraction``, ``random_state``) is the
command's option (``--val-fraction``, ``--seed``) in scikit-learn's spelling; the rest are
spelled as the options are (``embed`` is ``--embed``, RunConfig's ``E``).
"""

import contextlib
import io
import os
import tempfile

import numpy as np
from threadpoolctl import threadpool_limits

from minicnnrnn import train
from minicnnrnn.core import backend, progress
from minicnnrnn.evaluation import metrics
from minicnnrnn.rnn import label_paths
from minicnnrnn.training import checkpoint, config, loop, models, selection
from minicnnrnn.training import data as train_data

# estimator parameter -> train's argument (the same name where absent)
ARGUMENT_OF = {"validation_fraction": "val_fraction", "random_state": "seed"}
# train's argument -> RunConfig field (the same name where absent)
FIELD_OF = {"embed": "E", "hidden": "H"}


def _command_defaults():
    """{estimator parameter: default} of every training option: what ``python -m
    minicnnrnn.train`` uses when the option is not given (its parser reads most of them
    from RunConfig's fields), so an estimator left at its defaults is the command's run."""
    args = vars(train.make_parser().parse_args([]))
    defaults = {name: args[arg] for name, arg in ARGUMENT_OF.items()}
    defaults.update({name: value for name, value in args.items() if name not in ARGUMENT_OF.values()})
    for name in NOT_TRAINING:
        defaults.pop(name)
    return defaults


# train's arguments that say where the data and outputs are, or how to run, not what to train
NOT_TRAINING = ("model", "compare", "dataset", "root", "features", "n_train", "n_test", "ap_mode")
NOT_TRAINING += ("out", "resume", "overwrite", "quiet", "threads", "backend")
TRAINING_DEFAULTS = _command_defaults()
# How to run (not saved in a checkpoint); None: leave the backend and BLAS threads as they are now
RUNNING_DEFAULTS = {"backend": None, "threads": None, "verbose": False}
DEFAULTS = {**TRAINING_DEFAULTS, **RUNNING_DEFAULTS}
KINDS = tuple(models.KINDS)


def is_path_model(model):
    """True for the models decoded as label paths by beam search (cnn-rnn, no-rnn)."""
    return models.KINDS[model].paths


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


def fit_model(model, settings, X, Y, label_names):
    """Train ``model`` (a key of models.KINDS) on host features X (n, D) and 0/1 labels Y
    (n, K) as ``train`` would with the options ``settings`` ({estimator parameter: value}).

    Returns {"params": host arrays, "config": the RunConfig, "history": the epoch log,
    "label_order": (K,) the training path order}. With a validation fraction the params are
    the chosen epoch's (and, with tune_decoding, the beam and shortest path chosen too).
    """
    args = train.make_parser().parse_args([])
    for name, value in settings.items():
        if name in TRAINING_DEFAULTS:
            setattr(args, ARGUMENT_OF.get(name, name), value)
    args.model = model
    train.check_args(args)
    # No test split: the caller scores the model itself; the loop reads only train and validation.
    cnn = {"weights": None, "layer": None, "features": "arrays given to fit() in Python"}
    rows = train_data.Rows(X)
    empty = train_data.Rows(X[:0])
    data = train_data.TrainingData("python", list(label_names), rows, Y, empty, Y[:0], cnn=cnn)
    data = selection.split_validation(train_data.drop_unlabelled(data), args.val_fraction, args.seed)
    norm = train_data.fit_feature_norm(args.feature_norm, data.train_features)
    data = data.with_norm(norm)
    cfg = config.from_args(args, data, norm)
    with tempfile.TemporaryDirectory(prefix="minicnnrnn-fit-") as out:
        params, history = loop.fit(cfg, data, out)
    order = label_paths.label_order(data.train_labels, cfg.label_order, cfg.seed)  # as the loop draws it
    if cfg.tune_decoding and is_path_model(model) and data.val_labels is not None:
        cfg, _ = selection.tune_decoding(cfg, params, data)
    return {"params": backend.params_to_host(params), "config": cfg, "history": history, "label_order": order}


def settings_of(cfg):
    """The estimator parameters ({name: value}) that describe a RunConfig (a loaded checkpoint)."""
    settings = {}
    for name in TRAINING_DEFAULTS:
        field = FIELD_OF.get(ARGUMENT_OF.get(name, name), ARGUMENT_OF.get(name, name))
        if hasattr(cfg, field):
            settings[name] = getattr(cfg, field)
    settings["feature_norm"] = (cfg.feature_norm or {"mode": "none"})["mode"]
    return settings


def predict(cfg, params, X, ranking):
    """(label sets (n, K) uint8, scores (n, K) float32) of host features X (n, D), normalised
    as the model's training features were (``cfg.feature_norm``): ``models.predict_sets``.
    ranking: compute the path models' P(label in path) (slower); classifiers always give
    their confidences."""
    features = train_data.normalise(X, cfg.feature_norm)
    return models.predict_sets(cfg, backend.params_to_device(params, np.float32), features, ranking=ranking)


def overall_f1(pred, Y):
    """O-F1 (§4.1) of label sets against the truth, a fraction in [0, 1]."""
    return metrics.precision_recall_f1(pred, Y)["O-F1"]


def save(path, fitted, label_names):
    """Write a fitted model as a checkpoint ``predict --checkpoint`` reads (no optimiser state)."""
    history = fitted["history"]
    chosen, _ = selection.best_epoch(history)
    epoch = chosen or (history[-1]["epoch"] if history else fitted["config"].epochs)
    state = {
        "params": fitted["params"],
        "config": fitted["config"],
        "label_names": label_names,
        "label_order": fitted["label_order"],
        "epoch": epoch,
        "extra": {"history": history, "selected": "validation" if chosen else "last"},
    }
    checkpoint.save(os.fspath(path), state)


def load(path):
    """A checkpoint (written by ``train`` or :func:`save`) as (fitted dict, label names)."""
    state = checkpoint.load(path)
    fitted = {
        "params": state["params"],
        "config": state["config"],
        "history": state["extra"].get("history", []),
        "label_order": state["label_order"],
    }
    return fitted, list(state["label_names"])
