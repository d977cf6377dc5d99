"""scikit-learn estimators over :func:`pipeline.fit`: one class per model of the lecture.

They follow scikit-learn's conventions (parameters stored untouched by ``__init__``, input
checked by ``validate_data``, fitted attributes ending in ``_``) so that they work in
``Pipeline``, ``GridSearchCV``, ``cross_val_score`` and ``clone``, and pass scikit-learn's own
estimator checks (``tests/test_estimators.py``). The ``*CV`` variants choose lambda by
:func:`pipeline.cv` and keep its result in ``cv_result_``.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from . import api
from .cv import cv as _cv


class _LectureModel(BaseEstimator):
    """The parameters of :func:`pipeline.fit` (see its docstring). A mild L2 by default
    (``lam=0.01``, about scikit-learn's ``C=1`` at a thousand standardised rows), so that
    separable classes still have a finite optimum and probabilities do not saturate."""

    _model = ""

    def __init__(self, reg: str = "l2", lam: float = 1e-2, l1_ratio: float | None = None,
                 solver: str = "auto", tol: float = 1e-7, max_iter: int = 1000, seed: int = 0,
                 dtype: str = "float64"):
        self.reg = reg
        self.lam = lam
        self.l1_ratio = l1_ratio
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.seed = seed
        self.dtype = dtype

    def _fit_options(self) -> dict:
        options = dict(model=self._model, reg=self.reg, l1_ratio=self.l1_ratio,
                       solver=self.solver, tol=self.tol, max_iter=self.max_iter, seed=self.seed,
                       dtype=self.dtype)
        if hasattr(self, "class_weight"):
            options["class_weight"] = self.class_weight
        return options

    def _targets(self, y):
        return y

    def _run(self, X, y, sample_weight):
        """One fit at ``self.lam`` (the CV variants choose it instead)."""
        return api.fit(X, y, lam=self.lam, sample_weight=sample_weight, **self._fit_options())

    def fit(self, X, y, sample_weight=None):
        """Fit on X (n, k) and y, with optional row weights (n,) (see :func:`pipeline.fit`:
        the data loss is their weighted mean); returns self."""
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], accept_sparse="csr",
                             multi_output=self._model in ("linear", "multilabel"),
                             y_numeric=self._model == "linear")
        self._y_ndim = np.ndim(y)
        if sample_weight is not None:
            sample_weight = np.array(sample_weight, dtype=np.float64)  # a copy: never written
        self.result_ = self._run(X, self._targets(y), sample_weight)
        self.n_iter_ = int(self.result_.n_iter)
        return self

    def _checked(self, X):
        check_is_fitted(self, "result_")
        return validate_data(self, X, dtype=[np.float64, np.float32], accept_sparse="csr",
                             reset=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # CSR kernels; other formats converted to CSR once
        return tags

    @property
    def coef_(self) -> np.ndarray:
        """Weights: (m, k), or (k,) for a single-output linear model (scikit-learn's shapes)."""
        check_is_fitted(self, "result_")
        W = self.result_.W.T
        return W[0] if self._model == "linear" and self._y_ndim == 1 else W

    @property
    def intercept_(self) -> np.ndarray | float:
        check_is_fitted(self, "result_")
        b = self.result_.b
        return float(b[0]) if self._model == "linear" and self._y_ndim == 1 else b.copy()


class _Classifier(ClassifierMixin, _LectureModel):
    _binary_only = False

    def _targets(self, y):
        from sklearn.utils.multiclass import check_classification_targets, type_of_target

        check_classification_targets(y)  # scikit-learn's words for a continuous target
        if self._binary_only and type_of_target(y, input_name="y") != "binary":
            raise ValueError("Only binary classification is supported. The type of the target "
                             f"is {type_of_target(y, input_name='y')}; use SoftmaxClassifier or "
                             "OvRClassifier for more classes.")
        return y

    def decision_function(self, X) -> np.ndarray:
        """Logits X W + b: (n,) for one output, else (n, m)."""
        X = self._checked(X)
        Z = api.decision_function(self.result_, X)
        if Z.shape[1] == 2 and self._model in ("softmax", "ovr"):
            return Z[:, 1] - Z[:, 0]  # two classes: one score, positive for classes_[1]
        return Z[:, 0] if Z.shape[1] == 1 else Z

    def predict(self, X) -> np.ndarray:
        X = self._checked(X)
        return api.predict(self.result_, X)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (n, m), columns in the order of ``classes_``."""
        X = self._checked(X)
        return api.predict_proba(self.result_, X)

    @property
    def classes_(self) -> np.ndarray:
        check_is_fitted(self, "result_")
        return self.result_.classes


class LinearRegressor(RegressorMixin, _LectureModel):
    """Linear regression with the lecture's L2 loss, mean squared error over rows."""

    _model = "linear"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def predict(self, X) -> np.ndarray:
        X = self._checked(X)
        return api.predict(self.result_, X)


class _ClassWeighted:
    """``class_weight``: None, ``"balanced"`` or a mapping label -> weight (as in
    :func:`pipeline.fit`). Put first among the bases: its ``__init__`` is the signature."""

    def __init__(self, reg: str = "l2", lam: float = 1e-2, l1_ratio: float | None = None,
                 solver: str = "auto", tol: float = 1e-7, max_iter: int = 1000, seed: int = 0,
                 dtype: str = "float64", class_weight=None):
        _LectureModel.__init__(self, reg=reg, lam=lam, l1_ratio=l1_ratio,  # type: ignore
                               solver=solver, tol=tol, max_iter=max_iter, seed=seed,
                               dtype=dtype)
        self.class_weight = class_weight


class LogisticClassifier(_ClassWeighted, _Classifier):
    """Binary logistic regression (cross-entropy)."""

    _model = "logistic"
    _binary_only = True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags


class SoftmaxClassifier(_ClassWeighted, _Classifier):
    """The softmax classifier (multinomial cross-entropy) for two or more classes."""

    _model = "softmax"


class OvRClassifier(_ClassWeighted, _Classifier):
    """One-vs-rest: a binary logistic model per class, predicting the most probable."""

    _model = "ovr"


class MultiLabelClassifier(_Classifier):
    """Independent sigmoids, one per label column of a 0/1 target matrix Y (n, m).

    A 1-D y is one label: the binary logistic model, with its two labels as ``classes_``.
    """

    _model = "multilabel"
    _binary_only = True

    def _targets(self, y):
        return super()._targets(y) if np.ndim(y) == 1 else y

    def _run(self, X, y, sample_weight):
        options = self._fit_options()
        if np.ndim(y) == 1:
            options["model"] = "logistic"
        return api.fit(X, y, lam=self.lam, sample_weight=sample_weight, **options)

    @property
    def classes_(self) -> np.ndarray:  # type: ignore[override]
        """The two labels of a 1-D y; for a matrix Y, 0 and 1 (the same for every column)."""
        check_is_fitted(self, "result_")
        return self.result_.classes if self._y_ndim == 1 else np.array([0, 1])

    def predict_proba(self, X) -> np.ndarray:
        """(n, 2) for a 1-D y, as a binary classifier; else (n, m): each label's probability."""
        return super().predict_proba(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.classifier_tags.multi_label = True
        tags.classifier_tags.multi_class = False
        return tags


class _CVModel:
    """Lambda chosen by :func:`pipeline.cv` on the training data (``cv_result_``, ``lam_``);
    ``reg`` defaults to l1. Put first among the bases: its ``__init__`` is the signature."""

    def __init__(self, reg: str = "l1", l1_ratio: float | None = None, folds: int = 5,
                 scoring: str | None = None, select: str = "min", n_lams: int = 100,
                 solver: str = "auto", tol: float = 1e-7, max_iter: int = 1000, seed: int = 0,
                 dtype: str = "float64"):
        self.reg = reg
        self.l1_ratio = l1_ratio
        self.folds = folds
        self.scoring = scoring
        self.select = select
        self.n_lams = n_lams
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.seed = seed
        self.dtype = dtype

    def _run(self, X, y, sample_weight):
        options = self._fit_options()  # type: ignore[attr-defined]
        self.cv_result_ = _cv(X, y, folds=self.folds, scoring=self.scoring,
                              select=self.select, n_lams=self.n_lams,
                              sample_weight=sample_weight, **options)
        self.lam_ = self.cv_result_.lam
        return self.cv_result_.fit


class _CVClassWeighted(_CVModel):
    """A CV variant of a classifier: the CV parameters and ``class_weight``."""

    def __init__(self, reg: str = "l1", l1_ratio: float | None = None, folds: int = 5,
                 scoring: str | None = None, select: str = "min", n_lams: int = 100,
                 solver: str = "auto", tol: float = 1e-7, max_iter: int = 1000, seed: int = 0,
                 dtype: str = "float64", class_weight=None):
        super().__init__(reg=reg, l1_ratio=l1_ratio, folds=folds, scoring=scoring,
                         select=select, n_lams=n_lams, solver=solver, tol=tol,
                         max_iter=max_iter, seed=seed, dtype=dtype)
        self.class_weight = class_weight


class LinearRegressorCV(_CVModel, LinearRegressor):
    """Linear regression with lambda chosen by cross-validation."""


class LogisticClassifierCV(_CVClassWeighted, LogisticClassifier):
    """Binary logistic regression with lambda chosen by cross-validation."""


class SoftmaxClassifierCV(_CVClassWeighted, SoftmaxClassifier):
    """The softmax classifier with lambda chosen by cross-validation."""


ESTIMATORS = [LinearRegressor, LogisticClassifier, SoftmaxClassifier, OvRClassifier,
              MultiLabelClassifier, LinearRegressorCV, LogisticClassifierCV,
              SoftmaxClassifierCV]
