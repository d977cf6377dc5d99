"""Choosing lambda in the app: ``search=path`` and ``search=cv`` around the training core.

``search=path`` runs :func:`pipeline.path` on the training split and keeps the lambda whose
model scores best on the validation split; ``search=cv`` runs :func:`pipeline.cv` on the
training split (folds inside it) and keeps its refit. Either way the chosen fit is then
evaluated, plotted and logged exactly as a single fit, and the run also gets the per-lambda
curves (``search/*`` metrics with the lambda's index as the step), the chosen lambda and two
plots: the coefficient path against lambda, and the score curve with the chosen lambda marked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SEARCHES = ("none", "path", "cv")
PENALISED = ("l1", "l2", "elasticnet")


def check_search(search: Any, model: str, reg: str, backend: str, val_size: float) -> None:
    """``ValueError`` naming the field and the fix for a search the core cannot run."""
    from .cv import _check_scoring

    if search.name not in SEARCHES:
        raise ValueError(f"search.name={search.name!r} is not one of: {', '.join(SEARCHES)}")
    if search.name == "none":
        return
    if reg not in PENALISED:
        raise ValueError(f"search={search.name} chooses lambda, but reg={reg} has none; use "
                         "reg=l1, reg=l2 or reg=elasticnet")
    if backend != "cpu":
        raise ValueError(f"search={search.name} runs on backend=cpu only (for now); drop "
                         f"backend={backend} or use search=none")
    if not isinstance(search.n_lams, int) or search.n_lams < 1:
        raise ValueError(f"search.n_lams={search.n_lams!r}; allowed: an integer >= 1")
    ratio = search.lam_min_ratio
    if ratio is not None and not 0.0 < ratio < 1.0:
        raise ValueError(f"search.lam_min_ratio={ratio!r}; allowed: null or a number in (0, 1)")
    if search.name == "cv" and (not isinstance(search.folds, int) or search.folds < 2):
        raise ValueError(f"search.folds={search.folds!r}; allowed: an integer >= 2")
    if search.select not in ("min", "1se"):
        raise ValueError(f"search.select={search.select!r}; allowed: min, 1se")
    if search.name == "path" and search.select != "min":
        raise ValueError("search.select=1se needs the folds' standard errors: use search=cv")
    if search.name == "path" and val_size <= 0.0:
        raise ValueError("search=path chooses lambda on the validation split, and "
                         "dataset.val_size=0 leaves none; set dataset.val_size > 0 or use "
                         "search=cv")
    try:
        _check_scoring(search.scoring, model)
    except ValueError as err:
        raise ValueError(f"search.{err}") from None


@dataclass
class SearchRecord:
    """What a search found, as the run logs it."""

    kind: str            # path or cv
    lams: np.ndarray     # (n_lams,) largest first
    score: np.ndarray    # (n_lams,) validation score (path) or CV mean (cv)
    se: np.ndarray       # (n_lams,) CV standard error (zeros for path)
    W: np.ndarray        # (n_lams, k, m) the coefficient path (of the training split)
    n_nonzero: np.ndarray
    objective: np.ndarray
    scoring: str
    lam: float
    lam_min: float
    lam_1se: float | None
    time_s: float


def run(config: Any, data: Any) -> Any:
    """The chosen fit (a FitResult with ``.search``, a :class:`SearchRecord`), weighted as
    ``experiment.fit_weights`` says (path: the validation score weighted by the split's rows)."""
    from .cv import _score, cv
    from .experiment import fit_weights, split_weights
    from .paths import path

    s, t0 = config.search, time.perf_counter()
    X, y = data.X["train"], data.y["train"]
    common = dict(model=config.model.name, reg=config.reg.name, n_lams=s.n_lams,
                  lam_min_ratio=s.lam_min_ratio,
                  l1_ratio=config.reg.l1_ratio if config.reg.name == "elasticnet" else None,
                  solver=config.solver.name, tol=config.solver.tol,
                  max_iter=config.solver.max_iter, seed=config.seed, dtype=config.backend.dtype,
                  **fit_weights(config, data))
    if s.name == "cv":
        C = cv(X, y, folds=s.folds, scoring=s.scoring, select=s.select, **common)
        P, fit = C.path, C.fit
        score, se, lam_1se, scoring = C.mean, C.se, C.lam_1se, C.scoring
        lams, lam_min = C.lams, C.lam_min
        W, nnz, obj = _padded(P, len(lams))
    else:
        from .objectives import encode_targets
        from .validation import check_targets

        P = path(X, y, **common)
        scoring = "deviance" if s.scoring is None else s.scoring
        Tv, classes = check_targets(config.model.name, data.y["val"], len(data.y["val"]))
        Tv = encode_targets(config.model.name, Tv, 0 if classes is None else len(classes))
        sv = split_weights(data, "val")
        score = np.array([_score(scoring, P.at(lam), data.X["val"], data.y["val"], Tv, sv)
                          for lam in P.lams])
        from .cv import SCORINGS

        best = int(np.argmax(score if SCORINGS[scoring][1] else -score))
        lams, se, lam_1se = P.lams, np.zeros_like(score), None
        lam_min = float(lams[best])
        fit = P.at(lam_min)
        W, nnz, obj = P.W, P.n_nonzero, P.objective
    fit.time_s = time.perf_counter() - t0
    fit.search = SearchRecord(kind=s.name, lams=lams, score=score, se=se, W=W, n_nonzero=nnz,
                              objective=obj, scoring=scoring, lam=float(fit.lam),
                              lam_min=lam_min, lam_1se=lam_1se, time_s=fit.time_s)
    return fit


def _padded(P: Any, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A CV refit's path stops at the chosen lambda: pad its arrays to the grid with NaN."""
    W = np.full((n, *P.W.shape[1:]), np.nan)
    W[:len(P.lams)] = P.W
    nnz = np.full(n, np.nan)
    nnz[:len(P.lams)] = P.n_nonzero
    obj = np.full(n, np.nan)
    obj[:len(P.lams)] = P.objective
    return W, nnz, obj


def curves(rec: SearchRecord) -> list[dict[str, float]]:
    """One dict of ``search/*`` metrics per lambda (index = step), NaNs left out."""
    out = []
    for i, lam in enumerate(rec.lams):
        row = {"search/lam": float(lam), "search/log10_lam": float(np.log10(lam)),
               f"search/{rec.scoring}": float(rec.score[i])}
        if rec.kind == "cv":
            row[f"search/{rec.scoring}_se"] = float(rec.se[i])
        for name, arr in (("nonzero_weights", rec.n_nonzero), ("objective", rec.objective)):
            if np.isfinite(arr[i]):
                row[f"search/{name}"] = float(arr[i])
        out.append(row)
    return out


def summary(rec: SearchRecord) -> dict[str, float]:
    """The chosen lambda and its neighbours' facts, as run metrics."""
    i = int(np.flatnonzero(rec.lams == rec.lam)[0])
    out = {"search/chosen_lam": rec.lam, "search/lam_min": rec.lam_min,
           f"search/chosen_{rec.scoring}": float(rec.score[i]), "search/time_s": rec.time_s,
           "search/n_lams": float(len(rec.lams))}
    if rec.lam_1se is not None:
        out["search/lam_1se"] = rec.lam_1se
    return out


CURVE_COLUMNS = ("lam_index", "lam", "log10_lam", "score", "se", "score_minus_se",
                 "score_plus_se")
PATH_COLUMNS = ("lam_index", "lam", "log10_lam", "nonzero_weights", "objective")


def curve_table(rec: SearchRecord | None) -> dict[str, list[Any]]:
    """The score per lambda as columns (a DVC plot file): the CV mean, its standard error and
    mean -/+ se, or for ``path`` the validation score with the se columns empty (no folds).
    ``None`` (search=none) gives the columns with no rows."""
    cols: dict[str, list[Any]] = {k: [] for k in CURVE_COLUMNS}
    if rec is None:
        return cols
    for i, lam in enumerate(rec.lams):
        score, se, cv = float(rec.score[i]), float(rec.se[i]), rec.kind == "cv"
        row = [i, float(lam), float(np.log10(lam)), score, se if cv else None,
               score - se if cv else None, score + se if cv else None]
        for k, v in zip(CURVE_COLUMNS, row, strict=True):
            cols[k].append(v)
    return cols


def path_table(rec: SearchRecord | None) -> dict[str, list[Any]]:
    """Non-zero weights and objective per lambda of the path: every lambda for ``path``, down
    to the chosen one for ``cv`` (its refit's path stops there; no empty cells, which a plot
    would draw as 0). ``None`` gives the columns with no rows."""
    cols: dict[str, list[Any]] = {k: [] for k in PATH_COLUMNS}
    if rec is None:
        return cols
    for i, lam in enumerate(rec.lams):
        if not (np.isfinite(rec.n_nonzero[i]) and np.isfinite(rec.objective[i])):
            continue
        row = [i, float(lam), float(np.log10(lam)), int(rec.n_nonzero[i]),
               float(rec.objective[i])]
        for k, v in zip(PATH_COLUMNS, row, strict=True):
            cols[k].append(v)
    return cols


def facts(rec: SearchRecord) -> dict[str, float]:
    """What data and parameters determine of the choice (no timing): the chosen lambda, its
    index (its row in ``curve_table``) and score, lam_min and lam_1se with their scores (the
    standard error too for cv), as ``search/*`` names; DVC's metrics file nests them as
    ``search.chosen_lam``, ... (``n_lams`` is a param already)."""

    def at(lam: float) -> int:
        return int(np.flatnonzero(rec.lams == lam)[0])

    name, i = rec.scoring, at(rec.lam)
    out = {"search/chosen_lam": rec.lam, "search/chosen_index": i,
           f"search/chosen_{name}": float(rec.score[i]), "search/lam_min": rec.lam_min,
           f"search/{name}_at_lam_min": float(rec.score[at(rec.lam_min)])}
    if rec.kind == "cv":
        out[f"search/chosen_{name}_se"] = float(rec.se[i])
        out[f"search/{name}_se_at_lam_min"] = float(rec.se[at(rec.lam_min)])
    if rec.lam_1se is not None:
        out["search/lam_1se"] = rec.lam_1se
        out[f"search/{name}_at_lam_1se"] = float(rec.score[at(rec.lam_1se)])
    return out


def plot(rec: SearchRecord, feature_names: list[str], out_dir: Path) -> list[Path]:
    """``search_path.png`` (coefficients against lambda) and ``search_score.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, ax = plt.subplots(figsize=(9, 5.5))
    W = rec.W.reshape(len(rec.lams), -1)
    order = np.argsort(-np.nan_to_num(np.abs(W)).max(axis=0))  # largest weights first
    m = rec.W.shape[2]
    for rank, j in enumerate(order):
        name = feature_names[j // m] + (f" [{j % m}]" if m > 1 else "")
        top = rank < 12  # the 12 largest are labelled, the rest drawn thin
        ax.plot(rec.lams, W[:, j], lw=1.6 if top else 0.6, label=name if top else None,
                alpha=1.0 if top else 0.4)
    _mark(ax, rec)
    ax.set(xscale="log", xlabel="lambda (log scale)", ylabel="weight",
           title=f"Coefficient path ({rec.kind}), chosen lambda {rec.lam:.3g}")
    ax.legend(fontsize=9, ncol=2, loc="best")
    paths.append(_save(fig, out_dir / "search_path.png"))
    fig, ax = plt.subplots(figsize=(9, 5.5))
    if rec.kind == "cv":
        ax.errorbar(rec.lams, rec.score, yerr=rec.se, fmt="o-", ms=3, capsize=2,
                    label=f"{rec.scoring}: CV mean +- 1 SE")
    else:
        ax.plot(rec.lams, rec.score, "o-", ms=3, label=f"{rec.scoring} on the validation split")
    _mark(ax, rec)
    ax.set(xscale="log", xlabel="lambda (log scale)", ylabel=rec.scoring,
           title=f"Choosing lambda: {rec.kind}")
    ax.legend(fontsize=10)
    paths.append(_save(fig, out_dir / "search_score.png"))
    return paths


def _mark(ax: Any, rec: SearchRecord) -> None:
    ax.axvline(rec.lam_min, color="k", ls="--", lw=1, label=f"lam_min {rec.lam_min:.3g}")
    if rec.lam_1se is not None:
        ax.axvline(rec.lam_1se, color="tab:red", ls=":", lw=1.5,
                   label=f"lam_1se {rec.lam_1se:.3g}")


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
