"""Startup cost of the command: a warm ``python -m pipeline dataset=breast_cancer`` against
``python -c "import mlflow"``, measured side by side (interleaved, same machine, same load).

Warm means: the store exists and is migrated, numba's kernel cache and the OS file cache are
filled by one untimed run of each first. The target is a ratio within 2x.

    python bench/startup.py [--repeat 5] [extra overrides...]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _time(cmd: list[str], cwd: str, env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + sys of the child and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{res.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


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
    med = statistics.median
    rows = [("python -c 'import mlflow'", t_imp),
            ("python -m pipeline dataset=breast_cancer", t_app)]
    print(f"{'command':42s} {'wall median':>11s} {'wall min':>9s} {'CPU median':>11s}")
    for name, ts in rows:
        wall, cpu = [t[0] for t in ts], [t[1] for t in ts]
        print(f"{name:42s} {med(wall):10.2f}s {min(wall):8.2f}s {med(cpu):10.2f}s")
    ratio_wall = med([t[0] for t in t_app]) / med([t[0] for t in t_imp])
    ratio_cpu = med([t[1] for t in t_app]) / med([t[1] for t in t_imp])
    print(f"ratio: wall {ratio_wall:.2f}x, CPU {ratio_cpu:.2f}x (target <= 2x); "
          f"{args.repeat} interleaved repeats, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
