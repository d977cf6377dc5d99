"""Bad input gets a clear error naming the field and the fix, before any work starts."""

import numpy as np
import pytest

import pipeline
from pipeline.validation import allowed_solvers, check_compatibility

rng = np.random.default_rng(0)
X = rng.standard_normal((50, 4))
y_bin = (X[:, 0] > 0).astype(int)
y_reg = X @ np.arange(4.0)


@pytest.mark.parametrize("X_bad,y,match", [
    (np.where(np.arange(200).reshape(50, 4) == 9, np.nan, X), y_bin, r"rows \[2\].*columns \[1\]"),
    (np.where(np.arange(200).reshape(50, 4) == 199, np.inf, X), y_bin, r"rows \[49\]"),
    (X[:, 0], y_bin, "2-D"),
    (np.empty((0, 4)), y_bin[:0], "empty"),
    (X, y_bin[:-1], "49 rows but X has 50"),
])
def test_bad_X_or_shapes(X_bad, y, match):
    with pytest.raises(ValueError, match=match):
        pipeline.fit(X_bad, y, model="logistic")


def test_nan_in_y_names_the_rows():
    y = y_reg.copy()
    y[[3, 7]] = np.nan
    with pytest.raises(ValueError, match=r"y has 2 NaN/inf value\(s\) at rows \[3, 7\]"):
        pipeline.fit(X, y, model="linear")


@pytest.mark.parametrize("model,y,match", [
    ("logistic", np.arange(50) % 3, "exactly 2 classes.*softmax"),
    ("logistic", y_reg, "continuous.*model=linear"),
    ("softmax", np.zeros(50), "only one class"),
    ("multilabel", np.full((50, 2), 2), "0 or 1"),
])
def test_targets_that_do_not_fit_the_model(model, y, match):
    with pytest.raises(ValueError, match=match):
        pipeline.fit(X, y, model=model)


@pytest.mark.parametrize("kwargs,match", [
    ({"lam": -1.0, "reg": "l2"}, "lam=-1.0 must be"),
    ({"l1_ratio": 1.5, "reg": "elasticnet"}, r"l1_ratio=1.5 must lie in \[0, 1\]"),
    ({"reg": "l3"}, "reg='l3' is not known"),
    ({"solver": "adam"}, "solver='adam' is not known"),
    ({"tol": 0.0}, "tol=0.0 must be a finite number > 0"),
    ({"dtype": "float16"}, "dtype='float16'"),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pipeline.fit(X, y_reg, model="linear", **kwargs)


@pytest.mark.parametrize("model,reg,solver", [("logistic", "l1", "lbfgs"),
                                              ("logistic", "none", "closed_form"),
                                              ("softmax", "elasticnet", "newton"),
                                              ("logistic", "l2", "cd")])
def test_impossible_combination_names_the_allowed_solvers(model, reg, solver):
    with pytest.raises(ValueError, match="use one of: auto, gd, agd, sgd") as err:
        check_compatibility(model, reg, solver)
    assert solver not in str(err.value).split("use one of:")[1].strip().split(", ")


def test_allowed_solvers_table():
    assert allowed_solvers("linear", "l2") == ["auto", "gd", "agd", "sgd", "lbfgs",
                                               "split_lbfgs", "newton", "prox_newton", "cd",
                                               "closed_form"]
    assert "split_lbfgs" in allowed_solvers("softmax", "l1", backend="cuda")
    assert "lbfgs" not in allowed_solvers("logistic", "l1")
    assert "cd" in allowed_solvers("linear", "elasticnet")


def test_predict_checks_feature_count():
    res = pipeline.fit(X, y_reg, model="linear")
    with pytest.raises(ValueError, match="4"):
        pipeline.predict(res, X[:, :3])


def test_readme_solver_table_is_the_registry():
    from pathlib import Path

    from pipeline.solvers.registry import solver_table

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    between = text.split("<!-- solver-table -->\n")[1].split("\n<!-- /solver-table -->")[0]
    assert between == solver_table()


def test_every_solver_default_passes_its_own_option_checks():
    # A default outside its field's metadata (a typo in a range, a choice left out) would make
    # the solver unusable with its own defaults, in the API and on the command line alike.
    import dataclasses

    from pipeline.solvers import SOLVERS, check_solver_options

    for name, spec in SOLVERS.items():
        defaults = {f: getattr(spec.options(), f) for f in spec.option_fields}
        assert check_solver_options(name, defaults) == defaults
        for f in dataclasses.fields(spec.options):
            assert f.name == "name" or f.metadata, (name, f.name)  # every option is checked
