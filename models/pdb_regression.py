"""The Gaussian linear regression that most posteriordb regressions are: the base class of their translations.

Stan (``earnings``, ``kidiq``, ``mesquite``, ``nes`` posteriors)::

    transformed data { ... predictors built from the data ... }
    parameters { vector[K] beta; real<lower=0> sigma; }
    model { y ~ normal(beta[1] + beta[2] * x_2 + ... + beta[K] * x_K, sigma); }

A subclass translates one Stan model: ``design(...)`` is Stan's ``transformed data`` block (the outcome and the
predictor columns from the raw data entries, taken by their data.json names) and ``model(...)`` runs
:meth:`GaussianRegression.regression` on it. Stan's improper flat priors become wide proper ones:
``beta ~ Normal(0, flat_scale)`` and ``sigma ~ HalfNormal(flat_scale)``, ``flat_scale`` chosen per posterior
so that it moves no posterior mean by more than ~0.001 posterior sds (a Normal(0, s) prior shifts a mean m of
sd d by about m d / s^2 sds; the largest m d over the reference draws is quoted where ``flat_scale`` is set).
"""

import functools

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

from vi_toolkit.errors import DataError
from vi_toolkit.pairs import ModelPair


class GaussianRegression(ModelPair):
    """beta ~ N(0, flat_scale^2 I_K), sigma ~ sigma_prior(); y_i ~ N(x_i . beta, sigma), x_i = (1, predictors)."""

    flat_scale = 1000.0  # sd of the proper prior standing for Stan's flat one

    def design(self, *data):
        """Stan's transformed data: (outcome y (N,), list of predictor columns (N,) each, intercept excluded)."""
        raise NotImplementedError

    def sigma_prior(self):
        """The prior of the noise scale sigma (Stan: flat on sigma > 0 unless the subclass says otherwise)."""
        return dist.HalfNormal(self.flat_scale)

    def check_data(self, *data):
        """The data entries as float tensors (1-D of one length N, or scalars), with a finite transformed
        data (logs of positive values), or a DataError."""
        tensors = tuple(torch.as_tensor(v, dtype=torch.get_default_dtype()) for v in data)
        lengths = {t.shape[0] for t in tensors if t.dim() == 1}
        if len(lengths) != 1 or any(t.dim() > 1 for t in tensors) or 0 in lengths:
            raise DataError(f"the data entries must be 1-D arrays of one length N > 0 (or scalars), "
                            f"got shapes {[tuple(t.shape) for t in tensors]}")
        if not all(torch.isfinite(t).all() for t in tensors):
            raise DataError("the data hold NaN or infinite values; remove those rows before fitting")
        y, columns = self.design(*tensors)
        if not (torch.isfinite(y).all() and all(torch.isfinite(c).all() for c in columns)):
            raise DataError(f"{type(self).__name__}'s transformed data are not finite: a logarithm of a value <= 0 "
                            "(values that the model logs must be positive) or a constant predictor standardized")
        return tensors

    def regression(self, y, columns):
        """The likelihood y ~ N(X beta, sigma) with X = [1, columns] and the priors of beta and sigma."""
        X = design_matrix(columns, len(y))
        beta = pyro.sample("beta", dist.Normal(0.0, self.flat_scale).expand([X.shape[-1]]).to_event(1))
        sigma = pyro.sample("sigma", self.sigma_prior())
        # X beta for beta of shape (K,) or (..., 1, K) (dim -2: the data plate's placeholder, which becomes the
        # matmul's column): 4x faster on 2000 draws of nes than (X * beta).sum(-1), which builds (..., N, K)
        mean = (X @ torch.atleast_2d(beta).mT).squeeze(-1)
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(mean, sigma), obs=y)

    def guide(self, *data):
        """Mean-field: Normal for each beta_k, LogNormal for sigma, started at least squares (its standard
        errors as scales, log of the residual sd with sd 1/sqrt(2N) for sigma)."""
        start = functools.cache(lambda: self.least_squares(*self.design(*data)))  # only if a param is new
        positive = constraints.positive
        beta_loc = pyro.param("beta_loc", lambda: start()[0])
        beta_scale = pyro.param("beta_scale", lambda: start()[1], constraint=positive)
        sigma_loc = pyro.param("sigma_loc", lambda: start()[2])
        sigma_scale = pyro.param("sigma_scale", lambda: start()[3], constraint=positive)
        pyro.sample("beta", dist.Normal(beta_loc, beta_scale).to_event(1))
        pyro.sample("sigma", dist.LogNormal(sigma_loc, sigma_scale))

    @staticmethod
    def least_squares(y, columns):
        """(b, se(b), log s, 1/sqrt(2N)): least squares b = argmin |y - X b|, its standard errors
        s sqrt(diag (X'X)^-1) and the log residual sd s = |y - X b| / sqrt(N - K)."""
        X = design_matrix(columns, len(y))
        n, k = X.shape
        b = torch.linalg.lstsq(X, y.unsqueeze(-1)).solution.squeeze(-1)
        s = ((y - X @ b).square().sum() / max(n - k, 1)).sqrt()
        se = s * torch.linalg.inv(X.T @ X).diagonal().sqrt()
        return b, se, s.log(), torch.tensor(0.5 / n) ** 0.5


def design_matrix(columns, n):
    """The (n, K) design matrix: a column of ones (the intercept beta[1] in Stan), then the predictor columns."""
    return torch.stack([torch.ones(n), *columns], -1)
