"""The settings of one training run: :class:`RunConfig`.

``train`` builds one from its arguments and the data (:func:`from_args`), uses it for the
whole run and saves it in every checkpoint as a plain JSON object
(``dataclasses.asdict``); ``predict`` and ``train --resume`` read it back with
:meth:`RunConfig.from_dict`, which turns a bad entry into a one-line error naming the file.

The first seven fields describe the model itself; a checkpoint must hold them. The others
have defaults: those a checkpoint written before the field existed is read with (``train``
always fills every field from its arguments).
"""

import dataclasses
import typing

from minicnnrnn.core.errors import UserError
from minicnnrnn.evaluation import protocols
from minicnnrnn.paths import grammar
from minicnnrnn.rnn import lstm
from minicnnrnn.training import kinds

# Settings a --resume must share with the checkpoint (the others may change, e.g. --epochs).
RESUME_KEYS = (
    "model",
    "K",
    "D",
    "E",
    "H",
    "variant",
    "dataset",
    "label_order",
    "seed",
    "batch_size",
    "feature_norm",
    "val_fraction",
)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run. Symbols as in the glossary: K labels, D image-feature
    size, E embedding size, H LSTM hidden size."""

    # The model (a checkpoint must have these)
    model: str  # "cnn-rnn", "no-rnn", "bce" or "softmax" (Table 3; kinds.KINDS)
    K: int
    D: int
    E: int  # paper: 64 (§4)
    H: int  # paper: 512 (§4)
    variant: str  # LSTM of Eq. 1: "relu" (the paper's), "bounded" (capped ReLU) or "conventional"
    cnn: typing.Optional[dict]  # the CNN behind the features: {"weights": "builtin" | path | None, "layer": ...}
    # The data
    dataset: str = "builtin"  # --dataset: builtin | npz:NAME | voc2007 | ...
    feature_norm: typing.Optional[dict] = None  # train_data.fit_feature_norm result; None: none
    # Training (§3.4)
    label_order: str = "freq"  # order of the labels on a training path: freq | rare | random | pla | mla
    epochs: int = 20
    batch_size: int = 64  # images per mini-batch
    lr: float = 1e-3  # initial rmsprop learning rate (cosine-decayed)
    recurrent_lr_scale: typing.Optional[float] = None  # U_r's rate / lr; from_args: 0.01 (relu, bounded) or 1
    gate_lr_scale: typing.Optional[float] = None  # U_w's and b_lstm's rate / lr; from_args: 0.1 (relu, bounded) or 1
    clip: float = 5.0  # global gradient norm (0: no clipping)
    dropout: float = 0.5  # on the Eq. 4 output
    seed: int = 0
    # Model selection: this fraction of the training images (seeded) is held out, and the
    # epoch with the best validation O-F1 + C-F1 is the model (0: the last epoch)
    val_fraction: float = 0.0
    tune_decoding: bool = False  # choose beam and min_labels of the path models on validation too
    # Decoding and evaluation (§3.3, §4.1)
    beam: int = 3  # beam width B
    k: int = 3  # labels per image for the top-k metrics (and the longest path)
    min_labels: int = 0  # shortest predicted path (footnote 1)
    ap_mode: str = "sklearn"  # "voc07" (11-point) or "sklearn" (non-interpolated)
    presence_samples: int = 100  # paths per image for P(label in path) where not exact (paths/presence.py)

    def to_dict(self):
        """The plain, JSON-able dict a checkpoint stores."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d, where="config"):
        """A RunConfig from a checkpoint's stored dict. ``where`` (the checkpoint's path)
        starts every error: unknown or missing keys, a value of the wrong type, an unknown
        model kind are each a one-line UserError."""
        if not isinstance(d, dict):
            raise UserError(f"{where}: checkpoint config is not a JSON object")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = [key for key in d if key not in fields]
        if unknown:
            raise UserError(f"{where}: checkpoint config has unknown settings {', '.join(map(repr, unknown))}")
        missing = [name for name, f in fields.items() if f.default is dataclasses.MISSING and name not in d]
        if missing:
            raise UserError(f"{where}: checkpoint config lacks {', '.join(missing)}")
        for key, value in d.items():
            if not _has_type(value, fields[key].type):
                raise UserError(f"{where}: checkpoint config {key} = {value!r} is not {_type_name(fields[key].type)}")
        if d["model"] not in kinds.KINDS:
            raise UserError(f"{where}: unknown model {d['model']!r}; expected one of {', '.join(kinds.KINDS)}")
        return cls(**d)


def _allowed_types(annotation):
    """The Python types a field accepts: ``int`` -> (int,), ``Optional[dict]`` -> (dict, NoneType).
    A float field also takes an int (JSON has one kind of number)."""
    allowed = typing.get_args(annotation) or (annotation,)
    return allowed + (int,) if float in allowed else allowed


def _has_type(value, annotation):
    allowed = _allowed_types(annotation)
    if isinstance(value, bool) and bool not in allowed:  # True is an int to Python, not to us
        return False
    return isinstance(value, allowed)


def _type_name(annotation):
    return " or ".join("null" if t is type(None) else t.__name__ for t in typing.get_args(annotation) or (annotation,))


def from_args(args, data, norm):
    """The run's settings from ``train``'s arguments, the loaded data (K and D, the dataset's
    name and CNN) and the fitted feature normalisation ``norm``. Evaluation settings not given
    on the command line come from the dataset's protocol (:func:`protocols.protocol_for`);
    impossible search options are a UserError naming the argument."""
    K, D = data.train_labels.shape[1], data.train_features.shape[1]
    proto = protocols.protocol_for(data.name)
    k = min(proto["k"] if args.k is None else args.k, K)
    min_labels = min(proto["min_labels"], k) if args.min_labels is None else args.min_labels
    grammar.check_options(K, args.beam, k, min_labels)
    scale, gate_scale = args.recurrent_lr_scale, args.gate_lr_scale
    relu_like = args.variant in lstm.RELU_LIKE
    if scale is None:  # ReLU LSTMs, capped or not: U_r learns slower (docs/training.md "Stability" 2 and 5)
        scale = 0.01 if relu_like else 1.0
    if gate_scale is None:  # ... and so do its input weights and gate biases
        gate_scale = 0.1 if relu_like else 1.0
    return RunConfig(
        model=args.model,
        K=K,
        D=D,
        E=args.embed,
        H=args.hidden,
        variant=args.variant,
        cnn=data.cnn,
        dataset=data.name,
        feature_norm=norm,
        label_order=args.label_order,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        recurrent_lr_scale=scale,
        gate_lr_scale=gate_scale,
        clip=args.clip,
        dropout=args.dropout,
        seed=args.seed,
        val_fraction=args.val_fraction,
        tune_decoding=args.tune_decoding,
        beam=args.beam,
        k=k,
        min_labels=min_labels,
        ap_mode=args.ap_mode or proto["ap_mode"],
        presence_samples=args.presence_samples,
    )
