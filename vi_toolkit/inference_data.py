"""Posterior draws as ArviZ InferenceData, the one posterior format of the toolkit (VI and MCMC alike)."""

import arviz as az
import numpy as np


def to_numpy(draws):
    """site -> numpy array, from tensors or arrays."""
    return {name: np.asarray(value.detach().cpu() if hasattr(value, "detach") else value) for name, value in draws.items()}


def from_chains(posterior, sample_stats=None, attrs=None):
    """InferenceData from ``site -> array (chains, draws, *site_shape)``; dims beyond the first two are named
    ``{site}_dim_{i}`` as ArviZ does."""
    idata = az.from_dict(posterior=to_numpy(posterior), sample_stats=sample_stats)
    if attrs:
        idata.posterior.attrs.update({k: v for k, v in attrs.items() if v is not None})
    return idata


def draws_from_inference_data(idata):
    """site -> array (chains * draws, *site_shape), chains stacked in order."""
    out = {}
    for name, var in idata.posterior.data_vars.items():
        values = var.values
        out[name] = values.reshape((-1,) + values.shape[2:])
    return out
