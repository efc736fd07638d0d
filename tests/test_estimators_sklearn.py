"""The estimators under scikit-learn: clone, cross_val_score with a multi-label scorer, a
Pipeline, and sklearn's own estimator checks where they apply (skipped without sklearn)."""

import inspect

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.metrics import f1_score, make_scorer  # noqa: E402
from sklearn.model_selection import cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from minicnnrnn.estimators import BCEClassifier, CNNRNNClassifier, KNNClassifier, NotFittedError  # noqa: E402
from minicnnrnn.tinyscenes import features  # noqa: E402

TINY = {"epochs": 2, "embed": 8, "hidden": 16}


@pytest.fixture(scope="module")
def builtin():
    X, Y = features.builtin_features("train", 300)
    return X, Y


def test_clone_copies_parameters_not_the_fit(builtin):
    X, Y = builtin
    clf = CNNRNNClassifier(**TINY, random_state=2).fit(X, Y)
    copy = clone(clf)
    assert copy.get_params() == clf.get_params() and not hasattr(copy, "params_")
    assert issubclass(NotFittedError, sklearn.exceptions.NotFittedError)
    with pytest.raises(sklearn.exceptions.NotFittedError):
        copy.predict(X)
    np.testing.assert_array_equal(copy.fit(X, Y).predict(X), clf.predict(X))  # same seed, same model


def test_cross_val_score_with_a_multilabel_scorer(builtin):
    X, Y = builtin
    micro = make_scorer(f1_score, average="micro")
    for clf in (CNNRNNClassifier(**TINY, min_labels=1), BCEClassifier(epochs=2)):  # every image gets a label
        scores = cross_val_score(clf, X, Y, cv=3, scoring=micro)
        assert scores.shape == (3,) and ((scores > 0) & (scores <= 1)).all()
    # the estimator's own score is the same micro F1 (O-F1)
    default = cross_val_score(BCEClassifier(epochs=2), X, Y, cv=3)
    np.testing.assert_allclose(default, cross_val_score(BCEClassifier(epochs=2), X, Y, cv=3, scoring=micro))


def test_a_pipeline_with_a_scaler(builtin):
    X, Y = builtin
    pipe = make_pipeline(StandardScaler(), KNNClassifier()).fit(X, Y)
    assert pipe.predict(X[:5]).shape == (5, Y.shape[1])
    assert pipe.get_params()["knnclassifier__k"] is None
    assert 0 < pipe.score(X, Y) <= 1


# scikit-learn's generic checks mostly feed a 1-D class vector y (or a 1-column one); these
# estimators take an (n, K >= 2) 0/1 label matrix only (multi-label) and refuse it, by
# design. What those checks test (fit returns self, n_features_in_, pickling through
# save/load, idempotent fit, ...) is tested on a label matrix here and in test_estimators.py.
ONE_D_Y = "feeds a 1-D (or one-label) y; a multi-label estimator needs an (n, K >= 2) 0/1 matrix"
EXPECTED_FAILURES = dict.fromkeys(
    (
        "check_fit_score_takes_y",
        "check_estimators_overwrite_params",
        "check_dont_overwrite_parameters",
        "check_estimators_fit_returns_self",
        "check_readonly_memmap_input",
        "check_n_features_in_after_fitting",
        "check_positive_only_tag_during_fit",
        "check_estimators_dtypes",
        "check_pipeline_consistency",
        "check_estimators_nan_inf",
        "check_estimators_pickle",
        "check_f_contiguous_array_estimator",
        "check_classifier_data_not_an_array",
        "check_classifiers_one_label",
        "check_classifiers_classes",
        "check_classifiers_train",
        "check_classifiers_regression_target",
        "check_methods_sample_order_invariance",
        "check_methods_subset_invariance",
        "check_fit2d_1sample",
        "check_fit2d_1feature",
        "check_dict_unchanged",
        "check_fit_idempotent",
        "check_fit_check_is_fitted",
        "check_n_features_in",
        "check_fit2d_predict1d",
    ),
    ONE_D_Y,
)
EXPECTED_FAILURES.update(
    {
        "check_classifiers_multilabel_output_format_predict": "predict gives uint8 0/1, not Y's dtype",
        "check_classifier_multioutput": "predict gives uint8 0/1 (dtype kind 'u'); the check wants a signed int",
        "check_complex_data": "our one-line message says 'expected numbers', not sklearn's wording",
        "check_dtype_object": "object arrays are refused (features are numbers)",
        "check_estimators_empty_data_messages": "our message for 0 features differs from sklearn's wording",
        "check_estimator_sparse_tag": "sparse input is not supported (dense CNN features)",
        "check_estimator_sparse_array": "sparse input is not supported (dense CNN features)",
        "check_estimator_sparse_matrix": "sparse input is not supported (dense CNN features)",
    }
)


def test_sklearn_estimator_checks():
    """The checks that apply pass; the others are listed above with the reason."""
    from sklearn.utils.estimator_checks import check_estimator

    if "expected_failed_checks" not in inspect.signature(check_estimator).parameters:
        pytest.skip("scikit-learn < 1.6: check_estimator has no expected_failed_checks")
    results = check_estimator(
        BCEClassifier(epochs=1, embed=4),
        expected_failed_checks=EXPECTED_FAILURES,
        on_fail=None,
    )
    failed = [r for r in results if r["status"] == "failed"]
    passed = [r["check_name"] for r in results if r["status"] == "passed"]
    assert not failed, [(r["check_name"], str(r["exception"])[:200]) for r in failed]
    assert {"check_no_attributes_set_in_init", "check_get_params_invariance", "check_set_params"} <= set(passed)
    assert "check_requires_y_none" in passed
