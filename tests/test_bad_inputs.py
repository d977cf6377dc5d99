"""Every class of bad input gets one clear error, through each entry point: API, CLI, DVC stage.

One table per entry point. A case names the offending field, value or column (``words``) and
must come back as:

- API: the exception type, with a message holding every word;
- CLI (``python -m pipeline``) and DVC stages (``python -m pipeline.stages``): exit code 2,
  exactly one ``error:`` line naming the words, no ``Traceback``, no run RUNNING afterwards,
  no new run, and the run already in the store (finished before) untouched.

A Python process costs seconds, so the CLI and stage cases run in a few processes: a driver
calls the real entry functions (``pipeline.__main__.cli``, ``pipeline.stages.main``) once per
case, each with its own argv, folder and stderr, and reads the store between cases. Two tests
run the real ``python -m ...`` commands to check what the driver cannot see (the process's
own exit code and stderr).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import CONF, cli_env

# ============================================================================ API
# (pipeline.fit: the exception type and the words of its message)


@dataclass
class ApiCase:
    id: str
    kwargs: dict
    error: type[BaseException]
    words: list[str]
    X: str = "ok"  # which array of ``_arrays()``
    y: str = "binary"


def _arrays() -> dict[str, object]:
    import scipy.sparse

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    inf = X.copy()
    inf[5, 1] = np.inf
    Y = np.column_stack([X[:, 0] > 0, np.ones(40)]).astype(float)
    binary = (X[:, 0] + 0.5 * rng.standard_normal(40) > 0).astype(int)
    return {"ok": X, "inf": inf, "binary": binary, "const_label": Y,
            "sparse_inf": scipy.sparse.csr_matrix(inf),
            "text_column": pd.DataFrame({"a": X[:, 0], "colour": ["red"] * 40}),
            "ragged": [[1.0, 2.0, 3.0], [4.0]] * 20, "none_label": [None, *binary[1:]],
            "none": None, "huge": X * 1e200}


API_CASES = [
    # the data rule the CLI shares (see CLI_CASES "constant-label" and "inf-feature")
    ApiCase("constant-multilabel-column", {"model": "multilabel"}, ValueError,
            ["label column 1", "constant"], y="const_label"),
    ApiCase("inf-feature", {"model": "logistic"}, ValueError, ["inf", "columns [1]"], X="inf"),
    # options a solver does not define: named, with the solver's own options listed
    ApiCase("misspelled-option", {"max_iters": 5}, TypeError, ["'max_iters'", "max_iter"]),
    ApiCase("option-of-another-solver", {"solver": "gd", "batch_size": 8}, TypeError,
            ["'batch_size'", "Options of gd", "step_rule"]),
    ApiCase("feature-not-there-yet", {"warm_start": True}, TypeError,
            ["'warm_start'", "not supported yet"]),
    # every option type- and range-checked before work
    ApiCase("fractional-max-iter", {"max_iter": 1.5}, TypeError, ["max_iter=1.5", "integer"]),
    ApiCase("string-lam", {"reg": "l2", "lam": "0.1"}, TypeError, ["lam='0.1'", "number"]),
    ApiCase("infinite-lam", {"reg": "l2", "lam": float("inf")}, ValueError,
            ["lam=inf", "finite"]),
    ApiCase("zero-tol", {"tol": 0.0}, ValueError, ["tol=0.0", "> 0"]),
    ApiCase("negative-seed", {"seed": -1}, ValueError, ["seed=-1", ">= 0"]),
    ApiCase("zero-batch-size", {"solver": "sgd", "batch_size": 0}, ValueError,
            ["batch_size=0", ">= 1"]),
    ApiCase("negative-learning-rate", {"solver": "sgd", "lr": -0.1}, ValueError,
            ["lr=-0.1", "> 0"]),
    ApiCase("zero-memory", {"solver": "lbfgs", "reg": "l2", "memory": 0}, ValueError,
            ["memory=0", ">= 1"]),
    ApiCase("unknown-step-rule", {"solver": "gd", "step_rule": "armijo"}, ValueError,
            ["step_rule='armijo'", "backtracking"]),
    ApiCase("non-bool-flag", {"solver": "sgd", "variance_reduction": 1}, TypeError,
            ["variance_reduction=1", "true or false"]),
    ApiCase("unknown-model", {"model": "logit"}, ValueError, ["model='logit'", "logistic"]),
    ApiCase("impossible-solver", {"reg": "l1", "lam": 0.1, "solver": "lbfgs"}, ValueError,
            ["solver='lbfgs'", "smooth", "split_lbfgs"]),
    # inputs the API does not support yet, or cannot read
    ApiCase("inf-in-sparse-X", {}, ValueError, ["NaN/inf", "rows [5]"], X="sparse_inf"),
    ApiCase("text-column", {}, TypeError, ["'colour'", "not numeric"], X="text_column"),
    ApiCase("ragged-X", {}, ValueError, ["ragged"], X="ragged"),
    ApiCase("None-in-y", {}, ValueError, ["missing", "rows [0]"], y="none_label"),
    ApiCase("no-y", {}, TypeError, ["y is None"], y="none"),
]


@pytest.mark.parametrize("case", API_CASES, ids=[c.id for c in API_CASES])
def test_api_rejects_bad_input_naming_it(case):
    from pipeline import fit

    arrays = _arrays()
    kwargs = {"model": "logistic", **case.kwargs}
    steps: list[int] = []
    with pytest.raises(case.error) as err:
        fit(arrays[case.X], arrays[case.y], callback=lambda step, *_: steps.append(step),
            **kwargs)
    for w in case.words:
        assert w in str(err.value), (w, str(err.value))
    assert steps == []  # raised before the first step


@pytest.mark.parametrize("kwargs, words", [
    ({"reg": "l2", "lam": 0.1, "l1_ratio": 0.3}, ["l1_ratio", "reg='l2'"]),
    ({"reg": "none", "lam": 0.1}, ["lam=0.1", "reg='none'"]),
    ({"reg": "l2", "lam": 0.1, "batch_size": 8}, ["'auto'", "batch_size", "ignored"]),
])
def test_api_warns_once_for_a_parameter_without_effect(kwargs, words):
    import warnings

    from pipeline import IgnoredParameterWarning, fit

    arrays = _arrays()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(arrays["ok"], arrays["binary"], model="logistic", **kwargs)
    ignored = [w for w in caught if issubclass(w.category, IgnoredParameterWarning)]
    assert len(ignored) == 1, [str(w.message) for w in caught]
    for word in words:
        assert word in str(ignored[0].message)


def test_api_fit_that_overflows_is_an_error_naming_the_cause():
    from pipeline import NonFiniteError, fit

    with pytest.raises(NonFiniteError) as err:
        fit(_arrays()["huge"], _arrays()["binary"], model="logistic", reg="l2", lam=0.1)
    assert "X" in str(err.value) and "standardis" in str(err.value)


# ============================================================================ CLI and stages
DRIVER = r"""
import contextlib, io, json, os, runpy, sqlite3, sys, traceback
cases, db = json.loads(sys.argv[1]), sys.argv[2]
out = []
for case in cases:
    os.chdir(case["cwd"])
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            if case["entry"] == "cli":  # what `python -m pipeline ARGV` runs
                sys.argv = ["pipeline", *case["argv"]]
                runpy.run_module("pipeline", run_name="__main__")
                rc = 0
            else:
                from pipeline.stages import main
                rc = main(case["argv"])
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc()
            rc = 1
    with sqlite3.connect(db) as con:
        runs = [list(r) for r in con.execute(
            "select run_uuid, status, end_time from runs order by run_uuid").fetchall()]
        n_metrics = con.execute("select count(*) from metrics").fetchone()[0]
    out.append({"rc": rc, "stderr": err.getvalue(), "runs": runs, "n_metrics": n_metrics})
print("RESULTS" + json.dumps(out))
"""


@dataclass
class Case:
    """One bad input. ``argv`` may hold ``{files}`` (the data folder) and ``{store}``."""

    id: str
    argv: list[str]
    words: list[str]
    entry: str = "cli"  # or "stage"
    group: str = "config"  # cases of one group share a process
    setup: list[list[str]] = field(default_factory=list)  # stage argv run first, must pass
    params: list[str] | None = None  # stage cases: overrides composed into params.yaml


FILE = ["dataset=file", "dataset.target=[y]"]
CLI_CASES = [
    # config values (Hydra's and the schema's)
    Case("lam-nan", ["reg.lam=nan"], ["reg.lam", "nan"]),
    Case("batch-size-zero", ["solver=sgd", "solver.batch_size=0"], ["solver.batch_size", "0"]),
    Case("lam-not-a-number", ["reg.lam=abc"], ["reg.lam", "abc"]),
    Case("unknown-option-of-group", ["dataset=nope"], ["dataset/nope", "breast_cancer"]),
    Case("override-syntax", ["model==x"], ["model==x"]),
    Case("appended-unknown-key", ["+solver.bogus=1"], ["bogus"]),
    Case("file-without-path", ["dataset=file"], ["dataset.path"]),
    Case("negative-seed", ["seed=-1"], ["seed=-1", ">= 0"]),
    Case("output-folder", ["hydra.run.dir=/proc/nope"], ["/proc/nope", "hydra.run.dir"]),
    Case("sweep-with-one-bad-job", ["-m", "reg.lam=0.1,-1", "hydra.sweep.dir=sweep"],
         ["sweep job [reg.lam=-1", "reg.lam=-1.0", "no job was run"]),
    Case("empty-experiment-name", ["tracking.experiment="], ["tracking.experiment"]),
    # data files
    Case("missing-file", [*FILE, "dataset.path={files}/nope.csv"], ["nope.csv", "no such file"],
         group="data"),
    Case("empty-file", [*FILE, "dataset.path={files}/empty.csv"], ["empty.csv", "empty"],
         group="data"),
    Case("unreadable-file", [*FILE, "dataset.path={files}/unreadable.csv"],
         ["unreadable.csv", "cannot be read"], group="data"),
    Case("corrupt-parquet", [*FILE, "dataset.path={files}/garbage.parquet"],
         ["garbage.parquet", "not a readable Parquet file"], group="data"),
    Case("corrupt-csv", [*FILE, "dataset.path={files}/garbage.csv"],
         ["garbage.csv", "not a readable CSV file"], group="data"),
    Case("missing-column", ["dataset=file", "dataset.target=[nope]",
                            "dataset.path={files}/ok.csv"], ["'nope'", "columns"], group="data"),
    Case("text-feature", [*FILE, "dataset.path={files}/text.csv"], ["'s'", "not numeric"],
         group="data"),
    Case("inf-feature", [*FILE, "dataset.path={files}/inf.csv"], ["'b'", "inf"], group="data"),
    Case("continuous-target", [*FILE, "dataset.path={files}/ok.csv", "model=logistic",
                               "dataset.target=[a]"], ["'a'", "continuous"], group="data"),
    Case("constant-label", ["dataset=file", "dataset.target=[t1,t2]", "model=multilabel",
                            "dataset.path={files}/labels.csv"], ["'t2'", "constant"],
         group="data"),
    Case("too-few-rows", [*FILE, "dataset.path={files}/three.csv"],
         ["3 rows", "dataset.val_size"], group="data"),
    # the store
    Case("unwritable-store", ["tracking.uri=sqlite:///{files}/ok.csv/mlflow.db"],
         ["tracking store", "not writable", "ok.csv"], group="store"),
    Case("store-not-a-database", ["tracking.uri=sqlite:///{files}/garbage.csv"],
         ["garbage.csv", "not an SQLite database"], group="store"),
]

STAGE_CASES = [
    Case("params-value", ["prepare"], ["reg.lam", "inf"], "stage", "stage",
         params=["reg.lam=inf"]),
    Case("params-not-yaml", ["prepare", "--params", "{files}/garbage.csv"],
         ["garbage.csv", "YAML"], "stage", "stage"),
    Case("params-missing", ["prepare", "--params", "nope.yaml"], ["nope.yaml", "no such file"],
         "stage", "stage"),
    Case("data-inf-feature", ["prepare"], ["'b'", "inf"], "stage", "stage",
         params=[*FILE, "dataset.path={files}/inf.csv"]),
    Case("data-too-few-rows", ["prepare"], ["3 rows"], "stage", "stage",
         params=[*FILE, "dataset.path={files}/three.csv"]),
    Case("train-before-prepare", ["train"], ["data/prepared", "prepare"], "stage", "stage"),
    Case("unwritable-store", ["train"], ["tracking store", "not writable"], "stage", "stage",
         setup=[["prepare"]], params=["dataset=iris", "model=softmax",
                                      "tracking.uri=sqlite:///{files}/ok.csv/mlflow.db"]),
]


def _write_files(folder: Path) -> Path:
    """The bad (and one good) user files the cases name."""
    rng = np.random.default_rng(0)
    ok = pd.DataFrame(rng.standard_normal((60, 2)), columns=["a", "b"])
    ok["y"] = (ok.a + 0.3 * rng.standard_normal(60) > 0).astype(int)
    ok.to_csv(folder / "ok.csv", index=False)
    inf = ok.copy()
    inf.loc[[3, 7], "b"] = np.inf
    inf.to_csv(folder / "inf.csv", index=False)
    ok.assign(s="x").to_csv(folder / "text.csv", index=False)
    ok.head(3).to_csv(folder / "three.csv", index=False)
    ok.assign(t1=ok.y, t2=0).drop(columns="y").to_csv(folder / "labels.csv", index=False)
    (folder / "empty.csv").write_bytes(b"")
    garbage = bytes(range(256)) * 8
    (folder / "garbage.parquet").write_bytes(garbage)
    (folder / "garbage.csv").write_bytes(garbage)
    unreadable = folder / "unreadable.csv"
    if os.geteuid() == 0:  # root reads any file: a path whose read fails (EIO) instead
        unreadable.symlink_to("/proc/self/mem")
    else:
        shutil.copy(folder / "ok.csv", unreadable)
        unreadable.chmod(0)
    return folder


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    return _write_files(tmp_path_factory.mktemp("files"))


@dataclass
class Earlier:
    """A store holding one finished run, as a user's store would: its file and contents."""

    db: Path
    snapshot: dict
    runs: list


@pytest.fixture(scope="module")
def earlier(tmp_path_factory, migrated_store) -> Earlier:
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("earlier") / "mlflow.db"
    shutil.copy(migrated_store, db)
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.create_experiment("linear-models")
    run = client.create_run(exp, run_name="earlier", tags={"dataset.name": "iris"})
    client.log_param(run.info.run_id, "reg.lam", "0.01")
    for step, value in enumerate([0.9, 0.5, 0.4]):
        client.log_metric(run.info.run_id, "objective", value, step=step)
    client.log_metric(run.info.run_id, "test_accuracy", 0.95)
    client.set_terminated(run.info.run_id, "FINISHED")
    with sqlite3.connect(db) as con:
        runs = [list(r) for r in con.execute(RUNS).fetchall()]
    assert [r[1] for r in runs] == ["FINISHED"]
    return Earlier(db, _snapshot(db), runs)


RUNS = "select run_uuid, status, end_time from runs order by run_uuid"  # as DRIVER reads them


def _snapshot(db: Path) -> dict:
    with sqlite3.connect(db) as con:
        return {table: sorted(map(list, con.execute(f"select * from {table}").fetchall()))
                for table in ("runs", "metrics", "params", "tags")}


def _drive(cases: list[Case], tmp: Path, files: Path, earlier: Earlier):
    """Run ``cases`` in one process against a private copy of the store; per-case results."""
    db = tmp / "mlflow.db"
    shutil.copy(earlier.db, db)
    subs = {"files": str(files), "store": f"sqlite:///{db}"}
    plan, index = [], []
    for case in cases:
        cwd = tmp / case.id
        cwd.mkdir()
        if case.entry == "stage":
            _write_params(cwd, case, subs)
        for argv in case.setup:
            plan.append({"entry": case.entry, "argv": argv, "cwd": str(cwd)})
        argv = [a.format(**subs) for a in case.argv]
        if case.entry == "cli":
            argv.append("tracking.progress=false")
            if not any(a.startswith("tracking.uri=") for a in argv):
                argv.append(f"tracking.uri={subs['store']}")
        index.append(len(plan))
        plan.append({"entry": case.entry, "argv": argv, "cwd": str(cwd)})
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(plan), str(db)], cwd=tmp,
                          env=cli_env(), capture_output=True, text=True, timeout=600)
    assert "RESULTS" in proc.stdout, proc.stderr[-4000:]
    results = json.loads(proc.stdout.split("RESULTS", 1)[1])
    for i, step in enumerate(plan):
        if i not in index:  # a setup step (e.g. prepare before train) must pass
            assert results[i]["rc"] == 0, (step, results[i]["stderr"][-3000:])
    return {case.id: results[i] for case, i in zip(cases, index, strict=True)}, db


def _write_params(cwd: Path, case: Case, subs: dict[str, str]) -> None:
    from pipeline.compose import compose

    overrides = [o.format(**subs) for o in (case.params or [])]
    if not any(o.startswith("tracking.uri=") for o in overrides):
        overrides.append(f"tracking.uri={subs['store']}")
    (cwd / "params.yaml").write_text(compose(overrides, CONF))


def _check(case: Case, res: dict, earlier: Earlier) -> None:
    err = res["stderr"]
    assert res["rc"] == 2, (case.id, res["rc"], err[-3000:])
    assert "Traceback" not in err, (case.id, err[-3000:])
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, (case.id, err[-3000:])
    for w in case.words:
        assert w in lines[0], (case.id, w, lines[0])
    # no run started (none RUNNING, none new) and the earlier one as it was
    assert res["runs"] == earlier.runs, (case.id, res["runs"])
    assert res["n_metrics"] == len(earlier.snapshot["metrics"]), case.id


GROUPS = {g: [c for c in CLI_CASES if c.group == g] for g in ("config", "data", "store")}


@pytest.mark.parametrize("group", list(GROUPS))
def test_cli_reports_bad_input_in_one_line_and_starts_no_run(group, tmp_path, files, earlier):
    results, db = _drive(GROUPS[group], tmp_path, files, earlier)
    for case in GROUPS[group]:
        _check(case, results[case.id], earlier)
    assert _snapshot(db) == earlier.snapshot  # the earlier run, row for row


def test_dvc_stages_report_bad_input_in_one_line_and_start_no_run(tmp_path, files, earlier):
    results, db = _drive(STAGE_CASES, tmp_path, files, earlier)
    for case in STAGE_CASES:
        _check(case, results[case.id], earlier)
    assert _snapshot(db) == earlier.snapshot


def test_a_fit_that_diverges_ends_its_run_failed_in_one_line(tmp_path, files, earlier):
    """Not an input the checks can reject (lam is finite): the run opens, the fit stops with
    the likely cause, the run ends FAILED with it, the process exits 1 with one line."""
    case = Case("diverges", ["dataset=iris", "model=softmax", "reg.lam=1e300", "solver=gd",
                             "tracking.log_model=false", "tracking.log_plots=false"], [])
    results, db = _drive([case], tmp_path, files, earlier)
    res = results[case.id]
    new = [r for r in res["runs"] if r not in earlier.runs]
    assert len(new) == 1 and new[0][1] == "FAILED", res["runs"]
    assert res["rc"] == 1 and "Traceback" not in res["stderr"], res["stderr"][-3000:]
    (line,) = [ln for ln in res["stderr"].splitlines() if ln.startswith("error:")]
    assert "lam" in line and f"run {new[0][0]} ended FAILED" in line, line
    with sqlite3.connect(db) as con:
        assert [list(r) for r in con.execute(RUNS).fetchall() if list(r) in earlier.runs] \
            == earlier.runs


@pytest.mark.parametrize("module, args, words", [
    ("pipeline", ["model=perceptron"], ["model/perceptron", "softmax"]),
    ("pipeline.stages", ["train"], ["params.yaml", "no such file"]),
], ids=["cli", "stage"])
def test_the_real_commands_exit_2_with_one_line(tmp_path, module, args, words):
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path, env=cli_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert line.startswith("error:") and all(w in line for w in words), line
