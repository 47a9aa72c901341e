"""Targets with exact Gaussian posteriors in unconstrained coordinates, shared by the tests of the Gaussian fits
(DADVI, batch-and-match)."""

import random

import numpy as np
import pyro
import pyro.distributions as dist
import torch

# a 4-D correlated Gaussian target N(MU, SIGMA), scales 0.5 to 3
_L = torch.tensor([[1.0, 0, 0, 0], [0.8, 0.6, 0, 0], [-0.5, 0.3, 0.7, 0], [0.2, -0.4, 0.1, 0.5]])
_L = _L * torch.tensor([1.0, 2.0, 0.5, 3.0])[:, None]
SIGMA = _L @ _L.T
MU = torch.tensor([1.0, -2.0, 0.5, 3.0])


def mvn_model(mu, sigma):
    z = pyro.sample("z", dist.MultivariateNormal(mu, sigma))
    pyro.deterministic("total", z.sum(-1))


def lognormal_regression():
    """(model, (x, y), exact mean (2,), exact covariance (2, 2)): y_i ~ LogNormal(log(sigma) + x_i . beta, 0.3)
    written with ``x @ beta`` (the model runs one draw at a time), an unstandardized predictor (x ~ 50 +- 10)
    and a positive site. In u = (beta, log sigma) the posterior is exactly Gaussian: log y is linear in u with
    Gaussian noise, and the priors beta ~ N(0, 1), sigma ~ LogNormal(0, 2) are N(0, 1) and N(0, 4) in u."""
    g = torch.Generator().manual_seed(0)
    n = 20
    x = 50 + 10 * torch.randn(n, 1, generator=g)
    y = torch.exp(0.5 + 0.02 * x[:, 0] + 0.3 * torch.randn(n, generator=g))

    def model(x, y):
        beta = pyro.sample("beta", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
        sigma = pyro.sample("sigma", dist.LogNormal(0.0, 2.0))
        pyro.sample("y", dist.LogNormal(torch.log(sigma) + x @ beta, 0.3).to_event(1), obs=y)

    design = torch.cat([x, torch.ones(n, 1)], 1).double()
    precision = design.T @ design / 0.3**2 + torch.diag(torch.tensor([1.0, 0.25], dtype=torch.float64))
    covariance = torch.linalg.inv(precision)
    return model, (x, y), covariance @ design.T @ torch.log(y).double() / 0.3**2, covariance


def global_state():
    """The caller's global state a fit must leave as it found: random streams, thread count, default dtype."""
    return (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate(), torch.get_num_threads(),
            torch.get_default_dtype())


def same_state(before, after):
    return (torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1])
            and before[2:] == after[2:])
