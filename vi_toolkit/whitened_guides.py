"""Autoguides fitted in coordinates whitened by a Gaussian start (:mod:`vi_toolkit.gaussian_start`).

Each class is Pyro's autoguide of the same family over a whitened latent a, pushed through the affine map
u = m + L a, where N(m, L L') is the start (the Laplace approximation): the full Cholesky factor L for the
full-rank and flow families, its diagonal (the conditional sds 1 / sqrt(diag H), the exact mean-field optimum
of a Gaussian) for the mean-field and low-rank families, so that each family stays what its name says. The
fit starts at the start's Gaussian (a = 0, unit scales) and Adam's step size ``lr`` is then a fraction of a
posterior sd in every direction. The fitted distribution over u is the same family as Pyro's; only its
parameters are stored whitened (``loc`` is a, the mean is m + L a), under the class's own name, so that
nobody reads them as Pyro's. ``"normal"`` and ``"diag"`` are both the whitened diagonal family: Pyro's per-site
``AutoNormal`` steps in absolute units, and on an unstandardized regression its NaN gradients or 144-sd errors
were the rule (a user who wants it passes ``AutoNormal(model)`` itself).
"""

import torch
from pyro.distributions import (Delta, Independent, LowRankMultivariateNormal, MultivariateNormal, Normal,
                                 TransformedDistribution)
from pyro.distributions.transforms import LowerCholeskyAffine
from pyro.distributions import constraints
from pyro.infer import autoguide
from pyro.nn import PyroParam
from torch import nn

from .errors import ModelGuideError

_FULL = ("mvn", "iaf", "laplace")  # families whitened by the full Cholesky factor; the others by its diagonal


class _WhitenedContinuous:
    """Mixin for an ``AutoContinuous`` class: its posterior over a, pushed through u = m + L a."""

    def __init__(self, model, start_loc, start_scale_tril, **options):
        super().__init__(model, **options)
        self._start_loc, self._start_scale_tril = start_loc, start_scale_tril

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        if self.latent_dim != len(self._start_loc):
            raise ModelGuideError(f"the Gaussian start has {len(self._start_loc)} dimensions, the model's latent "
                                  f"sites {self.latent_dim}: start from a result of the same model and data")
        if isinstance(getattr(self, "loc", None), nn.Parameter):
            # a = 0: the start's mean. A PyroParam, not Pyro's plain nn.Parameter: PyroModule returns a plain
            # parameter itself, not what its pyro.param statement gives, so the sticking-the-landing gradient
            # (which detaches parameters at those statements) would keep the loc's score term and its noise
            del self.loc
            self.loc = PyroParam(torch.zeros(self.latent_dim), constraints.real)

    def _affine(self):
        return LowerCholeskyAffine(self._start_loc, self._start_scale_tril)

    def get_posterior(self, *args, **kwargs):
        """The family's distribution over u itself where it is Gaussian (so ``.loc``, ``.covariance_matrix``
        read as Pyro's do), else the flow pushed through the affine map."""
        white, m, L = super().get_posterior(*args, **kwargs), self._start_loc, self._start_scale_tril
        if isinstance(white, MultivariateNormal):
            return MultivariateNormal(m + L @ white.loc, scale_tril=L @ white.scale_tril)
        scale = L.diagonal()  # the diagonal families are whitened by a diagonal L
        if isinstance(white, LowRankMultivariateNormal):
            return LowRankMultivariateNormal(m + scale * white.loc, scale[:, None] * white.cov_factor,
                                             scale**2 * white.cov_diag)
        if isinstance(white, Independent) and isinstance(white.base_dist, Normal):
            return Normal(m + scale * white.base_dist.loc, scale * white.base_dist.scale).to_event(1)
        return TransformedDistribution(white, self._affine())

    def _loc_scale(self, *args, **kwargs):
        white = super().get_posterior(*args, **kwargs)
        cov = white.covariance_matrix if hasattr(white, "covariance_matrix") else torch.diag_embed(white.variance)
        L = self._start_scale_tril
        return self._start_loc + L @ white.mean, (L @ cov @ L.T).diagonal().sqrt()


class WhitenedMultivariateNormal(_WhitenedContinuous, autoguide.AutoMultivariateNormal):
    """``AutoMultivariateNormal`` in whitened coordinates: q(u) = N(m + L a, L S S' L')."""


class WhitenedDiagonalNormal(_WhitenedContinuous, autoguide.AutoDiagonalNormal):
    """``AutoDiagonalNormal`` in coordinates scaled by the start's conditional sds (L diagonal)."""


class WhitenedLowRankMultivariateNormal(_WhitenedContinuous, autoguide.AutoLowRankMultivariateNormal):
    """``AutoLowRankMultivariateNormal`` in coordinates scaled by the start's conditional sds (L diagonal),
    started at the low-rank family's fit to the start's covariance C there, as in probabilistic PCA:
    C ~ W W' + s^2 I with W the top ``rank`` eigenvectors scaled by sqrt(eigenvalue - s^2) and s^2 the mean of
    the other eigenvalues (exact for D <= rank + 1). Pyro's random factor near 0 starts at the mean-field fit,
    where the factor's gradient nearly vanishes: on regressions with an unstandardized predictor the fits
    stopped there, with sd ratios of 0.04-0.5."""

    def __init__(self, model, start_loc, start_scale_tril, whitened_cov, **options):
        super().__init__(model, start_loc, start_scale_tril, **options)
        self._whitened_cov = whitened_cov

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        values, vectors = torch.linalg.eigh(self._whitened_cov)  # ascending
        rest = len(values) - self.rank
        noise = values[:rest].mean() if rest > 0 else values.min() / 2
        top = vectors[:, rest:] * (values[rest:] - noise).clamp(min=0).sqrt()
        del self.scale, self.cov_factor  # cov = diag(scale) (F F' + I) diag(scale) = W W' + s^2 I
        self.scale = PyroParam(torch.full((self.latent_dim,), float(noise.sqrt())), self.scale_constraint)
        self.cov_factor = PyroParam(top / noise.sqrt(), constraints.real)  # a PyroParam, as loc (see above)


class WhitenedIAFNormal(_WhitenedContinuous, autoguide.AutoIAFNormal):
    """``AutoIAFNormal`` whose flow ends in the start's affine map u = m + L a."""


class WhitenedLaplaceApproximation(_WhitenedContinuous, autoguide.AutoLaplaceApproximation):
    """``AutoLaplaceApproximation`` whose MAP search runs in whitened coordinates; its Laplace approximation
    is mapped back to u."""

    def get_posterior(self, *args, **kwargs):  # a point mass at u = m + L a (a transformed Delta would miss it)
        return Delta(self._start_loc + self._start_scale_tril @ self.loc).to_event(1)

    def laplace_approximation(self, *args, **kwargs):
        white = super().laplace_approximation(*args, **kwargs)  # Gaussian over a
        with torch.no_grad():
            tril = self._start_scale_tril @ (white.scale[:, None] * white.scale_tril)
            scale = tril.pow(2).sum(-1).sqrt()
            white.loc = self._start_loc + self._start_scale_tril @ white.loc
            white.scale, white.scale_tril = scale, tril / scale[:, None]
        return white


WHITENED = {
    "mvn": WhitenedMultivariateNormal,
    "diag": WhitenedDiagonalNormal,
    "normal": WhitenedDiagonalNormal,
    "lowrank": WhitenedLowRankMultivariateNormal,
    "iaf": WhitenedIAFNormal,
    "laplace": WhitenedLaplaceApproximation,
}


def whitened_guide(name, model, start):
    """The whitened autoguide of family ``name`` (a key of :data:`WHITENED`) starting at ``start``."""
    if name in _FULL:
        L = start.scale_tril
    else:  # the conditional sds 1 / sqrt(diag H), H = cov^-1
        L = torch.diag(torch.linalg.inv(start.cov).diagonal().rsqrt())
    if name == "lowrank":
        inverse = 1 / L.diagonal()
        return WHITENED[name](model, start.loc, L, inverse[:, None] * start.cov * inverse[None, :])
    options = {"init_scale": 1.0} if name in ("mvn", "diag", "normal") else {}
    return WHITENED[name](model, start.loc, L, **options)
