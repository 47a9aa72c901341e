"""Predictive metrics of class probabilities: accuracy, log loss, Brier score, calibration error, reliability.

``probs`` is p(y=1) of shape (N,) for two classes, or (N, C) class probabilities; ``y`` holds labels 0..C-1.
"""

import numpy as np
from sklearn.metrics import accuracy_score, brier_score_loss
from sklearn.metrics import log_loss as sk_log_loss

from .errors import DataError

EPS = 1e-12


def _check(probs, y):
    """``(P, y)``: P the (N, C) class probabilities (two columns for binary p(y=1)), y integer labels."""
    probs = np.asarray(probs, dtype=float)
    y = np.asarray(y)
    if probs.ndim == 1:
        probs = np.stack([1.0 - probs, probs], axis=1)
    if probs.ndim != 2 or y.ndim != 1 or len(y) != len(probs) or len(y) == 0:
        raise DataError(f"probs must be (N,) or (N, C) with one row per label; got probs {probs.shape}, y {y.shape}")
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or np.any(np.abs(probs.sum(1) - 1) > 1e-4):
        raise DataError("probs must be finite probabilities in [0, 1] whose rows sum to 1")
    if y.dtype.kind not in "biu" and not np.all(y == np.round(y)):
        raise DataError("y must hold whole-number class labels")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= probs.shape[1]:
        raise DataError(f"labels must lie in 0..{probs.shape[1] - 1}, got {y.min()}..{y.max()}")
    return probs, y


def accuracy(probs, y):
    """Fraction of argmax_c p_c = y (``sklearn.metrics.accuracy_score``)."""
    probs, y = _check(probs, y)
    return float(accuracy_score(y, probs.argmax(1)))


def log_loss(probs, y):
    """Mean negative log predictive probability of the true label, -1/N sum_i log p_{i, y_i}
    (``sklearn.metrics.log_loss`` on probabilities clipped to [1e-12, 1], renormalized by scikit-learn)."""
    probs, y = _check(probs, y)
    return float(sk_log_loss(y, np.clip(probs, EPS, 1.0), labels=np.arange(probs.shape[1])))


def brier_score(probs, y):
    """1/N sum_i sum_c (p_ic - 1[y_i = c])^2, halved for two classes so it equals mean (p(y=1) - y)^2:
    ``sklearn.metrics.brier_score_loss`` of p(y=1) for two classes; for more, the sum over classes of the
    one-vs-rest Brier scores (scikit-learn's own multiclass Brier score, where it has one, is this sum)."""
    probs, y = _check(probs, y)
    if probs.shape[1] == 2:
        return float(brier_score_loss(y, probs[:, 1], pos_label=1))
    return float(sum(brier_score_loss((y == c).astype(int), probs[:, c], pos_label=1) for c in range(probs.shape[1])))


def _bins(probs, y, bins):
    """Per equal-width bin of the top-label confidence: (count, mean confidence, accuracy)."""
    confidence, correct = probs.max(1), (probs.argmax(1) == y).astype(float)
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(index, confidence, minlength=bins) / count
        acc = np.bincount(index, correct, minlength=bins) / count
    return count, conf, acc


def expected_calibration_error(probs, y, bins=10):
    """ECE = sum_b n_b/N |accuracy_b - confidence_b| over equal-width bins of the top-label confidence."""
    probs, y = _check(probs, y)
    count, conf, acc = _bins(probs, y, bins)
    seen = count > 0
    return float(np.sum(count[seen] / len(y) * np.abs(acc[seen] - conf[seen])))


def metrics(probs, y, bins=10):
    """accuracy, log_loss, brier, ece of one set of predictions, as a dict."""
    return {
        "accuracy": accuracy(probs, y),
        "log_loss": log_loss(probs, y),
        "brier": brier_score(probs, y),
        "ece": expected_calibration_error(probs, y, bins),
    }


def reliability_diagram(predictions, y, bins=10):
    """One panel per method: accuracy against mean confidence per bin (marker area ~ bin count), the diagonal
    of perfect calibration, and the ECE in the title. ``predictions``: method -> probs."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.2 * len(predictions), 3.4))
    axes = fig.subplots(1, len(predictions), squeeze=False)
    for k, (ax, (method, probs)) in enumerate(zip(axes.flat, predictions.items())):
        probs_, labels = _check(probs, y)
        count, conf, acc = _bins(probs_, labels, bins)
        seen = count > 0
        ax.plot([0, 1], [0, 1], "k--", linewidth=1)
        ax.scatter(conf[seen], acc[seen], s=20 + 200 * count[seen] / count.max(), color=f"C{k % 10}", zorder=3)
        ax.plot(conf[seen], acc[seen], color=f"C{k % 10}", linewidth=1.2)
        ax.set_title(f"{method}\nECE {expected_calibration_error(probs, y, bins):.3f}", fontsize=9)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("confidence")
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel("accuracy")
    fig.tight_layout()
    return fig
