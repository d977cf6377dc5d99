"""Files of the DVC stages, written so that equal inputs give equal bytes.

No timestamps (``.npy`` rather than ``.npz``, whose zip entries carry the time), JSON with
sorted keys and ``repr`` floats (the shortest exact form), CSV likewise; nothing that differs
per run (run ids, timings, absolute paths). Also DVC 3's md5 of files and folders, for the
lineage tags of the MLflow run.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

SPLITS = ("train", "val", "test")
SCALER = ("keep", "mean", "scale", "y_mean", "y_scale")  # the fields of ``data.Scaler``


def write_json(path: Path, obj: Any) -> Path:
    """Deterministic JSON: sorted keys, ``repr`` floats, non-finite values as null."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(obj), sort_keys=True, indent=2) + "\n", encoding="utf-8")
    return path


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [_plain(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    return obj


def write_csv(path: Path, columns: dict[str, Any]) -> Path:
    """Columns of equal length as CSV (``repr`` floats; empty cells for None)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(columns)
    cols = [list(columns[k]) for k in names]
    lines = [",".join(names)]
    for row in zip(*cols, strict=True):
        lines.append(",".join(_cell(v) for v in row))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float | np.floating):
        return repr(float(v))
    text = str(v)
    return f'"{text}"' if "," in text or '"' in text else text


def _save(path: Path, a: np.ndarray) -> None:
    a = np.asarray(a)
    np.save(path, a.astype(str) if a.dtype.kind == "O" else a, allow_pickle=False)


def fresh_folder(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def digest(folder: Path) -> str:
    """md5 over the names and bytes of the files in ``folder`` (ties a run to its model)."""
    h = hashlib.md5()
    for p in sorted(q for q in folder.rglob("*") if q.is_file()):
        h.update(p.relative_to(folder).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- prepared data
def save_prepared(data: Any, out: Path) -> None:
    """A ``data.Dataset`` as ``.npy`` arrays plus ``schema.json``; a file's encoding and fills
    (``prep_*.npy``, ``tabular.json``: ``pipeline.tabular``) and row weights (``w_*.npy``)
    only when it has them, so the folders of other data sets stay as they were. Streamed
    data (``dataset.streaming``): ``.npy`` shards per split, ``stage_streamed.save_prepared``."""
    if getattr(data, "streamed", False):  # X never whole
        from pipeline import stage_streamed

        return stage_streamed.save_prepared(data, out)
    from pipeline import csr_io, tabular

    fresh_folder(out)
    for split in SPLITS:
        for kind, arrays in (("X", data.X), ("y", data.y), ("raw", data.raw)):
            for name, a in csr_io.parts(f"{kind}_{split}", arrays[split]).items():
                _save(out / f"{name}.npy", a)  # a wide one-hot matrix: CSR parts
        if getattr(data, "weights", None) is not None:
            _save(out / f"w_{split}.npy", data.weights[split])
    arrays, extra = tabular.prepared_files(data)
    for name, a in arrays.items():
        _save(out / f"{name}.npy", a)
    if extra:
        write_json(out / "tabular.json", extra)
    s = data.scaler
    for name in SCALER:
        _save(out / f"scaler_{name}.npy", getattr(s, name))
    if data.classes is not None:
        _save(out / "classes.npy", data.classes)
    write_json(out / "schema.json", {
        "name": data.name, "task": data.task, "digest": data.digest,
        "feature_names": data.feature_names, "target_names": data.target_names,
        "class_names": data.class_names, "has_classes": data.classes is not None,
        "n_rows": {split: len(data.y[split]) for split in SPLITS},
        "n_features": int(data.X["train"].shape[1])})


def _missing(folder: Path, err: Exception, stage: str) -> Exception:
    """A ``DataError`` for a stage's input folder that is missing or damaged."""
    from pipeline.data import DataError

    what = f"{err.filename}: {err.strerror}" if isinstance(err, OSError) else str(err)
    return DataError(f"{folder}/ is missing or incomplete ({what}); run the {stage} stage "
                     f"first: `python -m pipeline.stages {stage}` (or `dvc repro`)")


def load_prepared(folder: Path) -> Any:
    """The ``data.Dataset`` that ``save_prepared`` wrote (``DataError`` if it is not there);
    of streamed data, a ``data_streamed.StreamedDataset`` over the shards (X never loaded)."""
    from pipeline import stage_streamed

    streamed = stage_streamed.read_schema(folder)
    if streamed is not None:
        return stage_streamed.load_prepared(folder, streamed)
    from pipeline import data as datamod

    try:
        schema = json.loads((folder / "schema.json").read_text())
        arr = {p.stem: np.load(p, allow_pickle=False) for p in folder.glob("*.npy")}
    except (OSError, ValueError) as err:
        raise _missing(folder, err, "prepare") from None
    from pipeline import csr_io

    need = [f"scaler_{k}" for k in SCALER] + [f"{k}_{s}" for k in ("X", "y", "raw")
                                              for s in SPLITS]
    absent = [name for name in need if not csr_io.has(arr, name)]
    if absent:
        raise _missing(folder, ValueError(f"no {absent[0]}.npy"), "prepare")
    scaler = datamod.Scaler(**{k: arr[f"scaler_{k}"] for k in SCALER})
    ds = datamod.Dataset(
        name=schema["name"], task=schema["task"], feature_names=schema["feature_names"],
        target_names=schema["target_names"], classes=arr.get("classes"),
        class_names=schema["class_names"], scaler=scaler,
        X={s: csr_io.joined(arr, f"X_{s}") for s in SPLITS},
        y={s: arr[f"y_{s}"] for s in SPLITS},
        raw={s: csr_io.joined(arr, f"raw_{s}") for s in SPLITS}, digest=schema["digest"])
    if all(f"w_{s}" in arr for s in SPLITS):
        ds.weights = {s: arr[f"w_{s}"] for s in SPLITS}
    extra_file = folder / "tabular.json"
    extra = json.loads(extra_file.read_text()) if extra_file.exists() else {}
    from pipeline import tabular

    return tabular.restore_prepared(ds, arr, extra)


# ----------------------------------------------------------------------------- model files
FIT_FIELDS = ("model", "reg", "lam", "l1_ratio", "solver", "objective", "loss", "penalty",
              "n_iter", "n_passes", "converged", "criterion", "warnings", "dtype", "residual")


def save_model(result: Any, out: Path) -> None:
    """Weights, classes, objective history and ``fit.json`` (no timings: they differ per run)."""
    fresh_folder(out)
    _save(out / "W.npy", result.W)
    _save(out / "b.npy", result.b)
    _save(out / "history.npy", np.asarray(result.history, dtype=np.float64))
    if result.classes is not None:
        _save(out / "classes.npy", result.classes)
    write_json(out / "fit.json", {k: getattr(result, k) for k in FIT_FIELDS})


def load_model(folder: Path) -> Any:
    """The ``FitResult`` (without its timing) that ``save_model`` wrote."""
    from pipeline import FitResult

    try:
        fit: dict[str, Any] = json.loads((folder / "fit.json").read_text())
        for name in ("W", "b", "history"):
            if not (folder / f"{name}.npy").is_file():
                raise ValueError(f"no {name}.npy")
    except (OSError, ValueError) as err:
        raise _missing(folder, err, "train") from None
    for k in ("objective", "loss", "penalty", "residual"):  # non-finite values: null
        fit[k] = float("nan") if fit.get(k) is None else fit[k]
    classes = folder / "classes.npy"
    return FitResult(
        W=np.load(folder / "W.npy"), b=np.load(folder / "b.npy"), time_s=float("nan"),
        history=np.load(folder / "history.npy").tolist(),
        classes=np.load(classes) if classes.exists() else None,
        **{k: fit[k] for k in FIT_FIELDS})


# ----------------------------------------------------------------------------- search record
SEARCH_SCALARS = ("kind", "scoring", "lam", "lam_min", "lam_1se")
SEARCH_ARRAYS = ("lams", "score", "se", "n_nonzero", "objective")


def save_search(rec: Any, out: Path) -> None:
    """A ``search.SearchRecord`` next to the model it chose (search=path / cv only, so the
    files of search=none stay as they were): ``search.json`` and the coefficient path
    ``search_W.npy``; its timing is left out."""
    write_json(out / "search.json", {**{k: getattr(rec, k) for k in SEARCH_SCALARS},
                                     **{k: np.asarray(getattr(rec, k)) for k in SEARCH_ARRAYS}})
    _save(out / "search_W.npy", np.asarray(rec.W, dtype=np.float64))


def load_search(folder: Path) -> Any:
    """The ``SearchRecord`` that ``save_search`` wrote (NaN timing), or None if there is none."""
    from pipeline.search import SearchRecord

    path = folder / "search.json"
    if not path.is_file():
        return None
    try:
        rec: dict[str, Any] = json.loads(path.read_text())
        W = np.load(folder / "search_W.npy", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise _missing(folder, err, "train") from None
    arrays: dict[str, Any] = {
        k: np.array([np.nan if v is None else v for v in rec[k]], dtype=np.float64)
        for k in SEARCH_ARRAYS}
    return SearchRecord(W=W, time_s=float("nan"), **arrays,
                        **{k: rec[k] for k in SEARCH_SCALARS})


# ----------------------------------------------------------------------------- dvc md5
def dvc_md5(path: Path, root: Path = Path(".")) -> str:
    """DVC 3's md5 of a file (its bytes) or folder (``<md5 of the sorted listing>.dir``),
    skipping what ``.dvcignore`` ignores (name patterns; ``name/`` for folders)."""
    if path.is_file():
        return hashlib.md5(path.read_bytes()).hexdigest()
    ignore = root / ".dvcignore"
    pats = [ln.strip() for ln in (ignore.read_text().splitlines() if ignore.exists() else [])
            if ln.strip() and not ln.startswith("#")]
    dirs = [p.rstrip("/") for p in pats if p.endswith("/")]
    names = [p for p in pats if not p.endswith("/")]
    entries = []
    for f in path.rglob("*"):
        rel = f.relative_to(path)
        if (not f.is_file() or any(fnmatch.fnmatch(d, p) for d in rel.parts[:-1] for p in dirs)
                or any(fnmatch.fnmatch(rel.name, p) for p in names)):
            continue
        entries.append({"md5": hashlib.md5(f.read_bytes()).hexdigest(),
                        "relpath": rel.as_posix()})
    entries.sort(key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"
