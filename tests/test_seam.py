"""The data-source seam: solvers see data only through an Objective's methods.

An objective that holds nothing but a list of chunks (no ``X`` at all) must drive every solver
that needs only the seam to the same bits as the in-memory objective with the same chunking,
and to the in-memory optimum.
"""

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from pipeline.objectives import ArrayObjective, Objective
from pipeline.penalties import Penalty
from pipeline.solvers import SOLVERS, Problem, check_solver_options, options_for
from pipeline.solvers.registry import allowed_solvers
from pipeline.validation import check_targets

SOLVER_DIR = Path(__file__).resolve().parents[1] / "pipeline" / "solvers"
CHUNK = 700  # rows per chunk: 5 chunks of 3200 rows, the last one short
SEAM_SOLVERS = ("lbfgs", "split_lbfgs", "newton", "prox_newton", "agd", "gd", "closed_form",
                "cd")
MODELS = ("linear", "logistic", "softmax", "ovr", "multilabel")


class ChunksOnly(Objective):
    """The least a data source can be: its chunks, and rows fetched from them."""

    def __init__(self, model, chunks, n_outputs):
        n = sum(len(X) for X, _ in chunks)
        super().__init__(model, n, chunks[0][0].shape[1], n_outputs)
        self.chunks = chunks
        self.starts = np.cumsum([0] + [len(X) for X, _ in chunks])

    def map_chunks(self, op, *args):
        return [op(X, T, *args) for X, T in self.chunks]

    def take(self, rows):
        rows = np.asarray(rows)
        which = np.searchsorted(self.starts, rows, side="right") - 1
        pairs = list(zip(which, rows - self.starts[which], strict=True))
        return (np.stack([self.chunks[c][0][r] for c, r in pairs]),
                np.stack([self.chunks[c][1][r] for c, r in pairs]))


def _data(model: str, dtype=np.float64, n: int = 3200, k: int = 6):
    rng = np.random.default_rng(3)
    X = (rng.standard_normal((n, k)) * rng.uniform(0.5, 3.0, k) + rng.normal(0, 2, k))
    Z = X @ rng.standard_normal((k, 3)) + rng.standard_normal((n, 3))
    y = {"linear": Z[:, 0], "logistic": Z[:, 0] > 0, "softmax": Z.argmax(1), "ovr": Z.argmax(1),
         "multilabel": (Z > 0).astype(float)}[model]
    T, classes = check_targets(model, y, n)
    return np.ascontiguousarray(X, dtype=dtype), T, 0 if classes is None else len(classes)


def _pair(model: str, dtype=np.float64):
    X, T, n_classes = _data(model, dtype)
    chunked = ArrayObjective(model, X, T, n_classes, chunk_rows=CHUNK)
    bare = ChunksOnly(model, [(X[lo:hi], chunked.T[lo:hi]) for lo, hi in chunked.bounds],
                      chunked.n_outputs)
    return X, T, n_classes, chunked, bare


def _solve(objective, solver: str, reg: str, lam: float):
    penalty = Penalty(reg, lam, 0.5, objective.n_features)
    problem = Problem(objective, penalty, 1e-8, 500, seed=0)
    W, b = objective.zeros()
    options = options_for(solver, check_solver_options(solver, {}), solver)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SOLVERS[solver].fn(problem, W, b, **options)


def test_no_solver_reads_the_data_or_edits_the_pass_counter():
    for path in sorted(SOLVER_DIR.glob("*.py")):
        source = path.read_text()
        assert not re.search(r"\.X\b", source), f"{path.name} reads objective.X"
        assert not re.search(r"\.n_passes\s*[+\-]?=(?!=)|\.counter\b", source), \
            f"{path.name} edits the objective's pass count"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("model", MODELS)
def test_one_chunk_fast_path_equals_the_reduction(model, dtype):
    """ArrayObjective's one-chunk kernels and the generic chunk reduction give the same bits."""
    X, T, n_classes = _data(model, dtype)
    fast = ArrayObjective(model, X, T, n_classes)
    generic = ChunksOnly(model, [(X, fast.T)], fast.n_outputs)
    rng = np.random.default_rng(0)
    W = rng.standard_normal((X.shape[1], fast.n_outputs)) * 0.3
    b = rng.standard_normal(fast.n_outputs) * 0.1
    outs = []
    for obj in (fast, generic):
        G, gb = obj.zeros()
        H, hb = obj.zeros()
        loss = obj.loss_grad(W, b, G, gb)
        obj.hessp(W, b, W[::-1].copy(), b[::-1].copy(), H, hb)
        outs.append((loss, G, gb, H, hb))
    for a, c in zip(*outs, strict=True):
        assert np.array_equal(a, c)


def _cases():
    for model in MODELS:
        for reg, lam in (("l2", 0.05), ("l1", 0.02)):
            for solver in SEAM_SOLVERS:
                if solver in allowed_solvers(model, reg):
                    yield pytest.param(model, reg, lam, solver, id=f"{model}-{reg}-{solver}")


@pytest.mark.parametrize("model, reg, lam, solver", list(_cases()))
def test_bare_chunks_reproduce_the_array_objective_bit_for_bit(model, reg, lam, solver):
    X, T, n_classes, chunked, bare = _pair(model)
    a = _solve(chunked, solver, reg, lam)
    c = _solve(bare, solver, reg, lam)
    assert np.array_equal(a.W, c.W) and np.array_equal(a.b, c.b), solver
    assert a.n_passes == c.n_passes and a.n_iter == c.n_iter
    whole = _solve(ArrayObjective(model, X, T, n_classes), solver, reg, lam)
    # Other chunking, other rounding: the same optimum to the solvers' accuracy.
    assert abs(c.objective - whole.objective) <= 1e-9 * max(1.0, abs(whole.objective))


def test_row_samples_charge_their_share_of_a_pass():
    X, T, n_classes, chunked, _ = _pair("logistic")
    sub = chunked.sample(np.arange(0, X.shape[0], 4))  # a quarter of the rows
    W, b = sub.zeros()
    G, gb = sub.zeros()
    for _ in range(4):
        sub.loss_grad(W, b, G, gb)
    assert chunked.n_passes == 1 and sub.n_passes == 1


def test_gram_and_weighted_gram_are_chunk_reductions():
    X, T, n_classes, chunked, bare = _pair("logistic")
    A, C = chunked.gram()
    A2, C2 = bare.gram()
    assert np.array_equal(A, A2) and np.array_equal(C, C2)
    Xa = np.column_stack([X, np.ones(len(X))])
    np.testing.assert_allclose(A, Xa.T @ Xa / len(X), rtol=1e-12, atol=1e-12)
    w = np.linspace(-0.2, 0.3, X.shape[1])
    s = 1.0 / (1.0 + np.exp(-(X @ w + 0.1)))
    H = chunked.logistic_hessian(w, 0.1)
    assert np.array_equal(H, bare.logistic_hessian(w, 0.1))
    np.testing.assert_allclose(H, (Xa * (s * (1 - s))[:, None]).T @ Xa / len(X), rtol=1e-10)
