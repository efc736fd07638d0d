"""The run settings have one home (training/config.py): one default per setting, one
list of model kinds, one validate() for the command line and the checkpoint alike."""

import ast
import dataclasses
import pathlib

import pytest

from minicnnrnn import predict, train
from minicnnrnn.core.errors import UserError
from minicnnrnn.training import config, kinds, schema
from minicnnrnn.training import data as train_data
from minicnnrnn.training.config import RunConfig

GOOD = {"model": "cnn-rnn", "K": 3, "D": 5, "E": 4, "H": 6, "variant": "relu", "cnn": None}


def test_the_model_names_are_the_registry_s():
    assert config.MODEL_NAMES == tuple(kinds.KINDS)


def test_the_config_does_not_import_the_model_registry():
    source = pathlib.Path(config.__file__).read_text()
    imported = {
        alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.module == "minicnnrnn.training"
        for alias in node.names
    }
    assert "models" not in imported and "schema" not in imported


def test_one_home_for_the_feature_norms():
    assert train_data.FEATURE_NORMS is config.FEATURE_NORMS
    assert not hasattr(schema, "FEATURE_NORMS")


def test_train_options_default_to_the_run_config():
    args = train.make_parser().parse_args([])
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    checked = 0
    for name, option in config._options().items():
        expected = option.get("default", fields[name].default)
        assert getattr(args, config._dest(name, option)) == expected, name
        checked += 1
    assert checked >= 20
    assert args.val_fraction == RunConfig.val_fraction == 0.1  # the drift this file ended
    assert args.model == "cnn-rnn" and args.embed == 64 and args.variant == "bounded"


def test_old_checkpoints_read_with_the_explicit_migration():
    old = RunConfig.from_dict(dict(GOOD), "old.npz")
    assert old.val_fraction == 0.0 and old.tune_decoding is False and old.gate_lr_scale is None
    assert old.bce_weight == 1.0  # sr-cnn-rnn's loss was BCE + path loss, unweighted
    assert set(config.MIGRATION) <= {f.name for f in dataclasses.fields(RunConfig)}
    new = RunConfig.from_dict({**GOOD, "val_fraction": 0.25, "gate_lr_scale": 0.5}, "new.npz")
    assert new.val_fraction == 0.25 and new.gate_lr_scale == 0.5
    assert RunConfig.from_dict(new.to_dict(), "round.npz") == new


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"gate_lr_scale": -1.0}, "ck.npz: checkpoint config gate_lr_scale = -1.0 must be a positive finite number"),
        ({"recurrent_lr_scale": 0}, "recurrent_lr_scale = 0 must be a positive"),
        ({"val_fraction": 1.5}, "val_fraction = 1.5 must be in [0, 1)"),
        ({"tune_decoding": True, "val_fraction": 0.0}, "tune_decoding = True needs a validation split"),
        ({"model": "gru"}, "model = 'gru' is not one of cnn-rnn"),
        ({"presence_samples": 0}, "presence_samples = 0 must be >= 1"),
        ({"bce_weight": -0.5}, "bce_weight = -0.5 must be a finite number >= 0"),
    ],
)
def test_a_checkpoint_is_validated_like_the_command_line(change, needle):
    with pytest.raises(UserError) as err:
        RunConfig.from_dict({**GOOD, **change}, "ck.npz")
    assert needle in str(err.value) and "\n" not in str(err.value)
    cfg = dataclasses.replace(RunConfig(**GOOD), **change)  # a state built in code: the schema checks it too
    with pytest.raises(UserError, match="ck.npz: checkpoint config"):
        schema.check({"config": cfg}, "ck.npz")


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--gate-lr-scale", "-1"], "--gate-lr-scale: must be a positive finite number, got -1.0"),
        (["--recurrent-lr-scale", "-1"], "--recurrent-lr-scale: must be a positive finite number"),
        (["--val-fraction", "1"], "--val-fraction: must be in [0, 1), got 1.0"),
        (["--dropout", "1"], "--dropout: must be in [0, 1)"),
        (["--clip", "inf"], "--clip: must be a finite number >= 0"),
        (["--bce-weight", "-1"], "--bce-weight: must be a finite number >= 0, got -1.0"),
        (["--bce-weight", "nan"], "--bce-weight: must be a finite number >= 0, got nan"),
        (["--tune-decoding", "--val-fraction", "0"], "--tune-decoding: needs a validation split"),
    ],
)
def test_train_refuses_bad_settings_before_loading_data(argv, needle):
    with pytest.raises(UserError) as err:
        config.check_args(train.make_parser().parse_args(argv))
    assert needle in str(err.value)


def test_predict_shares_the_search_options():
    args = predict.make_parser().parse_args(["--checkpoint", "c.npz"])
    assert args.beam is None and args.min_labels is None  # the checkpoint's values
    assert "beam size B" in predict.make_parser().format_help()
