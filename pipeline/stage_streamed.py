"""The DVC files of streamed data (``dataset.streaming``): ``.npy`` shards per split.

``prepare`` writes each split's scaled rows as ``.npy`` shards of ``chunk_rows`` rows
(``X_<split>/part-00000.npy``, ...) next to the held targets (and row weights), and ``train``
/ ``evaluate`` read them as ``NpyShardsSource``: the chunks of the app's streamed run, so its
bits. ``pipeline.stage_files`` hands streamed data here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import data as datamod
from pipeline.data_streamed import SPLITS, StreamedDataset
from pipeline.streamed import PREFETCH, prefetched


def save_prepared(data: StreamedDataset, out: Path) -> None:
    """Each split's scaled rows as ``.npy`` shards of ``chunk_rows`` rows under
    ``X_<split>/`` (one empty shard for an empty split), its core-ready targets as
    ``y_<split>.npy``; scaler, classes, the input example and ``schema.json`` (with
    ``streamed: true``). X is never whole in memory; the bytes depend only on the data."""
    from pipeline.stage_files import SCALER, _save, fresh_folder, write_json

    fresh_folder(out)
    for split in SPLITS:
        folder = out / f"X_{split}"
        folder.mkdir()
        src: Any = data.X[split]
        for i, (X_c, _) in enumerate(prefetched(src.loaders(), PREFETCH)):
            _save(folder / f"part-{i:05d}.npy", X_c)
        _save(out / f"y_{split}.npy", data.y[split])
        if data.weights is not None:
            _save(out / f"w_{split}.npy", data.weights[split])
    for name in SCALER:
        _save(out / f"scaler_{name}.npy", getattr(data.scaler, name))
    if data.classes is not None:
        _save(out / "classes.npy", data.classes)
    _save(out / "example.npy", data.example)
    train: Any = data.X["train"]
    write_json(out / "schema.json", {
        "name": data.name, "task": data.task, "digest": data.digest,
        "train_digest": data.train_digest, "streamed": True, "stream": data.stream,
        "feature_names": data.feature_names, "target_names": data.target_names,
        "class_names": data.class_names, "has_classes": data.classes is not None,
        "n_rows": {s: len(data.y[s]) for s in SPLITS},
        "n_features": int(train.n_features)})


def load_prepared(folder: Path, schema: dict[str, Any]) -> StreamedDataset:
    """The ``StreamedDataset`` that ``save_prepared`` wrote: X of each split an
    ``NpyShardsSource`` over its shards (targets in ``y_<split>.npy``), never loaded."""
    from pipeline.chunked import NpyShardsSource
    from pipeline.stage_files import SCALER

    try:
        arr = {p.stem: np.load(p, allow_pickle=False) for p in folder.glob("*.npy")}
        names = [schema["feature_names"][j] for j in arr["scaler_keep"]]
        X: dict[str, Any] = {s: NpyShardsSource(folder / f"X_{s}", folder / f"y_{s}.npy",
                                                feature_names=names) for s in SPLITS}
        y = {s: arr[f"y_{s}"] for s in SPLITS}
        scaler = datamod.Scaler(**{k: arr[f"scaler_{k}"] for k in SCALER})
    except (OSError, ValueError, KeyError) as err:
        from pipeline.stage_files import _missing

        raise _missing(folder, err if not isinstance(err, KeyError)
                       else ValueError(f"no {err.args[0]}.npy"), "prepare") from None
    stream = dict(schema["stream"], **{"data.source_kind": "npy_shards (prepared)"})
    return StreamedDataset(
        name=schema["name"], task=schema["task"], feature_names=schema["feature_names"],
        target_names=schema["target_names"], classes=arr.get("classes"),
        class_names=schema["class_names"], scaler=scaler, X=X, y=y, raw={},
        digest=schema["digest"], example=arr["example"], train_digest=schema["train_digest"],
        stream=stream,
        weights={s: arr[f"w_{s}"] for s in SPLITS} if "w_train" in arr else None)


def read_schema(folder: Path) -> dict[str, Any] | None:
    """``schema.json`` of a prepared folder when it was written streamed, else None."""
    try:
        schema = json.loads((folder / "schema.json").read_text())
    except (OSError, ValueError):
        return None
    return schema if schema.get("streamed") else None
