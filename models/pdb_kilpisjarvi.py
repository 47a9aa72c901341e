"""posteriordb's ``kilpisjarvi_mod-kilpisjarvi`` in Pyro: a linear trend in Kilpisjärvi summer temperatures.

Stan original (posteriordb ``kilpisjarvi``, priors given by the data)::

    alpha ~ normal(pmualpha, psalpha);  beta ~ normal(pmubeta, psbeta);  sigma flat (lower=0)
    y ~ normal(alpha + beta * x, sigma)

Stan's flat prior on ``sigma`` becomes ``HalfNormal(1000)`` (sigma = 1.13, sd 0.11 in the reference draws: a
shift of < 1e-6 sds). The predictor ``x`` (years, 3952-4013) is not centred, so alpha and beta are correlated
at -0.9999 a posteriori. Labels ``alpha``, ``beta``, ``sigma``. Data:
``vi_toolkit.posteriordb.load(root / "kilpisjarvi_mod-kilpisjarvi").data``, the model's arguments by name.
"""

import functools

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

from vi_toolkit.errors import DataError
from vi_toolkit.models import register
from vi_toolkit.models.pdb_regression import GaussianRegression
from vi_toolkit.pairs import ModelPair


@register("kilpisjarvi")
class Kilpisjarvi(ModelPair):
    """alpha ~ N(pmualpha, psalpha), beta ~ N(pmubeta, psbeta), sigma ~ HalfNormal(1000);
    y_i ~ N(alpha + beta x_i, sigma)."""

    description = "posteriordb kilpisjarvi_mod-kilpisjarvi: linear trend of summer temperatures, data-given priors"
    posteriordb = "kilpisjarvi_mod-kilpisjarvi"

    def check_data(self, x, y, pmualpha, psalpha, pmubeta, psbeta):
        """(x, y) finite 1-D float tensors of one length and the four prior settings finite scalars with
        positive scales, or a DataError."""
        x, y, *priors = (torch.as_tensor(v, dtype=torch.get_default_dtype()) for v in
                         (x, y, pmualpha, psalpha, pmubeta, psbeta))
        if x.dim() != 1 or x.shape != y.shape or len(y) == 0:
            raise DataError(f"x and y must be 1-D arrays of one length, got {tuple(x.shape)} and {tuple(y.shape)}")
        if any(p.dim() != 0 for p in priors) or not all(torch.isfinite(t).all() for t in (x, y, *priors)):
            raise DataError("x and y must be finite and pmualpha, psalpha, pmubeta, psbeta finite scalars")
        if priors[1] <= 0 or priors[3] <= 0:
            raise DataError(f"prior sds psalpha and psbeta must be positive, got {float(priors[1])}, {float(priors[3])}")
        return (x, y, *priors)

    def model(self, x, y, pmualpha, psalpha, pmubeta, psbeta):
        alpha = pyro.sample("alpha", dist.Normal(pmualpha, psalpha))
        beta = pyro.sample("beta", dist.Normal(pmubeta, psbeta))
        sigma = pyro.sample("sigma", dist.HalfNormal(1000.0))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(alpha + beta * x, sigma), obs=y)

    def guide(self, x, y, pmualpha, psalpha, pmubeta, psbeta):
        """Mean-field: Normal for alpha and beta, LogNormal for sigma, started at least squares (standard
        errors as scales)."""
        start = functools.cache(lambda: GaussianRegression.least_squares(y, [x]))  # only if a param is new
        positive = constraints.positive
        for k, site in enumerate(("alpha", "beta")):
            loc = pyro.param(f"{site}_loc", lambda: start()[0][k])
            scale = pyro.param(f"{site}_scale", lambda: start()[1][k], constraint=positive)
            pyro.sample(site, dist.Normal(loc, scale))
        sigma_loc = pyro.param("sigma_loc", lambda: start()[2])
        sigma_scale = pyro.param("sigma_scale", lambda: start()[3], constraint=positive)
        pyro.sample("sigma", dist.LogNormal(sigma_loc, sigma_scale))
