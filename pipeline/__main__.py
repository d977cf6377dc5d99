"""``python -m pipeline [overrides]``: Hydra parses the command line, ``run.run`` does the work.

Thin on purpose: compose ``conf/`` -> ``config.load`` (typed, validated) -> ``run.run``.
``--help`` prints ``conf/hydra/help/pipeline.yaml``: the user-facing groups, one line each
(not the internal ``schema/*`` groups), the keys often set and examples.
Importing ``pipeline.config`` registers the schemas before Hydra composes.

Every user error ends the process with one ``error: ...`` line on stderr and exit code 2,
before any MLflow run opens: a bad override as Hydra reports it (made one line), a config
value, the data, the store. Ctrl-C and SIGTERM print one ``interrupted: ...`` line and exit
130 / 143. Anything else is a bug and keeps its traceback.
"""

import os
import sys

import hydra
from omegaconf import DictConfig

from pipeline import config as cfgmod

FULL_ERROR = "HYDRA_FULL_ERROR"


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from pipeline import experiment, run

    try:
        config, runtime = cfgmod.load(cfg)
        res = run.run(config, runtime)
        return sweep_objective(res.metrics, res.data.task)
    except experiment.reported(interrupts=False) as err:  # Ctrl-C: see cli()
        raise SystemExit(experiment.report(err)) from None


SWEEP_METRIC = {"regression": "val/mse", "binary": "val/log_loss",
                "multiclass": "val/log_loss", "multilabel": "val/hamming_loss"}


def sweep_objective(metrics: dict[str, float], task: str) -> float | None:
    """What a sweeper that optimises (``hydra/sweeper=optuna``, direction minimize) reads:
    the validation split's loss of the run (None without a validation split)."""
    value = metrics.get(SWEEP_METRIC[task])
    return None if value is None else float(value)


def hydra_line(err: BaseException) -> str:
    """Hydra's report of a bad override (several lines, a search path) as one line.

    Drops OmegaConf's ``full_key``/``*_type`` lines, the config search path, the grammar link
    and the advice to append with ``+key=value`` (the schema rejects unknown keys either way).
    """
    cause = err.__cause__
    lines = str(err).splitlines() + (str(cause).splitlines() if cause is not None else [])
    parts: list[str] = []
    for raw in lines:
        line = raw.strip()
        if line.startswith("Config search path"):
            break
        if not line or line.startswith(("full_key:", "reference_type", "object_type",
                                        "To append to your config", "See https://")):
            continue
        if raw.startswith("\t") and parts and parts[-1].endswith(":"):
            parts[-1] += f" {line}"
        elif raw.startswith("\t") and parts and parts[-1].startswith("Available options"):
            parts[-1] += f", {line}"
        else:
            parts.append(line)
    return "error: " + "; ".join(parts)


def cli() -> int:
    """The console entry: signals, Hydra's own errors and interrupts as one line each."""
    from hydra.errors import ConfigCompositionException, OverrideParseException

    from pipeline import experiment, tracking

    tracking.handle_signals()  # SIGTERM ends an open run KILLED, like Ctrl-C
    before = os.environ.get(FULL_ERROR)
    debugging = before == "1"  # the user asked for Hydra's tracebacks: keep them
    os.environ[FULL_ERROR] = "1"  # Hydra raises instead of printing; we report below
    try:
        main()
    except KeyboardInterrupt as err:
        return experiment.report(err)
    except cfgmod.SweepRejected as err:  # a sweep job's config, checked before any job runs
        print(experiment.one_line(err), file=sys.stderr)
        return experiment.EXIT_USER_ERROR
    except (OverrideParseException, ConfigCompositionException) as err:
        if debugging:
            raise
        print(hydra_line(err), file=sys.stderr)
        return experiment.EXIT_USER_ERROR
    except OSError as err:  # Hydra cannot create its output folder (hydra.run.dir=...)
        if debugging:
            raise
        print(f"{experiment.one_line(err)} (Hydra's output folder: run from a writable folder "
              "or set hydra.run.dir=... / hydra.sweep.dir=...)", file=sys.stderr)
        return experiment.EXIT_USER_ERROR
    finally:
        if before is None:
            os.environ.pop(FULL_ERROR, None)
        else:
            os.environ[FULL_ERROR] = before
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
