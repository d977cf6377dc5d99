"""Row weights: ``sample_weight`` checked and ``class_weight`` resolved into one vector s.

With weights s the data loss is the weighted mean ``sum_l s_l loss_l / sum_l s_l``
(``shared/spec/objectives.md``, "Weights"); the penalty is unchanged. ``class_weight``
multiplies each row's weight by the weight of its class. Everything that can be wrong with
them is found here, before any work, and named with its fix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

CLASS_WEIGHT_MODELS = ("logistic", "softmax", "ovr")


def check_sample_weight(sample_weight, n_samples: int) -> np.ndarray | None:
    """``sample_weight`` as a float64 (n,) array of finite non-negative numbers (None: none).

    Raises
    ------
    ValueError
        For a wrong shape or length, a NaN, inf or negative entry, or weights that are all 0.
    TypeError
        For entries that are not numbers.
    """
    if sample_weight is None:
        return None
    s = np.asarray(sample_weight)
    if s.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must hold numbers; got dtype {s.dtype}")
    if s.ndim != 1 or s.shape[0] != n_samples:
        raise ValueError(f"sample_weight must have shape ({n_samples},), one weight per row of "
                         f"X; got shape {s.shape}")
    s = np.ascontiguousarray(s, dtype=np.float64)
    bad = ~np.isfinite(s)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"sample_weight has {int(bad.sum())} non-finite entr"
                         f"{'y' if bad.sum() == 1 else 'ies'} (first: row {i}, {s[i]}); "
                         "weights must be finite numbers >= 0")
    if (s < 0).any():
        i = int(np.flatnonzero(s < 0)[0])
        raise ValueError(f"sample_weight has {int((s < 0).sum())} negative entries (first: row "
                         f"{i}, {s[i]}); weights must be >= 0 (0 leaves a row out)")
    if not s.any():
        raise ValueError("sample_weight is zero for every row: at least one row needs a positive "
                         "weight")
    return s


def class_weights(class_weight, model: str, classes: np.ndarray | None,
                  codes: np.ndarray, sample_weight: np.ndarray | None = None) -> np.ndarray:
    """The weight of each class (m,), in the order of ``classes``.

    ``class_weight`` is ``"balanced"`` (class c weighs ``S / (m S_c)``, S the total and S_c the
    class's total of the sample weights: ``n / (m n_c)`` without them, as scikit-learn) or a
    mapping label -> weight (classes it leaves out weigh 1). ``codes`` (n,) are the rows'
    class indices into ``classes``.
    """
    if model not in CLASS_WEIGHT_MODELS:
        hint = ("; for multilabel, weigh rows with sample_weight" if model == "multilabel"
                else "; weigh rows with sample_weight")
        raise ValueError(f"class_weight is for the classifiers {', '.join(CLASS_WEIGHT_MODELS)};"
                         f" model={model!r} has no classes{hint}")
    assert classes is not None
    check_class_weight(class_weight)
    m = len(classes)
    if isinstance(class_weight, str):
        s = np.ones(len(codes)) if sample_weight is None else sample_weight
        per_class = np.bincount(codes, weights=s, minlength=m)
        total = math.fsum(s)
        with np.errstate(divide="ignore"):
            return np.where(per_class > 0, total / (m * per_class), 0.0)
    labels = {_key(c): i for i, c in enumerate(classes.tolist())}
    out = np.ones(m)
    for key, value in class_weight.items():
        if _key(key) not in labels:
            raise ValueError(f"class_weight names the class {key!r}, which y does not have; "
                             f"its classes are {classes.tolist()[:20]}")
        out[labels[_key(key)]] = float(value)
    return out


def check_class_weight(class_weight) -> None:
    """The form of ``class_weight``, whatever the classes: None, ``"balanced"`` or a mapping
    label -> finite number >= 0 (``ValueError`` / ``TypeError`` naming the fix). The app's
    config check runs it too (``pipeline.config``), so both say the same."""
    if class_weight is None:
        return
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight={class_weight!r}: use 'balanced', a mapping "
                             "{label: weight} or None")
        return
    if not isinstance(class_weight, Mapping):
        raise TypeError(f"class_weight must be 'balanced', a mapping {{label: weight}} or "
                        f"None; got {type(class_weight).__name__}")
    for key, value in class_weight.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                or not math.isfinite(value) or value < 0:
            raise ValueError(f"class_weight[{key!r}] = {value!r}: a class weight must be a "
                             "finite number >= 0")


def _key(label):
    """A label as a mapping key: numbers compare by value (1 == 1.0 == np.int64(1))."""
    if isinstance(label, (np.generic,)):
        label = label.item()
    if isinstance(label, float) and label.is_integer():
        return int(label)
    return label


def row_weights(model: str, sample_weight, class_weight, T: np.ndarray,
                classes: np.ndarray | None) -> np.ndarray | None:
    """The rows' weights s (n,) from both arguments, or None when neither is given.

    ``T`` (n, m) are the targets as ``check_targets`` returns them (class codes in column 0
    for the classifiers ``class_weight`` applies to; 0/1 for logistic, which are its codes).
    """
    s = check_sample_weight(sample_weight, T.shape[0])
    if class_weight is None:
        return s
    codes = T[:, 0].astype(np.intp)
    per_row = class_weights(class_weight, model, classes, codes, s)[codes]
    s = per_row if s is None else s * per_row
    if not s.any():
        raise ValueError("class_weight (with sample_weight) gives every row a zero weight: at "
                         "least one row needs a positive weight")
    return s
