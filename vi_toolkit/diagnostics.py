"""Can this VI fit be trusted? The PSIS k-hat diagnostic (Yao, Vehtari, Simpson and Gelman 2018)."""

import math

import warnings

import arviz as az
import numpy as np
import torch

from .errors import DataError

GOOD, USABLE = 0.5, 0.7
MIN_DRAWS = 50  # the smallest S whose tail, min(0.2 S, 3 sqrt(S)), holds the 10 weights a fit needs


def psis_khat(log_weights):
    """Shape k of a generalized Pareto fit to the largest importance weights w = p(x,z)/q(z), z ~ q: ArviZ's
    ``az.psislw`` (Zhang-Stephens fit with its weak prior, r_eff = 1), which gives Pyro's ``psis_diagnostic``
    value (the same tail and fit; equal to ~1e-14 on the tests' cases).

    The tail is the largest min(0.2 S, 3 sqrt(S)) of S weights. Two limits are decided before any fit, as
    before ArviZ did the fitting (ArviZ differs there, so they are kept): when fewer than 10 weights lie within
    1e-15 of the largest (a few draws carry all the weight) k = inf (ArviZ fits the few and can report a small
    or negative k); when the largest weights tie (bounded weights, e.g. q equal to p) k = -inf (ArviZ: inf).
    """
    log_weights = torch.as_tensor(log_weights, dtype=torch.float64)
    if log_weights.dim() != 1 or len(log_weights) < MIN_DRAWS or torch.isnan(log_weights).any():
        raise DataError(
            f"psis_khat needs a 1-D array of at least {MIN_DRAWS} log-weights without NaN (1000 or more for a "
            f"reliable estimate), got shape {tuple(log_weights.shape)}"
        )
    log_weights = torch.sort(log_weights - log_weights.max())[0]
    n = len(log_weights)
    cutoff_index = -int(math.ceil(min(0.2 * n, 3.0 * math.sqrt(n)))) - 1
    smallest = math.log(1.0e-15)
    cutoff = max(smallest, float(log_weights[cutoff_index]))
    if int((log_weights > cutoff).sum()) < 10:
        return math.inf if cutoff == smallest else -math.inf
    with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore")  # ArviZ warns of k > 0.7 (the verdict says so) and of overflow in exp
        _, k = az.psislw(log_weights.numpy().copy(), reff=1.0)
    return float(k)


def khat_verdict(k):
    """Plain words for k-hat (Yao et al. 2018): < 0.5 good, 0.5-0.7 usable but not perfect, > 0.7 do not trust."""
    if k < GOOD:
        return "good: the fit is close to the posterior"
    if k <= USABLE:
        return "usable, not perfect: means are fine, check variances and tails against MCMC"
    return "do not trust: q misses posterior mass"
