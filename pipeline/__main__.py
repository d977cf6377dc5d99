"""``python -m pipeline [overrides]``: Hydra parses the command line, ``run.run`` does the work.

Thin on purpose: compose ``conf/`` -> ``config.load`` (typed, validated) -> ``run.run``.
Importing ``pipeline.config`` registers the schemas before Hydra composes.
"""

import sys

import hydra
from omegaconf import DictConfig

from pipeline import config as cfgmod


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        config, runtime = cfgmod.load(cfg)
    except cfgmod.ConfigError as err:  # the user's mistake: say what and how, no traceback
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    from pipeline import run

    run.run(config, runtime)


if __name__ == "__main__":
    main()
