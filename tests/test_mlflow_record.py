"""The MLflow record as a user reads it, read back through ``MlflowClient``: run names that
tell runs apart, the sweep's parent named after its overrides, the training data as a dataset
input, ``--help`` listing the user-facing groups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline import experiment, run, tracking
from pipeline.config import Runtime
from tests.conftest import compose, runs_of


def _run(store: str, tmp_path: Path, overrides: list[str]):
    config = compose([*overrides, f"tracking.uri={store}", "tracking.progress=false",
                      "tracking.log_model=false", "tracking.log_plots=false"])
    return run.run(config, Runtime(output_dir=str(tmp_path / "out")), quiet=True)


@pytest.mark.parametrize("overrides, name", [
    (["model=logistic", "reg=l1", "reg.lam=0.01"], "logistic-l1-lam0.01-breast_cancer"),
    (["model=softmax", "dataset=digits", "reg=elasticnet", "reg.lam=1e-3", "reg.l1_ratio=0.3"],
     "softmax-elasticnet-lam0.001-r0.3-digits"),
    (["model=linear", "dataset=file", "dataset.path=data/houses.csv", "dataset.target=[y]",
      "reg.lam=0.1"], "linear-l2-lam0.1-houses"),
    (["model=logistic", "reg=none"], "logistic-none-breast_cancer"),
    (["run_name=mine", "reg.lam=0.5"], "mine"),
])
def test_default_run_names_tell_runs_apart(overrides, name):
    assert experiment.run_name(compose(overrides)) == name


def test_a_file_run_is_named_by_the_files_stem_in_the_store(store, tmp_path):
    from mlflow.tracking import MlflowClient

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    path = tmp_path / "houses.csv"
    path.write_text("a,b,y\n" + "\n".join(f"{a},{b},{a - b}" for a, b in X))
    res = _run(store, tmp_path, ["model=linear", "dataset=file", f"dataset.path={path}",
                                 "dataset.target=[y]", "reg.lam=0.1"])
    got = MlflowClient(store).get_run(res.run_id)
    assert got.info.run_name == "linear-l2-lam0.1-houses"
    assert got.data.metrics["fit/compile_time_s"] >= 0 and "fit/fit_time_s" in got.data.metrics


METRIC_GROUPS = {"step", "train", "val", "test", "fit"}


def test_metric_names_are_grouped_for_the_ui_and_curves_stay_curves(store, tmp_path):
    """Every metric is ``<group>/<name>`` (the run page's sections); the per-step ones are
    curves with one value per solver step, the rest one value each."""
    from mlflow.tracking import MlflowClient

    res = _run(store, tmp_path, ["model=logistic", "reg=l1", "reg.lam=0.01"])
    client = MlflowClient(store)
    names = set(client.get_run(res.run_id).data.metrics)
    assert {n.split("/", 1)[0] for n in names} == METRIC_GROUPS
    assert all(n.count("/") == 1 for n in names)
    for split in ("train", "val", "test"):
        assert {f"{split}/accuracy", f"{split}/roc_auc", f"{split}/log_loss"} <= names
    assert {"fit/n_passes", "fit/fit_time_s", "fit/final_objective", "fit/nonzero_weights"} <= names
    n_steps = res.fit.n_iter
    assert n_steps > 1
    for name in ("step/objective", "step/data_loss"):
        hist = client.get_metric_history(res.run_id, name)
        assert [m.step for m in hist] == sorted({m.step for m in hist}) and len(hist) >= n_steps
    for name in names - {n for n in names if n.startswith("step/")}:
        assert len(client.get_metric_history(res.run_id, name)) == 1, name
    assert client.get_metric_history(res.run_id, "step/objective")[-1].value == pytest.approx(
        client.get_run(res.run_id).data.metrics["fit/final_objective"], rel=1e-12)


def test_dvc_metrics_file_nests_the_same_names(store, tmp_path, monkeypatch):
    """``metrics/eval.json`` is ``{"train": {"accuracy": ...}, ..., "fit": {...}}`` and holds
    exactly the run's final metrics but the timings."""
    import json

    import yaml
    from mlflow.tracking import MlflowClient

    from pipeline import metrics, stages
    from tests.conftest import REPO

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["tracking"].update(uri=store, log_model=False, log_plots=False, progress=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    stages.prepare()
    stages.train()
    run_id = stages.evaluate()
    saved = json.loads((tmp_path / "metrics/eval.json").read_text())
    assert set(saved) == METRIC_GROUPS - {"step"}
    assert all(isinstance(v, dict) for v in saved.values())
    logged = MlflowClient(store).get_run(run_id).data.metrics
    final = {k: v for k, v in logged.items() if not k.startswith("step/")}
    assert metrics.flat(saved) == pytest.approx(
        {k: v for k, v in final.items() if k not in ("fit/fit_time_s", "fit/compile_time_s")})
    header = (tmp_path / "plots/train/history.csv").read_text().splitlines()[0]
    assert header.split(",")[:3] == ["step", "objective", "data_loss"]


def test_sweep_name_keeps_what_the_sweep_varies_and_is_cut():
    name = tracking.sweep_name(["model=logistic,softmax", "reg.lam=0.1,1",
                                "tracking.uri=sqlite:////tmp/x.db", "hydra/launcher=joblib"])
    assert name == "sweep model=logistic,softmax reg.lam=0.1,1"
    long = tracking.sweep_name([f"reg.lam={','.join(str(i) for i in range(100))}"])
    assert len(long) <= tracking.SWEEP_NAME_MAX and long.startswith("sweep reg.lam=0,1,2")


def test_a_lambda_sweeps_children_have_distinct_names_and_the_parent_is_printed(cli, store):
    res = cli("-m", "reg.lam=0.01,0.1", "solver.max_iter=50", "tracking.log_model=false",
              "tracking.log_plots=false", f"tracking.uri={store}")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "fit:" not in res.stderr and "steps/s" not in res.stderr  # not a terminal: no bar
    runs = runs_of(store)
    (parent,) = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(c.info.run_name for c in children) == [
        "logistic-l2-lam0.01-breast_cancer", "logistic-l2-lam0.1-breast_cancer"]
    assert parent.info.run_name == "sweep reg.lam=0.01,0.1 solver.max_iter=50"
    assert {c.data.tags["mlflow.source.name"] for c in children} == {"python -m pipeline"}
    assert all(_dataset_input(store, c.info.run_id).name == "breast_cancer" for c in children)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("sweep parent run")]
    assert lines == [f"sweep parent run {parent.info.run_id} in {store}"]


def _dataset_input(store: str, run_id: str):
    from mlflow.tracking import MlflowClient

    run_inputs = MlflowClient(store).get_run(run_id).inputs
    assert run_inputs is not None
    inputs = run_inputs.dataset_inputs
    assert len(inputs) == 1, inputs
    (tag,) = [t for t in inputs[0].tags if t.key == "mlflow.data.context"]
    assert tag.value == "training"
    return inputs[0].dataset


def test_every_run_logs_its_training_split_as_a_dataset_input(store, tmp_path):
    import json

    res = _run(store, tmp_path, ["model=softmax", "dataset=iris", "reg.lam=0.1"])
    ds = _dataset_input(store, res.run_id)
    assert ds.name == "iris" and len(ds.digest) == 16
    schema = json.loads(json.loads(ds.schema)["mlflow_tensorspec"]["features"])
    assert [c["name"] for c in schema] == res.data.feature_names
    profile = json.loads(ds.profile)
    n_train = len(res.data.y["train"])
    assert {v[0] for v in profile["features_shape"].values()} == {n_train}
    # the digest is the training split's: another split (seed) gives another digest
    other = _run(store, tmp_path, ["model=softmax", "dataset=iris", "reg.lam=0.1", "seed=1"])
    assert _dataset_input(store, other.run_id).digest != ds.digest
    again = _run(store, tmp_path, ["model=softmax", "dataset=iris", "reg.lam=1"])
    assert _dataset_input(store, again.run_id).digest == ds.digest


def test_a_file_dataset_input_names_the_file(store, tmp_path):
    path = tmp_path / "houses.csv"
    path.write_text("a,b,y\n" + "\n".join(f"{i},{i % 7},{2 * i}" for i in range(60)))
    res = _run(store, tmp_path, ["model=linear", "dataset=file", f"dataset.path={path}",
                                 "dataset.target=[y]"])
    ds = _dataset_input(store, res.run_id)
    assert ds.name == "houses" and ds.source_type == "local" and str(path) in ds.source


def test_the_dvc_train_stage_logs_the_dataset_input_and_the_default_name(store, tmp_path,
                                                                         monkeypatch):
    """The stages in-process in a scratch folder (the real ``dvc`` is tests/test_dvc.py's)."""
    import yaml

    from pipeline import stages
    from tests.conftest import REPO

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["tracking"].update(uri=store, log_model=False, log_plots=False, progress=False)
    params["reg"]["lam"] = 0.05
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    stages.prepare()
    run_id = stages.train()
    from mlflow.tracking import MlflowClient

    assert tracking.source_tags(["/x/pipeline/stages.py", "train"]) == {
        "mlflow.source.name": "python -m pipeline.stages train"}
    assert tracking.source_tags(["/x/pytest"]) == {}
    assert MlflowClient(store).get_run(run_id).info.run_name == (
        f"{params['model']['name']}-l2-lam0.05-{params['dataset']['name']}")
    ds = _dataset_input(store, run_id)
    assert ds.name == params["dataset"]["name"] and len(ds.digest) == 16


GROUPS = ("dataset", "model", "reg", "solver", "backend", "search", "tracking")


def _expand(word: str) -> list[str]:
    """``synth_{a,b}`` -> ``synth_a synth_b`` (the help's shorthand)."""
    if "{" not in word:
        return [word]
    head, rest = word.split("{", 1)
    inner, tail = rest.split("}", 1)
    return [head + part + tail for part in inner.split(",")]


def test_help_lists_the_user_facing_groups_each_with_all_its_options(cli):
    from tests.conftest import CONF

    res = cli("--help", timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    text = res.stdout
    assert "schema" not in text.lower()
    lines = {ln.split()[0]: ln.split()[1:] for ln in text.splitlines()
             if ln.startswith("  ") and ln.split() and ln.split()[0] in GROUPS}
    assert set(lines) == set(GROUPS)
    for group, words in lines.items():
        named = {w for word in words for w in _expand(word)}
        options = {p.stem for p in (CONF / group).glob("*.yaml")}
        assert options <= named, (group, options - named)
    examples = [ln.split("python -m pipeline", 1)[1].split("(")[0].split()
                for ln in text.splitlines() if ln.startswith("  python -m pipeline")]
    assert examples and any("-m" in e for e in examples)
    for example in examples:  # every example composes (a sweep: its first job)
        compose([w.split(",")[0] for w in example if w != "-m"])
