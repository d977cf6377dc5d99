"""Plain NumPy float64 references of the spec's losses (slow, obvious, trusted)."""

import numpy as np
from scipy.special import expit, logsumexp


def logits(X, W, b):
    return np.asarray(X, dtype=np.float64) @ W + b


def loss_grad(model, X, Y, W, b):
    """Mean loss and (dL/dW, dL/db) straight from objectives.md.

    Y: linear (n, m) values; logistic/multilabel (n, m) 0/1; softmax (n,) class indices.
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    Z = logits(X, W, b)
    if model == "linear":
        R = Z - Y
        loss = np.sum(R**2) / n
        D = 2 * R
    elif model in ("logistic", "multilabel"):
        loss = np.sum(np.logaddexp(0, Z) - Y * Z) / n
        D = expit(Z) - Y
    elif model == "softmax":
        onehot = np.eye(W.shape[1])[Y]
        loss = np.sum(logsumexp(Z, axis=1) - np.sum(onehot * Z, axis=1)) / n
        D = np.exp(Z - logsumexp(Z, axis=1, keepdims=True)) - onehot
    else:
        raise ValueError(model)
    return loss, X.T @ D / n, D.sum(axis=0) / n


def penalty(reg, lam, l1_ratio, W):
    k = W.shape[0]
    l1 = np.abs(W).sum()
    l2 = np.sum(W**2)
    return {"none": 0.0, "l1": lam / k * l1, "l2": lam / k * l2,
            "elasticnet": lam / k * (l1_ratio * l1 + (1 - l1_ratio) * l2)}[reg]


def objective(model, reg, lam, l1_ratio, X, Y, W, b):
    return loss_grad(model, X, Y, W, b)[0] + penalty(reg, lam, l1_ratio, W)


def hessp(model, X, Y, W, b, V, vb, eps=1e-6):
    """Hessian-vector product by central differences of the reference gradient."""
    _, Gp, gbp = loss_grad(model, X, Y, W + eps * V, b + eps * vb)
    _, Gm, gbm = loss_grad(model, X, Y, W - eps * V, b - eps * vb)
    return (Gp - Gm) / (2 * eps), (gbp - gbm) / (2 * eps)


def standardise(X):
    """The preprocessing reference-optima.md assumes: drop constant columns, ddof=0 z-scores."""
    X = np.asarray(X, dtype=np.float64)
    X = X[:, X.std(axis=0) > 0]
    return (X - X.mean(axis=0)) / X.std(axis=0)
