"""Saving and loading a training run: ``checkpoint.npz`` (written by ``train``, read by
``predict`` and ``train --resume``).

A checkpoint is one uncompressed ``.npz`` written atomically through :mod:`minicnnrnn.core.fileio`
(temp file + rename), so an interrupted run leaves the previous checkpoint intact. Inside:

* ``params/<name>``: the model's parameters (host arrays, paper names: ``U_l``, ``U_r``, ...);
* ``opt/<name>``: the optimizer state (``optim.RMSprop.state_dict``: ``v/<param>`` and ``m/<param>``);
* ``label_order``: (K,) int64, the training path order (§3.4);
* ``meta``: a 0-d string holding JSON ``{"format", "config", "label_names", "epoch", "rng",
  "extra", "domain", "data", "run_id"}`` (checked as a schema on reading, :mod:`metadata`) where
  ``run_id`` is the run's identity (:func:`new_run_id`, kept by ``--resume``; ``best.npz``
  beside ``checkpoint.npz`` must carry the same, :func:`check_same_run`), ``domain`` says what inputs the model knows
  (:func:`domain_of`: e.g. ``"tinyscenes-64px drawings"`` for the built-in CNN),
  ``data`` is the training set's fingerprint (:func:`schema.fingerprint`, compared by
  ``--resume``), and ``config`` is the run's :class:`~minicnnrnn.training.config.RunConfig` as
  a plain object (``RunConfig.to_dict``), ``rng`` is the state of the host
  ``numpy.random.Generator`` (so that ``--resume`` draws the same shuffles and dropout masks
  an uninterrupted run would) and ``extra`` holds anything else the trainer wants back (its
  log history).

:func:`load` returns ``state = {"params", "config", "label_names", "label_order", "opt",
"epoch", "rng", "extra", "domain", "data", "run_id"}`` with ``config`` a ``RunConfig`` again
(docs/DESIGN.md) after the whole schema check of :mod:`minicnnrnn.training.schema`; every
problem with the file is a one-line :class:`~minicnnrnn.core.errors.UserError` naming it.
"""

import json
import os
import secrets

import numpy as np

from minicnnrnn.core import fileio
from minicnnrnn.core.errors import UserError
from minicnnrnn.training import metadata, schema
from minicnnrnn.training.config import RESUME_KEYS, RunConfig

FORMAT = "minicnnrnn-checkpoint/1"
# Parameters renamed since checkpoints were first written, per model: {model: {old: new}}.
# KNN's neighbour count was ``k``, which the glossary keeps for the labels per image.
PARAM_MIGRATION = {"knn": {"k": "n_neighbours"}}
BUILTIN_DOMAIN = "tinyscenes-64px drawings"
BUILTIN_IMAGE_SIZE = (64, 64)


def domain_of(cfg):
    """The input domain of a model, from the CNN its features came from (``cfg.cnn``):
    ``{"name", "image_size"}``. The built-in CNN knows only 64x64 Tiny Scenes drawings;
    a converted ImageNet CNN (``weights``: a file) knows photos; a model trained on a
    features file knows features made the same way."""
    cnn = cfg.cnn or {}
    if cnn.get("weights") == "builtin":
        return {"name": BUILTIN_DOMAIN, "image_size": list(BUILTIN_IMAGE_SIZE)}
    if cnn.get("weights"):
        return {"name": f"photos through the CNN {cnn['weights']} ({cnn.get('layer') or 'fc7'})", "image_size": None}
    return {"name": f"precomputed features {cnn.get('features') or ''}".strip(), "image_size": None}


def save(path, state):
    """Write ``state`` (see module docstring; arrays must be host NumPy arrays, ``config`` a
    :class:`RunConfig`) to ``path`` atomically."""
    arrays = {f"params/{k}": np.asarray(v) for k, v in state["params"].items()}
    arrays.update({f"opt/{k}": np.asarray(v) for k, v in state.get("opt", {}).items()})
    arrays["label_order"] = np.asarray(state["label_order"], dtype=np.int64)
    meta = {
        "format": FORMAT,
        "config": state["config"].to_dict(),
        "label_names": [str(n) for n in state["label_names"]],
        "epoch": int(state.get("epoch", 0)),
        "rng": state.get("rng"),
        "extra": state.get("extra", {}),
        "domain": state.get("domain") or domain_of(state["config"]),
        "data": state.get("data"),
        "run_id": state.get("run_id"),
    }
    arrays["meta"] = np.array(json.dumps(meta))
    fileio.save_npz(path, **arrays)


def migrate_params(params, model):
    """The parameters of an older checkpoint under today's names (:data:`PARAM_MIGRATION`);
    a file that holds both names is left as it is, for the schema check to refuse."""
    renames = {old: new for old, new in PARAM_MIGRATION.get(model, {}).items() if old in params and new not in params}
    return {renames.get(name, name): value for name, value in params.items()}


def load(path):
    """Read a checkpoint written by :func:`save`. Returns the state dict.

    Raises UserError("<path>: ...") if the file is missing, unreadable, not a checkpoint,
    or inconsistent (parameter shapes that disagree with the recorded sizes, a label order
    that is not a permutation, ...).
    """
    path = os.fspath(path)
    arrays = fileio.load_npz(path, required=("meta", "label_order"))
    if arrays["meta"].shape != () or arrays["meta"].dtype.kind != "U":
        raise UserError(f"{path}: corrupt checkpoint metadata (meta is not one text)")
    meta = metadata.parse(str(arrays["meta"][()]), path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise UserError(f"{path}: not a minicnnrnn checkpoint (format {str(found)[:40]!r}, expected {FORMAT!r})")
    metadata.check(meta, path)
    config = RunConfig.from_dict(meta.get("config") or {}, path)
    state = {
        "params": migrate_params(
            {k[len("params/") :]: v for k, v in arrays.items() if k.startswith("params/")}, config.model
        ),
        "opt": {k[len("opt/") :]: v for k, v in arrays.items() if k.startswith("opt/")},
        "label_order": arrays["label_order"],
        "config": config,
        "label_names": meta.get("label_names", []),
        "epoch": meta.get("epoch", 0),
        "rng": meta.get("rng"),
        "extra": meta.get("extra", {}),
        "domain": meta.get("domain") or domain_of(config),
        "data": meta.get("data"),
        "run_id": meta.get("run_id"),
    }
    if not isinstance(state["extra"], dict):
        raise UserError(f"{path}: corrupt checkpoint metadata (extra is not an object)")
    if not isinstance(state["domain"], dict) or not isinstance(state["domain"].get("name"), str):
        raise UserError(f"{path}: corrupt checkpoint metadata (domain is not an object with a name)")
    schema.check(state, path)
    return state


def data_fingerprint(data):
    """:func:`schema.fingerprint` of a ``train_data.TrainingData``: its training split's
    labels and shape, and a sample of the feature values of the whole dataset."""
    return schema.fingerprint(
        data.label_names, data.train_labels, data.train_features.shape, schema.features_hash(data)
    )


def new_run_id():
    """A random identity for a new run (kept by ``--resume``; it decides nothing else)."""
    return secrets.token_hex(8)


def check_same_run(path, state, run_id, fingerprint=None):
    """UserError unless the checkpoint ``state`` read from ``path`` belongs to the run
    ``run_id`` (None: a run from before run identities, matched only by its data) and,
    when ``fingerprint`` is given, was trained on that data: a file from another run
    placed beside this run's is never scored or analysed as this run's."""
    if state.get("run_id") != run_id:
        raise UserError(
            f"{path}: belongs to another run (run id {state.get('run_id')}, this run's is {run_id}); "
            "remove it or move it away"
        )
    if fingerprint is not None:
        schema.check_same_data(path, state.get("data"), fingerprint, "it is not this run's file")


RUN_FILES = ("checkpoint.npz", "best.npz", "metrics.json", "per_class_AP.json", "log.csv", "loss.png")


def check_fresh_out(out, resume, overwrite):
    """Before a run writes into ``out``: refuse a folder that holds another run's files
    unless ``--resume`` (continue it) or ``--overwrite`` (its run files are removed now)."""
    found = [name for name in RUN_FILES if os.path.lexists(os.path.join(out, name))]
    if not found or resume:
        return
    if not overwrite:
        raise UserError(
            f"{out}: holds another run ({', '.join(found)}); pass --resume to continue it, "
            "--overwrite to replace it, or choose another --out"
        )
    for name in found:
        try:
            os.remove(os.path.join(out, name))
        except OSError as exc:
            raise UserError(fileio.os_error_message(os.path.join(out, name), exc, "could not be removed")) from None


def check_compatible(path, state, config, keys=RESUME_KEYS):
    """Raise UserError if a checkpoint cannot continue a run configured as ``config`` (a RunConfig).

    Compares the listed fields, e.g. resuming a ``--model bce`` checkpoint as
    ``--model cnn-rnn`` or with another feature size D fails with a line naming both values.
    """
    saved = state["config"]
    for key in keys:
        if getattr(saved, key) != getattr(config, key):
            raise UserError(
                f"{path}: checkpoint has {key} = {getattr(saved, key)!r} but this run has "
                f"{key} = {getattr(config, key)!r}; use another --out or the same settings"
            )


def require_resumable(path):
    """UserError unless ``path`` exists (checked before a long data load, and by :func:`resume`)."""
    if not os.path.exists(path):
        raise UserError(f"{path}: no checkpoint to resume from (--resume needs the same --out)")


def resume(path, config, keys=RESUME_KEYS, data=None):
    """Load ``path`` to continue a run configured as ``config``: (state, numpy Generator).

    Checks that the ``keys`` fields of both configs agree (:func:`check_compatible`), that
    the run's data fingerprint ``data`` (:func:`schema.fingerprint`; None: not compared)
    is the checkpoint's, and rebuilds the random generator exactly where the checkpoint left it.
    """
    require_resumable(path)
    state = load(path)
    check_compatible(path, state, config, keys)
    if data is not None:
        schema.check_same_data(path, state["data"], data)
    return state, restore_rng(state["rng"], path)


def rng_state(rng):
    """The JSON-able state of a ``numpy.random.Generator`` (for :func:`save`)."""
    return rng.bit_generator.state


def restore_rng(state_dict, path="checkpoint"):
    """A ``numpy.random.Generator`` continuing from a :func:`rng_state` result."""
    if not isinstance(state_dict, dict) or state_dict.get("bit_generator") != "PCG64":
        raise UserError(f"{path}: no usable random-generator state (expected a PCG64 state)")
    bit_generator = np.random.PCG64()
    try:
        bit_generator.state = state_dict
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise UserError(f"{path}: corrupt random-generator state ({str(exc)[:80]})") from None
    return np.random.Generator(bit_generator)
