"""posteriordb's ``arK-arK`` in Pyro: an autoregressive model of order K.

Stan original (posteriordb ``arK``)::

    alpha ~ normal(0, 10);  beta ~ normal(0, 10) (K);  sigma ~ cauchy(0, 2.5) (lower=0)
    for t in K+1..T:  y[t] ~ normal(alpha + sum_k beta[k] y[t-k], sigma)

``sigma``'s Cauchy restricted to sigma > 0 is the HalfCauchy(2.5) up to a constant. Labels ``alpha``,
``beta[0]`` ... ``beta[K-1]`` (Stan's ``beta[1]`` is our ``beta[0]``, the coefficient of lag 1) and ``sigma``.
Data: ``posteriordb.load(root / "arK-arK").data``, the model's arguments by name (``K``, ``T``, ``y``).
"""

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

from vi_toolkit.errors import DataError
from vi_toolkit.models import register
from vi_toolkit.pairs import ModelPair


def lags(y, K):
    """The (T-K, K) matrix of lagged outcomes: row t-K holds y[t-1], ..., y[t-K] (column k is lag k+1)."""
    T = y.shape[-1]
    return torch.stack([y[K - 1 - k : T - 1 - k] for k in range(K)], -1)


@register("ark")
class ARK(ModelPair):
    """alpha ~ N(0, 10), beta_k ~ N(0, 10), sigma ~ HalfCauchy(2.5); y_t ~ N(alpha + sum_k beta_k y_{t-k}, sigma)."""

    description = "posteriordb arK: autoregressive time series of order K"
    posteriordb = "arK-arK"

    def check_data(self, K, T, y):
        """(K, T, y): integer order K >= 1 and length T > K, y a finite 1-D float tensor of length T; or a
        DataError."""
        y = torch.as_tensor(y, dtype=torch.get_default_dtype())
        if int(K) != K or int(T) != T or K < 1:
            raise DataError(f"K and T must be integers with K >= 1, got K={K!r}, T={T!r}")
        K, T = int(K), int(T)
        if y.dim() != 1 or len(y) != T or T <= K:
            raise DataError(f"y must be a 1-D array of length T={T} > K={K}, got shape {tuple(y.shape)}")
        if not torch.isfinite(y).all():
            raise DataError("y holds NaN or infinite values; an autoregression needs every value of the series")
        return K, T, y

    def model(self, K, T, y):
        alpha = pyro.sample("alpha", dist.Normal(0.0, 10.0))
        beta = pyro.sample("beta", dist.Normal(0.0, 10.0).expand([K]).to_event(1))
        sigma = pyro.sample("sigma", dist.HalfCauchy(2.5))
        with pyro.plate("time", T - K):
            mu = alpha + (lags(y, K) * beta).sum(-1)
            pyro.sample("y", dist.Normal(mu, sigma), obs=y[K:])

    def guide(self, K, T, y):
        """Mean-field: Normal for alpha and each beta_k (started at 0), LogNormal for sigma (started at the
        series' sd)."""
        positive = constraints.positive
        alpha_loc = pyro.param("alpha_loc", lambda: torch.tensor(0.0))
        alpha_scale = pyro.param("alpha_scale", lambda: torch.tensor(0.1), constraint=positive)
        beta_loc = pyro.param("beta_loc", lambda: torch.zeros(K))
        beta_scale = pyro.param("beta_scale", lambda: torch.full((K,), 0.1), constraint=positive)
        sigma_loc = pyro.param("sigma_loc", lambda: torch.as_tensor(y).std().log())
        sigma_scale = pyro.param("sigma_scale", lambda: torch.tensor(0.1), constraint=positive)
        pyro.sample("alpha", dist.Normal(alpha_loc, alpha_scale))
        pyro.sample("beta", dist.Normal(beta_loc, beta_scale).to_event(1))
        pyro.sample("sigma", dist.LogNormal(sigma_loc, sigma_scale))
