"""DVC front-end: ``python -m pipeline.stages prepare|train|evaluate`` reads ``params.yaml``.

The stages of ``dvc.yaml``, run by DVC in the repository (or experiment workspace) root:

- ``prepare``: dataset -> ``data/prepared/`` (split arrays, scaler, ``schema.json``);
- ``train``: -> ``models/`` (weights, ``fit.json``; with search=path / cv also the search's
  record), ``plots/train/history.csv`` and ``plots/search/{curve,path}.csv`` (the score, and
  non-zeros and objective, per lambda; header only for search=none); opens the MLflow run,
  logs params, per-step metrics and the model;
- ``evaluate``: -> ``metrics/eval.json`` (with a ``search`` group: the chosen lambda, lam_min,
  lam_1se and their scores) and ``plots/eval/*.csv``; reopens the train run (its id handed
  over in ``.dvc/tmp/``, outside every hashed output) and logs metrics and plots.

What a run logs is decided in ``pipeline.experiment`` (shared with ``python -m pipeline``);
this module keeps where parameters come from, the hashed outputs and the run hand-off. A user
error prints one ``error:`` line and exits 2 before any run opens.

Bit for bit: hashed outputs hold only what the data and parameters determine, written by
``pipeline.stage_files`` (``.npy``, sorted JSON, CSV); run ids, timings and absolute paths go
to MLflow only. Lineage tags on the run: ``dvc.stage``,
``dvc.exp_name``, ``git.commit`` and the md5 of each stage's inputs as ``dvc.lock`` records them.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import config as cfgmod
from pipeline import metrics
from pipeline.stage_files import (
    SPLITS,
    digest,
    dvc_md5,
    fresh_folder,
    load_model,
    load_prepared,
    load_search,
    save_model,
    save_prepared,
    save_search,
    write_csv,
    write_json,
)

PARAMS = Path("params.yaml")
PREPARED = Path("data/prepared")
MODELS = Path("models")
METRICS = Path("metrics/eval.json")
TRAIN_PLOTS = Path("plots/train")
EVAL_PLOTS = Path("plots/eval")
SEARCH_PLOTS = Path("plots/search")
HANDOFF = Path(".dvc/tmp/pipeline-mlflow-run.json")  # not hashed: the run id differs per run
STAGES = ("prepare", "train", "evaluate")


# ----------------------------------------------------------------------------- params
def load_params(path: Path = PARAMS) -> cfgmod.Config:
    """``params.yaml`` (as composed from ``conf/``) -> the typed, validated ``Config``.

    A missing or unparsable file is a ``ConfigError`` naming it and the fix (the stage's one
    line), like a wrong value inside it.
    """
    import yaml
    from omegaconf import DictConfig, OmegaConf

    fix = "compose it from conf/ with `python -m pipeline.compose [overrides]`"
    try:
        cfg = OmegaConf.load(path)
    except FileNotFoundError:
        raise cfgmod.ConfigError(f"{path}: no such file; {fix}") from None
    except (OSError, UnicodeError, yaml.YAMLError) as err:
        why = " ".join(str(err).split())
        raise cfgmod.ConfigError(f"{path} cannot be read as YAML ({why}); {fix}") from None
    if not isinstance(cfg, DictConfig):
        raise cfgmod.ConfigError(f"{path} holds no mapping of parameters; {fix}")
    return cfgmod.load(cfg)[0]


# ----------------------------------------------------------------------------- lineage
def _dep_md5s(stage: str, root: Path = Path(".")) -> dict[str, str]:
    """md5 of each dep of ``stage``: upstream outputs as ``dvc.lock`` has them (DVC writes
    each stage's entry before the next one runs), code hashed here the way DVC 3 does."""
    import yaml

    try:
        spec = yaml.safe_load((root / "dvc.yaml").read_text())["stages"][stage]
    except (OSError, KeyError, TypeError):
        return {}
    lock_path = root / "dvc.lock"
    lock = yaml.safe_load(lock_path.read_text()) if lock_path.exists() else {}
    recorded: dict[str, str] = {}
    for st in (lock or {}).get("stages", {}).values():
        for entry in st.get("outs", []):
            recorded[entry["path"]] = entry["md5"]
    out: dict[str, str] = {}
    for dep in spec.get("deps", []):
        path = root / dep
        if dep in recorded:
            out[dep] = recorded[dep]
        elif path.exists():
            out[dep] = dvc_md5(path, root)
    return out


def lineage_tags(stage: str) -> dict[str, str]:
    """Tags that tie a run to the DVC stage, experiment, commit and inputs that made it."""
    from pipeline import tracking

    deps = _dep_md5s(stage)
    combined = hashlib.md5("".join(f"{k} {v}\n" for k, v in sorted(deps.items())).encode())
    tags = {"dvc.stage": os.environ.get("DVC_STAGE", stage),
            f"dvc.{stage}.inputs_md5": combined.hexdigest(),
            **{f"dvc.{stage}.dep.{k}": v for k, v in deps.items()},
            **tracking.git_facts(Path.cwd())}
    for env, tag in (("DVC_EXP_NAME", "dvc.exp_name"),
                     ("DVC_EXP_BASELINE_REV", "dvc.exp_baseline_rev")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags


# ----------------------------------------------------------------------------- stages
def prepare(params: Path = PARAMS) -> None:
    """Load, check, split and standardise the dataset; write ``data/prepared/``."""
    from pipeline import data as datamod

    config = load_params(params)
    data = datamod.load(config.dataset, config.model.name, config.seed,
                        config.model.class_weight)
    save_prepared(data, PREPARED)
    print(f"prepare: {data.name} ({data.task}), rows "
          + ", ".join(f"{s} {len(data.y[s])}" for s in SPLITS) + f" -> {PREPARED}/")


def train(params: Path = PARAMS) -> str:
    """Fit on ``data/prepared``; write ``models/`` and the history plot; log to a new run."""
    from pipeline import experiment, search, tracking

    config = load_params(params)
    tracking.preload()
    data = load_prepared(PREPARED)
    uri = experiment.check_store(config)  # the last check: after it, a run opens
    name = experiment.run_name(config)
    tags = {**experiment.data_tags(data), "dvc.stages": "train", **lineage_tags("train")}
    with experiment.opened(uri, config, name, tags) as tr:
        show = config.tracking.progress and sys.stderr.isatty()
        result = experiment.log_fit(tr, config, data, show)
        save_model(result, MODELS)
        rec = getattr(result, "search", None)
        if rec is not None:
            save_search(rec, MODELS)
        fresh_folder(SEARCH_PLOTS)
        write_csv(SEARCH_PLOTS / "curve.csv", search.curve_table(rec))
        write_csv(SEARCH_PLOTS / "path.csv", search.path_table(rec))
        _write_history(tr.rows)
        model_digest = digest(MODELS)
        tr.set_tags({"models.digest": model_digest})
        with tempfile.TemporaryDirectory(prefix="pipeline-train-") as tmp:
            experiment.log_model(tr, config, data, result, Path(tmp))
        write_json(HANDOFF, {"run_id": tr.run_id, "uri": uri, "models_digest": model_digest})
    chosen = f"search={rec.kind} chose lam={rec.lam:.4g}, " if rec is not None else ""
    print(f"train: {chosen}{result.solver}, {result.n_iter} steps, F={result.objective:.6g}, "
          f"{result.time_s:.3g} s -> {MODELS}/; mlflow run {tr.run_id}")
    return tr.run_id


def _write_history(rows: list[tuple[int, dict[str, float]]]) -> None:
    """The per-step curves as columns ``step, objective, data_loss[, val_<score>]`` (the
    ``step/`` prefix of their MLflow names dropped: a CSV has one group). Only the ``step/``
    rows: a search's per-lambda ``search/*`` rows go to ``plots/search/``."""
    prefix = f"{metrics.STEP}{metrics.SEP}"
    rows = [(s, {k: v for k, v in values.items() if k.startswith(prefix)}) for s, values in rows]
    rows = [(s, values) for s, values in rows if values]
    names: list[str] = []
    for _, values in rows:
        names += [k for k in values if k not in names]
    cols: dict[str, list[Any]] = {"step": [s for s, _ in rows]}
    for k in names:
        column = k.removeprefix(prefix)
        cols[column] = [values.get(k) for _, values in rows]
    write_csv(TRAIN_PLOTS / "history.csv", cols)


def _train_run(uri: str, model_digest: str) -> str | None:
    """The run that trained these weights: the handed-over id, else a search by digest."""
    from pipeline import tracking

    if HANDOFF.exists():
        hand = json.loads(HANDOFF.read_text())
        if (hand.get("models_digest") == model_digest and hand.get("uri") == uri
                and tracking.run_tags(uri, hand["run_id"]) is not None):
            return str(hand["run_id"])
    return tracking.find_run(uri, "models.digest", model_digest)


def evaluate(params: Path = PARAMS) -> str:
    """Score ``models/`` on every split; write metrics and plot data; log into the train run."""
    from pipeline import experiment, search, tracking

    config = load_params(params)
    tracking.preload()
    data, result = load_prepared(PREPARED), load_model(MODELS)
    rec = load_search(MODELS)  # search=path / cv: what the search chose, else None
    uri = experiment.check_store(config)
    final, test = experiment.evaluate(result, data)
    facts = experiment.solver_facts(result, result.reg)  # from fit.json
    facts.pop("fit/fit_time_s", None)  # a timing: never in a hashed output
    if rec is not None:
        result.search = rec  # the search's PNGs are logged with the others
        facts.update(search.facts(rec))  # search.chosen_lam, search.lam_min, ...
    write_json(METRICS, metrics.nested({**final, **facts}))  # {"train": {"accuracy": ...}}
    _write_eval_plots(data, test)
    model_digest = digest(MODELS)
    run_id = _train_run(uri, model_digest)
    tags = lineage_tags("evaluate")
    name = config.run_name or f"{result.model}-{result.reg}-{data.name}"
    if run_id is None:  # weights not trained by a tracked run (e.g. restored): a run of its own
        tags.update({**experiment.data_tags(data), "models.digest": model_digest})
    with experiment.opened(uri, config, name, tags, resume_run_id=run_id) as tr:
        if run_id is None:
            tr.log_params(cfgmod.flatten(config))
        done = (tracking.run_tags(uri, run_id) or {}).get("dvc.stages", "") if run_id else ""
        stages = [s for s in done.split(",") if s]
        tr.set_tags({"dvc.stages": ",".join(stages + ["evaluate"] * ("evaluate" not in stages))})
        tr.log_artifacts([METRICS], "dvc")
        tr.log_artifacts(sorted(EVAL_PLOTS.glob("*.csv")) + [TRAIN_PLOTS / "history.csv"]
                         + sorted(SEARCH_PLOTS.glob("*.csv")) * (rec is not None), "dvc/plots")
        with tempfile.TemporaryDirectory(prefix="pipeline-evaluate-") as tmp:
            experiment.log_evaluation(tr, config, data, result, {**final, **facts}, test,
                                      Path(tmp))
    print("evaluate: " + ", ".join(f"{k}={v:.4g}" for k, v in final.items()
                                    if k.startswith("test/"))
          + f" -> {METRICS}; mlflow run {tr.run_id}")
    return tr.run_id


def _roc(y: np.ndarray, score: np.ndarray) -> dict[str, list[float]]:
    """ROC points of ``score`` for the 0/1 labels ``y`` (micro-average when flattened)."""
    order = np.argsort(-score, kind="mergesort")
    hits = np.asarray(y)[order] == 1
    tpr = np.concatenate([[0.0], np.cumsum(hits) / max(1, hits.sum())])
    fpr = np.concatenate([[0.0], np.cumsum(~hits) / max(1, (~hits).sum())])
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist()}


def _write_eval_plots(data: Any, test: dict[str, Any]) -> None:
    """DVC plot data of the test split: confusion pairs, ROC, predicted vs true.

    All three files always exist (``dvc.yaml`` names them); one that does not fit the task
    holds its header only, an empty plot rather than a missing file.
    """
    from pipeline import data as datamod

    fresh_folder(EVAL_PLOTS)
    conf: dict[str, list[Any]] = {"actual": [], "predicted": []}
    roc: dict[str, list[Any]] = {"fpr": [], "tpr": []}
    pvt: dict[str, list[Any]] = {"true": [], "predicted": []}
    y, pred, proba = data.y["test"], test.get("pred"), test.get("proba")
    if pred is not None and data.task == "regression":
        yt, pt = data.y_original("test"), datamod.decode_targets(data, pred)
        pvt = {"true": np.ravel(yt).tolist(), "predicted": np.ravel(pt).tolist()}
    elif pred is not None and data.task in ("binary", "multiclass"):
        names = data.class_names or [str(c) for c in range(int(np.max(y)) + 1)]
        conf = {"actual": [names[int(i)] for i in y], "predicted": [names[int(i)] for i in pred]}
        if proba is not None and data.task == "binary":
            roc = _roc(y, proba[:, -1])
        elif proba is not None:
            Y = np.zeros_like(proba)
            Y[np.arange(len(y)), np.asarray(y, np.int64)] = 1
            roc = _roc(Y.ravel(), proba.ravel())
    write_csv(EVAL_PLOTS / "confusion.csv", conf)
    write_csv(EVAL_PLOTS / "roc.csv", roc)
    write_csv(EVAL_PLOTS / "predicted_vs_true.csv", pvt)


def main(argv: list[str] | None = None) -> int:
    """Run one stage; a user error prints one ``error:`` line and exits 2 (no traceback)."""
    import argparse

    from pipeline import experiment, tracking

    tracking.handle_signals()  # SIGTERM ends an open run KILLED, like Ctrl-C
    parser = argparse.ArgumentParser(prog="python -m pipeline.stages",
                                     description="One stage of dvc.yaml, reading params.yaml.")
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--params", type=Path, default=PARAMS)
    args = parser.parse_args(argv)
    try:
        {"prepare": prepare, "train": train, "evaluate": evaluate}[args.stage](args.params)
    except experiment.reported() as err:
        return experiment.report(err)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
