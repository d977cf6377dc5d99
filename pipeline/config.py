"""Typed configuration: one dataclass per Hydra group, and ``load()`` from DictConfig to ``Config``.

Why typed: Hydra merges the YAML files in ``conf/`` into these dataclasses (registered in the
ConfigStore under ``schema/<group>``), so a wrong type or an unknown key fails while the command
line is parsed, naming the field. ``load()`` then checks what types cannot express (allowed
names, ranges, and model x reg x solver x dataset combinations) and returns plain dataclasses:
nothing below this module sees a ``DictConfig``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .choices import DTYPES, MODELS, REGS
from .config_dataset import MODELS_FOR_TASK as MODELS_FOR_TASK
from .config_dataset import SKLEARN_SETS as SKLEARN_SETS
from .config_dataset import SOURCES as SOURCES
from .config_dataset import TASKS as TASKS
from .config_dataset import DatasetConfig as DatasetConfig
from .config_dataset import FileDatasetConfig as FileDatasetConfig
from .config_dataset import SyntheticDatasetConfig as SyntheticDatasetConfig
from .config_dataset import check_file, check_streaming, streams
from .solvers import options as solver_opts
from .solvers.options import AGDConfig as AGDConfig
from .solvers.options import GDConfig as GDConfig
from .solvers.options import LBFGSConfig as LBFGSConfig
from .solvers.options import NewtonConfig as NewtonConfig
from .solvers.options import ProxNewtonConfig as ProxNewtonConfig
from .solvers.options import SGDConfig as SGDConfig
from .solvers.options import SolverConfig
from .solvers.options import SplitLBFGSConfig as SplitLBFGSConfig
from .solvers.registry import SOLVER_NAMES as SOLVERS
from .solvers.registry import SOLVERS as SOLVER_REGISTRY


class ConfigError(ValueError):
    """A configuration that cannot run; raised before any MLflow run starts."""


class SweepRejected(BaseException):
    """A sweep job's configuration cannot run. A BaseException on purpose: Hydra turns an
    ``Exception`` from a callback into a warning and starts the sweep anyway."""


# The schema of each solver with options of its own (the registry's dataclass).
SOLVER_SCHEMAS: dict[str, type] = {name: spec.options for name, spec in SOLVER_REGISTRY.items()
                                   if spec.options is not SolverConfig}


# ----------------------------------------------------------------------------- schemas
@dataclass
class ModelConfig:
    """``class_weight`` (logistic, softmax, ovr): None, ``"balanced"`` or a map label ->
    weight (``'model.class_weight={spam: 5.0}'``); typed ``Any`` because OmegaConf has no
    ``str | dict``: ``validate`` checks it, the data layer checks its labels."""

    name: str = MISSING
    class_weight: Any = None


@dataclass
class RegConfig:
    """Penalty: the lecture's lambda (``lam``) and the elastic-net mix."""

    name: str = MISSING
    lam: float = 0.0
    l1_ratio: float = 0.5


# Solver schemas: the option dataclasses of the solver registry (pipeline/solvers/options.py),
# so the command line and ``pipeline.fit`` accept exactly the same options and values.


@dataclass
class BackendConfig:
    name: str = "cpu"
    dtype: str = "float64"
    threads: int | None = None  # numba threads; None: numba's default (all cores)


@dataclass
class DaskBackendConfig(BackendConfig):
    """``backend=dask``: the options of ``pipeline.dask_backend.DaskOptions`` (same checks)."""

    name: str = "dask"
    address: str | None = None  # an existing scheduler; None: a LocalCluster on 127.0.0.1
    n_workers: int = 2
    threads_per_worker: int = 1
    chunk_rows: int = 65_536
    timeout: float = 120.0
    scratch_dir: str | None = None


BACKEND_SCHEMAS: dict[str, type] = {"dask": DaskBackendConfig}


def backend_options(backend: BackendConfig) -> dict[str, Any] | None:
    """What ``pipeline.fit`` takes as ``backend_options`` (the dask fields), else None."""
    if not isinstance(backend, DaskBackendConfig):
        return None
    common = {f.name for f in dataclasses.fields(BackendConfig)}
    return {f.name: getattr(backend, f.name) for f in dataclasses.fields(backend)
            if f.name not in common}


@dataclass
class SearchConfig:
    """How lambda is chosen (``pipeline.search``): none (one fit at reg.lam), path, cv."""

    name: str = "none"
    n_lams: int = 100
    lam_min_ratio: float | None = None
    folds: int = 5
    select: str = "min"
    scoring: str | None = None


@dataclass
class TrackingConfig:
    """Where runs go. ``uri`` None: $MLFLOW_TRACKING_URI, else sqlite:///<root>/mlflow.db."""

    uri: str | None = None
    experiment: str = "linear-models"
    log_model: bool = True
    log_plots: bool = True
    progress: bool = True


@dataclass
class Config:
    dataset: DatasetConfig = MISSING
    model: ModelConfig = MISSING
    reg: RegConfig = MISSING
    solver: SolverConfig = MISSING
    backend: BackendConfig = MISSING
    tracking: TrackingConfig = MISSING
    search: SearchConfig = MISSING
    seed: int = 0
    run_name: str | None = None


@dataclass
class Runtime:
    """Facts about this process that are not configuration (not logged as params)."""

    output_dir: str = ""  # empty: a temporary folder (files are logged to MLflow anyway)
    overrides: list[str] = field(default_factory=list)
    parent_run_id: str | None = None
    job_num: int | None = None
    config_yaml: str = ""


def register() -> None:
    """Store the schemas; YAML files extend them via ``- /schema/<group>@_here_: <name>``."""
    cs = ConfigStore.instance()
    cs.store(name="schema", node=Config)
    datasets: list[tuple[str, type]] = [("dataset", DatasetConfig),
                                        ("synthetic", SyntheticDatasetConfig),
                                        ("file", FileDatasetConfig)]
    for name, node in datasets:
        cs.store(group="schema/dataset", name=name, node=node)
    cs.store(group="schema/model", name="model", node=ModelConfig)
    cs.store(group="schema/reg", name="reg", node=RegConfig)
    cs.store(group="schema/solver", name="solver", node=SolverConfig)
    for name, node in SOLVER_SCHEMAS.items():
        cs.store(group="schema/solver", name=name, node=node)
    cs.store(group="schema/backend", name="backend", node=BackendConfig)
    cs.store(group="schema/backend", name="dask", node=DaskBackendConfig)
    cs.store(group="schema/tracking", name="tracking", node=TrackingConfig)
    cs.store(group="schema/search", name="search", node=SearchConfig)


# ----------------------------------------------------------------------------- load
def _allowed(field_name: str, value: Any, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{field_name}={value!r} is not allowed; allowed: {', '.join(allowed)}")


def _range(field_name: str, value: float, lo: float, hi: float | None = None) -> None:
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ConfigError(f"{field_name}={value!r} is out of range; allowed: {bound}")


def _all_finite(config: Any, prefix: str = "") -> None:
    """Every float field finite: ``reg.lam=inf`` or ``nan`` is an error, never a run."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            _all_finite(value, f"{prefix}{f.name}.")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{prefix}{f.name}={value!r} is not finite; allowed: a finite "
                              "number")


def warn_ineffective(config: Config, overrides: list[str]) -> None:
    """Warn once for a parameter set on purpose that has no effect (like ``pipeline.fit``)."""
    from .solvers.registry import IgnoredParameterWarning

    r = config.reg
    said = {o.lstrip("+~").split("=", 1)[0] for o in overrides}
    if r.name != "elasticnet" and ("reg.l1_ratio" in said or r.l1_ratio != 0.5):
        warnings.warn(f"reg.l1_ratio={r.l1_ratio:g} has no effect with reg={r.name} (only "
                      "reg=elasticnet mixes L1 and L2): ignored", IgnoredParameterWarning,
                      stacklevel=2)
    if r.name == "none" and r.lam:
        warnings.warn(f"reg.lam={r.lam:g} has no effect with reg=none: ignored (choose reg=l1, "
                      "l2 or elasticnet to penalise)", IgnoredParameterWarning, stacklevel=2)


def validate(config: Config) -> None:
    """Check names, ranges and combinations; raise ``ConfigError`` naming field, value, allowed."""
    d, m, r, s = config.dataset, config.model, config.reg, config.solver
    _allowed("model.name", m.name, MODELS)
    _allowed("reg.name", r.name, REGS)
    _allowed("solver.name", s.name, SOLVERS)
    _allowed("dataset.source", d.source, SOURCES)
    _all_finite(config)
    _range("seed", config.seed, 0)  # numpy's generators take no negative seed
    _range("reg.lam", r.lam, 0.0)
    _range("reg.l1_ratio", r.l1_ratio, 0.0, 1.0)
    for f in dataclasses.fields(s):  # the registry's own checks: the API accepts the same
        try:
            solver_opts.check_value(f"solver.{f.name}", getattr(s, f.name), dict(f.metadata))
        except (TypeError, ValueError) as err:
            raise ConfigError(str(err)) from None
    _range("dataset.val_size", d.val_size, 0.0, 0.9)
    _range("dataset.test_size", d.test_size, 0.05, 0.9)
    if d.val_size + d.test_size >= 0.95:
        raise ConfigError(f"dataset.val_size + dataset.test_size = {d.val_size + d.test_size} "
                          "leaves no training data; allowed: a sum below 0.95")
    _allowed("backend.dtype", config.backend.dtype, DTYPES)
    if not config.tracking.experiment.strip():
        raise ConfigError("tracking.experiment='' names no experiment; allowed: a non-empty "
                          "name (default linear-models)")
    if config.backend.threads is not None:
        _range("backend.threads", config.backend.threads, 1)
    _check_dask(config.backend)
    if d.source == "sklearn":
        _allowed("dataset.name", d.name, list(SKLEARN_SETS))
    if d.task != "auto" or d.source != "file":
        _allowed("dataset.task", d.task, TASKS)
        fits = MODELS_FOR_TASK[d.task]
        if m.name not in fits:
            raise ConfigError(
                f"model={m.name} cannot learn dataset={d.name} (a {d.task} task); "
                f"allowed models for it: {', '.join(fits)}")
    if isinstance(d, SyntheticDatasetConfig):
        _range("dataset.n", d.n, 10)
        _range("dataset.k", d.k, 1)
        _range("dataset.n_outputs", d.n_outputs, 1)
        _range("dataset.noise", d.noise, 0.0)
        _range("dataset.seed", d.seed, 0)
        if d.task in ("binary",) and d.n_outputs != 1:
            raise ConfigError(f"dataset.n_outputs={d.n_outputs} for a binary task; allowed: 1")
        if d.task == "multiclass" and d.n_outputs < 2:
            raise ConfigError(f"dataset.n_outputs={d.n_outputs} for a multiclass task; "
                              "allowed: >= 2 classes")
    problem = check_file(d) if isinstance(d, FileDatasetConfig) else None
    if not problem and isinstance(d, FileDatasetConfig) and streams(d):  # pipeline.data_streamed
        problem = check_streaming(d, m.name, config.search.name, config.backend.name, s.name,
                                  m.class_weight)
    if problem:
        raise ConfigError(problem)
    m.class_weight = _check_weights(config)
    _check_core_compatibility(m.name, r.name, s.name, config.backend.name)
    from .search import check_search

    try:
        check_search(config.search, m.name, r.name, config.backend.name, d.val_size)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _check_weights(config: Config) -> Any:
    """``dataset.weight_column`` and ``model.class_weight`` where they apply (``none`` read
    as null); returns the class weight to keep. The labels are checked against the data's
    classes later (``data.class_weight_codes``)."""
    from .weights import CLASS_WEIGHT_MODELS, check_class_weight

    d, model, cw = config.dataset, config.model.name, config.model.class_weight
    if d.weight_column is not None and not isinstance(d, FileDatasetConfig):
        raise ConfigError(f"dataset.weight_column={d.weight_column!r} is for dataset=file (a "
                          f"column of your CSV or Parquet file); dataset={d.name} has none: "
                          "drop dataset.weight_column, or use dataset=file dataset.path=... "
                          "dataset.weight_column=<column>")
    if cw is None or cw == "none":
        cw = None
    elif model not in CLASS_WEIGHT_MODELS:
        raise ConfigError(f"model.class_weight is for the classifiers "
                          f"{', '.join(CLASS_WEIGHT_MODELS)}; model={model} has no classes to "
                          "weigh: weigh its rows with dataset.weight_column (a numeric column "
                          "of a dataset=file), as sample_weight in pipeline.fit")
    else:
        try:
            check_class_weight(cw)  # the API's rules, the only copy
        except (TypeError, ValueError) as err:
            raise ConfigError(f"model.{err} (e.g. 'model.class_weight={{spam: 5.0}}')") from None
    if (cw is not None or d.weight_column is not None) and config.backend.name == "cuda":
        raise ConfigError("dataset.weight_column / model.class_weight are not supported on "
                          "backend=cuda yet; use backend=cpu or backend=dask")
    return cw


def _check_dask(backend: BackendConfig) -> None:
    """The dask options through the API's own checks (an address that does not answer is
    an error here, before any run opens)."""
    options = backend_options(backend)
    if options is None:
        if backend.name == "dask":
            raise ConfigError("backend.name=dask needs the dask schema: choose backend=dask")
        return
    from .dask_backend import check_options

    try:
        check_options(options)
    except (TypeError, ValueError, ConnectionError) as err:
        raise ConfigError(str(err).replace("backend option ", "backend.")) from None


def _check_core_compatibility(model: str, reg: str, solver: str, backend: str) -> None:
    """Ask the training core which solver fits (and whether CUDA is here); errors name the fix."""
    from .validation import check_compatibility

    try:
        check_compatibility(model, reg, solver, backend)
        if backend == "cuda":
            from .objectives_cuda import load_gpu_kernels

            load_gpu_kernels()
    except ValueError as err:
        raise ConfigError(f"model={model} reg={reg} solver={solver} backend={backend}: "
                          f"{err}") from err


def _runtime(cfg: DictConfig) -> Runtime:
    """Hydra's facts about this job (output dir, overrides, sweep parent), when Hydra runs us."""
    rt = Runtime(config_yaml=OmegaConf.to_yaml(cfg, resolve=True))
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return rt
    rt.output_dir = str(Path(hc.runtime.output_dir).resolve())
    rt.overrides = list(hc.overrides.task)
    if str(hc.mode) in ("RunMode.MULTIRUN", "MULTIRUN"):
        rt.job_num = int(hc.job.num)
        marker = Path(hc.sweep.dir).resolve() / PARENT_RUN_FILE
        if marker.exists():
            rt.parent_run_id = marker.read_text().strip() or None
    rt.parent_run_id = rt.parent_run_id or os.environ.get(PARENT_RUN_ENV) or None
    return rt


PARENT_RUN_FILE = ".mlflow_parent_run_id"
PARENT_RUN_ENV = "PIPELINE_PARENT_RUN_ID"


def load(cfg: DictConfig | dict[str, Any]) -> tuple[Config, Runtime]:
    """Merge ``cfg`` into the schema, convert to dataclasses and validate.

    Returns
    -------
    config : Config
        Plain, validated dataclasses (what ``run.run`` takes).
    runtime : Runtime
        Output dir, Hydra overrides and the sweep's parent run id, if any.
    """
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    runtime = _runtime(cfg)
    schema = _schema_for(cfg)
    unknown = _unknown_key(cfg, schema)
    if unknown:  # ``+solver.bogus=1`` gets past Hydra and the merge: never past here
        raise ConfigError(_unknown_message(unknown, cfg))
    try:  # a wrong type ends here
        merged = OmegaConf.merge(schema, cfg)
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise ConfigError(_omegaconf_message(err, cfg)) from None
    assert isinstance(config, Config)
    validate(config)
    warn_ineffective(config, runtime.overrides)
    return config, runtime


BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def check_sweep(cfg: DictConfig) -> None:
    """Compose and check every job of a multirun sweep before its first job (or its parent
    run) starts: a bad value in the fourth job must not cost three runs and a FAILED parent.
    Raises ``SweepRejected`` naming the job.

    Only for Hydra's basic sweeper (the grid ``-m a=1,2 b=x,y``), whose job list is known up
    front; other sweepers choose their jobs as they go.
    """
    from hydra import compose
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if OmegaConf.select(cfg, "hydra.sweeper._target_") != BASIC_SWEEPER:
        return
    parsed = OverridesParser.create().parse_overrides(list(cfg.hydra.overrides.task))
    for batch in BasicSweeper.split_arguments(parsed, None):
        for job in batch:
            try:
                with warnings.catch_warnings():  # each job warns for itself when it runs
                    warnings.simplefilter("ignore")
                    load(compose(config_name="config", overrides=list(job)))
            except ConfigError as err:
                raise SweepRejected(f"sweep job [{' '.join(job)}]: {err}; no job was run") \
                    from None


def _unknown_key(cfg: Any, schema: Any, prefix: str = "") -> str | None:
    """The first dotted key of ``cfg`` that ``schema`` does not define (``hydra`` aside)."""
    if not isinstance(cfg, DictConfig) or not isinstance(schema, DictConfig):
        return None
    for key in map(str, cfg.keys()):
        if prefix == "" and key == "hydra":
            continue
        if key not in schema.keys():  # (``in`` is False for a MISSING value)
            return f"{prefix}{key}"
        found = _unknown_key(cfg._get_node(key), schema._get_node(key), f"{prefix}{key}.")
        if found:
            return found
    return None


def _unknown_message(key: str, cfg: DictConfig) -> str:
    """One line naming the unknown key and the options its group does have."""
    group = key.split(".")[0]
    if "." not in key:
        top = ", ".join(f.name for f in dataclasses.fields(Config))
        return f"{key} is not a setting; the settings are: {top}"
    name = OmegaConf.select(cfg, f"{group}.name", default="")
    source = OmegaConf.select(cfg, "dataset.source", default="sklearn")
    schema = (SOLVER_SCHEMAS.get(name, SolverConfig) if group == "solver"
              else DATASET_SCHEMAS.get(source, DatasetConfig) if group == "dataset"
              else BACKEND_SCHEMAS.get(name, BackendConfig) if group == "backend"
              else _GROUP_SCHEMAS[group])
    keys = ", ".join(f.name for f in dataclasses.fields(schema) if f.name != "name")
    return f"{key} is not an option of {group}={name}; its options: {keys}"


def _omegaconf_message(err: OmegaConfBaseException, cfg: DictConfig) -> str:
    """OmegaConf's error as one line naming the key and the value."""
    key = getattr(err, "full_key", None) or ""
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    return f"{key}: {first}" if key and key not in first else first


DATASET_SCHEMAS = {"sklearn": DatasetConfig, "synthetic": SyntheticDatasetConfig,
                   "file": FileDatasetConfig}


_GROUP_SCHEMAS: dict[str, type] = {"model": ModelConfig, "reg": RegConfig,
                                   "backend": BackendConfig, "tracking": TrackingConfig,
                                   "search": SearchConfig}


def _schema_for(cfg: DictConfig) -> DictConfig:
    """The typed skeleton for ``cfg``: picks the dataset/solver subclass (plain dict input)."""
    schema = OmegaConf.structured(Config)
    source = OmegaConf.select(cfg, "dataset.source", default="sklearn")
    solver = OmegaConf.select(cfg, "solver.name", default=None)
    schema.dataset = OmegaConf.structured(DATASET_SCHEMAS.get(source, DatasetConfig))
    schema.solver = OmegaConf.structured(SOLVER_SCHEMAS.get(solver, SolverConfig))
    backend = OmegaConf.select(cfg, "backend.name", default=None)
    schema.backend = OmegaConf.structured(BACKEND_SCHEMAS.get(backend, BackendConfig))
    for group, node in [("model", ModelConfig), ("reg", RegConfig),
                        ("tracking", TrackingConfig), ("search", SearchConfig)]:
        schema[group] = OmegaConf.structured(node)
    return schema


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys for a (nested) dataclass: ``{"reg.lam": 0.1, ...}`` (MLflow params).

    A mapping that is a field's value (``model.class_weight``) stays one param, written as on
    the command line (``{spam: 5.0}``), not one param per label.
    """
    is_instance = dataclasses.is_dataclass(config) and not isinstance(config, type)
    items = ({f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
             if is_instance else config)
    out: dict[str, Any] = {}
    for key, value in items.items():
        name = f"{prefix}{key}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out.update(flatten(value, name + "."))
        elif isinstance(value, dict) and is_instance:
            out[name] = "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
        elif isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def solver_options(solver: SolverConfig) -> dict[str, Any]:
    """The solver's own options (everything beyond name, tol, max_iter), None ones dropped."""
    common = {f.name for f in dataclasses.fields(SolverConfig)}
    return {f.name: getattr(solver, f.name) for f in dataclasses.fields(solver)
            if f.name not in common and getattr(solver, f.name) is not None}



def to_yaml(config: Config) -> str:
    """The resolved configuration as YAML (logged as ``config.yaml``)."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))


register()
