"""DVC front-end: ``python -m pipeline.stages prepare|train|evaluate`` reads ``params.yaml``.

The stages of ``dvc.yaml``, run by DVC in the repository (or experiment workspace) root:

- ``prepare``: dataset -> ``data/prepared/`` (split arrays, scaler, ``schema.json``);
- ``train``: -> ``models/`` (weights, ``fit.json``) and ``plots/train/history.csv``; opens the
  MLflow run, logs params, per-step metrics and the model;
- ``evaluate``: -> ``metrics/eval.json`` and ``plots/eval/*.csv``; reopens the train run
  (its id handed over in ``.dvc/tmp/``, outside every hashed output) and logs metrics and plots.

Bit for bit: hashed outputs hold only what the data and parameters determine: ``.npy`` files
(no timestamps, unlike ``.npz``), JSON with sorted keys and ``repr`` floats, CSV likewise. Run
ids, timings and absolute paths go to MLflow only. Lineage tags on the run: ``dvc.stage``,
``dvc.exp_name``, ``git.commit`` and the md5 of each stage's inputs as ``dvc.lock`` records them.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import config as cfgmod

PARAMS = Path("params.yaml")
PREPARED = Path("data/prepared")
MODELS = Path("models")
METRICS = Path("metrics/eval.json")
TRAIN_PLOTS = Path("plots/train")
EVAL_PLOTS = Path("plots/eval")
HANDOFF = Path(".dvc/tmp/pipeline-mlflow-run.json")  # not hashed: the run id differs per run
SPLITS = ("train", "val", "test")
STAGES = ("prepare", "train", "evaluate")


# ----------------------------------------------------------------------------- files
def load_params(path: Path = PARAMS) -> cfgmod.Config:
    """``params.yaml`` (as composed from ``conf/``) -> the typed, validated ``Config``."""
    from omegaconf import DictConfig, OmegaConf

    cfg = OmegaConf.load(path)
    if not isinstance(cfg, DictConfig):
        raise cfgmod.ConfigError(f"{path} holds no mapping of parameters")
    return cfgmod.load(cfg)[0]


def write_json(path: Path, obj: Any) -> Path:
    """Deterministic JSON: sorted keys, ``repr`` floats, non-finite values as null."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(obj), sort_keys=True, indent=2) + "\n", encoding="utf-8")
    return path


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [_plain(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    return obj


def write_csv(path: Path, columns: dict[str, Any]) -> Path:
    """Columns of equal length as CSV (``repr`` floats; empty cells for None)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(columns)
    cols = [list(columns[k]) for k in names]
    lines = [",".join(names)]
    for row in zip(*cols, strict=True):
        lines.append(",".join(_cell(v) for v in row))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float | np.floating):
        return repr(float(v))
    text = str(v)
    return f'"{text}"' if "," in text or '"' in text else text


def _save(path: Path, a: np.ndarray) -> None:
    a = np.asarray(a)
    np.save(path, a.astype(str) if a.dtype.kind == "O" else a, allow_pickle=False)


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def digest(folder: Path) -> str:
    """md5 over the names and bytes of the files in ``folder`` (ties a run to its model)."""
    h = hashlib.md5()
    for p in sorted(q for q in folder.rglob("*") if q.is_file()):
        h.update(p.relative_to(folder).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- prepared data
def save_prepared(data: Any, out: Path = PREPARED) -> None:
    """A ``data.Dataset`` as ``.npy`` arrays plus ``schema.json``."""
    _fresh(out)
    for split in SPLITS:
        for kind, arrays in (("X", data.X), ("y", data.y), ("raw", data.raw)):
            _save(out / f"{kind}_{split}.npy", arrays[split])
    s = data.scaler
    for name in ("keep", "mean", "scale", "y_mean", "y_scale"):
        _save(out / f"scaler_{name}.npy", getattr(s, name))
    if data.classes is not None:
        _save(out / "classes.npy", data.classes)
    write_json(out / "schema.json", {
        "name": data.name, "task": data.task, "digest": data.digest,
        "feature_names": data.feature_names, "target_names": data.target_names,
        "class_names": data.class_names, "has_classes": data.classes is not None,
        "n_rows": {split: len(data.y[split]) for split in SPLITS},
        "n_features": int(data.X["train"].shape[1])})


def load_prepared(folder: Path = PREPARED) -> Any:
    """The ``data.Dataset`` that ``save_prepared`` wrote."""
    from pipeline import data as datamod

    schema = json.loads((folder / "schema.json").read_text())
    arr = {p.stem: np.load(p, allow_pickle=False) for p in folder.glob("*.npy")}
    scaler = datamod.Scaler(**{k: arr[f"scaler_{k}"]
                               for k in ("keep", "mean", "scale", "y_mean", "y_scale")})
    return datamod.Dataset(
        name=schema["name"], task=schema["task"], feature_names=schema["feature_names"],
        target_names=schema["target_names"], classes=arr.get("classes"),
        class_names=schema["class_names"], scaler=scaler,
        X={s: arr[f"X_{s}"] for s in SPLITS}, y={s: arr[f"y_{s}"] for s in SPLITS},
        raw={s: arr[f"raw_{s}"] for s in SPLITS}, digest=schema["digest"])


# ----------------------------------------------------------------------------- model files
FIT_FIELDS = ("model", "reg", "lam", "l1_ratio", "solver", "objective", "loss", "penalty",
              "n_iter", "n_passes", "converged", "criterion", "warnings", "dtype")


def save_model(result: Any, out: Path = MODELS) -> None:
    """Weights, classes, objective history and ``fit.json`` (no timings: they differ per run)."""
    _fresh(out)
    _save(out / "W.npy", result.W)
    _save(out / "b.npy", result.b)
    _save(out / "history.npy", np.asarray(result.history, dtype=np.float64))
    if result.classes is not None:
        _save(out / "classes.npy", result.classes)
    write_json(out / "fit.json", {k: getattr(result, k) for k in FIT_FIELDS})


def load_model(folder: Path = MODELS) -> Any:
    """The ``FitResult`` (without its timing) that ``save_model`` wrote."""
    from pipeline import FitResult

    fit: dict[str, Any] = json.loads((folder / "fit.json").read_text())
    for k in ("objective", "loss", "penalty"):  # non-finite values are stored as null
        fit[k] = float("nan") if fit[k] is None else fit[k]
    classes = folder / "classes.npy"
    return FitResult(
        W=np.load(folder / "W.npy"), b=np.load(folder / "b.npy"), time_s=float("nan"),
        history=np.load(folder / "history.npy").tolist(),
        classes=np.load(classes) if classes.exists() else None,
        **{k: fit[k] for k in FIT_FIELDS})


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


def dvc_md5(path: Path, root: Path = Path(".")) -> str:
    """DVC 3's md5 of a file (its bytes) or folder (``<md5 of the sorted listing>.dir``),
    skipping what ``.dvcignore`` ignores (name patterns; ``name/`` for folders)."""
    if path.is_file():
        return hashlib.md5(path.read_bytes()).hexdigest()
    ignore = root / ".dvcignore"
    pats = [ln.strip() for ln in (ignore.read_text().splitlines() if ignore.exists() else [])
            if ln.strip() and not ln.startswith("#")]
    dirs = [p.rstrip("/") for p in pats if p.endswith("/")]
    names = [p for p in pats if not p.endswith("/")]
    entries = []
    for f in path.rglob("*"):
        rel = f.relative_to(path)
        if (not f.is_file() or any(fnmatch.fnmatch(d, p) for d in rel.parts[:-1] for p in dirs)
                or any(fnmatch.fnmatch(rel.name, p) for p in names)):
            continue
        entries.append({"md5": hashlib.md5(f.read_bytes()).hexdigest(),
                        "relpath": rel.as_posix()})
    entries.sort(key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


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


def _tracker(uri: str, config: cfgmod.Config, name: str, tags: dict[str, str],
             resume: str | None = None) -> Any:
    """A ``tracking.Tracker`` that also keeps every per-step row (for the history plot)."""
    from pipeline import tracking

    class StageTracker(tracking.Tracker):
        rows: list[tuple[int, dict[str, float]]] = []

        def add_step(self, step: int, values: dict[str, float]) -> None:
            self.rows.append((step, dict(values)))
            super().add_step(step, values)

    tr = StageTracker(uri, config.tracking.experiment, name, tags, resume_run_id=resume)
    tr.rows = []
    return tr


# ----------------------------------------------------------------------------- stages
def prepare(params: Path = PARAMS) -> None:
    """Load, check, split and standardise the dataset; write ``data/prepared/``."""
    from pipeline import data as datamod

    config = load_params(params)
    data = datamod.load(config.dataset, config.model.name, config.seed)
    save_prepared(data)
    print(f"prepare: {data.name} ({data.task}), rows "
          + ", ".join(f"{s} {len(data.y[s])}" for s in SPLITS) + f" -> {PREPARED}/")


def train(params: Path = PARAMS) -> str:
    """Fit on ``data/prepared``; write ``models/`` and the history plot; log to a new run."""
    from pipeline import run as runmod
    from pipeline import tracking

    config = load_params(params)
    tracking.preload()
    data = load_prepared()
    uri = tracking.resolve_uri(config.tracking.uri)
    name = config.run_name or f"{config.model.name}-{config.reg.name}-{data.name}"
    tags = {"dataset.name": data.name, "dataset.digest": data.digest, "task": data.task,
            "dvc.stages": "train", **lineage_tags("train")}
    with _tracker(uri, config, name, tags) as tr:
        tr.log_params(cfgmod.flatten(config))
        tr.log_text(cfgmod.to_yaml(config), "config.yaml")
        show = config.tracking.progress and sys.stderr.isatty()
        progress = runmod.Progress(tr, data, config.solver.max_iter, show)
        try:
            result = runmod._fit(config, data, progress)
        finally:
            progress.close()
        if progress.steps == 0:  # a direct solver (closed form): log its one value
            for i, f in enumerate(result.history or [result.objective]):
                tr.add_step(i, {"objective": f})
        save_model(result)
        _write_history(tr.rows)
        model_digest = digest(MODELS)
        tr.log_metrics(runmod._solver_facts(result, config.reg.lam, config.reg.name))
        tr.set_tags({"solver.actual": str(result.solver), "criterion": str(result.criterion),
                     "converged": str(bool(result.converged)).lower(),
                     "models.digest": model_digest})
        if config.tracking.log_model:
            _log_model(tr, data, result)
        write_json(HANDOFF, {"run_id": tr.run_id, "uri": uri, "models_digest": model_digest})
    print(f"train: {result.solver}, {result.n_iter} steps, F={result.objective:.6g}, "
          f"{result.time_s:.3g} s -> {MODELS}/; mlflow run {tr.run_id}")
    return tr.run_id


def _write_history(rows: list[tuple[int, dict[str, float]]]) -> None:
    names: list[str] = []
    for _, values in rows:
        names += [k for k in values if k not in names]
    cols: dict[str, list[Any]] = {"step": [s for s, _ in rows]}
    for k in names:
        cols[k] = [values.get(k) for _, values in rows]
    write_csv(TRAIN_PLOTS / "history.csv", cols)


def _log_model(tr: Any, data: Any, result: Any) -> None:
    """The weights/scaler ``.npz`` and the numpy-only pyfunc (files outside hashed outputs)."""
    import pandas as pd

    from pipeline import data as datamod
    from pipeline import predict, tracking

    with tempfile.TemporaryDirectory(prefix="pipeline-train-") as tmp:
        npz = tracking.save_model_npz(Path(tmp) / "model.npz", data.task, result.W, result.b,
                                      data.scaler, data.classes, data.feature_names,
                                      data.target_names)
        tr.log_artifacts([npz])
        X_ex = pd.DataFrame(data.raw["test"][:5], columns=data.feature_names)
        y_ex = None
        if len(data.y["test"]):
            y_ex = datamod.decode_targets(data, predict(result, data.X["test"][:5]))
            if y_ex.ndim == 2:
                y_ex = pd.DataFrame(y_ex, columns=data.target_names)
        tr.set_tags({"model_uri": tr.log_model(npz, X_ex, y_ex)})


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
    from pipeline import run as runmod
    from pipeline import tracking

    config = load_params(params)
    tracking.preload()
    data, result = load_prepared(), load_model()
    final, test = runmod.evaluate(result, data)
    facts = runmod._solver_facts(result, config.reg.lam, config.reg.name)
    facts.pop("fit_time_s", None)  # a timing: never in a hashed output
    write_json(METRICS, {**final, **facts})
    _write_eval_plots(data, test)
    uri = tracking.resolve_uri(config.tracking.uri)
    model_digest = digest(MODELS)
    run_id = _train_run(uri, model_digest)
    tags = lineage_tags("evaluate")
    name = config.run_name or f"{result.model}-{result.reg}-{data.name}"
    if run_id is None:  # weights not trained by a tracked run (e.g. restored): a run of its own
        tags.update({"dataset.name": data.name, "dataset.digest": data.digest,
                     "task": data.task, "models.digest": model_digest})
    with _tracker(uri, config, name, tags, resume=run_id) as tr:
        if run_id is None:
            tr.log_params(cfgmod.flatten(config))
        stages = (tracking.run_tags(uri, run_id) or {}).get("dvc.stages", "") if run_id else ""
        tr.set_tags({"dvc.stages": ",".join(filter(None, [stages, "evaluate"]))})
        tr.log_metrics({**final, **facts})
        _log_eval_artifacts(tr, config, data, result, test)
    print("evaluate: " + ", ".join(f"{k}={v:.4g}" for k, v in final.items()
                                    if k.startswith("test_"))
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

    _fresh(EVAL_PLOTS)
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


def _log_eval_artifacts(tr: Any, config: cfgmod.Config, data: Any, result: Any,
                        test: dict[str, Any]) -> None:
    """The DVC files, the PNG figures and the test predictions (PNGs are not hashed)."""
    from pipeline import data as datamod
    from pipeline import plots

    tr.log_artifacts([METRICS], "dvc")
    tr.log_artifacts(sorted(EVAL_PLOTS.glob("*.csv")) + [TRAIN_PLOTS / "history.csv"],
                     "dvc/plots")
    with tempfile.TemporaryDirectory(prefix="pipeline-evaluate-") as tmp:
        out = Path(tmp)
        if config.tracking.log_plots:
            y_t, p_t = data.y["test"], test.get("pred", np.zeros(0))
            if data.task == "regression":
                y_t, p_t = data.y_original("test"), datamod.decode_targets(data, p_t)
            figs = plots.make_all(data.task, list(result.history), result.W,
                                  [data.feature_names[j] for j in data.scaler.keep],
                                  y_t, p_t, test.get("proba"), data.class_names, out / "plots")
            tr.log_artifacts(figs, "plots")
        if test:
            pred = out / "test_predictions.npz"
            np.savez(pred, X_raw=data.raw["test"], y_true=data.y_original("test"),
                     y_pred=datamod.decode_targets(data, test["pred"]))
            tr.log_artifacts([pred])


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pipeline.stages",
                                     description="One stage of dvc.yaml, reading params.yaml.")
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--params", type=Path, default=PARAMS)
    args = parser.parse_args(argv)
    try:
        {"prepare": prepare, "train": train, "evaluate": evaluate}[args.stage](args.params)
    except cfgmod.ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
