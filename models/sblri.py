"""posteriordb's ``sblri-blr`` in Pyro: Bayesian linear regression with unknown noise scale.

Stan original (posteriordb ``blr`` on data ``sblri``)::

    beta ~ normal(0, 10) (D);  sigma ~ normal(0, 10) (lower=0);  y ~ normal(X * beta, sigma)

Labels ``beta[0]`` ... ``beta[4]`` and ``sigma`` (0-based). Data: ``posteriordb.load(root / "sblri-blr").data``,
the model's arguments by name (``X``, ``y``). The posterior is badly scaled (sd(beta) ~ 1e-3, sd(sigma) ~ 0.07).
"""

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

from vi_toolkit.models import register
from vi_toolkit.errors import DataError
from vi_toolkit.pairs import ModelPair


@register("sblri")
class SBLRI(ModelPair):
    """beta ~ N(0, 10^2 I_D), sigma ~ HalfNormal(10); y_i ~ N(x_i . beta, sigma)."""

    description = "posteriordb sblri-blr: Bayesian linear regression with unknown noise scale"
    posteriordb = "sblri-blr"

    def check_data(self, X, y):
        """(X, y) as finite float tensors, X (N, D) and y (N,), or a DataError."""
        X = torch.as_tensor(X, dtype=torch.get_default_dtype())
        y = torch.as_tensor(y, dtype=torch.get_default_dtype())
        if X.dim() != 2 or y.dim() != 1 or X.shape[0] != len(y) or len(y) == 0:
            raise DataError(f"X must be (N, D) and y (N,); got X {tuple(X.shape)} and y {tuple(y.shape)}")
        if not (torch.isfinite(X).all() and torch.isfinite(y).all()):
            raise DataError("X and y must be finite; remove rows with NaN or infinite values")
        return X, y

    def model(self, X, y):
        beta = pyro.sample("beta", dist.Normal(0.0, 10.0).expand([X.shape[-1]]).to_event(1))
        sigma = pyro.sample("sigma", dist.HalfNormal(10.0))
        with pyro.plate("data", X.shape[0]):
            pyro.sample("y", dist.Normal((X * beta).sum(-1), sigma), obs=y)

    def guide(self, X, y):
        """Mean-field: Normal for each beta_d started at least squares, LogNormal for sigma."""
        positive = constraints.positive

        def least_squares():
            return torch.linalg.lstsq(X, y.unsqueeze(-1)).solution.squeeze(-1)

        loc = pyro.param("beta_loc", least_squares)
        scale = pyro.param("beta_scale", lambda: torch.full((X.shape[-1],), 1e-2), constraint=positive)
        sigma_loc = pyro.param("sigma_loc", lambda: torch.tensor(0.0))
        sigma_scale = pyro.param("sigma_scale", lambda: torch.tensor(0.1), constraint=positive)
        pyro.sample("beta", dist.Normal(loc, scale).to_event(1))
        pyro.sample("sigma", dist.LogNormal(sigma_loc, sigma_scale))
