"""The DVC pipeline, with the real ``dvc`` in a temporary copy of the repository.

The copy holds the tracked files of this checkout in a fresh git repository (so uncommitted
work is what is tested) and its own MLflow store (``<copy>/mlflow.db``, a copy of the
pre-migrated one): runs resolve their store against ``$DVC_ROOT`` like a user's, and nothing is
written into this repository. One copy serves the module: ``make test`` distributes by file
(``--dist loadfile``), so the tests run in order on one worker; each test that needs a
reproduced pipeline runs ``dvc repro`` first (a no-op when an earlier test did), so none
depends on another having run.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import REPO, runs_of

pytestmark = pytest.mark.xdist_group("dvc")
GIT_ID = {"GIT_AUTHOR_NAME": "pipeline tests", "GIT_AUTHOR_EMAIL": "tests@example.invalid",
          "GIT_COMMITTER_NAME": "pipeline tests", "GIT_COMMITTER_EMAIL": "tests@example.invalid"}
OUTPUTS = ("metrics/eval.json", "plots/train/history.csv", "plots/eval/confusion.csv",
           "plots/eval/roc.csv", "plots/eval/predicted_vs_true.csv", "plots/search/curve.csv",
           "plots/search/path.csv")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env.update(GIT_ID, PYTHONHASHSEED="0", DVC_NO_ANALYTICS="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    env.pop("PYTHONPATH", None)
    return env


def sh(repo: Path, *args: str, timeout: float = 900, check: bool = True) -> str:
    """Run a command in ``repo``; return stdout+stderr, failing the test with it on error."""
    proc = subprocess.run(list(args), cwd=repo, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    out = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited with {proc.returncode}:\n{out[-6000:]}")
    return out


def dvc(repo: Path, *args: str, timeout: float = 900, check: bool = True) -> str:
    return sh(repo, sys.executable, "-m", "dvc", *args, timeout=timeout, check=check)


def copy_repo(dest: Path) -> Path:
    """The tracked files of this checkout, committed in a fresh git repository at ``dest``."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    sh(dest, "git", "init", "-q", "-b", "main")
    sh(dest, "git", "config", "user.name", GIT_ID["GIT_AUTHOR_NAME"])
    sh(dest, "git", "config", "user.email", GIT_ID["GIT_AUTHOR_EMAIL"])
    sh(dest, "git", "add", "-A")
    sh(dest, "git", "commit", "-q", "-m", "copy")
    return dest


def lock(repo: Path) -> dict:
    return yaml.safe_load((repo / "dvc.lock").read_text())


def _outs(lk: dict) -> dict[str, str]:
    return {o["path"]: o["md5"] for st in lk["stages"].values() for o in st.get("outs", [])}


def _inputs(lk: dict) -> dict:
    return {name: (st.get("deps"), st.get("params")) for name, st in lk["stages"].items()}


@pytest.fixture(scope="module")
def repo(tmp_path_factory, migrated_store) -> Path:
    path = copy_repo(tmp_path_factory.mktemp("dvcrepo"))
    shutil.copy(migrated_store, path / "mlflow.db")
    return path


def test_committed_params_yaml_is_composed_conf(tmp_path):
    """params.yaml is conf/ composed, and pipeline.compose writes what DVC's composition does."""
    from dvc.utils.hydra import compose_and_dump

    from pipeline.compose import compose

    assert (REPO / "params.yaml").read_text() == compose([], REPO / "conf")
    overrides = ["model=softmax", "dataset=iris", "reg.lam=0.1"]
    compose_and_dump(tmp_path / "params.yaml", str(REPO / "conf"), None, "config", str(REPO),
                     overrides)
    assert (tmp_path / "params.yaml").read_text() == compose(overrides, REPO / "conf")


@pytest.mark.slow
def test_repro_from_nothing_is_bit_for_bit(repo):
    committed = lock(repo) if (repo / "dvc.lock").exists() else {"stages": {}}
    t0 = time.monotonic()
    out = dvc(repo, "repro")
    first_s = time.monotonic() - t0
    assert "Running stage 'prepare'" in out and "Running stage 'train'" in out
    fresh = lock(repo)
    # The committed dvc.lock must be what a fresh clone reproduces, on any CPU of the supported
    # kind: a stage whose inputs changed means the lock was not regenerated (`make repro`), an
    # output with other bits means the arithmetic is not reproducible. Either fails, naming it.
    stale = {name: "deps/params" for name, io in _inputs(fresh).items()
             if io != _inputs(committed).get(name)}
    assert not stale, (f"dvc.lock is stale for stage(s) {sorted(stale)}: code or params changed "
                       "since it was committed; run `make repro` and commit dvc.lock")
    differ = {path: (md5, _outs(committed).get(path)) for path, md5 in _outs(fresh).items()
              if md5 != _outs(committed).get(path)}
    assert not differ, ("dvc repro on a fresh clone did not reproduce the committed dvc.lock; "
                        f"differing outputs (fresh md5, committed md5): {differ}")
    assert "Stage 'evaluate' didn't change, skipping" in out
    assert json.loads((repo / "metrics/eval.json").read_text())["test"]["accuracy"] > 0.9
    for rel in OUTPUTS:
        assert (repo / rel).is_file(), rel
    assert "Data and pipelines are up to date" in dvc(repo, "repro")
    snapshot = {rel: (repo / rel).read_bytes() for rel in (*OUTPUTS, "dvc.lock")}
    out = dvc(repo, "repro", "-f")
    assert "Running stage 'train'" in out and "Running stage 'evaluate'" in out
    for rel, data in snapshot.items():
        assert (repo / rel).read_bytes() == data, f"{rel} differs after dvc repro -f"
    runs = sorted(runs_of(f"sqlite:///{repo / 'mlflow.db'}"), key=lambda r: -r.info.start_time)
    assert len(runs) == 2  # one per train execution; evaluate adds to it
    head = sh(repo, "git", "rev-parse", "HEAD").strip()
    check_lineage(runs[0], fresh, head)
    check_lineage(runs[1], fresh, head, stages=out_stages(runs[1]))
    print(f"first dvc repro: {first_s:.1f} s")


def out_stages(run) -> tuple[str, ...]:
    return tuple(run.data.tags["dvc.stages"].split(","))


def check_lineage(run, lk: dict, head: str | None = None,
                  stages: tuple[str, ...] = ("train", "evaluate")) -> None:
    """The run's tags name its stages, commit and the md5 of every input dvc.lock records."""
    tags = run.data.tags
    assert run.info.status == "FINISHED"
    assert tags["dvc.stages"] == ",".join(stages)
    assert tags["dvc.stage"] == stages[-1]
    if head is not None:
        assert tags["git.commit"] == head
    for stage in stages:
        deps = {d["path"]: d["md5"] for d in lk["stages"][stage]["deps"]}
        got = {k.split(".dep.", 1)[1]: v for k, v in tags.items()
               if k.startswith(f"dvc.{stage}.dep.")}
        assert got == deps, stage
        assert tags[f"dvc.{stage}.inputs_md5"]
    assert {"step/objective", "fit/fit_time_s"} <= set(run.data.metrics)
    if "evaluate" in stages:
        assert "test/accuracy" in run.data.metrics
    assert run.data.params["reg.lam"]


@pytest.mark.slow
def test_param_change_reruns_train_and_evaluate_only(repo):
    dvc(repo, "repro")  # the committed params reproduced (a no-op after the test above)
    before = json.loads((repo / "metrics/eval.json").read_text())
    sh(repo, sys.executable, "-m", "pipeline.compose", "reg.lam=0.5")
    out = dvc(repo, "repro")
    assert "Stage 'prepare' didn't change, skipping" in out
    assert "Running stage 'train'" in out and "Running stage 'evaluate'" in out
    after = json.loads((repo / "metrics/eval.json").read_text())
    assert after["fit"]["final_penalty"] != before["fit"]["final_penalty"]
    assert "reg.lam" in dvc(repo, "params", "diff")
    sh(repo, "git", "checkout", "--", "params.yaml")
    dvc(repo, "repro")  # back to the committed params: restored from DVC's run cache
    assert json.loads((repo / "metrics/eval.json").read_text()) == before


@pytest.mark.slow
def test_exp_run_with_hydra_overrides(repo, tmp_path):
    n_runs = len(runs_of(f"sqlite:///{repo / 'mlflow.db'}"))
    dvc(repo, "exp", "run", "-n", "iris-softmax", "-S", "model=softmax", "-S", "dataset=iris")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["model"]["name"] == "softmax" and params["dataset"]["name"] == "iris"
    metrics = json.loads((repo / "metrics/eval.json").read_text())
    assert metrics["test"]["accuracy"] > 0.8 and "macro_f1" in metrics["test"]
    shown = dvc(repo, "exp", "show", "--json")
    assert "iris-softmax" in shown and "macro_f1" in shown
    assert "test.accuracy" in dvc(repo, "metrics", "show")  # nested keys, dotted
    assert "index.html" in dvc(repo, "plots", "show", "-o", str(tmp_path / "plots"))
    assert (tmp_path / "plots" / "index.html").stat().st_size > 1000
    runs = runs_of(f"sqlite:///{repo / 'mlflow.db'}")
    assert len(runs) == n_runs + 1
    run = next(r for r in runs if r.data.tags.get("dvc.exp_name") == "iris-softmax")
    check_lineage(run, lock(repo))
    assert run.data.params["dataset.name"] == "iris"


@pytest.mark.slow
def test_exp_run_search_cv_reports_the_choice_and_the_curve(repo):
    """search=cv: the choice in the metrics (dvc metrics show, exp show), one curve row per
    lambda as a DVC plot with error bars, and the search's plots in the MLflow run."""
    from mlflow.tracking import MlflowClient

    n_lams = 12
    dvc(repo, "exp", "run", "-n", "cv-l1", "-S", "search=cv", "-S", "reg=l1", "-S",
        f"search.n_lams={n_lams}", "-S", "search.folds=3", "-S", "search.select=1se")
    shown = json.loads(dvc(repo, "metrics", "show", "--json"))
    (rev,) = shown.values()
    s = rev["data"]["metrics/eval.json"]["data"]["search"]
    assert 0 < s["lam_min"] <= s["lam_1se"] == s["chosen_lam"]
    assert s["deviance_at_lam_min"] <= s["chosen_deviance"] == s["deviance_at_lam_1se"]
    assert s["chosen_deviance"] <= s["deviance_at_lam_min"] + s["deviance_se_at_lam_min"]
    with open(repo / "plots/search/curve.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["lam_index"]) for r in rows] == list(range(n_lams))
    lams = [float(r["lam"]) for r in rows]
    assert all(a > b for a, b in zip(lams, lams[1:], strict=False))
    chosen = rows[s["chosen_index"]]
    assert float(chosen["lam"]) == s["chosen_lam"]
    assert float(chosen["score"]) == s["chosen_deviance"]
    assert float(chosen["se"]) == s["chosen_deviance_se"]
    for r in rows:
        assert float(r["score_minus_se"]) <= float(r["score"]) <= float(r["score_plus_se"])
    with open(repo / "plots/search/path.csv", newline="") as f:  # the refit's path: down to
        points = list(csv.DictReader(f))  # the chosen lambda
    assert [int(r["lam_index"]) for r in points] == list(range(s["chosen_index"] + 1))
    assert int(points[0]["nonzero_weights"]) == 0 < int(points[-1]["nonzero_weights"])
    exps = json.loads(dvc(repo, "exp", "show", "--json"))
    (exp,) = [e for row in exps for e in row.get("experiments") or [] if e["name"] == "cv-l1"]
    assert exp["revs"][0]["data"]["metrics"]["metrics/eval.json"]["data"]["search"] == s
    plots = json.loads(dvc(repo, "plots", "show", "--json"))["data"]
    spec = plots["search_score"][0]["content"]
    assert len(spec["data"]["values"]) == n_lams
    assert spec["layer"][0]["mark"]["type"] == "errorbar"
    run = next(r for r in runs_of(f"sqlite:///{repo / 'mlflow.db'}")
               if r.data.tags.get("dvc.exp_name") == "cv-l1")
    assert run.info.status == "FINISHED" and run.data.tags["dvc.stages"] == "train,evaluate"
    assert run.data.metrics["search/lam_1se"] == s["lam_1se"]
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    logged = {a.path for folder in ("plots", "dvc/plots")
              for a in client.list_artifacts(run.info.run_id, folder)}
    assert {"plots/search_score.png", "plots/search_path.png",
            "dvc/plots/curve.csv"} <= logged


@pytest.mark.slow
def test_queued_experiments_land_in_the_repository_store(repo):
    names = ["q-lam01", "q-l1"]
    dvc(repo, "exp", "run", "--queue", "-n", names[0], "-S", "reg.lam=0.1")
    dvc(repo, "exp", "run", "--queue", "-n", names[1], "-S", "reg=l1")
    dvc(repo, "queue", "start", "-j", "2")
    deadline = time.monotonic() + 1200
    try:
        while time.monotonic() < deadline:
            status = dvc(repo, "queue", "status")
            if not any(s in status for s in ("Queued", "Running")):
                break
            time.sleep(5)
        else:
            pytest.fail(f"queued experiments still running:\n{status}")
    finally:
        dvc(repo, "queue", "stop", check=False)
    assert status.count("Success") == 2, status + dvc(repo, "queue", "logs", names[0],
                                                      check=False)
    shown = dvc(repo, "exp", "show", "--json")
    assert all(n in shown for n in names)
    runs = runs_of(f"sqlite:///{repo / 'mlflow.db'}")
    for name in names:
        run = next(r for r in runs if r.data.tags.get("dvc.exp_name") == name)
        assert run.info.status == "FINISHED"
        assert run.data.tags["dvc.stages"] == "train,evaluate"
        assert "test/accuracy" in run.data.metrics
        assert str(repo) in run.info.artifact_uri  # the repository's store, not the temp copy


def test_stage_files_round_trip_and_are_deterministic(tmp_path):
    """prepared data and model files load back to the same predictions; equal input, equal bytes."""
    from pipeline import config, data, fit, predict_proba
    from pipeline.stage_files import load_model, load_prepared, save_model, save_prepared

    d = data.load(config.DatasetConfig(name="iris", task="multiclass"), "softmax", 0)
    result = fit(d.X["train"], d.y["train"], model="softmax", reg="l2", lam=0.01)
    for i in (1, 2):
        save_prepared(d, tmp_path / f"prepared{i}")
        save_model(result, tmp_path / f"models{i}")
    for kind in ("prepared", "models"):
        files = sorted(p.name for p in (tmp_path / f"{kind}1").iterdir())
        for name in files:
            assert (tmp_path / f"{kind}1" / name).read_bytes() == \
                (tmp_path / f"{kind}2" / name).read_bytes(), name
    d2, r2 = load_prepared(tmp_path / "prepared1"), load_model(tmp_path / "models1")
    assert d2.task == d.task and d2.class_names == d.class_names
    for split in ("train", "val", "test"):
        assert (d2.X[split] == d.X[split]).all() and (d2.y[split] == d.y[split]).all()
    assert (predict_proba(r2, d2.X["test"]) == predict_proba(result, d.X["test"])).all()


def test_search_record_round_trip_without_timing(tmp_path):
    """The search's record beside the model loads back equal (its time left out), and its
    curve table has one row per lambda (empty se for path, which has no folds)."""
    from pipeline import config as cfgmod
    from pipeline import data as datamod
    from pipeline import search
    from pipeline.stage_files import load_search, save_search
    from tests.conftest import compose

    config, _ = cfgmod.load(compose(["model=softmax", "dataset=iris", "reg=l1", "search=path",
                                     "search.n_lams=6"]))
    rec = search.run(config, datamod.load(config.dataset, "softmax", 0)).search
    save_search(rec, tmp_path / "a")
    save_search(rec, tmp_path / "b")
    for name in ("search.json", "search_W.npy"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert "time" not in (tmp_path / "a" / "search.json").read_text()
    back = load_search(tmp_path / "a")
    for k in ("lams", "score", "se", "W", "n_nonzero", "objective"):
        assert np.array_equal(getattr(back, k), getattr(rec, k), equal_nan=True), k
    assert (back.kind, back.lam, back.lam_min, back.lam_1se) == ("path", rec.lam, rec.lam_min,
                                                                  None)
    table = search.curve_table(back)
    assert table["lam_index"] == list(range(6)) and table["se"] == [None] * 6
    points = search.path_table(back)
    assert points["lam_index"] == list(range(6)) and points["nonzero_weights"][0] == 0
    assert search.facts(back)["search/chosen_lam"] == rec.lam
    assert load_search(tmp_path) is None
    assert all(v == [] for v in {**search.curve_table(None), **search.path_table(None)}.values())
