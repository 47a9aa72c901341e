"""Estimators of the log evidence from importance log-weights: ELBO, IWAE-k, log-mean-exp and CUBO_n.

This module's one job: turn log-weights ``log w = log p(x, z) - log q(z)``, ``z ~ q`` (computed by
:mod:`vi_toolkit.log_weights`, or by any other means) into estimates with Monte Carlo standard errors. Nothing
here runs a model. A pool of log-weights is a tensor (S,) (joint: one weight per draw of the whole latent
vector) or (S, N) (per data point: S draws for each of N independent points, estimates summed over points).

:func:`logmeanexp` is the one implementation of log (1/k) sum_j w_j that every IWAE-k of the toolkit uses
(:func:`iwae` on a pool, :mod:`vi_toolkit.iwae` per data point in bounded chunks).
"""

import math
from dataclasses import dataclass

import torch

from .errors import ConfigError


@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo estimate and its standard error."""

    value: float
    se: float

    def __repr__(self):
        return f"{self.value:.4f} ± {self.se:.4f}"


def logmeanexp(log_w, dim=0):
    """log (1/k) sum_j exp(log_w_j) along ``dim`` (k = its size), computed stably by logsumexp."""
    return torch.logsumexp(log_w, dim) - math.log(log_w.shape[dim])


def logmeanexp_chunks(chunks):
    """:func:`logmeanexp` along dim 0 of the concatenation of ``chunks`` (tensors (n_i, ...)), holding one
    chunk at a time: the logsumexp of each chunk, then :func:`logmeanexp`'s formula over all of them."""
    parts, total = [], 0
    for chunk in chunks:
        parts.append(torch.logsumexp(chunk, 0))
        total += chunk.shape[0]
    return torch.logsumexp(torch.stack(parts), 0) - math.log(total)


def pool(log_w):
    """Log-weights as a float64 tensor (S, N): S draws of N independent data points (N = 1: joint)."""
    log_w = torch.as_tensor(log_w, dtype=torch.float64)
    log_w = log_w.reshape(len(log_w), -1) if log_w.dim() else log_w.reshape(1, 1)
    if len(log_w) < 2:
        raise ConfigError(f"bounds need at least 2 importance weights, got {len(log_w)}")
    return log_w


def _mean_and_se(values):
    """Estimate of the mean of independent ``values`` (1-D): se = sd / sqrt(count)."""
    return Estimate(float(values.mean()), float(values.std() / math.sqrt(len(values))))


def log_mean_exp(log_w):
    """sum_i log (1/S) sum_s w_si over data points i, each with the delta-method standard error
    sd(w_i) / (sqrt(S) mean(w_i)), added in quadrature (points are independent under q)."""
    log_w = pool(log_w)
    w = (log_w - log_w.max(0).values).exp()
    se = (w.std(0) / (math.sqrt(len(w)) * w.mean(0))).pow(2).sum().sqrt()
    return Estimate(float(logmeanexp(log_w).sum()), float(se))


def elbo(log_w):
    """ELBO = E_q[log w] <= log p(x): the sample mean of the log-weights (summed over data points);
    se = sd / sqrt(S)."""
    return _mean_and_se(pool(log_w).sum(1))


def iwae(log_w, k):
    """IWAE-k = E[log (1/k) sum_{j=1..k} w_j] (Burda et al. 2016), ELBO = IWAE-1 <= IWAE-k <= log p(x);
    per data point (summed over points) when ``log_w`` is (S, N).

    The S weights form floor(S/k) independent batches of k: :func:`logmeanexp` per batch, averaged; the
    standard error is the sd over batches / sqrt(batches)."""
    log_w = pool(log_w)
    batches = len(log_w) // k
    if batches < 2:
        raise ConfigError(f"IWAE-{k} needs at least {2 * k} log-weights (2 batches of {k}), got {len(log_w)}")
    blocks = log_w[: batches * k].reshape(batches, k, -1)
    return _mean_and_se(logmeanexp(blocks, dim=1).sum(1))


def cubo(log_w, n=2):
    """CUBO_n = (1/n) log E_q[w^n] >= log p(x) (Dieng et al. 2017, the chi^n upper bound), n > 1.

    Estimated as (1/n) log-mean-exp(n log w), se by the delta method. The estimate of the log of a mean is
    biased low for finite S (Jensen), so with a heavy-tailed w it can fall below log p(x)."""
    inner = log_mean_exp(n * pool(log_w))
    return Estimate(inner.value / n, inner.se / n)
