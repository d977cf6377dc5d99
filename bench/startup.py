"""Startup cost of the command: a warm ``python -m pipeline dataset=breast_cancer`` against
``python -c "import mlflow"``, measured side by side (interleaved, same machine, same load).

Warm means: the store exists and is migrated, numba's kernel cache and the OS file cache are
filled by one untimed run of each first. The target is a ratio within 2x.

    python bench/startup.py [--repeat 5] [extra overrides...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _time(cmd: list[str], cwd: str, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{res.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONPATH"] = str(REPO)
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        app = [sys.executable, "-m", "pipeline", "dataset=breast_cancer", f"tracking.uri={uri}",
               "tracking.progress=false", *args.overrides]
        imp = [sys.executable, "-c", "import mlflow"]
        _time(app, tmp, env)  # warm: store created and migrated, caches filled
        _time(imp, tmp, env)
        t_app, t_imp = [], []
        for _ in range(args.repeat):
            t_imp.append(_time(imp, tmp, env))
            t_app.append(_time(app, tmp, env))
    a, i = statistics.median(t_app), statistics.median(t_imp)
    print(f"python -c 'import mlflow'             median {i:6.2f} s  (min {min(t_imp):.2f})")
    print(f"python -m pipeline dataset=breast_cancer median {a:6.2f} s  (min {min(t_app):.2f})")
    print(f"ratio {a / i:.2f}x (target <= 2x); {args.repeat} interleaved repeats, "
          f"{os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
