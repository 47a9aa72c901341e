"""Conjugate Gaussian pairs with exact posteriors and exact log evidence: the toolkit's ground truth."""

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

from vi_toolkit.models import register
from vi_toolkit.errors import DataError
from vi_toolkit.pairs import ModelPair
from vi_toolkit.validate import positive


def _vector(name, y):
    y = torch.as_tensor(y, dtype=torch.get_default_dtype())
    if y.dim() != 1 or len(y) == 0:
        raise DataError(f"{name} must be a non-empty 1-D array, got shape {tuple(y.shape)}")
    if not torch.isfinite(y).all():
        raise DataError(f"{name} holds NaN or infinite values; remove them before fitting")
    return y


@register("normal-mean")
class NormalMean(ModelPair):
    """mu ~ Normal(prior_loc, prior_scale); y_i ~ Normal(mu, noise_scale), i = 1..N."""

    description = "Normal mean with a Normal prior and known noise scale (exact posterior and evidence)"

    def __init__(self, prior_loc=0.0, prior_scale=1.0, noise_scale=1.0):
        self.prior_loc = float(prior_loc)
        self.prior_scale = positive("prior_scale", prior_scale)
        self.noise_scale = positive("noise_scale", noise_scale)

    def model(self, y):
        mu = pyro.sample("mu", dist.Normal(self.prior_loc, self.prior_scale))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(mu, self.noise_scale), obs=y)

    def guide(self, y):
        loc = pyro.param("mu_loc", torch.tensor(self.prior_loc))
        scale = pyro.param("mu_scale", torch.tensor(self.prior_scale), constraint=constraints.positive)
        pyro.sample("mu", dist.Normal(loc, scale))

    def posterior(self, y):
        """Exact p(mu | y) = Normal(m, s): 1/s^2 = 1/prior_scale^2 + N/noise_scale^2, m = s^2 (prior_loc/prior_scale^2 + sum y/noise_scale^2)."""
        y = _vector("y", y)
        precision = self.prior_scale**-2 + len(y) / self.noise_scale**2
        mean = (self.prior_loc / self.prior_scale**2 + y.sum() / self.noise_scale**2) / precision
        return {"mu": dist.Normal(mean, precision**-0.5)}

    def log_evidence(self, y):
        """log p(y) = log N(y; prior_loc 1, noise_scale^2 I + prior_scale^2 1 1^T)."""
        y = _vector("y", y)
        n = len(y)
        cov = self.noise_scale**2 * torch.eye(n) + self.prior_scale**2 * torch.ones(n, n)
        return float(dist.MultivariateNormal(torch.full((n,), self.prior_loc), cov).log_prob(y))

    def simulate(self, seed=0, n=20):
        """(y,): N draws from the model with mu drawn from the prior."""
        g = torch.Generator().manual_seed(seed)
        mu = self.prior_loc + self.prior_scale * torch.randn((), generator=g)
        return (mu + self.noise_scale * torch.randn(n, generator=g),)


@register("linear-regression")
class LinearRegression(ModelPair):
    """beta ~ Normal(0, prior_scale^2 I_D); y_i ~ Normal(x_i . beta, noise_scale), i = 1..N."""

    description = "Bayesian linear regression with known noise scale (exact posterior and evidence)"

    def __init__(self, prior_scale=1.0, noise_scale=1.0):
        self.prior_scale = positive("prior_scale", prior_scale)
        self.noise_scale = positive("noise_scale", noise_scale)

    def model(self, X, y):
        beta = pyro.sample("beta", dist.Normal(0.0, self.prior_scale).expand([X.shape[-1]]).to_event(1))
        with pyro.plate("data", X.shape[0]):
            pyro.sample("y", dist.Normal((X * beta).sum(-1), self.noise_scale), obs=y)

    def guide(self, X, y):
        d = X.shape[-1]
        loc = pyro.param("beta_loc", torch.zeros(d))
        scale = pyro.param("beta_scale", torch.full((d,), self.prior_scale), constraint=constraints.positive)
        pyro.sample("beta", dist.Normal(loc, scale).to_event(1))

    def _check(self, X, y):
        y = _vector("y", y)
        X = torch.as_tensor(X, dtype=y.dtype)
        if X.dim() != 2 or X.shape[0] != len(y):
            raise DataError(f"X must be a 2-D array with one row per y value; got X {tuple(X.shape)}, y {len(y)}")
        if not torch.isfinite(X).all():
            raise DataError("X holds NaN or infinite values; remove them before fitting")
        return X, y

    def posterior(self, X, y):
        """Exact p(beta | X, y) = N(m, S): S^-1 = X^T X / noise^2 + I / prior^2, m = S X^T y / noise^2."""
        X, y = self._check(X, y)
        precision = X.T @ X / self.noise_scale**2 + torch.eye(X.shape[1]) / self.prior_scale**2
        cov = torch.linalg.inv(precision)
        cov = (cov + cov.T) / 2
        mean = cov @ X.T @ y / self.noise_scale**2
        return {"beta": dist.MultivariateNormal(mean, cov)}

    def log_evidence(self, X, y):
        """log p(y | X) = log N(y; 0, noise^2 I + prior^2 X X^T)."""
        X, y = self._check(X, y)
        cov = self.noise_scale**2 * torch.eye(len(y)) + self.prior_scale**2 * X @ X.T
        return float(dist.MultivariateNormal(torch.zeros(len(y)), cov).log_prob(y))

    def simulate(self, seed=0, n=100, d=3):
        """(X, y): standard-normal features and y from the model with beta drawn from the prior."""
        g = torch.Generator().manual_seed(seed)
        X = torch.randn(n, d, generator=g)
        beta = self.prior_scale * torch.randn(d, generator=g)
        return X, X @ beta + self.noise_scale * torch.randn(n, generator=g)
