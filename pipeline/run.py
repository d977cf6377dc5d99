"""One experiment in one process: prepare -> fit -> evaluate -> log.

``run(config)`` is what ``python -m pipeline`` calls after ``config.load``; tests call it
in-process. The data are loaded and checked before the MLflow run starts, so bad input leaves
no run behind; anything that fails after that ends the run FAILED with its error logged.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import config as cfgmod
from pipeline import data as datamod
from pipeline import metrics, plots, tracking

SPLITS = ("train", "val", "test")


@dataclass
class RunResult:
    """What one run produced: its id, final metrics, the core's FitResult, test predictions."""

    run_id: str
    uri: str
    metrics: dict[str, float]
    fit: Any
    data: datamod.Dataset
    predictions: dict[str, np.ndarray] = field(default_factory=dict)


class Progress:
    """The fit callback: drives the tqdm bar and buffers per-step metrics for batched logging.

    The core calls ``progress(step, objective, loss)``; when it also passes the current
    ``W, b`` the validation score of that step is computed and logged too.
    """

    def __init__(self, tracker: tracking.Tracker, data: datamod.Dataset, total: int,
                 show: bool):
        from tqdm.auto import tqdm

        self.tracker, self.data = tracker, data
        self.val_name = metrics.STEP_METRIC[data.task]
        self.bar = tqdm(total=total, desc="fit", unit="step", disable=not show, file=sys.stderr,
                        dynamic_ncols=True, leave=False)
        self.steps = 0
        self._last_post = 0.0

    def __call__(self, step: int, objective: float, loss: float, *rest: Any) -> None:
        values = {"objective": objective, "data_loss": loss}
        if len(rest) >= 2 and len(self.data.y["val"]):
            W, b = np.asarray(rest[0]), np.asarray(rest[1])
            Z = self.data.X["val"] @ W.reshape(W.shape[0], -1) + b.reshape(-1)
            values[f"step_val_{self.val_name}"] = metrics.val_score(
                self.data.task, self.data.y["val"], Z)
        self.tracker.add_step(int(step), values)
        self.steps += 1
        self.bar.update(1)
        now = time.monotonic()
        if now - self._last_post > 0.1:
            self.bar.set_postfix_str(f"F={objective:.6g}", refresh=False)
            self._last_post = now

    def close(self) -> None:
        self.bar.close()


def _fit(config: cfgmod.Config, data: datamod.Dataset, callback: Progress) -> Any:
    from pipeline import fit

    if config.backend.threads is not None:
        import numba

        most = int(getattr(numba.config, "NUMBA_NUM_THREADS", 1))
        numba.set_num_threads(min(config.backend.threads, most))
    return fit(data.X["train"], data.y["train"], model=config.model.name, reg=config.reg.name,
               lam=config.reg.lam, l1_ratio=config.reg.l1_ratio, solver=config.solver.name,
               tol=config.solver.tol, max_iter=config.solver.max_iter, seed=config.seed,
               dtype=config.backend.dtype, backend=config.backend.name, callback=callback,
               **cfgmod.solver_options(config.solver))


def evaluate(result: Any, data: datamod.Dataset) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics ``<split>_<name>`` on every split, and the core's test predictions/probas."""
    from pipeline import predict, predict_proba

    out: dict[str, float] = {}
    test: dict[str, Any] = {}
    for split in SPLITS:
        X, y = data.X[split], data.y[split]
        if len(y) == 0:
            continue
        pred = predict(result, X)
        proba = None if data.task in ("regression", "multilabel") else predict_proba(result, X)
        if data.task == "regression":
            scores = metrics.score("regression", data.y_original(split),
                                   datamod.decode_targets(data, pred))
        else:
            scores = metrics.score(data.task, y, pred, proba)
        out.update({f"{split}_{k}": v for k, v in scores.items()})
        if split == "test":
            test = {"pred": pred, "proba": proba}
    return out, test


def _solver_facts(result: Any, lam: float, reg: str) -> dict[str, float]:
    facts = {"final_objective": result.objective, "final_data_loss": result.loss,
             "final_penalty": result.penalty, "n_iter": result.n_iter,
             "n_passes": result.n_passes, "fit_time_s": result.time_s,
             "converged": float(bool(result.converged)), "n_weights": int(np.size(result.W))}
    if reg in ("l1", "elasticnet"):
        facts["nonzero_weights"] = metrics.nonzero_weights(result.W)
    return facts


def _log_outputs(tr: tracking.Tracker, config: cfgmod.Config, data: datamod.Dataset,
                 result: Any, test: dict[str, Any], out_dir: Path) -> None:
    """Plots, the weights/scaler ``.npz`` and the pyfunc model."""
    if config.tracking.log_plots:
        labels = data.class_names
        y_t, p_t = data.y["test"], test.get("pred", np.zeros(0))
        if data.task == "regression":
            y_t, p_t = data.y_original("test"), datamod.decode_targets(data, p_t)
        figs = plots.make_all(data.task, list(result.history), result.W,
                              [data.feature_names[j] for j in data.scaler.keep],
                              y_t, p_t, test.get("proba"), labels, out_dir / "plots")
        tr.log_artifacts(figs, "plots")
    npz = tracking.save_model_npz(out_dir / "model.npz", data.task, result.W, result.b,
                                  data.scaler, data.classes, data.feature_names,
                                  data.target_names)
    tr.log_artifacts([npz])
    if test:  # what the pipeline predicted on the test split, for checks of the served model
        pred = out_dir / "test_predictions.npz"
        np.savez(pred, X_raw=data.raw["test"], y_true=_plain(data.y_original("test")),
                 y_pred=_plain(datamod.decode_targets(data, test["pred"])))
        tr.log_artifacts([pred])
    if config.tracking.log_model:
        import pandas as pd

        X_ex = pd.DataFrame(data.raw["test"][:5], columns=data.feature_names)
        y_ex = datamod.decode_targets(data, test["pred"][:5]) if test else None
        if y_ex is not None and y_ex.ndim == 2:
            y_ex = pd.DataFrame(y_ex, columns=data.target_names)
        tr.set_tags({"model_uri": tr.log_model(npz, X_ex, y_ex)})


def _plain(a: np.ndarray) -> np.ndarray:
    """Object labels as strings, so the ``.npz`` needs no pickle."""
    return a.astype(str) if a.dtype.kind == "O" else a


def run(config: cfgmod.Config, runtime: cfgmod.Runtime | None = None,
        quiet: bool = False) -> RunResult:
    """Run one experiment end to end and return what it logged.

    Raises
    ------
    DataError, ConfigError
        Before any MLflow run starts, when the data or the configuration cannot work.
    """
    runtime = runtime or cfgmod.Runtime()
    if not runtime.output_dir:
        with tempfile.TemporaryDirectory(prefix="pipeline-") as tmp:
            runtime.output_dir = tmp
            return run(config, runtime, quiet)
    tracking.preload()
    data = datamod.load(config.dataset, config.model.name, config.seed)
    uri = tracking.resolve_uri(config.tracking.uri)
    name = config.run_name or f"{config.model.name}-{config.reg.name}-{config.dataset.name}"
    tags = {"dataset.name": data.name, "dataset.digest": data.digest, "task": data.task,
            "hydra.overrides": " ".join(runtime.overrides),
            **tracking.git_facts(tracking.project_root())}
    if runtime.job_num is not None:
        tags["hydra.job.num"] = str(runtime.job_num)
    out_dir = Path(runtime.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tracking.Tracker(uri, config.tracking.experiment, name, tags,
                          runtime.parent_run_id) as tr:
        tr.log_params(cfgmod.flatten(config))
        tr.log_text(runtime.config_yaml or cfgmod.to_yaml(config), "config.yaml")
        progress = Progress(tr, data, config.solver.max_iter,
                            config.tracking.progress and not quiet)
        try:
            result = _fit(config, data, progress)
        finally:
            progress.close()
        if progress.steps == 0:  # a direct solver (closed form): log its one value
            for i, f in enumerate(result.history or [result.objective]):
                tr.add_step(i, {"objective": f})
        final, test = evaluate(result, data)
        final.update(_solver_facts(result, config.reg.lam, config.reg.name))
        tr.log_metrics(final)
        tr.set_tags({"solver.actual": str(result.solver), "criterion": str(result.criterion),
                     "converged": str(bool(result.converged)).lower(),
                     "warnings": " | ".join(map(str, result.warnings))[:5000]})
        _log_outputs(tr, config, data, result, test, out_dir)
    out = RunResult(tr.run_id, uri, final, result, data, test)
    if not quiet:
        print(summary(out, config))
    return out


def summary(res: RunResult, config: cfgmod.Config) -> str:
    """The few lines a user reads at the end."""
    f = res.fit
    conv = f"converged ({f.criterion})" if f.converged else f"NOT converged ({f.criterion})"
    keys = [k for k in res.metrics if k.startswith("test_")]
    lines = [f"{config.model.name} + {config.reg.name} (lam={config.reg.lam:g}) on "
             f"{res.data.name}, solver {f.solver}: {f.n_iter} steps, {f.n_passes} passes, "
             f"{f.time_s:.3g} s, {conv}, F={f.objective:.6g}",
             "  test: " + ", ".join(f"{k[5:]}={res.metrics[k]:.4g}" for k in keys)]
    if "nonzero_weights" in res.metrics:
        lines.append(f"  non-zero weights: {int(res.metrics['nonzero_weights'])}"
                     f"/{int(res.metrics['n_weights'])}")
    for w in f.warnings:
        lines.append(f"  warning: {w}")
    lines += [f"  mlflow run {res.run_id} in {res.uri}",
              f"  browse: {tracking.ui_command(res.uri)}"]
    return "\n".join(lines)
