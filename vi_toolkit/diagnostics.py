"""Can this VI fit be trusted? The PSIS k-hat diagnostic (Yao, Vehtari, Simpson and Gelman 2018)."""

import math

import torch
from pyro.ops.stats import fit_generalized_pareto

GOOD, USABLE = 0.5, 0.7


def psis_khat(log_weights):
    """Shape k of a generalized Pareto fit to the largest importance weights w = p(x,z)/q(z), z ~ q.

    The tail is the largest min(0.2 S, 3 sqrt(S)) of S weights, as in Pyro's ``psis_diagnostic``.
    """
    log_weights = torch.as_tensor(log_weights, dtype=torch.float64)
    log_weights = torch.sort(log_weights - log_weights.max())[0]
    n = len(log_weights)
    cutoff_index = -int(math.ceil(min(0.2 * n, 3.0 * math.sqrt(n)))) - 1
    cutoff = max(math.log(1.0e-15), float(log_weights[cutoff_index]))
    tail = log_weights[log_weights > cutoff]
    if len(tail) < 10:
        return float("inf")
    k, _ = fit_generalized_pareto(tail.exp() - math.exp(cutoff))
    return float(k)


def khat_verdict(k):
    """Plain words for k-hat: < 0.5 good, 0.5-0.7 usable, > 0.7 do not trust."""
    if k < GOOD:
        return "good: the fit is close to the posterior"
    if k <= USABLE:
        return "usable: estimates are fine, tails are off"
    return "do not trust: q misses posterior mass"
