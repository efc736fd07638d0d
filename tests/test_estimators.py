"""The estimators of minicnnrnn/estimators/ (docs/python_api.md), without scikit-learn:
fit / predict / predict_proba / score on the built-in features, the command's defaults,
the checkpoint round trips with `train` and `predict` both ways, and the errors."""

import ast
import dataclasses
import importlib
import json
import pathlib
import re

import numpy as np
import pytest
from conftest import cupy_available
from PIL import Image

import minicnnrnn
from minicnnrnn import predict, train
from minicnnrnn.core import backend
from minicnnrnn.estimators import (
    BCEClassifier,
    CNNRNNClassifier,
    FeatureExtractor,
    KNNClassifier,
    MultiLabelEstimator,
    NotFittedError,
    WARPClassifier,
    all_estimators,
    base,
    classifiers,
    engine,
)
from minicnnrnn.tinyscenes import features, scenes
from minicnnrnn.training.config import RunConfig

N_TRAIN, N_TEST = 300, 100
TINY = {"epochs": 2, "embed": 8, "hidden": 16}


@pytest.fixture(scope="module")
def builtin():
    """(X, Y, X_test, Y_test): the built-in fc7 features the command trains on (cached)."""
    X, Y = features.builtin_features("train", N_TRAIN)
    Xt, Yt = features.builtin_features("test", N_TEST)
    return X, Y, Xt, Yt


def tiny(cls, **extra):
    """cls with the small sizes of TINY where it has them."""
    names = cls._get_param_names()
    return cls(**{k: v for k, v in {**TINY, **extra}.items() if k in names})


def test_the_done_when_line_and_the_shapes(builtin):
    X, Y, Xt, _ = builtin
    proba = minicnnrnn.CNNRNNClassifier(epochs=2, embed=8, hidden=16).fit(X, Y).predict_proba(Xt)
    assert proba.shape == (len(Xt), Y.shape[1]) and proba.dtype == np.float32
    assert ((proba >= 0) & (proba <= 1)).all() and proba.std() > 0


def test_the_default_decoding_is_chosen_on_validation(builtin):
    """decode "auto" (the default, as in train) is resolved by fit on the validation split."""
    X, Y, _, _ = builtin
    fitted = minicnnrnn.CNNRNNClassifier(epochs=1, embed=8, hidden=16).fit(X, Y)
    assert fitted.get_params()["decode"] == "auto" and fitted.config_.decode in ("path", "marginal", "marginal-f1")


@pytest.mark.parametrize("kind, cls", all_estimators())
def test_every_kind_fits_predicts_and_scores(kind, cls, builtin):
    X, Y, Xt, Yt = builtin
    clf = tiny(cls).fit(X, Y)
    pred = clf.predict(Xt)
    assert pred.shape == Yt.shape and set(np.unique(pred)) <= {0, 1}
    assert (pred.sum(axis=1) <= 3).all()  # at most k (the command's 3) labels
    assert clf.n_features_in_ == X.shape[1] and clf.label_names_[0] == "label0"
    assert clf.config_.model == kind and isinstance(clf.history_, list)
    truth_score = (2 * (pred & Yt).sum()) / (pred.sum() + Yt.sum())  # micro F1 by hand
    assert clf.score(Xt, Yt) == pytest.approx(truth_score)
    scores = clf.decision_function(Xt) if kind == "warp" else clf.predict_proba(Xt)
    assert scores.shape == Yt.shape and np.isfinite(scores).all()
    assert hasattr(clf, "predict_proba") == (kind != "warp")
    if kind == "softmax":
        np.testing.assert_allclose(scores.sum(axis=1), 1, rtol=1e-5)


def test_learning_beats_chance(builtin):
    X, Y, Xt, Yt = builtin
    learned = BCEClassifier(epochs=4).fit(X, Y).score(Xt, Yt)
    chance = BCEClassifier(epochs=0).fit(X, Y).score(Xt, Yt)
    assert learned > chance + 0.05


def test_defaults_are_the_commands():
    args = train.make_parser().parse_args([])
    params = CNNRNNClassifier().get_params()
    assert params["epochs"] == args.epochs == RunConfig.epochs
    assert params["lr"] == RunConfig.lr and params["dropout"] == RunConfig.dropout
    assert params["embed"] == args.embed and params["hidden"] == args.hidden and params["variant"] == args.variant
    assert params["validation_fraction"] == args.val_fraction and params["random_state"] == args.seed
    assert params["label_order"] == RunConfig.label_order and params["beam"] == RunConfig.beam
    # every training option of the command is a parameter, with the command's default
    settings = [f for f in dataclasses.fields(RunConfig) if "option" in f.metadata]
    assert len(engine.OPTIONS) == len(settings) - len(engine.NOT_PARAMETERS) > 15
    every = {}  # every estimator's parameters together: each option is a parameter of one of them
    for _, cls in all_estimators():
        every.update(cls().get_params())
    for name, option in engine.OPTIONS.items():
        assert every[name] == getattr(args, option.dest), name
    assert set(BCEClassifier().get_params()) < set(params)  # a baseline has only the options it uses


def test_a_bad_parameter_is_a_value_error_naming_it(builtin):
    X, Y, _, _ = builtin
    for bad, words in (
        ({"dropout": 1.5}, "dropout (--dropout): must be in [0, 1)"),
        ({"epochs": 2.5}, "epochs: expected int"),
        ({"variant": "gru"}, "variant: 'gru' is not one of"),
        ({"min_labels": 5}, "min_labels (--min-labels): must be at most k = 3"),  # RunConfig.validate
        ({"tune_decoding": True, "validation_fraction": 0.0}, "--tune-decoding"),
    ):
        with pytest.raises(ValueError, match=re.escape(words)):
            tiny(CNNRNNClassifier, **bad).fit(X, Y)
    # a parameter grid's NumPy numbers are plain numbers in the model (and in its JSON checkpoint)
    clf = tiny(BCEClassifier, epochs=np.int64(1), lr=np.float32(0.002)).fit(X, Y)
    assert type(clf.config_.epochs) is int and type(clf.config_.lr) is float


def test_no_estimator_module_imports_a_command():
    """The estimators use the library functions train uses, never a command module."""
    package = pathlib.Path(engine.__file__).parent
    commands = {p.stem for p in package.parent.glob("*.py")} - {"__init__", "__main__"}
    assert {"train", "predict"} <= commands
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {f"minicnnrnn.{c}" for c in commands} & imported, path.name


def test_the_python_blocks_of_the_docs_compile_and_import_what_exists():
    """docs/python_api.md's blocks run as written (checked by hand: they train for minutes);
    here every block compiles and every name it imports from minicnnrnn exists."""
    text = (pathlib.Path(engine.__file__).parents[2] / "docs" / "python_api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 4
    for block in blocks:
        tree = ast.parse(block)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module.startswith("minicnnrnn"):
                module = importlib.import_module(node.module)
                assert all(hasattr(module, a.name) for a in node.names), ast.unparse(node)


def test_same_seed_same_model_and_another_seed_another(builtin):
    X, Y, Xt, _ = builtin
    a, b = (tiny(CNNRNNClassifier, random_state=3).fit(X, Y) for _ in range(2))
    c = tiny(CNNRNNClassifier, random_state=4).fit(X, Y)
    np.testing.assert_array_equal(a.params_["U_l"], b.params_["U_l"])
    assert not np.array_equal(a.params_["U_l"], c.params_["U_l"])
    np.testing.assert_array_equal(a.predict_proba(Xt), b.predict_proba(Xt))


def test_feature_normalisation_is_part_of_the_model(builtin):
    X, Y, Xt, _ = builtin
    for mode in ("l2", "scale", "none"):
        clf = tiny(BCEClassifier, feature_norm=mode).fit(X, Y)
        assert clf.config_.feature_norm["mode"] == mode
    l2 = tiny(BCEClassifier).fit(X, Y)  # l2: a rescaled image is the same image
    np.testing.assert_allclose(l2.predict_proba(Xt * 7), l2.predict_proba(Xt), rtol=1e-4, atol=1e-6)


def test_errors_before_fit_and_on_bad_input(builtin):
    X, Y, Xt, _ = builtin
    with pytest.raises(NotFittedError, match="not fitted"):
        CNNRNNClassifier().predict(Xt)
    with pytest.raises(ValueError, match="2-D"):
        BCEClassifier().fit(X, Y[:, 0])
    with pytest.raises(ValueError, match="only 0 and 1"):
        BCEClassifier().fit(X, Y * 2)
    with pytest.raises(ValueError, match="NaN"):
        BCEClassifier().fit(np.full_like(X, np.nan), Y)
    with pytest.raises(ValueError, match="label_names"):
        BCEClassifier().fit(X, Y, label_names=["a"])
    clf = tiny(BCEClassifier, epochs=0).fit(X, Y)
    with pytest.raises(ValueError, match="features"):
        clf.predict(Xt[:, :10])
    with pytest.raises(TypeError):
        CNNRNNClassifier(no_such_option=1)


@pytest.mark.skipif(not cupy_available(), reason="no CuPy here (pytest --device strict runs it on the stand-in)")
def test_the_backend_is_a_parameter_and_arrays_come_back_as_numpy(builtin):
    """backend="cupy" (real CuPy, or the strict stand-in of ``--device strict``) trains and
    predicts on the device; every array returned is NumPy and the caller's backend is kept."""
    X, Y, Xt, _ = builtin
    backend.use("numpy")
    on_host = tiny(CNNRNNClassifier, backend="numpy").fit(X, Y)
    on_device = tiny(CNNRNNClassifier, backend="cupy").fit(X, Y)
    assert backend.name() == "numpy"
    pred_host, pred_device, proba = on_host.predict(Xt), on_device.predict(Xt), on_device.predict_proba(Xt)
    assert type(pred_device) is np.ndarray and type(proba) is np.ndarray and proba.shape == pred_device.shape
    assert np.mean(pred_host == pred_device) > 0.95  # float32 on two devices: rounding may flip a near tie
    assert all(type(v) is np.ndarray for v in on_device.params_.values())
    np.testing.assert_allclose(on_device.params_["U_l"], on_host.params_["U_l"], rtol=1e-3, atol=1e-4)


def test_fallback_get_and_set_params_like_sklearn():
    class Plain(base.FallbackEstimator):
        __init__ = base.keyword_init(("epochs", "lr"))

    p = Plain(epochs=3)
    assert p.get_params() == {"epochs": 3, "lr": RunConfig.lr}
    assert p.set_params(lr=0.5) is p and p.lr == 0.5
    with pytest.raises(ValueError, match="unknown parameter"):
        p.set_params(nope=1)
    assert repr(p) == "Plain(epochs=3, lr=0.5)"


def _features_npy(tmp_path, Xt):
    path = tmp_path / "feats.npy"
    np.save(path, Xt)
    return path


def _predict_command(ckpt, npy, capsys):
    assert predict.main(["--checkpoint", str(ckpt), "--features", str(npy), "--json", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_checkpoint_of_train_loads_as_an_estimator(builtin, tmp_path, capsys):
    X, Y, Xt, Yt = builtin
    out = tmp_path / "run"
    argv = ["--n-train", str(N_TRAIN), "--n-test", str(N_TEST), "--epochs", "2", "--embed", "8", "--hidden", "16"]
    assert train.main([*argv, "--out", str(out), "--quiet", "--threads", "1"]) == 0
    o_f1 = json.loads((out / "metrics.json").read_text())["metrics"]["O-F1"]
    capsys.readouterr()
    clf = MultiLabelEstimator.load(out / "best.npz")
    assert type(clf) is CNNRNNClassifier and clf.label_names_ == list(scenes.LABEL_NAMES)
    assert clf.get_params()["embed"] == 8 and clf.get_params()["hidden"] == 16
    assert 100 * clf.score(Xt, Yt) == pytest.approx(o_f1, abs=1e-6)  # the command scored the same sets
    records = _predict_command(out / "best.npz", _features_npy(tmp_path, Xt), capsys)
    names = np.array(clf.label_names_)
    assert [list(names[row.astype(bool)]) for row in clf.predict(Xt)] == [
        sorted(r["labels"], key=list(names).index) for r in records
    ]
    with pytest.raises(ValueError, match="CNNRNNClassifier.load"):
        KNNClassifier.load(out / "best.npz")


def test_an_estimator_saved_from_python_is_read_by_predict(builtin, tmp_path, capsys):
    X, Y, Xt, _ = builtin
    for cls in (CNNRNNClassifier, WARPClassifier):
        clf = tiny(cls).fit(X, Y, label_names=scenes.LABEL_NAMES)
        path = tmp_path / f"{cls.__name__}.npz"
        clf.save(path)
        records = _predict_command(path, _features_npy(tmp_path, Xt), capsys)
        by_command = [set(r["labels"]) for r in records]
        mine = [{clf.label_names_[j] for j in np.flatnonzero(row)} for row in clf.predict(Xt)]
        assert mine == by_command
        again = cls.load(path)
        np.testing.assert_array_equal(again.predict(Xt), clf.predict(Xt))
        assert dataclasses.asdict(again.config_) == dataclasses.asdict(clf.config_)


def test_save_before_fit_and_a_missing_file(tmp_path):
    with pytest.raises(NotFittedError):
        BCEClassifier().save(tmp_path / "m.npz")
    with pytest.raises(Exception, match="m.npz"):
        BCEClassifier.load(tmp_path / "m.npz")


def test_feature_extractor_matches_the_builtin_features_and_reads_files(tmp_path):
    images, _ = scenes.load("test", 6)
    ref, _ = features.builtin_features("test", 6)
    np.testing.assert_allclose(FeatureExtractor().transform(images), ref, rtol=1e-4, atol=1e-5)
    paths = []
    for i, picture in enumerate(images[:3]):
        paths.append(str(tmp_path / f"p{i}.png"))
        Image.fromarray(picture).save(paths[-1])
    np.testing.assert_allclose(FeatureExtractor(batch_size=2).transform(paths), ref[:3], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="backbone"):
        FeatureExtractor("resnet").fit()
    with pytest.raises(ValueError, match="weights"):
        FeatureExtractor("vgg16").fit()
    with pytest.raises(ValueError, match="uint8"):
        FeatureExtractor().transform([np.zeros((8, 8))])


def test_one_place_calls_the_training_code():
    """classifiers.py and base.py reach the package's training code only through engine.py."""
    for module in (classifiers, base):
        tree = ast.parse(pathlib.Path(module.__file__).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(m and m.startswith("minicnnrnn.training") for m in imported), module.__name__
    assert engine.is_path_model("cnn-rnn") and not engine.is_path_model("bce")
