"""``python -m pipeline [overrides]``: Hydra parses the command line, ``run.run`` does the work.

Thin on purpose: compose ``conf/`` -> ``config.load`` (typed, validated) -> ``run.run``.
Importing ``pipeline.config`` registers the schemas before Hydra composes.
"""

import hydra
from omegaconf import DictConfig

from pipeline import config as cfgmod


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    config, runtime = cfgmod.load(cfg)
    from pipeline import run

    run.run(config, runtime)


if __name__ == "__main__":
    main()
