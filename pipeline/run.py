"""One experiment in one process: prepare -> fit -> evaluate -> log.

``run(config)`` is what ``python -m pipeline`` calls after ``config.load``; tests call it
in-process. The data and the store are checked before the MLflow run starts, so bad input
leaves no run behind; anything that fails after that ends the run FAILED with its error logged.
What the run logs is decided in ``pipeline.experiment`` (shared with the DVC stages); this
module adds only what the Hydra path has of its own: Hydra's output folder, overrides and
sweep parent, and the summary printed at the end.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import config as cfgmod
from pipeline import data as datamod
from pipeline import experiment, tracking

SPLITS = experiment.SPLITS
Progress = experiment.Progress  # re-exported: the callback the tests drive
evaluate = experiment.evaluate


@dataclass
class RunResult:
    """What one run produced: its id, final metrics, the core's FitResult, test predictions."""

    run_id: str
    uri: str
    metrics: dict[str, float]
    fit: Any
    data: datamod.Dataset
    predictions: dict[str, np.ndarray] = field(default_factory=dict)


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
    data = datamod.load(config.dataset, config.model.name, config.seed,
                        config.model.class_weight)  # class labels checked before a run opens
    out_dir = Path(runtime.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    uri = experiment.check_store(config)  # the last check: after it, a run opens
    name = experiment.run_name(config)
    tags = {**experiment.data_tags(data), "hydra.overrides": " ".join(runtime.overrides),
            **tracking.git_facts(tracking.project_root())}
    if runtime.job_num is not None:
        tags["hydra.job.num"] = str(runtime.job_num)
    with experiment.opened(uri, config, name, tags, runtime.parent_run_id) as tr:
        result = experiment.log_fit(tr, config, data, config.tracking.progress and not quiet,
                                    runtime.config_yaml)
        final, test = experiment.evaluate(result, data)
        experiment.log_evaluation(tr, config, data, result, final, test, out_dir)
        experiment.log_model(tr, config, data, result, out_dir)
        final.update(experiment.solver_facts(result, config.reg.name))
    out = RunResult(tr.run_id, uri, final, result, data, test)
    if not quiet:
        print(summary(out, config))
    return out


def summary(res: RunResult, config: cfgmod.Config) -> str:
    """The few lines a user reads at the end."""
    f = res.fit
    conv = f"converged ({f.criterion})" if f.converged else f"NOT converged ({f.criterion})"
    keys = [k for k in res.metrics if k.startswith("test/")]
    lam = (f"lam={f.lam:g}, chosen by search={config.search.name}"
           if config.search.name != "none" else f"lam={config.reg.lam:g}")
    lines = [f"{config.model.name} + {config.reg.name} ({lam}) on "
             f"{res.data.name}, solver {f.solver}: {f.n_iter} steps, {f.n_passes} passes, "
             f"{f.time_s:.3g} s, {conv}, F={f.objective:.6g}",
             "  test: " + ", ".join(f"{k[5:]}={res.metrics[k]:.4g}" for k in keys)]
    if "fit/nonzero_weights" in res.metrics:
        lines.append(f"  non-zero weights: {int(res.metrics['fit/nonzero_weights'])}"
                     f"/{int(res.metrics['fit/n_weights'])}")
    for w in f.warnings:
        lines.append(f"  warning: {w}")
    lines += [f"  mlflow run {res.run_id} in {res.uri}",
              f"  browse: {tracking.ui_command(res.uri)}"]
    return "\n".join(lines)
