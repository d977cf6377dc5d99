"""Every applicable solver reaches the reference optimum on the datasets scikit-learn ships."""

import warnings

import numpy as np
import pytest

import pipeline
from pipeline.solvers._problem import ConvergenceWarning
from pipeline.validation import allowed_solvers
from tests import references as ref

# reference-optima.md values for digits: recomputing them costs ~30 s each, so the solver tests
# use these and test_reference_optima_of_digits (slow) recomputes them.
DIGITS = {("softmax", "l1", 0.001): 0.0079686617531897, ("softmax", "l1", 0.1): 0.231047183727984,
          ("softmax", "l2", 0.001): 0.0116262279616448, ("softmax", "l2", 0.1): 0.156839805009732}

PROBLEMS = [("diabetes", "linear"), ("breast_cancer", "logistic"), ("iris", "softmax"),
            ("wine", "softmax"), ("digits", "softmax"), ("iris", "ovr")]
SLOW_SOLVERS = {"gd", "sgd", "agd"}


def cases():
    for name, model in PROBLEMS:
        for reg in ("none", "l1", "l2", "elasticnet"):
            if reg == "none" and (name, model) not in (("diabetes", "linear"),
                                                       ("iris", "softmax")):
                continue  # separable (iris setosa vs rest too): no finite optimum; see below
            if name == "digits" and reg == "elasticnet":
                continue
            for lam in ((0.0,) if reg == "none" else (1e-3, 1e-1)):
                for solver in allowed_solvers(model, reg):
                    if solver == "sgd" and (lam != 0.1 or name == "digits"):
                        continue  # SVRG needs far more epochs when ill-conditioned (README)
                    marks = ([pytest.mark.slow] if name == "digits" and solver in SLOW_SOLVERS
                             else [])
                    yield pytest.param(name, model, reg, lam, solver, marks=marks,
                                       id=f"{name}-{model}-{reg}-{lam:g}-{solver}")


def reference(name, model, reg, lam):
    if name == "digits":
        return DIGITS[(model, reg, lam)], None
    F, W, _ = ref.split_optimum(name, model, reg, lam)
    return F, W


@pytest.mark.parametrize("name,model,reg,lam,solver", list(cases()))
def test_solver_reaches_reference_optimum(name, model, reg, lam, solver):
    X, y = ref.dataset(name)
    F_star, W_star = reference(name, model, reg, lam)
    first_order = solver in ("gd", "agd", "sgd")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = pipeline.fit(X, y, model=model, reg=reg, lam=lam, solver=solver, tol=1e-9,
                           max_iter=20_000 if first_order or solver in ("auto", "split_lbfgs")
                           else 1000)
    # The fast solvers must also know they converged; gradient methods get an iteration budget.
    assert res.converged or res.solver in ("gd", "agd", "sgd"), res.criterion
    assert (res.objective - F_star) / F_star <= 1e-6
    assert np.isclose(res.objective, res.loss + res.penalty, rtol=1e-14)
    if reg == "l1" and W_star is not None:
        # Exact zeros on the reference's zeros, non-zeros on its clear support.
        assert np.all(res.W[np.abs(W_star) < 1e-10] == 0.0)
        assert np.all(res.W[np.abs(W_star) > 1e-4] != 0.0)


@pytest.mark.parametrize("name,model,reg,lam", [
    ("diabetes", "linear", "l2", 0.1), ("diabetes", "linear", "l1", 0.1),
    ("breast_cancer", "logistic", "l2", 1e-3), ("breast_cancer", "logistic", "l1", 0.1),
    ("iris", "softmax", "l2", 0.1)])
def test_lambda_mapping_to_scikit_learn(name, model, reg, lam):
    F_split, _, _ = ref.split_optimum(name, model, reg, lam)
    F_sk, _, _ = ref.sklearn_optimum(name, model, reg, lam)
    assert abs(F_sk - F_split) / F_split <= 1e-6


@pytest.mark.parametrize("name,model,reg,lam,expected", [
    ("breast_cancer", "logistic", "l2", 0.1, 0.0895776860526496),
    ("diabetes", "linear", "l1", 0.001, 0.482464155857728),
    ("iris", "softmax", "l1", 0.1, 0.390928136560627),
    ("wine", "softmax", "l2", 0.001, 0.00795743702480716)])
def test_reference_optima_agree_with_shared_table(name, model, reg, lam, expected):
    F, _, _ = ref.split_optimum(name, model, reg, lam)
    assert abs(F - expected) / expected <= 1e-9


@pytest.mark.slow
@pytest.mark.parametrize("key", list(DIGITS))
def test_reference_optima_of_digits(key):
    model, reg, lam = key
    F, _, _ = ref.split_optimum("digits", model, reg, lam)
    assert abs(F - DIGITS[key]) / DIGITS[key] <= 1e-8


def test_multilabel_reaches_reference_optimum():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 6))
    Y = (X @ rng.standard_normal((6, 3)) + rng.standard_normal((400, 3)) > 0).astype(float)
    for reg, solvers in (("l2", ["lbfgs", "newton", "agd"]), ("l1", ["agd", "gd", "split_lbfgs"])):
        F_star, _, _ = ref.split_optimum_arrays(X, Y, "multilabel", reg, 0.05)
        for solver in solvers:
            res = pipeline.fit(X, Y, model="multilabel", reg=reg, lam=0.05, solver=solver,
                               tol=1e-10, max_iter=100_000)
            assert (res.objective - F_star) / F_star <= 1e-6, solver


@pytest.mark.parametrize("name,model", [("breast_cancer", "logistic"), ("wine", "softmax"),
                                        ("digits", "softmax")])
@pytest.mark.parametrize("solver", ["lbfgs", "newton", "agd", "gd"])
def test_separable_data_stop_with_a_warning(name, model, solver):
    X, y = ref.dataset(name)
    with pytest.warns(pipeline.SeparableDataWarning, match="separable"):
        res = pipeline.fit(X, y, model=model, solver=solver, tol=1e-12, max_iter=100_000)
    assert not res.converged and res.criterion == "separable"
    assert np.isfinite(res.W).all() and np.isfinite(res.objective)
    assert res.n_iter < 10_000  # stopped, not spun to max_iter


def test_history_callback_and_accounting():
    X, y = ref.dataset("breast_cancer")
    seen = []
    res = pipeline.fit(X, y, model="logistic", reg="l2", lam=0.1, solver="gd",
                       step_rule="backtracking",
                       callback=lambda step, F, L, W, b: seen.append((step, F, L)))
    assert [s for s, _, _ in seen] == list(range(1, len(res.history) + 1))
    assert np.allclose([F for _, F, _ in seen], res.history)
    assert all(b <= a + 1e-15 for a, b in zip(res.history, res.history[1:], strict=False))
    assert np.allclose([F - L for _, F, L in seen][-1], res.penalty)
    assert res.n_passes >= res.n_iter and res.time_s > 0


def test_multi_output_linear_matches_per_column_fits():
    X, _ = ref.dataset("diabetes")
    rng = np.random.default_rng(0)
    Y = X @ rng.standard_normal((X.shape[1], 3)) + rng.standard_normal((X.shape[0], 3))
    both = pipeline.fit(X, Y, model="linear", reg="l1", lam=0.1, solver="cd", tol=1e-10)
    for c in range(3):
        one = pipeline.fit(X, Y[:, c], model="linear", reg="l1", lam=0.1, solver="cd",
                           tol=1e-10)
        np.testing.assert_allclose(both.W[:, c], one.W[:, 0], atol=1e-9)
    assert pipeline.predict(both, X).shape == (X.shape[0], 3)


@pytest.mark.parametrize("solver", ["lbfgs", "agd"])
def test_float32_storage_reaches_the_float64_optimum(solver):
    X, y = ref.dataset("wine")
    F_star, _, _ = ref.split_optimum("wine", "softmax", "l2", 0.1)
    res = pipeline.fit(X, y, model="softmax", reg="l2", lam=0.1, solver=solver, tol=1e-8,
                       max_iter=20_000, dtype="float32")
    F64 = ref.naive.objective("softmax", "l2", 0.1, 0.5, X, y.astype(int), res.W, res.b)
    assert (F64 - F_star) / F_star <= 1e-6  # X rounded to float32, sums kept in float64


@pytest.mark.parametrize("name,model,lam", [("breast_cancer", "logistic", 0.1),
                                            ("wine", "softmax", 1e-3), ("digits", "softmax", 0.1),
                                            ("iris", "ovr", 1e-3)])
def test_newton_with_a_subsampled_hessian_reaches_the_exact_optimum(name, model, lam):
    """The Hessian of a quarter of the rows steers; the exact gradient decides the optimum."""
    X, y = ref.dataset(name)
    F_star, _ = reference(name, model, "l2", lam)
    full = pipeline.fit(X, y, model=model, reg="l2", lam=lam, solver="newton", tol=1e-9)
    res = pipeline.fit(X, y, model=model, reg="l2", lam=lam, solver="newton", tol=1e-9,
                       hessian_sample=X.shape[0] // 4)
    assert res.converged, res.criterion
    assert (res.objective - F_star) / F_star <= 1e-6
    # Where the sample misjudges the curvature (small, nearly separable sets) Newton goes on
    # with the full Hessian: the cost stays bounded.
    assert res.n_passes <= 2 * full.n_passes
    with pytest.raises(ValueError, match="hessian_sample"):
        pipeline.fit(X, y, model=model, reg="l2", lam=lam, solver="newton", hessian_sample=0)


def test_subsampled_hessian_saves_passes_on_many_rows():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((40_000, 20))
    y = (X @ rng.standard_normal((20, 5)) + rng.gumbel(size=(40_000, 5))).argmax(axis=1)
    full = pipeline.fit(X, y, model="softmax", reg="l2", lam=1e-3, solver="newton", tol=1e-8)
    res = pipeline.fit(X, y, model="softmax", reg="l2", lam=1e-3, solver="newton", tol=1e-8,
                       hessian_sample=4000)
    assert full.converged and res.converged
    assert abs(res.objective - full.objective) <= 1e-9 * full.objective
    assert res.n_passes < 0.6 * full.n_passes, (res.n_passes, full.n_passes)


@pytest.mark.parametrize("name,model,lam", [("wine", "softmax", 1e-3), ("digits", "softmax", 0.1),
                                            ("iris", "ovr", 0.1)])
def test_prox_newton_with_sampled_hessian_products_reaches_the_l1_optimum(name, model, lam):
    X, y = ref.dataset(name)
    F_star, W_star = reference(name, model, "l1", lam)
    res = pipeline.fit(X, y, model=model, reg="l1", lam=lam, solver="prox_newton", tol=1e-9,
                       sample=X.shape[0] // 4)
    assert res.converged, res.criterion
    assert (res.objective - F_star) / F_star <= 1e-6
    if W_star is not None:
        assert np.all(res.W[np.abs(W_star) < 1e-10] == 0.0)
