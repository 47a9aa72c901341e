"""Per-data-point bounds on log p(x) for amortized guides: the ELBO and the importance-weighted bound IWAE-k.

This module's one job: draw log-weights from a ``log_weights(x_batch, n)`` callable row batch by row batch,
in bounded memory, and reduce them per data point (the reduction is :mod:`vi_toolkit.estimators`').

For each data point x_n, with z_i ~ q(z|x_n) and w_i = p(x_n, z_i) / q(z_i|x_n) (Burda et al. 2016):

    ELBO(x_n) = E[log w_1] <= IWAE-k(x_n) = E[log (1/k) sum_{i<=k} w_i] <= IWAE-(k+1)(x_n) <= log p(x_n).

Every function takes ``log_weights(x_batch, n) -> tensor (n, B)``: n independent log-weights per row of the
batch (e.g. :meth:`models.vae.VAE.log_weights`). Memory stays bounded for any k (up to 5000 and beyond): rows
go in batches of ``batch_size`` and particles in chunks of ``max(1, max_draws // batch_size)``, combined by
:func:`vi_toolkit.estimators.logmeanexp_chunks`. Each function draws on a private random stream from its
``seed``: the caller's stream is left as it was. :func:`pool` gathers an (S, N) pool for the pooled
estimators (with standard errors) of :mod:`vi_toolkit.estimators`.

Pyro's ``RenyiELBO`` (alpha=0, k particles) gives the same per-data-point bound for a model whose every
site lies in the data plate (a VAE): it sums log-weights only over the plates that not all sites share, takes
the logsumexp over particles per data point, then sums over the batch, i.e. sum_n IWAE-k(x_n) (checked in
tests/test_vae.py). It estimates the bound with k draws per data point; this module evaluates it for large k
without holding k x N draws at once.
"""

import math

import pandas as pd
import torch

from .estimators import logmeanexp_chunks
from .isolation import isolated
from .traces import chunks
from .validate import whole


def _per_point(log_weights, x, draws, reduce, batch_size, max_draws, seed):
    """reduce(the chunks of ``draws`` log-weights (n, B) of each batch of B rows) -> (B,), over every row batch
    of ``x``, on a private random stream from ``seed``: tensor (N,)."""
    draws, batch_size, max_draws = whole("draws", draws), whole("batch_size", batch_size), whole("max_draws", max_draws)
    out = []
    with isolated(seed):
        for start in range(0, len(x), batch_size):
            rows = x[start : start + batch_size]
            size = max(1, max_draws // len(rows))
            out.append(reduce(log_weights(rows, n).to(torch.float64) for n in chunks(draws, size)))
    return torch.cat(out)


@torch.no_grad()
def iwae(log_weights, x, k, *, batch_size=100, max_draws=20_000, seed=0):
    """IWAE-k(x_n) = log (1/k) sum_{i<=k} w_i per row of ``x``, one draw of the estimator: tensor (N,).
    Drawn on a private random stream from ``seed`` (the caller's stream is left as it was)."""
    return _per_point(log_weights, x, whole("k", k), logmeanexp_chunks, batch_size, max_draws, seed)


@torch.no_grad()
def elbo(log_weights, x, num_samples=100, *, batch_size=100, max_draws=20_000, seed=0):
    """ELBO(x_n) = E_q[log w], estimated by the mean of ``num_samples`` log-weights per row: tensor (N,).
    Drawn on a private random stream from ``seed`` (the caller's stream is left as it was)."""
    num_samples = whole("num_samples", num_samples)
    return _per_point(log_weights, x, num_samples, lambda parts: sum(p.sum(0) for p in parts) / num_samples,
                      batch_size, max_draws, seed)


@torch.no_grad()
def pool(log_weights, x, num_samples, *, max_draws=100_000, seed=0):
    """``num_samples`` log-weights of every row of ``x`` as one tensor (num_samples, N), drawn in chunks of
    about ``max_draws`` (draw, row) pairs on a private random stream from ``seed``: the input of the pooled
    estimators of :mod:`vi_toolkit.estimators` (``elbo``, ``iwae``, ``cubo`` with standard errors)."""
    num_samples, max_draws = whole("num_samples", num_samples), whole("max_draws", max_draws)
    with isolated(seed):
        return torch.cat([log_weights(x, n) for n in chunks(num_samples, max(1, max_draws // len(x)))])


def bound_curve(log_weights, x, ks=(1, 10, 100, 1000), *, elbo_samples=100, batch_size=100, seed=0):
    """Mean over rows of the ELBO and of IWAE-k for each k, with the standard error across rows (which holds
    both the Monte Carlo error and the spread of the data points): a DataFrame with columns bound, k, mean, se."""
    rows = []
    per_point = {("ELBO", 1): elbo(log_weights, x, elbo_samples, batch_size=batch_size, seed=seed)}
    for k in ks:
        per_point[(f"IWAE-{k}", k)] = iwae(log_weights, x, k, batch_size=batch_size, seed=seed + k)
    for (name, k), values in per_point.items():
        se = float(values.std() / math.sqrt(len(values))) if len(values) > 1 else float("nan")
        rows.append({"bound": name, "k": k, "mean": float(values.mean()), "se": se})
    return pd.DataFrame(rows)
