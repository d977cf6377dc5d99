"""MLflow tracking: THE ONLY module that imports mlflow, and only inside functions.

Why lazily: ``import mlflow`` costs about 1.8 s, more than a small fit. Why here only: one
place decides the store (``resolve_uri``), the run's life cycle (every run ends FINISHED,
FAILED with its error, or KILLED on Ctrl-C) and how values are batched (per-step metrics go
through ``log_batch``, about 28 ms per call on SQLite, so never one call per value).

Before a run opens, ``check_store`` fails fast on a store that cannot work (an unwritable
SQLite path, an unreachable server: MLflow's HTTP retries are bounded so that takes seconds, not
minutes). Every run records the process that owns it (``run_status.process_tags``); opening a
store marks FAILED the RUNNING runs whose process is provably gone (SIGKILL, power loss).
SIGTERM ends a run KILLED like Ctrl-C once the main called ``handle_signals``.

Multirun: ``ParentRunCallback`` (a Hydra callback named in ``conf/config.yaml``) creates and
migrates the store and the sweep's parent run once, before any job starts; each job then starts
a child run with ``parent_run_id``.
"""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from hydra.experimental.callback import Callback

from pipeline import run_status
from pipeline.config import PARENT_RUN_ENV, PARENT_RUN_FILE
from pipeline.run_status import RunInterrupted, handle_signals
from pipeline.store import (
    StoreError,
    artifact_location,
    check_local_store,
    http_limits,
    project_root,
    resolve_uri,
    server_error,
    store_lock,
    ui_command,
)

__all__ = ["ParentRunCallback", "RunInterrupted", "StoreError", "Tracker", "artifact_location",
           "check_store", "current_run_id", "ensure_experiment", "find_run", "git_facts",
           "handle_signals", "last_run", "preload", "project_root", "resolve_uri", "run_tags",
           "save_model_npz", "source_tags", "store_lock", "sweep_name", "ui_command"]

PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
BATCH = 1000  # MLflow's limit of metrics per log_batch call
PROBE_S = 6.0  # the most a server check may take (whatever MLflow's settings): ~10 s CLI
_preload: threading.Thread | None = None
_last_run: tuple[str, str] | None = None  # (run id, status) of this process's latest run
_servers: dict[str, StoreError | None] = {}  # tracking servers probed by this process


def preload() -> None:
    """Start importing mlflow in a background thread while data loads and the model fits."""
    global _preload

    def _imp() -> None:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        import mlflow  # noqa: F401
        import mlflow.pyfunc  # noqa: F401

    if _preload is None:
        _preload = threading.Thread(target=_imp, daemon=True)
        _preload.start()


def _mlflow():
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if _preload is not None:
        _preload.join()
    import mlflow

    logging.getLogger("mlflow.pyfunc").setLevel(logging.WARNING)  # "Validating input example"

    return mlflow


# ----------------------------------------------------------------------------- store
def ensure_experiment(uri: str, name: str) -> str:
    """Experiment id for ``name``, creating it (and migrating a fresh store) if needed."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":  # deleted in the UI: bring it back, don't fail
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(uri, name))
    except Exception:  # another process created it in between
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def check_store(uri: str) -> None:
    """Fail fast, before any run opens, on a tracking store that cannot work.

    SQLite and folder stores are checked without mlflow (writable file and folder, see
    ``store.check_local_store``; a fresh store is not created or migrated here). For an
    http(s) server MLflow's retries and timeout are bounded (``store.HTTP_LIMITS``, a
    user's own ``MLFLOW_HTTP_REQUEST_*`` wins) and one cheap request must answer within
    ``PROBE_S`` seconds: an unreachable server is reported in seconds, not after minutes.

    Raises
    ------
    StoreError
        Naming the URI, what is wrong and the fix.
    """
    if check_local_store(uri) not in ("http", "https"):
        return
    http_limits()
    if uri not in _servers:  # asked once per process (a sweep's jobs get the same answer)
        _servers[uri] = _probe(uri)
    error = _servers[uri]
    if error is not None:
        raise StoreError(str(error))


def _probe(uri: str) -> StoreError | None:
    """One cheap request, in a daemon thread that may hang: None if the server answered."""
    _mlflow()  # import here, not in the probe thread (preload may be importing it)
    from mlflow.tracking import MlflowClient

    answer: list[BaseException | None] = []

    def probe() -> None:
        try:
            MlflowClient(uri).search_experiments(max_results=1)
            answer.append(None)
        except Exception as err:
            answer.append(err)

    thread = threading.Thread(target=probe, daemon=True)  # a daemon: a hung probe can't block
    thread.start()
    thread.join(PROBE_S)
    if answer and answer[0] is None:
        return None
    return server_error(uri, str(answer[0]) if answer else None, PROBE_S)


def end_dead_runs(uri: str, experiment_id: str) -> list[str]:
    """Mark FAILED the RUNNING runs of this experiment whose process provably died.

    A process killed hard (SIGKILL, power loss) leaves its run RUNNING for ever. One search
    (status RUNNING and this host's tag) finds the candidates; ``run_status.dead_reason``
    judges each (other hosts, other containers, live pids and runs without our tags are never
    touched). Never raises: the check must not stop a run. Returns the ids marked FAILED.
    """
    from mlflow.tracking import MlflowClient

    host = run_status.process_tags()[run_status.HOST]
    if "'" in host or "\\" in host:
        return []
    client, done = MlflowClient(uri), []
    try:
        found = client.search_runs([experiment_id], f"attributes.status = 'RUNNING' and "
                                   f"tags.`{run_status.HOST}` = '{host}'", max_results=200)
        for run in found:
            reason = run_status.dead_reason(dict(run.data.tags))
            if reason:
                client.set_tag(run.info.run_id, "error", reason)
                client.set_terminated(run.info.run_id, "FAILED")
                done.append(run.info.run_id)
    except Exception as err:  # a store hiccup here must not fail the run that is starting
        logging.getLogger(__name__).warning("could not check for dead runs: %s", err)
    return done


def current_run_id() -> str | None:
    """The run this process has open, else the one it ended last; None before any run.

    What an interrupt message names: by the time ``KeyboardInterrupt`` reaches the main, the
    ``Tracker`` has already ended the run.
    """
    return _last_run[0] if _last_run else None


def last_run() -> tuple[str, str] | None:
    """``(run id, status)`` of this process's latest run; status "RUNNING" while it is open."""
    return _last_run


def git_facts(root: Path) -> dict[str, str]:
    """Commit and dirty flag of the repo (empty when not a git checkout)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git.commit": commit, "mlflow.source.git.commit": commit,
            "git.dirty": str(bool(dirty.strip())).lower()}


def run_tags(uri: str, run_id: str) -> dict[str, str] | None:
    """Tags of run ``run_id`` in the store at ``uri``; None when there is no such run."""
    _mlflow()  # waits for preload(): two threads importing mlflow at once deadlock or fail
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        return dict(MlflowClient(uri).get_run(run_id).data.tags)
    except MlflowException:
        return None


def find_run(uri: str, tag: str, value: str) -> str | None:
    """The newest run (any experiment) whose tag ``tag`` equals ``value``, or None."""
    _mlflow()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    if not exps:
        return None
    runs = client.search_runs(exps, f"tags.`{tag}` = '{value}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


# ----------------------------------------------------------------------------- one run
class Tracker:
    """One MLflow run, used as a context manager that always ends it with its true status.

    Parameters
    ----------
    uri, experiment : where the run goes.
    run_name : shown in the UI.
    tags : set when the run starts.
    parent_run_id : the sweep's parent run (multirun child), or None.
    resume_run_id : reopen this run instead of starting one (a later DVC stage adds to the
        run an earlier stage opened); ``tags`` are then added to it.
    """

    def __init__(self, uri: str, experiment: str, run_name: str, tags: dict[str, str],
                 parent_run_id: str | None = None, resume_run_id: str | None = None):
        self.uri, self.experiment, self.run_name = uri, experiment, run_name
        self.tags, self.parent_run_id = tags, parent_run_id
        self.run_id = resume_run_id or ""
        self._pending: list[Any] = []
        self._last_flush = 0.0

    def __enter__(self) -> Tracker:
        global _last_run
        mlflow = _mlflow()
        from mlflow.tracking import MlflowClient

        mlflow.set_tracking_uri(self.uri)
        owner = run_status.process_tags()  # which process owns the run (see end_dead_runs)
        if self.run_id:  # resume: the run exists, its experiment too; this process owns it now
            from mlflow.entities import RunTag

            client = MlflowClient(self.uri)  # tagged before it is RUNNING again: never "dead"
            client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in owner.items()])
            exp_id = client.get_run(self.run_id).info.experiment_id
        else:
            with store_lock(self.uri):  # parallel stages (dvc queue start -j 2), fresh store
                exp_id = ensure_experiment(self.uri, self.experiment)
        end_dead_runs(self.uri, exp_id)
        try:
            if self.run_id:
                mlflow.start_run(run_id=self.run_id)
                if self.tags:
                    mlflow.set_tags(self.tags)
            else:
                run = mlflow.start_run(experiment_id=exp_id, run_name=self.run_name,
                                       tags={**source_tags(), **self.tags, **owner},
                                       parent_run_id=self.parent_run_id)
                self.run_id = run.info.run_id
        except BaseException as err:  # Ctrl-C or SIGTERM while starting: end what started
            if mlflow.active_run() is not None:
                with run_status.shielded():
                    mlflow.end_run("KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
            raise
        _last_run = (self.run_id, "RUNNING")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        global _last_run
        mlflow = _mlflow()
        status = _status_of(exc_type)
        try:
            if exc_type is None:
                self.flush()  # may fail or be interrupted: then the run ends with that status
            else:
                self._log_error(exc_type, exc, tb)
        except BaseException as err:
            status = _status_of(type(err))
            self._pending.clear()  # what could not be sent: don't try again in _log_error
            self._log_error(type(err), err, err.__traceback__)
            raise
        finally:
            with run_status.shielded():  # a second Ctrl-C must not leave the run RUNNING
                mlflow.end_run(status)
                _last_run = (self.run_id, status)

    def _log_error(self, exc_type, exc, tb) -> None:
        """The error as a tag and ``error.txt``; never hides the original error."""
        try:
            self.flush()
            text = "".join(traceback.format_exception(exc_type, exc, tb))
            _mlflow().set_tag("error", f"{exc_type.__name__}: {exc}"[:5000])
            _mlflow().log_text(text, "error.txt")
        except (Exception, KeyboardInterrupt):  # a logging error, or a second Ctrl-C
            pass

    # -- values
    def log_params(self, params: dict[str, Any]) -> None:
        mlflow = _mlflow()
        mlflow.log_params({k: ("None" if v is None else str(v))[:6000] for k, v in params.items()})

    def add_step(self, step: int, values: dict[str, float]) -> None:
        """Buffer per-step metrics; they are sent in batches (every ~2 s and at the end)."""
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self._pending.extend(Metric(k, float(v), ts, step) for k, v in values.items()
                             if np.isfinite(v))
        if time.monotonic() - self._last_flush > 2.0:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        client = _mlflow().tracking.MlflowClient(self.uri)
        for i in range(0, len(self._pending), BATCH):
            client.log_batch(self.run_id, metrics=self._pending[i:i + BATCH])
        self._pending.clear()
        self._last_flush = time.monotonic()

    def log_metrics(self, values: dict[str, float]) -> None:
        _mlflow().log_metrics({k: float(v) for k, v in values.items()})

    def set_tags(self, tags: dict[str, str]) -> None:
        _mlflow().set_tags(tags)

    def log_text(self, text: str, name: str) -> None:
        _mlflow().log_text(text, name)

    def log_artifacts(self, paths: list[Path], folder: str | None = None) -> None:
        mlflow = _mlflow()
        for path in paths:
            mlflow.log_artifact(str(path), folder)

    def log_dataset(self, name: str, digest: str, features: dict[str, np.ndarray] | np.ndarray,
                    targets: dict[str, np.ndarray] | np.ndarray, source: str | None) -> None:
        """The training data as the run's dataset input (context ``training``): the UI's
        Dataset column and its schema/profile panel.

        Only metadata goes to the store (name, our ``digest``, schema, shapes), no data: with
        ``digest`` given MLflow hashes nothing itself. ``source`` is the user's file, else the
        code (a bundled or synthetic dataset) made it.
        """
        mlflow = _mlflow()
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.data.numpy_dataset import from_numpy

        src: Any = source or CodeDatasetSource({"mlflow.source.name": f"pipeline:{name}"})
        with warnings.catch_warnings():  # a path matches two registered "local" source kinds
            warnings.filterwarnings("ignore", message=".*interpreted in multiple ways")
            dataset = from_numpy(features, source=src, targets=targets, name=name,
                                 digest=digest)
        mlflow.log_input(dataset, context="training")

    def log_model(self, npz: Path, X_example, y_example) -> str:
        """The numpy-only pyfunc (models from code) with signature and input example.

        The signature's params schema has ``predict_proba`` (bool, default false): a caller,
        the served model's too, asks for class probabilities with ``{"predict_proba": true}``.
        """
        import pandas as pd

        mlflow = _mlflow()
        from mlflow.models import infer_signature

        reqs = [f"mlflow=={mlflow.__version__}", f"numpy=={np.__version__}",
                f"pandas=={pd.__version__}"]
        import mlflow.pyfunc

        with warnings.catch_warnings():  # 0/1 label columns are ints by design
            warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(PYFUNC_FILE), artifacts={"model_npz": str(npz)},
                signature=infer_signature(X_example, y_example,
                                          params={"predict_proba": False}),
                input_example=X_example,
                pip_requirements=reqs)
        return info.model_uri


def source_tags(argv: list[str] | None = None) -> dict[str, str]:
    """``mlflow.source.name`` as a user types the command: ``python -m pipeline`` or
    ``python -m pipeline.stages train``.

    Why: MLflow names the script's file, and every run of ``python -m pipeline`` read
    ``__main__.py`` in the runs table's Source column. Empty (MLflow's default) for any other
    program, such as a test or a user's script calling the API.
    """
    argv = sys.argv if argv is None else argv
    main = Path(argv[0]) if argv and argv[0] else None
    if main is None or main.parent.name != "pipeline" or main.suffix != ".py":
        return {}
    if main.stem == "__main__":
        return {"mlflow.source.name": "python -m pipeline"}
    stage = [a for a in argv[1:2] if not a.startswith("-")]
    return {"mlflow.source.name": " ".join(["python", "-m", f"pipeline.{main.stem}", *stage])}


def _status_of(exc_type: type[BaseException] | None) -> str:
    """FINISHED without an error, KILLED on Ctrl-C or SIGTERM (``RunInterrupted``), else FAILED."""
    if exc_type is None:
        return "FINISHED"
    return "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"


def save_model_npz(path: Path, task: str, W: np.ndarray, b: np.ndarray, scaler: Any,
                   classes: np.ndarray | None, feature_names: list[str],
                   target_names: list[str], model: str = "") -> Path:
    """Weights, scaler and labels in one ``.npz`` (no pickle): what the pyfunc loads.

    ``model`` (logistic, softmax, ovr, ...) tells the pyfunc how logits become probabilities.
    """
    if classes is not None and classes.dtype.kind == "O":
        classes = classes.astype(str)
    np.savez(path, task=np.array(task), model=np.array(model), W=W, b=b, keep=scaler.keep,
             mean=scaler.mean, scale=scaler.scale, y_mean=scaler.y_mean, y_scale=scaler.y_scale,
             classes=classes if classes is not None else np.zeros(0),
             feature_names=np.array(feature_names, dtype=str),
             target_names=np.array(target_names, dtype=str))
    return path


# ----------------------------------------------------------------------------- multirun
SWEEP_NAME_MAX = 100  # characters: the UI's name column shows about this much


def sweep_name(overrides: list[str]) -> str:
    """The parent run's name: ``sweep`` and what the sweep varies, e.g.
    ``sweep model=logistic,softmax reg.lam=0.1,1``.

    Where the runs go and how Hydra launches them (``tracking.*``, ``hydra*``) say nothing about
    the experiment and are left out (the full list stays in the ``hydra.overrides`` tag); a
    long list is cut at ``SWEEP_NAME_MAX`` characters.
    """
    said = [o for o in overrides
            if not o.lstrip("+~").startswith(("tracking.", "tracking=", "hydra"))]
    name = " ".join(["sweep", *said]) if said else f"sweep {time.strftime('%Y-%m-%d %H:%M:%S')}"
    return name if len(name) <= SWEEP_NAME_MAX else name[:SWEEP_NAME_MAX - 3] + "..."


class ParentRunCallback(Callback):
    """Hydra callback: one parent run per sweep; the store is created here, once.

    Parallel jobs racing to migrate a fresh SQLite store crash, so this runs in the launching
    process before any job: it creates the store, the experiment and the parent run, and hands
    the parent's id to the jobs through ``<sweep dir>/.mlflow_parent_run_id`` and the
    environment. The parent ends FINISHED after the sweep, FAILED if a job failed (the sweep
    raised), KILLED on Ctrl-C or SIGTERM (``run_status.interrupted_by``).
    """

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.uri = ""
        self.status = "FAILED"

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        from mlflow.tracking import MlflowClient

        from pipeline.config import check_sweep

        check_sweep(config)  # every job's config, before the store or the parent run
        self.uri = resolve_uri(config.tracking.uri)
        try:
            check_store(self.uri)
        except StoreError:  # no parent run: the first job reports it in one line and exits 2
            return
        exp_id = ensure_experiment(self.uri, config.tracking.experiment)
        overrides = " ".join(config.hydra.overrides.task)
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        tags = {"sweep": "parent", "hydra.overrides": overrides, "sweep.dir": str(sweep_dir),
                **git_facts(project_root()), **run_status.process_tags()}
        end_dead_runs(self.uri, exp_id)
        run = MlflowClient(self.uri).create_run(
            exp_id, run_name=sweep_name(list(config.hydra.overrides.task)), tags=tags)
        self.run_id = run.info.run_id
        print(f"sweep parent run {self.run_id} in {self.uri}", flush=True)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / PARENT_RUN_FILE).write_text(self.run_id)
        os.environ[PARENT_RUN_ENV] = self.run_id
        atexit.register(self._end)
        handle_signals()  # Ctrl-C and SIGTERM raise RunInterrupted; _end then says KILLED

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        self.status = "FINISHED"
        self._end()

    def _end(self) -> None:
        if self.run_id is None:
            return
        from mlflow.tracking import MlflowClient

        run_id, self.run_id = self.run_id, None
        os.environ.pop(PARENT_RUN_ENV, None)
        status = "KILLED" if run_status.interrupted_by() is not None else self.status
        with run_status.shielded():
            MlflowClient(self.uri).set_terminated(run_id, status)
