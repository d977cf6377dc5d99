"""The one orchestration core of a run: what is checked before it opens and what it logs.

Both entry points call it: ``pipeline.run`` (the Hydra app, one process does everything) and
``pipeline.stages`` (DVC: train and evaluate are two processes that share one MLflow run).
Why one core: the two copies this replaced had drifted (the DVC path lost the ``warnings``
tag and the guard that stores object labels as strings). The entry points keep only what
differs: where the parameters come from, where files go, DVC's hashed outputs and the hand-off
of the run between train and evaluate.

What a run logs, in order: params and ``config.yaml``; per-step ``step/objective``,
``step/data_loss`` (and ``step/val_<score>`` when the core passes W, b), or the one value of a
direct solver; solver facts ``fit/final_objective``, ``fit/n_iter``, ``fit/fit_time_s``, ... and
the tags ``solver.actual``, ``criterion``, ``converged``, ``warnings``; ``<split>/<metric>``
scores (``train/accuracy``); plots; the weights ``.npz``, the test predictions and the
numpy-only pyfunc model. Names are grouped by their prefix (``metrics`` module docstring).

User errors end the process before any run opens (``check_store`` is the last check);
``report`` turns them, and Ctrl-C or SIGTERM, into the one line and exit code the mains use.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import config as cfgmod
from pipeline import csr_io, metrics, plots, tracking
from pipeline import data as datamod

SPLITS = ("train", "val", "test")
EXIT_USER_ERROR = 2  # argparse's code for a bad command line; ours for any bad input
EXIT_RUN_FAILED = 1  # the run opened, then failed (a fit that diverged): it ended FAILED
EXIT_SIGINT, EXIT_SIGTERM = 130, 143  # 128 + signal number, as shells report them


# ----------------------------------------------------------------------------- the fit
class Progress:
    """The fit callback: drives the progress bar and buffers per-step metrics for batched logging.

    The core calls ``progress(step, objective, loss)``; when it also passes the current
    ``W, b`` the validation score of that step is computed and logged too.

    The bar counts steps with no total: the solvers stop on a tolerance, long before
    ``max_iter`` as a rule, so a ``max_iter`` total drew a bar stuck near 0% with an ETA of
    hours. It shows the current objective, the tolerance and the step limit instead. No bar
    when stderr is not a terminal: in a log file or a captured stream it is only noise.
    """

    def __init__(self, tracker: Any, data: datamod.Dataset, show: bool,
                 tol: float | None = None, max_iter: int | None = None):
        from tqdm.auto import tqdm

        self.tracker, self.data = tracker, data
        self.val_name = metrics.STEP_METRIC[data.task]
        limits = [f"tol={tol:g}"] if tol is not None else []
        limits += [f"max {max_iter}"] if max_iter is not None else []
        self.limits = ", ".join(limits)
        self.bar = tqdm(total=None, desc="fit", unit=" steps", file=sys.stderr,
                        disable=not (show and _is_terminal(sys.stderr)), dynamic_ncols=True,
                        leave=False)
        self.steps = 0
        self._last_post = 0.0

    def __call__(self, step: int, objective: float, loss: float, *rest: Any) -> None:
        values = {"objective": objective, "data_loss": loss}
        streamed = getattr(self.data, "streamed", False)  # a pass per step: not scored
        if len(rest) >= 2 and len(self.data.y["val"]) and not streamed:
            W, b = np.asarray(rest[0]), np.asarray(rest[1])
            Z = self.data.X["val"] @ W.reshape(W.shape[0], -1) + b.reshape(-1)
            values[f"val_{self.val_name}"] = metrics.val_score(
                self.data.task, self.data.y["val"], Z, split_weights(self.data, "val"))
        self.tracker.add_step(int(step), metrics.grouped(metrics.STEP, values))
        self.steps += 1
        self.bar.update(1)
        now = time.monotonic()
        if now - self._last_post > 0.1:
            self.bar.set_postfix_str(", ".join(filter(None, [f"F={objective:.6g}",
                                                             self.limits])), refresh=False)
            self._last_post = now

    def close(self) -> None:
        self.bar.close()


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed stream
        return False


class CompileClock:
    """When numba compiled (or loaded from its disk cache) during a fit: the spans of its
    compiler lock, top level only (numba's ``numba:compiler_lock`` event; nested compiles are
    inside their caller's span).

    Why: the first call of each kernel compiles (~15 s on a cold cache) or loads it from the
    cache (~0.4 s), and that lands partly inside the solver's timed window, so ``fit_time_s``
    of a process's first fit measured numba, not the solver.
    """

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []
        self._depth, self._t0 = 0, 0.0

    def on_start(self, event: Any) -> None:
        if self._depth == 0:
            self._t0 = time.perf_counter()
        self._depth += 1

    def on_end(self, event: Any) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.spans.append((self._t0, time.perf_counter()))

    def total(self) -> float:
        return sum(b - a for a, b in self.spans)

    def within(self, start: float, end: float) -> float:
        """Seconds of compiling inside ``[start, end]``."""
        return sum(max(0.0, min(b, end) - max(a, start)) for a, b in self.spans)


def split_weights(data: datamod.Dataset, split: str) -> np.ndarray | None:
    """The rows' weights of ``split`` (a file's ``dataset.weight_column``), else None."""
    return None if data.weights is None else data.weights[split]


def fit_weights(config: cfgmod.Config, data: datamod.Dataset) -> dict[str, Any]:
    """``sample_weight`` and ``class_weight`` for the core's fit, path or cv on the training
    split (class labels as indices into ``data.classes``, as ``data.y`` has them).

    Raises ``DataError`` when the configured weights cannot be honoured: a weight column
    that ``data`` does not carry (prepared data without weights: the DVC stages do not keep
    them yet) must stop the fit, not let it train unweighted; a class the data lack.
    """
    column = getattr(config.dataset, "weight_column", None)
    if column is not None and data.weights is None:
        raise datamod.DataError(
            f"dataset.weight_column={column!r} is set, but these data carry no row weights "
            "(a data/prepared/ folder written before the prepare stage kept them), and "
            "training without them would ignore the column: run the prepare stage again "
            "(`dvc repro`), or drop dataset.weight_column")
    return {"sample_weight": split_weights(data, "train"),
            "class_weight": datamod.class_weight_codes(data, config.model.class_weight)}


def fit(config: cfgmod.Config, data: datamod.Dataset, callback: Any) -> Any:
    """``pipeline.fit`` on the training split with the configured model, penalty and solver,
    weighted by ``fit_weights``.

    The result's ``time_s`` excludes numba's compile and cache-load time inside the solver's
    window (which ends when the core returns); ``compile_time_s`` is all of it during the fit.
    """
    from numba.core import event

    from pipeline import fit as core_fit
    from pipeline.solvers.registry import IgnoredParameterWarning

    if config.backend.threads is not None:
        import numba

        most = int(getattr(numba.config, "NUMBA_NUM_THREADS", 1))
        numba.set_num_threads(min(config.backend.threads, most))
    weights = fit_weights(config, data)
    if config.search.name != "none":  # lambda chosen by pipeline.path / pipeline.cv
        from pipeline import search

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IgnoredParameterWarning)
            return search.run(config, data)
    clock = CompileClock()

    class Listener(event.Listener):  # numba's base class, imported with numba, not before
        on_start, on_end = staticmethod(clock.on_start), staticmethod(clock.on_end)

    with warnings.catch_warnings(), event.install_listener("numba:compiler_lock", Listener()):
        warnings.simplefilter("ignore", IgnoredParameterWarning)  # config.load warned already
        y_train: Any = data.y["train"]
        fit_fn = core_fit
        if getattr(data, "streamed", False):  # the targets are in the source
            from pipeline.streamed_fit import fit_source as fit_fn

            y_train = None
        result: Any = fit_fn(data.X["train"], y_train, model=config.model.name,
                          reg=config.reg.name, lam=config.reg.lam, l1_ratio=config.reg.l1_ratio,
                          solver=config.solver.name, tol=config.solver.tol,
                          max_iter=config.solver.max_iter, seed=config.seed,
                          dtype=config.backend.dtype, backend=config.backend.name,
                          backend_options=cfgmod.backend_options(config.backend),
                          callback=callback, **weights, **cfgmod.solver_options(config.solver))
    end = time.perf_counter()
    result.time_s = max(0.0, result.time_s - clock.within(end - result.time_s, end))
    result.compile_time_s = clock.total()
    return result


def evaluate(result: Any, data: datamod.Dataset) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics ``<split>/<name>`` on every split, and the core's test predictions/probas;
    weighted by the split's row weights when the data have them (``data.weighted``)."""
    from pipeline import predict, predict_proba

    out: dict[str, float] = {}
    test: dict[str, Any] = {}
    for split in SPLITS:
        X, y = data.X[split], data.y[split]
        if len(y) == 0:
            continue
        pred = predict(result, X)
        proba = None if data.task in ("regression", "multilabel") else predict_proba(result, X)
        w = split_weights(data, split)
        if data.task == "regression":
            scores = metrics.score("regression", data.y_original(split),
                                   datamod.decode_targets(data, pred), w=w)
        else:
            scores = metrics.score(data.task, y, pred, proba, w)
        out.update(metrics.grouped(split, scores))
        if split == "test":
            test = {"pred": pred, "proba": proba}
    return out, test


def solver_facts(result: Any, reg: str) -> dict[str, float]:
    """What the solver did, as ``fit/*`` metrics (``fit/fit_time_s`` and
    ``fit/compile_time_s`` are the ones that differ per run)."""
    facts = {"final_objective": result.objective, "final_data_loss": result.loss,
             "final_penalty": result.penalty, "final_residual": result.residual,
             "n_iter": result.n_iter,
             "n_passes": result.n_passes, "fit_time_s": result.time_s,
             "converged": float(bool(result.converged)), "n_weights": int(np.size(result.W))}
    if getattr(result, "compile_time_s", None) is not None:  # this process fitted it
        facts["compile_time_s"] = result.compile_time_s
    if reg in ("l1", "elasticnet"):
        facts["nonzero_weights"] = metrics.nonzero_weights(result.W)
    return metrics.grouped(metrics.FIT, facts)


# ----------------------------------------------------------------------------- the run
def check_store(config: cfgmod.Config) -> str:
    """The tracking URI, after checking the store can take a run (the last check before one
    opens: an unwritable store or an unreachable server is a user error, not a FAILED run)."""
    uri = tracking.resolve_uri(config.tracking.uri)
    tracking.check_store(uri)
    return uri


def run_name(config: cfgmod.Config) -> str:
    """The user's ``run_name``, else a default that tells runs of one sweep apart.

    ``<model>-<reg>[-lam<lam> | -<search>][-r<l1_ratio>]-<dataset>``, e.g.
    ``softmax-elasticnet-lam0.001-r0.3-digits`` or ``logistic-l1-cv-breast_cancer``; a user
    file is named by its stem (``dataset.path=data/houses.csv`` -> ``houses``), since every
    file dataset is called ``file``. Why: the UI's runs table shows names first, and a lambda
    sweep whose children all read ``logistic-l2-breast_cancer`` cannot be read without opening
    each run.
    """
    if config.run_name:
        return config.run_name
    parts = [config.model.name, config.reg.name]
    if config.search.name != "none":  # lambda is what the search chooses
        parts.append(config.search.name)
    elif config.reg.name != "none":
        parts.append(f"lam{config.reg.lam:g}")
    if config.reg.name == "elasticnet":
        parts.append(f"r{config.reg.l1_ratio:g}")
    return "-".join([*parts, dataset_label(config)])


def dataset_label(config: cfgmod.Config) -> str:
    """The dataset as runs name it: a user file by its stem (every file dataset is ``file``)."""
    path = getattr(config.dataset, "path", None)
    return Path(path).stem if config.dataset.source == "file" and path else config.dataset.name


NAMED_COLUMNS_MAX = 500  # more features: one (n, d) tensor in the schema, not d named columns


def training_input(config: cfgmod.Config, data: datamod.Dataset) -> dict[str, Any]:
    """What ``Tracker.log_dataset`` records of the training split: the raw features (named
    columns), the targets, a sha256 digest of both and the source file.

    Why the training split only, hashed here: it is what the model saw, and MLflow's own
    digest hashes only the first 10 000 values; sha256 of the split costs ~0.1 s per 100 MB.
    """
    if getattr(data, "streamed", False):  # X never whole: names, shapes and digest
        from pipeline import data_streamed

        return data_streamed.training_input(dataset_label(config), data, config.dataset)
    X, y = data.raw["train"], data.y["train"]
    if data.task == "regression":
        y = data.y_original("train")
    h = hashlib.sha256()
    csr_io.hash_into(h, X)
    h.update(np.ascontiguousarray(y).tobytes())
    w = split_weights(data, "train")
    if w is not None:  # the weights are part of what the model saw
        h.update(b"\0weights\0" + w.tobytes())
    names = data.feature_names
    features: Any = X
    if csr_io.is_csr(X):  # a wide one-hot block: one column per raw column, not densified
        names, features = [], csr_io.table_columns(X, data.prep)
        if len(features) > NAMED_COLUMNS_MAX:
            features = np.column_stack(list(features.values()))
    if len(set(names)) == len(names) == X.shape[1] and len(names) <= NAMED_COLUMNS_MAX:
        features = {n: X[:, j] for j, n in enumerate(names)}
    Y = y.reshape(len(y), -1)
    targets: Any = y
    if len(set(data.target_names)) == len(data.target_names) == Y.shape[1]:
        targets = {n: Y[:, j] for j, n in enumerate(data.target_names)}
    path = getattr(config.dataset, "path", None)
    source = str(Path(path).resolve()) if config.dataset.source == "file" and path else None
    return {"name": dataset_label(config), "digest": h.hexdigest()[:16], "features": features,
            "targets": targets, "source": source}


def data_tags(data: datamod.Dataset) -> dict[str, str]:
    return {"dataset.name": data.name, "dataset.digest": data.digest, "task": data.task}


class RunTracker(tracking.Tracker):
    """A ``tracking.Tracker`` that also keeps every per-step row (DVC's history plot)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.rows: list[tuple[int, dict[str, float]]] = []

    def add_step(self, step: int, values: dict[str, float]) -> None:
        self.rows.append((step, dict(values)))
        super().add_step(step, values)


@contextlib.contextmanager
def opened(uri: str, config: cfgmod.Config, name: str, tags: dict[str, str],
           parent_run_id: str | None = None,
           resume_run_id: str | None = None) -> Iterator[RunTracker]:
    """The run, ended with its true status; an interrupt carries the run's id to ``report``."""
    tr = RunTracker(uri, config.tracking.experiment, name, tags, parent_run_id=parent_run_id,
                    resume_run_id=resume_run_id)
    try:
        with tr:
            yield tr
    except BaseException as err:  # Ctrl-C, SIGTERM (tracking.RunInterrupted) or an error
        if tr.run_id and not getattr(err, "run_id", None):
            err.run_id = tr.run_id  # type: ignore[attr-defined]
        raise


def log_fit(tr: Any, config: cfgmod.Config, data: datamod.Dataset, show: bool,
            config_yaml: str = "") -> Any:
    """Params (and ``data.weighted``: whether fit and scores are weighted by
    ``dataset.weight_column``), ``config.yaml``, the fit with its per-step metrics, solver
    facts and tags."""
    fit_weights(config, data)  # weights it cannot honour: an error before anything is logged
    tr.log_params({**cfgmod.flatten(config),
                   "data.weighted": str(data.weights is not None).lower(),
                   **(getattr(data, "stream", None) or {"data.streamed": "false"})})
    tr.log_text(config_yaml or cfgmod.to_yaml(config), "config.yaml")
    tr.log_dataset(**training_input(config, data))
    tr.log_metrics(data.facts)  # a file's data/* facts: one-hot columns, unseen categories
    progress = Progress(tr, data, show, config.solver.tol, config.solver.max_iter)
    try:
        result = fit(config, data, progress)
    finally:
        progress.close()
    if progress.steps == 0:  # a direct solver (closed form): log its one value
        for i, f in enumerate(result.history or [result.objective]):
            tr.add_step(i, metrics.grouped(metrics.STEP, {"objective": f}))
    tr.log_metrics(solver_facts(result, config.reg.name))
    if getattr(result, "search", None) is not None:  # the per-lambda curves, lambda's index
        from pipeline import search  # as the step, and the chosen lambda

        for i, row in enumerate(search.curves(result.search)):
            tr.add_step(i, row)
        tr.log_metrics(search.summary(result.search))
        tr.log_params({"search.chosen_lam": result.search.lam})
    tr.log_params(getattr(result, "backend_facts", {}))  # dask: cluster address, workers, chunks
    tr.set_tags({"solver.actual": str(result.solver), "criterion": str(result.criterion),
                 "converged": str(bool(result.converged)).lower(),
                 "warnings": " | ".join(map(str, result.warnings))[:5000]})
    return result


def log_evaluation(tr: Any, config: cfgmod.Config, data: datamod.Dataset, result: Any,
                   scores: dict[str, float], test: dict[str, Any], folder: Path) -> None:
    """The scores, the plots (PNG) and the test predictions (files written under ``folder``)."""
    tr.log_metrics(scores)
    if config.tracking.log_plots:
        y_t, p_t = data.y["test"], test.get("pred", np.zeros(0))
        if data.task == "regression":
            y_t, p_t = data.y_original("test"), datamod.decode_targets(data, p_t)
        figs = plots.make_all(data.task, list(result.history), result.W,
                              [data.feature_names[j] for j in data.scaler.keep],
                              y_t, p_t, test.get("proba"), data.class_names, folder / "plots",
                              data.target_names if data.task in ("multilabel", "regression")
                              else None)
        if getattr(result, "search", None) is not None:
            from pipeline import search

            figs = [*figs, *search.plot(result.search, [data.feature_names[j] for j in
                                                        data.scaler.keep], folder / "plots")]
        tr.log_artifacts(figs, "plots")
    if test and getattr(data, "streamed", False):  # X never whole: no X_raw
        pred = folder / "test_predictions.npz"
        np.savez(pred, y_true=_plain(data.y_original("test")),
                 y_pred=_plain(datamod.decode_targets(data, test["pred"])))
        tr.log_artifacts([pred])
        test = {}
    if test:  # what the pipeline predicted on the test split, for checks of the served model
        pred = folder / "test_predictions.npz"
        raw: dict[str, Any] = csr_io.parts("X_raw", data.raw["test"])
        np.savez(pred, **raw,
                 y_true=_plain(data.y_original("test")),
                 y_pred=_plain(datamod.decode_targets(data, test["pred"])))
        tr.log_artifacts([pred])


def log_model(tr: Any, config: cfgmod.Config, data: datamod.Dataset, result: Any,
              folder: Path) -> Path:
    """The weights/scaler ``model.npz`` (written under ``folder``) and the numpy-only pyfunc."""
    npz = tracking.save_model_npz(folder / "model.npz", data.task, result.W, result.b,
                                  data.scaler, data.classes, data.feature_names,
                                  data.target_names, model=config.model.name)
    if data.prep is not None:  # the raw table's encoding and fill values, for the pyfunc
        data.prep.add_to_npz(npz)
    tr.log_artifacts([npz])
    if config.tracking.log_model:
        import pandas as pd

        from pipeline import predict

        X_ex = data.input_example(5)  # the raw table when the model encodes one
        y_ex = None
        if len(data.y["test"]):
            from pipeline.data_streamed import head

            y_ex = datamod.decode_targets(data, predict(result, head(data.X["test"], 5)))
            if y_ex.ndim == 2:
                y_ex = pd.DataFrame(y_ex, columns=data.target_names)
        tr.set_tags({"model_uri": tr.log_model(npz, X_ex, y_ex)})
    return npz


def _plain(a: np.ndarray) -> np.ndarray:
    """Object labels as strings, so the ``.npz`` needs no pickle."""
    return a.astype(str) if a.dtype.kind == "O" else a


# ----------------------------------------------------------------------------- the mains
def user_errors() -> tuple[type[BaseException], ...]:
    """What a user's input can raise: reported in one line, never with a traceback.

    OSError is here for the user's files and folders (an output folder that cannot be
    written, a file removed while reading); the data loaders turn the usual cases into a
    ``DataError`` that names the file and the fix first.
    """
    return (cfgmod.ConfigError, datamod.DataError, tracking.StoreError, OSError)


def one_line(err: BaseException) -> str:
    """``error: <message>`` on one line (numpy and pandas messages may span several)."""
    text = " ".join(part.strip() for part in str(err).splitlines() if part.strip())
    if isinstance(err, OSError) and err.strerror:
        where = f": {err.filename}" if err.filename else ""
        text = f"{err.strerror}{where}"
    return f"error: {text or type(err).__name__}"


def interrupted(err: BaseException) -> int:
    """Print the one line for Ctrl-C / SIGTERM; return the shell's exit code for it."""
    import signal

    run_id = getattr(err, "run_id", None)
    last = tracking.last_run()
    status = last[1] if last and last[0] == run_id else "KILLED"
    print(f"interrupted: run {run_id} ended {status}" if run_id
          else "interrupted before a run started", file=sys.stderr)
    signum = getattr(err, "signum", signal.SIGINT)
    return EXIT_SIGTERM if signum == signal.SIGTERM else EXIT_SIGINT


def fit_errors() -> tuple[type[BaseException], ...]:
    """What a fit raises on the user's data or settings once the run is open (a divergence):
    one line too, and the run ends FAILED with the error logged. A Dask cluster that stops
    answering mid-fit is one of them (``backend.timeout``)."""
    from pipeline.dask_backend import ClusterError
    from pipeline.solvers._problem import NonFiniteError

    return (NonFiniteError, ClusterError)


def reported(interrupts: bool = True) -> tuple[type[BaseException], ...]:
    """Everything ``report`` turns into one line: the ``except`` clause of the mains."""
    return (*user_errors(), *fit_errors(), *((KeyboardInterrupt,) if interrupts else ()))


def report(err: BaseException) -> int:
    """The one line and exit code for a user error, a failed run or an interrupt.

    2: the input was rejected before any run opened; 1: it failed in an open run (a fit that
    diverged, a file that could not be written), which ended FAILED with the error logged;
    130 / 143: Ctrl-C / SIGTERM.
    """
    if isinstance(err, KeyboardInterrupt):
        return interrupted(err)
    run_id = getattr(err, "run_id", None)
    if run_id:
        last = tracking.last_run()
        status = last[1] if last and last[0] == run_id else "FAILED"
        print(f"{one_line(err)} (run {run_id} ended {status})", file=sys.stderr)
        return EXIT_RUN_FAILED
    print(one_line(err), file=sys.stderr)
    return EXIT_USER_ERROR
