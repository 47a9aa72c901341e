"""posteriordb's ``garch-garch11`` in Pyro: a GARCH(1,1) volatility model.

Stan original (posteriordb ``garch11``)::

    parameters { real mu; real<lower=0> alpha0; real<lower=0, upper=1> alpha1;
                 real<lower=0, upper=(1 - alpha1)> beta1; }      // no prior statements: flat
    sigma[1] = sigma1;  sigma[t]^2 = alpha0 + alpha1 (y[t-1] - mu)^2 + beta1 sigma[t-1]^2;  y ~ normal(mu, sigma)

Stan's priors are flat: on mu, on alpha0 > 0 and on the triangle {0 < alpha1 < 1, 0 < beta1 < 1 - alpha1}.
Here: ``mu ~ Normal(0, 100)`` and ``alpha0 ~ HalfNormal(100)`` (wide proper priors standing for the flat ones:
a Normal(0, s) prior shifts a posterior mean m of sd d by about m d / s^2 sds, here 5.05 * 0.124 / 100^2 = 6e-5
for mu and 1.47 * 0.57 / 100^2 = 8e-5 for alpha0). The triangle is
exact: beta1's upper bound depends on alpha1, so the latent site is ``beta1_unit = beta1 / (1 - alpha1)``
~ Uniform(0, 1) (Stan's own unconstrained coordinate for beta1 is logit(beta1_unit)) and ``alpha1 ~ Beta(1, 2)``,
whose density 2 (1 - alpha1) is the Jacobian d beta1 / d beta1_unit: the joint density of (alpha1, beta1) is
flat on the triangle, as Stan's. ``beta1`` is recorded with ``pyro.deterministic``. The variance recursion is
linear in sigma^2, sigma_t^2 = sum_{j<=t} beta1^(t-j) c_j (c_0 = sigma1^2, c_j = alpha0 + alpha1
(y_{j-1} - mu)^2), and is computed by a doubling scan: log2(T) batched steps instead of a loop over time; it
broadcasts over particles. Labels ``mu``, ``alpha0``, ``alpha1``, ``beta1``. Data: ``posteriordb.load(root /
"garch-garch11").data``, the model's arguments by name (``T``, ``y``, ``sigma1``).
"""

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

from vi_toolkit.errors import DataError
from vi_toolkit.models import register
from vi_toolkit.pairs import ModelPair

FLAT_SCALE = 100.0  # sd of the proper priors of mu and alpha0 standing for Stan's flat ones


def garch_variance(y, mu, alpha0, alpha1, beta1, sigma1):
    """sigma_t^2 of GARCH(1,1), (..., T): sigma_0^2 = sigma1^2, sigma_t^2 = alpha0 + alpha1 (y_{t-1} - mu)^2
    + beta1 sigma_{t-1}^2, i.e. sum_{j<=t} beta1^(t-j) c_j with c_0 = sigma1^2 and c_j the other terms, by a
    doubling scan (x_t += beta1^d x_{t-d} for d = 1, 2, 4, ...). Parameters are scalars or batches (..., 1)
    (a time plate's dim last), y is (T,)."""
    shocks = alpha0 + alpha1 * (y[:-1] - mu) ** 2  # (..., T-1)
    x = torch.cat([(sigma1**2).expand(shocks.shape[:-1] + (1,)), shocks], -1)  # c, (..., T)
    power, d = beta1, 1
    while d < len(y):
        x = x + power * torch.nn.functional.pad(x[..., :-d], (d, 0))
        power, d = power * power, 2 * d
    return x


@register("garch11")
class GARCH11(ModelPair):
    """mu ~ N(0, 100), alpha0 ~ HalfNormal(100), (alpha1, beta1) flat on the triangle alpha1 + beta1 < 1;
    y_t ~ N(mu, sigma_t), sigma_t^2 = alpha0 + alpha1 (y_{t-1} - mu)^2 + beta1 sigma_{t-1}^2."""

    description = "posteriordb garch11: GARCH(1,1) volatility of a time series"
    posteriordb = "garch-garch11"

    def check_data(self, T, y, sigma1):
        """(T, y, sigma1): y a finite 1-D float tensor of length T >= 2, sigma1 > 0 a float tensor; or a
        DataError."""
        y = torch.as_tensor(y, dtype=torch.get_default_dtype())
        sigma1 = torch.as_tensor(sigma1, dtype=torch.get_default_dtype())
        if int(T) != T or y.dim() != 1 or len(y) != T or T < 2:
            raise DataError(f"y must be a 1-D array of length T={T!r} >= 2, got shape {tuple(y.shape)}")
        if not torch.isfinite(y).all():
            raise DataError("y holds NaN or infinite values; the variance recursion needs every value of the series")
        if sigma1.dim() != 0 or not (torch.isfinite(sigma1) and sigma1 > 0):
            raise DataError(f"sigma1 (the first volatility) must be one positive number, got {sigma1.tolist()!r}")
        return int(T), y, sigma1

    def model(self, T, y, sigma1):
        mu = pyro.sample("mu", dist.Normal(0.0, FLAT_SCALE))
        alpha0 = pyro.sample("alpha0", dist.HalfNormal(FLAT_SCALE))
        alpha1 = pyro.sample("alpha1", dist.Beta(1.0, 2.0))
        beta1_unit = pyro.sample("beta1_unit", dist.Uniform(0.0, 1.0))
        beta1 = pyro.deterministic("beta1", (1 - alpha1) * beta1_unit)
        with pyro.plate("time", T):
            sigma = garch_variance(y, mu, alpha0, alpha1, beta1, sigma1).sqrt()
            pyro.sample("y", dist.Normal(mu, sigma), obs=y)

    def latents_from_reference(self, draws):
        """Reference draws (site -> array; posteriordb records beta1) with beta1_unit = beta1 / (1 - alpha1)."""
        return {**draws, "beta1_unit": draws["beta1"] / (1 - draws["alpha1"])}

    def guide(self, T, y, sigma1):
        """Mean-field Gaussian in the unconstrained space: Normal for mu (started at the mean of y), LogNormal
        for alpha0 (at the variance of y), logit-Normal for alpha1 and beta1_unit (at 1/2)."""
        positive, sigmoid = constraints.positive, dist.transforms.SigmoidTransform()
        loc = {
            "mu": pyro.param("mu_loc", lambda: torch.as_tensor(y).mean()),
            "alpha0": pyro.param("alpha0_loc", lambda: torch.as_tensor(y).var().log()),
            "alpha1": pyro.param("alpha1_loc", lambda: torch.tensor(0.0)),
            "beta1_unit": pyro.param("beta1_unit_loc", lambda: torch.tensor(0.0)),
        }
        scale = {name: pyro.param(f"{name}_scale", lambda: torch.tensor(0.1), constraint=positive) for name in loc}
        pyro.sample("mu", dist.Normal(loc["mu"], scale["mu"]))
        pyro.sample("alpha0", dist.LogNormal(loc["alpha0"], scale["alpha0"]))
        for name in ("alpha1", "beta1_unit"):
            pyro.sample(name, dist.TransformedDistribution(dist.Normal(loc[name], scale[name]), sigmoid))
