"""The locked environment: uv.lock matches pyproject.toml, and the suite runs on its versions.

``make setup`` installs uv.lock with ``uv sync --locked`` (which refuses a stale lock); these
offline checks say the same thing earlier and name the package, and they catch a .venv that was
built some other way (a plain ``pip install -e .``) and so may hold versions that change the
kernels' last bits and the committed ``dvc.lock``.
"""

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
# The packages whose versions decide the numbers (and so dvc.lock) or the tools the tests run.
DECISIVE = ["numpy", "numba", "llvmlite", "scipy", "scikit-learn", "pandas", "pyarrow",
            "matplotlib", "mlflow", "dvc", "hydra-core", "omegaconf", "pytest"]


def _lock() -> dict:
    return tomllib.loads((ROOT / "uv.lock").read_text())


def _locked_versions() -> dict[str, set[str]]:
    versions: dict[str, set[str]] = {}
    for pkg in _lock()["package"]:
        versions.setdefault(canonicalize_name(pkg["name"]), set()).add(pkg["version"])
    return versions


def _key(name: str, specifier: str, marker: str | None) -> tuple[str, str, str]:
    req = Requirement(f"{name}{specifier}" + (f"; {marker}" if marker else ""))
    return canonicalize_name(req.name), str(req.specifier), str(req.marker or "")


def test_lock_records_the_requirements_of_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set()
    for line in project["dependencies"]:
        req = Requirement(line)
        wanted.add(_key(req.name, str(req.specifier), None))
    for extra, lines in project["optional-dependencies"].items():
        for line in lines:
            req = Requirement(line)
            wanted.add(_key(req.name, str(req.specifier), f"extra == '{extra}'"))
    (me,) = [p for p in _lock()["package"] if p["name"] == "linear-models-pipeline"]
    recorded = {_key(r["name"], r.get("specifier", ""), r.get("marker"))
                for r in me["metadata"]["requires-dist"]}
    assert recorded == wanted, (
        f"uv.lock is stale (run `make lock`): only in pyproject {sorted(wanted - recorded)}, "
        f"only in uv.lock {sorted(recorded - wanted)}")


def test_bootstrap_pins_the_locked_uv_and_pip():
    locked = _locked_versions()
    pins = {}
    for line in (ROOT / "requirements-bootstrap.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split(" ")[0].split("==")
            pins[canonicalize_name(name)] = version
    assert set(pins) == {"uv", "pip"}
    for name, version in pins.items():
        assert locked[name] == {version}, f"{name}: bootstrap {version}, uv.lock {locked[name]}"
    uv_cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]
    assert uv_cfg["required-version"] == f"=={pins['uv']}"


def test_installed_versions_are_the_locked_ones():
    locked = _locked_versions()
    wrong = {}
    for name in DECISIVE:
        have = metadata.version(name)
        if have not in locked[canonicalize_name(name)]:
            wrong[name] = (have, sorted(locked[canonicalize_name(name)]))
    assert not wrong, f"installed (have, locked): {wrong}; run `make setup`"
