"""Saving and loading a training run: ``checkpoint.npz`` (written by ``train``, read by
``predict`` and ``train --resume``).

A checkpoint is one uncompressed ``.npz`` written atomically through :mod:`minicnnrnn.core.fileio`
(temp file + rename), so an interrupted run leaves the previous checkpoint intact. Inside:

* ``params/<name>``: the model's parameters (host arrays, paper names: ``U_l``, ``U_r``, ...);
* ``opt/<name>``: the optimizer state (``optim.RMSprop.state_dict``: ``v/<param>`` and ``m/<param>``);
* ``label_order``: (K,) int64, the training path order (§3.4);
* ``meta``: a 0-d string holding JSON ``{"format", "config", "label_names", "epoch", "rng",
  "extra"}`` where ``config`` is the run's :class:`~minicnnrnn.training.config.RunConfig` as
  a plain object (``RunConfig.to_dict``), ``rng`` is the state of the host
  ``numpy.random.Generator`` (so that ``--resume`` draws the same shuffles and dropout masks
  an uninterrupted run would) and ``extra`` holds anything else the trainer wants back (its
  log history).

:func:`load` returns ``state = {"params", "config", "label_names", "label_order", "opt",
"epoch", "rng", "extra"}`` with ``config`` a ``RunConfig`` again (docs/DESIGN.md); every
problem with the file is a one-line :class:`~minicnnrnn.core.errors.UserError` naming it.
"""

import json
import os

import numpy as np

from minicnnrnn.core import fileio
from minicnnrnn.core.errors import UserError
from minicnnrnn.training.config import RESUME_KEYS, RunConfig

FORMAT = "minicnnrnn-checkpoint/1"


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
    }
    arrays["meta"] = np.array(json.dumps(meta))
    fileio.save_npz(path, **arrays)


def load(path):
    """Read a checkpoint written by :func:`save`. Returns the state dict.

    Raises UserError("<path>: ...") if the file is missing, unreadable, not a checkpoint,
    or inconsistent (parameter shapes that disagree with the recorded sizes, a label order
    that is not a permutation, ...).
    """
    path = os.fspath(path)
    arrays = fileio.load_npz(path, required=("meta", "label_order"))
    try:
        meta = json.loads(str(arrays["meta"][()]))
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path}: corrupt checkpoint metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise UserError(f"{path}: not a minicnnrnn checkpoint (format {found!r}, expected {FORMAT!r})")
    config = RunConfig.from_dict(meta.get("config") or {}, path)
    state = {
        "params": {k[len("params/") :]: v for k, v in arrays.items() if k.startswith("params/")},
        "opt": {k[len("opt/") :]: v for k, v in arrays.items() if k.startswith("opt/")},
        "label_order": arrays["label_order"],
        "config": config,
        "label_names": list(meta.get("label_names", [])),
        "epoch": int(meta.get("epoch", 0)),
        "rng": meta.get("rng"),
        "extra": meta.get("extra", {}),
    }
    _check_consistent(path, state)
    return state


def _check_consistent(path, state):
    """UserError naming ``path`` if the arrays disagree with the recorded config (K, D, label order)."""
    config, K = state["config"], state["config"].K
    if not state["params"]:
        raise UserError(f"{path}: checkpoint holds no parameters")
    if len(state["label_names"]) != K:
        raise UserError(f"{path}: {len(state['label_names'])} label names for K = {K} labels")
    order = state["label_order"]
    if order.shape != (K,) or not np.array_equal(np.sort(order), np.arange(K)):
        raise UserError(f"{path}: label_order is not a permutation of the {K} labels")
    if "U_I_x" in state["params"] and state["params"]["U_I_x"].shape[0] != config.D:
        rows = state["params"]["U_I_x"].shape[0]
        raise UserError(f"{path}: U_I_x has {rows} rows but the config says D = {config.D}")


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


def resume(path, config, keys=RESUME_KEYS):
    """Load ``path`` to continue a run configured as ``config``: (state, numpy Generator).

    Checks that the ``keys`` fields of both configs agree (:func:`check_compatible`) and
    rebuilds the random generator exactly where the checkpoint left it.
    """
    require_resumable(path)
    state = load(path)
    check_compatible(path, state, config, keys)
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
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(f"{path}: corrupt random-generator state ({exc})") from None
    return np.random.Generator(bit_generator)
