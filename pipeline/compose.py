"""``python -m pipeline.compose [overrides]``: write ``params.yaml`` from ``conf/``.

``dvc exp run -S model=softmax`` composes ``conf/`` into ``params.yaml`` itself (Hydra
composition is on in ``.dvc/config``), but plain ``dvc repro`` reads ``params.yaml`` as it is.
This command writes the very same file as DVC's composition (same Hydra calls, same YAML
dumper), so ``python -m pipeline.compose reg.lam=0.1 && dvc repro`` is the non-experiment way
to change a parameter, and a test checks that the committed ``params.yaml`` is ``conf/``'s.

Examples
--------
    python -m pipeline.compose                          # defaults -> params.yaml
    python -m pipeline.compose model=softmax dataset=iris
    python -m pipeline.compose --out - reg=l1           # print instead of writing
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
PARAMS = "params.yaml"


def compose(overrides: list[str] | None = None, config_dir: Path | str = CONF,
            config_name: str = "config") -> str:
    """The YAML text DVC's Hydra composition writes for ``overrides``.

    Mirrors ``dvc.utils.hydra.compose_and_dump``: ``initialize_config_dir`` with
    ``version_base=None``, ``compose``, ``OmegaConf.resolve``, ``OmegaConf.to_yaml``.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from pipeline import config as _config  # noqa: F401  (registers the schemas)

    with initialize_config_dir(str(Path(config_dir).resolve()), version_base=None):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides or []))
    OmegaConf.resolve(cfg)
    return OmegaConf.to_yaml(cfg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.compose",
                                     description="Compose conf/ into params.yaml (as DVC does).")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=softmax")
    parser.add_argument("--out", default=PARAMS, help="output file ('-' for stdout); "
                        "default: params.yaml in the current directory")
    parser.add_argument("--config-dir", default=None,
                        help="Hydra config folder (default: ./conf, else the package's conf/)")
    args = parser.parse_args(argv)
    config_dir = Path(args.config_dir) if args.config_dir else (
        Path("conf") if Path("conf/config.yaml").exists() else CONF)
    text = compose(args.overrides, config_dir)
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
