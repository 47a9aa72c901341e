"""posteriordb's ``low_dim_gauss_mix`` in Pyro: a two-component 1-D Gaussian mixture with ordered means.

Stan original (posteriordb ``low_dim_gauss_mix``)::

    mu ~ normal(0, 2) (ordered[2]);  sigma ~ normal(0, 2) (lower=0);  theta ~ beta(5, 5)
    y_n ~ theta N(mu[1], sigma[1]) + (1 - theta) N(mu[2], sigma[2])

Stan's ``ordered[2] mu`` with ``mu ~ normal(0, 2)`` has density proportional to N(mu_0) N(mu_1) on mu_0 < mu_1:
exactly the law of two sorted iid Normal(0, 2) draws, which :class:`SortedNormal` is (support
``constraints.ordered_vector``, so NUTS and the guide work in Stan's unconstrained space).
The labels are thus identified by the model itself: component 0 is the one with the smaller mean.
Its reference data: ``vi_toolkit.posteriordb.load(default_root() / "low_dim_gauss_mix-low_dim_gauss_mix")``,
``torch.tensor(posterior.data["y"])``; any 1-D float tensor ``y`` works.
"""

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.transforms import OrderedTransform
from pyro.distributions import constraints

from vi_toolkit.models import register
from vi_toolkit.errors import DataError
from vi_toolkit.pairs import ModelPair


class SortedNormal(dist.TorchDistribution):
    """The order statistics of n iid Normal(loc, scale) draws: density n! prod_i N(v_i | loc, scale) on
    v_0 < ... < v_{n-1}."""

    arg_constraints = {}
    support = constraints.ordered_vector

    def __init__(self, loc, scale, n, validate_args=None):
        self.loc, self.scale, self.n = float(loc), float(scale), int(n)
        super().__init__(torch.Size(), torch.Size([self.n]), validate_args=validate_args)

    def sample(self, sample_shape=torch.Size()):
        shape = torch.Size(sample_shape) + self.event_shape
        return (self.loc + self.scale * torch.randn(shape)).sort(-1).values

    def log_prob(self, value):
        return math.lgamma(self.n + 1) + dist.Normal(self.loc, self.scale).log_prob(value).sum(-1)


@register("low-dim-gauss-mix")
class LowDimGaussMix(ModelPair):
    """theta N(y | mu_0, sigma_0) + (1 - theta) N(y | mu_1, sigma_1), mu ordered, priors as in posteriordb."""

    description = "posteriordb low_dim_gauss_mix: two-component 1-D mixture with ordered means"
    posteriordb = "low_dim_gauss_mix-low_dim_gauss_mix"

    def check_data(self, y):
        """``y`` as a finite 1-D float tensor, or a DataError."""
        y = torch.as_tensor(y, dtype=torch.get_default_dtype())
        if y.dim() != 1 or len(y) < 2:
            raise DataError(f"y must be a 1-D array of at least 2 values, got shape {tuple(y.shape)}")
        if not torch.isfinite(y).all():
            raise DataError("y holds NaN or infinite values; remove them before fitting")
        return y

    def model(self, y):
        mu = pyro.sample("mu", SortedNormal(0.0, 2.0, 2))
        sigma = pyro.sample("sigma", dist.HalfNormal(2.0).expand([2]).to_event(1))
        theta = pyro.sample("theta", dist.Beta(5.0, 5.0))
        weights = torch.stack([theta, 1 - theta], -1)
        mixture = dist.MixtureSameFamily(dist.Categorical(weights), dist.Normal(mu, sigma))
        with pyro.plate("data", y.shape[-1]):
            pyro.sample("y", mixture, obs=y)

    def guide(self, y):
        """Mean-field Gaussian in the unconstrained space (ordered, log and logit transforms), started at the
        data's quartiles with sds of half the interquartile range and an even split."""

        def init():
            q = torch.quantile(self.check_data(y), torch.tensor([0.25, 0.75]))
            return q, ((q[1] - q[0]) / 2).log().expand(2).clone()

        store = pyro.get_param_store()
        start = init() if "mu_loc" not in store else (None, None)
        positive = constraints.positive
        mu_loc = pyro.param("mu_loc", lambda: OrderedTransform().inv(start[0]))
        mu_scale = pyro.param("mu_scale", lambda: torch.full((2,), 0.1), constraint=positive)
        sigma_loc = pyro.param("sigma_loc", lambda: start[1])
        sigma_scale = pyro.param("sigma_scale", lambda: torch.full((2,), 0.1), constraint=positive)
        theta_loc = pyro.param("theta_loc", lambda: torch.tensor(0.0))
        theta_scale = pyro.param("theta_scale", lambda: torch.tensor(0.1), constraint=positive)
        pyro.sample("mu", dist.TransformedDistribution(dist.Normal(mu_loc, mu_scale).to_event(1), OrderedTransform()))
        pyro.sample("sigma", dist.LogNormal(sigma_loc, sigma_scale).to_event(1))
        pyro.sample("theta", dist.TransformedDistribution(dist.Normal(theta_loc, theta_scale), dist.transforms.SigmoidTransform()))

    def log_predictive_density(self, result, y_new, n=None, seed=0):
        """Per point: log (1/S) sum_s [theta_s N(y | mu_s0, sigma_s0) + (1 - theta_s) N(y | mu_s1, sigma_s1)]
        over the draws ``result.draws(n, seed)`` of any posterior result (n=None: the result's own draws)."""
        y_new = self.check_data(y_new)
        d = result.draws(n, seed)
        mu, sigma, theta = (torch.as_tensor(d[k], dtype=y_new.dtype) for k in ("mu", "sigma", "theta"))
        log_w = torch.stack([theta.log(), (1 - theta).log()], -1)  # (S, 2)
        lp = (log_w[:, None] + dist.Normal(mu[:, None], sigma[:, None]).log_prob(y_new[None, :, None])).logsumexp(-1)
        return (lp.logsumexp(0) - math.log(lp.shape[0])).numpy()
