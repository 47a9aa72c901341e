"""Label-ordered summaries of a Gaussian mixture posterior: draws, held-out density, responsibilities and
sampler diagnostics, for any posterior of the sites ``weights`` (K,), ``locs`` (K, D) and ``scales`` (K, D).

A posterior here is anything with the toolkit's posterior protocol (a VI fit, NUTS, the CAVI baseline of
:mod:`~vi_toolkit.models.gmm_cavi`, a saved result), asked for ``draws(n, seed)``, or a dict of such draws.

**Label order.** Mixture labels are arbitrary (the posterior is symmetric under permuting them), so every
function here orders the components of each draw by the first coordinate of their mean, for every method
alike; draws, marginals and component tables of different methods then refer to the same labels.
"""

import math

import arviz as az
import numpy as np
import pyro.distributions as dist
import torch

from vi_toolkit.inference_data import from_chains
from vi_toolkit.models.gmm import check_points

SITES = ("weights", "locs", "scales")


def order_labels(draws):
    """Draws of weights (..., K), locs (..., K, D) and scales (..., K, D) with the components of each draw
    sorted by the first coordinate of their mean (any leading dims: draws, or chains and draws)."""
    order = np.argsort(draws["locs"][..., 0], axis=-1)
    return {
        "weights": np.take_along_axis(draws["weights"], order, -1),
        "locs": np.take_along_axis(draws["locs"], order[..., None], -2),
        "scales": np.take_along_axis(draws["scales"], order[..., None], -2),
    }


def ordered_draws(posterior, n=None, seed=0):
    """weights (S, K), locs (S, K, D), scales (S, K, D) of ``posterior`` (a result: its ``draws(n, seed)``;
    or a dict of draws, used as given), components of each draw in label order."""
    draws = posterior if isinstance(posterior, dict) else posterior.draws(n, seed)
    return order_labels({k: np.asarray(draws[k], dtype=float) for k in SITES})


def component_log_density(draws, x):
    """log weights_sk + log N(x_n | locs_sk, diag scales_sk^2) as a tensor of shape (S, N, K)."""
    w, m, s = (torch.as_tensor(np.asarray(draws[k]), dtype=x.dtype) for k in SITES)
    log_normal = dist.Normal(m[:, None], s[:, None]).log_prob(x[None, :, None, :]).sum(-1)  # (S, N, K)
    return w.log()[:, None, :] + log_normal


def _points(draws, x):
    return check_points(x, D=draws["locs"].shape[-1], owner="the posterior")


def log_predictive_density(posterior, x_new, n=None, seed=0):
    """Per point: log p(x_new | data) ~= log (1/S) sum_s sum_k w_sk N(x_new | locs_sk, scales_sk^2), a numpy
    array (N_new,) over the draws of :func:`ordered_draws`."""
    draws = ordered_draws(posterior, n, seed)
    x_new = _points(draws, x_new)
    lp = component_log_density(draws, x_new).logsumexp(-1)  # (S, N)
    return (lp.logsumexp(0) - math.log(lp.shape[0])).numpy()


def responsibilities(posterior, x, n=None, seed=0):
    """p(z_n = k | x, data) ~= (1/S) sum_s w_sk N(x_n | ...) / sum_j w_sj N(x_n | ...): array (N, K), with
    components in label order."""
    draws = ordered_draws(posterior, n, seed)
    x = _points(draws, x)
    return component_log_density(draws, x).softmax(-1).mean(0).numpy()


def assignments(posterior, x, n=None, seed=0):
    """Hard assignments: argmax_k of :func:`responsibilities`, an int array (N,)."""
    return responsibilities(posterior, x, n, seed).argmax(1)


def label_ordered_summary(posterior):
    """ArviZ summary (mean, sd, r_hat, ess_bulk, ess_tail) of ``posterior``'s InferenceData after ordering the
    labels of every draw, so that label switching between or within chains does not inflate r_hat."""
    idata = posterior.to_inference_data()
    chains = order_labels({k: idata.posterior[k].values for k in SITES})
    table = az.summary(from_chains(chains), kind="all", round_to="none")
    return table[["mean", "sd", "r_hat", "ess_bulk", "ess_tail"]]
