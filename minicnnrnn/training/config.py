"""The settings of one training run, in one place: :class:`RunConfig`.

Each setting is one field below: its default is the command line's default, its
``metadata`` holds the rest of its ``train`` option (flag, type, help), so
:func:`add_options` builds those options from the fields, and :meth:`RunConfig.validate`
is the one check of every value, shared by ``train`` (:func:`check_args` before the data
is loaded, :func:`from_args` after), ``predict`` and ``train --resume`` (through the
checkpoint schema, training/schema.py).

``train`` builds a RunConfig from its arguments and the data (:func:`from_args`), uses
it for the whole run and saves it in every checkpoint as a plain JSON object
(``dataclasses.asdict``); ``predict`` and ``train --resume`` read it back with
:meth:`RunConfig.from_dict`, which turns a bad entry into a one-line error naming the file.

The first seven fields describe the model itself; a checkpoint must hold them. A
checkpoint written before a later field existed is read with what the code did then
(:data:`MIGRATION`), not with today's command-line default.
"""

import dataclasses
import math
import typing

import numpy

from minicnnrnn.core import cli
from minicnnrnn.core.errors import UserError
from minicnnrnn.evaluation import protocols
from minicnnrnn.paths import grammar, label_paths
from minicnnrnn.rnn import lstm
from minicnnrnn.training import metadata

# The model kinds of Table 3, as training/kinds.py's registry KINDS names them (in its
# order). Written here so that the config does not import the models: tests/test_config.py
# checks that both lists agree.
MODEL_NAMES = ("cnn-rnn", "no-rnn", "bce", "softmax", "warp", "knn", "sr-cnn-rnn")
FEATURE_NORMS = ("l2", "scale", "none")  # --feature-norm (training/data.py: fit_feature_norm)
AP_MODES = ("voc07", "sklearn")
# --decode (training/kinds.py, docs/inference.md "Which labels to predict"); auto: chosen on validation
DECODINGS = ("auto", "path", "marginal", "marginal-f1")

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

# Checkpoints written before a setting existed: the value that means what those runs did.
MIGRATION = {
    "gate_lr_scale": None,  # U_w and b_lstm learned at the full rate (loop.make_optimizer)
    "val_fraction": 0.0,  # no validation split: the last epoch was the model
    "tune_decoding": False,  # beam and min_labels as given
    "presence_samples": 100,  # the sample count P(label in path) was first computed with
    "decode": "path",  # the most probable path (beam search, §3.3)
    "max_path": None,  # P(label in path) over paths of up to K labels
    "bce_weight": 1.0,  # sr-cnn-rnn: BCE + path loss, unweighted
}


def setting(value=dataclasses.MISSING, *, help, flag=None, **option):
    """A RunConfig field (default ``value``; none: a checkpoint must hold it) that is also a
    ``train`` option: ``option`` holds argparse's keywords (type, choices, action; ``default``
    where the option's default is not ``value``, e.g. None = "decided from the data")."""
    meta = {"option": dict(option, help=help, flag=flag)}
    return dataclasses.field(default=value, metadata=meta)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run. Symbols as in the glossary: K labels, D image-feature
    size, E embedding size, H LSTM hidden size."""

    # The model (a checkpoint must have these)
    model: str = setting(default="cnn-rnn", choices=MODEL_NAMES, help="model to train (Table 3; sr-cnn-rnn beyond it)")
    K: int
    D: int
    E: int = setting(default=64, flag="--embed", type=cli.positive_int, help="label embedding size E (§4)")
    H: int = setting(default=512, flag="--hidden", type=cli.positive_int, help="recurrent layer size H (§4)")
    variant: str = setting(
        default="bounded",
        choices=lstm.VARIANTS,
        help="LSTM of Eq. 1: bounded (ReLU gates capped at 1, so the state grows at most 1 per step; "
        "the default), relu (the paper's uncapped ReLU) or conventional (sigmoid / tanh)",
    )
    cnn: typing.Optional[dict]  # the CNN behind the features: {"weights": "builtin" | path | None, "layer": ...}
    # The data
    dataset: str = setting("builtin", help="builtin | npz:PATH | voc2007 | coco2014 | nuswide81 | nuswide1k")
    # train_data.fit_feature_norm's result ({"mode", "scale"}); the option names the mode
    feature_norm: typing.Optional[dict] = setting(
        None,
        default="l2",
        choices=FEATURE_NORMS,
        help="normalise the CNN features: l2 = each image to unit length, scale = divide by the "
        "training images' mean length, none (docs/training.md)",
    )
    # Training (§3.4)
    label_order: str = setting("freq", choices=label_paths.ORDERS, help="training path order (§3.4)")
    epochs: int = setting(20, type=cli.non_negative_int, help="passes over the training set")
    batch_size: int = setting(64, type=cli.positive_int, help="images per mini-batch N")
    lr: float = setting(
        1e-3,
        type=float,
        help="initial rmsprop learning rate (halved after a diverged epoch, which is run again; at most 3 times)",
    )
    recurrent_lr_scale: typing.Optional[float] = setting(  # None: from_args picks by variant
        None,
        type=float,
        help="learning rate of the LSTM's U_r relative to --lr; default 0.01 for the ReLU variants "
        "(bounded, relu; docs/training.md) and 1 for conventional",
    )
    gate_lr_scale: typing.Optional[float] = setting(
        None,
        type=float,
        help="learning rate of the LSTM's U_w and b_lstm relative to --lr; default 0.1 for the ReLU "
        "variants (bounded, relu; docs/training.md) and 1 for conventional",
    )
    clip: float = setting(5.0, type=float, help="clip gradients to this global norm (0: off)")
    dropout: float = setting(0.5, type=float, help="dropout on the projection (paper: 0.5)")
    seed: int = setting(0, type=cli.non_negative_int, help="seed of everything random")
    # --model sr-cnn-rnn's stages (rnn/semantic.py): concepts alone, then the RNN alone, then both
    sr_concept_epochs: int = setting(5, type=cli.non_negative_int, help="sr-cnn-rnn: epochs of stage 1 (concepts)")
    sr_rnn_epochs: int = setting(5, type=cli.non_negative_int, help="sr-cnn-rnn: epochs of stage 2 (RNN); then both")
    bce_weight: float = setting(1.0, type=float, help="sr-cnn-rnn: weight w of its loss w * BCE + path loss")
    # Model selection: the epoch with the best validation O-F1 + C-F1 is the model
    val_fraction: float = setting(
        0.1,
        type=float,
        help="hold out this fraction of the training images (seeded by --seed) and keep the epoch "
        "with the best validation O-F1 + C-F1 (0: keep the last epoch)",
    )
    tune_decoding: bool = setting(
        False,
        action="store_true",
        help="path models, --decode path: also choose the beam width (--beam or 5) and the shortest path "
        "(0 .. k labels) on validation, after training (as --decode auto does)",
    )
    decode: str = setting(
        "auto",
        choices=DECODINGS,
        help="path models' label sets: path = the most probable path (§3.3, the paper's protocol), "
        "marginal = the k labels of highest P(label in path), marginal-f1 = the expected-F1 set of the "
        "sampled paths, auto = chosen on validation with beam and shortest path (path without a split), "
        "stored in the checkpoint for predict (docs/inference.md)",
    )
    # Decoding and evaluation (§3.3, §4.1)
    beam: int = setting(3, type=cli.positive_int, help="beam width B of the search (§3.3)")
    k: int = setting(  # labels per image for the top-k metrics (and the longest path)
        3,
        default=None,
        type=cli.positive_int,
        help="labels per image for the top-k metrics; default: the dataset's protocol (3; 10 for nuswide1k)",
    )
    min_labels: int = setting(
        0,
        default=None,
        type=cli.non_negative_int,
        help="shortest predicted path (footnote 1); default: the dataset's protocol (k for NUS-WIDE, else 0)",
    )
    ap_mode: str = setting(
        "sklearn",
        default=None,
        choices=AP_MODES,
        help="AP for mAP: VOC 2007 11-point or non-interpolated; default: voc07 for voc2007, else sklearn",
    )
    presence_samples: int = setting(
        100,
        type=cli.positive_int,
        help="sampled paths per test image for the path models' ranking scores P(label in path), "
        "where exact enumeration is too costly (docs/training.md)",
    )
    max_path: typing.Optional[int] = setting(None, type=cli.positive_int, help="longest sampled path (docs/limits.md)")

    def to_dict(self):
        """The plain, JSON-able dict a checkpoint stores."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d, where="config"):
        """A RunConfig from a checkpoint's stored dict, checked (:meth:`validate`). ``where``
        (the checkpoint's path) starts every error: unknown or missing keys, a value of the
        wrong type or out of range are each a one-line UserError. A setting the file lacks
        because it was written before the setting existed takes its :data:`MIGRATION` value."""
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
            if not metadata.has_type(value, fields[key].type):
                raise UserError(
                    f"{where}: checkpoint config {key} = {value!r} is not {metadata.type_name(fields[key].type)}"
                )
        cfg = cls(**{**{k: v for k, v in MIGRATION.items() if k not in d}, **d})
        cfg.validate(where)
        return cfg

    def validate(self, where=None):
        """The one check of every setting's range, and of the settings together.

        where: None for settings from the command line (errors name the option:
        ``--dropout: must be in [0, 1), got 1.5``), or the checkpoint's path (errors name
        the file and the stored key: ``ck.npz: checkpoint config dropout = 1.5 must be ...``).
        """
        for name in FIELD_RULES:
            check_value(name, getattr(self, name), where)

        def bad(key, why):
            raise UserError(_message(key, getattr(self, key), why, where))

        if self.k > self.K:
            bad("k", f"must be at most K = {self.K}")
        if self.min_labels > self.k:
            bad("min_labels", f"must be at most k = {self.k}")
        if self.max_path is not None and not self.k <= self.max_path <= self.K:
            bad("max_path", f"must be between k = {self.k} and K = {self.K}")
        if self.tune_decoding and self.val_fraction == 0:
            bad("tune_decoding", "needs a validation split (--val-fraction > 0)")
        norm = self.feature_norm
        if norm is not None:
            if not isinstance(norm, dict) or norm.get("mode") not in FEATURE_NORMS:
                bad("feature_norm", f"must be null or an object with mode one of {', '.join(FEATURE_NORMS)}")
            # Features are divided by the scale in float32: it must be a normal float32 number.
            tiny, top = float(numpy.finfo(numpy.float32).tiny), float(numpy.finfo(numpy.float32).max)
            if norm["mode"] == "scale" and not (_number(norm.get("scale")) and tiny <= norm["scale"] <= top):
                bad("feature_norm", f"has mode scale but no positive finite scale ({tiny:.3g} to {top:.3g})")
        cnn = self.cnn
        if cnn is not None and not all(isinstance(cnn.get(key), (str, type(None))) for key in ("weights", "layer")):
            bad("cnn", "must name its weights and layer as text (or null)")
        grammar.check_options(self.K, self.beam, self.k, self.min_labels)  # the search's own grammar


# ---------------------------------------------------------------------------
# One rule per setting, for the command line and the checkpoint alike
# ---------------------------------------------------------------------------


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive(value):
    return _number(value) and value > 0


def _one_of(names):
    return (lambda value: value in names), f"is not one of {', '.join(names)}"


# {setting: (test, what a value failing it is)}; argparse's types make most command-line
# values pass, a hand-edited checkpoint is what these catch.
FIELD_RULES = {
    **{key: (lambda v: v >= 1, "must be >= 1") for key in ("K", "D", "E", "H", "batch_size", "beam", "k")},
    **{key: (lambda v: v >= 0, "must be >= 0") for key in ("epochs", "seed", "min_labels")},
    **{key: (lambda v: v >= 0, "must be >= 0") for key in ("sr_concept_epochs", "sr_rnn_epochs")},
    "presence_samples": (lambda v: v >= 1, "must be >= 1"),
    "model": _one_of(MODEL_NAMES),
    "variant": _one_of(lstm.VARIANTS),
    "label_order": _one_of(label_paths.ORDERS),
    "ap_mode": _one_of(AP_MODES),
    "decode": _one_of(DECODINGS),
    "max_path": (lambda v: v is None or v >= 1, "must be >= 1 or null"),
    "lr": (_positive, "must be a positive finite number"),
    # None: the variant's default (from_args), or a checkpoint from before the setting
    "recurrent_lr_scale": (lambda v: v is None or _positive(v), "must be a positive finite number or null"),
    "gate_lr_scale": (lambda v: v is None or _positive(v), "must be a positive finite number or null"),
    **{key: (lambda v: _number(v) and v >= 0, "must be a finite number >= 0") for key in ("clip", "bce_weight")},
    "dropout": (lambda v: _number(v) and 0 <= v < 1, "must be in [0, 1)"),
    "val_fraction": (lambda v: _number(v) and 0 <= v < 1, "must be in [0, 1)"),
}


def _flag(key):
    option = _options().get(key, {})
    return option.get("flag") or "--" + key.replace("_", "-")


def _message(key, value, why, where):
    if where is None:
        return f"{_flag(key)}: {why.replace(' or null', '')}, got {value}"
    return f"{where}: checkpoint config {key} = {value!r} {why}"


def check_value(key, value, where=None):
    """UserError (see :meth:`RunConfig.validate` for ``where``) unless ``value`` passes
    ``key``'s rule in :data:`FIELD_RULES`."""
    test, why = FIELD_RULES[key]
    if not test(value):
        raise UserError(_message(key, value, why, where))


def check_args(args):
    """``train``'s early check, before any data is loaded: every option that is a setting,
    by the setting's rule (an option left to the data, None, is checked by
    :func:`from_args`)."""
    for key, option in _options().items():
        value = getattr(args, _dest(key, option), None)
        if value is not None and key in FIELD_RULES:
            check_value(key, value)
    if args.tune_decoding and args.val_fraction == 0:
        raise UserError("--tune-decoding: needs a validation split (--val-fraction > 0)")


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------


def _options():
    """{setting: its option's keywords} of the settings that are options, in field order."""
    return {f.name: f.metadata["option"] for f in dataclasses.fields(RunConfig) if "option" in f.metadata}


def _dest(key, option):
    return (option.get("flag") or "--" + key).lstrip("-").replace("-", "_")


def add_options(parser, names=None, **changes):
    """Add the options of the settings ``names`` (default: all) to an argparse parser.
    ``changes``: {setting: {argparse keyword: value}} for a command whose option differs
    (e.g. predict's ``--beam`` defaults to the checkpoint's)."""
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    for key, option in _options().items():
        if names is not None and key not in names:
            continue
        kwargs = {k: v for k, v in option.items() if k != "flag"}
        kwargs.setdefault("default", fields[key].default)
        kwargs.update(changes.get(key, {}))
        parser.add_argument(option["flag"] or "--" + key.replace("_", "-"), **kwargs)


def from_args(args, data, norm):
    """The run's settings from ``train``'s arguments, the loaded data (K and D, the dataset's
    name and CNN) and the fitted feature normalisation ``norm``, checked
    (:meth:`RunConfig.validate`). Evaluation settings not given on the command line come
    from the dataset's protocol (:func:`protocols.protocol_for`)."""
    K, D = data.train_labels.shape[1], data.train_features.shape[1]
    proto = protocols.protocol_for(data.name)
    k = min(proto["k"] if args.k is None else args.k, K)
    min_labels = min(proto["min_labels"], k) if args.min_labels is None else args.min_labels
    scale, gate_scale = args.recurrent_lr_scale, args.gate_lr_scale
    relu_like = args.variant in lstm.RELU_LIKE
    if scale is None:  # ReLU LSTMs, capped or not: U_r learns slower (docs/training.md "Stability" 2 and 5)
        scale = 0.01 if relu_like else 1.0
    if gate_scale is None:  # ... and so do its input weights and gate biases
        gate_scale = 0.1 if relu_like else 1.0
    cfg = RunConfig(
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
        sr_concept_epochs=args.sr_concept_epochs,
        sr_rnn_epochs=args.sr_rnn_epochs,
        bce_weight=args.bce_weight,
        val_fraction=args.val_fraction,
        tune_decoding=args.tune_decoding,
        beam=args.beam,
        k=k,
        min_labels=min_labels,
        ap_mode=args.ap_mode or proto["ap_mode"],
        presence_samples=args.presence_samples,
        decode="path" if args.decode == "auto" and args.val_fraction == 0 else args.decode,
        max_path=min(K, args.max_path or label_paths.sampling_bound(data.train_labels, k)),
    )
    cfg.validate()
    return cfg
