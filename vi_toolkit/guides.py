"""Autoguides by name: ``fit_vi(model, "mvn", ...)`` builds ``AutoMultivariateNormal(model)``, whitened by the
Laplace start where there is one (:mod:`vi_toolkit.whitened_guides`; there ``"normal"`` is the whitened
diagonal family)."""

from pyro.infer import autoguide

from .errors import UnknownNameError

AUTOGUIDES = {
    "normal": autoguide.AutoNormal,  # mean-field Gaussian (one site at a time where there is no Laplace start)
    "diag": autoguide.AutoDiagonalNormal,  # mean-field Gaussian on the flattened latent vector
    "mvn": autoguide.AutoMultivariateNormal,  # full-rank Gaussian
    "lowrank": autoguide.AutoLowRankMultivariateNormal,
    "iaf": autoguide.AutoIAFNormal,  # normalizing flow (inverse autoregressive)
    "delta": autoguide.AutoDelta,  # point estimate (MAP)
    "laplace": autoguide.AutoLaplaceApproximation,  # MAP, then a Gaussian from the Hessian
}


def make_guide(guide, model, start=None):
    """Return ``(guide_callable, name)``: an autoguide built from its name (whitened by ``start``, a
    :class:`~vi_toolkit.gaussian_start.GaussianStart`, for the families of
    :data:`vi_toolkit.whitened_guides.WHITENED`), or the user's callable as is."""
    if isinstance(guide, str):
        if guide not in AUTOGUIDES:
            raise UnknownNameError(
                f"unknown guide {guide!r}; pass a Pyro guide callable or one of {sorted(AUTOGUIDES)}"
            )
        from .whitened_guides import WHITENED, whitened_guide

        if start is not None and guide in WHITENED:
            return whitened_guide(guide, model, start), guide
        return AUTOGUIDES[guide](model), guide
    if not callable(guide):
        raise UnknownNameError(
            f"guide must be callable or an autoguide name, got {type(guide).__name__}; "
            f"names: {sorted(AUTOGUIDES)}"
        )
    return guide, getattr(guide, "__name__", type(guide).__name__)
