"""Every fit ends with its true status: converged only when the final residual says so, a
ConvergenceWarning when it stopped short, an error naming the cause when values overflow."""

import warnings

import numpy as np
import pytest

import pipeline
from pipeline.validation import allowed_solvers
from tests import naive


def _data(model, n=300, k=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, k))
    z = X @ rng.standard_normal((k, 3))
    if model == "linear":
        return X, z[:, 0] + 0.3 * rng.standard_normal(n)
    if model == "logistic":
        return X, (z[:, 0] + rng.standard_normal(n) > 0).astype(int)
    return X, (z + rng.gumbel(size=(n, 3))).argmax(axis=1)


def _naive_residual(model, reg, lam, X, y, W, b):
    """Max-norm of the minimal subgradient of F, from the NumPy reference gradient."""
    k = X.shape[1]
    Y = y.astype(int) if model == "softmax" else y.reshape(len(y), -1).astype(float)
    _, G, gb = naive.loss_grad(model, X, Y, W, b)
    a1 = {"l1": 1.0, "elasticnet": 0.5}.get(reg, 0.0) * lam / k
    a2 = {"l2": 1.0, "elasticnet": 0.5}.get(reg, 0.0) * lam / k
    G = G + 2 * a2 * W
    r = np.where(W != 0, G + a1 * np.sign(W), np.sign(G) * np.maximum(np.abs(G) - a1, 0))
    return max(np.abs(r).max(), np.abs(gb).max())


SOLVER_CASES = [pytest.param(model, reg, solver, id=f"{model}-{reg}-{solver}")
                for model, reg in (("linear", "l1"), ("logistic", "l1"), ("softmax", "l2"),
                                   ("logistic", "none"))
                for solver in allowed_solvers(model, reg) if solver != "auto"]


@pytest.mark.parametrize("model,reg,solver", SOLVER_CASES)
def test_one_iteration_is_not_convergence(model, reg, solver):
    X, y = _data(model)
    X = X * np.logspace(-2, 2, X.shape[1]) + 10.0  # needs more than one step from anyone
    if solver == "closed_form":
        pytest.skip("closed_form has no iterations")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        res = pipeline.fit(X, y, model=model, reg=reg, lam=0.01, solver=solver, max_iter=1)
    caught = [w for w in seen if issubclass(w.category, pipeline.ConvergenceWarning)]
    if res.converged:  # an honest one-step convergence (cd's exact active-set solve) only
        assert res.residual <= 100 * 1e-7 and not caught
        return
    assert len(caught) == 1, [str(w.message) for w in seen]
    msg = str(caught[0].message)
    assert solver in msg and "tol=1e-07" in msg and "max_iter" in msg
    assert f"{res.residual:.3g}" in msg
    assert res.criterion in ("max_iter", "max_evaluations", "machine_precision",
                             "line_search_failed")
    assert res.n_iter <= 1 + 5  # the L-BFGS polish may add a few Newton steps


@pytest.mark.parametrize("model,reg,solver", SOLVER_CASES)
def test_converged_means_the_residual_is_small(model, reg, solver):
    """The verdict and FitResult.residual agree with an independent residual."""
    X, y = _data(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pipeline.ConvergenceWarning)
        res = pipeline.fit(X, y, model=model, reg=reg, lam=0.01, solver=solver, max_iter=300)
    r = _naive_residual(model, reg, 0.01, X, y, res.W, res.b)
    assert np.isclose(res.residual, r, rtol=1e-6, atol=1e-12)
    if res.converged:
        limit = 1e-7 if res.criterion in ("gradient", "subgradient", "exact") else 1e-5
        assert res.residual <= limit, res.criterion
    else:
        assert res.residual > 1e-7 or res.criterion == "max_iter"
    if res.criterion == "max_iter":
        assert res.n_iter == 300


@pytest.mark.parametrize("model", ["linear", "logistic", "softmax"])
def test_huge_values_in_X_are_an_error_naming_them(model):
    X, y = _data(model)
    for solver in allowed_solvers(model, "l2"):
        with pytest.raises(pipeline.NonFiniteError, match="standardise"):
            pipeline.fit(X * 1e200, y, model=model, reg="l2", lam=0.1, solver=solver)


@pytest.mark.parametrize("model", ["linear", "logistic", "softmax"])
def test_huge_lam_is_an_error_or_the_exact_answer(model):
    """lam=1e300: W* is 0 to every digit; a solver either finds it and knows it, or stops
    with an error that names lam, never a silent NaN."""
    X, y = _data(model)
    for solver in allowed_solvers(model, "l2"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", pipeline.ConvergenceWarning)
                res = pipeline.fit(X, y, model=model, reg="l2", lam=1e300, solver=solver)
        except pipeline.NonFiniteError as exc:
            assert "lam=1e+300" in str(exc)
            continue
        assert res.converged and np.isfinite(res.objective), solver
        assert np.abs(res.W).max() < 1e-100


def test_non_finite_error_is_a_value_error():
    assert issubclass(pipeline.NonFiniteError, ValueError)
    assert issubclass(pipeline.ConvergenceWarning, UserWarning)


@pytest.mark.parametrize("model,reg,solver,options", [
    ("softmax", "l2", "newton", {"hessian_sample": 100}),  # the Hessian's rows
    ("softmax", "l1", "prox_newton", {"sample": 100}),  # the sample and the power iteration
    ("logistic", "l1", "prox_newton", {"sample": 100}),  # the (k+1)^2 Hessian's rows
    ("logistic", "l2", "sgd", {}),  # the shuffles and the Lipschitz estimate's start
    ("softmax", "l2", "gd", {}),  # the Lipschitz estimate's start
    ("softmax", "l2", "lbfgs", {})])  # the rows the column moments are estimated on
def test_seed_drives_every_random_choice(model, reg, solver, options):
    """Same seed, same bits; another seed, another path to the same optimum."""
    X, y = _data(model, n=400)
    if solver == "lbfgs":  # moments that matter to lbfgs's coordinates
        X = X * np.logspace(-1, 1, X.shape[1]) + 3.0

    def fit(seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pipeline.ConvergenceWarning)
            return pipeline.fit(X, y, model=model, reg=reg, lam=0.01, solver=solver, seed=seed,
                                max_iter=2000, **options)

    a, b, c = fit(0), fit(0), fit(5)
    assert a.W.tobytes() == b.W.tobytes() and a.b.tobytes() == b.b.tobytes()
    if solver != "lbfgs":  # column moments: every row is used below 20000 rows
        assert a.W.tobytes() != c.W.tobytes()
    assert abs(a.objective - c.objective) <= 1e-6 * a.objective
