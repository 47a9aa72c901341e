"""Targets with exact answers for the direction of the KL: a correlated 2-D Gaussian and a bimodal mixture.

Neither has data: the model's single latent site ``z`` (shape (2,)) has the target as its density, so the
posterior is the target itself and log p(x) = 0. The default guide is mean-field Gaussian, the family whose
reverse-KL and forward-KL optima differ in the way the comparison is about.
"""

import pyro
import pyro.distributions as dist
import torch
from torch.distributions import constraints

from vi_toolkit.models import register
from vi_toolkit.errors import ConfigError
from vi_toolkit.pairs import ModelPair
from vi_toolkit.validate import between, finite, positive


class _Target(ModelPair):
    """A 2-D density as a model without data; its default guide is mean-field Gaussian started at N(0, I)."""

    def distribution(self):
        raise NotImplementedError

    def model(self):
        pyro.sample("z", self.distribution())

    def guide(self):
        loc = pyro.param("z_loc", torch.zeros(2))
        scale = pyro.param("z_scale", torch.ones(2), constraint=constraints.positive)
        pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def posterior(self):
        """The exact posterior: the target itself."""
        return {"z": self.distribution()}

    def log_evidence(self):
        """log p(x) = 0: the target is a normalized density and there is no data."""
        return 0.0

    def simulate(self, seed=0):
        """No data: the model takes no arguments."""
        return ()


@register("correlated-gaussian")
class CorrelatedGaussian(_Target):
    """z ~ N(loc, Sigma), Sigma = [[s0^2, r s0 s1], [r s0 s1, s1^2]] with r = ``correlation``, s = ``scales``."""

    description = "2-D Gaussian with correlation r (exact mean-field reverse- and forward-KL optima)"

    def __init__(self, correlation=0.9, scales=(1.0, 1.0), loc=(0.0, 0.0)):
        self.correlation = between("correlation", correlation, -1.0, 1.0)
        if len(scales) != 2 or len(loc) != 2:
            raise ConfigError(f"scales and loc must have two entries each, got {scales!r} and {loc!r}")
        s = torch.tensor([positive("scales[i]", v) for v in scales])
        self.loc = torch.tensor([finite("loc[i]", v) for v in loc])
        self.covariance = torch.outer(s, s) * torch.tensor([[1.0, self.correlation], [self.correlation, 1.0]])
        self.precision = torch.linalg.inv(self.covariance)
        self._scale_tril = torch.linalg.cholesky(self.covariance)

    def distribution(self):
        return dist.MultivariateNormal(self.loc, scale_tril=self._scale_tril)

    def reverse_kl_variances(self):
        """Variances of the mean-field Gaussian q minimizing KL(q||p): 1 / Lambda_ii, Lambda = Sigma^-1."""
        return 1.0 / torch.diagonal(self.precision)

    def forward_kl_variances(self):
        """Variances of the mean-field Gaussian q minimizing KL(p||q): Sigma_ii (moment matching)."""
        return torch.diagonal(self.covariance).clone()


class _GaussianMixture(dist.MixtureSameFamily):
    """A mixture of Gaussians, whose support is all of R^d (autoguides need a transformable support)."""

    support = constraints.real_vector


@register("bimodal")
class Bimodal(_Target):
    """z ~ w N(-m, s^2 I) + (1 - w) N(m, s^2 I), m = (``separation`` / 2, 0), s = ``scale``, w = ``weight``."""

    description = "2-D two-component Gaussian mixture (exact mean and variance; reverse KL picks one mode)"

    def __init__(self, separation=4.0, scale=0.7, weight=0.5):
        self.separation = positive("separation", separation)
        self.scale = positive("scale", scale)
        self.weight = between("weight", weight, 0.0, 1.0)
        half = torch.tensor([self.separation / 2, 0.0])
        self.locs = torch.stack([-half, half])
        self.weights = torch.tensor([self.weight, 1.0 - self.weight])

    def distribution(self):
        components = dist.Normal(self.locs, self.scale).to_event(1)
        return _GaussianMixture(dist.Categorical(self.weights), components)

    def mean(self):
        """E[z] = w mu_0 + (1 - w) mu_1."""
        return self.weights @ self.locs

    def variance(self):
        """Var[z_i] = s^2 + w (1 - w) (mu_0i - mu_1i)^2: the forward-KL optimum of a mean-field Gaussian."""
        return self.scale**2 + self.weight * (1 - self.weight) * (self.locs[0] - self.locs[1]) ** 2
