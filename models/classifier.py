"""Bayesian classifiers: logistic regression (binary and softmax) and a one-hidden-layer neural network.

Both models take ``(X, y=None)``: ``X`` a float tensor (N, D) of (standardized) features, ``y`` the labels
0..C-1 as prepared by :meth:`pair.prepare <Classifier.prepare>` (float for C = 2, long for C > 2), or None to
predict. Each model returns its class probabilities: p(y=1) of shape (N,) for C = 2, (N, C) for C > 2.
The likelihood broadcasts over vectorized particles, so ``fit_vi(..., num_particles=8)`` and ``Predictive(...,
parallel=True)`` run without a Python loop.

Data: :func:`load` ("breast_cancer", "digits", "iris" from scikit-learn, standardized with the training split's
moments, fixed stratified split by seed) and :func:`synthetic` (features and labels from known weights).
"""

import math
from dataclasses import dataclass

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import Predictive

from vi_toolkit.models import register
from vi_toolkit.errors import ConfigError, DataError, UnknownNameError
from vi_toolkit.pairs import ModelPair
from vi_toolkit.validate import positive, whole


def _normal(scale, shape):
    """Normal(0, scale) on every entry of a ``shape`` array; ``scale`` a number or a (particle-batched) scalar."""
    scale = torch.as_tensor(scale, dtype=torch.get_default_dtype())
    return dist.Normal(0.0, scale.reshape(scale.shape + (1,) * len(shape))).expand(scale.shape + shape).to_event(len(shape))


def _affine(x, w, b):
    """x w + b for x (..., N, D) and weights w (D, K), or w (P, 1, D, K) under a particle plate -> (..., N, K)."""
    if w.dim() == 4:
        w = w.squeeze(-3)  # (P, 1, D, K) -> (P, D, K): the plate's singleton dim would misalign with N
    return torch.matmul(x, w) + b


class Classifier(ModelPair):
    """Shared by the classifiers: data checks, the categorical likelihood and posterior predictive probabilities."""

    def __init__(self, n_classes=2, prior_scale=1.0):
        self.n_classes = whole("n_classes", n_classes, 2)
        self.prior_scale = positive("prior_scale", prior_scale)
        self.outputs = 1 if self.n_classes == 2 else self.n_classes

    def prepare(self, X, y=None):
        """``(X, y)`` as tensors the model takes, after checking shapes, finiteness and the label range."""
        X = torch.as_tensor(np.asarray(X, dtype=np.float64), dtype=torch.get_default_dtype())
        if X.dim() != 2 or X.shape[0] == 0 or X.shape[1] == 0:
            raise DataError(f"X must be a non-empty 2-D array (rows = examples), got shape {tuple(X.shape)}")
        if not torch.isfinite(X).all():
            bad = int((~torch.isfinite(X)).any(1).sum())
            raise DataError(f"X holds NaN or infinite values in {bad} row(s); remove or impute them before fitting")
        if y is None:
            return X, None
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != X.shape[0]:
            raise DataError(f"y must be 1-D with one label per row of X; got y {y.shape}, X {tuple(X.shape)}")
        if y.dtype.kind not in "biuf" or not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise DataError("y must hold whole-number class labels 0..C-1")
        if y.min() < 0 or y.max() > self.n_classes - 1:
            raise DataError(
                f"labels must lie in 0..{self.n_classes - 1} (n_classes={self.n_classes}); got {int(y.min())}..{int(y.max())}. "
                "Encode the classes as 0..C-1 or set n_classes"
            )
        y = torch.as_tensor(y.astype(np.int64))
        return X, (y.to(X.dtype) if self.n_classes == 2 else y)

    def _likelihood(self, logits, y):
        """y_i ~ Bernoulli(sigmoid(logit_i)) (C = 2) or Categorical(softmax(logits_i)); returns the probabilities."""
        with pyro.plate("data", logits.shape[-2]):
            if self.n_classes == 2:
                logits = logits.squeeze(-1)
                pyro.sample("y", dist.Bernoulli(logits=logits), obs=y)
                return torch.sigmoid(logits)
            pyro.sample("y", dist.Categorical(logits=logits), obs=y)
            return torch.softmax(logits, -1)

    def predict_proba(self, draws, X, chunk=500):
        """Posterior predictive class probabilities p(y | x, data) = mean over draws s of p(y | x, theta_s).

        ``draws``: site -> array (S, *site_shape), from a VI fit (``result.draws(n)``) or NUTS (``result.draws()``);
        runs Pyro's ``Predictive`` on the model, vectorized over draws in chunks of ``chunk``.
        """
        X, _ = self.prepare(X)
        # (S, 1, *site_shape): the layout of a particle plate at dim -2, which the model's _affine expects
        draws = {name: torch.as_tensor(np.asarray(v), dtype=X.dtype).unsqueeze(1) for name, v in draws.items()}
        n = len(next(iter(draws.values())))
        total = 0.0
        for start in range(0, n, chunk):
            part = {name: v[start:start + chunk] for name, v in draws.items()}
            predictive = Predictive(self.model, posterior_samples=part, return_sites=["_RETURN"], parallel=True)
            try:
                total = total + predictive(X)["_RETURN"].sum(0)
            except RuntimeError as exc:
                raise DataError(f"the draws do not fit X of shape {tuple(X.shape)} (same features as in training?): {exc}") from exc
        return (total / n).numpy()


@register("logistic")
class Logistic(Classifier):
    """beta ~ Normal(0, s), intercept ~ Normal(0, prior_scale); y_i ~ Bernoulli(sigmoid(x_i.beta + intercept)),
    softmax for C > 2 (beta (D, C), intercept (C,)). s = prior_scale, or with ``hierarchical``
    tau ~ HalfNormal(prior_scale) and s = tau (the intercept keeps Normal(0, prior_scale))."""

    description = "Bayesian logistic regression (binary or softmax) with intercept; optional hierarchical prior scale"

    def __init__(self, n_classes=2, prior_scale=1.0, hierarchical=False):
        super().__init__(n_classes, prior_scale)
        if not isinstance(hierarchical, bool):
            raise ConfigError(f"hierarchical must be True or False, got {hierarchical!r}")
        self.hierarchical = hierarchical

    def model(self, X, y=None):
        d, k = X.shape[-1], self.outputs
        scale = pyro.sample("tau", dist.HalfNormal(self.prior_scale)) if self.hierarchical else self.prior_scale
        if k == 1:
            beta = pyro.sample("beta", _normal(scale, (d,)))[..., None]
            intercept = pyro.sample("intercept", dist.Normal(0.0, self.prior_scale))[..., None]
        else:
            beta = pyro.sample("beta", _normal(scale, (d, k)))
            intercept = pyro.sample("intercept", _normal(self.prior_scale, (k,)))
        return self._likelihood(_affine(X, beta, intercept), y)


@register("bnn")
class BNN(Classifier):
    """One hidden layer of ``width`` tanh units: w1 (D, H), b1 (H,), b2 ~ Normal(0, prior_scale),
    w2 (H, K) ~ Normal(0, prior_scale / sqrt(H)) so the prior of the logits does not grow with the width;
    logits = tanh(X w1 + b1) w2 + b2, then the same likelihood as ``logistic``."""

    description = "Bayesian neural network, one tanh hidden layer of configurable width, Normal priors"

    def __init__(self, n_classes=2, prior_scale=1.0, width=16):
        super().__init__(n_classes, prior_scale)
        self.width = whole("width", width, 1)

    def model(self, X, y=None):
        d, h, k, s = X.shape[-1], self.width, self.outputs, self.prior_scale
        w1 = pyro.sample("w1", _normal(s, (d, h)))
        b1 = pyro.sample("b1", _normal(s, (h,)))
        w2 = pyro.sample("w2", _normal(s / math.sqrt(h), (h, k)))
        b2 = pyro.sample("b2", _normal(s, (k,)))
        return self._likelihood(_affine(torch.tanh(_affine(X, w1, b1)), w2, b2), y)


@dataclass(frozen=True)
class Split:
    """A fixed train/test split: standardized float features, labels 0..C-1 (numpy int arrays)."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    feature_names: tuple


DATASETS = ("breast_cancer", "digits", "iris")


def load(name="breast_cancer", test_fraction=0.25, seed=0):
    """A scikit-learn bundled data set, split (stratified, by ``seed``) and standardized with the training
    split's mean and sd (constant features are centred only)."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    if name not in DATASETS:
        raise UnknownNameError(f"unknown data set {name!r}; available: {', '.join(DATASETS)}")
    if not (isinstance(test_fraction, float) and 0 < test_fraction < 1):
        raise ConfigError(f"test_fraction must be a number strictly between 0 and 1, got {test_fraction!r}")
    bunch = getattr(datasets, f"load_{name}")()
    X_train, X_test, y_train, y_test = train_test_split(
        bunch.data, bunch.target, test_size=test_fraction, random_state=seed, stratify=bunch.target
    )
    mean, sd = X_train.mean(0), X_train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    names = tuple(str(f) for f in getattr(bunch, "feature_names", range(bunch.data.shape[1])))
    return Split(name, (X_train - mean) / sd, y_train, (X_test - mean) / sd, y_test, int(bunch.target.max()) + 1, names)


def synthetic(weights, intercept=0.0, n=500, seed=0):
    """(X, y): x_i ~ Normal(0, I_D), y_i ~ Bernoulli(sigmoid(x_i . weights + intercept)), D = len(weights)."""
    weights = np.asarray(weights, dtype=float)
    if weights.ndim != 1 or not np.all(np.isfinite(weights)):
        raise DataError(f"weights must be a finite 1-D array, got shape {weights.shape}")
    whole("n", n, 1)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, len(weights)))
    p = 1.0 / (1.0 + np.exp(-(X @ weights + intercept)))
    return X, (rng.random(n) < p).astype(np.int64)
